//! The utterance state machine: text windows, CFG-guided frames, decoding, feedback, stopping.

use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::acoustic_decoder::DecoderState;
use crate::error::{ModelError, Result};
use crate::generation::params::{GenerationParams, SPEECH_WINDOW, TEXT_WINDOW};
use crate::generation::voice::PreparedVoice;
use crate::kv_cache::KvCache;
use crate::model::VibeVoiceModel;
use crate::placement::Component;
use crate::sampler::{DiffusionSampler, NoiseSource};
use crate::scheduler::{DpmSolver, SolverKind};

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

/// What one call of [`Utterance::step`] did.
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
    /// The frame's latent `z`, `[1, latent]` f32 on the diffusion head's device.
    z: Tensor,
    /// The frame's trace, completed by the feedback.
    trace: Option<FrameTrace>,
}

/// The state a step changes, restored as a whole when a step fails (KV caches and decoder
/// state are cheap copy-on-write clones).
#[derive(Clone)]
struct StepState {
    kv_lm: KvCache,
    kv_pos: KvCache,
    kv_neg: KvCache,
    h_pos: Tensor,
    h_neg: Tensor,
    decoder: DecoderState,
    consumed: usize,
    frames_left_in_window: usize,
    frames: usize,
    stop: Option<StopReason>,
    pending: Option<PendingFeedback>,
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

fn row_vec(t: &Tensor) -> Result<Vec<f32>> {
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
        let solver = DpmSolver::new(
            &model.config().diffusion_head_config,
            params.diffusion_steps,
            params.solver,
        )?;
        Ok(Self {
            sampler: DiffusionSampler::new(model.head(), solver)?,
            noise,
            state: StepState {
                kv_lm: voice.lm.try_clone()?,
                kv_pos: voice.tts_pos.try_clone()?,
                kv_neg: voice.tts_neg.try_clone()?,
                h_pos: voice.pos_condition.clone(),
                h_neg: voice.neg_condition.clone(),
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

    /// Advances by at most one frame. All or nothing: when the step fails (e.g. the device ran
    /// out of memory) the utterance is exactly as before it, so the caller may retry; only the
    /// noise already drawn is not given back.
    pub fn step(&mut self, model: &VibeVoiceModel) -> Result<StepOutcome> {
        let before = self.state.clone();
        let traces = self.traces().len();
        let outcome = self.step_inner(model);
        if outcome.is_err() {
            self.state = before;
            if let Some(t) = self.trace.as_mut() {
                t.truncate(traces);
            }
        }
        outcome
    }

    fn step_inner(&mut self, model: &VibeVoiceModel) -> Result<StepOutcome> {
        if let Some(pending) = self.state.pending.take() {
            self.feed_back(model, pending)?;
        }
        if let Some(reason) = self.state.stop {
            return Ok(StepOutcome::Finished(reason));
        }
        if self.state.frames_left_in_window == 0 {
            if let Some(outcome) = self.begin_window(model)? {
                return Ok(outcome);
            }
        }
        let audio = self.frame(model)?;
        Ok(StepOutcome::Frame {
            audio,
            last: self.state.stop.is_some(),
        })
    }

    /// Consumes the next text window if one is ready; `Some` when the step cannot go on.
    fn begin_window(&mut self, model: &VibeVoiceModel) -> Result<Option<StepOutcome>> {
        let remaining = self.tokens.len() - self.state.consumed;
        if remaining < TEXT_WINDOW && !self.input_closed {
            return Ok(Some(StepOutcome::NeedText));
        }
        if self.tokens.is_empty() {
            return Ok(Some(self.finish(StopReason::Empty)));
        }
        let n = remaining.min(TEXT_WINDOW);
        if n > 0 {
            let max = model.config().decoder_config.max_position_embeddings;
            if self.state.kv_pos.len() + n > max {
                return Ok(Some(self.finish(StopReason::MaxLength)));
            }
            let ids = &self.tokens[self.state.consumed..self.state.consumed + n];
            self.state.h_pos =
                model.text_window(ids, &mut self.state.kv_lm, &mut self.state.kv_pos)?;
            self.state.consumed += n;
        }
        self.state.frames_left_in_window = SPEECH_WINDOW;
        Ok(None)
    }

    fn finish(&mut self, reason: StopReason) -> StepOutcome {
        self.state.stop = Some(reason);
        StepOutcome::Finished(reason)
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

    /// Samples and decodes one frame and returns its audio; its feedback waits for the next
    /// step, so the audio leaves one TTS-LM pass earlier (the time to first audio is text
    /// window + diffusion + decoder).
    fn frame(&mut self, model: &VibeVoiceModel) -> Result<Vec<f32>> {
        let latent_size = model.config().acoustic_vae_dim;
        let x_t = self.noise.next_vector(latent_size)?;
        let step_noise: Option<&mut dyn NoiseSource> = match self.params.solver {
            SolverKind::Sde => Some(self.noise.as_mut()),
            SolverKind::Ode => None,
        };
        let head = model.place(Component::DiffusionHead);
        // z stays on the head's device: the decoder is queued without a host round trip.
        let z = self.sampler.sample(
            &head.put(&self.state.h_pos)?,
            &head.put(&self.state.h_neg)?,
            self.params.cfg_scale,
            &x_t,
            step_noise,
        )?;
        let z_dec = model
            .place(Component::AcousticDecoder)
            .put(&model.denormalize(&z)?.reshape((1, latent_size, 1))?)?;
        let audio = row_vec(&model.decoder.decode_step(&z_dec, &mut self.state.decoder)?)?;
        let trace = match self.trace {
            Some(_) => Some(FrameTrace {
                pos_condition: row_vec(&self.state.h_pos)?,
                neg_condition: row_vec(&self.state.h_neg)?,
                latent: row_vec(&z)?,
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
        Ok(audio)
    }

    fn record(&mut self, trace: Option<FrameTrace>) {
        if let (Some(list), Some(t)) = (self.trace.as_mut(), trace) {
            list.push(t);
        }
    }

    /// Feeds a frame's z to both TTS streams in one batched pass and tests EOS.
    fn feed_back(&mut self, model: &VibeVoiceModel, pending: PendingFeedback) -> Result<()> {
        let PendingFeedback { z, mut trace } = pending;
        let max = model.config().decoder_config.max_position_embeddings;
        if self.state.kv_pos.len() + 1 > max {
            self.state.stop = Some(StopReason::MaxLength);
            self.record(trace);
            return Ok(());
        }
        let (h_pos, h_neg) =
            model.feed_speech(&z, &mut self.state.kv_pos, &mut self.state.kv_neg)?;
        self.state.h_pos = h_pos;
        self.state.h_neg = h_neg;
        if self.params.eos_enabled || trace.is_some() {
            let h = model
                .place(Component::EosClassifier)
                .put(&self.state.h_pos)?;
            let logit = row_vec(&model.eos.logit(&h)?)?
                .first()
                .copied()
                .unwrap_or(f32::NEG_INFINITY);
            if let Some(t) = trace.as_mut() {
                t.pos_hidden_after = Some(row_vec(&self.state.h_pos)?);
                t.eos_logit = Some(logit);
            }
            if self.params.eos_enabled && logit > 0.0 {
                self.state.stop = Some(StopReason::Eos);
            }
        }
        self.record(trace);
        Ok(())
    }
}
