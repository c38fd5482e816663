//! Binary audio frames of one context: the 16-byte header ([`FrameHeader`]) followed by the
//! samples in the negotiated encoding at the negotiated rate (or, for `mp3`, the MP3 frames
//! completed so far).
//!
//! - One binary frame per decoded engine frame, sent at once (no aggregation).
//! - `seq` counts the context's frames from 0; `sample_offset` is the position of the frame's
//!   first sample, in output-rate samples from the context start (modulo 2^32).
//! - A segment (the audio between flushes) is encoded as one stream: its first frame has the
//!   FIRST flag, and when the segment ends one more frame with the LAST flag carries the
//!   encoder's tail (the resampler's held-back samples; no samples at 24 kHz, where nothing
//!   is held back). A segment that produced no audio sends no frame at all.
//! - `sample_offset`, `samples_sent` and `audio_ms` count the output-rate samples given to the
//!   encoder; an MP3 frame carries the whole MP3 frames completed so far (each decodes on its
//!   own), and a segment's LAST frame flushes the codec (silence padding and its delay).
//! - At a `speed` other than 1.0 each segment is time-stretched (pitch kept) before it is
//!   resampled; offsets, `samples_sent` and `audio_ms` then count the stretched audio, and the
//!   LAST frame also carries the stretcher's held-back tail.

use vv_audio::encoder::{new_encoder_at_speed, AudioEncoder};
use vv_audio::resample::check_sample_rate;
use vv_audio::{AudioError, FrameHeader, OutputFormat, Speed};

/// Frames audio of one context.
pub struct AudioFramer {
    context_num: u32,
    format: OutputFormat,
    /// `format`'s name on the wire.
    name: &'static str,
    sample_rate: u32,
    speed: Speed,
    next_seq: u32,
    samples_sent: u64,
    /// `samples_sent` when the current segment started.
    segment_start: u64,
    /// The encoder of the current segment, created by its first frame.
    segment: Option<Box<dyn AudioEncoder>>,
}

impl AudioFramer {
    /// A framer for context `context_num` producing `format` (a raw encoding or MP3) at
    /// `sample_rate`.
    pub fn new(
        context_num: u32,
        format: OutputFormat,
        sample_rate: u32,
    ) -> Result<Self, AudioError> {
        check_sample_rate(sample_rate)?;
        let name = format
            .frame_stream_name()
            .ok_or_else(|| AudioError::UnsupportedEncoding(format.to_string()))?;
        Ok(Self {
            context_num,
            format,
            name,
            sample_rate,
            speed: Speed::NORMAL,
            next_seq: 0,
            samples_sent: 0,
            segment_start: 0,
            segment: None,
        })
    }

    /// The same framer with its audio played at `speed` (pitch kept).
    pub fn with_speed(self, speed: Speed) -> Self {
        Self { speed, ..self }
    }

    /// The name of the frames' encoding (`pcm_s16le`, `pcm_f32le`, `mulaw`, `alaw`, `mp3`).
    pub fn encoding(&self) -> &'static str {
        self.name
    }

    /// The output sample rate of the frames.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Output samples framed so far in this context.
    pub fn samples_sent(&self) -> u64 {
        self.samples_sent
    }

    /// Milliseconds of audio framed so far in this context.
    pub fn audio_ms(&self) -> u64 {
        self.samples_sent * 1000 / u64::from(self.sample_rate)
    }

    /// The binary frame for one decoded frame of native 24 kHz samples.
    pub fn frame(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        let first = self.segment.is_none();
        if first {
            self.segment = Some(new_encoder_at_speed(
                self.format,
                self.sample_rate,
                self.speed,
            )?);
            self.segment_start = self.samples_sent;
        }
        let Some(encoder) = self.segment.as_mut() else {
            return Err(AudioError::Finished);
        };
        let payload = encoder.push(samples)?;
        let encoded = encoder.samples_encoded();
        Ok(self.emit(payload, encoded, first, false))
    }

    /// Ends the segment: the LAST frame with the encoder's tail, or `None` when the segment
    /// produced no frame. The next frame starts a new segment.
    pub fn end_segment(&mut self) -> Result<Option<Vec<u8>>, AudioError> {
        let Some(mut encoder) = self.segment.take() else {
            return Ok(None);
        };
        let tail = encoder.finish()?;
        let encoded = encoder.samples_encoded();
        Ok(Some(self.emit(tail, encoded, false, true)))
    }

    /// The frame of `payload`, after which the segment has encoded `encoded` samples.
    fn emit(&mut self, payload: Vec<u8>, encoded: u64, first: bool, last: bool) -> Vec<u8> {
        let header = FrameHeader {
            flags: 0,
            context_num: self.context_num,
            seq: self.next_seq,
            // The offset is defined modulo 2^32 (about 25 hours at 48 kHz).
            sample_offset: (self.samples_sent % (1u64 << 32)) as u32,
        }
        .with_first(first)
        .with_last(last);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.samples_sent = self.segment_start + encoded;
        header.frame(&payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vv_audio::resample::resampled_len;
    use vv_audio::{Encoding, SUPPORTED_SAMPLE_RATES};

    fn decode(frame: &[u8]) -> (FrameHeader, usize) {
        let (h, payload) = FrameHeader::decode(frame).unwrap();
        (h, payload.len())
    }

    #[test]
    fn native_rate_frames_and_empty_tail() {
        let mut f = AudioFramer::new(3, Encoding::PcmS16le.into(), 24_000).unwrap();
        let (h0, n0) = decode(&f.frame(&[0.1; 3200]).unwrap());
        let (h1, n1) = decode(&f.frame(&[0.1; 3200]).unwrap());
        let (h2, n2) = decode(&f.end_segment().unwrap().unwrap());
        assert_eq!(
            (h0.context_num, h0.seq, h0.sample_offset, n0),
            (3, 0, 0, 6400)
        );
        assert!(h0.is_first() && !h0.is_last());
        assert_eq!((h1.seq, h1.sample_offset, n1, h1.flags), (1, 3200, 6400, 0));
        assert_eq!((h2.seq, h2.sample_offset, n2), (2, 6400, 0));
        assert!(h2.is_last() && !h2.is_first());
        assert_eq!(f.end_segment().unwrap(), None);
        assert_eq!(f.audio_ms(), 266);
        let (h3, _) = decode(&f.frame(&[0.0; 10]).unwrap());
        assert!(h3.is_first());
        assert_eq!((h3.seq, h3.sample_offset), (3, 6400));
    }

    #[test]
    fn rejects_unsupported_rates_and_containers() {
        assert!(AudioFramer::new(1, Encoding::Mulaw.into(), 11_025).is_err());
        for container in [OutputFormat::Wav, OutputFormat::Flac, OutputFormat::Opus] {
            let e = AudioFramer::new(1, container, 24_000).err().unwrap();
            assert_eq!(e.code(), "unsupported_encoding");
        }
    }

    /// MP3 frames: each binary frame carries whole MP3 frames (sync word first), offsets count
    /// the samples given to the encoder, the LAST frame flushes the codec, and a segment's
    /// bytes are the same MP3 stream as one-shot encoding of its audio.
    #[test]
    fn mp3_frames_carry_whole_mp3_frames() {
        let format = OutputFormat::Mp3 { kbps: Some(32) };
        let mut f = AudioFramer::new(4, format, 22_050).unwrap();
        assert_eq!(f.encoding(), "mp3");
        let audio: Vec<f32> = (0..3 * 3200)
            .map(|i| (i as f32 * 0.05).sin() * 0.5)
            .collect();
        let mut stream = Vec::new();
        let mut offsets = Vec::new();
        for chunk in audio.chunks(3200) {
            let frame = f.frame(chunk).unwrap();
            let (h, payload) = FrameHeader::decode(&frame).unwrap();
            assert_eq!(
                &payload[..2],
                &[0xFF, 0xF3],
                "an MP3 frame starts the payload"
            );
            offsets.push(h.sample_offset);
            stream.extend_from_slice(payload);
        }
        let last = f.end_segment().unwrap().unwrap();
        let (h, tail) = FrameHeader::decode(&last).unwrap();
        assert!(h.is_last() && !tail.is_empty());
        stream.extend_from_slice(tail);
        assert!(
            offsets[0] == 0 && offsets.windows(2).all(|w| w[0] < w[1]),
            "{offsets:?}"
        );
        assert_eq!(f.samples_sent(), resampled_len(3 * 3200, 22_050));
        let mut one_shot = vv_audio::new_encoder(format, 22_050).unwrap();
        let mut expected = one_shot.push(&audio).unwrap();
        expected.extend(one_shot.finish().unwrap());
        assert!(stream == expected, "framed MP3 differs from one-shot MP3");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]
        /// Over segments of random frames, at every rate and encoding: seq counts from 0,
        /// offsets are the running sum of payload samples, FIRST/LAST mark segment bounds and
        /// every segment yields exactly the resampled length of its input.
        #[test]
        fn headers_and_lengths_add_up(
            rate_i in 0usize..SUPPORTED_SAMPLE_RATES.len(),
            enc_i in 0usize..4,
            segments in prop::collection::vec(prop::collection::vec(1usize..4000, 0..4), 1..4),
        ) {
            let rate = SUPPORTED_SAMPLE_RATES[rate_i];
            let encoding = Encoding::ALL[enc_i];
            let mut f = AudioFramer::new(9, encoding.into(), rate).unwrap();
            let (mut seq, mut offset) = (0u32, 0u64);
            for frames in &segments {
                let mut seg_samples = 0u64;
                let mut frames_out = Vec::new();
                for &n in frames {
                    frames_out.push(f.frame(&vec![0.25; n]).unwrap());
                    seg_samples += n as u64;
                }
                frames_out.extend(f.end_segment().unwrap());
                prop_assert_eq!(frames_out.len(), if frames.is_empty() { 0 } else { frames.len() + 1 });
                let mut payload_samples = 0u64;
                for (i, frame) in frames_out.iter().enumerate() {
                    let (h, len) = decode(frame);
                    prop_assert_eq!(len % encoding.bytes_per_sample(), 0);
                    prop_assert_eq!(h.context_num, 9);
                    prop_assert_eq!(h.seq, seq);
                    prop_assert_eq!(u64::from(h.sample_offset), offset);
                    prop_assert_eq!(h.is_first(), i == 0);
                    prop_assert_eq!(h.is_last(), i + 1 == frames_out.len());
                    let n = (len / encoding.bytes_per_sample()) as u64;
                    seq += 1;
                    offset += n;
                    payload_samples += n;
                }
                prop_assert_eq!(payload_samples, resampled_len(seg_samples, rate));
            }
            prop_assert_eq!(f.samples_sent(), offset);
        }

        /// At any speed, each segment yields the resampled length of its stretched length
        /// (`round(n / speed)`), and offsets count the stretched samples.
        #[test]
        fn speed_stretches_every_segment(
            rate_i in 0usize..6,
            speed in 0.25f64..=4.0,
            segments in prop::collection::vec(prop::collection::vec(1usize..4000, 1..4), 1..3),
        ) {
            let rate = SUPPORTED_SAMPLE_RATES[rate_i];
            let speed = Speed::new(speed).unwrap();
            let mut f = AudioFramer::new(2, Encoding::PcmF32le.into(), rate).unwrap().with_speed(speed);
            let mut total = 0u64;
            for frames in &segments {
                let mut payload = 0u64;
                let mut seg_samples = 0u64;
                for &n in frames {
                    let (h, len) = decode(&f.frame(&vec![0.25; n]).unwrap());
                    prop_assert_eq!(u64::from(h.sample_offset), total + payload);
                    payload += (len / 4) as u64;
                    seg_samples += n as u64;
                }
                payload += (decode(&f.end_segment().unwrap().unwrap()).1 / 4) as u64;
                prop_assert_eq!(payload, resampled_len(speed.stretched_len(seg_samples), rate));
                total += payload;
            }
            prop_assert_eq!(f.samples_sent(), total);
        }
    }
}
