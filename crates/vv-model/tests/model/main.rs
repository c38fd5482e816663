//! vv-model's integration tests, one module per component, in one test binary (one link
//! instead of one per file): golden parity against the reference's fixtures, whole
//! generations, batching, quantized weights.

mod common;

mod batching;
mod generation;
mod parity_acoustic_decoder;
mod parity_connector_eos;
mod parity_diffusion;
mod parity_lm;
mod quantized;
