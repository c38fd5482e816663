//! Skinny matmul `x [m, k] · w [n, k]ᵀ` for few rows (the decoder's early, weight-bound layers):
//! every weight row is read once for all `m` input rows, split over threads by output row.

use super::with_simd;

/// Accumulator width: two AVX2 registers (four SSE/NEON registers).
const LANES: usize = 16;
/// Input rows multiplied together against one weight row.
const GROUP: usize = 4;
/// Below this many weight values the call stays on one thread (spawning costs ~20 µs).
const MIN_PARALLEL_WEIGHTS: usize = 1 << 18;

/// A block of `rows` input rows starting at `first`, interleaved for the kernel: for every
/// `LANES`-wide column chunk, the rows' chunks one after the other; then each row's tail.
struct PackedRows {
    first: usize,
    rows: usize,
    data: Vec<f32>,
}

fn pack(x: &[f32], k: usize, first: usize, rows: usize) -> PackedRows {
    let body = k / LANES * LANES;
    let mut data = Vec::with_capacity(rows * k);
    for chunk in (0..body).step_by(LANES) {
        for r in first..first + rows {
            data.extend_from_slice(&x[r * k + chunk..r * k + chunk + LANES]);
        }
    }
    for r in first..first + rows {
        data.extend_from_slice(&x[r * k + body..(r + 1) * k]);
    }
    PackedRows { first, rows, data }
}

/// Dot products of one weight row with `R` packed input rows.
#[inline(always)]
fn dot<const R: usize>(w: &[f32], packed: &[f32], k: usize) -> [f32; R] {
    let body = k / LANES * LANES;
    let mut acc = [[0f32; LANES]; R];
    for (wc, xg) in w[..body]
        .chunks_exact(LANES)
        .zip(packed.chunks_exact(R * LANES))
    {
        for (a, xc) in acc.iter_mut().zip(xg.chunks_exact(LANES)) {
            for ((a, &wv), &xv) in a.iter_mut().zip(wc).zip(xc) {
                *a += wv * xv;
            }
        }
    }
    let tail = &packed[body * R..];
    let mut out = [0f32; R];
    for (r, o) in out.iter_mut().enumerate() {
        *o = acc[r].iter().sum::<f32>()
            + w[body..]
                .iter()
                .zip(&tail[r * (k - body)..(r + 1) * (k - body)])
                .map(|(a, b)| a * b)
                .sum::<f32>();
    }
    out
}

/// Fills `dst` (`[rows of w, m]`, output-row major) for the weight rows in `w`.
#[inline(always)]
fn fill(dst: &mut [f32], w: &[f32], groups: &[PackedRows], m: usize, k: usize) {
    for (out, w_row) in dst.chunks_exact_mut(m).zip(w.chunks_exact(k)) {
        for g in groups {
            let out = &mut out[g.first..g.first + g.rows];
            if g.rows == GROUP {
                out.copy_from_slice(&dot::<GROUP>(w_row, &g.data, k));
            } else {
                out.copy_from_slice(&dot::<1>(w_row, &g.data, k));
            }
        }
    }
}

/// `x [m, k] · w [n, k]ᵀ`, returned **transposed** as `[n, m]` (row `j` holds output column `j`).
pub(in crate::acoustic_decoder) fn skinny_matmul(
    x: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    let mut groups = Vec::new();
    let mut first = 0;
    while first < m {
        let rows = if m - first >= GROUP { GROUP } else { 1 };
        groups.push(pack(x, k, first, rows));
        first += rows;
    }
    let mut out = vec![0f32; n * m];
    if n == 0 || m == 0 || k == 0 {
        return out;
    }
    let threads = if n * k >= MIN_PARALLEL_WEIGHTS {
        candle_core::utils::get_num_threads().clamp(1, n)
    } else {
        1
    };
    let rows_per_thread = n.div_ceil(threads);
    let groups = &groups;
    std::thread::scope(|scope| {
        let mut parts = out
            .chunks_mut(rows_per_thread * m)
            .zip(w.chunks(rows_per_thread * k));
        let own = parts.next();
        for (dst, w) in parts {
            scope.spawn(move || with_simd(|| fill(dst, w, groups, m, k)));
        }
        if let Some((dst, w)) = own {
            with_simd(|| fill(dst, w, groups, m, k));
        }
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

    #[test]
    fn matches_a_naive_matmul_for_all_row_counts_and_tails() {
        let value = |i: usize| ((i * 7919 % 1000) as f32 - 500.0) / 500.0;
        for (m, k, n) in [(1, 3, 5), (2, 16, 7), (5, 37, 9), (9, 300, 1000), (16, 1024, 300)] {
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
