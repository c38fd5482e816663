//! `vibevoice-rt bench`: time to first audio and time per frame of fixed-length generations
//! (EOS off), medians over several runs after a warm-up run, on the resolved device.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use vv_device::dtype::select_dtype;
use vv_device::ops::{BackendOps, CandleOps};
use vv_device::probe::SystemProbe;
use vv_device::resolve::resolve_device;
use vv_model::generation::{
    component_times, ComponentTimes, GenerationParams, PreparedVoice, StepOutcome, Utterance,
};
use vv_model::sampler::GaussianNoise;
use vv_model::source::{resolve_checkpoint, resolve_tokenizer, HubOptions};
use vv_model::text::{normalize_text, TextTokenizer};
use vv_model::voice_preset::{VoiceLibrary, VoicePreset};
use vv_model::{VibeVoiceConfig, VibeVoiceModel};
use vv_server::config::LoadedSettings;
use vv_server::engine_options::solver_kind;

use crate::cli::ServiceArgs;

/// Text of the benchmark (about 40 tokens: text runs out mid-utterance, as in real use).
const BENCH_TEXT: &str = "The quick brown fox jumps over the lazy dog while the band plays a \
slow waltz in the old town square, and nobody seems to mind the rain at all.";
/// Token ids used with random weights (no tokenizer needed): any ids below the vocabulary size.
const RANDOM_TOKENS: usize = 40;
/// Preset used with random weights when `--voice-file` is not given.
const DEFAULT_PRESET: &str = "voices/en-Davis_man.pt";

/// Options of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Build the real 0.5B architecture with random weights (no download; speed does not depend
    /// on weight values).
    #[arg(long)]
    pub random_weights: bool,
    /// Frames per generation (133 ms of audio each).
    #[arg(long, default_value_t = 24)]
    pub frames: usize,
    /// Measured runs (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Voice preset file (default: the default voice of the voices directory; with
    /// --random-weights, voices/en-Davis_man.pt).
    #[arg(long, value_name = "FILE")]
    pub voice_file: Option<PathBuf>,
    /// Also time each piece of a frame separately (text window, diffusion, decoder, feedback).
    #[arg(long)]
    pub breakdown: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Service options (device, dtype, model, tokenizer, steps, cfg, ...).
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// The measurement.
#[derive(Debug, Serialize)]
struct BenchReport {
    device: String,
    device_name: Option<String>,
    dtype: String,
    steps: usize,
    cfg_scale: f32,
    frames: usize,
    runs: usize,
    random_weights: bool,
    text_tokens: usize,
    /// Median over runs of the time from the start of generation to the first decoded frame.
    ttfa_ms: f64,
    /// Median over runs of the mean time per frame after the first.
    per_frame_ms: f64,
    /// per_frame_ms / 133.33 ms of audio per frame.
    real_time_factor: f64,
    ttfa_runs_ms: Vec<f64>,
    per_frame_runs_ms: Vec<f64>,
    load_seconds: f64,
    /// Largest device memory in use seen during the runs (CUDA/Metal; absent on CPU).
    peak_gpu_memory_bytes: Option<u64>,
    /// Device memory taken by loading the model: in use after loading minus in use before
    /// (the device context and library handles are open before; absent on CPU).
    model_gpu_memory_bytes: Option<u64>,
    /// `peak_gpu_memory_bytes` minus the memory in use after loading: one utterance's caches
    /// and activations plus what the allocator keeps pooled (absent on CPU).
    utterance_gpu_memory_bytes: Option<u64>,
    /// Process resident memory after the runs.
    process_rss_bytes: Option<u64>,
    /// KV-cache bytes of one utterance at the end of a run.
    kv_cache_bytes: usize,
    /// Median time of each piece of a frame (with --breakdown).
    breakdown_ms: Option<ComponentTimes>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Model, voice and token ids to benchmark.
fn load(
    args: &BenchArgs,
    loaded: &LoadedSettings,
    device: &candle_core::Device,
    dtype: candle_core::DType,
) -> anyhow::Result<(VibeVoiceModel, PreparedVoice, Vec<u32>)> {
    let s = &loaded.settings;
    if args.random_weights {
        let model = VibeVoiceModel::random(VibeVoiceConfig::realtime_0_5b(), device, dtype)?;
        model.set_cuda_graphs(s.cuda_graphs);
        let path = args
            .voice_file
            .clone()
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
    let model = VibeVoiceModel::load(&resolve_checkpoint(&s.model, &hub)?, device, dtype)?;
    model.set_cuda_graphs(s.cuda_graphs);
    let tokenizer = TextTokenizer::from_file(&resolve_tokenizer(&s.tokenizer, &hub)?)?;
    let preset = match (&args.voice_file, &s.voices_dir) {
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

/// One timed generation: (ttfa ms, mean ms per later frame, kv bytes, peak device bytes).
fn run_once(
    model: &VibeVoiceModel,
    voice: &PreparedVoice,
    ids: &[u32],
    params: &GenerationParams,
    seed: u64,
) -> anyhow::Result<(f64, f64, usize, Option<u64>)> {
    let ops = CandleOps;
    let device = model.device();
    ops.synchronize(device);
    let mut utt = Utterance::new(
        model,
        voice,
        params.clone(),
        Box::new(GaussianNoise::new(seed)),
    )?;
    let start = Instant::now();
    utt.push_tokens(ids);
    utt.close_input();
    let mut first = None;
    let mut peak: Option<u64> = None;
    // Time spent sampling device memory (driver and NVML queries) after the first frame: the
    // harness's own cost, left out of the per-frame time.
    let mut sampling = std::time::Duration::ZERO;
    loop {
        let outcome = utt.step(model)?;
        ops.synchronize(device);
        if let StepOutcome::Frame { .. } = outcome {
            if first.is_none() {
                first = Some(start.elapsed());
            }
            if !device.is_cpu() {
                let sampled = Instant::now();
                let stats = ops.memory_stats(device);
                if let Some(used) = stats.used_bytes {
                    peak = Some(peak.map_or(used, |p: u64| p.max(used)));
                }
                sampling += sampled.elapsed();
            }
        }
        match outcome {
            StepOutcome::Frame { last: false, .. } => {}
            StepOutcome::Frame { last: true, .. } | StepOutcome::Finished(_) => break,
            StepOutcome::NeedText => bail!("a closed utterance asked for text"),
        }
    }
    let total = start.elapsed();
    let first = first.context("no frame was produced")?;
    let later = utt.frames().saturating_sub(1).max(1) as f64;
    Ok((
        first.as_secs_f64() * 1e3,
        total.saturating_sub(first + sampling).as_secs_f64() * 1e3 / later,
        utt.kv_bytes(),
        peak,
    ))
}

/// Runs the benchmark.
pub fn run(args: &BenchArgs, loaded: LoadedSettings) -> anyhow::Result<ExitCode> {
    if args.frames < 2 || args.runs == 0 {
        bail!("--frames must be at least 2 and --runs at least 1");
    }
    let s = &loaded.settings;
    let probe = SystemProbe::new();
    let resolution = resolve_device(s.device, &probe)?;
    let dtype = select_dtype(resolution.device.backend, s.dtype, &probe);
    let device = resolution.device.to_candle_device()?;
    // The allocator's pool is trimmed first (`clear_cache`): it keeps freed blocks for reuse,
    // which would count load-time temporaries as the model's.
    let used = || {
        CandleOps.clear_cache(&device);
        (!device.is_cpu())
            .then(|| CandleOps.memory_stats(&device).used_bytes)
            .flatten()
    };
    let used_before_load = used();
    let started = Instant::now();
    let (model, voice, ids) = load(args, &loaded, &device, dtype.dtype)?;
    let used_after_load = used();
    let load_seconds = started.elapsed().as_secs_f64();
    let params = GenerationParams {
        cfg_scale: s.cfg_scale,
        diffusion_steps: s.diffusion_steps,
        solver: solver_kind(s.solver),
        eos_enabled: false,
        max_frames_per_token: usize::MAX / (ids.len() + 1),
        max_frames: Some(args.frames),
    };
    run_once(&model, &voice, &ids, &params, 0)?;
    let (mut ttfa, mut per_frame) = (Vec::new(), Vec::new());
    let (mut kv_bytes, mut peak) = (0, None);
    for run in 0..args.runs {
        let (t, f, kv, p) = run_once(&model, &voice, &ids, &params, run as u64 + 1)?;
        ttfa.push(t);
        per_frame.push(f);
        kv_bytes = kv;
        peak = peak.max(p);
    }
    let breakdown = if args.breakdown {
        Some(component_times(&model, &voice, &params, args.runs)?)
    } else {
        None
    };
    let report = BenchReport {
        device: resolution.device.label(),
        device_name: resolution.device.name.clone(),
        dtype: format!("{:?}", dtype.dtype).to_lowercase(),
        steps: s.diffusion_steps,
        cfg_scale: s.cfg_scale,
        frames: args.frames,
        runs: args.runs,
        random_weights: args.random_weights,
        text_tokens: ids.len(),
        ttfa_ms: median(&ttfa),
        per_frame_ms: median(&per_frame),
        real_time_factor: median(&per_frame) / (1e3 * model.frame_samples() as f64 / 24_000.0),
        ttfa_runs_ms: ttfa,
        per_frame_runs_ms: per_frame,
        load_seconds,
        peak_gpu_memory_bytes: peak,
        model_gpu_memory_bytes: used_before_load
            .zip(used_after_load)
            .map(|(before, after)| after.saturating_sub(before)),
        utterance_gpu_memory_bytes: peak
            .zip(used_after_load)
            .map(|(peak, after)| peak.saturating_sub(after)),
        process_rss_bytes: vv_device::ops::host_memory().process_rss_bytes,
        kv_cache_bytes: kv_bytes,
        breakdown_ms: breakdown,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "device {} ({}) dtype {} | steps {} cfg {} | {} frames x {} runs | {} text tokens",
            report.device,
            report.device_name.as_deref().unwrap_or("-"),
            report.dtype,
            report.steps,
            report.cfg_scale,
            report.frames,
            report.runs,
            report.text_tokens
        );
        println!(
            "time to first audio {:.1} ms (median) | per frame {:.1} ms (median) | real-time factor {:.3}",
            report.ttfa_ms, report.per_frame_ms, report.real_time_factor
        );
        if let Some(b) = &report.breakdown_ms {
            println!(
                "breakdown (median ms): text window {:.1} | diffusion {:.1} | decoder {:.1} | feedback {:.1}",
                b.text_window_ms, b.diffusion_ms, b.decoder_ms, b.feedback_ms
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
