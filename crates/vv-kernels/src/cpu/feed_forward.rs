//! The σ-VAE decoder's Block1D feed-forward for many rows in one fused pass on AMX (this file;
//! without AMX, on the FMA bodies: `feed_forward_fma.rs`): RMSNorm,
//! the up-projection with its bias and GELU, the down-projection with its bias and the
//! residual, a few dozen rows at a time, so the four-times-wider hidden activations stay in
//! the core's cache as bf16 instead of making six trips through memory as f32 (normed rows,
//! their bf16 copy, the zeroed output, its GELU pass, its bf16 copy, the epilogue).
//!
//! Each output value depends only on its own row (its norm, its tiles along `k` in order), so
//! a row gives the same bits whatever rows share the call and however they are split over
//! threads: a batch of streams equals each stream alone.

use super::tall::{TallBody, TallWeight};

/// One feed-forward: `x + down · GELU(up · (x / rms(x) ⊙ norm) + up_bias) + down_bias`, with
/// `up` `[h, c]` and `down` `[c, h]` packed for the tall kernel.
pub struct FeedForward<'a> {
    /// RMSNorm weight, `[c]`.
    pub norm: &'a [f32],
    /// RMSNorm epsilon (added to the mean square).
    pub eps: f32,
    /// `[h, c]`.
    pub up: &'a TallWeight,
    /// `[h]`.
    pub up_bias: &'a [f32],
    /// `[c, h]`.
    pub down: &'a TallWeight,
    /// `[c]`.
    pub down_bias: &'a [f32],
}

/// The feed-forward of `x` (`[m, c]` rows) as `[m, c]` rows, or `None` where this process
/// lacks the tall kernel ([`super::tall_kernel_available`]). Panics if the shapes disagree.
pub fn tall_feed_forward(x: &[f32], m: usize, f: &FeedForward) -> Option<Vec<f32>> {
    TallBody::detect().map(|body| feed_forward_on(body, x, m, f))
}

/// [`tall_feed_forward`] on `body`, which this CPU runs.
pub(super) fn feed_forward_on(body: TallBody, x: &[f32], m: usize, f: &FeedForward) -> Vec<f32> {
    let c = f.norm.len();
    let (h, up_k) = f.up.dims();
    assert_eq!(x.len(), m * c, "tall_feed_forward: {m}x{c} inputs");
    assert_eq!(up_k, c, "tall_feed_forward: up-projection inputs");
    assert_eq!(f.down.dims(), (c, h), "tall_feed_forward: down-projection");
    assert_eq!(f.up_bias.len(), h, "tall_feed_forward: up bias");
    assert_eq!(f.down_bias.len(), c, "tall_feed_forward: down bias");
    #[cfg(target_arch = "x86_64")]
    return match body {
        TallBody::Amx => amx::feed_forward(x, m, f),
        TallBody::Avx512 | TallBody::Avx2 => super::feed_forward_fma::feed_forward(body, x, m, f),
    };
    // No body outside x86-64 (`TallBody::detect` is `None` there).
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no tall body {body:?} outside x86-64")
}

/// Runs `chunk(out rows, input rows, count)` over the `m` rows of `x` (`[m, c]`) cut into
/// chunks of at most `max_rows` rows (whole blocks of `block_rows`), spread over the worker
/// threads; returns the `[m, c]` output. Shared by the bodies' feed-forwards.
#[cfg(target_arch = "x86_64")]
pub(super) fn by_chunks(
    x: &[f32],
    m: usize,
    c: usize,
    (block_rows, max_rows): (usize, usize),
    chunk: impl Fn(&mut [f32], &[f32], usize) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; m * c];
    if m == 0 || c == 0 {
        return out;
    }
    let threads = super::worker_threads();
    let per_thread = m.div_ceil(threads).div_ceil(block_rows) * block_rows;
    let rows_per_chunk = per_thread.min(max_rows / block_rows * block_rows);
    let parallel = threads > 1 && m > rows_per_chunk;
    super::for_row_blocks(&mut out, c, rows_per_chunk, parallel, |first, rows| {
        // Without threads the whole call arrives here: still one chunk at a time.
        for (i, rows) in rows.chunks_mut(rows_per_chunk * c).enumerate() {
            let (start, count) = (first + i * rows_per_chunk, rows.len() / c);
            chunk(rows, &x[start * c..(start + count) * c], count);
        }
    });
    out
}

#[cfg(target_arch = "x86_64")]
mod amx {
    use std::arch::x86_64::{__m256i, _mm256_storeu_si256, _mm512_cvtneps_pbh, _mm512_loadu_ps};
    use std::cell::RefCell;

    use super::FeedForward;
    use crate::cpu::amx::{for_each_block_row, Tiles, TILE_ROWS};
    use crate::cpu::gelu::gelu_erf;
    use crate::cpu::mixer::rms;
    use crate::cpu::tall::{padded_k, PANEL};

    /// Most rows one call works through at once: their normed and hidden bf16 rows (64 ×
    /// 2048 × 2 bytes for the widest stage after the first, 0.25 MiB) stay in the core's L2
    /// while every weight panel passes over them.
    const CHUNK_ROWS: usize = 64;

    thread_local! {
        /// Each thread's normed and hidden bf16 rows, reused across calls.
        static SCRATCH: RefCell<(Vec<u16>, Vec<u16>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }

    /// [`super::tall_feed_forward`]'s work, on a CPU with the kernel: the rows are cut into
    /// chunks (at most [`CHUNK_ROWS`], whole tiles), spread over the worker threads.
    pub(super) fn feed_forward(x: &[f32], m: usize, f: &FeedForward) -> Vec<f32> {
        let chunk = |out: &mut [f32], x: &[f32], count: usize| {
            SCRATCH.with(|s| {
                let (normed, hidden) = &mut *s.borrow_mut();
                // SAFETY: the tall kernel is available (checked by the caller), so AMX is
                // granted and AVX-512F/BW/VL and AVX-512-BF16 are present; shapes checked.
                unsafe { chunk_rows(out, x, count, f, normed, hidden) }
            })
        };
        super::by_chunks(x, m, f.norm.len(), (TILE_ROWS, CHUNK_ROWS), chunk)
    }

    /// The feed-forward of `count` rows `x` into `out`, through the scratch rows `normed` and
    /// `hidden` (resized here). Safety: AMX granted; AVX-512F/BW/VL and AVX-512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
    unsafe fn chunk_rows(
        out: &mut [f32],
        x: &[f32],
        count: usize,
        f: &FeedForward,
        normed: &mut Vec<u16>,
        hidden: &mut Vec<u16>,
    ) {
        let c = f.norm.len();
        let (h, _) = f.up.dims();
        let (kc, kh) = (padded_k(c), padded_k(h));
        // Whole tiles of rows: the rows past `count` are zero (their results are dropped).
        let tile_rows = count.div_ceil(TILE_ROWS) * TILE_ROWS;
        normed.clear();
        normed.resize(tile_rows * kc, 0);
        hidden.clear();
        hidden.resize(tile_rows * kh, 0);
        for (row, dst) in x.chunks_exact(c).zip(normed.chunks_exact_mut(kc)) {
            norm_row(row, f.norm, f.eps, dst);
        }
        let _tiles = Tiles::configure();
        // Up-projection, bias, GELU: each panel's 32 hidden columns for every row, as bf16.
        let hidden_rows = hidden.as_mut_ptr();
        for_each_block_row(normed, f.up.panels(), count, kc, h, |row, col, values| {
            let bias = &f.up_bias[col..col + values.len()];
            gelu_to_bf16(values, bias, hidden_rows.add(row * kh + col));
        });
        // Down-projection, bias, residual.
        for_each_block_row(hidden, f.down.panels(), count, kh, c, |row, col, values| {
            let at = row * c + col;
            let dst = &mut out[at..at + values.len()];
            let (bias, residual) = (&f.down_bias[col..], &x[at..]);
            for (((d, v), b), x) in dst.iter_mut().zip(values).zip(bias).zip(residual) {
                *d = v + b + x;
            }
        });
    }

    /// `x / rms(x) ⊙ w` as bf16 (nearest even) into `dst` (`dst.len() >= x.len()`, its tail
    /// zeroed).
    #[inline(always)]
    unsafe fn norm_row(x: &[f32], w: &[f32], eps: f32, dst: &mut [u16]) {
        let rms = rms(x, eps);
        let (head, tail) = dst.split_at_mut(x.len());
        tail.fill(0);
        let mut p = 0;
        while p < x.len() {
            let n = (x.len() - p).min(16);
            let mut v = [0f32; 16];
            for ((v, x), w) in v.iter_mut().zip(&x[p..p + n]).zip(&w[p..p + n]) {
                *v = x / rms * w;
            }
            let bf16: __m256i =
                std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(v.as_ptr())));
            let mut bits = [0u16; 16];
            _mm256_storeu_si256(bits.as_mut_ptr().cast(), bf16);
            head[p..p + n].copy_from_slice(&bits[..n]);
            p += 16;
        }
    }

    /// `GELU(acc + bias)` of one block row (at most 32 columns) as 32 bf16 at `dst` (columns
    /// past `acc.len()` zero).
    #[inline(always)]
    unsafe fn gelu_to_bf16(acc: &[f32], bias: &[f32], dst: *mut u16) {
        let mut v = [0f32; PANEL];
        match (
            <&[f32; PANEL]>::try_from(acc),
            <&[f32; PANEL]>::try_from(bias),
        ) {
            // A whole panel (every stage's width is a multiple of 32): a fixed-length loop.
            (Ok(acc), Ok(bias)) => {
                for j in 0..PANEL {
                    v[j] = gelu_erf(acc[j] + bias[j]);
                }
            }
            _ => {
                for ((v, a), b) in v.iter_mut().zip(acc).zip(bias) {
                    *v = gelu_erf(a + b);
                }
            }
        }
        for half in 0..2 {
            let f = _mm512_loadu_ps(v.as_ptr().add(16 * half));
            let bf16: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(f));
            _mm256_storeu_si256(dst.add(16 * half).cast(), bf16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::gelu::gelu_erf;
    use super::super::test_values as values;
    use super::*;

    /// One bf16 rounding's largest relative error, doubled: the AMX body rounds values
    /// computed in f32, which may land on the other side of a rounding boundary than the exact
    /// ones. The AVX-512F body rounds nothing.
    fn rounding(body: TallBody) -> f64 {
        match body {
            TallBody::Amx => 1.0 / 128.0,
            TallBody::Avx512 | TallBody::Avx2 => 0.0,
        }
    }

    /// The feed-forward in f64 from the same bf16 weights, and a bound on how far the kernel
    /// may be from it: the body's roundings (`rounding`: normed rows, hidden activations,
    /// carried through GELU's slope, at most 1.13) and f32 accumulation.
    fn reference(x: &[f32], m: usize, f: &FeedForward, rounding: f64) -> Vec<(f64, f64)> {
        let c = f.norm.len();
        let (h, _) = f.up.dims();
        let (up, down) = (f.up.unpack(), f.down.unpack());
        let mut out = Vec::with_capacity(m * c);
        for row in x.chunks_exact(c) {
            let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / c as f64;
            let rms = (ms + f64::from(f.eps)).sqrt();
            let normed: Vec<f64> = (0..c)
                .map(|j| f64::from(row[j]) / rms * f64::from(f.norm[j]))
                .collect();
            let (hidden, hidden_err): (Vec<f64>, Vec<f64>) = (0..h)
                .map(|j| {
                    let terms = (0..c).map(|p| normed[p] * f64::from(up[j * c + p]));
                    let mag: f64 = terms.clone().map(f64::abs).sum();
                    let pre = terms.sum::<f64>() + f64::from(f.up_bias[j]);
                    let v = f64::from(gelu_erf(pre as f32));
                    (
                        v,
                        rounding * v.abs() + 1.2 * (rounding * mag + 1e-6 * (mag + 4.0)),
                    )
                })
                .unzip();
            for j in 0..c {
                let (mut dot, mut mag, mut err) = (0f64, 0f64, 0f64);
                for p in 0..h {
                    let w = f64::from(down[j * h + p]);
                    dot += hidden[p] * w;
                    mag += (hidden[p] * w).abs();
                    err += hidden_err[p] * w.abs();
                }
                let want = dot + f64::from(f.down_bias[j]) + f64::from(row[j]);
                out.push((want, err + 1e-6 * (mag + 4.0) + 1e-5));
            }
        }
        out
    }

    fn layer(
        c: usize,
        h: usize,
        seed: u64,
    ) -> (Vec<f32>, TallWeight, Vec<f32>, TallWeight, Vec<f32>) {
        let scale = |v: Vec<f32>, s: f32| v.into_iter().map(|v| v * s).collect::<Vec<_>>();
        (
            scale(values(c, seed), 0.5)
                .iter()
                .map(|v| v + 1.0)
                .collect(),
            TallWeight::pack(&scale(values(h * c, seed + 1), 0.3), h, c),
            values(h, seed + 2),
            TallWeight::pack(&scale(values(c * h, seed + 3), 0.1), c, h),
            values(c, seed + 4),
        )
    }

    /// Every body this CPU runs; rows that fill no tile, one tile, many chunks over threads;
    /// channel counts not a multiple of 32: every value equals the f64 feed-forward within the
    /// body's roundings and f32 accumulation error.
    #[test]
    fn every_body_matches_an_f64_feed_forward_within_its_roundings() {
        for body in TallBody::all_supported() {
            matches_the_reference(body);
        }
    }

    fn matches_the_reference(body: TallBody) {
        for (m, c, h) in [
            (1, 32, 128),
            (5, 40, 72),
            (40, 64, 256),
            (150, 32, 128),
            (33, 128, 512),
        ] {
            let (norm, up, up_bias, down, down_bias) = layer(c, h, m as u64);
            let f = FeedForward {
                norm: &norm,
                eps: 1e-5,
                up: &up,
                up_bias: &up_bias,
                down: &down,
                down_bias: &down_bias,
            };
            let x = values(m * c, 9);
            let got = feed_forward_on(body, &x, m, &f);
            let want = reference(&x, m, &f, rounding(body));
            for (i, (g, (want, bound))) in got.iter().zip(want).enumerate() {
                let g = f64::from(*g);
                assert!(
                    (g - want).abs() <= bound,
                    "{body:?} m {m} c {c} h {h} value {i}: {g} vs {want}"
                );
            }
        }
    }

    /// A row's outputs are the same bits alone as among any number of rows.
    #[test]
    fn a_rows_result_does_not_depend_on_the_other_rows() {
        for body in TallBody::all_supported() {
            rows_are_independent(body);
        }
    }

    fn rows_are_independent(body: TallBody) {
        let (c, h, rows) = (64, 256, 300);
        let (norm, up, up_bias, down, down_bias) = layer(c, h, 3);
        let f = FeedForward {
            norm: &norm,
            eps: 1e-6,
            up: &up,
            up_bias: &up_bias,
            down: &down,
            down_bias: &down_bias,
        };
        let x = values(rows * c, 4);
        let all = feed_forward_on(body, &x, rows, &f);
        for (start, m) in [(0, 1), (7, 1), (3, 17), (10, 40), (64, 65), (1, 299)] {
            let some = feed_forward_on(body, &x[start * c..(start + m) * c], m, &f);
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&some),
                bits(&all[start * c..(start + m) * c]),
                "{body:?} rows {start}..{}",
                start + m
            );
        }
    }
}
