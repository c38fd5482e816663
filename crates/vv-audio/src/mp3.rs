//! Streaming MP3 (MPEG-1/2/2.5 Layer III, mono, constant bitrate), as OpenAI's
//! `response_format: "mp3"`, ElevenLabs' `mp3_<rate>_<kbps>` and Cartesia's `mp3` container
//! return.
//!
//! Encoder: `rusty_mp3`'s frame-level engine (pure Rust, no C, no dependencies), driven one
//! frame at a time so that every frame goes out as soon as its samples are in: 1,152 samples
//! per frame at 32-48 kHz (MPEG-1), 576 at 16-24 kHz (MPEG-2) and 8-12 kHz (MPEG-2.5), so at
//! most 24 ms of audio waits for more input. Frames are self-contained (no bit reservoir, whose
//! assembly needs the whole stream), so the bytes of each push are a valid stream prefix; no
//! Xing/Info tag, as a live stream cannot know its length. `finish` pads the last frame with
//! silence and encodes until the encoder's and a decoder's delay (1,057 samples) have been
//! flushed, so a decoder outputs every pushed sample.

use rusty_mp3::encode::lametag::{frames_for, ENCODER_DELAY};
use rusty_mp3::header::FrameHeader;
use rusty_mp3::{encoder_header, Mp3Encode};

use crate::error::AudioError;

/// Bitrate (kb/s) when none is asked for: 128 at 32-48 kHz (MPEG-1, ElevenLabs' default
/// `mp3_44100_128`), 64 at 16-24 kHz, 32 at 8 kHz.
pub fn default_kbps(sample_rate: u32) -> u16 {
    match sample_rate {
        32_000.. => 128,
        16_000.. => 64,
        _ => 32,
    }
}

/// The bit rates (bits per second) the request fields `bit_rate` accept.
pub const BIT_RATES: std::ops::RangeInclusive<i64> = 8_000..=320_000;

/// The kb/s of a requested `bit_rate` in bits per second (`None` outside [`BIT_RATES`]); the
/// encoder then snaps it to the nearest bitrate of the MPEG version.
pub fn kbps_of(bit_rate: i64) -> Option<u16> {
    // Within BIT_RATES, so the kb/s fit a u16.
    BIT_RATES
        .contains(&bit_rate)
        .then_some((bit_rate / 1000) as u16)
}

fn mp3_err(e: impl std::fmt::Display) -> AudioError {
    AudioError::Mp3(e.to_string())
}

/// Incremental mono CBR MP3 encoder.
pub struct Mp3StreamWriter {
    engine: Mp3Encode,
    header: FrameHeader,
    /// Samples per frame (1152 or 576).
    frame_size: usize,
    /// Input samples of the frame being filled.
    pending: Vec<f32>,
    /// Input samples written since the start (real audio, no padding).
    input_total: u64,
    /// Frames encoded so far.
    frames: u64,
}

impl std::fmt::Debug for Mp3StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mp3StreamWriter")
            .field("sample_rate", &self.header.sample_rate)
            .field("kbps", &self.header.bitrate_kbps)
            .field("frames", &self.frames)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Mp3StreamWriter {
    /// Creates a writer encoding mono audio at `sample_rate` (any MPEG Layer III rate, which
    /// covers every rate of [`crate::SUPPORTED_SAMPLE_RATES`]) and `kbps` (snapped to the
    /// nearest bitrate the MPEG version defines; `None`: [`default_kbps`]).
    pub fn new(sample_rate: u32, kbps: Option<u16>) -> Result<Self, AudioError> {
        let kbps = kbps.unwrap_or_else(|| default_kbps(sample_rate));
        let header = encoder_header(sample_rate, 1, u32::from(kbps)).map_err(mp3_err)?;
        let frame_size = header.version.samples_per_frame();
        Ok(Mp3StreamWriter {
            engine: Mp3Encode::new(),
            header,
            frame_size,
            pending: Vec::with_capacity(frame_size),
            input_total: 0,
            frames: 0,
        })
    }

    /// The bitrate in use (kb/s), after snapping.
    pub fn kbps(&self) -> u32 {
        self.header.bitrate_kbps
    }

    /// Appends `samples` and writes every frame they complete.
    pub fn write(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.input_total += samples.len() as u64;
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (self.frame_size - self.pending.len()).min(rest.len());
            let (head, tail) = rest.split_at(take);
            self.pending.extend_from_slice(head);
            rest = tail;
            if self.pending.len() == self.frame_size {
                self.encode_pending(out)?;
            }
        }
        Ok(())
    }

    /// Pads with silence and writes the frames that flush the codec's delay.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        let total = frames_for(self.input_total, ENCODER_DELAY, self.frame_size);
        while self.frames < total {
            self.pending.resize(self.frame_size, 0.0);
            self.encode_pending(out)?;
        }
        Ok(())
    }

    fn encode_pending(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        for v in &mut self.pending {
            // The encoder pipeline has already turned non-finite samples into silence, but a
            // direct caller's may not have; the resampler may overshoot full scale a little.
            *v = if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            };
        }
        let frame = self
            .engine
            .encode_frame(&self.header, &[&self.pending], None)
            .map_err(mp3_err)?;
        out.extend_from_slice(&frame);
        self.pending.clear();
        self.frames += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bitrates_by_rate() {
        let kbps = |rate| Mp3StreamWriter::new(rate, None).unwrap().kbps();
        assert_eq!(kbps(44_100), 128);
        assert_eq!(kbps(48_000), 128);
        assert_eq!(kbps(32_000), 128);
        assert_eq!(kbps(24_000), 64);
        assert_eq!(kbps(22_050), 64);
        assert_eq!(kbps(16_000), 64);
        assert_eq!(kbps(8_000), 32);
        // Snapped to the version's table: MPEG-2 has no 192, MPEG-1 no 150.
        assert_eq!(Mp3StreamWriter::new(24_000, Some(192)).unwrap().kbps(), 160);
        assert_eq!(Mp3StreamWriter::new(44_100, Some(150)).unwrap().kbps(), 160);
    }

    #[test]
    fn requested_bit_rates_map_to_kbps() {
        assert_eq!(kbps_of(128_000), Some(128));
        assert_eq!(kbps_of(8_000), Some(8));
        assert_eq!(kbps_of(320_000), Some(320));
        assert_eq!(kbps_of(96_500), Some(96));
        for bad in [7_999, 320_001, 0, -1, i64::MAX] {
            assert_eq!(kbps_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn rates_outside_mpeg_are_refused() {
        let e = Mp3StreamWriter::new(96_000, None).unwrap_err();
        assert_eq!(e.code(), "mp3_encode_failed");
    }
}
