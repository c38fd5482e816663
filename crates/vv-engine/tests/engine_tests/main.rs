//! vv-engine's integration tests in one test binary: the engine with the tiny model, its
//! fault seams, quantized loading.

mod support;

mod compute_pool;
mod engine;
mod faults;
mod quantize;
