//! Hooks through which the engine reports what it does (the server turns them into metrics).

use std::time::Duration;

/// Receives engine measurements; every method has an empty default.
pub trait EngineObserver: Send + Sync {
    /// One engine round (a frame for each utterance in the batch) took `elapsed`.
    fn step(&self, _elapsed: Duration, _batch_size: usize) {}
    /// An utterance waited `wait` between being started and its first engine step.
    fn queue_wait(&self, _wait: Duration) {}
    /// An utterance could not advance because its next text window is incomplete.
    fn text_starved(&self) {}
    /// After a round (and at start): utterances admitted at once, and the real-time headroom
    /// at the current batch size (1 − round time / frame duration; `None` before any round).
    fn capacity(&self, _capacity: usize, _headroom: Option<f64>) {}
    /// After a round, and when an utterance ends: the bytes of KV cache the active utterances
    /// own (their buffers or pages; voice prompt pages they share are not counted).
    fn kv_cache(&self, _bytes: usize) {}
}

/// An observer that records nothing.
pub struct NoopObserver;

impl EngineObserver for NoopObserver {}
