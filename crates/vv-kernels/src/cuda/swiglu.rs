//! SwiGLU `SiLU(gate) ⊙ up` of a fused gate/up projection as one kernel: candle's form takes
//! two launches on strided halves, each uploading its strides from host memory (which makes
//! the host wait for the GPU at every layer).

use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::cuda_backend::CudaStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::{no_cpu_fwd, start_with_unit_stride, Launch};

/// One thread per output value of `[rows, half]` from `[rows, 2·half]` (gate first).
pub(super) const SOURCE: &str = r#"
#define SWIGLU(NAME, T, LOAD, STORE)                                                      \
extern "C" __global__ void NAME(const T* x, T* out, int rows, int half) {                 \
    int i = blockIdx.x * blockDim.x + threadIdx.x;                                        \
    if (i >= rows * half) return;                                                         \
    int r = i / half, j = i - r * half;                                                   \
    float g = LOAD(x[r * 2 * half + j]);                                                  \
    float u = LOAD(x[r * 2 * half + half + j]);                                           \
    out[i] = STORE(g / (1.f + expf(-g)) * u);                                             \
}
SWIGLU(swiglu_f32, float, load_f32, store_f32)
SWIGLU(swiglu_bf16, unsigned short, load_bf16, store_bf16)
"#;

/// `SiLU(x[:, :h]) ⊙ x[:, h:]` for `x` `[rows, 2h]` on a CUDA device.
pub fn swiglu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Swiglu)
}

struct Swiglu;

impl CustomOp1 for Swiglu {
    fn name(&self) -> &'static str {
        "vv-swiglu"
    }

    no_cpu_fwd!("swiglu", _x _xl);

    fn cuda_fwd(&self, x: &CudaStorage, x_l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (rows, width) = x_l.shape().dims2()?;
        if !x_l.is_contiguous() || width % 2 != 0 {
            bail!("swiglu kernel: input {:?}", x_l.shape());
        }
        let half = width / 2;
        let len = rows * half;
        let launch = Launch {
            name: "swiglu",
            cfg: LaunchConfig::for_num_elems(len as u32),
            inputs: &[(x, start_with_unit_stride(x_l, "input")?)],
            out_len: len,
            table: None,
            ints: &[rows as i32, half as i32],
        };
        // SAFETY: the arguments match the kernel's signature; shapes checked above.
        let out = unsafe { launch.run() }?;
        Ok((out, Shape::from((rows, half))))
    }
}
