//! RIFF/WAVE headers (known length and streaming) and a WAV file writer for the CLI.
//!
//! PCM 16-bit uses the canonical 44-byte header (`fmt ` chunk of 16 bytes). The non-PCM
//! format tags (IEEE float = 3, A-law = 6, mu-law = 7) use an 18-byte `fmt ` chunk
//! (`cbSize` = 0) followed by a `fact` chunk, as the RIFF spec asks, giving a 58-byte header.
//!
//! Streaming (length unknown when the header is sent, e.g. a chunked HTTP response): the RIFF
//! size, the `data` size and the `fact` sample count are 0xFFFFFFFF, the convention that
//! ffmpeg, browsers and most players accept as "read until end of stream".

use std::io::Write;
use std::path::Path;

use crate::error::AudioError;
use crate::pcm::Encoding;

/// Size value written for unknown lengths in streaming headers.
pub const STREAMING_SIZE: u32 = 0xFFFF_FFFF;

/// WAVE_FORMAT tag for an encoding.
fn format_tag(encoding: Encoding) -> u16 {
    match encoding {
        Encoding::PcmS16le => 1,
        Encoding::PcmF32le => 3,
        Encoding::Alaw => 6,
        Encoding::Mulaw => 7,
    }
}

/// Builds a mono WAV header for `encoding` at `sample_rate`.
///
/// `data_len` is the byte length of the sample data that follows, or `None` for the streaming
/// form. With a known odd length (8-bit G.711 data), the RIFF size accounts for the pad byte
/// that the caller must write after the data.
pub fn wav_header(
    encoding: Encoding,
    sample_rate: u32,
    data_len: Option<u64>,
) -> Result<Vec<u8>, AudioError> {
    let bytes_per_sample = encoding.bytes_per_sample() as u16;
    let is_pcm = encoding == Encoding::PcmS16le;
    let fmt_len: u32 = if is_pcm { 16 } else { 18 };
    let fact_len: u32 = if is_pcm { 0 } else { 12 };
    // "WAVE" + fmt chunk + optional fact chunk + data chunk header.
    let overhead = 4 + (8 + fmt_len) + fact_len + 8;

    let (riff_size, data_size, sample_count) = match data_len {
        None => (STREAMING_SIZE, STREAMING_SIZE, STREAMING_SIZE),
        Some(len) => {
            let padded = len + (len & 1);
            let riff = u64::from(overhead) + padded;
            let riff = u32::try_from(riff).map_err(|_| AudioError::WavTooLarge(len))?;
            // `len` <= `riff`, so these fit too.
            let samples = len / u64::from(bytes_per_sample);
            (riff, len as u32, samples as u32)
        }
    };

    let mut h = Vec::with_capacity(overhead as usize + 8);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&riff_size.to_le_bytes());
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    h.extend_from_slice(&fmt_len.to_le_bytes());
    h.extend_from_slice(&format_tag(encoding).to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // channels
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&(sample_rate * u32::from(bytes_per_sample)).to_le_bytes()); // byte rate
    h.extend_from_slice(&bytes_per_sample.to_le_bytes()); // block align
    h.extend_from_slice(&(bytes_per_sample * 8).to_le_bytes()); // bits per sample
    if !is_pcm {
        h.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        h.extend_from_slice(b"fact");
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(&sample_count.to_le_bytes());
    }
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_size.to_le_bytes());
    Ok(h)
}

/// Writes `samples` (mono, any rate) as a 16-bit PCM WAV file.
pub fn write_wav_file(
    path: impl AsRef<Path>,
    samples: &[f32],
    sample_rate: u32,
) -> Result<(), AudioError> {
    let data = Encoding::PcmS16le.encode(samples);
    let header = wav_header(Encoding::PcmS16le, sample_rate, Some(data.len() as u64))?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    file.write_all(&header)?;
    file.write_all(&data)?;
    file.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_le_bytes([b[i], b[i + 1]])
    }
    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    #[test]
    fn canonical_pcm16_header() {
        let h = wav_header(Encoding::PcmS16le, 24_000, Some(4800)).unwrap();
        assert_eq!(h.len(), 44);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32_at(&h, 4), 36 + 4800);
        assert_eq!(&h[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(&h, 16), 16);
        assert_eq!(u16_at(&h, 20), 1);
        assert_eq!(u16_at(&h, 22), 1);
        assert_eq!(u32_at(&h, 24), 24_000);
        assert_eq!(u32_at(&h, 28), 48_000);
        assert_eq!(u16_at(&h, 32), 2);
        assert_eq!(u16_at(&h, 34), 16);
        assert_eq!(&h[36..40], b"data");
        assert_eq!(u32_at(&h, 40), 4800);
    }

    #[test]
    fn streaming_header_uses_ffffffff() {
        let h = wav_header(Encoding::PcmS16le, 16_000, None).unwrap();
        assert_eq!(h.len(), 44);
        assert_eq!(u32_at(&h, 4), STREAMING_SIZE);
        assert_eq!(u32_at(&h, 40), STREAMING_SIZE);
        let g = wav_header(Encoding::Mulaw, 8_000, None).unwrap();
        assert_eq!(u32_at(&g, 46), STREAMING_SIZE, "fact sample count");
        assert_eq!(u32_at(&g, 54), STREAMING_SIZE);
    }

    #[test]
    fn non_pcm_headers_have_fact_chunks() {
        let h = wav_header(Encoding::Mulaw, 8_000, Some(801)).unwrap();
        assert_eq!(h.len(), 58);
        assert_eq!(u32_at(&h, 4), 50 + 802, "RIFF size counts the pad byte");
        assert_eq!(u32_at(&h, 16), 18);
        assert_eq!(u16_at(&h, 20), 7);
        assert_eq!(u16_at(&h, 34), 8);
        assert_eq!(u16_at(&h, 36), 0, "cbSize");
        assert_eq!(&h[38..42], b"fact");
        assert_eq!(u32_at(&h, 46), 801);
        assert_eq!(&h[50..54], b"data");
        assert_eq!(u32_at(&h, 54), 801);
        let f = wav_header(Encoding::PcmF32le, 48_000, Some(400)).unwrap();
        assert_eq!(
            (u16_at(&f, 20), u16_at(&f, 34), u32_at(&f, 28)),
            (3, 32, 192_000)
        );
        assert_eq!(u32_at(&f, 46), 100);
        let a = wav_header(Encoding::Alaw, 8_000, Some(2)).unwrap();
        assert_eq!(u16_at(&a, 20), 6);
    }

    #[test]
    fn rejects_oversized_data() {
        let err = wav_header(Encoding::PcmS16le, 24_000, Some(u64::from(u32::MAX))).unwrap_err();
        assert_eq!(err.code(), "wav_too_large");
        // 36 + len must fit in u32, counting the pad byte of an odd length.
        assert!(wav_header(Encoding::PcmS16le, 24_000, Some(u64::from(u32::MAX) - 37)).is_ok());
        assert!(wav_header(Encoding::PcmS16le, 8_000, Some(u64::from(u32::MAX) - 36)).is_err());
    }

    #[test]
    fn writes_a_file() {
        let dir = std::env::temp_dir().join(format!("vv-audio-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.wav");
        write_wav_file(&path, &[0.0, 1.0, -1.0, 0.5], 22_050).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(bytes.len(), 44 + 8);
        assert_eq!(u32_at(&bytes, 24), 22_050);
        assert_eq!(u32_at(&bytes, 40), 8);
        assert_eq!(&bytes[44..], &[0, 0, 0xff, 0x7f, 0x01, 0x80, 0x00, 0x40]);
    }
}
