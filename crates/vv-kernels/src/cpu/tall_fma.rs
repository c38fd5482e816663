//! The tall kernel's AVX-512F body, for CPUs without AMX: f32 FMAs on the same bf16 weight
//! panels as the AMX body ([`super::tall`]), the activations kept f32. Each block holds
//! [`BLOCK_ROWS`] rows × one panel's 32 columns of accumulators in registers (24 of the 32
//! vector registers); per pair of inputs it widens the panel row's 32 bf16 pairs to four f32
//! vectors (a shift and a mask, shared by the block's rows) and adds each row's two inputs,
//! broadcast, times them: four FMAs per row, so the loop runs near the FMA units' peak.
//!
//! Each output value is its own row times its own column, accumulated pair by pair along `k`
//! in order (even input, then odd), so it is the same bits whatever `m` is and wherever its row
//! lies: a batch of streams equals each stream alone.

use std::arch::x86_64::{
    __m512, _mm512_and_si512, _mm512_castsi512_ps, _mm512_fmadd_ps, _mm512_loadu_si512,
    _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_ps, _mm512_slli_epi32, _mm512_storeu_ps,
    _mm_prefetch, _MM_HINT_T0,
};

use super::tall::{padded_k, PANEL};

/// Rows per block (two accumulators each).
pub(super) const BLOCK_ROWS: usize = 12;

/// A block's results: [`BLOCK_ROWS`] rows × 32 columns.
type Block = [[f32; PANEL]; BLOCK_ROWS];

/// Multiplies the f32 rows of `x` (`m` rows of `k` values, row stride `ldx`) by every panel of
/// `panels` (`n` columns, `[⌈n/32⌉][padded_k(k)/2][32]` pairs), [`BLOCK_ROWS`] rows × 32
/// columns at a time, panel by panel, and hands each result row to `f(row, first column,
/// values)` (one value per column of the panel, at most 32). Safety: AVX-512F; lengths as
/// described.
#[inline(always)]
pub(super) unsafe fn for_each_block_row(
    x: &[f32],
    ldx: usize,
    m: usize,
    k: usize,
    panels: &[u32],
    n: usize,
    mut f: impl FnMut(usize, usize, &[f32]),
) {
    let panel_len = padded_k(k) / 2 * PANEL;
    assert!(m == 0 || (ldx >= k && x.len() >= (m - 1) * ldx + k));
    assert!(panels.len() >= n.div_ceil(PANEL) * panel_len);
    let mut results: Block = [[0.0; PANEL]; BLOCK_ROWS];
    for panel in 0..n.div_ceil(PANEL) {
        let (col, cols) = (panel * PANEL, (n - panel * PANEL).min(PANEL));
        let w = panels.as_ptr().add(panel * panel_len);
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(BLOCK_ROWS);
            let xi = x.as_ptr().add(i * ldx);
            match rows {
                12 => block::<12>(xi, ldx, k, w, &mut results),
                11 => block::<11>(xi, ldx, k, w, &mut results),
                10 => block::<10>(xi, ldx, k, w, &mut results),
                9 => block::<9>(xi, ldx, k, w, &mut results),
                8 => block::<8>(xi, ldx, k, w, &mut results),
                7 => block::<7>(xi, ldx, k, w, &mut results),
                6 => block::<6>(xi, ldx, k, w, &mut results),
                5 => block::<5>(xi, ldx, k, w, &mut results),
                4 => block::<4>(xi, ldx, k, w, &mut results),
                3 => block::<3>(xi, ldx, k, w, &mut results),
                2 => block::<2>(xi, ldx, k, w, &mut results),
                _ => block::<1>(xi, ldx, k, w, &mut results),
            }
            for (r, values) in results.iter().enumerate().take(rows) {
                f(i + r, col, &values[..cols]);
            }
            i += rows;
        }
    }
}

/// `R` rows from `x` (row stride `ldx`, `k` values each) times one panel `w` into the first `R`
/// rows of `out`. Safety: AVX-512F; the panel holds `padded_k(k) / 2` pair rows.
#[inline(always)]
unsafe fn block<const R: usize>(
    x: *const f32,
    ldx: usize,
    k: usize,
    w: *const u32,
    out: &mut Block,
) {
    let high = _mm512_set1_epi32(0xffff_0000_u32 as i32);
    let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
    // Widens one pair row: the even inputs' weights (low halves) and the odd ones' (high).
    let widen = |q: usize| {
        let row = w.add(q * PANEL);
        let (a, b) = (
            _mm512_loadu_si512(row.cast()),
            _mm512_loadu_si512(row.add(16).cast()),
        );
        [
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(a)),
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(b)),
            _mm512_castsi512_ps(_mm512_and_si512(a, high)),
            _mm512_castsi512_ps(_mm512_and_si512(b, high)),
        ]
    };
    for q in 0..k / 2 {
        // Two pair rows (128 bytes) ahead: the panel streams from L2 or memory.
        // A prefetch never faults; past the panel it only wastes a request.
        _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add((q + 2) * PANEL).cast());
        _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add((q + 2) * PANEL + 16).cast());
        let [e0, e1, o0, o1] = widen(q);
        for (r, acc) in acc.iter_mut().enumerate() {
            let xr = x.add(r * ldx + 2 * q);
            let (xe, xo) = (_mm512_set1_ps(*xr), _mm512_set1_ps(*xr.add(1)));
            acc[0] = _mm512_fmadd_ps(o0, xo, _mm512_fmadd_ps(e0, xe, acc[0]));
            acc[1] = _mm512_fmadd_ps(o1, xo, _mm512_fmadd_ps(e1, xe, acc[1]));
        }
    }
    if k % 2 == 1 {
        // The last input has no pair: its odd weights are zero padding.
        let q = k / 2;
        let [e0, e1, _, _] = widen(q);
        for (r, acc) in acc.iter_mut().enumerate() {
            let xe = _mm512_set1_ps(*x.add(r * ldx + 2 * q));
            acc[0] = _mm512_fmadd_ps(e0, xe, acc[0]);
            acc[1] = _mm512_fmadd_ps(e1, xe, acc[1]);
        }
    }
    for (acc, row) in acc.iter().zip(out.iter_mut()) {
        _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[1]);
    }
}

/// Fills `out` (`[m, n]`) with `x · wᵀ` for the f32 rows `x` (`[m, k]`) and the weight panels.
/// Safety: AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn fill_tall(
    out: &mut [f32],
    x: &[f32],
    panels: &[u32],
    m: usize,
    k: usize,
    n: usize,
) {
    assert!(out.len() == m * n);
    for_each_block_row(x, k, m, k, panels, n, |row, col, values| {
        out[row * n + col..][..values.len()].copy_from_slice(values)
    });
}
