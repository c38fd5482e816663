//! Tall matmul `x [m, k] · w [n, k]ᵀ` for many rows per stream (the decoder's later stages: 40
//! to 3200 time steps per frame, compute-bound) with bf16 weights, on CPUs with AMX-BF16 (Intel
//! Sapphire Rapids and later): the activations are rounded to bf16 once per call, and each
//! `tdpbf16ps` multiplies a 16×32 tile of them by a 32×16 tile of weights into 16×16 f32
//! accumulators (8192 multiply-adds per instruction; about eight times the f32 FMA units'
//! rate on the 2-vCPU Xeon measured in docs/benchmarks.md, where AVX-512-BF16's `vdpbf16ps`
//! is slower than f32 FMAs).
//!
//! Layout: the weight is packed at load into panels of [`PANEL`] output columns, each holding,
//! for every pair of inputs `(2q, 2q + 1)`, the 32 columns' bf16 pairs (`[n/32][k'/2][32]` of
//! `u32`, the even input in the low half; `k'` is `k` rounded up to [`K_STEP`]); columns past
//! `n` and inputs past `k` are zero. Rows of 16 consecutive pairs of a panel are AMX's
//! "VNNI" B tiles for its two halves of 16 columns.
//!
//! Each output value is its own row of activations times its own column of weights,
//! accumulated tile by tile along `k` in order, so it is the same bits whatever `m` is, where
//! its row lies and how the rows are split over threads: a batch of streams equals each
//! stream alone.

use super::pointwise::Epilogue;
use super::quant::{bf16_bits, bf16_to_f32};

/// Output columns per panel (two AMX B tiles of 16 columns).
pub(super) const PANEL: usize = 32;
/// Inputs per AMX step (one A tile row of 64 bytes of bf16).
pub(super) const K_STEP: usize = 32;

/// A weight matrix `[n, k]` in bf16 (round to nearest even) laid out for the tall kernel.
#[derive(Clone, Debug)]
pub struct TallWeight {
    n: usize,
    k: usize,
    /// `[n.div_ceil(32)][pairs][32]` bf16 pairs, `pairs = k.div_ceil(32) · 16`.
    panels: Vec<u32>,
}

impl TallWeight {
    /// Packs `w` (`[n, k]`, row-major). Panics if `w.len() != n * k`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "TallWeight::pack: {n}x{k} weights");
        let pairs = padded_k(k) / 2;
        let mut panels = vec![0u32; n.div_ceil(PANEL) * pairs * PANEL];
        for (j, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (panel, column) = (j / PANEL, j % PANEL);
            for (q, pair) in row.chunks(2).enumerate() {
                let low = u32::from(bf16_bits(pair[0]));
                let high = pair.get(1).map_or(0, |&v| u32::from(bf16_bits(v)));
                panels[(panel * pairs + q) * PANEL + column] = low | high << 16;
            }
        }
        Self { n, k, panels }
    }

    /// `(n, k)`: output rows, inputs per row.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// The panels (`[n.div_ceil(32)][k'/2][32]` bf16 pairs).
    pub(super) fn panels(&self) -> &[u32] {
        &self.panels
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.panels.len() * 4
    }

    /// The weights as f32, `[n, k]`: exactly the values the kernel multiplies by.
    pub fn unpack(&self) -> Vec<f32> {
        let pairs = padded_k(self.k) / 2;
        let mut w = Vec::with_capacity(self.n * self.k);
        for j in 0..self.n {
            let (panel, column) = (j / PANEL, j % PANEL);
            w.extend((0..self.k).map(|p| {
                let pair = self.panels[(panel * pairs + p / 2) * PANEL + column];
                bf16_to_f32((pair >> (16 * (p % 2))) as u16)
            }));
        }
        w
    }
}

/// `k` rounded up to a whole number of AMX steps.
pub(super) fn padded_k(k: usize) -> usize {
    k.div_ceil(K_STEP) * K_STEP
}

/// Whether this process runs the tall kernel: the AMX body in use (AMX-BF16 and AVX-512-BF16
/// present and the AMX tile state granted by the operating system; `VV_CPU_KERNELS=avx512`,
/// `avx2` or `portable` turns it off, to measure CPUs without it).
pub fn tall_kernel_available() -> bool {
    super::dispatch::Isa::detect() == super::dispatch::Isa::Amx
}

/// `act(x · wᵀ + bias) + residual` as `[m, n]` rows for `x [m, k]`, or `None` where this
/// process lacks the kernel ([`tall_kernel_available`]). Panics if `x.len() != m * k` or the
/// epilogue's slices have the wrong lengths.
pub fn tall_matmul(x: &[f32], w: &TallWeight, m: usize, e: &Epilogue) -> Option<Vec<f32>> {
    if !tall_kernel_available() {
        return None;
    }
    let (n, k) = (w.n, w.k);
    assert_eq!(x.len(), m * k, "tall_matmul: {m}x{k} inputs");
    assert!(e.bias.is_none_or(|b| b.len() == n), "tall_matmul: bias");
    assert!(
        e.residual.is_none_or(|r| r.len() == m * n),
        "tall_matmul: residual"
    );
    #[cfg(target_arch = "x86_64")]
    return Some(amx_matmul(x, w, m, e));
    // No AMX body outside x86-64 (`tall_kernel_available` is false there).
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// [`tall_matmul`]'s work, on a CPU with the kernel.
#[cfg(target_arch = "x86_64")]
fn amx_matmul(x: &[f32], w: &TallWeight, m: usize, e: &Epilogue) -> Vec<f32> {
    use super::amx::{self, TILE_ROWS};
    use super::for_row_blocks;
    use super::pointwise::finish_rows;
    /// Below this many multiply-adds the call stays on the calling thread.
    const MIN_PARALLEL_MACS: usize = 1 << 20;

    let (n, k) = (w.n, w.k);
    let mut out = vec![0f32; m * n];
    if n == 0 || m == 0 {
        return out;
    }
    let kp = padded_k(k);
    // Whole A tiles: rows past `m` are zero (their results are dropped).
    let mut xb = vec![0u16; m.div_ceil(TILE_ROWS) * TILE_ROWS * kp];
    // SAFETY: AVX-512F/BW/VL and AVX-512-BF16 are present (`amx::usable`); `xb` holds at
    // least `m` zeroed rows of `kp >= k` values.
    unsafe { amx::to_bf16(x, &mut xb, m, k, kp) };
    let threads = super::worker_threads();
    let parallel = m * k * n >= MIN_PARALLEL_MACS && threads > 1;
    let panels = n.div_ceil(PANEL);
    let panel_len = kp / 2 * PANEL;
    if parallel && m <= 2 * TILE_ROWS && panels > 1 {
        // Few rows (one block of 32): split the columns over the threads instead, each panel's
        // [m, 32] result into its own slot, then into place.
        let mut slots = vec![0f32; panels * m * PANEL];
        let per_block = panels.div_ceil(threads);
        for_row_blocks(&mut slots, m * PANEL, per_block, true, |first, block| {
            for (i, slot) in block.chunks_exact_mut(m * PANEL).enumerate() {
                let w = &w.panels[(first + i) * panel_len..(first + i + 1) * panel_len];
                // SAFETY: AMX granted (`amx::usable`); `xb` holds `m` rows rounded up to whole
                // tiles of `kp` values, `slot` `m` rows of one panel's 32 columns.
                unsafe { amx::fill_tall(slot, &xb, w, m, kp, PANEL) };
            }
        });
        for (p, slot) in slots.chunks_exact(m * PANEL).enumerate() {
            let cols = (n - p * PANEL).min(PANEL);
            for (i, row) in slot.chunks_exact(PANEL).enumerate() {
                out[i * n + p * PANEL..][..cols].copy_from_slice(&row[..cols]);
            }
        }
        finish_rows(&mut out, 0, n, e.bias, e.gelu, e.residual);
        return out;
    }
    let parallel = parallel && m > TILE_ROWS;
    let rows_per_block = match parallel {
        true => m.div_ceil(threads).div_ceil(TILE_ROWS) * TILE_ROWS,
        false => m,
    };
    for_row_blocks(&mut out, n, rows_per_block, parallel, |first, rows| {
        let count = rows.len() / n;
        let tiles = count.div_ceil(TILE_ROWS) * TILE_ROWS;
        let xb = &xb[first * kp..(first + tiles) * kp];
        // SAFETY: AMX granted (`amx::usable`); `xb` holds `count` rows rounded up to whole
        // tiles of `kp` values, `rows` `count` rows of `n`, the panels `n` columns of `kp`.
        unsafe { amx::fill_tall(rows, xb, &w.panels, count, kp, n) };
        finish_rows(rows, first, n, e.bias, e.gelu, e.residual);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::gelu::gelu_erf;
    use super::super::test_values as values;
    use super::*;

    fn round_bf16(v: &[f32]) -> Vec<f32> {
        v.iter().map(|&v| bf16_to_f32(bf16_bits(v))).collect()
    }

    const NONE: Epilogue = Epilogue {
        bias: None,
        gelu: false,
        residual: None,
    };

    #[test]
    fn packing_round_trips_through_bf16() {
        for (n, k) in [(1, 1), (3, 5), (33, 8), (40, 77)] {
            let w = values(n * k, 5);
            let t = TallWeight::pack(&w, n, k);
            assert_eq!(t.dims(), (n, k));
            assert_eq!(t.bytes(), n.div_ceil(PANEL) * padded_k(k) / 2 * PANEL * 4);
            assert_eq!(t.unpack(), round_bf16(&w), "{n}x{k}");
        }
    }

    /// Every tile height, columns not a multiple of 16 or 32, odd k, one call split over
    /// threads: each value equals an f64 matmul of the bf16-rounded inputs and weights within
    /// f32 accumulation error; the epilogue (bias, GELU, residual) is applied.
    #[test]
    fn matches_an_f64_matmul_of_bf16_inputs() {
        if !tall_kernel_available() {
            eprintln!("no AVX-512-BF16 kernel on this CPU: nothing to check");
            assert!(tall_matmul(&[0.0], &TallWeight::pack(&[1.0], 1, 1), 1, &NONE).is_none());
            return;
        }
        for (m, k, n) in [
            (1, 2, 1),
            (5, 7, 17),
            (13, 64, 33),
            (25, 31, 70),
            (40, 512, 96),
            (8, 1024, 150),
            (300, 96, 64),
        ] {
            let x = values(m * k, 1);
            let w = TallWeight::pack(&values(n * k, 2), n, k);
            let (xr, wr) = (round_bf16(&x), w.unpack());
            let bias = values(n, 3);
            let residual = values(m * n, 4);
            for gelu in [false, true] {
                let e = Epilogue {
                    bias: Some(&bias),
                    gelu,
                    residual: Some(&residual),
                };
                let got = tall_matmul(&x, &w, m, &e).unwrap();
                assert_eq!(got.len(), m * n);
                for i in 0..m {
                    for j in 0..n {
                        let (mut dot, mut mag) = (0f64, 0f64);
                        for p in 0..k {
                            let v = f64::from(xr[i * k + p]) * f64::from(wr[j * k + p]);
                            dot += v;
                            mag += v.abs();
                        }
                        let mut want = dot + f64::from(bias[j]);
                        if gelu {
                            // The epilogue's own GELU (tested in `gelu`), on the exact sum.
                            want = f64::from(gelu_erf(want as f32));
                        }
                        want += f64::from(residual[i * n + j]);
                        let g = f64::from(got[i * n + j]);
                        let bound = 1e-6 * (mag + 4.0) + 1e-5;
                        assert!(
                            (g - want).abs() <= bound,
                            "m {m} k {k} n {n} [{i},{j}]: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// A row's outputs are the same bits alone as among any number of rows, whatever tile and
    /// thread block it lands in, and whether the rows or (few rows) the columns are split over
    /// threads.
    #[test]
    fn a_rows_result_does_not_depend_on_the_other_rows() {
        if !tall_kernel_available() {
            return;
        }
        for (k, n, rows, counts) in [
            (130, 45, 61, &[1, 2, 11, 12, 13, 25, 60][..]),
            (1024, 150, 41, &[1, 8, 17, 32, 40][..]),
        ] {
            let x = values(rows * k, 7);
            let w = TallWeight::pack(&values(n * k, 8), n, k);
            let all = tall_matmul(&x, &w, rows, &NONE).unwrap();
            for &m in counts {
                let some = tall_matmul(&x[k..(m + 1) * k], &w, m, &NONE).unwrap();
                let (a, b): (Vec<u32>, Vec<u32>) = (
                    some.iter().map(|v| v.to_bits()).collect(),
                    all[n..(m + 1) * n].iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(a, b, "k {k} n {n}: rows 1..{}", m + 1);
            }
        }
    }

    #[test]
    fn empty_dimensions_give_empty_or_zero_outputs() {
        if !tall_kernel_available() {
            return;
        }
        for (m, k, n) in [(0, 5, 3), (2, 0, 3), (2, 5, 0)] {
            let w = TallWeight::pack(&values(n * k, 1), n, k);
            let y = tall_matmul(&values(m * k, 2), &w, m, &NONE).unwrap();
            assert_eq!(y, vec![0.0; m * n], "m {m} k {k} n {n}");
        }
    }
}
