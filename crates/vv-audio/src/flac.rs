//! Streaming FLAC (16-bit mono) built on the pure-Rust `flacenc` crate.
//!
//! `flacenc` can encode one fixed-size frame at a time, so the stream is emitted
//! incrementally: the `fLaC` marker and STREAMINFO go out with the first write, then each
//! [`FLAC_BLOCK_SIZE`]-sample block as soon as it is complete, and the last, shorter block at
//! [`FlacStreamWriter::finish`]. Because the length is unknown when STREAMINFO is sent, it
//! carries the values the FLAC format reserves for "unknown": total samples 0, MD5 all
//! zeros (decoders skip the check) and min/max frame size 0. Samples are converted to 16 bits
//! exactly as `pcm_s16le` is.

use flacenc::bitsink::MemSink;
use flacenc::component::{BitRepr, StreamInfo};
use flacenc::config;
use flacenc::error::{Verified, Verify};
use flacenc::source::{Fill, FrameBuf};

use crate::error::AudioError;
use crate::pcm::f32_to_s16;

/// Samples per FLAC frame: 2048 (85 ms at 24 kHz), between libFLAC's fast (1152) and default
/// (4096) presets, trading a little compression for earlier bytes on the wire.
pub const FLAC_BLOCK_SIZE: usize = 2048;

/// Bits per sample of the FLAC stream.
const BITS_PER_SAMPLE: usize = 16;

fn flac_err(e: impl std::fmt::Display) -> AudioError {
    AudioError::Flac(e.to_string())
}

/// Incremental FLAC encoder for a mono 16-bit stream.
pub struct FlacStreamWriter {
    config: Verified<config::Encoder>,
    stream_info: StreamInfo,
    framebuf: FrameBuf,
    /// Samples of the block being filled (16-bit values widened to i32).
    block: Vec<i32>,
    frame_number: usize,
    header_written: bool,
}

impl std::fmt::Debug for FlacStreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlacStreamWriter")
            .field("sample_rate", &self.stream_info.sample_rate())
            .field("frame_number", &self.frame_number)
            .field("pending", &self.block.len())
            .finish_non_exhaustive()
    }
}

impl FlacStreamWriter {
    /// Creates a writer for mono 16-bit audio at `sample_rate`.
    pub fn new(sample_rate: u32) -> Result<Self, AudioError> {
        let config = config::Encoder::default()
            .into_verified()
            .map_err(|(_, e)| flac_err(e))?;
        let mut stream_info =
            StreamInfo::new(sample_rate as usize, 1, BITS_PER_SAMPLE).map_err(flac_err)?;
        stream_info
            .set_block_sizes(FLAC_BLOCK_SIZE, FLAC_BLOCK_SIZE)
            .map_err(flac_err)?;
        stream_info.set_frame_sizes(0, 0).map_err(flac_err)?;
        let framebuf = FrameBuf::with_size(1, FLAC_BLOCK_SIZE).map_err(flac_err)?;
        Ok(FlacStreamWriter {
            config,
            stream_info,
            framebuf,
            block: Vec::with_capacity(FLAC_BLOCK_SIZE),
            frame_number: 0,
            header_written: false,
        })
    }

    /// Appends `samples`; writes the stream header (first call) and every completed frame.
    pub fn write(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.write_header_once(out)?;
        for &s in samples {
            self.block.push(i32::from(f32_to_s16(s)));
            if self.block.len() == FLAC_BLOCK_SIZE {
                self.encode_block(out)?;
            }
        }
        Ok(())
    }

    /// Writes the header if nothing was written yet, then the last partial frame.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.write_header_once(out)?;
        if !self.block.is_empty() {
            self.encode_block(out)?;
        }
        Ok(())
    }

    fn write_header_once(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        if self.header_written {
            return Ok(());
        }
        let header = flacenc::component::Stream::with_stream_info(self.stream_info.clone());
        write_component(&header, out)?;
        self.header_written = true;
        Ok(())
    }

    fn encode_block(&mut self, out: &mut Vec<u8>) -> Result<(), AudioError> {
        self.framebuf
            .fill_interleaved(&self.block)
            .map_err(flac_err)?;
        let frame = flacenc::encode_fixed_size_frame(
            &self.config,
            &self.framebuf,
            self.frame_number,
            &self.stream_info,
        )
        .map_err(flac_err)?;
        write_component(&frame, out)?;
        self.frame_number += 1;
        self.block.clear();
        Ok(())
    }
}

/// Serialises a byte-aligned FLAC component (stream header or frame) onto `out`.
fn write_component(component: &impl BitRepr, out: &mut Vec<u8>) -> Result<(), AudioError> {
    let mut sink = MemSink::<u8>::with_capacity(component.count_bits());
    component.write(&mut sink).map_err(flac_err)?;
    out.extend_from_slice(sink.as_slice());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_flac_streaminfo_with_unknown_length() {
        let mut w = FlacStreamWriter::new(24_000).unwrap();
        let mut out = Vec::new();
        w.write(&[], &mut out).unwrap();
        // "fLaC" + 4-byte metadata block header + 34-byte STREAMINFO.
        assert_eq!(out.len(), 42);
        assert_eq!(&out[0..4], b"fLaC");
        assert_eq!(
            out[4], 0x80,
            "last-metadata-block flag, type 0 (STREAMINFO)"
        );
        assert_eq!(&out[5..8], &[0, 0, 34]);
        assert_eq!(u16::from_be_bytes([out[8], out[9]]), FLAC_BLOCK_SIZE as u16);
        assert_eq!(
            u16::from_be_bytes([out[10], out[11]]),
            FLAC_BLOCK_SIZE as u16
        );
        assert_eq!(&out[12..18], &[0; 6], "frame sizes unknown");
        // 20-bit rate, 3-bit channels-1, 5-bit bps-1, 36-bit total samples.
        let packed = u64::from_be_bytes(out[18..26].try_into().unwrap());
        assert_eq!(packed >> 44, 24_000);
        assert_eq!((packed >> 41) & 0x7, 0);
        assert_eq!((packed >> 36) & 0x1F, 15);
        assert_eq!(packed & 0xF_FFFF_FFFF, 0, "total samples unknown");
        assert_eq!(&out[26..42], &[0; 16], "MD5 unknown");
    }

    #[test]
    fn frames_are_emitted_per_block() {
        let mut w = FlacStreamWriter::new(16_000).unwrap();
        let mut out = Vec::new();
        w.write(&vec![0.25; FLAC_BLOCK_SIZE - 1], &mut out).unwrap();
        assert_eq!(out.len(), 42, "no frame before the block is full");
        w.write(&[0.25], &mut out).unwrap();
        assert!(out.len() > 42);
        // FLAC frame sync code 0b1111_1111_1111_10.
        assert_eq!(out[42], 0xFF);
        assert_eq!(out[43] & 0xFE, 0xF8);
        let before = out.len();
        w.finish(&mut out).unwrap();
        assert_eq!(out.len(), before, "nothing pending, nothing written");
    }
}
