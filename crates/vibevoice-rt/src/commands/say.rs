//! `vibevoice-rt say`: synthesise one text to a 24 kHz mono 16-bit WAV file and report the time
//! to first audio and the real-time factor.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use vv_device::probe::SystemProbe;
use vv_engine::Runtime;
use vv_model::generation::{warmup, GenerationParams, StepOutcome, Utterance};
use vv_model::sampler::GaussianNoise;
use vv_model::text::IncrementalTokenizer;
use vv_server::config::LoadedSettings;
use vv_server::engine_options::{engine_options, solver_kind};

use crate::cli::ServiceArgs;

/// Options of `say`.
#[derive(Debug, Args)]
pub struct SayArgs {
    /// The text to speak.
    pub text: String,
    /// Output WAV file.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Voice name (a preset of the voices directory); the default voice when unset.
    #[arg(long)]
    pub voice: Option<String>,
    /// Service options (model, tokenizer, device, steps, cfg, seed, ...).
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Runs `say`.
pub fn run(args: &SayArgs, loaded: LoadedSettings) -> anyhow::Result<ExitCode> {
    if args.text.trim().is_empty() {
        bail!("the text is empty: nothing to say");
    }
    let s = &loaded.settings;
    let opts = engine_options(s);
    let runtime = Runtime::load(&opts, &SystemProbe::new())?;
    let voice_name = runtime
        .info()
        .resolve_voice(args.voice.as_deref().or(s.default_voice.as_deref()))?;
    let voice = runtime
        .voice(&voice_name)
        .with_context(|| format!("voice {voice_name} is not loaded"))?;
    let model = runtime.model();
    if opts.warmup {
        // As the service does before it is ready, so the time to first audio printed below is
        // the warm model's.
        warmup(model, voice)?;
    }
    let params = GenerationParams {
        cfg_scale: s.cfg_scale,
        diffusion_steps: s.diffusion_steps,
        solver: solver_kind(s.solver),
        max_frames_per_token: s.limits.max_frames_per_token,
        // Random weights' EOS classifier fires at random: as in the service, it is not asked.
        eos_enabled: !opts.random_weights,
        ..GenerationParams::default()
    };
    let seed = s.seed.unwrap_or_else(rand_seed);
    let start = Instant::now();
    let mut text = IncrementalTokenizer::new();
    let mut ids = text.push(runtime.tokenizer(), &args.text)?;
    ids.extend(text.finish(runtime.tokenizer())?);
    let mut utt = Utterance::new(model, voice, params, Box::new(GaussianNoise::new(seed)))?;
    utt.push_tokens(&ids);
    utt.close_input();
    let mut audio = Vec::new();
    let mut ttfa = None;
    let reason = loop {
        match utt.step(model)? {
            StepOutcome::Frame { audio: frame, .. } => {
                ttfa.get_or_insert_with(|| start.elapsed());
                audio.extend(frame);
            }
            StepOutcome::Finished(reason) => break reason,
            StepOutcome::NeedText => bail!("a closed utterance asked for text"),
        }
    };
    let elapsed = start.elapsed().as_secs_f64();
    vv_audio::wav::write_wav_file(&args.output, &audio, model.sample_rate())
        .with_context(|| format!("writing {}", args.output.display()))?;
    let seconds = audio.len() as f64 / f64::from(model.sample_rate());
    println!(
        "wrote {} ({seconds:.2} s of audio, voice {voice_name}, seed {seed}, stop: {reason:?})",
        args.output.display()
    );
    println!(
        "time to first audio {:.0} ms | real-time factor {:.3} ({elapsed:.2} s for {seconds:.2} s) | device {}",
        ttfa.map_or(f64::NAN, |t| t.as_secs_f64() * 1e3),
        if seconds > 0.0 { elapsed / seconds } else { f64::NAN },
        runtime.info().device.device.label()
    );
    Ok(ExitCode::SUCCESS)
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
