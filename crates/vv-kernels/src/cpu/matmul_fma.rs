//! The skinny matmul's register-tiled AVX2+FMA kernel (x86-64): each tile keeps `R` weight rows
//! × `M` input rows of 8-lane accumulators in registers, so a weight vector is loaded once for
//! all `M` inputs and an input vector once for all `R` weight rows. Generic Rust leaves this
//! loop load-bound with 2-lane code; this form streams the weights at memory speed.

use std::arch::x86_64::{
    __m256, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
    _mm256_setzero_ps, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_prefetch,
    _mm_shuffle_ps, _MM_HINT_T0,
};

/// Bytes of weights per chunk: a chunk stays in L1 while every group of input rows passes
/// over it.
const CHUNK_BYTES: usize = 16 << 10;
/// Most weight rows per chunk.
const CHUNK_ROWS: usize = 8;
/// Input rows per group (the widest tile) when more than [`WIDE_GROUP`] remain.
const GROUP_ROWS: usize = 4;
/// A group this wide is taken in one tile, so five rows (a text window) read the weights once.
const WIDE_GROUP: usize = 5;

/// Whether this CPU runs the kernel.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// What every tile of one call shares.
#[derive(Clone, Copy)]
struct Shape<'a> {
    /// All `m` input rows, `[m, k]`.
    x: &'a [f32],
    k: usize,
    m: usize,
    /// Prefetch distance in values.
    ahead: usize,
}

/// Sum of the eight lanes.
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// `out[r·m + i0 + i] = w_r · x_{i0+i}` for `R` weight rows (`w`, row stride `k`) and the `M`
/// input rows from `i0` of `x` (row stride `k`). While it runs, the same positions `ahead`
/// values further are prefetched when `R` is small: so few streams keep too few memory
/// requests in flight.
#[inline(always)]
unsafe fn tile<const R: usize, const M: usize>(w: &[f32], s: &Shape, out: &mut [f32], i0: usize) {
    let Shape { x, k, m, ahead } = *s;
    // The pointer reads below stay inside these bounds, checked once per tile.
    let (w, x) = (&w[..R * k], &x[i0 * k..(i0 + M) * k]);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); M]; R];
    let body = k / 8 * 8;
    let mut p = 0;
    while p < body {
        if R <= 2 && p % 16 == 0 {
            for r in 0..R {
                // A prefetch never faults; past the weights it only wastes a request.
                _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(r * k + p + ahead).cast());
            }
        }
        let xv: [__m256; M] = std::array::from_fn(|i| _mm256_loadu_ps(xp.add(i * k + p)));
        for (r, acc) in acc.iter_mut().enumerate() {
            let wv = _mm256_loadu_ps(wp.add(r * k + p));
            for (a, xv) in acc.iter_mut().zip(&xv) {
                *a = _mm256_fmadd_ps(wv, *xv, *a);
            }
        }
        p += 8;
    }
    for (r, acc) in acc.iter().enumerate() {
        let w_tail = &w[r * k + body..(r + 1) * k];
        for (i, a) in acc.iter().enumerate() {
            let x_tail = &x[i * k + body..(i + 1) * k];
            let tail: f32 = w_tail.iter().zip(x_tail).map(|(a, b)| a * b).sum();
            out[r * m + i0 + i] = hsum(*a) + tail;
        }
    }
}

/// Runs `tile::<R, M>` over the `rows` weight rows of a chunk.
#[inline(always)]
unsafe fn tiles<const R: usize, const M: usize>(
    rows: usize,
    w: &[f32],
    s: &Shape,
    out: &mut [f32],
    i0: usize,
) {
    let (k, m) = (s.k, s.m);
    let mut r = 0;
    while r + R <= rows {
        tile::<R, M>(&w[r * k..], s, &mut out[r * m..], i0);
        r += R;
    }
    while r < rows {
        tile::<1, M>(&w[r * k..], s, &mut out[r * m..], i0);
        r += 1;
    }
}

/// Fills `dst` (`[rows of w, m]`, output-row major) for the weight rows in `w`.
///
/// # Safety
/// The CPU must support AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn fill(dst: &mut [f32], w: &[f32], x: &[f32], m: usize, k: usize) {
    let chunk = (CHUNK_BYTES / (4 * k)).clamp(2, CHUNK_ROWS);
    let s = Shape {
        x,
        k,
        m,
        ahead: chunk * k,
    };
    for (c, out) in dst.chunks_mut(chunk * m).enumerate() {
        let rows = out.len() / m;
        let w = &w[c * chunk * k..(c * chunk + rows) * k];
        let mut i0 = 0;
        while i0 < m {
            let group = match m - i0 {
                WIDE_GROUP => WIDE_GROUP,
                left => left.min(GROUP_ROWS),
            };
            match group {
                5 => tiles::<2, 5>(rows, w, &s, out, i0),
                4 => tiles::<2, 4>(rows, w, &s, out, i0),
                3 => tiles::<2, 3>(rows, w, &s, out, i0),
                2 => tiles::<4, 2>(rows, w, &s, out, i0),
                _ => tiles::<8, 1>(rows, w, &s, out, i0),
            }
            i0 += group;
        }
    }
}
