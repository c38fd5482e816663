//! Tall matmul `x [m, k] · w [n, k]ᵀ` for many rows per stream (the decoder's later stages: 40
//! to 3200 time steps per frame, compute-bound) with bf16 weights, on x86-64 CPUs with AVX2 or
//! AVX-512F. Three bodies ([`TallBody`]): with AMX-BF16 (Intel Sapphire Rapids and later) the
//! activations are rounded to bf16 once per call, and each `tdpbf16ps` multiplies a 16×32 tile
//! of them by a 32×16 tile of weights into 16×16 f32 accumulators (8192 multiply-adds per
//! instruction; about eight times the f32 FMA units' rate on the 2-vCPU Xeon measured in
//! docs/benchmarks.md, where AVX-512-BF16's `vdpbf16ps` is slower than f32 FMAs); without it
//! (`super::tall_fma`, AVX-512F or AVX2+FMA) the weights are widened to f32 in registers and
//! multiplied with FMAs, the activations kept f32.
//!
//! Layout: the weight is packed at load into panels of [`PANEL`] output columns, each holding,
//! for every pair of inputs `(2q, 2q + 1)`, the 32 columns' bf16 pairs (`[n/32][k'/2][32]` of
//! `u32`, the even input in the low half; `k'` is `k` rounded up to [`K_STEP`]); columns past
//! `n` and inputs past `k` are zero. Rows of 16 consecutive pairs of a panel are AMX's
//! "VNNI" B tiles for its two halves of 16 columns.
//!
//! Each output value is its own row of activations times its own column of weights,
//! accumulated along `k` in order, so it is the same bits whatever `m` is, where its row lies
//! and how the rows are split over threads: a batch of streams equals each stream alone.

use super::dispatch::Isa;
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

    /// The panels (`[n.div_ceil(32)][k'/2][32]` bf16 pairs; the x86-64 bodies read them).
    #[cfg(target_arch = "x86_64")]
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

/// A body of the tall kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TallBody {
    /// AMX-BF16 tiles, the activations rounded to bf16.
    Amx,
    /// AVX-512F FMAs, the activations f32.
    Avx512,
    /// AVX2 FMAs, the activations f32.
    Avx2,
}

impl TallBody {
    const ALL: [Self; 3] = [Self::Amx, Self::Avx512, Self::Avx2];

    /// The kernels' body this tall body goes with.
    fn isa(self) -> Isa {
        match self {
            Self::Amx => Isa::Amx,
            Self::Avx512 => Isa::Avx512,
            Self::Avx2 => Isa::Avx2Fma,
        }
    }

    /// The body this process runs: the kernels' body in use (`VV_CPU_KERNELS`) decides; none
    /// on NEON or the portable body.
    pub(super) fn detect() -> Option<Self> {
        let isa = Isa::detect();
        Self::ALL.into_iter().find(|b| b.isa() == isa)
    }

    /// Every body this CPU runs.
    #[cfg(test)]
    pub(super) fn all_supported() -> Vec<Self> {
        Self::ALL
            .into_iter()
            .filter(|b| b.isa().supported())
            .collect()
    }

    /// Rows this body computes at once (a row split over threads keeps whole blocks).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn block_rows(self) -> usize {
        use super::tall_fma::FmaVector;
        use std::arch::x86_64::{__m256, __m512};
        match self {
            Self::Amx => super::amx::TILE_ROWS,
            Self::Avx512 => <__m512 as FmaVector>::BLOCK_ROWS,
            Self::Avx2 => <__m256 as FmaVector>::BLOCK_ROWS,
        }
    }
}

/// Whether this process runs the tall kernel: an x86-64 kernel body in use (AMX, AVX-512F or
/// AVX2+FMA; `VV_CPU_KERNELS=portable` turns it off).
pub fn tall_kernel_available() -> bool {
    TallBody::detect().is_some()
}

/// `act(x · wᵀ + bias) + residual` as `[m, n]` rows for `x [m, k]`, or `None` where this
/// process lacks the kernel ([`tall_kernel_available`]). Panics if `x.len() != m * k` or the
/// epilogue's slices have the wrong lengths.
pub fn tall_matmul(x: &[f32], w: &TallWeight, m: usize, e: &Epilogue) -> Option<Vec<f32>> {
    TallBody::detect().map(|body| matmul_on(body, x, w, m, e))
}

/// [`tall_matmul`] on `body`, which this CPU runs.
pub(super) fn matmul_on(
    body: TallBody,
    x: &[f32],
    w: &TallWeight,
    m: usize,
    e: &Epilogue,
) -> Vec<f32> {
    let (n, k) = (w.n, w.k);
    assert_eq!(x.len(), m * k, "tall_matmul: {m}x{k} inputs");
    assert!(e.bias.is_none_or(|b| b.len() == n), "tall_matmul: bias");
    assert!(
        e.residual.is_none_or(|r| r.len() == m * n),
        "tall_matmul: residual"
    );
    #[cfg(target_arch = "x86_64")]
    return body_matmul(body, x, w, m, e);
    // No body outside x86-64 (`TallBody::detect` is `None` there).
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no tall body {body:?} outside x86-64")
}

/// [`tall_matmul`]'s work on `body`: the rows (or, for few rows, the panels) split over the
/// worker threads, each part filled by the body, then the epilogue.
#[cfg(target_arch = "x86_64")]
fn body_matmul(body: TallBody, x: &[f32], w: &TallWeight, m: usize, e: &Epilogue) -> Vec<f32> {
    use super::amx::{self, TILE_ROWS};
    use super::for_row_blocks;
    use super::pointwise::finish_rows;
    use super::tall_fma;
    /// Below this many multiply-adds the call stays on the calling thread.
    const MIN_PARALLEL_MACS: usize = 1 << 20;

    let (n, k) = (w.n, w.k);
    let mut out = vec![0f32; m * n];
    if n == 0 || m == 0 {
        return out;
    }
    let kp = padded_k(k);
    // AMX reads bf16 rows in whole A tiles: rows past `m` are zero (their results dropped).
    let block_rows = body.block_rows();
    let xb = match body {
        TallBody::Amx => {
            let mut xb = vec![0u16; m.div_ceil(TILE_ROWS) * TILE_ROWS * kp];
            // SAFETY: AVX-512F/BW/VL and AVX-512-BF16 are present (`amx::usable`, checked by
            // `TallBody::detect`); `xb` holds at least `m` zeroed rows of `kp >= k` values.
            unsafe { amx::to_bf16(x, &mut xb, m, k, kp) };
            xb
        }
        TallBody::Avx512 | TallBody::Avx2 => Vec::new(),
    };
    // Fills `rows` (`count` rows of `n` from row `first`) with those rows times `panels`
    // (`cols` columns).
    let fill = |rows: &mut [f32], first: usize, count: usize, panels: &[u32], cols: usize| {
        match body {
            TallBody::Amx => {
                let tiles = count.div_ceil(TILE_ROWS) * TILE_ROWS;
                let xb = &xb[first * kp..(first + tiles) * kp];
                // SAFETY: AMX granted (`amx::usable`); `xb` holds `count` rows rounded up to
                // whole tiles of `kp` values, `rows` `count` rows of `cols`, the panels `cols`
                // columns of `kp`.
                unsafe { amx::fill_tall(rows, xb, panels, count, kp, cols) }
            }
            // SAFETY (both): the CPU has the body's instructions (the body in use, or one
            // found supported); shapes as above.
            TallBody::Avx512 => unsafe {
                let x = &x[first * k..(first + count) * k];
                tall_fma::fill_avx512(rows, x, panels, (count, k, cols))
            },
            TallBody::Avx2 => unsafe {
                let x = &x[first * k..(first + count) * k];
                tall_fma::fill_avx2(rows, x, panels, (count, k, cols))
            },
        }
    };
    let threads = super::worker_threads();
    let parallel = m * k * n >= MIN_PARALLEL_MACS && threads > 1;
    let panels = n.div_ceil(PANEL);
    let panel_len = kp / 2 * PANEL;
    if parallel && m <= 2 * block_rows && panels > 1 {
        // Few rows (two blocks or fewer): split the columns over the threads instead, each
        // panel's [m, 32] result into its own slot, then into place.
        let mut slots = vec![0f32; panels * m * PANEL];
        let per_block = panels.div_ceil(threads);
        for_row_blocks(&mut slots, m * PANEL, per_block, true, |first, block| {
            for (i, slot) in block.chunks_exact_mut(m * PANEL).enumerate() {
                let w = &w.panels[(first + i) * panel_len..(first + i + 1) * panel_len];
                fill(slot, 0, m, w, PANEL);
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
    let parallel = parallel && m > block_rows;
    let rows_per_block = match parallel {
        true => m.div_ceil(threads).div_ceil(block_rows) * block_rows,
        false => m,
    };
    for_row_blocks(&mut out, n, rows_per_block, parallel, |first, rows| {
        let count = rows.len() / n;
        fill(rows, first, count, &w.panels, n);
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

    /// Every body this CPU runs, every tile and block height, columns not a multiple of 16 or
    /// 32, odd k, one call split over threads: each value equals an f64 matmul of the weights
    /// and the inputs (rounded to bf16 on AMX, as that body rounds them) within f32
    /// accumulation error; the epilogue (bias, GELU, residual) is applied.
    #[test]
    fn every_body_matches_an_f64_matmul_of_its_inputs() {
        if !tall_kernel_available() {
            eprintln!("no tall kernel in use on this CPU");
            assert!(tall_matmul(&[0.0], &TallWeight::pack(&[1.0], 1, 1), 1, &NONE).is_none());
        }
        for body in TallBody::all_supported() {
            every_value_matches(body);
        }
    }

    fn every_value_matches(body: TallBody) {
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
            let xr = match body {
                TallBody::Amx => round_bf16(&x),
                TallBody::Avx512 | TallBody::Avx2 => x.clone(),
            };
            let wr = w.unpack();
            let bias = values(n, 3);
            let residual = values(m * n, 4);
            for gelu in [false, true] {
                let e = Epilogue {
                    bias: Some(&bias),
                    gelu,
                    residual: Some(&residual),
                };
                let got = matmul_on(body, &x, &w, m, &e);
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
                            "{body:?} m {m} k {k} n {n} [{i},{j}]: {g} vs {want}"
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
        for body in TallBody::all_supported() {
            rows_are_independent(body);
        }
    }

    fn rows_are_independent(body: TallBody) {
        for (k, n, rows, counts) in [
            (130, 45, 61, &[1, 2, 11, 12, 13, 25, 60][..]),
            (1024, 150, 41, &[1, 8, 17, 32, 40][..]),
        ] {
            let x = values(rows * k, 7);
            let w = TallWeight::pack(&values(n * k, 8), n, k);
            let all = matmul_on(body, &x, &w, rows, &NONE);
            for &m in counts {
                let some = matmul_on(body, &x[k..(m + 1) * k], &w, m, &NONE);
                let (a, b): (Vec<u32>, Vec<u32>) = (
                    some.iter().map(|v| v.to_bits()).collect(),
                    all[n..(m + 1) * n].iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(a, b, "{body:?} k {k} n {n}: rows 1..{}", m + 1);
            }
        }
    }

    #[test]
    fn empty_dimensions_give_empty_or_zero_outputs() {
        for body in TallBody::all_supported() {
            for (m, k, n) in [(0, 5, 3), (2, 0, 3), (2, 5, 0)] {
                let w = TallWeight::pack(&values(n * k, 1), n, k);
                let y = matmul_on(body, &values(m * k, 2), &w, m, &NONE);
                assert_eq!(y, vec![0.0; m * n], "{body:?} m {m} k {k} n {n}");
            }
        }
    }
}
