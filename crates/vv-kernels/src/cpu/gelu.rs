//! GELU with the exact (erf) form, using a branch-free rational erf that vectorises.

/// Beyond ±4, erf is ±1 to f32 precision.
const ERF_CLAMP: f32 = 4.0;
/// Odd numerator coefficients, highest power first (Eigen/XLA `erf` for f32, |error| < 1e-7).
const ERF_NUM: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_600_1e-3,
    -1.609_603_3e-2,
];
/// Even denominator coefficients, highest power first.
const ERF_DEN: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329e-3,
    -1.426_474e-2,
];

/// erf(x) as a rational function on [-4, 4], ±1 outside.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-ERF_CLAMP, ERF_CLAMP);
    let x2 = x * x;
    let mut p = ERF_NUM[0];
    for c in &ERF_NUM[1..] {
        p = p * x2 + c;
    }
    let mut q = ERF_DEN[0];
    for c in &ERF_DEN[1..] {
        q = q * x2 + c;
    }
    x * p / q
}

/// `x · Φ(x) = x/2 · (1 + erf(x/√2))` (PyTorch `gelu`, approximate = "none").
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_f64_reference_gelu() {
        let mut worst = 0f64;
        for i in -80_000..=80_000 {
            let x = i as f32 * 1e-4;
            let want = candle_core::cpu::erf::erf_f64(x as f64 / std::f64::consts::SQRT_2);
            let want = 0.5 * x as f64 * (1.0 + want);
            worst = worst.max((gelu_erf(x) as f64 - want).abs() / (1.0 + x.abs() as f64));
        }
        // A few f32 ulps of the output (the reference is f64).
        assert!(worst < 3e-7, "max scaled error {worst}");
    }
}
