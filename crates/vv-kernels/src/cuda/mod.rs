//! Fused CUDA kernels, compiled at run time with NVRTC (no CUDA toolkit at build time): on
//! the GPU a frame is bound by candle's per-launch host overhead, so a kernel that replaces
//! several candle ops saves their launches. Each kernel accumulates in f32 for f32 and bf16
//! storage. Without NVRTC (or for other dtypes) callers keep their candle-op form.

pub mod attention;
pub mod columns;
pub mod depthwise;
pub mod epilogue;
pub mod kv_table;
pub mod rms_norm;
pub mod rope_append;
pub mod swiglu;

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, WrapErr};
use candle_core::{bail, DType, Layout, Result};
use half::bf16;

/// Module name under which the device caches the compiled kernels.
const MODULE: &str = "vv_fused_kernels";

/// Conversions between storage types and f32, shared by every kernel (no CUDA headers: NVRTC
/// may run where none are installed).
const PRELUDE: &str = r#"
#define VV_NEG_INF __uint_as_float(0xff800000u)
__device__ __forceinline__ float load_f32(float v) { return v; }
__device__ __forceinline__ float store_f32(float v) { return v; }
__device__ __forceinline__ float load_bf16(unsigned short v) {
    return __uint_as_float(((unsigned int)v) << 16);
}
__device__ __forceinline__ unsigned short store_bf16(float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}
"#;

/// The PTX of every kernel, compiled once per process; the error text if NVRTC failed.
fn ptx() -> std::result::Result<&'static str, &'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        let source = [
            PRELUDE,
            depthwise::SOURCE,
            attention::SOURCE,
            columns::SOURCE,
            epilogue::SOURCE,
            rms_norm::SOURCE,
            rope_append::SOURCE,
            swiglu::SOURCE,
        ]
        .concat();
        nvrtc::compile_ptx(source)
            .map(|p| p.to_src())
            .map_err(|e| e.to_string())
    })
    .as_deref()
    .map_err(String::as_str)
}

/// Whether the fused kernels can run for `dtype`: it has kernels and NVRTC compiled them (a
/// failure is logged once, and callers keep their candle-op form).
pub fn supported(dtype: DType) -> bool {
    static WARNED: OnceLock<()> = OnceLock::new();
    if !matches!(dtype, DType::F32 | DType::BF16) {
        return false;
    }
    match ptx() {
        Ok(_) => true,
        Err(e) => {
            WARNED.get_or_init(|| {
                tracing::warn!(
                    error = e,
                    "NVRTC could not compile the fused CUDA kernels; the model uses candle ops \
                     for the decoder's depthwise convolution, RoPE and KV appends, attention, \
                     matmul epilogues and SwiGLU (slower)"
                )
            });
            false
        }
    }
}

/// The name of kernel `name` for `dtype` (suffix `_f32` or `_bf16`).
fn kernel_name(name: &str, dtype: DType) -> Result<String> {
    match dtype {
        DType::F32 => Ok(format!("{name}_f32")),
        DType::BF16 => Ok(format!("{name}_bf16")),
        other => bail!("fused CUDA kernel {name}: no kernel for {other:?}"),
    }
}

/// The compiled PTX, or NVRTC's error.
fn compiled() -> Result<&'static str> {
    ptx().map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// One launch of a fused kernel, whose arguments are, in order: its inputs (all of one dtype,
/// each a storage and the start offset of its data), a new output of `out_len` elements, the
/// i64 KV table if any, then the integer arguments.
pub struct Launch<'a> {
    /// Kernel name without its dtype suffix.
    pub name: &'static str,
    pub cfg: LaunchConfig,
    pub inputs: &'a [(&'a CudaStorage, usize)],
    pub out_len: usize,
    pub table: Option<(&'a CudaStorage, usize)>,
    pub ints: &'a [i32],
}

impl Launch<'_> {
    /// Queues the kernel for the inputs' dtype on their device and returns its output.
    ///
    /// # Safety
    /// The arguments must match the kernel's signature, and the sizes, offsets, integers and
    /// table must keep every access the kernel makes in bounds.
    pub unsafe fn run(&self) -> Result<CudaStorage> {
        let Some((first, _)) = self.inputs.first() else {
            bail!("fused CUDA kernel {}: no inputs", self.name);
        };
        let kernel = kernel_name(self.name, first.dtype())?;
        // SAFETY: forwarded from the caller.
        match first.dtype() {
            DType::F32 => unsafe { self.typed::<f32>(first.device(), &kernel) },
            DType::BF16 => unsafe { self.typed::<bf16>(first.device(), &kernel) },
            other => bail!("fused CUDA kernel {}: no kernel for {other:?}", self.name),
        }
    }

    /// [`Launch::run`] with inputs of element type `T`, running the compiled `kernel`.
    unsafe fn typed<T: CudaDType + DeviceRepr>(
        &self,
        dev: &CudaDevice,
        kernel: &str,
    ) -> Result<CudaStorage> {
        let inputs = self
            .inputs
            .iter()
            .map(|(s, start)| Ok(s.as_cuda_slice::<T>()?.slice(*start..)))
            .collect::<Result<Vec<_>>>()?;
        let table = match self.table {
            Some((s, start)) => Some(s.as_cuda_slice::<i64>()?.slice(start..)),
            None => None,
        };
        let func = dev.get_or_load_custom_func(kernel, MODULE, compiled()?)?;
        let mut b = func.builder();
        // SAFETY: every element is written by the kernel before it is read.
        let out = unsafe { dev.alloc::<T>(self.out_len)? };
        for input in &inputs {
            b.arg(input);
        }
        b.arg(&out);
        if let Some(table) = &table {
            b.arg(table);
        }
        for i in self.ints {
            b.arg(i);
        }
        // SAFETY: the caller guarantees the arguments and bounds (see `run`).
        unsafe { b.launch(self.cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
    }
}

/// The start offset of a layout whose last dimension is contiguous, or an error.
fn start_with_unit_stride(l: &Layout, what: &str) -> Result<usize> {
    match l.stride().last() {
        Some(1) => Ok(l.start_offset()),
        _ => bail!("fused CUDA kernel: {what} needs a contiguous last dimension"),
    }
}

/// The `cpu_fwd` of a CUDA-only op with one `storage layout` pair of (underscored) names per
/// input: candle's trait requires one, and the CPU never gets here (it has its own kernels).
macro_rules! no_cpu_fwd {
    ($what:literal $(, $storage:ident $layout:ident)+) => {
        fn cpu_fwd(
            &self,
            $($storage: &CpuStorage, $layout: &Layout),+
        ) -> Result<(CpuStorage, Shape)> {
            bail!(concat!("the CUDA ", $what, " kernel has no CPU form"))
        }
    };
}
pub(crate) use no_cpu_fwd;
