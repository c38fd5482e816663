//! The skinny matmul's register-tiled x86-64 kernels, one generic body for two vector widths
//! (AVX2+FMA: 8 lanes; AVX-512F: 16 lanes), chosen at run time by the CPU's features. Each tile
//! keeps `R` weight rows × `M` input rows of accumulators in registers, so a weight vector is
//! loaded once for all `M` inputs and an input vector once for all `R` weight rows. Generic Rust
//! leaves this loop load-bound with 2-lane code; this form streams the weights at memory speed
//! and, for the widest tiles, runs the FMA units near their peak.

use std::arch::x86_64::{
    __m256, __m512, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps,
    _mm256_loadu_ps, _mm256_setzero_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_reduce_add_ps,
    _mm512_setzero_ps, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_prefetch,
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

/// The instruction sets the kernel has a body for, fastest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    Avx512,
    Avx2Fma,
}

impl Isa {
    /// The fastest one this CPU runs, if any (checked once, then cached).
    pub(super) fn detect() -> Option<Self> {
        static ISA: std::sync::OnceLock<Option<Isa>> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            [Self::Avx512, Self::Avx2Fma]
                .into_iter()
                .find(|i| i.supported())
        })
    }

    /// Whether this CPU runs this body.
    fn supported(self) -> bool {
        match self {
            Self::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            Self::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
        }
    }

    /// Fills `dst` (`[rows of w, m]`, output-row major) for the weight rows in `w`.
    pub(super) fn fill(self, dst: &mut [f32], w: &[f32], x: &[f32], m: usize, k: usize) {
        assert!(self.supported(), "{self:?} kernel on a CPU without it");
        // SAFETY: the CPU supports this variant's instructions (checked just above).
        unsafe {
            match self {
                Self::Avx512 => fill_avx512(dst, w, x, m, k),
                Self::Avx2Fma => fill_avx2(dst, w, x, m, k),
            }
        }
    }
}

/// One vector register's worth of f32 lanes and the operations the tile needs.
trait Vector: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const f32) -> Self;
    /// `a · b + c`
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
    /// Sum of the lanes.
    unsafe fn sum(self) -> f32;
}

impl Vector for __m256 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(self), _mm256_extractf128_ps(self, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }
}

impl Vector for __m512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        _mm512_reduce_add_ps(self)
    }
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

/// `out[r·m + i0 + i] = w_r · x_{i0+i}` for `R` weight rows (`w`, row stride `k`) and the `M`
/// input rows from `i0` of `x` (row stride `k`). While it runs, the same positions `ahead`
/// values further are prefetched when `R` is small: so few streams keep too few memory
/// requests in flight. A value's arithmetic (one `V`-wide accumulation over `k`, then the lane
/// sum and the scalar tail) does not depend on `R`, `M` or `m`.
#[inline(always)]
unsafe fn tile<V: Vector, const R: usize, const M: usize>(
    w: &[f32],
    s: &Shape,
    out: &mut [f32],
    i0: usize,
) {
    let Shape { x, k, m, ahead } = *s;
    // The pointer reads below stay inside these bounds, checked once per tile.
    let (w, x) = (&w[..R * k], &x[i0 * k..(i0 + M) * k]);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [[V::zero(); M]; R];
    let body = k / V::LANES * V::LANES;
    let mut p = 0;
    while p < body {
        if R <= 2 && p % 16 == 0 {
            for r in 0..R {
                // A prefetch never faults; past the weights it only wastes a request.
                _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(r * k + p + ahead).cast());
            }
        }
        let xv: [V; M] = std::array::from_fn(|i| V::load(xp.add(i * k + p)));
        for (r, acc) in acc.iter_mut().enumerate() {
            let wv = V::load(wp.add(r * k + p));
            for (a, xv) in acc.iter_mut().zip(&xv) {
                *a = V::fmadd(wv, *xv, *a);
            }
        }
        p += V::LANES;
    }
    for (r, acc) in acc.iter().enumerate() {
        let w_tail = &w[r * k + body..(r + 1) * k];
        for (i, a) in acc.iter().enumerate() {
            let x_tail = &x[i * k + body..(i + 1) * k];
            let tail: f32 = w_tail.iter().zip(x_tail).map(|(a, b)| a * b).sum();
            out[r * m + i0 + i] = a.sum() + tail;
        }
    }
}

/// Runs `tile::<V, R, M>` over the `rows` weight rows of a chunk.
#[inline(always)]
unsafe fn tiles<V: Vector, const R: usize, const M: usize>(
    rows: usize,
    w: &[f32],
    s: &Shape,
    out: &mut [f32],
    i0: usize,
) {
    let (k, m) = (s.k, s.m);
    let mut r = 0;
    while r + R <= rows {
        tile::<V, R, M>(&w[r * k..], s, &mut out[r * m..], i0);
        r += R;
    }
    while r < rows {
        tile::<V, 1, M>(&w[r * k..], s, &mut out[r * m..], i0);
        r += 1;
    }
}

/// The body of [`Isa::fill`] for vectors `V`; inlined into a function compiled for them.
#[inline(always)]
unsafe fn fill<V: Vector>(dst: &mut [f32], w: &[f32], x: &[f32], m: usize, k: usize) {
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
                5 => tiles::<V, 2, 5>(rows, w, &s, out, i0),
                4 => tiles::<V, 2, 4>(rows, w, &s, out, i0),
                3 => tiles::<V, 2, 3>(rows, w, &s, out, i0),
                2 => tiles::<V, 4, 2>(rows, w, &s, out, i0),
                _ => tiles::<V, 8, 1>(rows, w, &s, out, i0),
            }
            i0 += group;
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn fill_avx2(dst: &mut [f32], w: &[f32], x: &[f32], m: usize, k: usize) {
    fill::<__m256>(dst, w, x, m, k)
}

#[target_feature(enable = "avx512f")]
unsafe fn fill_avx512(dst: &mut [f32], w: &[f32], x: &[f32], m: usize, k: usize) {
    fill::<__m512>(dst, w, x, m, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both bodies (where this CPU runs them), every tile shape and both tails, against a
    /// naive matmul; and the two bodies agree with each other to rounding.
    #[test]
    fn every_supported_body_matches_a_naive_matmul() {
        let value = |i: usize| ((i * 7919 % 1000) as f32 - 500.0) / 500.0;
        for (m, k, n) in [(1, 3, 5), (2, 16, 7), (5, 37, 9), (7, 41, 33), (9, 300, 40)] {
            let x: Vec<f32> = (0..m * k).map(value).collect();
            let w: Vec<f32> = (0..n * k).map(|i| value(i + 13)).collect();
            for isa in [Isa::Avx512, Isa::Avx2Fma] {
                if !isa.supported() {
                    continue;
                }
                let mut got = vec![0f32; n * m];
                isa.fill(&mut got, &w, &x, m, k);
                for j in 0..n {
                    for i in 0..m {
                        let want: f32 = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum();
                        let err = (got[j * m + i] - want).abs();
                        assert!(err < 1e-3, "{isa:?} m {m} k {k} n {n}: error {err}");
                    }
                }
            }
        }
    }
}
