//! The server-facing streaming encoder: native 24 kHz f32 in, bytes of a format out.
//!
//! Every encoder is a [`TimeStretcher`] (playback speed; a pass-through at 1.0) and a
//! [`StreamResampler`] (24 kHz -> the requested rate) in front of a format body (raw samples,
//! streaming WAV, FLAC, Ogg Opus, MP3). `push` returns the bytes that are ready to send now;
//! `finish` flushes the stretcher's, the resampler's and the format's tails.

use crate::error::AudioError;
use crate::flac::FlacStreamWriter;
use crate::format::OutputFormat;
use crate::mp3::Mp3StreamWriter;
use crate::opus::OggOpusStreamWriter;
use crate::pcm::Encoding;
use crate::resample::StreamResampler;
use crate::stretch::{Speed, TimeStretcher};
use crate::wav::wav_header;

/// A streaming audio encoder created by [`new_encoder`].
pub trait AudioEncoder: Send {
    /// Feeds native 24 kHz mono samples; returns the bytes ready to send now (possibly empty;
    /// the first call also returns the format's header, if it has one).
    fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError>;
    /// Ends the stream and returns the remaining bytes. Later calls fail with `Finished`.
    fn finish(&mut self) -> Result<Vec<u8>, AudioError>;
    /// The `Content-Type` of the produced bytes.
    fn content_type(&self) -> &'static str;
    /// The sample rate of the produced audio.
    fn sample_rate(&self) -> u32;
    /// The format produced.
    fn format(&self) -> OutputFormat;
    /// Output-rate samples encoded so far (the bytes returned carry them, but for the few a
    /// codec holds until its frame is full: up to 1,151 for MP3, 959 for Opus).
    fn samples_encoded(&self) -> u64;
}

/// Creates an encoder producing `format` at `sample_rate` (one of the protocol's rates; Opus
/// additionally needs a rate it codes natively: 8000, 16000, 24000 or 48000), at normal speed.
pub fn new_encoder(
    format: OutputFormat,
    sample_rate: u32,
) -> Result<Box<dyn AudioEncoder>, AudioError> {
    new_encoder_at_speed(format, sample_rate, Speed::NORMAL)
}

/// Like [`new_encoder`], with the audio time-stretched to play at `speed` (pitch kept) before
/// it is resampled.
pub fn new_encoder_at_speed(
    format: OutputFormat,
    sample_rate: u32,
    speed: Speed,
) -> Result<Box<dyn AudioEncoder>, AudioError> {
    let front = Front {
        stretcher: TimeStretcher::new(speed),
        resampler: StreamResampler::new(sample_rate)?,
    };
    Ok(match format {
        OutputFormat::Raw(encoding) => Pipeline::boxed(format, front, RawBody(encoding)),
        OutputFormat::Wav => Pipeline::boxed(format, front, WavBody::new(sample_rate)),
        OutputFormat::Flac => Pipeline::boxed(format, front, FlacStreamWriter::new(sample_rate)?),
        OutputFormat::Opus => {
            Pipeline::boxed(format, front, OggOpusStreamWriter::new(sample_rate)?)
        }
        OutputFormat::Mp3 { kbps } => {
            Pipeline::boxed(format, front, Mp3StreamWriter::new(sample_rate, kbps)?)
        }
    })
}

/// The sample processing in front of every body: speed, then rate.
struct Front {
    stretcher: TimeStretcher,
    resampler: StreamResampler,
}

/// Turns output-rate samples into the bytes of one format.
trait Body: Send {
    /// Appends the encoding of `samples` (and any header due first) to `out`.
    fn write(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError>;
    /// Appends whatever the format still holds to `out`.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError>;
}

/// Headerless samples.
struct RawBody(Encoding);

impl Body for RawBody {
    fn write(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.0.encode_into(samples, out);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), AudioError> {
        Ok(())
    }
}

/// 16-bit PCM WAV with a streaming header sent before the first samples.
struct WavBody {
    sample_rate: u32,
    header_sent: bool,
}

impl WavBody {
    fn new(sample_rate: u32) -> Self {
        WavBody {
            sample_rate,
            header_sent: false,
        }
    }

    fn header_once(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        if !self.header_sent {
            out.extend(wav_header(Encoding::PcmS16le, self.sample_rate, None)?);
            self.header_sent = true;
        }
        Ok(())
    }
}

impl Body for WavBody {
    fn write(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.header_once(out)?;
        Encoding::PcmS16le.encode_into(samples, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.header_once(out)
    }
}

impl Body for FlacStreamWriter {
    fn write(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        FlacStreamWriter::write(self, samples, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        FlacStreamWriter::finish(self, out)
    }
}

impl Body for OggOpusStreamWriter {
    fn write(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        OggOpusStreamWriter::write(self, samples, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        OggOpusStreamWriter::finish(self, out)
    }
}

impl Body for Mp3StreamWriter {
    fn write(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        Mp3StreamWriter::write(self, samples, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        Mp3StreamWriter::finish(self, out)
    }
}

/// `samples` with every NaN or infinity replaced by silence: one such value would otherwise
/// turn a resampler block's FFT into NaN (which the resampler library answers with a panic)
/// or a whole frame of a perceptual codec into noise.
fn finite(samples: &[f32]) -> std::borrow::Cow<'_, [f32]> {
    if samples.iter().all(|v| v.is_finite()) {
        return samples.into();
    }
    let cleaned = samples.iter().map(|&v| if v.is_finite() { v } else { 0.0 });
    cleaned.collect::<Vec<f32>>().into()
}

/// Stretcher and resampler followed by a body.
struct Pipeline<B: Body> {
    format: OutputFormat,
    front: Front,
    body: B,
    samples: u64,
    finished: bool,
}

impl<B: Body + 'static> Pipeline<B> {
    fn boxed(format: OutputFormat, front: Front, body: B) -> Box<dyn AudioEncoder> {
        Box::new(Pipeline {
            format,
            front,
            body,
            samples: 0,
            finished: false,
        })
    }
}

impl<B: Body> AudioEncoder for Pipeline<B> {
    fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, AudioError> {
        if self.finished {
            return Err(AudioError::Finished);
        }
        let stretched = self.front.stretcher.push(&finite(samples));
        let resampled = self.front.resampler.push(&stretched)?;
        let mut out = Vec::new();
        self.body.write(&resampled, &mut out)?;
        self.samples += resampled.len() as u64;
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<u8>, AudioError> {
        if self.finished {
            return Err(AudioError::Finished);
        }
        self.finished = true;
        let stretched = self.front.stretcher.finish();
        let mut tail = self.front.resampler.push(&stretched)?;
        tail.extend(self.front.resampler.finish()?);
        let mut out = Vec::new();
        self.body.write(&tail, &mut out)?;
        self.body.finish(&mut out)?;
        self.samples += tail.len() as u64;
        Ok(out)
    }

    fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    fn sample_rate(&self) -> u32 {
        self.front.resampler.output_rate()
    }

    fn format(&self) -> OutputFormat {
        self.format
    }

    fn samples_encoded(&self) -> u64 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_passthrough_bytes() {
        let mut e = new_encoder(OutputFormat::Raw(Encoding::PcmS16le), 24_000).unwrap();
        assert_eq!(e.push(&[1.0, -1.0]).unwrap(), vec![0xff, 0x7f, 0x01, 0x80]);
        assert!(e.finish().unwrap().is_empty());
        assert_eq!(e.push(&[0.0]).unwrap_err().code(), "encoder_finished");
        assert_eq!(e.finish().unwrap_err().code(), "encoder_finished");
    }

    #[test]
    fn wav_header_comes_first_even_without_audio() {
        let mut e = new_encoder(OutputFormat::Wav, 16_000).unwrap();
        let bytes = e.finish().unwrap();
        assert_eq!(bytes.len(), 44);
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(e.content_type(), "audio/wav");
        assert_eq!(e.sample_rate(), 16_000);
    }

    /// At speed 2.0 the stream has half the samples (round(n / 2), then resampled).
    #[test]
    fn speed_shortens_the_stream() {
        let speed = Speed::new(2.0).unwrap();
        let mut e =
            new_encoder_at_speed(OutputFormat::Raw(Encoding::PcmS16le), 16_000, speed).unwrap();
        let mut bytes = 0;
        for _ in 0..5 {
            bytes += e.push(&[0.25; 3200]).unwrap().len();
        }
        bytes += e.finish().unwrap().len();
        // 16000 input samples -> 8000 at 24 kHz -> ceil(8000 * 16000 / 24000) at 16 kHz.
        assert_eq!(bytes / 2, 5334);
    }

    #[test]
    fn rejects_bad_rates() {
        assert_eq!(
            new_encoder(OutputFormat::Wav, 11_025).err().unwrap().code(),
            "unsupported_sample_rate"
        );
        assert_eq!(
            new_encoder(OutputFormat::Opus, 44_100)
                .err()
                .unwrap()
                .code(),
            "unsupported_sample_rate"
        );
    }
}
