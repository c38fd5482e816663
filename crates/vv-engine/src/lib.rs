//! The runtime around the model: a dedicated model thread per device fed by bounded channels,
//! utterance slots with fail-fast admission, cancellation at frame boundaries, metric hooks.
//! No async runtime: clients read events through runtime-agnostic channels.

mod command;
pub mod error;
pub mod events;
pub mod handle;
pub mod info;
pub mod observer;
pub mod outbox;
pub mod params;
pub mod slots;

pub use error::EngineError;
pub use events::{FinishReason, UtteranceEvent};
pub use handle::{EngineHandle, UtteranceHandle};
pub use info::{EngineInfo, ModelSummary};
pub use observer::{EngineObserver, NoopObserver};
pub use params::SynthesisParams;
