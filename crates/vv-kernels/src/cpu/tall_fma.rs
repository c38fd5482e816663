//! The tall kernel's FMA bodies, for x86-64 CPUs without AMX: f32 FMAs on the same bf16 weight
//! panels as the AMX body ([`super::tall`]), the activations kept f32; one generic body for
//! AVX-512F (16 lanes, 32 registers) and AVX2+FMA (8 lanes, 16 registers) ([`FmaVector`]).
//! Each block holds up to [`FmaVector::BLOCK_ROWS`] rows × two vectors of columns of
//! accumulators in registers (a 32-column panel in one pass on AVX-512F, two on AVX2); per
//! pair of inputs it widens the panel row's bf16 pairs to four f32 vectors (a shift and a mask,
//! shared by the block's rows) and adds each row's two inputs, broadcast, times them: four FMAs
//! per row, so the loop runs near the FMA units' peak.
//!
//! Each output value is its own row times its own column, accumulated pair by pair along `k`
//! in order (even input, then odd), so it is the same bits whatever `m` is and wherever its row
//! lies: a batch of streams equals each stream alone.

use std::arch::x86_64::{
    __m256, __m512, _mm256_and_si256, _mm256_castsi256_ps, _mm256_fmadd_ps, _mm256_loadu_si256,
    _mm256_set1_epi32, _mm256_set1_ps, _mm256_setzero_ps, _mm256_slli_epi32, _mm256_storeu_ps,
    _mm512_and_si512, _mm512_castsi512_ps, _mm512_fmadd_ps, _mm512_loadu_si512, _mm512_set1_epi32,
    _mm512_set1_ps, _mm512_setzero_ps, _mm512_slli_epi32, _mm512_storeu_ps, _mm_prefetch,
    _MM_HINT_T0,
};

use super::tall::{padded_k, PANEL};

/// The most rows any body keeps in one block.
pub(super) const MAX_BLOCK_ROWS: usize = 12;

/// A block's results: up to [`MAX_BLOCK_ROWS`] rows × 32 columns.
type Block = [[f32; PANEL]; MAX_BLOCK_ROWS];

/// One vector register of f32 lanes and what the block needs of it. Implementations are
/// `#[inline(always)]`, so they compile with the target features of the function they are
/// inlined into.
pub(super) trait FmaVector: Copy {
    const LANES: usize;
    /// Rows per block: two accumulators per row, four widened weights and two broadcasts
    /// fit the register file.
    const BLOCK_ROWS: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    /// `LANES` bf16 pairs from `p` as the even inputs' weights (low halves) and the odd
    /// ones' (high halves), widened to f32: exact.
    unsafe fn widen_pairs(p: *const u32) -> (Self, Self);
    /// `a · b + c`
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
    unsafe fn store(self, p: *mut f32);
}

/// Implements [`FmaVector`] for a vector type from its intrinsics (the two bodies differ only
/// in them).
macro_rules! fma_vector {
    ($t:ty, lanes $lanes:expr, rows $rows:expr, $setzero:ident, $set1:ident, $loadu:ident,
     $set1_epi32:ident, $slli:ident, $cast:ident, $and:ident, $fmadd:ident, $storeu:ident) => {
        impl FmaVector for $t {
            const LANES: usize = $lanes;
            const BLOCK_ROWS: usize = $rows;
            #[inline(always)]
            unsafe fn zero() -> Self {
                $setzero()
            }
            #[inline(always)]
            unsafe fn splat(v: f32) -> Self {
                $set1(v)
            }
            #[inline(always)]
            unsafe fn widen_pairs(p: *const u32) -> (Self, Self) {
                let pairs = $loadu(p.cast());
                let high = $set1_epi32(0xffff_0000_u32 as i32);
                ($cast($slli::<16>(pairs)), $cast($and(pairs, high)))
            }
            #[inline(always)]
            unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
                $fmadd(a, b, c)
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut f32) {
                $storeu(p, self)
            }
        }
    };
}

fma_vector!(__m512, lanes 16, rows 12, _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_si512,
    _mm512_set1_epi32, _mm512_slli_epi32, _mm512_castsi512_ps, _mm512_and_si512,
    _mm512_fmadd_ps, _mm512_storeu_ps);
fma_vector!(__m256, lanes 8, rows 5, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_si256,
    _mm256_set1_epi32, _mm256_slli_epi32, _mm256_castsi256_ps, _mm256_and_si256,
    _mm256_fmadd_ps, _mm256_storeu_ps);

/// Multiplies the f32 rows of `x` (`m` rows of `k` values, row stride `ldx`) by every panel of
/// `panels` (`n` columns, `[⌈n/32⌉][padded_k(k)/2][32]` pairs), `V::BLOCK_ROWS` rows × 32
/// columns at a time, panel by panel, and hands each result row to `f(row, first column,
/// values)` (one value per column of the panel, at most 32). Safety: the CPU has `V`'s
/// instructions; lengths as described.
#[inline(always)]
pub(super) unsafe fn for_each_block_row<V: FmaVector>(
    x: &[f32],
    ldx: usize,
    m: usize,
    k: usize,
    panels: &[u32],
    n: usize,
    mut f: impl FnMut(usize, usize, &[f32]),
) {
    const { assert!(PANEL.is_multiple_of(2 * V::LANES) && V::BLOCK_ROWS <= MAX_BLOCK_ROWS) };
    let panel_len = padded_k(k) / 2 * PANEL;
    assert!(m == 0 || (ldx >= k && x.len() >= (m - 1) * ldx + k));
    assert!(panels.len() >= n.div_ceil(PANEL) * panel_len);
    let mut results: Block = [[0.0; PANEL]; MAX_BLOCK_ROWS];
    for panel in 0..n.div_ceil(PANEL) {
        let (col, cols) = (panel * PANEL, (n - panel * PANEL).min(PANEL));
        let w = panels.as_ptr().add(panel * panel_len);
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(V::BLOCK_ROWS);
            let xi = x.as_ptr().add(i * ldx);
            for first in (0..PANEL).step_by(2 * V::LANES) {
                let r = &mut results;
                match rows {
                    12 => block::<V, 12>(xi, ldx, k, w, first, r),
                    11 => block::<V, 11>(xi, ldx, k, w, first, r),
                    10 => block::<V, 10>(xi, ldx, k, w, first, r),
                    9 => block::<V, 9>(xi, ldx, k, w, first, r),
                    8 => block::<V, 8>(xi, ldx, k, w, first, r),
                    7 => block::<V, 7>(xi, ldx, k, w, first, r),
                    6 => block::<V, 6>(xi, ldx, k, w, first, r),
                    5 => block::<V, 5>(xi, ldx, k, w, first, r),
                    4 => block::<V, 4>(xi, ldx, k, w, first, r),
                    3 => block::<V, 3>(xi, ldx, k, w, first, r),
                    2 => block::<V, 2>(xi, ldx, k, w, first, r),
                    _ => block::<V, 1>(xi, ldx, k, w, first, r),
                }
            }
            for (r, values) in results.iter().enumerate().take(rows) {
                f(i + r, col, &values[..cols]);
            }
            i += rows;
        }
    }
}

/// `R` rows from `x` (row stride `ldx`, `k` values each) times the columns `first..first +
/// 2·LANES` of one panel `w`, into those columns of the first `R` rows of `out`. Safety: the
/// CPU has `V`'s instructions; the panel holds `padded_k(k) / 2` pair rows.
#[inline(always)]
unsafe fn block<V: FmaVector, const R: usize>(
    x: *const f32,
    ldx: usize,
    k: usize,
    w: *const u32,
    first: usize,
    out: &mut Block,
) {
    let mut acc: [[V; 2]; R] = [[V::zero(); 2]; R];
    let w = w.add(first);
    // One pair row's two vectors of columns: (even, odd) weights each.
    let widen = |q: usize| {
        let row = w.add(q * PANEL);
        (V::widen_pairs(row), V::widen_pairs(row.add(V::LANES)))
    };
    for q in 0..k / 2 {
        // Two pair rows ahead: the panel streams from L2 or memory. A prefetch never faults;
        // past the panel it only wastes a request.
        for line in (0..2 * V::LANES).step_by(16) {
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add((q + 2) * PANEL + line).cast());
        }
        let ((e0, o0), (e1, o1)) = widen(q);
        for (r, acc) in acc.iter_mut().enumerate() {
            let xr = x.add(r * ldx + 2 * q);
            let (xe, xo) = (V::splat(*xr), V::splat(*xr.add(1)));
            acc[0] = V::fmadd(o0, xo, V::fmadd(e0, xe, acc[0]));
            acc[1] = V::fmadd(o1, xo, V::fmadd(e1, xe, acc[1]));
        }
    }
    if k % 2 == 1 {
        // The last input has no pair: its odd weights are zero padding.
        let q = k / 2;
        let ((e0, _), (e1, _)) = widen(q);
        for (r, acc) in acc.iter_mut().enumerate() {
            let xe = V::splat(*x.add(r * ldx + 2 * q));
            acc[0] = V::fmadd(e0, xe, acc[0]);
            acc[1] = V::fmadd(e1, xe, acc[1]);
        }
    }
    for (acc, row) in acc.iter().zip(out.iter_mut()) {
        acc[0].store(row.as_mut_ptr().add(first));
        acc[1].store(row.as_mut_ptr().add(first + V::LANES));
    }
}

/// Rows, inputs and columns of a product: `(m, k, n)`.
pub(super) type Dims = (usize, usize, usize);

/// Fills `out` (`[m, n]`) with `x · wᵀ` for the f32 rows `x` (`[m, k]`) and the weight panels.
#[inline(always)]
unsafe fn fill<V: FmaVector>(out: &mut [f32], x: &[f32], panels: &[u32], (m, k, n): Dims) {
    assert!(out.len() == m * n);
    for_each_block_row::<V>(x, k, m, k, panels, n, |row, col, values| {
        out[row * n + col..][..values.len()].copy_from_slice(values)
    });
}

/// [`fill`] on AVX-512F. Safety: the CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn fill_avx512(out: &mut [f32], x: &[f32], panels: &[u32], dims: Dims) {
    fill::<__m512>(out, x, panels, dims)
}

/// [`fill`] on AVX2+FMA. Safety: the CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn fill_avx2(out: &mut [f32], x: &[f32], panels: &[u32], dims: Dims) {
    fill::<__m256>(out, x, panels, dims)
}
