//! A frame's sampling loop as a CUDA graph: captured on first use for each step count and
//! conditions dtype, then replayed for every later frame, so the ~70 kernel launches of each
//! solver step cost one graph launch per frame. On an H100 a frame is bound by candle's
//! per-launch host overhead, not by GPU work (docs/benchmarks.md).
//!
//! The graph reads persistent input buffers (the conditions, and the noise with the guidance
//! in one buffer so a frame uploads one host vector) and writes a persistent output; a replay
//! copies the frame's inputs in, launches, and copies the latent out. Intermediates are allocated and freed inside the graph (stream-ordered allocation).
//! Only the ODE solver is captured (the SDE solver draws host noise every step). If capturing
//! fails, graphs are switched off for the process with one warning and the eager loop runs.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::cuda_backend::cudarc::driver::{sys, CudaGraph};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, DType, Device, Tensor};

use crate::error::Result;
use crate::sampler::{DiffusionSampler, FrameBatch};
use crate::scheduler::SolverKind;

/// Set after a failed capture: every later frame uses the eager loop.
static DISABLED: AtomicBool = AtomicBool::new(false);

/// What one graph was captured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    steps: usize,
    conditions: DType,
}

/// A captured loop and the buffers it reads and writes.
struct Captured {
    graph: CudaGraph,
    positive: Tensor,
    negative: Tensor,
    /// `[1, 2·latent]`: the initial noise, then the guidance scale repeated `latent` times.
    noise_and_guidance: Tensor,
    out: Tensor,
    /// The timestep rows the graph reads (`[steps·2, H]`), kept alive with it.
    _embeddings: Tensor,
}

// SAFETY: the graph handles are plain driver objects that may be used from any thread once
// the context is bound (cudarc binds it in `launch`); `GraphCache`'s mutex gives exclusive
// access, which is all CUDA requires of graph objects.
unsafe impl Send for Captured {}

/// The graphs captured for one diffusion head, shared by its clones.
#[derive(Clone, Default)]
pub(crate) struct GraphCache(Arc<Mutex<HashMap<Key, Captured>>>);

impl fmt::Debug for GraphCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        write!(f, "GraphCache({n} graphs)")
    }
}

/// Samples one frame through a graph, returning z `[1, latent]` on the device; `None` when
/// graphs do not apply (not CUDA, SDE solver, shapes the eager path should report on, or
/// graphs switched off), so the caller runs the eager loop.
pub(crate) fn sample(
    sampler: &DiffusionSampler,
    positive: &Tensor,
    negative: &Tensor,
    guidance: f32,
    noise: &[f32],
) -> Result<Option<Tensor>> {
    let head = sampler.head();
    let Device::Cuda(cuda) = head.device() else {
        return Ok(None);
    };
    let (h, latent) = (head.hidden_size(), head.latent_size());
    let usable = sampler.solver().kind() == SolverKind::Ode
        && !DISABLED.load(Ordering::Relaxed)
        && noise.len() == latent
        && positive.elem_count() == h
        && negative.elem_count() == h
        && positive.dtype() == negative.dtype()
        && positive.device().same_device(head.device())
        && negative.device().same_device(head.device());
    if !usable {
        return Ok(None);
    }
    let key = Key {
        steps: sampler.solver().num_steps(),
        conditions: positive.dtype(),
    };
    let mut graphs = head
        .graphs()
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let c = match graphs.entry(key) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => match capture(sampler, cuda, key) {
            Ok(captured) => {
                tracing::info!(
                    steps = key.steps,
                    "captured the diffusion sampling loop as a CUDA graph"
                );
                entry.insert(captured)
            }
            Err(e) => {
                DISABLED.store(true, Ordering::Relaxed);
                tracing::warn!(
                    error = %e,
                    "could not capture the diffusion sampling loop as a CUDA graph; it runs \
                     kernel by kernel (slower)"
                );
                return Ok(None);
            }
        },
    };
    let device = head.device();
    c.positive.slice_set(&positive.reshape((1, h))?, 0, 0)?;
    c.negative.slice_set(&negative.reshape((1, h))?, 0, 0)?;
    let mut host = Vec::with_capacity(2 * latent);
    host.extend_from_slice(noise);
    host.resize(2 * latent, guidance);
    c.noise_and_guidance
        .slice_set(&Tensor::from_vec(host, (1, 2 * latent), device)?, 0, 0)?;
    c.graph.launch().w()?;
    // A device copy, queued behind the graph: the caller may read it whenever it needs to.
    Ok(Some(c.out.copy()?))
}

/// Runs the loop once eagerly (loading every kernel and cuBLAS state outside the capture),
/// then captures it on the device's stream. Every input has its full shape (guidance
/// `[1, latent]`, timestep rows `[steps·2, H]`): candle uploads a broadcast op's strides from
/// temporary host memory, which a graph would replay as a copy from freed memory.
fn capture(sampler: &DiffusionSampler, cuda: &CudaDevice, key: Key) -> Result<Captured> {
    let head = sampler.head();
    let device = head.device();
    let (h, latent) = (head.hidden_size(), head.latent_size());
    let positive = Tensor::zeros((1, h), key.conditions, device)?;
    let negative = Tensor::zeros((1, h), key.conditions, device)?;
    let noise_and_guidance = Tensor::ones((1, 2 * latent), DType::F32, device)?;
    // Views of one buffer; with one row both are contiguous.
    let noise = noise_and_guidance.narrow(1, 0, latent)?;
    let guidance = noise_and_guidance.narrow(1, latent, latent)?;
    let embeddings = sampler.timestep_rows(2)?;
    let out = Tensor::zeros((1, latent), DType::F32, device)?;
    let batch = FrameBatch {
        positive: &positive,
        negative: &negative,
        guidance: &[1.0],
        noise: &noise,
    };
    sampler.run_frame(&batch, &guidance, &embeddings, &mut [], &mut |_| {})?;
    device.synchronize()?;
    let stream = cuda.cuda_stream();
    stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
        .w()?;
    let recorded = sampler
        .run_frame(&batch, &guidance, &embeddings, &mut [], &mut |_| {})
        .and_then(|z| Ok(out.slice_set(&z, 0, 0)?));
    // The capture must end whatever happened, to give the stream back.
    let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0)).w();
    recorded?;
    let graph =
        graph?.ok_or_else(|| candle_core::Error::Msg("the captured CUDA graph is empty".into()))?;
    graph.upload().w()?;
    Ok(Captured {
        graph,
        positive,
        negative,
        noise_and_guidance,
        out,
        _embeddings: embeddings,
    })
}
