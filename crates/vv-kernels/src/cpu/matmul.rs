//! Skinny matmul `x [m, k] · w [n, k]ᵀ` for few rows (the decoder's early, weight-bound layers):
//! every weight row is read once for all `m` input rows, split over threads by output row.

use super::{for_row_blocks, simd_fn};

/// Accumulator width: two AVX2 registers (four SSE/NEON registers).
const LANES: usize = 16;
/// Below this many weight values the call stays on the calling thread.
const MIN_PARALLEL_WEIGHTS: usize = 1 << 18;
/// Weight values per unit of parallel work (256 KiB).
const BLOCK_WEIGHTS: usize = 1 << 16;

/// Sum of an accumulator (as a short tree, not a 16-long dependency chain) and the products
/// of the unaligned tails.
#[inline(always)]
fn finish(acc: &[f32; LANES], w_tail: &[f32], x_tail: &[f32]) -> f32 {
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
    let tail: f32 = w_tail.iter().zip(x_tail).map(|(a, b)| a * b).sum();
    (quarter[0] + quarter[2]) + (quarter[1] + quarter[3]) + tail
}

/// `w · x` for one input row.
#[inline(always)]
fn dot1(w: &[f32], x: &[f32]) -> f32 {
    let (wc, xc) = (w.chunks_exact(LANES), x.chunks_exact(LANES));
    let (w_tail, x_tail) = (wc.remainder(), xc.remainder());
    let mut acc = [0f32; LANES];
    for (a, b) in wc.zip(xc) {
        for i in 0..LANES {
            acc[i] += a[i] * b[i];
        }
    }
    finish(&acc, w_tail, x_tail)
}

/// `w · x_r` for four input rows, loading each weight chunk once.
#[inline(always)]
fn dot4(w: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
    let wc = w.chunks_exact(LANES);
    let xc = x.map(|r| r.chunks_exact(LANES));
    let w_tail = wc.remainder();
    let tails = [0, 1, 2, 3].map(|r| xc[r].remainder());
    let [c0, c1, c2, c3] = xc;
    let mut acc = [[0f32; LANES]; 4];
    for (((a, b0), b1), (b2, b3)) in wc.zip(c0).zip(c1).zip(c2.zip(c3)) {
        for i in 0..LANES {
            acc[0][i] += a[i] * b0[i];
            acc[1][i] += a[i] * b1[i];
            acc[2][i] += a[i] * b2[i];
            acc[3][i] += a[i] * b3[i];
        }
    }
    [0, 1, 2, 3].map(|r| finish(&acc[r], w_tail, tails[r]))
}

simd_fn! {
    /// Fills `dst` (`[rows of w, m]`, output-row major) for the weight rows in `w`.
    fn fill(dst: &mut [f32], w: &[f32], x: &[f32], m: usize, k: usize) {
        for (out, w_row) in dst.chunks_exact_mut(m).zip(w.chunks_exact(k)) {
            let mut quads = out.chunks_exact_mut(4).zip(x.chunks_exact(4 * k));
            for (out, x) in &mut quads {
                let rows = [&x[..k], &x[k..2 * k], &x[2 * k..3 * k], &x[3 * k..]];
                out.copy_from_slice(&dot4(w_row, rows));
            }
            let done = m / 4 * 4;
            for (o, x_row) in out[done..].iter_mut().zip(x[done * k..].chunks_exact(k)) {
                *o = dot1(w_row, x_row);
            }
        }
    }
}

/// `x [m, k] · w [n, k]ᵀ`, returned **transposed** as `[n, m]` (row `j` holds output column `j`).
pub fn skinny_matmul(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * m];
    if n == 0 || m == 0 || k == 0 {
        return out;
    }
    let parallel = n * k >= MIN_PARALLEL_WEIGHTS;
    #[cfg(target_arch = "x86_64")]
    let isa = super::matmul_x86::Isa::detect();
    // Whole chunks of eight rows per block keep the tiled kernel on its widest tiles.
    let rows_per_block = (BLOCK_WEIGHTS / k).next_multiple_of(8);
    for_row_blocks(&mut out, m, rows_per_block, parallel, |first, dst| {
        let rows = dst.len() / m;
        let w = &w[first * k..(first + rows) * k];
        #[cfg(target_arch = "x86_64")]
        if let Some(isa) = isa {
            return isa.fill(dst, w, x, m, k);
        }
        fill(dst, w, x, m, k)
    });
    out
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

    /// Every tile shape and both tails (weight rows not a multiple of 8, k not of 8) on
    /// whichever kernel this CPU runs.
    #[test]
    fn matches_a_naive_matmul_for_all_row_counts_and_tails() {
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
            let got = skinny_matmul(&x, &w, m, k, n);
            let want = naive(&x, &w, m, k, n);
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-3, "m {m} k {k} n {n}: max abs error {err}");
        }
    }
}
