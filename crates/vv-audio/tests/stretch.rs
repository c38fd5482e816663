//! Property tests of the WSOLA time stretcher: exact length, chunking independence, the 1.0
//! pass-through, finite bounded output and a kept pitch.

mod common;

use common::{chunked, speech_like};
use proptest::prelude::*;
use vv_audio::{stretch_all, Speed, TimeStretcher, SPEED_RANGE};

fn speed_strategy() -> impl Strategy<Value = Speed> {
    prop_oneof![
        proptest::sample::select(vec![0.25, 0.5, 0.75, 1.25, 1.5, 2.0, 4.0]),
        SPEED_RANGE.0..=SPEED_RANGE.1,
    ]
    .prop_map(|s| Speed::new(s).unwrap())
}

fn sine(freq: f64, amplitude: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / 24_000.0).sin() as f32)
        .collect()
}

/// Frequency from the rising zero crossings of the middle 80 % of `x` (24 kHz).
fn zero_crossing_freq(x: &[f32]) -> f64 {
    let mid = &x[x.len() / 10..x.len() * 9 / 10];
    let rising: Vec<usize> = mid
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, _)| i)
        .collect();
    let (first, last) = (rising[0], rising[rising.len() - 1]);
    (rising.len() - 1) as f64 * 24_000.0 / (last - first) as f64
}

fn stream(signal: &[f32], speed: Speed, sizes: &[usize]) -> Vec<f32> {
    let mut s = TimeStretcher::new(speed);
    let mut out = Vec::new();
    for chunk in chunked(signal, sizes) {
        out.extend(s.push(chunk));
    }
    out.extend(s.finish());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any chunking gives exactly the one-shot samples, and the length is round(n / speed),
    /// i.e. within half a sample of n / speed.
    #[test]
    fn chunked_streaming_equals_one_shot_with_exact_length(
        n in 0usize..20_000,
        speed in speed_strategy(),
        sizes in prop::collection::vec(1usize..5000, 1..6),
    ) {
        let signal = speech_like(n);
        let whole = stretch_all(&signal, speed);
        let pieces = stream(&signal, speed, &sizes);
        prop_assert_eq!(&pieces, &whole);
        prop_assert_eq!(whole.len() as u64, speed.stretched_len(n as u64));
        prop_assert!((whole.len() as f64 - n as f64 / speed.get()).abs() <= 0.5 + 1e-9);
    }

    /// Model-sized frames of 3200 samples, one at a time, give the one-shot result too.
    #[test]
    fn model_frames_equal_one_shot(frames in 1usize..6, speed in speed_strategy()) {
        let signal = speech_like(frames * 3200);
        prop_assert_eq!(stream(&signal, speed, &[3200]), stretch_all(&signal, speed));
    }

    /// Speed 1.0 returns every push unchanged, at once, and nothing at the end.
    #[test]
    fn normal_speed_is_an_exact_pass_through(
        signal in prop::collection::vec(-1.0f32..=1.0, 0..4000),
        sizes in prop::collection::vec(1usize..1000, 1..4),
    ) {
        let mut s = TimeStretcher::new(Speed::NORMAL);
        for chunk in chunked(&signal, &sizes) {
            prop_assert_eq!(s.push(chunk), chunk.to_vec());
        }
        prop_assert!(s.finish().is_empty());
    }

    /// Arbitrary (even wild) input in range gives finite output never above the input's peak.
    #[test]
    fn output_is_finite_and_bounded(
        signal in prop::collection::vec(-1.0f32..=1.0, 0..8000),
        speed in speed_strategy(),
    ) {
        let peak = signal.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for v in stretch_all(&signal, speed) {
            prop_assert!(v.is_finite());
            prop_assert!(v.abs() <= peak * (1.0 + 1e-5) + 1e-6, "{} > {}", v, peak);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// A sine keeps its frequency (within 2 %) when played at half and at double speed.
    #[test]
    fn a_sine_keeps_its_pitch(freq in 80.0f64..1500.0, half in any::<bool>()) {
        let speed = Speed::new(if half { 0.5 } else { 2.0 }).unwrap();
        let input = sine(freq, 0.5, 36_000);
        let output = stretch_all(&input, speed);
        let before = zero_crossing_freq(&input);
        let after = zero_crossing_freq(&output);
        prop_assert!((after / before - 1.0).abs() < 0.02, "{} Hz -> {} Hz", before, after);
        prop_assert!((before / freq - 1.0).abs() < 0.01);
    }
}

/// Speech-like audio keeps its level: the stretched RMS is within 15 % of the input's.
#[test]
fn speech_keeps_its_level() {
    let input = speech_like(48_000);
    let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    for speed in [0.5, 0.8, 1.5, 3.0] {
        let out = stretch_all(&input, Speed::new(speed).unwrap());
        let ratio = rms(&out) / rms(&input);
        assert!(
            (ratio - 1.0).abs() < 0.15,
            "speed {speed}: RMS ratio {ratio}"
        );
    }
}
