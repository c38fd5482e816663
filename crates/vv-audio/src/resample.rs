//! Streaming resampler from the model's native 24 kHz to the protocol's output rates.
//!
//! Built on rubato's synchronous FFT resampler (`Fft`, fixed ratio, fixed input and output
//! block sizes). Input is buffered until a whole FFT block is available, so the output of a
//! stream depends only on the samples pushed, never on how they were chunked: pushing a
//! signal in any pieces and calling [`StreamResampler::finish`] gives exactly what one push of
//! the whole signal followed by `finish` gives, which is also what rubato's own `process_all`
//! returns. The resampler's startup delay is trimmed, so output sample `k` lines up with
//! input time `k / output_rate`, and `finish` flushes the tail so that a stream of `n` input
//! samples always yields exactly `ceil(n * output_rate / 24000)` output samples.
//!
//! Latency: the FFT block is about 256 input samples (10.7 ms; 258 for 8/16 kHz, 320 for
//! 22.05/44.1 kHz), and the filter delay is half a block. A push therefore returns all of its
//! input except at most one block plus half a block (about 16-20 ms of audio), which is held
//! until more input arrives or `finish` is called; see
//! [`StreamResampler::max_held_back_input_frames`]. 24 kHz -> 24 kHz is a passthrough with no
//! latency.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler, WindowFunction};
use tracing::debug;

use crate::error::AudioError;

/// The model's native output rate.
pub const NATIVE_SAMPLE_RATE: u32 = 24_000;

/// Output sample rates the protocol allows.
pub const SUPPORTED_SAMPLE_RATES: [u32; 7] =
    [8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

/// [`SUPPORTED_SAMPLE_RATES`] as text, for error messages.
const SUPPORTED_SAMPLE_RATES_TEXT: &str = "8000, 16000, 22050, 24000, 32000, 44100, 48000";

/// Target FFT block size in input frames (rubato's recommended ~256-frame sub-chunk).
const FFT_BLOCK_TARGET: usize = 256;

/// Returns `rate` if it is one of [`SUPPORTED_SAMPLE_RATES`].
pub fn check_sample_rate(rate: u32) -> Result<u32, AudioError> {
    if SUPPORTED_SAMPLE_RATES.contains(&rate) {
        Ok(rate)
    } else {
        Err(AudioError::UnsupportedSampleRate {
            rate,
            supported: SUPPORTED_SAMPLE_RATES_TEXT,
        })
    }
}

/// Number of output samples `input_frames` native samples resample to: `ceil(n * out / 24000)`.
pub fn resampled_len(input_frames: u64, output_rate: u32) -> u64 {
    (input_frames * u64::from(output_rate)).div_ceil(u64::from(NATIVE_SAMPLE_RATE))
}

/// Streaming 24 kHz mono -> `output_rate` mono resampler.
pub struct StreamResampler {
    output_rate: u32,
    /// `None` for the 24 kHz passthrough.
    fft: Option<Box<Fft<f32>>>,
    /// Input not yet consumed by a whole FFT block.
    pending: Vec<f32>,
    /// Scratch output buffer, sized to the resampler's largest block.
    scratch: Vec<f32>,
    /// Output frames still to drop at the start of the stream (the filter delay).
    to_trim: usize,
    /// Input frames pushed since the stream started.
    input_total: u64,
    /// Output frames returned since the stream started.
    output_total: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("output_rate", &self.output_rate)
            .field("passthrough", &self.fft.is_none())
            .field("pending", &self.pending.len())
            .field("input_total", &self.input_total)
            .field("output_total", &self.output_total)
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// Creates a resampler from 24 kHz to `output_rate` (one of [`SUPPORTED_SAMPLE_RATES`]).
    pub fn new(output_rate: u32) -> Result<Self, AudioError> {
        check_sample_rate(output_rate)?;
        let fft = if output_rate == NATIVE_SAMPLE_RATE {
            None
        } else {
            let fft = Fft::<f32>::new_custom(
                NATIVE_SAMPLE_RATE as usize,
                output_rate as usize,
                FFT_BLOCK_TARGET,
                1,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Both,
            )
            .map_err(|e| AudioError::Resample(e.to_string()))?;
            debug!(
                output_rate,
                block_in = fft.input_frames_next(),
                delay_out = fft.output_delay(),
                "created FFT resampler"
            );
            Some(Box::new(fft))
        };
        let scratch = vec![0.0; fft.as_ref().map_or(0, |f| f.output_frames_max())];
        let to_trim = fft.as_ref().map_or(0, |f| f.output_delay());
        Ok(StreamResampler {
            output_rate,
            fft,
            pending: Vec::new(),
            scratch,
            to_trim,
            input_total: 0,
            output_total: 0,
        })
    }

    /// The output sample rate.
    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// Upper bound on the input frames a push may leave unreturned (held for the next push or
    /// `finish`): one FFT block minus one, plus the filter delay expressed in input frames.
    /// Zero for the passthrough.
    pub fn max_held_back_input_frames(&self) -> usize {
        self.fft.as_ref().map_or(0, |f| {
            let block_in = f.input_frames_next();
            let delay_in = (f.output_delay() * NATIVE_SAMPLE_RATE as usize)
                .div_ceil(self.output_rate as usize);
            block_in - 1 + delay_in
        })
    }

    /// Feeds native-rate samples; returns every output sample that is ready now.
    pub fn push(&mut self, input: &[f32]) -> Result<Vec<f32>, AudioError> {
        self.input_total += input.len() as u64;
        let Some(fft) = self.fft.as_deref_mut() else {
            self.output_total += input.len() as u64;
            return Ok(input.to_vec());
        };
        self.pending.extend_from_slice(input);
        let block = fft.input_frames_next();
        let mut out = Vec::new();
        let mut consumed = 0;
        while self.pending.len() - consumed >= block {
            let chunk = &self.pending[consumed..consumed + block];
            self.output_total +=
                run_block(fft, chunk, &mut self.scratch, &mut self.to_trim, &mut out)?;
            consumed += block;
        }
        self.pending.drain(..consumed);
        Ok(out)
    }

    /// Flushes the tail: returns the remaining output so that the whole stream has exactly
    /// [`resampled_len`] samples, then resets for a new stream.
    pub fn finish(&mut self) -> Result<Vec<f32>, AudioError> {
        let expected = resampled_len(self.input_total, self.output_rate);
        let mut out = Vec::new();
        if let Some(fft) = self.fft.as_deref_mut() {
            // The last partial block (zero-padded by rubato), then silence until the delayed
            // tail has come out.
            let tail = std::mem::take(&mut self.pending);
            self.output_total +=
                run_block(fft, &tail, &mut self.scratch, &mut self.to_trim, &mut out)?;
            while self.output_total < expected {
                self.output_total +=
                    run_block(fft, &[], &mut self.scratch, &mut self.to_trim, &mut out)?;
            }
            let excess = self.output_total - expected;
            out.truncate(out.len().saturating_sub(excess as usize));
            fft.reset();
            self.to_trim = fft.output_delay();
        }
        self.input_total = 0;
        self.output_total = 0;
        Ok(out)
    }
}

/// Resamples one block (`input.len()` <= block size; shorter input is zero-padded), dropping
/// the first `to_trim` output frames of the stream. Returns the number of frames appended.
fn run_block(
    fft: &mut Fft<f32>,
    input: &[f32],
    scratch: &mut [f32],
    to_trim: &mut usize,
    out: &mut Vec<f32>,
) -> Result<u64, AudioError> {
    let resample_err = |e: &dyn std::fmt::Display| AudioError::Resample(e.to_string());
    let adapter_in = InterleavedSlice::new(input, 1, input.len()).map_err(|e| resample_err(&e))?;
    let frames_out = scratch.len();
    let mut adapter_out =
        InterleavedSlice::new_mut(scratch, 1, frames_out).map_err(|e| resample_err(&e))?;
    let indexing = Indexing::new().partial_len(input.len());
    let (_, produced) = fft
        .process_into_buffer(&adapter_in, &mut adapter_out, Some(&indexing))
        .map_err(|e| resample_err(&e))?;
    let skip = (*to_trim).min(produced);
    *to_trim -= skip;
    let fresh = scratch.get(skip..produced).unwrap_or_default();
    out.extend_from_slice(fresh);
    Ok(fresh.len() as u64)
}

/// Resamples a whole native-rate signal in one call (push everything, then finish).
pub fn resample_all(input: &[f32], output_rate: u32) -> Result<Vec<f32>, AudioError> {
    let mut resampler = StreamResampler::new(output_rate)?;
    let mut out = resampler.push(input)?;
    out.extend(resampler.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn rejects_unsupported_rates() {
        for bad in [0, 11_025, 12_000, 96_000] {
            let err = StreamResampler::new(bad).unwrap_err();
            assert_eq!(err.code(), "unsupported_sample_rate");
        }
    }

    #[test]
    fn passthrough_is_identity() {
        let x = sine(440.0, 24_000, 1000);
        let mut r = StreamResampler::new(24_000).unwrap();
        assert_eq!(r.max_held_back_input_frames(), 0);
        assert_eq!(r.push(&x).unwrap(), x);
        assert!(r.finish().unwrap().is_empty());
    }

    #[test]
    fn output_length_is_exact_for_every_rate() {
        for rate in SUPPORTED_SAMPLE_RATES {
            for n in [0usize, 1, 7, 3200, 3201, 9600 + 13] {
                let out = resample_all(&vec![0.1; n], rate).unwrap();
                assert_eq!(
                    out.len() as u64,
                    resampled_len(n as u64, rate),
                    "rate {rate} n {n}"
                );
            }
        }
    }

    /// A 1 kHz sine must come out as a 1 kHz sine at the new rate, in phase (delay trimmed):
    /// compare the steady-state middle against the ideal signal, error below 1e-3 RMS-relative.
    #[test]
    fn sine_is_preserved_and_aligned() {
        let input = sine(1000.0, 24_000, 24_000);
        for rate in SUPPORTED_SAMPLE_RATES {
            let out = resample_all(&input, rate).unwrap();
            let ideal = sine(1000.0, rate, out.len());
            let mid = out.len() / 4..3 * out.len() / 4;
            let err: f32 = mid.clone().map(|i| (out[i] - ideal[i]).powi(2)).sum();
            let sig: f32 = mid.map(|i| ideal[i].powi(2)).sum();
            let rel = (err / sig).sqrt();
            assert!(rel < 1e-3, "rate {rate}: relative error {rel}");
        }
    }

    /// After each push, what is still owed (ideal output so far minus output produced) stays
    /// within the documented bound.
    #[test]
    fn held_back_audio_is_within_the_documented_bound() {
        for rate in SUPPORTED_SAMPLE_RATES {
            let mut r = StreamResampler::new(rate).unwrap();
            let bound_in = r.max_held_back_input_frames() as u64;
            let (mut pushed, mut produced) = (0u64, 0u64);
            for _ in 0..10 {
                produced += r.push(&[0.0; 3200]).unwrap().len() as u64;
                pushed += 3200;
                let owed = resampled_len(pushed, rate) - produced;
                assert!(
                    owed <= resampled_len(bound_in, rate) + 1,
                    "rate {rate}: owed {owed}"
                );
            }
            // ~16-20 ms at most, well under one model frame (133 ms).
            assert!(bound_in < 3200 / 6, "rate {rate}: bound {bound_in}");
        }
    }

    #[test]
    fn finish_resets_for_a_new_stream() {
        let x = sine(300.0, 24_000, 5000);
        let mut r = StreamResampler::new(16_000).unwrap();
        let mut first = r.push(&x).unwrap();
        first.extend(r.finish().unwrap());
        let mut second = r.push(&x).unwrap();
        second.extend(r.finish().unwrap());
        assert_eq!(first, second);
    }
}
