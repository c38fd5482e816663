//! Parity of the lower LM, the TTS LM and the EOS logit against `lm.safetensors`.
//!
//! Replays the fixture: both caches start empty; the lower LM prefills `input.prefill_ids`
//! and then decodes `input.decode_ids` one at a time; the TTS LM prefills
//! `input.tts.prefill.lm_hidden` as text (type row 1) and then decodes each
//! `input.tts.decode{s}.acoustic_embed` as speech (type row 0). Every hidden state, EOS logit
//! and KV cache (`[1, kv, T, hd]`, keys after RoPE) is compared, plus the `debug.*` inputs.

use candle_core::{Device, Tensor};

use super::{GoldenFile, TensorReport};
use crate::eos_classifier::EosClassifier;
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::language_model::{TextLm, TtsInput, TtsLm};

/// Component name of the reports.
pub const COMPONENT: &str = "lm";
/// Largest accepted relative error (`max|a−b| / max|b|`).
pub const TOLERANCE: f64 = 1e-4;

/// Runs the fixture through the models and reports the error of every golden output.
pub fn check(
    lower: &TextLm,
    tts: &TtsLm,
    eos: &EosClassifier,
    golden: &GoldenFile,
) -> Result<Vec<TensorReport>> {
    let mut replay = Replay {
        golden,
        reports: Vec::new(),
    };

    let prefill = token_ids(golden, "input.prefill_ids")?;
    replay.compare("debug.lm.prefill.inputs_embeds", &lower.embed(&prefill)?)?;
    let mut cache = lower.new_cache();
    let hidden = lower.forward(&prefill, &mut cache)?;
    replay.compare("output.lm.prefill.hidden", &hidden)?;
    replay.compare_kv("output.lm.prefill.kv", &cache)?;
    for (s, &id) in token_ids(golden, "input.decode_ids")?.iter().enumerate() {
        let hidden = lower.forward(&[id], &mut cache)?;
        replay.compare(&format!("output.lm.decode{s}.hidden"), &hidden)?;
    }
    replay.compare_kv("output.lm.final.kv", &cache)?;

    let mut cache = tts.new_cache();
    let text = rows(golden, "input.tts.prefill.lm_hidden", tts.device())?;
    replay.tts_step(tts, eos, "prefill", TtsInput::text(&text), &mut cache)?;
    replay.compare_kv("output.tts.prefill.kv", &cache)?;
    let mut s = 0;
    while golden.contains(&format!("input.tts.decode{s}.acoustic_embed")) {
        let name = format!("input.tts.decode{s}.acoustic_embed");
        let speech = rows(golden, &name, tts.device())?;
        let step = format!("decode{s}");
        replay.tts_step(tts, eos, &step, TtsInput::speech(&speech), &mut cache)?;
        s += 1;
    }
    replay.compare_kv("output.tts.final.kv", &cache)?;
    Ok(replay.reports)
}

/// The reports collected while replaying one golden file.
struct Replay<'a> {
    golden: &'a GoldenFile,
    reports: Vec<TensorReport>,
}

impl Replay<'_> {
    fn compare(&mut self, name: &str, got: &Tensor) -> Result<()> {
        let report = golden_report(COMPONENT, TOLERANCE, self.golden, name, got)?;
        self.reports.push(report);
        Ok(())
    }

    /// Every layer's keys and values against `{prefix}.{i}.key` / `.value`.
    fn compare_kv(&mut self, prefix: &str, cache: &KvCache) -> Result<()> {
        for i in 0..cache.num_layers() {
            let (k, v) = cache.layer(i)?;
            self.compare(&format!("{prefix}.{i}.key"), &k)?;
            self.compare(&format!("{prefix}.{i}.value"), &v)?;
        }
        Ok(())
    }

    /// One TTS-LM call `step`: its input embedding, normed hidden states and last-row EOS logit.
    fn tts_step(
        &mut self,
        tts: &TtsLm,
        eos: &EosClassifier,
        step: &str,
        input: TtsInput,
        cache: &mut KvCache,
    ) -> Result<()> {
        let embeds = tts.input_embeds(&input)?;
        self.compare(&format!("debug.tts.{step}.inputs_embeds"), &embeds)?;
        let hidden = tts.forward(input, cache)?;
        self.compare(&format!("output.tts.{step}.hidden"), &hidden)?;
        let last = hidden.narrow(0, hidden.dim(0)? - 1, 1)?;
        self.compare(&format!("output.tts.{step}.eos_logit"), &eos.logit(&last)?)
    }
}

/// Compares `got` with the golden tensor `name` (which must exist) after reshaping `got` to
/// the golden shape.
pub(super) fn golden_report(
    component: &str,
    tolerance: f64,
    golden: &GoldenFile,
    name: &str,
    got: &Tensor,
) -> Result<TensorReport> {
    let want = golden.get(name)?;
    let got = got.reshape(want.dims()).map_err(|e| ModelError::Fixture {
        path: golden.path().display().to_string(),
        reason: format!("{name}: computed shape {:?} does not fit: {e}", got.dims()),
    })?;
    TensorReport::new(component, name, &got, want, tolerance)
}

/// A golden id tensor (any shape, I64) as token ids.
fn token_ids(golden: &GoldenFile, name: &str) -> Result<Vec<u32>> {
    let ids: Vec<i64> = golden.get(name)?.flatten_all()?.to_vec1()?;
    ids.into_iter()
        .map(|id| {
            u32::try_from(id).map_err(|_| ModelError::Fixture {
                path: golden.path().display().to_string(),
                reason: format!("{name}: token id {id} out of range"),
            })
        })
        .collect()
}

/// A golden `[1, n, hidden]` (or `[n, hidden]`) activation as `[n, hidden]` on `device`.
pub(super) fn rows(golden: &GoldenFile, name: &str, device: &Device) -> Result<Tensor> {
    let t = golden.get(name)?;
    let hidden = t.dim(candle_core::D::Minus1)?;
    Ok(t.reshape(((), hidden))?.to_device(device)?)
}
