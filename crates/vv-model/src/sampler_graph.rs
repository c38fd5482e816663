//! A frame's sampling loop as a CUDA graph: captured on first use for each step count and
//! conditions dtype, then replayed for every later frame, so the ~70 kernel launches of each
//! solver step cost one graph launch per frame. On an H100 a frame is bound by candle's
//! per-launch host overhead, not by GPU work (docs/benchmarks.md).
//!
//! The graph reads persistent input buffers (the conditions, and the noise with the guidance
//! in one buffer so a frame uploads one host vector) and writes a persistent output; a replay
//! copies the frame's inputs in, launches, and copies the latent out. Only the ODE solver is
//! captured (the SDE solver draws host noise every step). Shared plumbing: `crate::cuda_graph`.

use candle_core::{CudaDevice, DType, Device, Tensor};

use crate::cuda_graph::{self, Graph};
use crate::error::Result;
use crate::sampler::{DiffusionSampler, FrameBatch};
use crate::scheduler::SolverKind;

/// What one graph was captured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    steps: usize,
    conditions: DType,
}

/// A captured loop and the buffers it reads and writes.
pub(crate) struct Captured {
    graph: Graph,
    positive: Tensor,
    negative: Tensor,
    /// `[1, 2·latent]`: the initial noise, then the guidance scale repeated `latent` times.
    noise_and_guidance: Tensor,
    out: Tensor,
    /// The timestep rows the graph reads (`[steps·2, H]`), kept alive with it.
    _embeddings: Tensor,
}

/// The sampling loops captured for one diffusion head.
pub(crate) type GraphCache = cuda_graph::GraphCache<Key, Captured>;

/// Samples one frame through a graph, returning z `[1, latent]` on the device; `None` when
/// graphs do not apply (not CUDA, SDE solver, no fused kernels, shapes the eager path should
/// report on, or graphs switched off), so the caller runs the eager loop.
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
    // Without the fused kernels the head's biases are broadcast adds, which a graph cannot
    // replay (the head computes in f32).
    let usable = sampler.solver().kind() == SolverKind::Ode
        && crate::cuda_kernels::supported(DType::F32)
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
    head.graphs().replay(
        key,
        || capture(sampler, cuda, key),
        |c| {
            let mut host = Vec::with_capacity(2 * latent);
            host.extend_from_slice(noise);
            host.resize(2 * latent, guidance);
            let inputs = [
                (&c.positive, &positive.reshape((1, h))?),
                (&c.negative, &negative.reshape((1, h))?),
                (
                    &c.noise_and_guidance,
                    &Tensor::from_vec(host, (1, 2 * latent), head.device())?,
                ),
            ];
            c.graph.replay(&inputs)?;
            // A device copy, queued behind the graph: the caller may read it whenever it needs.
            Ok(c.out.copy()?)
        },
    )
}
/// Captures the loop on the device's stream. Every input has its full shape (guidance
/// `[1, latent]`, timestep rows `[steps·2, H]`), since captured code cannot hold broadcasts.
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
    let graph = cuda_graph::capture(cuda, || {
        let z = sampler.run_frame(&batch, &guidance, &embeddings, &mut [], &mut |_| {})?;
        Ok(out.slice_set(&z, 0, 0)?)
    })?;
    Ok(Captured {
        graph,
        positive,
        negative,
        noise_and_guidance,
        out,
        _embeddings: embeddings,
    })
}
