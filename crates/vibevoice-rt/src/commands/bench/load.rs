//! What `bench` runs: the model (a checkpoint, or the real architecture with random weights),
//! one voice and the token ids of the benchmark text.

use std::path::PathBuf;

use anyhow::Context;
use vv_model::generation::PreparedVoice;
use vv_model::linear::Packing;
use vv_model::source::{resolve_checkpoint, resolve_tokenizer, HubOptions};
use vv_model::text::{normalize_text, TextTokenizer};
use vv_model::{VibeVoiceConfig, VibeVoiceModel};
use vv_preset::{VoiceLibrary, VoicePreset};
use vv_server::config::LoadedSettings;

/// Text of the benchmark (about 40 tokens: text runs out mid-utterance, as in real use).
const BENCH_TEXT: &str = "The quick brown fox jumps over the lazy dog while the band plays a \\
slow waltz in the old town square, and nobody seems to mind the rain at all.";
/// Token ids used with random weights (no tokenizer needed): any ids below the vocabulary size.
const RANDOM_TOKENS: usize = 40;
/// Preset used with random weights when `--voice-file` is not given.
const DEFAULT_PRESET: &str = "voices/en-Davis_man.pt";

/// Model (its weights stored as `packing` says), voice and token ids to benchmark.
pub(super) fn load(
    voice_file: Option<&PathBuf>,
    loaded: &LoadedSettings,
    device: &candle_core::Device,
    (dtype, packing): (candle_core::DType, Packing),
) -> anyhow::Result<(VibeVoiceModel, PreparedVoice, Vec<u32>)> {
    let s = &loaded.settings;
    if s.random_weights {
        let cfg = VibeVoiceConfig::realtime_0_5b();
        let model = VibeVoiceModel::random(cfg, device, dtype, packing)?;
        model.set_cuda_graphs(s.cuda_graphs);
        let path = voice_file
            .cloned()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PRESET));
        let preset =
            VoicePreset::load(&path).with_context(|| format!("voice preset {}", path.display()))?;
        let voice = PreparedVoice::new(&model, &preset)?;
        let ids = (0..RANDOM_TOKENS as u32).map(|i| 1000 + 17 * i).collect();
        return Ok((model, voice, ids));
    }
    let hub = HubOptions {
        revision: Some(s.model_revision.clone()),
        cache_dir: s.cache_dir.clone(),
        progress: true,
    };
    let files = resolve_checkpoint(&s.model, &hub)?;
    let model = VibeVoiceModel::load(&files, device, dtype, packing)?;
    model.set_cuda_graphs(s.cuda_graphs);
    let tokenizer = TextTokenizer::from_file(&resolve_tokenizer(&s.tokenizer, &hub)?)?;
    let preset = match (voice_file, &s.voices_dir) {
        (Some(path), _) => VoicePreset::load(path)?,
        (None, dir) => {
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from("voices"));
            let library = VoiceLibrary::scan(&dir)?;
            let name = s
                .default_voice
                .clone()
                .or_else(|| library.names().next().map(str::to_string))
                .context("the voices directory is empty")?;
            VoicePreset::load(library.path(&name)?)?
        }
    };
    let voice = PreparedVoice::new(&model, &preset)?;
    let ids = tokenizer.encode(&normalize_text(BENCH_TEXT))?;
    Ok((model, voice, ids))
}
