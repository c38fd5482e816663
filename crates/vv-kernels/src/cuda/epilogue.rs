//! A matmul's epilogue `act(y + bias) + residual` as one kernel, in place of up to three candle
//! launches (and the host upload of the broadcast bias's strides).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::cuda_backend::CudaStorage;
use candle_core::{
    bail, CpuStorage, CustomOp1, Layout, Result, Shape, Storage, StorageRef, Tensor,
};

use super::{no_cpu_fwd, start_with_unit_stride, Launch};

/// One thread per value; absent inputs are flagged (their pointer is then `y`, never read).
pub(super) const SOURCE: &str = r#"
#define EPILOGUE(NAME, T, LOAD, STORE)                                                    \
extern "C" __global__ void NAME(const T* y, const T* bias, const T* res, T* out, int len, \
                                int cols, int has_bias, int gelu, int has_res) {          \
    int i = blockIdx.x * blockDim.x + threadIdx.x;                                        \
    if (i >= len) return;                                                                 \
    float v = LOAD(y[i]);                                                                 \
    if (has_bias) v += LOAD(bias[i % cols]);                                              \
    if (gelu) v = 0.5f * v * (1.f + erff(v * 0.7071067811865476f));                       \
    if (has_res) v += LOAD(res[i]);                                                       \
    out[i] = STORE(v);                                                                    \
}
EPILOGUE(epilogue_f32, float, load_f32, store_f32)
EPILOGUE(epilogue_bf16, unsigned short, load_bf16, store_bf16)
"#;

/// `gelu?(y + bias) + residual` for `y` `[m, n]` (contiguous), `bias` `[n]`, `residual`
/// `[m, n]`, all of `y`'s dtype on its CUDA device.
pub fn apply(
    y: &Tensor,
    bias: Option<&Tensor>,
    gelu: bool,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let op = Epilogue {
        bias: bias.map(Tensor::contiguous).transpose()?,
        gelu,
        residual: residual.map(Tensor::contiguous).transpose()?,
    };
    y.contiguous()?.apply_op1_no_bwd(&op)
}

/// The CUDA storage of an optional input and its start offset; `None` and `y_start` when the
/// input is absent (its pointer is then `y`, never read: its flag is 0).
fn cuda_part<'a>(
    part: &'a Option<(StorageRef<'_>, &Layout)>,
    y_start: usize,
) -> Result<(Option<&'a CudaStorage>, usize)> {
    match part {
        Some((storage, layout)) => match &**storage {
            Storage::Cuda(s) => Ok((Some(s), start_with_unit_stride(layout, "epilogue input")?)),
            _ => bail!("epilogue kernel: an input is not on the GPU"),
        },
        None => Ok((None, y_start)),
    }
}

struct Epilogue {
    bias: Option<Tensor>,
    gelu: bool,
    residual: Option<Tensor>,
}

impl CustomOp1 for Epilogue {
    fn name(&self) -> &'static str {
        "vv-epilogue"
    }

    no_cpu_fwd!("epilogue", _x _xl);

    fn cuda_fwd(&self, y: &CudaStorage, y_l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (m, n) = y_l.shape().dims2()?;
        let shapes_ok = self.bias.as_ref().is_none_or(|b| b.dims() == [n])
            && self.residual.as_ref().is_none_or(|r| r.dims() == [m, n]);
        let dtypes_ok = [&self.bias, &self.residual]
            .iter()
            .all(|t| t.as_ref().is_none_or(|t| t.dtype() == y.dtype()));
        if !y_l.is_contiguous() || !shapes_ok || !dtypes_ok {
            bail!(
                "epilogue kernel: y {:?}, bias and residual of another shape or dtype",
                y_l.shape()
            );
        }
        let len = m * n;
        let y_start = start_with_unit_stride(y_l, "y")?;
        let bias = self.bias.as_ref().map(Tensor::storage_and_layout);
        let residual = self.residual.as_ref().map(Tensor::storage_and_layout);
        let (bias_s, bias_start) = cuda_part(&bias, y_start)?;
        let (res_s, res_start) = cuda_part(&residual, y_start)?;
        let inputs = [
            (y, y_start),
            (bias_s.unwrap_or(y), bias_start),
            (res_s.unwrap_or(y), res_start),
        ];
        let launch = Launch {
            name: "epilogue",
            cfg: LaunchConfig::for_num_elems(len as u32),
            inputs: &inputs,
            out_len: len,
            table: None,
            ints: &[
                len as i32,
                n as i32,
                i32::from(bias_s.is_some()),
                i32::from(self.gelu),
                i32::from(res_s.is_some()),
            ],
        };
        // SAFETY: the arguments match the kernel's signature; shapes checked above.
        let out = unsafe { launch.run() }?;
        Ok((out, Shape::from((m, n))))
    }
}
