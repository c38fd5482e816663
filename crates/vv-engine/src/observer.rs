//! Hooks through which the engine reports what it does (the server turns them into metrics).

use std::time::Duration;

/// Receives engine measurements; every method has an empty default.
pub trait EngineObserver: Send + Sync {
    /// One engine step (a frame for each utterance in the batch) took `elapsed`.
    fn step(&self, _elapsed: Duration, _batch_size: usize) {}
    /// An utterance waited `wait` between being started and its first engine step.
    fn queue_wait(&self, _wait: Duration) {}
    /// An utterance could not advance because its next text window is incomplete.
    fn text_starved(&self) {}
}

/// An observer that records nothing.
pub struct NoopObserver;

impl EngineObserver for NoopObserver {}
