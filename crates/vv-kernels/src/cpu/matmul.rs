//! Skinny matmul `x [m, k] · w [n, k]ᵀ` for few rows (the decoder's early, weight-bound layers):
//! every weight row is read once for all `m` input rows, split over threads by output row. The
//! weights are f32, or bf16 / int8 ([`super::quant`]) widened to f32 as they are read (int8
//! values times their block's scale); the activations and the arithmetic stay f32. This file holds the driver and the portable body;
//! the SIMD bodies are in `tile` (with `matmul_x86` and `matmul_neon`).

use super::dispatch::Isa;
use super::quant::SCALE_BLOCK;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use super::tile::Vector;
use super::{for_row_blocks, simd_fn};

/// Accumulator width: two AVX2 registers (four SSE/NEON registers).
const LANES: usize = 16;
/// Below this many weight values the call stays on the calling thread.
const MIN_PARALLEL_WEIGHTS: usize = 1 << 18;
/// Weight values per unit of parallel work (256 KiB of f32).
const BLOCK_WEIGHTS: usize = 1 << 16;
// A chunk of the portable body lies in one scale block.
const _: () = assert!(SCALE_BLOCK.is_multiple_of(LANES));

/// A weight element type: f32, the bits of a bf16 (`u16`) or an int8 (`i8`, with a scale per
/// block of [`SCALE_BLOCK`] values of a row).
pub(super) trait Weight: Copy + Send + Sync {
    /// Whether each value is multiplied by its block's scale.
    const SCALED: bool = false;
    /// The value as f32 (before any scale); exact.
    fn widen(self) -> f32;
    /// The value the kernels compute with: widened, times `scale` (its block's) if the type is
    /// scaled; `scale` is ignored otherwise.
    #[inline(always)]
    fn dequant(self, scale: f32) -> f32 {
        match Self::SCALED {
            true => self.widen() * scale,
            false => self.widen(),
        }
    }
    /// `V::LANES` values from `p`, widened to f32 lanes.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    unsafe fn load<V: Vector>(p: *const Self) -> V;
}

impl Weight for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    unsafe fn load<V: Vector>(p: *const Self) -> V {
        V::load(p)
    }
}

impl Weight for u16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        super::quant::bf16_to_f32(self)
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    unsafe fn load<V: Vector>(p: *const Self) -> V {
        V::load_bf16(p)
    }
}

impl Weight for i8 {
    const SCALED: bool = true;
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from(self)
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    unsafe fn load<V: Vector>(p: *const Self) -> V {
        V::load_i8(p)
    }
}

/// Weight rows (row stride `k`) and, for a scaled type, each row's block scales
/// ([`Rows::blocks`] per row, row after row; empty otherwise).
#[derive(Clone, Copy)]
pub(super) struct Rows<'a, E> {
    pub(super) w: &'a [E],
    pub(super) scales: &'a [f32],
}

impl<'a, E: Weight> Rows<'a, E> {
    /// Scales per row: `k.div_ceil(SCALE_BLOCK)` for a scaled type, else 0.
    #[inline(always)]
    pub(super) fn blocks(k: usize) -> usize {
        match E::SCALED {
            true => k.div_ceil(SCALE_BLOCK),
            false => 0,
        }
    }

    /// Rows `first..first + count`.
    #[inline(always)]
    pub(super) fn range(self, first: usize, count: usize, k: usize) -> Self {
        let b = Self::blocks(k);
        Self {
            w: &self.w[first * k..(first + count) * k],
            scales: &self.scales[first * b..(first + count) * b],
        }
    }

    /// Rows from `first` on.
    #[inline(always)]
    pub(super) fn from(self, first: usize, k: usize) -> Self {
        Self {
            w: &self.w[first * k..],
            scales: &self.scales[first * Self::blocks(k)..],
        }
    }
}

/// `Σ w[p]·x[p]` over `p` in `from..` of one weight row `w`, its block scales `scales` (empty
/// if unscaled) and an input row `x`, in order: the scalar tail of every body.
#[inline(always)]
pub(super) fn tail_dot<E: Weight>(w: &[E], scales: &[f32], x: &[f32], from: usize) -> f32 {
    let scale = |p: usize| match E::SCALED {
        true => scales[p / SCALE_BLOCK],
        false => 1.0,
    };
    (from..w.len()).map(|p| w[p].dequant(scale(p)) * x[p]).sum()
}

/// Sum of an accumulator (as a short tree, not a 16-long dependency chain) and the tail's.
#[inline(always)]
fn finish(acc: &[f32; LANES], tail: f32) -> f32 {
    let mut half = [0f32; LANES / 2];
    for (i, h) in half.iter_mut().enumerate() {
        *h = acc[i] + acc[i + LANES / 2];
    }
    let quarter = [
        half[0] + half[4],
        half[1] + half[5],
        half[2] + half[6],
        half[3] + half[7],
    ];
    (quarter[0] + quarter[2]) + (quarter[1] + quarter[3]) + tail
}

/// The scale of chunk `c` (of [`LANES`] values) of a row's block scales `s` (1 if unscaled).
#[inline(always)]
fn chunk_scale<E: Weight>(s: &[f32], c: usize) -> f32 {
    match E::SCALED {
        true => s[c * LANES / SCALE_BLOCK],
        false => 1.0,
    }
}

/// `w · x` for one weight row `w` (block scales `s`) and one input row.
#[inline(always)]
fn dot1<E: Weight>(w: &[E], s: &[f32], x: &[f32]) -> f32 {
    let (wc, xc) = (w.chunks_exact(LANES), x.chunks_exact(LANES));
    let mut acc = [0f32; LANES];
    for (c, (a, b)) in wc.zip(xc).enumerate() {
        let scale = chunk_scale::<E>(s, c);
        for i in 0..LANES {
            acc[i] += a[i].dequant(scale) * b[i];
        }
    }
    finish(&acc, tail_dot(w, s, x, w.len() / LANES * LANES))
}

/// `w · x_r` for one weight row `w` (block scales `s`) and four input rows, loading each weight
/// chunk once (same arithmetic as [`dot1`] for each row).
#[inline(always)]
fn dot4<E: Weight>(w: &[E], s: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
    let wc = w.chunks_exact(LANES);
    let [c0, c1, c2, c3] = x.map(|r| r.chunks_exact(LANES));
    let mut acc = [[0f32; LANES]; 4];
    for (c, (((a, b0), b1), (b2, b3))) in wc.zip(c0).zip(c1).zip(c2.zip(c3)).enumerate() {
        let scale = chunk_scale::<E>(s, c);
        let a: [f32; LANES] = std::array::from_fn(|i| a[i].dequant(scale));
        for i in 0..LANES {
            acc[0][i] += a[i] * b0[i];
            acc[1][i] += a[i] * b1[i];
            acc[2][i] += a[i] * b2[i];
            acc[3][i] += a[i] * b3[i];
        }
    }
    let body = w.len() / LANES * LANES;
    [0, 1, 2, 3].map(|r| finish(&acc[r], tail_dot(w, s, x[r], body)))
}

simd_fn! {
    /// The portable body of [`Isa::fill`]: fills `dst` (`[rows of w, m]`, output-row major).
    pub(super) fn fill<E: Weight>(dst: &mut [f32], w: Rows<'_, E>, x: &[f32], m: usize, k: usize) {
        let b = Rows::<E>::blocks(k);
        for (j, (out, w_row)) in dst.chunks_exact_mut(m).zip(w.w.chunks_exact(k)).enumerate() {
            let s = &w.scales[j * b..(j + 1) * b];
            let mut quads = out.chunks_exact_mut(4).zip(x.chunks_exact(4 * k));
            for (out, x) in &mut quads {
                let rows = [&x[..k], &x[k..2 * k], &x[2 * k..3 * k], &x[3 * k..]];
                out.copy_from_slice(&dot4(w_row, s, rows));
            }
            let done = m / 4 * 4;
            for (o, x_row) in out[done..].iter_mut().zip(x[done * k..].chunks_exact(k)) {
                *o = dot1(w_row, s, x_row);
            }
        }
    }
}

/// `x [m, k] · wᵀ` (`w`: `n` rows) on the body `isa`, returned transposed as `[n, m]`.
pub(super) fn matmul_on<E: Weight>(
    isa: Isa,
    x: &[f32],
    w: Rows<E>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "skinny matmul: {m}x{k} inputs");
    assert_eq!(w.w.len(), n * k, "skinny matmul: {n}x{k} weights");
    assert_eq!(
        w.scales.len(),
        n * Rows::<E>::blocks(k),
        "skinny matmul: scales"
    );
    let mut out = vec![0f32; n * m];
    if n == 0 || m == 0 || k == 0 {
        return out;
    }
    let parallel = n * k >= MIN_PARALLEL_WEIGHTS;
    // Whole chunks of eight rows per block keep the tiled kernel on its widest tiles.
    let rows_per_block = (BLOCK_WEIGHTS / k).next_multiple_of(8);
    for_row_blocks(&mut out, m, rows_per_block, parallel, |first, dst| {
        let rows = dst.len() / m;
        isa.fill(dst, w.range(first, rows, k), x, m, k)
    });
    out
}

/// `x [m, k] · w [n, k]ᵀ`, returned **transposed** as `[n, m]` (row `j` holds output column `j`).
pub fn skinny_matmul(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    matmul_on(Isa::detect(), x, Rows { w, scales: &[] }, m, k, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n * m];
        for j in 0..n {
            for i in 0..m {
                out[j * m + i] = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum();
            }
        }
        out
    }

    /// Every body this CPU runs (the one in use among them), every tile shape and both tails
    /// (weight rows not a multiple of 8, k not of 8), against a naive matmul.
    #[test]
    fn every_body_matches_a_naive_matmul_for_all_row_counts_and_tails() {
        let value = |i: usize| ((i * 7919 % 1000) as f32 - 500.0) / 500.0;
        for (m, k, n) in [
            (1, 3, 5),
            (2, 16, 7),
            (5, 37, 9),
            (3, 64, 19),
            (4, 8, 8),
            (6, 20, 17),
            (7, 41, 33),
            (9, 300, 1000),
            (16, 1024, 300),
        ] {
            let x: Vec<f32> = (0..m * k).map(value).collect();
            let w: Vec<f32> = (0..n * k).map(|i| value(i + 13)).collect();
            let want = naive(&x, &w, m, k, n);
            let rows = Rows { w: &w, scales: &[] };
            for isa in Isa::all_supported() {
                let got = matmul_on(isa, &x, rows, m, k, n);
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(err < 1e-3, "{isa:?} m {m} k {k} n {n}: max abs error {err}");
            }
            assert_eq!(
                skinny_matmul(&x, &w, m, k, n),
                matmul_on(Isa::detect(), &x, rows, m, k, n)
            );
        }
    }
}
