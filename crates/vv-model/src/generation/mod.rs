//! Generation: the per-utterance state machine of the spec's streaming loop (section 4).
//!
//! An [`Utterance`] holds the three KV streams (lower LM, positive and negative TTS LM), the
//! decoder's streaming state, the text tokens received so far and the noise source. Each
//! [`step_round`] advances any number of utterances by at most one 3200-sample frame each,
//! through forwards batched over all of them ([`Utterance::step`] is a round of one), so frames
//! are handed out as soon as they exist and a caller can cancel between any two frames. Text
//! may be appended while it runs; when an utterance's next 5-token window is incomplete and its
//! input is still open, its step returns [`StepOutcome::NeedText`] instead of running ahead.

mod params;
mod profile;
mod round;
mod utterance;
mod voice;
mod warmup;

pub use params::{GenerationParams, SPEECH_WINDOW, TEXT_WINDOW};
pub use profile::{component_times, ComponentTimes};
pub use round::step_round;
pub use utterance::{FrameTrace, StepOutcome, StopReason, Utterance};
pub use voice::PreparedVoice;
pub use warmup::{calibrate, warmup};
