//! The 16-byte little-endian header of binary WebSocket audio frames (protocol v1).
//!
//! Layout: `u8 version` (1), `u8 kind` (1 = audio), `u16 flags` (bit 0 last frame of the
//! segment, bit 1 first frame), `u32 context_num`, `u32 seq` (per context, from 0),
//! `u32 sample_offset` (at the output rate, from the context start). Samples in the
//! negotiated encoding follow the header.

use crate::error::AudioError;

/// Encoded header length in bytes.
pub const FRAME_HEADER_LEN: usize = 16;
/// Protocol version carried in byte 0.
pub const FRAME_VERSION: u8 = 1;
/// Frame kind for audio (byte 1).
pub const FRAME_KIND_AUDIO: u8 = 1;
/// Flag bit 0: last frame of a segment (flush or close).
pub const FLAG_LAST: u16 = 1 << 0;
/// Flag bit 1: first frame of a segment.
pub const FLAG_FIRST: u16 = 1 << 1;

/// Header of one binary audio frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FrameHeader {
    /// Raw flag bits; see [`FLAG_LAST`] and [`FLAG_FIRST`]. Unknown bits are kept as received.
    pub flags: u16,
    /// Numeric id of the context (from `context.created`).
    pub context_num: u32,
    /// Frame sequence number within the context, from 0.
    pub seq: u32,
    /// Offset of the frame's first sample, in output-rate samples from the context start.
    pub sample_offset: u32,
}

impl FrameHeader {
    /// Whether this is the last frame of its segment.
    pub fn is_last(&self) -> bool {
        self.flags & FLAG_LAST != 0
    }

    /// Whether this is the first frame of its segment.
    pub fn is_first(&self) -> bool {
        self.flags & FLAG_FIRST != 0
    }

    /// Sets or clears the last-of-segment flag.
    pub fn with_last(mut self, last: bool) -> Self {
        self.set_flag(FLAG_LAST, last);
        self
    }

    /// Sets or clears the first-of-segment flag.
    pub fn with_first(mut self, first: bool) -> Self {
        self.set_flag(FLAG_FIRST, first);
        self
    }

    fn set_flag(&mut self, bit: u16, on: bool) {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
    }

    /// Encodes the header (version 1, kind audio).
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0] = FRAME_VERSION;
        b[1] = FRAME_KIND_AUDIO;
        b[2..4].copy_from_slice(&self.flags.to_le_bytes());
        b[4..8].copy_from_slice(&self.context_num.to_le_bytes());
        b[8..12].copy_from_slice(&self.seq.to_le_bytes());
        b[12..16].copy_from_slice(&self.sample_offset.to_le_bytes());
        b
    }

    /// Decodes the header at the start of `frame`; returns it and the payload that follows.
    pub fn decode(frame: &[u8]) -> Result<(FrameHeader, &[u8]), AudioError> {
        let (head, payload) = frame
            .split_first_chunk::<FRAME_HEADER_LEN>()
            .ok_or(AudioError::InvalidFrameHeader("shorter than 16 bytes"))?;
        let [version, kind, f0, f1, c0, c1, c2, c3, s0, s1, s2, s3, o0, o1, o2, o3] = *head;
        if version != FRAME_VERSION {
            return Err(AudioError::InvalidFrameHeader("unsupported version"));
        }
        if kind != FRAME_KIND_AUDIO {
            return Err(AudioError::InvalidFrameHeader("not an audio frame"));
        }
        let header = FrameHeader {
            flags: u16::from_le_bytes([f0, f1]),
            context_num: u32::from_le_bytes([c0, c1, c2, c3]),
            seq: u32::from_le_bytes([s0, s1, s2, s3]),
            sample_offset: u32::from_le_bytes([o0, o1, o2, o3]),
        };
        Ok((header, payload))
    }

    /// Encodes the header followed by `payload`, ready to send as one binary message.
    pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
        out.extend_from_slice(&self.encode());
        out.extend_from_slice(payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bytes() {
        let h = FrameHeader {
            flags: 0,
            context_num: 7,
            seq: 2,
            sample_offset: 6400,
        }
        .with_first(true)
        .with_last(true);
        assert_eq!(
            h.encode(),
            [1, 1, 3, 0, 7, 0, 0, 0, 2, 0, 0, 0, 0x00, 0x19, 0, 0]
        );
        assert!(h.is_first() && h.is_last());
        let h = h.with_last(false);
        assert!(h.is_first() && !h.is_last());
        assert_eq!(h.flags, FLAG_FIRST);
    }

    #[test]
    fn rejects_bad_frames() {
        let good = FrameHeader::default().encode();
        assert_eq!(
            FrameHeader::decode(&good[..15]).unwrap_err().code(),
            "invalid_frame_header"
        );
        let mut v2 = good;
        v2[0] = 2;
        assert!(FrameHeader::decode(&v2).is_err());
        let mut k2 = good;
        k2[1] = 2;
        assert!(FrameHeader::decode(&k2).is_err());
        let (h, payload) = FrameHeader::decode(&good).unwrap();
        assert_eq!(h, FrameHeader::default());
        assert!(payload.is_empty());
    }

    #[test]
    fn frame_appends_payload() {
        let h = FrameHeader {
            seq: 1,
            ..FrameHeader::default()
        };
        let msg = h.frame(&[9, 8, 7]);
        let (back, payload) = FrameHeader::decode(&msg).unwrap();
        assert_eq!(back, h);
        assert_eq!(payload, &[9, 8, 7]);
    }
}
