//! Pitch-preserving streaming time stretcher for the model's 24 kHz mono audio: WSOLA
//! (waveform-similarity overlap-add). `speed` 2.0 plays in half the time at the same pitch.
//!
//! Output frame `k` (a [`WINDOW`]-sample sin²-windowed piece of input) is overlap-added at
//! output position `k * HOP`, with 50 % overlap. Its source position is searched within
//! ±[`SEEK`] samples of the nominal `round(k * HOP * speed)` for the piece that best continues
//! the previous frame's source (highest normalised cross-correlation with the input that
//! follows it), so that periods line up and the pitch is kept. The accumulated output is
//! divided by the accumulated window weight, which is exactly 1 in steady state (sin² + cos²)
//! and makes the first half-frame an exact copy of the input.
//!
//! Streaming: frame `k` is computed as soon as the input reaches `round(k * HOP * speed) +
//! SEEK + WINDOW` samples, and output is returned as soon as no later frame can change it
//! (and never beyond `input / speed`). Which frames are computed during pushes and what
//! they read depend only on the samples pushed, never on how they were chunked, so a stream
//! pushed in any pieces yields exactly the samples of one push of the whole signal. A push
//! returns all of its output except what at most [`TimeStretcher::max_held_back_input_frames`]
//! input samples (about 50 ms of input) stretch to. [`TimeStretcher::finish`] computes the
//! last frames, reading silence past the end (their source is kept within the input where it
//! can be), so that a stream of `n` samples always yields exactly
//! [`Speed::stretched_len`]`(n)` = `round(n / speed)` samples.
//!
//! Speed 1.0 is an exact pass-through with no latency. Non-finite input samples are read as
//! silence. Every output sample is a weighted mean of input samples, so its magnitude never
//! exceeds the input's peak.

use crate::error::AudioError;

/// The speeds accepted, inclusive.
pub const SPEED_RANGE: (f64, f64) = (0.25, 4.0);

/// Samples per windowed frame (40 ms at 24 kHz).
pub const WINDOW: usize = 960;

/// Output samples between frames (half a window: 20 ms).
pub const HOP: usize = WINDOW / 2;

/// How far (in input samples, each way) a frame's source may move from its nominal position
/// to line up with the previous frame (10 ms: a whole pitch period down to 100 Hz).
pub const SEEK: usize = 240;

/// Step between compared samples in the similarity search (the search runs at 12 kHz).
const COMPARE_STEP: usize = 2;

/// A playback speed within [`SPEED_RANGE`].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Speed(f64);

impl Speed {
    /// Normal speed: no stretching at all.
    pub const NORMAL: Speed = Speed(1.0);

    /// `speed` if it is finite and within [`SPEED_RANGE`].
    pub fn new(speed: f64) -> Result<Self, AudioError> {
        if speed.is_finite() && (SPEED_RANGE.0..=SPEED_RANGE.1).contains(&speed) {
            Ok(Speed(speed))
        } else {
            Err(AudioError::UnsupportedSpeed(speed))
        }
    }

    /// The speed factor.
    pub fn get(self) -> f64 {
        self.0
    }

    /// Whether this is normal speed (the stretcher passes audio through untouched).
    pub fn is_normal(self) -> bool {
        self.0 == 1.0
    }

    /// How long `input` samples (or milliseconds) of audio are after stretching:
    /// `round(input / speed)`, exactly what [`TimeStretcher`] produces for `input` samples.
    pub fn stretched_len(self, input: u64) -> u64 {
        if self.is_normal() {
            input
        } else {
            (input as f64 / self.0).round() as u64
        }
    }
}

impl Default for Speed {
    fn default() -> Self {
        Speed::NORMAL
    }
}

/// Streaming WSOLA time stretcher: 24 kHz mono f32 in, the same rate out, `speed` times as
/// fast.
pub struct TimeStretcher {
    speed: Speed,
    /// sin² window of [`WINDOW`] samples; two halves a hop apart sum to exactly 1.
    window: Vec<f32>,
    /// Input samples from absolute index `input_base` on (older ones are no longer needed).
    input: Vec<f32>,
    input_base: u64,
    /// Input samples pushed since the stream started.
    input_total: u64,
    /// Index of the next frame to compute.
    next_frame: u64,
    /// Source position of the previous frame (`None` before frame 0).
    prev_source: Option<u64>,
    /// Overlap-add sums and window weights from absolute output index `output_base` on.
    acc: Vec<f32>,
    weight: Vec<f32>,
    /// Output samples returned since the stream started.
    output_base: u64,
}

impl std::fmt::Debug for TimeStretcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeStretcher")
            .field("speed", &self.speed)
            .field("input_total", &self.input_total)
            .field("next_frame", &self.next_frame)
            .field("output_base", &self.output_base)
            .finish_non_exhaustive()
    }
}

impl TimeStretcher {
    /// A stretcher playing at `speed`.
    pub fn new(speed: Speed) -> Self {
        let window = (0..WINDOW)
            .map(|i| {
                let s = (std::f64::consts::PI * (i as f64 + 0.5) / WINDOW as f64).sin();
                (s * s) as f32
            })
            .collect();
        TimeStretcher {
            speed,
            window,
            input: Vec::new(),
            input_base: 0,
            input_total: 0,
            next_frame: 0,
            prev_source: None,
            acc: Vec::new(),
            weight: Vec::new(),
            output_base: 0,
        }
    }

    /// The speed.
    pub fn speed(&self) -> Speed {
        self.speed
    }

    /// Upper bound on the input samples whose stretched output a push may leave unreturned
    /// (held for the next push or `finish`); the output held back is at most
    /// `stretched_len` of this plus one sample. Zero at normal speed.
    pub fn max_held_back_input_frames(&self) -> usize {
        if self.speed.is_normal() {
            0
        } else {
            SEEK + WINDOW + 1
        }
    }

    /// Feeds samples; returns every stretched sample that is final now.
    pub fn push(&mut self, samples: &[f32]) -> Vec<f32> {
        if self.speed.is_normal() {
            return samples.to_vec();
        }
        self.input_total += samples.len() as u64;
        self.input
            .extend(samples.iter().map(|&s| if s.is_finite() { s } else { 0.0 }));
        while self.nominal(self.next_frame) + (SEEK + WINDOW) as u64 <= self.input_total {
            self.run_frame(None);
        }
        let ready = self.next_frame * HOP as u64;
        let allowed = (self.input_total as f64 / self.speed.0).floor() as u64;
        self.take_output(ready.min(allowed))
    }

    /// Ends the stream: returns the rest, so that the stream has exactly
    /// [`Speed::stretched_len`] samples in all, then resets for a new stream.
    pub fn finish(&mut self) -> Vec<f32> {
        if self.speed.is_normal() {
            return Vec::new();
        }
        let total = self.speed.stretched_len(self.input_total);
        while self.next_frame * (HOP as u64) < total {
            self.run_frame(Some(self.input_total));
        }
        let out = self.take_output(total);
        *self = TimeStretcher::new(self.speed);
        out
    }

    /// Nominal source position of frame `k`.
    fn nominal(&self, k: u64) -> u64 {
        (k as f64 * HOP as f64 * self.speed.0).round() as u64
    }

    /// Computes the next frame; `end` is the stream's length once it is known (`finish`).
    fn run_frame(&mut self, end: Option<u64>) {
        let k = self.next_frame;
        let source = match self.prev_source {
            None => 0,
            Some(prev) => self.seek(prev + HOP as u64, self.nominal(k), end),
        };
        let mut piece = vec![0.0; WINDOW];
        self.read(source, &mut piece);
        let start = (k * HOP as u64 - self.output_base) as usize;
        if self.acc.len() < start + WINDOW {
            self.acc.resize(start + WINDOW, 0.0);
            self.weight.resize(start + WINDOW, 0.0);
        }
        let acc = &mut self.acc[start..start + WINDOW];
        let weight = &mut self.weight[start..start + WINDOW];
        for (((a, w), &x), &win) in acc.iter_mut().zip(weight).zip(&piece).zip(&self.window) {
            *a += win * x;
            *w += win;
        }
        self.prev_source = Some(source);
        self.next_frame += 1;
        // Later frames read from the natural continuation of this one or from the next
        // frame's search range on, whichever comes first.
        let keep_from = (source + HOP as u64)
            .min(self.nominal(k + 1).saturating_sub(SEEK as u64))
            .max(self.input_base);
        let drop = (keep_from - self.input_base) as usize;
        self.input.drain(..drop.min(self.input.len()));
        self.input_base += drop as u64;
    }

    /// The source position within ±SEEK of `nominal` whose first hop best matches the hop
    /// of input starting at `natural` (the continuation of the previous frame). Once the
    /// stream's `end` is known, sources are kept from running past it where the range allows.
    fn seek(&self, natural: u64, nominal: u64, end: Option<u64>) -> u64 {
        let lo = nominal.saturating_sub(SEEK as u64).max(self.input_base);
        let mut hi = nominal + SEEK as u64;
        if let Some(end) = end {
            hi = end.saturating_sub(WINDOW as u64).clamp(lo, hi);
        }
        let mut target = vec![0.0; HOP];
        self.read(natural, &mut target);
        let mut region = vec![0.0; (hi - lo) as usize + HOP];
        self.read(lo, &mut region);
        let (mut best, mut best_score) = (0usize, f32::NEG_INFINITY);
        for offset in 0..=(hi - lo) as usize {
            let candidate = &region[offset..offset + HOP];
            let (mut dot, mut energy) = (0.0f32, 0.0f32);
            for (&c, &t) in candidate.iter().zip(&target).step_by(COMPARE_STEP) {
                dot += c * t;
                energy += c * c;
            }
            let score = dot / (energy + 1e-9).sqrt();
            if score > best_score {
                (best, best_score) = (offset, score);
            }
        }
        lo + best as u64
    }

    /// Copies input from absolute index `from` into `out`; silence past what was pushed.
    fn read(&self, from: u64, out: &mut [f32]) {
        debug_assert!(
            from >= self.input_base,
            "reads never go behind the kept input"
        );
        let start = from.saturating_sub(self.input_base) as usize;
        let available = self.input.get(start..).unwrap_or_default();
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        out[n..].fill(0.0);
    }

    /// Returns the output up to absolute index `upto` (normalised by the window weights).
    fn take_output(&mut self, upto: u64) -> Vec<f32> {
        let n = (upto.saturating_sub(self.output_base) as usize).min(self.acc.len());
        let out = self.acc[..n]
            .iter()
            .zip(&self.weight[..n])
            .map(|(&a, &w)| if w > 0.0 { a / w } else { 0.0 })
            .collect();
        self.acc.drain(..n);
        self.weight.drain(..n);
        self.output_base += n as u64;
        out
    }
}

/// Stretches a whole signal in one call (push everything, then finish).
pub fn stretch_all(input: &[f32], speed: Speed) -> Vec<f32> {
    let mut stretcher = TimeStretcher::new(speed);
    let mut out = stretcher.push(input);
    out.extend(stretcher.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_range_is_checked() {
        for bad in [0.0, 0.2, 4.01, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Speed::new(bad).unwrap_err().code(), "unsupported_speed");
        }
        for ok in [0.25, 1.0, 1.5, 4.0] {
            assert_eq!(Speed::new(ok).unwrap().get(), ok);
        }
        assert!(Speed::default().is_normal());
        assert_eq!(Speed::new(2.0).unwrap().stretched_len(3201), 1601);
        assert_eq!(Speed::new(0.25).unwrap().stretched_len(10), 40);
    }

    #[test]
    fn window_halves_sum_to_one() {
        let s = TimeStretcher::new(Speed::new(2.0).unwrap());
        for i in 0..HOP {
            assert!((s.window[i] + s.window[i + HOP] - 1.0).abs() < 1e-6);
        }
    }

    /// After each 3200-sample push, the output still owed stays within the documented bound.
    #[test]
    fn held_back_audio_is_within_the_documented_bound() {
        for speed in [0.25, 0.5, 0.8, 1.0, 1.25, 2.0, 4.0] {
            let speed = Speed::new(speed).unwrap();
            let mut s = TimeStretcher::new(speed);
            let bound = s.max_held_back_input_frames() as u64;
            let (mut pushed, mut produced) = (0u64, 0u64);
            for i in 0..12 {
                let frame: Vec<f32> = (0..3200).map(|j| ((i * 3200 + j) as f32).sin()).collect();
                produced += s.push(&frame).len() as u64;
                pushed += 3200;
                let owed = speed.stretched_len(pushed) - produced;
                assert!(
                    owed <= speed.stretched_len(bound) + 1,
                    "speed {speed:?}: owed {owed}"
                );
            }
        }
    }

    #[test]
    fn finish_resets_for_a_new_stream() {
        let x: Vec<f32> = (0..7000).map(|i| (i as f32 * 0.05).sin()).collect();
        let mut s = TimeStretcher::new(Speed::new(1.5).unwrap());
        let mut first = s.push(&x);
        first.extend(s.finish());
        let mut second = s.push(&x);
        second.extend(s.finish());
        assert_eq!(first, second);
        assert_eq!(first.len(), 4667);
    }

    #[test]
    fn non_finite_input_is_read_as_silence() {
        let mut x = vec![0.5f32; 5000];
        x[100] = f32::NAN;
        x[2000] = f32::INFINITY;
        let out = stretch_all(&x, Speed::new(0.5).unwrap());
        assert_eq!(out.len(), 10_000);
        assert!(out.iter().all(|v| v.is_finite() && v.abs() <= 0.5 + 1e-6));
    }
}
