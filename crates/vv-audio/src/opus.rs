//! Streaming Ogg Opus (RFC 7845), as OpenAI's `response_format: "opus"` returns.
//!
//! Encoder: `opus-pure`, a pure-Rust Opus codec (no C, no system library, no build script),
//! fed 20 ms frames at the stream's rate (Opus takes 8/16/24/48 kHz natively, so 24 kHz model
//! audio is encoded without resampling). Container: the `ogg` crate's page writer, so that
//! every [`OggOpusStreamWriter::write`] ends its page and returns the bytes at once; only the
//! last partial 20 ms frame waits for more input.
//!
//! The stream is gapless: `OpusHead.pre_skip` is the encoder's real lookahead, `finish` pads
//! with silence until the lookahead has been flushed, and the final page's granule position
//! is trimmed back to exactly the audio pushed (RFC 7845 section 4.4). Granule positions
//! count 48 kHz samples, whatever the encoder rate.

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use opus_pure::{Application, OpusEncoder, OpusHead, MAX_PACKET_BYTES};

use crate::error::AudioError;

/// Encoder rates this writer accepts: the protocol's rates that Opus codes natively.
pub const OPUS_SAMPLE_RATES: [u32; 4] = [8_000, 16_000, 24_000, 48_000];

/// [`OPUS_SAMPLE_RATES`] as text, for error messages.
const OPUS_SAMPLE_RATES_TEXT: &str = "8000, 16000, 24000, 48000";

/// Target bitrate: 48 kb/s, transparent for mono speech at 24 kHz.
pub const OPUS_BITRATE_BPS: i32 = 48_000;

/// Granule positions are always counted at 48 kHz.
const GRANULE_RATE: u64 = 48_000;

/// Ogg logical stream serial number (one stream per response, so any fixed value works and
/// keeps the output reproducible).
const SERIAL: u32 = 0x7676_6F70; // "vvop"

/// Vendor string written into OpusTags.
const VENDOR: &str = "vibevoice-rt (opus-pure)";

fn opus_err(e: impl std::fmt::Display) -> AudioError {
    AudioError::Opus(e.to_string())
}

/// Incremental mono Ogg Opus encoder.
pub struct OggOpusStreamWriter {
    encoder: OpusEncoder,
    pages: PacketWriter<'static, Vec<u8>>,
    sample_rate: u32,
    /// Samples per 20 ms frame at `sample_rate`.
    frame_size: usize,
    /// 48 kHz ticks per encoder-rate sample.
    ticks: u64,
    pre_skip: u16,
    /// Input samples of the frame being filled.
    pending: Vec<f32>,
    /// Input samples written since the start (real audio, no padding).
    input_total: u64,
    /// Granule position after the last packet written.
    granule: u64,
    /// Scratch packet buffer.
    packet: Vec<u8>,
    headers_written: bool,
}

impl std::fmt::Debug for OggOpusStreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusStreamWriter")
            .field("sample_rate", &self.sample_rate)
            .field("pre_skip", &self.pre_skip)
            .field("granule", &self.granule)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl OggOpusStreamWriter {
    /// Creates a writer encoding mono audio at `sample_rate` (one of [`OPUS_SAMPLE_RATES`]).
    pub fn new(sample_rate: u32) -> Result<Self, AudioError> {
        if !OPUS_SAMPLE_RATES.contains(&sample_rate) {
            return Err(AudioError::UnsupportedSampleRate {
                rate: sample_rate,
                supported: OPUS_SAMPLE_RATES_TEXT,
            });
        }
        // In OPUS_SAMPLE_RATES, so it fits an i32.
        let mut encoder =
            OpusEncoder::new(sample_rate as i32, 1, Application::Audio).map_err(opus_err)?;
        encoder.bitrate_bps = OPUS_BITRATE_BPS;
        let pre_skip = OpusHead::for_encoder(&encoder, sample_rate).pre_skip;
        let frame_size = sample_rate as usize / 50;
        Ok(OggOpusStreamWriter {
            encoder,
            pages: PacketWriter::new(Vec::new()),
            sample_rate,
            frame_size,
            ticks: GRANULE_RATE / u64::from(sample_rate),
            pre_skip,
            pending: Vec::with_capacity(frame_size),
            input_total: 0,
            granule: 0,
            packet: vec![0; MAX_PACKET_BYTES],
            headers_written: false,
        })
    }

    /// The encoder's delay in 48 kHz samples, as written to `OpusHead.pre_skip`.
    pub fn pre_skip(&self) -> u16 {
        self.pre_skip
    }

    /// Appends `samples`; writes the header pages (first call) and one page holding every
    /// completed 20 ms packet.
    pub fn write(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.write_headers_once()?;
        self.input_total += samples.len() as u64;
        let mut pending = std::mem::take(&mut self.pending);
        let frames = (pending.len() + samples.len()) / self.frame_size;
        let mut rest = samples;
        for i in 0..frames {
            let need = self.frame_size - pending.len();
            let (head, tail) = rest
                .split_at_checked(need)
                .ok_or_else(|| opus_err("frame accounting"))?;
            pending.extend_from_slice(head);
            rest = tail;
            // The last packet of this write ends the page, so it goes out now rather than
            // with the next write.
            let end = if i + 1 == frames {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.encode_frame(&pending, end, None)?;
            pending.clear();
        }
        pending.extend_from_slice(rest);
        self.pending = pending;
        self.drain_into(out);
        Ok(())
    }

    /// Flushes the encoder (silence padding) and writes the end-of-stream page with the
    /// end-trimmed final granule position.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.write_headers_once()?;
        let lookahead = u64::from(self.pre_skip).div_ceil(self.ticks);
        let frame = self.frame_size as u64;
        let total_frames = (self.input_total + lookahead).div_ceil(frame);
        let done_frames = (self.input_total - self.pending.len() as u64) / frame;
        let final_granule = u64::from(self.pre_skip) + self.input_total * self.ticks;
        let mut block = std::mem::take(&mut self.pending);
        for i in done_frames..total_frames {
            block.resize(self.frame_size, 0.0);
            let (end, granule) = if i + 1 == total_frames {
                (PacketWriteEndInfo::EndStream, Some(final_granule))
            } else {
                (PacketWriteEndInfo::NormalPacket, None)
            };
            self.encode_frame(&block, end, granule)?;
            block.clear();
        }
        self.drain_into(out);
        Ok(())
    }

    /// Encodes one full frame and queues its packet; `granule` overrides the running position
    /// (end trim).
    fn encode_frame(
        &mut self,
        frame: &[f32],
        end: PacketWriteEndInfo,
        granule: Option<u64>,
    ) -> Result<(), AudioError> {
        let len = self
            .encoder
            .encode(frame, self.frame_size, &mut self.packet)
            .map_err(opus_err)?;
        let packet = self
            .packet
            .get(..len)
            .ok_or_else(|| opus_err("packet overflow"))?;
        self.granule += self.frame_size as u64 * self.ticks;
        let absgp = granule.unwrap_or(self.granule);
        self.pages
            .write_packet(packet.to_vec(), SERIAL, end, absgp)
            .map_err(opus_err)
    }

    fn write_headers_once(&mut self) -> Result<(), AudioError> {
        if self.headers_written {
            return Ok(());
        }
        let head = opus_head_packet(self.pre_skip, self.sample_rate);
        let tags = opus_tags_packet();
        for packet in [head, tags] {
            // RFC 7845 section 5: each header packet alone on its page, granule 0.
            self.pages
                .write_packet(packet, SERIAL, PacketWriteEndInfo::EndPage, 0)
                .map_err(opus_err)?;
        }
        self.headers_written = true;
        Ok(())
    }

    fn drain_into(&mut self, out: &mut Vec<u8>) {
        out.append(self.pages.inner_mut());
    }
}

/// The 19-byte identification header (RFC 7845 section 5.1), mono, mapping family 0.
fn opus_head_packet(pre_skip: u16, input_sample_rate: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(19);
    p.extend_from_slice(b"OpusHead");
    p.push(1); // version
    p.push(1); // channel count
    p.extend_from_slice(&pre_skip.to_le_bytes());
    p.extend_from_slice(&input_sample_rate.to_le_bytes());
    p.extend_from_slice(&0i16.to_le_bytes()); // output gain
    p.push(0); // channel mapping family
    p
}

/// The comment header (RFC 7845 section 5.2): vendor string, no user comments.
fn opus_tags_packet() -> Vec<u8> {
    let mut p = Vec::with_capacity(16 + VENDOR.len());
    p.extend_from_slice(b"OpusTags");
    p.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
    p.extend_from_slice(VENDOR.as_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_rates_opus_cannot_code() {
        for rate in [22_050, 44_100, 12_345] {
            assert_eq!(
                OggOpusStreamWriter::new(rate).unwrap_err().code(),
                "unsupported_sample_rate"
            );
        }
    }

    #[test]
    fn head_packet_layout() {
        let p = opus_head_packet(312, 24_000);
        assert_eq!(p.len(), 19);
        assert_eq!(&p[..8], b"OpusHead");
        assert_eq!((p[8], p[9]), (1, 1));
        assert_eq!(u16::from_le_bytes([p[10], p[11]]), 312);
        assert_eq!(u32::from_le_bytes([p[12], p[13], p[14], p[15]]), 24_000);
        assert_eq!(&p[16..], &[0, 0, 0]);
    }

    #[test]
    fn pre_skip_is_the_encoder_lookahead_at_48k() {
        // libopus' 6.5 ms (312 samples at 48 kHz) for the Audio application.
        assert_eq!(OggOpusStreamWriter::new(24_000).unwrap().pre_skip(), 312);
    }

    #[test]
    fn writes_pages_as_frames_complete() {
        let mut w = OggOpusStreamWriter::new(24_000).unwrap();
        let mut out = Vec::new();
        w.write(&[0.0; 100], &mut out).unwrap();
        assert!(
            out.starts_with(b"OggS"),
            "header pages go out with the first write"
        );
        let headers = out.len();
        w.write(&[0.0; 380], &mut out).unwrap();
        assert!(
            out.len() > headers,
            "a completed 20 ms frame is emitted at once"
        );
    }
}
