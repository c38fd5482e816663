//! Calibration at start-up: batched rounds of the default voice at growing batch sizes seed
//! the capacity model with measured round times (and, on CUDA, capture the graphs of each
//! size's bucket before the first request needs them). What the rounds leave mapped on the
//! device (the graph memory of every bucket, the pool's freed blocks) is given back after
//! them: a graph maps its memory again when a batch of its size next runs, so the service
//! holds what its load uses, not what the largest calibration round needed.

use std::time::Duration;

use tracing::info;
use vv_device::{BackendOps, CandleOps};
use vv_model::generation::{calibrate, GenerationParams};
use vv_model::graphs::{bucket, BATCH_BUCKETS};

use crate::capacity::{CapacityModel, SlotPolicy};
use crate::options::EngineOptions;
use crate::runtime::Runtime;

/// The batch sizes to calibrate: every bucket up to the auto limit (stopping once a round
/// overruns the admission budget), or with fixed slots, on CUDA with graph warm-up, the
/// buckets up to the slot count's.
fn sizes(runtime: &Runtime, capacity: &CapacityModel, opts: &EngineOptions) -> Vec<usize> {
    let upto = |n: usize| -> Vec<usize> {
        let last = bucket(n).unwrap_or(n);
        BATCH_BUCKETS.into_iter().filter(|&b| b <= last).collect()
    };
    match capacity.policy() {
        SlotPolicy::Auto { limit, .. } => upto(limit),
        SlotPolicy::Fixed { slots: n }
            if runtime.device.is_cuda() && opts.cuda_graphs && opts.cuda_graph_warmup =>
        {
            upto(n)
        }
        SlotPolicy::Fixed { .. } => Vec::new(),
    }
}

/// Runs the calibration rounds and seeds `capacity` with them.
pub(crate) fn run(
    runtime: &Runtime,
    capacity: &CapacityModel,
    opts: &EngineOptions,
) -> vv_model::Result<()> {
    let voice = &runtime.voices[&runtime.info.default_voice];
    let params = GenerationParams {
        cfg_scale: opts.cfg_scale as f32,
        diffusion_steps: opts.diffusion_steps,
        solver: opts.solver,
        ..GenerationParams::default()
    };
    let allowed = match capacity.policy() {
        SlotPolicy::Auto { headroom, .. } => capacity.budget().mul_f64(headroom),
        SlotPolicy::Fixed { .. } => Duration::MAX,
    };
    for batch in sizes(runtime, capacity, opts) {
        let took = calibrate(&runtime.model, voice, &params, batch)?;
        capacity.seed(batch, took);
        info!(
            batch,
            round_ms = took.as_secs_f64() * 1e3,
            "calibration: mean round time"
        );
        if took > allowed {
            break;
        }
    }
    if runtime.device.is_cuda() {
        let ops = CandleOps;
        let before = ops.memory_stats(&runtime.device);
        ops.clear_cache(&runtime.device);
        let after = ops.memory_stats(&runtime.device);
        let mib = |v: Option<u64>| v.map(|b| b >> 20);
        info!(
            used_mib_before = mib(before.used_bytes),
            used_mib = mib(after.used_bytes),
            graph_reserved_mib_before = mib(before.cuda_allocators.graph_reserved_bytes),
            graph_reserved_mib = mib(after.cuda_allocators.graph_reserved_bytes),
            pool_reserved_mib = mib(after.cuda_allocators.pool_reserved_bytes),
            "calibration: device memory given back"
        );
    }
    Ok(())
}
