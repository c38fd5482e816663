//! The σ-VAE decoder's Block1D mixer for a batch of streams in one pass per step: each row
//! RMS-normed, then the depthwise causal convolution over the normed rows (each stream's
//! carried normed rows first) with its bias and the residual, and the streams' next carried
//! rows. Replaces a chain of tensor ops (norm, history concatenation, one convolution per
//! stream, output concatenation, history slice) that each allocated and copied.
//!
//! Every value depends only on its own stream's rows, so a batch equals each stream alone.

use super::{dot, for_row_blocks, simd_fn};

/// Below this many values a pass stays on the calling thread.
const MIN_PARALLEL_VALUES: usize = 1 << 17;
/// Values per unit of parallel work.
const BLOCK_VALUES: usize = 1 << 14;

/// One mixer: RMSNorm weight and epsilon, the `K` taps `[K, C]` and the bias `[C]`.
pub struct Mixer<'a> {
    /// `[C]`.
    pub norm: &'a [f32],
    /// Added to the mean square.
    pub eps: f32,
    /// `[K, C]`, oldest time step first.
    pub taps: &'a [f32],
    /// `[C]`.
    pub bias: &'a [f32],
}

/// `sqrt(mean(x²) + eps)`, the squares summed as [`dot`] sums (the same bits for a row
/// wherever it is computed).
#[inline(always)]
pub(super) fn rms(x: &[f32], eps: f32) -> f32 {
    (dot(x, x) / x.len().max(1) as f32 + eps).sqrt()
}

simd_fn! {
    /// Fills the window rows `rows` (whose first is row `first` of the batch's windows, each
    /// stream's `carried + len` rows): carried rows copied from `history`, the others the
    /// RMS-normed rows of `x`.
    fn window_rows(
        rows: &mut [f32],
        first: usize,
        x: &[f32],
        history: &[f32],
        m: &Mixer,
        carried: usize,
        len: usize,
    ) {
        let c = m.norm.len();
        for (i, row) in rows.chunks_exact_mut(c).enumerate() {
            let (stream, step) = ((first + i) / (carried + len), (first + i) % (carried + len));
            match step.checked_sub(carried) {
                None => row.copy_from_slice(&history[(stream * carried + step) * c..][..c]),
                Some(t) => {
                    let x = &x[(stream * len + t) * c..][..c];
                    let rms = rms(x, m.eps);
                    for ((v, x), w) in row.iter_mut().zip(x).zip(m.norm) {
                        *v = x / rms * w;
                    }
                }
            }
        }
    }
}

simd_fn! {
    /// Adds bias and taps ⊙ shifted window to the residual rows in `out` (`c` channels), whose
    /// first row is time step `first` of the stream whose window is `window`.
    fn depthwise_rows(
        out: &mut [f32],
        first: usize,
        window: &[f32],
        taps: &[f32],
        bias: &[f32],
        c: usize,
    ) {
        for (t, row) in out.chunks_exact_mut(c).enumerate() {
            let t = first + t;
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            for (k, tap) in taps.chunks_exact(c).enumerate() {
                let input = &window[(t + k) * c..(t + k + 1) * c];
                row.iter_mut()
                    .zip(tap)
                    .zip(input)
                    .for_each(|((v, w), x)| *v += w * x);
            }
        }
    }
}

/// The mixer on `x` (`[B·T, C]`, stream by stream) with the streams' carried normed rows
/// `history` (`[B, K - 1, C]`): returns `x + bias + Σ_k taps[k] ⊙ window[t + k]`, where each
/// stream's window is its carried rows then its normed rows, and the next carried rows (the
/// last `K - 1` of each window). Panics if the lengths disagree.
pub fn norm_mix(x: &[f32], history: &[f32], batch: usize, m: &Mixer) -> (Vec<f32>, Vec<f32>) {
    let c = m.norm.len();
    assert!(
        c > 0 && m.bias.len() == c && m.taps.len().is_multiple_of(c),
        "norm_mix: weights"
    );
    let carried = (m.taps.len() / c).saturating_sub(1);
    assert!(
        batch > 0 && x.len().is_multiple_of(batch * c),
        "norm_mix: {batch} streams of {c}"
    );
    assert_eq!(history.len(), batch * carried * c, "norm_mix: history");
    let len = x.len() / (batch * c);
    let span = carried + len;
    let mut window = vec![0f32; batch * span * c];
    let parallel = window.len() >= MIN_PARALLEL_VALUES;
    for_row_blocks(&mut window, c, BLOCK_VALUES / c, parallel, |first, rows| {
        window_rows(rows, first, x, history, m, carried, len)
    });
    let mut out = x.to_vec();
    for (stream, out) in out.chunks_exact_mut(len * c).enumerate() {
        let window = &window[stream * span * c..][..span * c];
        let parallel = out.len() >= MIN_PARALLEL_VALUES;
        for_row_blocks(out, c, BLOCK_VALUES / c, parallel, |first, rows| {
            depthwise_rows(rows, first, window, m.taps, m.bias, c)
        });
    }
    let next = window
        .chunks_exact(span * c)
        .flat_map(|w| &w[len * c..])
        .copied()
        .collect();
    (out, next)
}

#[cfg(test)]
mod tests {
    use super::super::test_values as values;
    use super::*;

    /// The mixer in f64, stream by stream, from its definition.
    fn reference(x: &[f32], history: &[f32], batch: usize, m: &Mixer) -> (Vec<f64>, Vec<f64>) {
        let c = m.norm.len();
        let k = m.taps.len() / c;
        let len = x.len() / (batch * c);
        let (mut out, mut next) = (Vec::new(), Vec::new());
        for b in 0..batch {
            let mut window: Vec<Vec<f64>> = history[b * (k - 1) * c..(b + 1) * (k - 1) * c]
                .chunks(c)
                .map(|r| r.iter().map(|&v| f64::from(v)).collect())
                .collect();
            let rows = &x[b * len * c..(b + 1) * len * c];
            for row in rows.chunks(c) {
                let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / c as f64;
                let rms = (ms + f64::from(m.eps)).sqrt();
                window.push(
                    (0..c)
                        .map(|j| f64::from(row[j]) / rms * f64::from(m.norm[j]))
                        .collect(),
                );
            }
            for (t, row) in rows.chunks(c).enumerate() {
                out.extend((0..c).map(|j| {
                    let mixed: f64 = (0..k)
                        .map(|i| f64::from(m.taps[i * c + j]) * window[t + i][j])
                        .sum();
                    f64::from(row[j]) + f64::from(m.bias[j]) + mixed
                }));
            }
            next.extend(window[window.len() - (k - 1)..].iter().flatten());
        }
        (out, next)
    }

    /// Streams shorter and longer than the carried rows, one and several streams, parallel
    /// and not: the outputs and the next carried rows equal the f64 definition.
    #[test]
    fn matches_the_f64_definition() {
        for (batch, len, c, k) in [
            (1, 1, 3, 7),
            (2, 3, 5, 7),
            (3, 40, 16, 7),
            (2, 3000, 48, 7),
            (1, 9, 4, 2),
        ] {
            let norm: Vec<f32> = values(c, 1).iter().map(|v| v + 1.5).collect();
            let (taps, bias) = (values(k * c, 2), values(c, 3));
            let m = Mixer {
                norm: &norm,
                eps: 1e-5,
                taps: &taps,
                bias: &bias,
            };
            let x = values(batch * len * c, 4);
            let history = values(batch * (k - 1) * c, 5);
            let (out, next) = norm_mix(&x, &history, batch, &m);
            let (want_out, want_next) = reference(&x, &history, batch, &m);
            for (got, want) in [(&out, &want_out), (&next, &want_next)] {
                assert_eq!(got.len(), want.len());
                for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
                    let err = (f64::from(g) - w).abs();
                    assert!(
                        err <= 1e-5 * (1.0 + w.abs()),
                        "batch {batch} len {len} c {c} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// Each stream of a batch gets the bits it gets alone.
    #[test]
    fn a_batch_equals_its_streams_alone() {
        let (batch, len, c, k) = (3, 1000, 64, 7);
        let norm = values(c, 6);
        let (taps, bias) = (values(k * c, 7), values(c, 8));
        let m = Mixer {
            norm: &norm,
            eps: 1e-6,
            taps: &taps,
            bias: &bias,
        };
        let x = values(batch * len * c, 9);
        let history = values(batch * (k - 1) * c, 10);
        let (out, next) = norm_mix(&x, &history, batch, &m);
        let h = (k - 1) * c;
        for b in 0..batch {
            let (one, one_next) =
                norm_mix(&x[b * len * c..][..len * c], &history[b * h..][..h], 1, &m);
            assert!(one == out[b * len * c..][..len * c], "stream {b}");
            assert!(one_next == next[b * h..][..h], "stream {b} carried rows");
        }
    }
}
