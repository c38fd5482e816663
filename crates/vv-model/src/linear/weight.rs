//! A linear layer's weight, dense or packed, and the load-time rule that decides which weights
//! are packed (see `docs/quantization.md`).
//!
//! **Format.** Packed weights are bf16 (round to nearest even) or int8, symmetric, with one f32
//! scale per block of 16 consecutive inputs of an output row (the block's `absmax / 127`);
//! activations stay f32 and the CPU kernels widen (and scale) the weights in registers.
//!
//! **Which matrices.** With [`Packing::large`] (what `--quantize` loads), a matrix is packed
//! when it has at least [`PACK_MIN_ELEMENTS`] elements (1 MiB of f32) and, while streaming
//! (one frame per step), sees at most `SKINNY_MAX_ROWS` rows per stream: every Qwen2, diffusion
//! head, connector and classifier matrix of that size (token rows), and the decoder's stem and
//! the matrices of its early stages (1 and 8 time steps per frame). Smaller matrices stay f32:
//! they live in the caches. Where the CPU runs the tall kernel (x86-64: AMX-BF16 tiles, or FMAs
//! on AVX-512F or AVX2: `vv_kernels::cpu::tall_kernel_available`) every matrix that sees at least
//! [`TALL_MIN_ROWS`] rows per stream (the decoder's stages 1-6 and their upsamplers, 8 to 3200
//! time steps per frame), whatever its size, is stored in bf16 for the tall kernel (with
//! `int8` too: there the arithmetic decides, not the bytes);
//! elsewhere the later stages (40 to 3200 time steps, compute-bound GEMMs) stay f32 for
//! candle's GEMM. [`Packing::every_matrix`] packs every matrix whatever its size or height,
//! the worst case, for accuracy checks on small fixtures. Under `int8`, the matrices whose
//! rounding errors the free-running loop amplifies most ([`Packing::sensitive`]: the Qwen2
//! attention projections, the connector and the EOS classifier, ~12% of the LM's bytes) are
//! stored in bf16, which keeps every component within the CUDA bf16 path's errors.

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};
use vv_kernels::cpu::{
    eligible, tall_kernel_available, CpuSlice, PackedWeight, TallWeight, WeightFormat,
    SKINNY_MAX_ROWS,
};

/// Matrices with at least this many elements (1 MiB of f32) are packed by [`Packing::large`].
pub const PACK_MIN_ELEMENTS: usize = 1 << 18;

/// Matrices that see at least this many rows per stream while streaming are stored for the
/// tall kernel where it runs (the decoder's stage 1 and later): from 8 rows the skinny
/// kernels are bound by their arithmetic, while the tall kernel still reads the bf16 weights at
/// about memory speed (measured: 4096 × 1024 at 8 rows, 0.44 ms against 1.6 ms per block pair).
pub const TALL_MIN_ROWS: usize = 8;

/// A linear layer's weight `[out, in]` (PyTorch layout).
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// A tensor on any device, in any dtype.
    Dense(Tensor),
    /// Packed for the CPU's skinny kernels (f32 activations on the CPU only).
    Packed(Arc<PackedWeight>),
    /// bf16 laid out for the CPU's tall kernel (f32 activations on the CPU only).
    Tall(Arc<TallWeight>),
}

impl From<Tensor> for LinearWeight {
    fn from(t: Tensor) -> Self {
        Self::Dense(t)
    }
}

impl LinearWeight {
    /// `(out, in)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Self::Dense(t) => t.dims2(),
            Self::Packed(p) => Ok(p.dims()),
            Self::Tall(t) => Ok(t.dims()),
        }
    }

    /// The packed format, `None` for a dense weight.
    pub fn format(&self) -> Option<WeightFormat> {
        match self {
            Self::Dense(_) => None,
            Self::Packed(p) => Some(p.format()),
            Self::Tall(_) => Some(WeightFormat::Bf16),
        }
    }
}

/// Which weights are stored packed, and how: chosen once at load (see `crate::quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Packing {
    format: Option<WeightFormat>,
    every_matrix: bool,
}

impl Packing {
    /// Every weight dense (the checkpoint's values in the compute dtype).
    pub const NONE: Self = Self {
        format: None,
        every_matrix: false,
    };

    /// The production rule: matrices of at least [`PACK_MIN_ELEMENTS`] elements that see at
    /// most `SKINNY_MAX_ROWS` rows per stream while streaming.
    pub fn large(format: WeightFormat) -> Self {
        Self {
            format: Some(format),
            every_matrix: false,
        }
    }

    /// Every matrix and embedding table, whatever its size or height (accuracy checks on
    /// fixtures whose matrices are all small).
    pub fn every_matrix(format: WeightFormat) -> Self {
        Self {
            format: Some(format),
            every_matrix: true,
        }
    }

    /// The format packed weights use (`None`: nothing is packed).
    pub fn format(&self) -> Option<WeightFormat> {
        self.format
    }

    /// The packing for a matrix whose rounding errors the model amplifies most (the Qwen2
    /// attention projections, the connector and the EOS classifier): `int8` stores it in bf16
    /// instead, any other packing is unchanged (see `docs/quantization.md`).
    pub fn sensitive(self) -> Self {
        let format = match self.format {
            Some(WeightFormat::Int8) => Some(WeightFormat::Bf16),
            f => f,
        };
        Self { format, ..self }
    }

    /// `none`, `bf16` or `int8`.
    pub fn name(&self) -> &'static str {
        match self.format {
            None => "none",
            Some(WeightFormat::Bf16) => "bf16",
            Some(WeightFormat::Int8) => "int8",
        }
    }

    /// The format `t` is packed in when it sees `rows` rows per stream while streaming; only
    /// f32 tensors on the CPU are packed.
    fn applies(&self, t: &Tensor, rows: usize) -> Option<WeightFormat> {
        let chosen =
            self.every_matrix || (t.elem_count() >= PACK_MIN_ELEMENTS && rows <= SKINNY_MAX_ROWS);
        self.format.filter(|_| eligible(&[t]) && chosen)
    }

    /// Whether `t` is stored for the tall kernel: a packing format chosen, `t` an f32 CPU
    /// matrix that sees at least [`TALL_MIN_ROWS`] rows per stream while streaming, and the
    /// kernel available in this process.
    fn tall(&self, t: &Tensor, rows: usize) -> bool {
        self.format.is_some() && eligible(&[t]) && rows >= TALL_MIN_ROWS && tall_kernel_available()
    }

    /// The weight `w` (`[out, in]`) as stored under this packing when it sees `rows` rows per
    /// stream while streaming (1 for token rows). A packed weight's f32 tensor is dropped here.
    pub(crate) fn weight(&self, w: Tensor, rows: usize) -> Result<LinearWeight> {
        let tall = self.tall(&w, rows);
        let format = match self.applies(&w, rows) {
            Some(format) => format,
            None if tall => WeightFormat::Bf16,
            None => return Ok(LinearWeight::Dense(w)),
        };
        let (n, k) = w.dims2()?;
        let w = w.contiguous()?;
        let values = CpuSlice::new(&w)?;
        Ok(match tall {
            true => LinearWeight::Tall(Arc::new(TallWeight::pack(values.get()?, n, k))),
            false => {
                let packed = PackedWeight::pack(values.get()?, n, k, format);
                LinearWeight::Packed(Arc::new(packed))
            }
        })
    }

    /// An embedding table as stored under this packing: bf16 when its size qualifies (rows are
    /// widened back to f32 on lookup; exact for a bf16 checkpoint), else unchanged.
    pub(crate) fn table(&self, t: Tensor) -> Result<Tensor> {
        match self.applies(&t, 1) {
            Some(_) => t.to_dtype(DType::BF16),
            None => Ok(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn matrix(n: usize, k: usize) -> Tensor {
        Tensor::randn(0f32, 1., (n, k), &Device::Cpu).unwrap()
    }

    #[test]
    fn large_packs_big_skinny_matrices_only() {
        let p = Packing::large(WeightFormat::Int8);
        let big = matrix(512, 512);
        assert_eq!(big.elem_count(), PACK_MIN_ELEMENTS);
        let packed = p.weight(big.clone(), 1).unwrap();
        assert_eq!(packed.format(), Some(WeightFormat::Int8));
        assert_eq!(packed.dims().unwrap(), (512, 512));
        // Fed tall inputs while streaming: bf16 for the tall kernel where it runs, else dense;
        // from TALL_MIN_ROWS rows the tall kernel where it runs, else the skinny packing.
        let tall = p.weight(big.clone(), SKINNY_MAX_ROWS + 1).unwrap();
        let eight = p.weight(big.clone(), TALL_MIN_ROWS).unwrap();
        let seven = p.weight(big, TALL_MIN_ROWS - 1).unwrap();
        assert!(matches!(seven, LinearWeight::Packed(_)));
        match tall_kernel_available() {
            true => {
                assert!(matches!(tall, LinearWeight::Tall(_)));
                assert!(matches!(eight, LinearWeight::Tall(_)));
            }
            false => {
                assert!(matches!(tall, LinearWeight::Dense(_)));
                assert!(matches!(eight, LinearWeight::Packed(_)));
            }
        }
        // Too small for the skinny kernels: dense.
        assert!(p.weight(matrix(511, 512), 1).unwrap().format().is_none());
        assert!(Packing::NONE
            .weight(matrix(512, 512), 1)
            .unwrap()
            .format()
            .is_none());
    }

    #[test]
    fn every_matrix_packs_small_and_tall_but_never_other_dtypes() {
        let p = Packing::every_matrix(WeightFormat::Bf16);
        let small = p.weight(matrix(3, 5), 1000).unwrap();
        assert_eq!(small.format(), Some(WeightFormat::Bf16));
        let f64 = matrix(3, 5).to_dtype(DType::F64).unwrap();
        assert!(p.weight(f64, 1).unwrap().format().is_none());
        assert_eq!(p.table(matrix(4, 8)).unwrap().dtype(), DType::BF16);
        let kept = Packing::large(WeightFormat::Bf16)
            .table(matrix(4, 8))
            .unwrap();
        assert_eq!(kept.dtype(), DType::F32);
    }

    #[test]
    fn sensitive_matrices_take_bf16_under_int8_only() {
        let int8 = Packing::large(WeightFormat::Int8).sensitive();
        assert_eq!(int8, Packing::large(WeightFormat::Bf16));
        let every = Packing::every_matrix(WeightFormat::Int8).sensitive();
        assert_eq!(every, Packing::every_matrix(WeightFormat::Bf16));
        for p in [Packing::NONE, Packing::large(WeightFormat::Bf16)] {
            assert_eq!(p.sensitive(), p);
        }
        let w = int8.weight(matrix(512, 512), 1).unwrap();
        assert_eq!(w.format(), Some(WeightFormat::Bf16));
    }

    #[test]
    fn names() {
        assert_eq!(Packing::NONE.name(), "none");
        assert_eq!(Packing::large(WeightFormat::Int8).name(), "int8");
        assert_eq!(Packing::every_matrix(WeightFormat::Bf16).name(), "bf16");
    }
}
