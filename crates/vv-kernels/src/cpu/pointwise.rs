//! The linear-layer epilogue (bias, GELU, residual) in a single pass.

use super::gelu::gelu_erf;
use super::{for_row_blocks, simd_fn};

/// Below this many values a kernel stays on the calling thread.
const MIN_PARALLEL_VALUES: usize = 1 << 17;
/// Values per unit of parallel work.
const BLOCK_VALUES: usize = 1 << 14;

/// What follows a matmul: `act(y + bias) + residual`, all optional.
pub struct Epilogue<'a> {
    /// Per output column, `[n]`.
    pub bias: Option<&'a [f32]>,
    /// Apply GELU(erf) after the bias.
    pub gelu: bool,
    /// Added last, `[m, n]`.
    pub residual: Option<&'a [f32]>,
}

simd_fn! {
    /// Applies bias, GELU and residual in place to the rows (`n` wide) of `out`, whose first
    /// row is row `first` of the residual.
    pub(super) fn finish_rows(
        out: &mut [f32],
        first: usize,
        n: usize,
        bias: Option<&[f32]>,
        gelu: bool,
        residual: Option<&[f32]>,
    ) {
        for (i, row) in out.chunks_exact_mut(n).enumerate() {
            let i = first + i;
            if let Some(bias) = bias {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
            if gelu {
                row.iter_mut().for_each(|v| *v = gelu_erf(*v));
            }
            if let Some(residual) = residual {
                let residual = &residual[i * n..(i + 1) * n];
                row.iter_mut().zip(residual).for_each(|(v, r)| *v += r);
            }
        }
    }
}

/// Applies `e` to the matmul result `y` (`[m, n]`, or `[n, m]` when `transposed`), giving `[m, n]`.
pub fn epilogue(y: &[f32], transposed: bool, m: usize, n: usize, e: &Epilogue) -> Vec<f32> {
    let mut out = if transposed && m > 1 {
        let mut out = vec![0f32; m * n];
        for (j, column) in y.chunks_exact(m).enumerate() {
            for (i, &v) in column.iter().enumerate() {
                out[i * n + j] = v;
            }
        }
        out
    } else {
        y.to_vec()
    };
    if n > 0 {
        let parallel = out.len() >= MIN_PARALLEL_VALUES;
        for_row_blocks(&mut out, n, BLOCK_VALUES / n, parallel, |first, rows| {
            finish_rows(rows, first, n, e.bias, e.gelu, e.residual)
        });
    }
    out
}
