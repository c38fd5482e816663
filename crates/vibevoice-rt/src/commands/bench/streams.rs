//! One timed run of `bench`: N utterances of the benchmark text, started `stagger` apart, all
//! advanced together in batched rounds (as the engine does) until each has its frames.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vv_device::ops::{BackendOps, CandleOps};
use vv_model::generation::{step_round, GenerationParams, PreparedVoice, StepOutcome, Utterance};
use vv_model::sampler::GaussianNoise;
use vv_model::VibeVoiceModel;

/// What one run measured.
pub(super) struct Run {
    /// Per stream: its start (text pushed) to its first decoded frame, ms.
    pub ttfa_ms: Vec<f64>,
    /// Wall time of every round in which all N streams produced a frame (their first frames
    /// left out), ms.
    pub full_rounds_ms: Vec<f64>,
    /// KV-cache bytes of the first stream at its end.
    pub kv_bytes: usize,
    /// Largest device memory in use seen after a round (GPU only).
    pub peak_bytes: Option<u64>,
}

/// The streams of a run.
pub(super) struct Streams<'a> {
    pub model: &'a VibeVoiceModel,
    pub voice: &'a PreparedVoice,
    pub ids: &'a [u32],
    pub params: &'a GenerationParams,
    pub count: usize,
    pub stagger: Duration,
}

impl Streams<'_> {
    /// Runs every stream to its last frame; `seed` + stream index seeds each stream's noise.
    pub(super) fn run(&self, seed: u64) -> anyhow::Result<Run> {
        let (model, ops) = (self.model, CandleOps);
        let device = model.device();
        ops.synchronize(device);
        let mut utts = (0..self.count)
            .map(|i| {
                let noise = Box::new(GaussianNoise::new(seed.wrapping_add(i as u64)));
                Utterance::new(model, self.voice, self.params.clone(), noise)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let start = Instant::now();
        let due = |i: usize| start + self.stagger * i as u32;
        let mut started: Vec<Option<Instant>> = vec![None; self.count];
        let mut first: Vec<Option<Duration>> = vec![None; self.count];
        let mut done = vec![false; self.count];
        let mut run = Run {
            ttfa_ms: Vec::new(),
            full_rounds_ms: Vec::new(),
            kv_bytes: 0,
            peak_bytes: None,
        };
        while done.iter().any(|d| !d) {
            let now = Instant::now();
            for (i, u) in utts.iter_mut().enumerate() {
                if started[i].is_none() && due(i) <= now {
                    u.push_tokens(self.ids);
                    u.close_input();
                    started[i] = Some(Instant::now());
                }
            }
            let live: Vec<usize> = (0..self.count)
                .filter(|&i| started[i].is_some() && !done[i])
                .collect();
            if live.is_empty() {
                let next = (0..self.count).find(|&i| started[i].is_none()).map(due);
                std::thread::sleep(next.map_or(Duration::ZERO, |t| t - now));
                continue;
            }
            let round = Instant::now();
            let mut refs: Vec<&mut Utterance> = utts
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| live.contains(i))
                .map(|(_, u)| u)
                .collect();
            let outcomes = step_round(model, &mut refs)?;
            ops.synchronize(device);
            let elapsed = round.elapsed();
            let mut frames = 0;
            let mut firsts = 0;
            for (&i, outcome) in live.iter().zip(outcomes) {
                match outcome {
                    StepOutcome::Frame { last, .. } => {
                        frames += 1;
                        if first[i].is_none() {
                            firsts += 1;
                            first[i] = started[i].map(|s| s.elapsed());
                        }
                        done[i] = last;
                    }
                    StepOutcome::Finished(_) => done[i] = true,
                    StepOutcome::NeedText => bail!("a closed utterance asked for text"),
                }
            }
            if frames == self.count && firsts == 0 {
                run.full_rounds_ms.push(elapsed.as_secs_f64() * 1e3);
            }
            if !device.is_cpu() {
                if let Some(used) = ops.memory_stats(device).used_bytes {
                    run.peak_bytes = Some(run.peak_bytes.map_or(used, |p| p.max(used)));
                }
            }
        }
        run.ttfa_ms = first
            .iter()
            .map(|f| {
                f.map(|d| d.as_secs_f64() * 1e3)
                    .context("a stream produced no frame")
            })
            .collect::<anyhow::Result<_>>()?;
        run.kv_bytes = utts.first().map_or(0, Utterance::kv_bytes);
        Ok(run)
    }
}
