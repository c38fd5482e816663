//! Shared plumbing of the CUDA graphs (the diffusion sampling loop, the decoder step): a cache
//! of captured graphs per model component, capture on the device's stream, and the switch that
//! turns a component's graphs off for good after a failed capture.
//!
//! A graph replays fixed device addresses, so each captured piece of work reads and writes
//! persistent buffers owned with its graph; intermediates are allocated and freed inside the
//! graph (stream-ordered allocation). candle uploads a strided op's dims and strides (and an
//! index op's) from host memory at each launch, which a replay would read after it is freed:
//! captures run under candle's graph parameter cache, which keeps those vectors in device
//! buffers filled by the eager run before the capture, and makes any other host upload inside
//! captured code fail the capture (the work then runs kernel by kernel) instead of replaying
//! freed memory.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::cuda_backend::cudarc::driver::{sys, CudaGraph};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, Device, Tensor};

/// An instantiated, uploaded graph.
pub struct Graph(CudaGraph);

// SAFETY: the graph handles are plain driver objects that may be used from any thread once the
// context is bound (cudarc binds it in `launch`); `GraphCache`'s mutex gives exclusive access,
// which is all CUDA requires of graph objects.
unsafe impl Send for Graph {}

impl Graph {
    /// Copies each `(buffer, value)` pair's value into the graph's persistent input buffer,
    /// then queues one replay on the stream the graph was captured from.
    pub fn replay(&self, inputs: &[(&Tensor, &Tensor)]) -> candle_core::Result<()> {
        for (buffer, value) in inputs {
            buffer.slice_set(value, 0, 0)?;
        }
        self.0.launch().w()
    }
}

/// Runs `record` once eagerly (loading every kernel and cuBLAS state, and filling the parameter
/// cache, outside the capture), then again while capturing the device's stream, and
/// instantiates what was captured.
pub fn capture<E: From<candle_core::Error>>(
    cuda: &CudaDevice,
    mut record: impl FnMut() -> Result<(), E>,
) -> Result<Graph, E> {
    let _parameter_cache = cuda.enable_cuda_graph_htod_cache();
    record()?;
    Device::Cuda(cuda.clone()).synchronize()?;
    let stream = cuda.cuda_stream();
    stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
        .w()?;
    let recorded = record();
    // The capture must end whatever happened, to give the stream back.
    let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0)).w();
    recorded?;
    let graph =
        graph?.ok_or_else(|| candle_core::Error::Msg("the captured CUDA graph is empty".into()))?;
    graph.upload().w()?;
    Ok(Graph(graph))
}

struct Slots<K, V> {
    captured: HashMap<K, V>,
    /// Set after a failed capture: the component runs kernel by kernel from then on.
    failed: bool,
    /// Cleared by the user's setting (`VibeVoiceModel::set_cuda_graphs`).
    enabled: bool,
}

/// The graphs (with their buffers `V`) captured for one model component, keyed by what the
/// capture depends on, shared by the component's clones.
pub struct GraphCache<K, V> {
    slots: Arc<Mutex<Slots<K, V>>>,
    /// What the graphs hold, for logs.
    what: &'static str,
}

impl<K, V> Clone for GraphCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            slots: Arc::clone(&self.slots),
            what: self.what,
        }
    }
}

impl<K, V> fmt::Debug for GraphCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let (n, what) = (slots.captured.len(), self.what);
        write!(f, "GraphCache({what}: {n} graphs)")
    }
}

impl<K: Eq + Hash + fmt::Debug, V> GraphCache<K, V> {
    /// An empty cache for graphs of `what` (named in logs).
    pub fn new(what: &'static str) -> Self {
        Self {
            slots: Arc::new(Mutex::new(Slots {
                captured: HashMap::new(),
                failed: false,
                enabled: true,
            })),
            what,
        }
    }

    /// Turns graph replay on or off (captured graphs are kept while off).
    pub fn set_enabled(&self, enabled: bool) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .enabled = enabled;
    }

    /// Replays the graph for `key`, capturing it first if needed, while holding the cache's
    /// lock. `None` when graphs are off for this component (by setting or after a failure); a failed capture turns them off
    /// with one warning, so the caller runs the work kernel by kernel.
    pub fn replay<R, E: fmt::Display>(
        &self,
        key: K,
        capture: impl FnOnce() -> Result<V, E>,
        replay: impl FnOnce(&mut V) -> Result<R, E>,
    ) -> Result<Option<R>, E> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.failed || !slots.enabled {
            return Ok(None);
        }
        let captured = match slots.captured.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => match capture() {
                Ok(v) => {
                    tracing::info!(key = ?entry.key(), "captured the {} as a CUDA graph", self.what);
                    entry.insert(v)
                }
                Err(e) => {
                    slots.failed = true;
                    tracing::warn!(
                        error = %e,
                        "could not capture the {} as a CUDA graph; it runs kernel by kernel \
                         (slower)",
                        self.what
                    );
                    return Ok(None);
                }
            },
        };
        replay(captured).map(Some)
    }
}
