//! One timed run of `bench`: N utterances of the benchmark text, started `stagger` apart, all
//! advanced together in batched rounds (as the engine does) until each has its frames; or two
//! such sets (N streams and a baseline count) whose rounds alternate.

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

impl<'a> Streams<'a> {
    /// Runs every stream to its last frame; `seed` + stream index seeds each stream's noise.
    pub(super) fn run(&self, seed: u64) -> anyhow::Result<Run> {
        let mut session = Session::new(self, seed, false)?;
        while !session.finished() {
            session.step()?;
        }
        session.finish()
    }

    /// Runs these streams and `baseline`'s round by round in turn (one round of each, in the
    /// same minutes, so a machine's drift affects both alike) until both are done. First audio
    /// is counted on each set's own rounds. `--stagger-ms` is not supported here.
    pub(super) fn run_interleaved(
        &self,
        baseline: &Streams<'a>,
        seed: u64,
    ) -> anyhow::Result<(Run, Run)> {
        let mut main = Session::new(self, seed, true)?;
        let mut base = Session::new(baseline, seed.wrapping_add(1 << 32), true)?;
        while !main.finished() || !base.finished() {
            for session in [&mut main, &mut base] {
                if !session.finished() {
                    session.step()?;
                }
            }
        }
        Ok((main.finish()?, base.finish()?))
    }
}

/// One run's streams in progress.
struct Session<'s, 'a> {
    streams: &'s Streams<'a>,
    utts: Vec<Utterance>,
    start: Instant,
    started: Vec<Option<Instant>>,
    first: Vec<Option<Duration>>,
    done: Vec<bool>,
    run: Run,
    /// Count first audio on this session's own rounds (interleaved runs), not the wall clock.
    own_clock: bool,
    /// Sum of this session's round times so far.
    own: Duration,
}

impl<'s, 'a> Session<'s, 'a> {
    fn new(streams: &'s Streams<'a>, seed: u64, own_clock: bool) -> anyhow::Result<Self> {
        let model = streams.model;
        CandleOps.synchronize(model.device());
        let utts = (0..streams.count)
            .map(|i| {
                let noise = Box::new(GaussianNoise::new(seed.wrapping_add(i as u64)));
                Utterance::new(model, streams.voice, streams.params.clone(), noise)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            streams,
            utts,
            start: Instant::now(),
            started: vec![None; streams.count],
            first: vec![None; streams.count],
            done: vec![false; streams.count],
            run: Run {
                ttfa_ms: Vec::new(),
                full_rounds_ms: Vec::new(),
                kv_bytes: 0,
                peak_bytes: None,
            },
            own_clock,
            own: Duration::ZERO,
        })
    }

    fn finished(&self) -> bool {
        self.done.iter().all(|&d| d)
    }

    /// Starts the streams that are due, then runs one round of the live ones (or sleeps until
    /// the next start when none is live).
    fn step(&mut self) -> anyhow::Result<()> {
        let (model, ops, count) = (self.streams.model, CandleOps, self.streams.count);
        let device = model.device();
        let now = Instant::now();
        let (start, stagger) = (self.start, self.streams.stagger);
        let due = move |i: usize| start + stagger * i as u32;
        for (i, u) in self.utts.iter_mut().enumerate() {
            if self.started[i].is_none() && due(i) <= now {
                u.push_tokens(self.streams.ids);
                u.close_input();
                self.started[i] = Some(Instant::now());
            }
        }
        let live: Vec<usize> = (0..count)
            .filter(|&i| self.started[i].is_some() && !self.done[i])
            .collect();
        if live.is_empty() {
            let next = (0..count).find(|&i| self.started[i].is_none()).map(due);
            std::thread::sleep(next.map_or(Duration::ZERO, |t| t - now));
            return Ok(());
        }
        let round = Instant::now();
        let mut refs: Vec<&mut Utterance> = self
            .utts
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| live.contains(i))
            .map(|(_, u)| u)
            .collect();
        let outcomes = step_round(model, &mut refs)?;
        ops.synchronize(device);
        let elapsed = round.elapsed();
        self.own += elapsed;
        let mut frames = 0;
        let mut firsts = 0;
        for (&i, outcome) in live.iter().zip(outcomes) {
            match outcome {
                StepOutcome::Frame { last, .. } => {
                    frames += 1;
                    if self.first[i].is_none() {
                        firsts += 1;
                        self.first[i] = match self.own_clock {
                            true => Some(self.own),
                            false => self.started[i].map(|s| s.elapsed()),
                        };
                    }
                    self.done[i] = last;
                }
                StepOutcome::Finished(_) => self.done[i] = true,
                StepOutcome::NeedText => bail!("a closed utterance asked for text"),
            }
        }
        if frames == count && firsts == 0 {
            self.run.full_rounds_ms.push(elapsed.as_secs_f64() * 1e3);
        }
        if !device.is_cpu() {
            if let Some(used) = ops.memory_stats(device).used_bytes {
                let peak = &mut self.run.peak_bytes;
                *peak = Some(peak.map_or(used, |p| p.max(used)));
            }
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<Run> {
        self.run.ttfa_ms = self
            .first
            .iter()
            .map(|f| {
                f.map(|d| d.as_secs_f64() * 1e3)
                    .context("a stream produced no frame")
            })
            .collect::<anyhow::Result<_>>()?;
        self.run.kv_bytes = self.utts.first().map_or(0, Utterance::kv_bytes);
        Ok(self.run)
    }
}
