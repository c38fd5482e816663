//! The model thread's compute pool. The engine loop runs *on* a worker of a rayon pool of its
//! own (one worker per core, as candle counts them), so the parallel CPU kernels it starts
//! (candle's, vv-kernels') split their work within that pool and the loop's thread takes a
//! share. Started from an ordinary thread instead, every parallel operation was handed to the
//! global pool across threads and the loop slept on a latch until it came back: a wake-up
//! and a sleep per operation, and idle workers spinning on `sched_yield` meanwhile (a third of
//! the service's CPU samples during a word-by-word stream on the tiny model, two cores;
//! docs/benchmarks.md "Session 10").

use crate::runtime::LoadError;

/// A pool of one worker per core for the engine loop and the kernels it runs.
pub(crate) fn model_pool() -> Result<rayon::ThreadPool, LoadError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(candle_core::utils::get_num_threads())
        .thread_name(|i| format!("vv-model-{i}"))
        .build()
        .map_err(|e| {
            LoadError::Model(vv_model::ModelError::Io {
                path: "model thread pool".into(),
                source: std::io::Error::other(e),
            })
        })
}
