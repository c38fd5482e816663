//! `vibevoice-rt bench`: time to first audio and time per frame of fixed-length generations
//! (EOS off), medians over several runs after a warm-up run, on the resolved device; with
//! `--streams N`, N utterances advanced together in batched rounds as the engine does.

mod load;
mod rss;
mod streams;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde::Serialize;
use vv_device::dtype::select_dtype;
use vv_device::ops::{BackendOps, CandleOps};
use vv_device::probe::SystemProbe;
use vv_device::resolve::resolve_device;
use vv_model::generation::{component_times, ComponentTimes, GenerationParams};
use vv_server::config::LoadedSettings;
use vv_server::engine_options::solver_kind;

use crate::cli::ServiceArgs;
use rss::peak_rss_bytes;
use streams::Streams;

/// Options of `bench` (`--random-weights` is a service option: the real 0.5B architecture with
/// random weights, no download; speed does not depend on weight values).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Frames per generation (133 ms of audio each).
    #[arg(long, default_value_t = 24)]
    pub frames: usize,
    /// Measured runs (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Concurrent utterances, advanced together in batched rounds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub streams: u32,
    /// Milliseconds between the starts of consecutive streams.
    #[arg(long, default_value_t = 0)]
    pub stagger_ms: u64,
    /// Also run this many streams as a baseline, their rounds alternating with the measured
    /// streams' rounds in the same runs (so a noisy machine's drift affects both alike), and
    /// report the baseline and the per-frame ratio. First audio is then counted on each set's
    /// own rounds. Not with --stagger-ms.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub baseline_streams: Option<u32>,
    /// Milliseconds of rest before each measured run (the device and this thread idle, as a
    /// service finds them at a request after a pause); not counted in any time.
    #[arg(long, default_value_t = 0)]
    pub idle_ms: u64,
    /// Voice preset file (default: the default voice of the voices directory; with
    /// --random-weights, voices/en-Davis_man.pt).
    #[arg(long, value_name = "FILE")]
    pub voice_file: Option<PathBuf>,
    /// Also time each piece of a round separately (text windows, diffusion, decoder, feedback),
    /// each for all the streams.
    #[arg(long)]
    pub breakdown: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Service options (device, dtype, model, tokenizer, steps, cfg, random weights, ...).
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// The measurement.
#[derive(Debug, Serialize)]
struct BenchReport {
    device: String,
    device_name: Option<String>,
    dtype: String,
    /// Format of the large matrices' weights: `none`, `bf16` or `int8` (`--quantize`).
    quantize: &'static str,
    steps: usize,
    cfg_scale: f32,
    frames: usize,
    runs: usize,
    random_weights: bool,
    text_tokens: usize,
    /// Concurrent utterances.
    streams: usize,
    /// Milliseconds between stream starts.
    stagger_ms: u64,
    /// Milliseconds of rest before each measured run.
    idle_ms: u64,
    /// Median over runs of the median over streams of the time from a stream's start to its
    /// first decoded frame.
    ttfa_ms: f64,
    /// 95th percentile over all streams of all runs of the same.
    ttfa_p95_ms: f64,
    /// Median over runs of the median wall time of a round in which all streams produce a
    /// frame (first frames left out).
    per_frame_ms: f64,
    /// Median over runs of the mean of those rounds (with one stream: the mean time per frame
    /// after the first, the measurement before `--streams` existed).
    per_frame_mean_ms: f64,
    /// 95th percentile of those rounds over all runs.
    round_p95_ms: f64,
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
    /// `peak_gpu_memory_bytes` minus the memory in use after loading: the streams' caches and
    /// activations, captured graphs, plus what the allocator keeps pooled (absent on CPU).
    utterance_gpu_memory_bytes: Option<u64>,
    /// Process resident memory after the runs.
    process_rss_bytes: Option<u64>,
    /// Process resident memory after loading the model and voice, before the first run.
    loaded_rss_bytes: Option<u64>,
    /// Largest process resident memory so far (Linux `VmHWM`: the load's peak included).
    peak_rss_bytes: Option<u64>,
    /// KV-cache bytes of one utterance at the end of a run.
    kv_cache_bytes: usize,
    /// Median time of each piece of a frame (with --breakdown).
    breakdown_ms: Option<ComponentTimes>,
    /// With --baseline-streams: the baseline's stream count, its `ttfa_ms` and `per_frame_ms`
    /// (measured in the same runs, rounds alternating), and `per_frame_ms` over the baseline's.
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<Baseline>,
}

/// The baseline set of an interleaved run (`--baseline-streams`).
#[derive(Debug, Serialize)]
struct Baseline {
    streams: usize,
    ttfa_ms: f64,
    per_frame_ms: f64,
    per_frame_runs_ms: Vec<f64>,
    /// `per_frame_ms` of the measured streams over the baseline's.
    per_frame_ratio: f64,
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

/// Nearest-rank percentile `p` (0-100).
fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Runs the benchmark.
pub fn run(args: &BenchArgs, loaded: LoadedSettings) -> anyhow::Result<ExitCode> {
    if args.frames < 2 || args.runs == 0 {
        bail!("--frames must be at least 2 and --runs at least 1");
    }
    if args.baseline_streams.is_some() && args.stagger_ms > 0 {
        bail!("--baseline-streams does not combine with --stagger-ms");
    }
    let s = &loaded.settings;
    let probe = SystemProbe::new();
    let resolution = resolve_device(s.device, &probe)?;
    let dtype = select_dtype(resolution.device.backend, s.dtype, &probe);
    let quantize = s.quantize.resolve(resolution.device.backend, dtype.dtype)?;
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
    let (model, voice, ids) = load::load(
        args.voice_file.as_ref(),
        &loaded,
        &device,
        (dtype.dtype, quantize.packing),
    )?;
    let used_after_load = used();
    let loaded_rss_bytes = vv_device::ops::host_memory().process_rss_bytes;
    let load_seconds = started.elapsed().as_secs_f64();
    let params = GenerationParams {
        cfg_scale: s.cfg_scale,
        diffusion_steps: s.diffusion_steps,
        solver: solver_kind(s.solver),
        eos_enabled: false,
        max_frames_per_token: usize::MAX / (ids.len() + 1),
        max_frames: Some(args.frames),
    };
    let streams = Streams {
        model: &model,
        voice: &voice,
        ids: &ids,
        params: &params,
        count: args.streams as usize,
        stagger: Duration::from_millis(args.stagger_ms),
    };
    let baseline_streams = args.baseline_streams.map(|count| Streams {
        count: count as usize,
        ..streams
    });
    let timed = |seed: u64| match &baseline_streams {
        Some(baseline) => streams
            .run_interleaved(baseline, seed)
            .map(|(run, base)| (run, Some(base))),
        None => streams.run(seed).map(|run| (run, None)),
    };
    timed(0)?;
    let (mut ttfa, mut per_frame, mut per_frame_mean) = (Vec::new(), Vec::new(), Vec::new());
    let (mut all_ttfa, mut all_rounds) = (Vec::new(), Vec::new());
    let (mut kv_bytes, mut peak) = (0, None);
    let (mut base_ttfa, mut base_per_frame) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        std::thread::sleep(Duration::from_millis(args.idle_ms));
        let (r, base) = timed((run as u64 + 1) * 1_000_003)?;
        if let Some(base) = base {
            base_ttfa.push(median(&base.ttfa_ms));
            base_per_frame.push(median(&base.full_rounds_ms));
        }
        ttfa.push(median(&r.ttfa_ms));
        per_frame.push(median(&r.full_rounds_ms));
        per_frame_mean.push(mean(&r.full_rounds_ms));
        all_ttfa.extend(r.ttfa_ms);
        all_rounds.extend(r.full_rounds_ms);
        kv_bytes = r.kv_bytes;
        peak = peak.max(r.peak_bytes);
    }
    let breakdown = if args.breakdown {
        Some(component_times(
            &model,
            &voice,
            &params,
            args.runs,
            args.streams as usize,
        )?)
    } else {
        None
    };
    let per_frame_ms = median(&per_frame);
    let report = BenchReport {
        device: resolution.device.label(),
        device_name: resolution.device.name.clone(),
        dtype: format!("{:?}", dtype.dtype).to_lowercase(),
        quantize: quantize.packing.name(),
        steps: s.diffusion_steps,
        cfg_scale: s.cfg_scale,
        frames: args.frames,
        runs: args.runs,
        random_weights: s.random_weights,
        text_tokens: ids.len(),
        streams: args.streams as usize,
        stagger_ms: args.stagger_ms,
        idle_ms: args.idle_ms,
        ttfa_ms: median(&ttfa),
        ttfa_p95_ms: percentile(&all_ttfa, 95.0),
        per_frame_ms,
        per_frame_mean_ms: median(&per_frame_mean),
        round_p95_ms: percentile(&all_rounds, 95.0),
        real_time_factor: per_frame_ms / (1e3 * model.frame_samples() as f64 / 24_000.0),
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
        loaded_rss_bytes,
        peak_rss_bytes: peak_rss_bytes(),
        kv_cache_bytes: kv_bytes,
        breakdown_ms: breakdown,
        baseline: baseline_streams.map(|b| Baseline {
            streams: b.count,
            ttfa_ms: median(&base_ttfa),
            per_frame_ms: median(&base_per_frame),
            per_frame_ratio: per_frame_ms / median(&base_per_frame),
            per_frame_runs_ms: base_per_frame,
        }),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "device {} ({}) dtype {} quantize {} | steps {} cfg {} | {} streams x {} frames x {} \
             runs | {} text tokens",
            report.device,
            report.device_name.as_deref().unwrap_or("-"),
            report.dtype,
            report.quantize,
            report.steps,
            report.cfg_scale,
            report.streams,
            report.frames,
            report.runs,
            report.text_tokens
        );
        println!(
            "time to first audio {:.1} ms (median; p95 {:.1}) | per frame {:.1} ms (median \
             round; mean {:.1}, p95 {:.1}) | real-time factor {:.3}",
            report.ttfa_ms,
            report.ttfa_p95_ms,
            report.per_frame_ms,
            report.per_frame_mean_ms,
            report.round_p95_ms,
            report.real_time_factor
        );
        let mib = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{} MiB", b >> 20));
        println!(
            "resident memory: {} after loading, {} after the runs, {} at the peak",
            mib(report.loaded_rss_bytes),
            mib(report.process_rss_bytes),
            mib(report.peak_rss_bytes)
        );
        if let Some(b) = &report.baseline {
            println!(
                "baseline ({} streams, rounds alternating): time to first audio {:.1} ms | per \
                 frame {:.1} ms | per-frame ratio {:.3}",
                b.streams, b.ttfa_ms, b.per_frame_ms, b.per_frame_ratio
            );
        }
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
    use super::{median, percentile};

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), 19.0);
        assert_eq!(percentile(&v, 100.0), 20.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
