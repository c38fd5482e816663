//! Shared helpers for the integration tests: test signals and comparisons.
#![allow(dead_code)] // Each test binary uses a different subset.

/// A deterministic speech-like 24 kHz signal: a harmonic series on a gliding pitch, syllable-
/// rate amplitude envelope and a little noise, peaking near 0.7.
pub fn speech_like(n: usize) -> Vec<f32> {
    let mut seed: u32 = 0x1234_5678;
    (0..n)
        .map(|i| {
            let t = i as f32 / 24_000.0;
            let f0 = 140.0 + 30.0 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
            let voiced: f32 = (1..20)
                .map(|h| (0.3 / h as f32) * (2.0 * std::f32::consts::PI * f0 * h as f32 * t).sin())
                .sum();
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let envelope = 0.6 + 0.4 * (2.0 * std::f32::consts::PI * 4.0 * t).sin();
            envelope * voiced * 0.8 + 0.02 * noise
        })
        .collect()
}

/// Signal-to-noise ratio of `test` against `reference` in dB, over their common length.
pub fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let (mut signal, mut noise) = (0f64, 0f64);
    for (&r, &t) in reference.iter().zip(test) {
        signal += f64::from(r) * f64::from(r);
        noise += f64::from(r - t) * f64::from(r - t);
    }
    10.0 * (signal / noise.max(1e-30)).log10()
}

/// Splits `data` into chunks whose sizes cycle through `sizes` (0 entries become 1).
pub fn chunked<'a>(data: &'a [f32], sizes: &[usize]) -> Vec<&'a [f32]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
        i += 1;
    }
    out
}
