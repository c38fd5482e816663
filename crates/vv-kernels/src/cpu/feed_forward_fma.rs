//! The σ-VAE decoder's fused feed-forward ([`super::tall_feed_forward`]) on the tall kernel's
//! FMA bodies (`super::tall_fma`: AVX-512F, AVX2), for CPUs without AMX: RMSNorm, the
//! up-projection with its bias and GELU, the down-projection with its bias and the residual, a
//! few dozen rows at a time, the normed and hidden rows kept f32 in the core's cache between
//! the two projections.
//!
//! Each output value depends only on its own row, so a row gives the same bits whatever rows
//! share the call and however they are split over threads.

use std::arch::x86_64::{__m256, __m512};
use std::cell::RefCell;

use super::feed_forward::{by_chunks, FeedForward};
use super::gelu::gelu_erf;
use super::mixer::rms;
use super::tall::{TallBody, PANEL};
use super::tall_fma::{for_each_block_row, FmaVector, MAX_BLOCK_ROWS};

/// Most rows one call works through at once (rounded down to whole blocks): their normed and
/// hidden f32 rows (48 × 2048 × 4 bytes for the widest stage after the first, 0.4 MiB) stay in
/// the core's L2 while every weight panel passes over them.
const CHUNK_ROWS: usize = 4 * MAX_BLOCK_ROWS;

thread_local! {
    /// Each thread's normed and hidden rows, reused across calls.
    static SCRATCH: RefCell<Scratch> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The feed-forward of `x` (`[m, c]` rows) on `body` (an FMA body): the rows are cut into
/// chunks (at most [`CHUNK_ROWS`], whole blocks), spread over the worker threads. The caller
/// checked the shapes and that this CPU runs `body`.
pub(super) fn feed_forward(body: TallBody, x: &[f32], m: usize, f: &FeedForward) -> Vec<f32> {
    let block_rows = body.block_rows();
    let chunk = |out: &mut [f32], x: &[f32], count: usize| {
        SCRATCH.with(|s| {
            let scratch = &mut *s.borrow_mut();
            let rows = Chunk { out, x, count, f };
            // SAFETY: the CPU runs `body` (checked by the caller); shapes checked.
            unsafe {
                match body {
                    TallBody::Avx2 => chunk_rows_avx2(rows, scratch),
                    _ => chunk_rows_avx512(rows, scratch),
                }
            }
        })
    };
    by_chunks(x, m, f.norm.len(), (block_rows, CHUNK_ROWS), chunk)
}

/// One chunk's rows: the output rows, the input rows, how many, the layer.
struct Chunk<'a, 'f> {
    out: &'a mut [f32],
    x: &'a [f32],
    count: usize,
    f: &'a FeedForward<'f>,
}

/// Each thread's normed and hidden rows.
type Scratch = (Vec<f32>, Vec<f32>);

/// [`chunk_rows`] on AVX-512F. Safety: the CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn chunk_rows_avx512(rows: Chunk, scratch: &mut Scratch) {
    chunk_rows::<__m512>(rows, scratch)
}

/// [`chunk_rows`] on AVX2+FMA. Safety: the CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_rows_avx2(rows: Chunk, scratch: &mut Scratch) {
    chunk_rows::<__m256>(rows, scratch)
}

/// The feed-forward of a chunk's rows, through the scratch rows (resized here). Safety: the CPU
/// has `V`'s instructions.
#[inline(always)]
unsafe fn chunk_rows<V: FmaVector>(rows: Chunk, (normed, hidden): &mut Scratch) {
    let Chunk { out, x, count, f } = rows;
    let c = f.norm.len();
    let (h, _) = f.up.dims();
    normed.clear();
    normed.resize(count * c, 0.0);
    hidden.clear();
    hidden.resize(count * h, 0.0);
    for (row, dst) in x.chunks_exact(c).zip(normed.chunks_exact_mut(c)) {
        let rms = rms(row, f.eps);
        for ((d, x), w) in dst.iter_mut().zip(row).zip(f.norm) {
            *d = x / rms * w;
        }
    }
    // Up-projection, bias, GELU: each panel's 32 hidden columns for every row.
    for_each_block_row::<V>(normed, c, count, c, f.up.panels(), h, |row, col, values| {
        let at = row * h + col;
        gelu_row(
            values,
            &f.up_bias[col..],
            &mut hidden[at..at + values.len()],
        );
    });
    // Down-projection, bias, residual.
    for_each_block_row::<V>(
        hidden,
        h,
        count,
        h,
        f.down.panels(),
        c,
        |row, col, values| {
            let at = row * c + col;
            let dst = &mut out[at..at + values.len()];
            let (bias, residual) = (&f.down_bias[col..], &x[at..]);
            for (((d, v), b), x) in dst.iter_mut().zip(values).zip(bias).zip(residual) {
                *d = v + b + x;
            }
        },
    );
}

/// `GELU(acc + bias)` of one block row (at most 32 columns) into `dst`.
#[inline(always)]
fn gelu_row(acc: &[f32], bias: &[f32], dst: &mut [f32]) {
    match (
        <&[f32; PANEL]>::try_from(acc),
        <&mut [f32; PANEL]>::try_from(&mut *dst),
    ) {
        // A whole panel (every stage's width is a multiple of 32): a fixed-length loop.
        (Ok(acc), Ok(dst)) => {
            let bias: &[f32; PANEL] = bias[..PANEL].try_into().unwrap();
            for j in 0..PANEL {
                dst[j] = gelu_erf(acc[j] + bias[j]);
            }
        }
        _ => {
            for ((d, a), b) in dst.iter_mut().zip(acc).zip(bias) {
                *d = gelu_erf(a + b);
            }
        }
    }
}
