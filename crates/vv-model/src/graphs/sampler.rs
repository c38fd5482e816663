//! A round's sampling loop as CUDA graphs: captured on first use (or at warm-up) for each step
//! count, conditions dtype and batch-size bucket, then replayed for every later batch of frames,
//! so the ~70 kernel launches of each solver step cost one graph launch per round. On an H100 a
//! frame is bound by candle's per-launch host overhead, not by GPU work (docs/benchmarks.md).
//!
//! The graph reads persistent input buffers (the conditions, and the noise with the guidance in
//! one buffer so a round uploads one host vector) and writes a persistent output; a replay
//! copies the batch's inputs in, launches, and copies the latents out. Padding rows sample from
//! stale conditions and zero noise; their latents are dropped. Only the ODE solver is captured
//! (the SDE solver draws host noise every step).

use candle_core::{CudaDevice, DType, Device, Tensor};
use vv_kernels::graph::{self, Graph};

use super::bucket;
use crate::error::Result;
use crate::sampler::{DiffusionSampler, FrameBatch};
use crate::scheduler::SolverKind;

/// What one graph was captured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    steps: usize,
    conditions: DType,
    bucket: usize,
}

/// A captured loop and the buffers it reads and writes.
pub(crate) struct Captured {
    graph: Graph,
    /// `[bucket, H]` each.
    positive: Tensor,
    negative: Tensor,
    /// `[2, bucket, latent]`: the initial noise rows, then each row's guidance scale repeated
    /// `latent` times.
    noise_and_guidance: Tensor,
    /// `[bucket, latent]` f32.
    out: Tensor,
    /// The timestep rows the graph reads (`[steps·2·bucket, H]`), kept alive with it.
    _embeddings: Tensor,
}

/// The sampling loops captured for one diffusion head.
pub(crate) type GraphCache = graph::GraphCache<Key, Captured>;

/// Samples `B` frames through the graph of their bucket: conditions `[B, H]` on the head's
/// device, one guidance scale per frame, initial noise `B·latent` values (row-major); returns
/// z `[B, latent]` on the device. `None` when graphs do not apply (not CUDA, SDE solver, no
/// fused kernels, shapes the eager path should report on, a batch above every bucket, or graphs
/// switched off), so the caller runs the eager loop.
pub(crate) fn sample(
    sampler: &DiffusionSampler,
    positive: &Tensor,
    negative: &Tensor,
    guidance: &[f32],
    noise: &[f32],
) -> Result<Option<Tensor>> {
    let head = sampler.head();
    let Device::Cuda(cuda) = head.device() else {
        return Ok(None);
    };
    let (h, latent) = (head.hidden_size(), head.latent_size());
    let batch = guidance.len();
    let Some(size) = bucket(batch) else {
        return Ok(None);
    };
    // Without the fused kernels the head's biases are broadcast adds, which a graph cannot
    // replay (the head computes in f32).
    let usable = sampler.solver().kind() == SolverKind::Ode
        && vv_kernels::cuda::supported(DType::F32)
        && noise.len() == batch * latent
        && positive.dims() == [batch, h]
        && negative.dims() == [batch, h]
        && positive.dtype() == negative.dtype()
        && positive.device().same_device(head.device())
        && negative.device().same_device(head.device());
    if !usable {
        return Ok(None);
    }
    let key = Key {
        steps: sampler.solver().num_steps(),
        conditions: positive.dtype(),
        bucket: size,
    };
    head.graphs().replay(
        key,
        || capture(sampler, cuda, key),
        |c| {
            let mut host = Vec::with_capacity(2 * size * latent);
            host.extend_from_slice(noise);
            host.resize(size * latent, 0.0);
            for &g in guidance {
                host.extend(std::iter::repeat_n(g, latent));
            }
            host.resize(2 * size * latent, 1.0);
            let inputs = [
                (&c.positive, positive),
                (&c.negative, negative),
                (
                    &c.noise_and_guidance,
                    &Tensor::from_vec(host, (2, size, latent), head.device())?,
                ),
            ];
            c.graph.replay(&inputs)?;
            // A device copy, queued behind the graph: the caller may read it whenever it needs.
            Ok(c.out.narrow(0, 0, batch)?.copy()?)
        },
    )
}

/// Captures the loop for `key.bucket` frames on the device's stream. Every input has its full
/// shape (guidance `[bucket, latent]`, timestep rows `[steps·2·bucket, H]`), since captured
/// code cannot hold broadcasts.
fn capture(sampler: &DiffusionSampler, cuda: &CudaDevice, key: Key) -> Result<Captured> {
    let head = sampler.head();
    let device = head.device();
    let (h, latent, size) = (head.hidden_size(), head.latent_size(), key.bucket);
    let positive = Tensor::zeros((size, h), key.conditions, device)?;
    let negative = Tensor::zeros((size, h), key.conditions, device)?;
    let noise_and_guidance = Tensor::ones((2, size, latent), DType::F32, device)?;
    // Views of one buffer, each contiguous.
    let noise = noise_and_guidance.get(0)?;
    let guidance = noise_and_guidance.get(1)?;
    let embeddings = sampler.timestep_rows(2 * size)?;
    let out = Tensor::zeros((size, latent), DType::F32, device)?;
    let ones = vec![1.0; size];
    let batch = FrameBatch {
        positive: &positive,
        negative: &negative,
        guidance: &ones,
        noise: &noise,
    };
    let graph = graph::capture(cuda, || {
        let z = sampler.run_frame(&batch, &guidance, &embeddings, &mut [], &mut |_| {})?;
        Ok::<_, crate::ModelError>(out.slice_set(&z, 0, 0)?)
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
