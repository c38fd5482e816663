//! A causal convolution with few output channels (the σ-VAE decoder's head: one per audio
//! channel) straight from each stream's time-major window: output row `t` is a dot product of
//! each filter with the window's `K` consecutive rows from `t`, which lie contiguous in memory,
//! so no column matrix is built.
//!
//! Each value depends only on its own window rows: a batch equals each stream alone.

use super::{dot, for_row_blocks, simd_fn};

/// Below this many multiply-adds the call stays on the calling thread.
const MIN_PARALLEL_MACS: usize = 1 << 18;
/// Output rows per unit of parallel work.
const BLOCK_ROWS: usize = 256;

simd_fn! {
    /// The output rows `out` (`n` wide, the first is row `first` of the batch) of streams of
    /// `len` steps whose windows (`len + K - 1` rows of `c`) follow each other in `window`.
    fn conv_rows(
        out: &mut [f32],
        first: usize,
        window: &[f32],
        len: usize,
        c: usize,
        w: &[f32],
        bias: &[f32],
    ) {
        let n = bias.len();
        let taps = w.len() / n;
        let span = len + taps / c - 1;
        for (i, row) in out.chunks_exact_mut(n).enumerate() {
            let (stream, t) = ((first + i) / len, (first + i) % len);
            let rows = &window[(stream * span + t) * c..][..taps];
            for ((o, w), b) in row.iter_mut().zip(w.chunks_exact(taps)).zip(bias) {
                *o = b + dot(w, rows);
            }
        }
    }
}

/// `bias + w · window[t .. t + K]` for every step `t` of `batch` streams, as `[B·T, n]` rows:
/// `window` holds each stream's `K - 1` earlier rows then its `T` rows (`[B, T + K - 1, c]`),
/// `w` is `[n, K·c]` (step-major: the oldest row's `c` inputs first). Panics if the lengths
/// disagree.
pub fn window_conv(window: &[f32], batch: usize, c: usize, w: &[f32], bias: &[f32]) -> Vec<f32> {
    let n = bias.len();
    assert!(
        n > 0 && c > 0 && w.len().is_multiple_of(n * c),
        "window_conv: weights"
    );
    let taps = w.len() / n / c;
    assert!(
        taps > 0 && batch > 0,
        "window_conv: {taps} taps, {batch} streams"
    );
    assert!(
        window.len().is_multiple_of(batch * c) && window.len() / (batch * c) >= taps,
        "window_conv: window of {} values for {batch} streams of {c}",
        window.len()
    );
    let len = window.len() / (batch * c) - (taps - 1);
    let mut out = vec![0f32; batch * len * n];
    let parallel = out.len() * w.len() >= MIN_PARALLEL_MACS;
    for_row_blocks(&mut out, n, BLOCK_ROWS, parallel, |first, rows| {
        conv_rows(rows, first, window, len, c, w, bias)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_values as values;
    use super::*;

    /// One and several streams, one and several filters, short and long: every value equals
    /// the f64 definition; each stream of a batch gets the bits it gets alone.
    #[test]
    fn matches_the_f64_definition_and_a_batch_its_streams_alone() {
        for (batch, len, c, n, taps) in [(1, 1, 3, 1, 7), (2, 5, 4, 2, 3), (3, 3200, 32, 1, 7)] {
            let span = len + taps - 1;
            let window = values(batch * span * c, 1);
            let (w, bias) = (values(n * taps * c, 2), values(n, 3));
            let out = window_conv(&window, batch, c, &w, &bias);
            assert_eq!(out.len(), batch * len * n);
            for b in 0..batch {
                let stream = &window[b * span * c..(b + 1) * span * c];
                let alone = window_conv(stream, 1, c, &w, &bias);
                assert!(alone == out[b * len * n..(b + 1) * len * n], "stream {b}");
                for t in 0..len {
                    for j in 0..n {
                        let want: f64 = f64::from(bias[j])
                            + (0..taps * c)
                                .map(|i| {
                                    f64::from(w[j * taps * c + i]) * f64::from(stream[t * c + i])
                                })
                                .sum::<f64>();
                        let got = f64::from(alone[t * n + j]);
                        assert!(
                            (got - want).abs() < 1e-5,
                            "[{b}, {t}, {j}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
