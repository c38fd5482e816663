//! Sample encodings of the wire protocol and the f32 -> bytes conversions behind them.
//!
//! Conversion conventions (documented because clients depend on them):
//! - Every encoding first *sanitises* the sample: NaN becomes 0.0 and the value is clipped to
//!   [-1.0, 1.0]. This also applies to `pcm_f32le`, so a float client never sees a value its
//!   16-bit sibling could not represent.
//! - `pcm_s16le` scales by 32767 and rounds to nearest (ties away from zero). Scaling by 32767
//!   (not 32768) keeps the mapping symmetric: +1.0 -> 32767, -1.0 -> -32767, 0.0 -> 0, and no
//!   positive input can overflow. The code -32768 is never produced.
//! - `mulaw` / `alaw` are ITU-T G.711 applied to that 16-bit value (see [`crate::g711`]).

use std::fmt;
use std::str::FromStr;

use crate::error::AudioError;
use crate::g711;

/// Sample encoding of raw audio (WebSocket frames, `pcm` HTTP bodies, WAV data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// Signed 16-bit little-endian PCM (the default).
    #[default]
    PcmS16le,
    /// 32-bit IEEE float little-endian PCM.
    PcmF32le,
    /// ITU-T G.711 mu-law, one byte per sample.
    Mulaw,
    /// ITU-T G.711 A-law, one byte per sample.
    Alaw,
}

impl Encoding {
    /// All encodings, in protocol order.
    pub const ALL: [Encoding; 4] = [
        Encoding::PcmS16le,
        Encoding::PcmF32le,
        Encoding::Mulaw,
        Encoding::Alaw,
    ];

    /// The protocol name (`pcm_s16le`, `pcm_f32le`, `mulaw`, `alaw`).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::PcmS16le => "pcm_s16le",
            Encoding::PcmF32le => "pcm_f32le",
            Encoding::Mulaw => "mulaw",
            Encoding::Alaw => "alaw",
        }
    }

    /// Bytes per (mono) sample.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::PcmS16le => 2,
            Encoding::PcmF32le => 4,
            Encoding::Mulaw | Encoding::Alaw => 1,
        }
    }

    /// Appends `samples` encoded in this encoding to `out`.
    pub fn encode_into(self, samples: &[f32], out: &mut Vec<u8>) {
        out.reserve(samples.len() * self.bytes_per_sample());
        match self {
            Encoding::PcmS16le => {
                out.extend(samples.iter().flat_map(|&s| f32_to_s16(s).to_le_bytes()))
            }
            Encoding::PcmF32le => {
                out.extend(samples.iter().flat_map(|&s| sanitize(s).to_le_bytes()))
            }
            Encoding::Mulaw => out.extend(
                samples
                    .iter()
                    .map(|&s| g711::linear_to_mulaw(f32_to_s16(s))),
            ),
            Encoding::Alaw => {
                out.extend(samples.iter().map(|&s| g711::linear_to_alaw(f32_to_s16(s))))
            }
        }
    }

    /// Encodes `samples` into a new byte vector.
    pub fn encode(self, samples: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(samples, &mut out);
        out
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encoding {
    type Err = AudioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Encoding::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| AudioError::UnsupportedEncoding(s.to_owned()))
    }
}

/// NaN -> 0.0, then clip to [-1.0, 1.0].
pub fn sanitize(sample: f32) -> f32 {
    if sample.is_nan() {
        0.0
    } else {
        sample.clamp(-1.0, 1.0)
    }
}

/// f32 -> i16: sanitise, scale by 32767, round to nearest (see the module docs).
pub fn f32_to_s16(sample: f32) -> i16 {
    // In range [-32767.0, 32767.0] after sanitising, so the cast is exact and cannot saturate.
    (sanitize(sample) * 32767.0).round() as i16
}

/// i16 -> f32, the inverse scaling of [`f32_to_s16`] (used by decoders in tests and tools).
pub fn s16_to_f32(sample: i16) -> f32 {
    f32::from(sample) / 32767.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s16_reference_points() {
        assert_eq!(f32_to_s16(0.0), 0);
        assert_eq!(f32_to_s16(1.0), 32767);
        assert_eq!(f32_to_s16(-1.0), -32767);
        assert_eq!(f32_to_s16(2.5), 32767);
        assert_eq!(f32_to_s16(-7.0), -32767);
        assert_eq!(f32_to_s16(f32::NAN), 0);
        assert_eq!(f32_to_s16(f32::INFINITY), 32767);
        assert_eq!(f32_to_s16(f32::NEG_INFINITY), -32767);
        // 0.5 * 32767 = 16383.5 rounds away from zero.
        assert_eq!(f32_to_s16(0.5), 16384);
        assert_eq!(f32_to_s16(-0.5), -16384);
        // Just under one LSB/2 rounds to zero.
        assert_eq!(f32_to_s16(0.4 / 32767.0), 0);
        assert_eq!(f32_to_s16(0.6 / 32767.0), 1);
    }

    #[test]
    fn encoding_names_round_trip() {
        for e in Encoding::ALL {
            assert_eq!(e.to_string().parse::<Encoding>().unwrap(), e);
        }
        assert_eq!("pcm_s16le".parse::<Encoding>().unwrap(), Encoding::PcmS16le);
        assert_eq!("mulaw".parse::<Encoding>().unwrap(), Encoding::Mulaw);
        let err = "PCM_S16LE".parse::<Encoding>().unwrap_err();
        assert_eq!(err.code(), "unsupported_encoding");
        assert_eq!(Encoding::default(), Encoding::PcmS16le);
    }

    #[test]
    fn encoded_lengths_and_bytes() {
        let s = [0.0, 1.0, -1.0];
        for e in Encoding::ALL {
            assert_eq!(e.encode(&s).len(), s.len() * e.bytes_per_sample(), "{e}");
        }
        assert_eq!(
            Encoding::PcmS16le.encode(&s),
            vec![0x00, 0x00, 0xff, 0x7f, 0x01, 0x80]
        );
        let f = Encoding::PcmF32le.encode(&[0.25, 3.0, f32::NAN]);
        assert_eq!(&f[0..4], &0.25f32.to_le_bytes());
        assert_eq!(&f[4..8], &1.0f32.to_le_bytes());
        assert_eq!(&f[8..12], &0.0f32.to_le_bytes());
        // G.711 silence: mu-law 0xFF, A-law 0xD5.
        assert_eq!(Encoding::Mulaw.encode(&[0.0]), vec![0xFF]);
        assert_eq!(Encoding::Alaw.encode(&[0.0]), vec![0xD5]);
    }
}
