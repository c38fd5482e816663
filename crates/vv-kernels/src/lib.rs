//! Fused compute kernels for the model's hot paths, below the model crate: CPU f32 kernels
//! (`cpu`: skinny matmuls, epilogues, the depthwise convolution, chosen by the CPU's features at
//! run time), CUDA kernels compiled at run time with NVRTC (`cuda`: attention and RoPE/KV
//! appends over a device KV table, the depthwise convolution, epilogues, SwiGLU) and the
//! capture/replay plumbing of CUDA graphs (`graph`). Model code decides when to use them.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda")]
pub mod graph;
