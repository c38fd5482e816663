//! The skinny matmul's register-tiled SIMD body, one generic body for every vector type
//! (AVX2+FMA: 8 lanes; AVX-512F: 16 lanes; NEON: 8 lanes in two registers) and weight element
//! type (f32, bf16, int8: [`Weight`]), chosen at run time by the CPU's features. Each tile keeps
//! `R` weight rows × `M` input rows of accumulators in registers, so a weight vector is loaded
//! (and widened to f32; int8 then multiplied by its block's scale) once for all `M` inputs and
//! an input vector once for all `R` weight rows. Generic Rust leaves this loop load-bound with 2-lane code; this form streams the
//! weights at memory speed and, for the widest tiles, runs the FMA units near their peak.

use super::matmul::{tail_dot, Rows, Weight};
use super::quant::SCALE_BLOCK;

/// Bytes of weights per chunk: a chunk stays in L1 while every group of input rows passes
/// over it.
const CHUNK_BYTES: usize = 16 << 10;
/// Most weight rows per chunk.
const CHUNK_ROWS: usize = 8;
/// Input rows per group (the widest tile) when more than [`WIDE_GROUP`] remain.
const GROUP_ROWS: usize = 4;
/// A group this wide is taken in one tile, so five rows (a text window) read the weights once.
const WIDE_GROUP: usize = 5;
/// Bytes per cache line (one prefetch each).
const LINE_BYTES: usize = 64;

/// One vector register's worth of f32 lanes (or a fixed group of registers) and the
/// operations the tile needs. Implementations are `#[inline(always)]`, so they compile with
/// the target features of the function they are inlined into.
pub(super) trait Vector: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const f32) -> Self;
    /// `LANES` bf16 values (their bits) widened to f32: exact.
    unsafe fn load_bf16(p: *const u16) -> Self;
    /// `LANES` int8 values converted to f32: exact.
    unsafe fn load_i8(p: *const i8) -> Self;
    /// Every lane times `s`.
    unsafe fn scale(self, s: f32) -> Self;
    /// `a · b + c`
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
    /// Sum of the lanes.
    unsafe fn sum(self) -> f32;
    /// Asks for the cache line at `p` (never faults, whatever `p` is).
    unsafe fn prefetch(p: *const u8);
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

/// `out[r·m + i0 + i] = w_r · x_{i0+i}` for `R` weight rows (row stride `k`; scaled weights
/// dequantized in registers, each vector times its block's scale before its FMAs) and the `M`
/// input rows from `i0` of `x` (row stride `k`). While it runs, the same positions `ahead`
/// values further are prefetched when `R` is small (so few streams keep too few memory requests
/// in flight) or the weights are narrower than f32. A value's arithmetic (one `V`-wide
/// accumulation over `k`, then the lane sum and the scalar tail) does not depend on `R`, `M`,
/// `m` or where the row lies.
#[inline(always)]
unsafe fn tile<V: Vector, E: Weight, const R: usize, const M: usize>(
    w: Rows<E>,
    s: &Shape,
    out: &mut [f32],
    i0: usize,
) {
    // A vector starts at a multiple of its width within a row, so it lies in one scale block.
    const { assert!(SCALE_BLOCK.is_multiple_of(V::LANES)) };
    let Shape { x, k, m, ahead } = *s;
    let b = Rows::<E>::blocks(k);
    // The pointer reads below stay inside these bounds, checked once per tile.
    let (ws, ss, x) = (&w.w[..R * k], &w.scales[..R * b], &x[i0 * k..(i0 + M) * k]);
    let (wp, sp, xp) = (ws.as_ptr(), ss.as_ptr(), x.as_ptr());
    let line = LINE_BYTES / size_of::<E>();
    // Narrow weights' short rows (a few lines each) are too short for the hardware prefetcher.
    let narrow = size_of::<E>() < size_of::<f32>();
    let mut acc = [[V::zero(); M]; R];
    let body = k / V::LANES * V::LANES;
    let mut p = 0;
    while p < body {
        if (R <= 2 || narrow) && p % line == 0 {
            for r in 0..R {
                // A prefetch never faults; past the weights it only wastes a request.
                V::prefetch(wp.wrapping_add(r * k + p + ahead).cast());
            }
        }
        let xv: [V; M] = std::array::from_fn(|i| V::load(xp.add(i * k + p)));
        for (r, acc) in acc.iter_mut().enumerate() {
            let mut wv = E::load::<V>(wp.add(r * k + p));
            if E::SCALED {
                wv = wv.scale(*sp.add(r * b + p / SCALE_BLOCK));
            }
            for (a, xv) in acc.iter_mut().zip(&xv) {
                *a = V::fmadd(wv, *xv, *a);
            }
        }
        p += V::LANES;
    }
    for (r, acc) in acc.iter().enumerate() {
        let (w_row, s_row) = (&ws[r * k..(r + 1) * k], &ss[r * b..(r + 1) * b]);
        for (i, a) in acc.iter().enumerate() {
            let tail = tail_dot(w_row, s_row, &x[i * k..(i + 1) * k], body);
            out[r * m + i0 + i] = a.sum() + tail;
        }
    }
}

/// Runs `tile::<V, E, R, M>` over the `rows` weight rows of a chunk.
#[inline(always)]
unsafe fn tiles<V: Vector, E: Weight, const R: usize, const M: usize>(
    rows: usize,
    w: Rows<E>,
    s: &Shape,
    out: &mut [f32],
    i0: usize,
) {
    let (k, m) = (s.k, s.m);
    let mut r = 0;
    while r + R <= rows {
        tile::<V, E, R, M>(w.from(r, k), s, &mut out[r * m..], i0);
        r += R;
    }
    while r < rows {
        tile::<V, E, 1, M>(w.from(r, k), s, &mut out[r * m..], i0);
        r += 1;
    }
}

/// Fills `dst` (`[rows of w, m]`, output-row major) with `x [m, k] · wᵀ`: the body of the SIMD
/// kernels, inlined into a function compiled for `V`'s instructions.
#[inline(always)]
pub(super) unsafe fn fill<V: Vector, E: Weight>(
    dst: &mut [f32],
    w: Rows<E>,
    x: &[f32],
    m: usize,
    k: usize,
) {
    // With one group of input rows (`m` up to WIDE_GROUP) each chunk is read once, so its
    // size is free: narrow weights then take whole 8-row tiles, since a one-row tile is one
    // FMA chain, slower than memory for 1- and 2-byte weights. f32 keeps its measured shape.
    let chunk = match m <= WIDE_GROUP && size_of::<E>() < size_of::<f32>() {
        true => CHUNK_ROWS,
        false => (CHUNK_BYTES / (size_of::<E>() * k)).clamp(2, CHUNK_ROWS),
    };
    let s = Shape {
        x,
        k,
        m,
        ahead: chunk * k,
    };
    for (c, out) in dst.chunks_mut(chunk * m).enumerate() {
        let rows = out.len() / m;
        let w = w.range(c * chunk, rows, k);
        let mut i0 = 0;
        while i0 < m {
            // Five rows in one tile need more than 16 registers for scaled (int8) weights on
            // 8-lane vectors (AVX2; NEON pairs have as many), where four rows then one are
            // faster (timing probe, AVX2: 0.58 / 0.51 ms against 0.68 / 0.63 for five at once).
            let group = match m - i0 {
                WIDE_GROUP if !(E::SCALED && V::LANES == 8) => WIDE_GROUP,
                left => left.min(GROUP_ROWS),
            };
            match group {
                5 => tiles::<V, E, 2, 5>(rows, w, &s, out, i0),
                4 => tiles::<V, E, 2, 4>(rows, w, &s, out, i0),
                3 => tiles::<V, E, 2, 3>(rows, w, &s, out, i0),
                2 => tiles::<V, E, 4, 2>(rows, w, &s, out, i0),
                _ => tiles::<V, E, 8, 1>(rows, w, &s, out, i0),
            }
            i0 += group;
        }
    }
}
