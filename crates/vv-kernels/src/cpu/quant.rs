//! Weight matrices in compact formats for the CPU kernels (weight-only quantization): bf16, or
//! int8 with one f32 scale per block of [`SCALE_BLOCK`] consecutive values of an output row.
//! Activations stay f32; the kernels widen the weights to f32 (and multiply int8 values by
//! their block's scale) in registers.

use super::dispatch::Isa;
use super::matmul::{matmul_on, Rows};

/// Consecutive values of an int8 weight row (along k) that share one scale; a row's last block
/// is shorter when `k` is not a multiple. A multiple of every kernel body's vector width, so a
/// vector of weights (which starts at a multiple of its width within the row) never straddles
/// two blocks.
pub(super) const SCALE_BLOCK: usize = 16;

/// How a weight matrix is stored for the CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    Bf16,
    Int8,
}

/// A weight matrix `[n, k]` (PyTorch layout: n output rows of k inputs) in a compact format:
/// bf16 (round to nearest even), or int8 symmetric with one f32 scale per block of
/// [`SCALE_BLOCK`] (32) consecutive values of a row (the block's absmax/127; the row's last
/// block may be shorter).
#[derive(Clone, Debug)]
pub struct PackedWeight {
    n: usize,
    k: usize,
    data: Data,
}

#[derive(Clone, Debug)]
enum Data {
    /// The bits of each value's bf16.
    Bf16(Vec<u16>),
    /// `w[j][p] ≈ q[j][p] · scales[j · blocks + p / SCALE_BLOCK]`, `blocks = k.div_ceil(SCALE_BLOCK)`.
    Int8 { q: Vec<i8>, scales: Vec<f32> },
}

impl PackedWeight {
    /// Packs `w` (`[n, k]`, row-major). Panics if `w.len() != n * k`. Weights are expected
    /// finite: an infinite or NaN weight makes its int8 block (or its bf16 value) non-finite.
    pub fn pack(w: &[f32], n: usize, k: usize, format: WeightFormat) -> Self {
        assert_eq!(w.len(), n * k, "PackedWeight::pack: {n}x{k} weights");
        let data = match format {
            WeightFormat::Bf16 => Data::Bf16(w.iter().map(|&v| bf16_bits(v)).collect()),
            WeightFormat::Int8 => {
                let mut q = Vec::with_capacity(n * k);
                let mut scales = Vec::with_capacity(n * k.div_ceil(SCALE_BLOCK));
                // Blocks never cross rows: each row starts a block.
                for block in w.chunks_exact(k.max(1)).flat_map(|r| r.chunks(SCALE_BLOCK)) {
                    let absmax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let scale = absmax / 127.0;
                    scales.push(scale);
                    // A zero block keeps scale 0 and all-zero values (0/0 would be NaN).
                    let level = |v: f32| match scale > 0.0 {
                        true => (v / scale).round().clamp(-127.0, 127.0) as i8,
                        false => 0,
                    };
                    q.extend(block.iter().map(|&v| level(v)));
                }
                Data::Int8 { q, scales }
            }
        };
        Self { n, k, data }
    }

    /// The storage format.
    pub fn format(&self) -> WeightFormat {
        match self.data {
            Data::Bf16(_) => WeightFormat::Bf16,
            Data::Int8 { .. } => WeightFormat::Int8,
        }
    }

    /// `(n, k)`: output rows, inputs per row.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// Memory held (data and scales), in bytes.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Data::Bf16(v) => v.len() * 2,
            Data::Int8 { q, scales } => q.len() + scales.len() * 4,
        }
    }

    /// The weights as f32, `[n, k]`: exactly the values the kernels compute with (int8: each
    /// value times its block's scale, rounded to f32, as the kernels do in registers).
    pub fn unpack(&self) -> Vec<f32> {
        match &self.data {
            Data::Bf16(v) => v.iter().map(|&b| bf16_to_f32(b)).collect(),
            Data::Int8 { q, scales } => q
                .chunks_exact(self.k.max(1))
                .flat_map(|row| row.chunks(SCALE_BLOCK))
                .zip(scales)
                .flat_map(|(block, &s)| block.iter().map(move |&v| f32::from(v) * s))
                .collect(),
        }
    }
}

/// The bits of `v`'s bf16, rounded to nearest even (NaN stays NaN).
pub(super) fn bf16_bits(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

/// The f32 of a bf16's bits (exact).
#[inline(always)]
pub(super) fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// `x [m, k] · wᵀ`, returned **transposed** as `[n, m]`, exactly like
/// [`skinny_matmul`](super::skinny_matmul) (same output layout, so
/// `cpu::epilogue(&y, true, m, n, &ep)` applies unchanged). Activations stay f32: weights are
/// widened to f32 in registers (int8 values then multiplied by their block's scale) and
/// multiplied with f32 FMAs. Each output value is computed the same way whatever `m` is and
/// wherever its row lies (on one kernel body). Panics if `x.len() != m * k`.
pub fn skinny_matmul_packed(x: &[f32], w: &PackedWeight, m: usize) -> Vec<f32> {
    matmul_packed_on(Isa::detect(), x, w, m)
}

/// [`skinny_matmul_packed`] on the body `isa`.
pub(super) fn matmul_packed_on(isa: Isa, x: &[f32], w: &PackedWeight, m: usize) -> Vec<f32> {
    let (n, k) = w.dims();
    match &w.data {
        Data::Bf16(v) => matmul_on(isa, x, Rows { w: v, scales: &[] }, m, k, n),
        Data::Int8 { q, scales } => matmul_on(isa, x, Rows { w: q, scales }, m, k, n),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_values as values;
    use super::*;

    /// `x · wᵀ` in f64, `[n, m]`, and each value's `Σ |x·w|` (the scale of its rounding).
    fn naive(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut out = vec![0f64; n * m];
        let mut mag = vec![0f64; n * m];
        for j in 0..n {
            for i in 0..m {
                for p in 0..k {
                    let v = f64::from(x[i * k + p]) * f64::from(w[j * k + p]);
                    out[j * m + i] += v;
                    mag[j * m + i] += v.abs();
                }
            }
        }
        (out, mag)
    }

    const FORMATS: [WeightFormat; 2] = [WeightFormat::Bf16, WeightFormat::Int8];

    /// Every body this CPU runs, both formats, every row count 1..=17 (every tile shape and
    /// group split), weight rows not a multiple of 8 and k not of 8/16/32 (a short last scale
    /// block; k = 40 and 48: vector bodies ending mid-block), against an f64 matmul of the
    /// unpacked weights; one shape large enough to be split over threads.
    #[test]
    fn every_body_matches_an_f64_matmul_of_the_unpacked_weights() {
        let shapes = [
            (1, 1),
            (3, 5),
            (16, 7),
            (33, 9),
            (37, 19),
            (40, 5),
            (48, 6),
            (64, 8),
            (100, 33),
            (515, 600),
        ];
        for (k, n) in shapes {
            for format in FORMATS {
                let w = PackedWeight::pack(&values(n * k, 7), n, k, format);
                let unpacked = w.unpack();
                for m in 1..=17 {
                    let x = values(m * k, m as u64);
                    let (want, mag) = naive(&x, &unpacked, m, k, n);
                    for isa in Isa::all_supported() {
                        let got = matmul_packed_on(isa, &x, &w, m);
                        assert_eq!(got.len(), n * m);
                        for (idx, g) in got.iter().enumerate() {
                            let err = (f64::from(*g) - want[idx]).abs();
                            let bound = 1e-6 * mag[idx] + 1e-30;
                            assert!(
                                err <= bound,
                                "{isa:?} {format:?} m {m} k {k} n {n} [{idx}]: {g} vs {} (error {err}, bound {bound})",
                                want[idx]
                            );
                        }
                    }
                }
            }
        }
    }

    /// A row's outputs are bit-identical whether it is computed alone or among 2..=17 rows, and
    /// a weight row's whether it is packed alone or lies anywhere in the matrix, on every body;
    /// the public function runs the body in use.
    #[test]
    fn a_rows_result_does_not_depend_on_the_other_rows() {
        let (k, n, rows) = (131, 43, 17);
        let x = values(rows * k, 3);
        for format in FORMATS {
            let w = PackedWeight::pack(&values(n * k, 11), n, k, format);
            for isa in Isa::all_supported() {
                let alone: Vec<Vec<f32>> = x
                    .chunks_exact(k)
                    .map(|row| matmul_packed_on(isa, row, &w, 1))
                    .collect();
                for m in 2..=rows {
                    let got = matmul_packed_on(isa, &x[..m * k], &w, m);
                    for j in 0..n {
                        for (i, alone) in alone.iter().enumerate().take(m) {
                            assert_eq!(
                                got[j * m + i].to_bits(),
                                alone[j].to_bits(),
                                "{isa:?} {format:?} m {m} row {i} output {j}"
                            );
                        }
                    }
                }
            }
            // Each weight row packed alone (its own tile shapes) gives the same bits as in the
            // whole matrix (where it lies in some tile of 8, 4 or 2 rows).
            let all = w.unpack();
            for isa in Isa::all_supported() {
                for m in [1, 2, 3, 4, 5, 7] {
                    let got = matmul_packed_on(isa, &x[..m * k], &w, m);
                    for (j, row) in all.chunks_exact(k).enumerate() {
                        let alone = PackedWeight::pack(row, 1, k, format);
                        assert_eq!(alone.unpack(), row, "{format:?} row {j}");
                        let want = matmul_packed_on(isa, &x[..m * k], &alone, m);
                        let got: Vec<u32> = got[j * m..(j + 1) * m]
                            .iter()
                            .map(|v| v.to_bits())
                            .collect();
                        let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                        assert_eq!(got, want, "{isa:?} {format:?} m {m} weight row {j}");
                    }
                }
            }
            let m = 6;
            assert_eq!(
                skinny_matmul_packed(&x[..m * k], &w, m),
                matmul_packed_on(Isa::detect(), &x[..m * k], &w, m)
            );
        }
    }

    #[test]
    fn bf16_round_trips_within_half_a_unit_and_rounds_to_nearest_even() {
        let mut w = values(1000, 5);
        w.extend([
            0.0,
            -0.0,
            1.0,
            3.0e38,
            -1.0e-30,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
        ]);
        let n = w.len();
        let p = PackedWeight::pack(&w, n, 1, WeightFormat::Bf16);
        assert_eq!(
            (p.format(), p.dims(), p.bytes()),
            (WeightFormat::Bf16, (n, 1), 2 * n)
        );
        let u = p.unpack();
        for (a, b) in w.iter().zip(&u) {
            assert!((a - b).abs() <= a.abs() / 256.0, "{a} -> {b}");
        }
        // Ties go to the even neighbour: 1 + 2^-8 down to 1, 1 + 3·2^-8 up to 1 + 2^-6.
        assert_eq!(u[n - 2], 1.0);
        assert_eq!(u[n - 1], 1.0 + 1.0 / 64.0);
    }

    /// Each value comes back within half a step of its own block's scale (blocks of one row
    /// differ in magnitude by 10x, so one scale per row would not do), the last block of a row
    /// is shorter, zero blocks give zeros, and a block's largest value comes back exactly.
    #[test]
    fn int8_round_trips_within_half_a_step_per_block() {
        let (n, k) = (9, 2 * SCALE_BLOCK + 13);
        let mut w = values(n * k, 9);
        // Rows of different magnitudes, and blocks of different magnitudes within a row.
        for (j, row) in w.chunks_exact_mut(k).enumerate() {
            for (p, v) in row.iter_mut().enumerate() {
                *v *= 10f32.powi(j as i32 - 4 + (p / SCALE_BLOCK) as i32);
            }
        }
        // A zero row; a row with a single non-zero value; a zero block inside a row.
        w[3 * k..4 * k].fill(0.0);
        w[5 * k..6 * k].fill(0.0);
        w[5 * k + 7] = -2.5;
        w[6 * k + SCALE_BLOCK..6 * k + 2 * SCALE_BLOCK].fill(0.0);
        let p = PackedWeight::pack(&w, n, k, WeightFormat::Int8);
        let blocks = k.div_ceil(SCALE_BLOCK);
        assert_eq!(blocks, 3);
        assert_eq!(
            (p.format(), p.dims(), p.bytes()),
            (WeightFormat::Int8, (n, k), n * k + 4 * n * blocks)
        );
        let u = p.unpack();
        for (j, (row, back)) in w.chunks_exact(k).zip(u.chunks_exact(k)).enumerate() {
            for (b, (block, back)) in row
                .chunks(SCALE_BLOCK)
                .zip(back.chunks(SCALE_BLOCK))
                .enumerate()
            {
                let scale = block.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                for (a, b_) in block.iter().zip(back) {
                    assert!(
                        (a - b_).abs() <= scale * 0.5 * (1.0 + 1e-5),
                        "row {j} block {b}: {a} -> {b_}"
                    );
                }
            }
        }
        assert!(u[3 * k..4 * k].iter().all(|&v| v == 0.0));
        assert_eq!(u[5 * k + 7], -2.5);
        assert!(u[6 * k + SCALE_BLOCK..6 * k + 2 * SCALE_BLOCK]
            .iter()
            .all(|&v| v == 0.0));
        // A zero row gives zeros (scale 0), not NaN.
        let x = values(2 * k, 1);
        let y = skinny_matmul_packed(&x, &p, 2);
        assert_eq!(&y[3 * 2..4 * 2], &[0.0, 0.0]);
        assert!(y.iter().all(|v| v.is_finite()));
    }

    /// Empty dimensions give empty or zero outputs, on every body.
    #[test]
    fn empty_dimensions_give_zeros() {
        for format in FORMATS {
            for (m, k, n) in [(0, 5, 3), (2, 0, 3), (2, 5, 0), (0, 0, 0)] {
                let w = PackedWeight::pack(&values(n * k, 1), n, k, format);
                assert_eq!(w.dims(), (n, k));
                assert_eq!(w.unpack().len(), n * k);
                for isa in Isa::all_supported() {
                    let y = matmul_packed_on(isa, &values(m * k, 2), &w, m);
                    assert_eq!(y, vec![0.0; n * m], "{isa:?} {format:?} m {m} k {k} n {n}");
                }
            }
        }
    }
}
