//! The utterance state machine: text windows, CFG-guided frames, decoding, feedback, stopping.
//! Its steps run in engine rounds ([`super::round`]), batched with other utterances; each
//! phase of a round is a method here that reads or updates one utterance.

use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::acoustic_decoder::DecoderState;
use crate::error::{ModelError, Result};
use crate::generation::params::{GenerationParams, SPEECH_WINDOW, TEXT_WINDOW};
use crate::generation::voice::PreparedVoice;
use crate::kv_cache::KvCache;
use crate::model::VibeVoiceModel;
use crate::rows::BatchRow;
use crate::sampler::{DiffusionSampler, NoiseSource};
use crate::scheduler::SolverKind;

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The end-of-speech classifier fired (probability > 0.5).
    Eos,
    /// The TTS LM reached `max_position_embeddings` (8192) positions.
    MaxLength,
    /// The safety cap on frames per text token (or `max_frames`) was reached.
    FrameCap,
    /// The input was closed without any text.
    Empty,
}

/// What one step of an utterance did.
#[derive(Debug, Clone)]
pub enum StepOutcome {
    /// A decoded frame of f32 audio; `last` when a cap makes it the final one. A frame that
    /// ends by EOS is not known to be last until its feedback, which opens the next step: that
    /// step then returns [`StepOutcome::Finished`].
    Frame { audio: Vec<f32>, last: bool },
    /// The next text window is incomplete and the input is open: push text, then step again.
    NeedText,
    /// Generation is over.
    Finished(StopReason),
}

/// Per-frame values recorded for parity checks.
#[derive(Debug, Clone)]
pub struct FrameTrace {
    /// Positive condition the frame was sampled with, `[H]`.
    pub pos_condition: Vec<f32>,
    /// Negative condition, `[H]`.
    pub neg_condition: Vec<f32>,
    /// Diffusion output z (the connector's input), `[latent]`.
    pub latent: Vec<f32>,
    /// Positive hidden state after feeding the frame back, `[H]` (absent when capped).
    pub pos_hidden_after: Option<Vec<f32>>,
    /// EOS logit on that hidden state.
    pub eos_logit: Option<f32>,
}

/// A frame whose latent is not yet fed back to the TTS LM: its audio goes out first, the
/// feedback (and the EOS test on its result) opens the next step.
#[derive(Clone)]
struct PendingFeedback {
    /// The frame's latent `z`, a `[1, latent]` f32 row on the diffusion head's device.
    z: BatchRow,
    /// The frame's trace, completed by the feedback.
    trace: Option<FrameTrace>,
}

/// The state a step changes, restored as a whole when a round fails (KV caches, rows and the
/// decoder state are cheap copy-on-write clones).
#[derive(Clone)]
pub(super) struct StepState {
    kv_lm: KvCache,
    kv_pos: KvCache,
    kv_neg: KvCache,
    /// The conditions of the next frame, `[1, hidden]` rows in the TTS LM's dtype.
    h_pos: BatchRow,
    h_neg: BatchRow,
    decoder: DecoderState,
    consumed: usize,
    frames_left_in_window: usize,
    frames: usize,
    stop: Option<StopReason>,
    pending: Option<PendingFeedback>,
}

/// An utterance as it was before a round, to restore when the round fails.
pub(super) struct Snapshot {
    state: StepState,
    traces: usize,
}

/// What an utterance needs before its next frame (the planning phase of a round).
pub(super) enum Plan {
    /// The step ends here with this outcome.
    Done(StepOutcome),
    /// Run this text window (its token ids), then sample a frame.
    Window(Vec<u32>),
    /// Sample a frame.
    Frame,
}

/// One utterance being generated.
pub struct Utterance {
    params: GenerationParams,
    sampler: DiffusionSampler,
    noise: Box<dyn NoiseSource>,
    state: StepState,
    tokens: Vec<u32>,
    input_closed: bool,
    trace: Option<Vec<FrameTrace>>,
}

pub(super) fn row_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
}

impl Utterance {
    /// A new utterance in `voice` (its caches are cloned), with no text yet.
    pub fn new(
        model: &VibeVoiceModel,
        voice: &PreparedVoice,
        params: GenerationParams,
        noise: Box<dyn NoiseSource>,
    ) -> Result<Self> {
        if params.diffusion_steps == 0 {
            return Err(ModelError::InvalidInput(
                "diffusion_steps must be at least 1".into(),
            ));
        }
        if !(params.cfg_scale.is_finite()) {
            return Err(ModelError::InvalidInput("cfg_scale must be finite".into()));
        }
        Ok(Self {
            sampler: model.sampler(params.diffusion_steps, params.solver)?,
            noise,
            state: StepState {
                kv_lm: voice.lm.clone(),
                kv_pos: voice.tts_pos.clone(),
                kv_neg: voice.tts_neg.clone(),
                h_pos: BatchRow::single(&voice.pos_condition),
                h_neg: BatchRow::single(&voice.neg_condition),
                decoder: model.decoder().new_state()?,
                consumed: 0,
                frames_left_in_window: 0,
                frames: 0,
                stop: None,
                pending: None,
            },
            tokens: Vec::new(),
            input_closed: false,
            trace: None,
            params,
        })
    }

    /// Records a [`FrameTrace`] for every frame from now on.
    pub fn enable_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// The recorded traces (empty unless tracing was enabled).
    pub fn traces(&self) -> &[FrameTrace] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// Appends text token ids (ignored once the input is closed).
    pub fn push_tokens(&mut self, ids: &[u32]) {
        if !self.input_closed {
            self.tokens.extend_from_slice(ids);
        }
    }

    /// No more text: the last window may be short, then frames run until a stop.
    pub fn close_input(&mut self) {
        self.input_closed = true;
    }

    /// Whether the input was closed.
    pub fn input_closed(&self) -> bool {
        self.input_closed
    }

    /// Frames produced so far.
    pub fn frames(&self) -> usize {
        self.state.frames
    }

    /// Text tokens the model has read so far (the text windows run): a frame sampled now
    /// speaks text up to this token.
    pub fn consumed_tokens(&self) -> usize {
        self.state.consumed
    }

    /// Text tokens received so far.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Why generation stopped, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.state.stop
    }

    /// Bytes held by the three KV caches.
    pub fn kv_bytes(&self) -> usize {
        self.state.kv_lm.memory_bytes()
            + self.state.kv_pos.memory_bytes()
            + self.state.kv_neg.memory_bytes()
    }

    /// The generation settings.
    pub fn params(&self) -> &GenerationParams {
        &self.params
    }

    /// Advances by at most one frame, alone (a round of one; see
    /// [`step_round`](super::step_round) for several). All or nothing: when the step fails
    /// (e.g. the device ran out of memory) the utterance is exactly as before it, so the caller
    /// may retry; only the noise already drawn is not given back.
    pub fn step(&mut self, model: &VibeVoiceModel) -> Result<StepOutcome> {
        let mut outcomes = super::step_round(model, &mut [self])?;
        outcomes
            .pop()
            .ok_or_else(|| ModelError::InvalidInput("a round of one gave no outcome".into()))
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state.clone(),
            traces: self.traces().len(),
        }
    }

    pub(super) fn restore(&mut self, snapshot: Snapshot) {
        self.state = snapshot.state;
        if let Some(t) = self.trace.as_mut() {
            t.truncate(snapshot.traces);
        }
    }

    /// Takes the pending frame's latent if it is to be fed back now; a frame that would not
    /// fit the TTS LM's positions stops the utterance instead.
    pub(super) fn take_feedback(&mut self, max_positions: usize) -> Option<BatchRow> {
        let pending = self.state.pending.take()?;
        if self.state.kv_pos.len() + 1 > max_positions {
            self.state.stop = Some(StopReason::MaxLength);
            self.record(pending.trace);
            return None;
        }
        let z = pending.z.clone();
        self.state.pending = Some(pending);
        Some(z)
    }

    /// The caches a feedback step extends: (positive, negative) TTS streams.
    pub(super) fn feedback_caches(&mut self) -> (&mut KvCache, &mut KvCache) {
        (&mut self.state.kv_pos, &mut self.state.kv_neg)
    }

    /// Takes the fed-back frame's new conditions and its EOS logit.
    pub(super) fn finish_feedback(
        &mut self,
        h_pos: BatchRow,
        h_neg: BatchRow,
        eos_logit: f32,
    ) -> Result<()> {
        let Some(PendingFeedback { mut trace, .. }) = self.state.pending.take() else {
            return Ok(());
        };
        if let Some(t) = trace.as_mut() {
            t.pos_hidden_after = Some(row_vec(&h_pos.get()?)?);
            t.eos_logit = Some(eos_logit);
        }
        self.state.h_pos = h_pos;
        self.state.h_neg = h_neg;
        if self.params.eos_enabled && eos_logit > 0.0 {
            self.state.stop = Some(StopReason::Eos);
        }
        self.record(trace);
        Ok(())
    }

    /// What the utterance needs before its next frame.
    pub(super) fn plan(&mut self, max_positions: usize) -> Plan {
        if let Some(reason) = self.state.stop {
            return Plan::Done(StepOutcome::Finished(reason));
        }
        if self.state.frames_left_in_window > 0 {
            return Plan::Frame;
        }
        let remaining = self.tokens.len() - self.state.consumed;
        if remaining < TEXT_WINDOW && !self.input_closed {
            return Plan::Done(StepOutcome::NeedText);
        }
        if self.tokens.is_empty() {
            return Plan::Done(self.finish(StopReason::Empty));
        }
        let n = remaining.min(TEXT_WINDOW);
        if n == 0 {
            self.state.frames_left_in_window = SPEECH_WINDOW;
            return Plan::Frame;
        }
        if self.state.kv_pos.len() + n > max_positions {
            return Plan::Done(self.finish(StopReason::MaxLength));
        }
        let start = self.state.consumed;
        Plan::Window(self.tokens[start..start + n].to_vec())
    }

    /// The caches a text window extends: (lower LM, positive TTS stream).
    pub(super) fn window_caches(&mut self) -> (&mut KvCache, &mut KvCache) {
        (&mut self.state.kv_lm, &mut self.state.kv_pos)
    }

    /// Takes a text window's result (`tokens` consumed, the new positive condition).
    pub(super) fn finish_window(&mut self, tokens: usize, h_pos: BatchRow) {
        self.state.h_pos = h_pos;
        self.state.consumed += tokens;
        self.state.frames_left_in_window = SPEECH_WINDOW;
    }

    fn finish(&mut self, reason: StopReason) -> StepOutcome {
        self.state.stop = Some(reason);
        StepOutcome::Finished(reason)
    }

    /// What the frame's sampling needs of this utterance: its conditions and guidance, and a
    /// fresh initial noise vector of `latent` values.
    pub(super) fn frame_inputs(&mut self, latent: usize) -> Result<(FrameInputs<'_>, Vec<f32>)> {
        let noise = self.noise.next_vector(latent)?;
        Ok((
            FrameInputs {
                h_pos: &self.state.h_pos,
                h_neg: &self.state.h_neg,
                cfg_scale: self.params.cfg_scale,
            },
            noise,
        ))
    }

    /// The source of the SDE solver's step noise.
    pub(super) fn step_noise(&mut self) -> &mut dyn NoiseSource {
        self.noise.as_mut()
    }

    /// The sampler, and what frames must share to be sampled together: step count and solver.
    pub(super) fn sampler(&self) -> (&DiffusionSampler, (usize, SolverKind)) {
        (
            &self.sampler,
            (self.params.diffusion_steps, self.params.solver),
        )
    }

    /// The decoder's streaming state.
    pub(super) fn decoder_state(&mut self) -> &mut DecoderState {
        &mut self.state.decoder
    }

    /// Takes a sampled and decoded frame: its latent (fed back next round unless a cap stops
    /// the utterance) and its audio.
    pub(super) fn finish_frame(&mut self, z: BatchRow, audio: Vec<f32>) -> Result<StepOutcome> {
        let trace = match self.trace {
            Some(_) => Some(FrameTrace {
                pos_condition: row_vec(&self.state.h_pos.get()?)?,
                neg_condition: row_vec(&self.state.h_neg.get()?)?,
                latent: row_vec(&z.get()?)?,
                pos_hidden_after: None,
                eos_logit: None,
            }),
            None => None,
        };
        self.state.frames += 1;
        self.state.frames_left_in_window -= 1;
        if self.frames_cap_reached() {
            self.state.stop = Some(StopReason::FrameCap);
            self.record(trace);
        } else {
            self.state.pending = Some(PendingFeedback { z, trace });
        }
        Ok(StepOutcome::Frame {
            audio,
            last: self.state.stop.is_some(),
        })
    }

    /// Whether the safety caps forbid another frame.
    fn frames_cap_reached(&self) -> bool {
        let text_done = self.input_closed && self.state.consumed == self.tokens.len();
        let per_token = self.params.max_frames_per_token.max(1) * self.tokens.len().max(1);
        (text_done && self.state.frames >= per_token)
            || self
                .params
                .max_frames
                .is_some_and(|m| self.state.frames >= m)
    }

    fn record(&mut self, trace: Option<FrameTrace>) {
        if let (Some(list), Some(t)) = (self.trace.as_mut(), trace) {
            list.push(t);
        }
    }
}

/// A frame's sampling inputs, borrowed from its utterance.
pub(super) struct FrameInputs<'a> {
    pub h_pos: &'a BatchRow,
    pub h_neg: &'a BatchRow,
    pub cfg_scale: f32,
}
