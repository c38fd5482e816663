//! Property tests: G.711 round trips, s16 clipping, frame header and WAV header round trips,
//! and chunking-independence of the streaming resampler.

mod common;

use proptest::prelude::*;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};
use vv_audio::g711::{alaw_to_linear, linear_to_alaw, linear_to_mulaw, mulaw_to_linear};
use vv_audio::pcm::{f32_to_s16, s16_to_f32};
use vv_audio::{
    resample_all, wav_header, Encoding, FrameHeader, StreamResampler, SUPPORTED_SAMPLE_RATES,
};

fn rate_strategy() -> impl Strategy<Value = u32> {
    proptest::sample::select(SUPPORTED_SAMPLE_RATES.to_vec())
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// f32 -> mu-law -> f32 stays within the G.711 bound: half a segment step plus the two
    /// LSBs mu-law drops, i.e. |err| <= |x|/32 + 9 in 16-bit units, for |x| <= 32635 (the
    /// mu-law clip point); beyond it the value saturates at +-32124.
    #[test]
    fn mulaw_round_trip_within_g711_bound(x in -1.0f32..=1.0) {
        let s = i32::from(f32_to_s16(x));
        let back = i32::from(mulaw_to_linear(linear_to_mulaw(f32_to_s16(x))));
        if s.abs() <= 32635 {
            prop_assert!((back - s).abs() <= s.abs() / 32 + 9, "x={x} s={s} back={back}");
        } else {
            prop_assert_eq!(back, 32124 * s.signum());
        }
        prop_assert!(back.signum() == s.signum() || back == 0 || s.abs() < 8);
    }

    /// f32 -> A-law -> f32 within |err| <= |x|/32 + 16 (half a step plus three dropped LSBs).
    #[test]
    fn alaw_round_trip_within_g711_bound(x in -1.0f32..=1.0) {
        let s = i32::from(f32_to_s16(x));
        let back = i32::from(alaw_to_linear(linear_to_alaw(f32_to_s16(x))));
        prop_assert!((back - s).abs() <= s.abs() / 32 + 16, "x={x} s={s} back={back}");
    }

    /// Companding is idempotent: decoding then re-encoding any code gives the same level.
    #[test]
    fn g711_codes_are_stable(x in any::<i16>()) {
        let mu = linear_to_mulaw(x);
        prop_assert_eq!(mulaw_to_linear(linear_to_mulaw(mulaw_to_linear(mu))), mulaw_to_linear(mu));
        let a = linear_to_alaw(x);
        prop_assert_eq!(linear_to_alaw(alaw_to_linear(a)), a);
    }

    /// s16 conversion clips to +-32767 and is within half an LSB (plus f32 rounding) inside.
    #[test]
    fn s16_clips_and_rounds(x in -4.0f32..4.0) {
        let s = f32_to_s16(x);
        if x >= 1.0 {
            prop_assert_eq!(s, 32767);
        } else if x <= -1.0 {
            prop_assert_eq!(s, -32767);
        } else {
            let exact = f64::from(x) * 32767.0;
            prop_assert!((f64::from(s) - exact).abs() <= 0.5 + 1e-3, "x={x} s={s}");
        }
        prop_assert!(s != i16::MIN);
        // Round trip through the inverse scaling is within one LSB of the clipped input.
        prop_assert!((s16_to_f32(s) - x.clamp(-1.0, 1.0)).abs() <= 1.0 / 32767.0);
    }

    /// Every field of the binary frame header survives encode -> decode, with any payload.
    #[test]
    fn frame_header_round_trip(
        flags in any::<u16>(),
        context_num in any::<u32>(),
        seq in any::<u32>(),
        sample_offset in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let h = FrameHeader { flags, context_num, seq, sample_offset };
        let msg = h.frame(&payload);
        prop_assert_eq!(msg.len(), 16 + payload.len());
        prop_assert_eq!((msg[0], msg[1]), (1, 1));
        let (back, rest) = FrameHeader::decode(&msg).unwrap();
        prop_assert_eq!(back, h);
        prop_assert_eq!(rest, &payload[..]);
        prop_assert_eq!(back.is_last(), flags & 1 != 0);
        prop_assert_eq!(back.is_first(), flags & 2 != 0);
    }

    /// WAV header fields are consistent for every encoding, rate and (known) length.
    #[test]
    fn wav_header_fields(
        enc_idx in 0usize..4,
        rate in rate_strategy(),
        len in proptest::option::of(0u64..100_000_000),
    ) {
        let enc = Encoding::ALL[enc_idx];
        let h = wav_header(enc, rate, len).unwrap();
        let bps = enc.bytes_per_sample() as u32;
        let pcm = enc == Encoding::PcmS16le;
        prop_assert_eq!(h.len(), if pcm { 44 } else { 58 });
        prop_assert_eq!(&h[0..4], b"RIFF");
        prop_assert_eq!(&h[8..16], b"WAVEfmt ");
        prop_assert_eq!(u16_at(&h, 22), 1, "mono");
        prop_assert_eq!(u32_at(&h, 24), rate);
        prop_assert_eq!(u32_at(&h, 28), rate * bps, "byte rate");
        prop_assert_eq!(u32::from(u16_at(&h, 32)), bps, "block align");
        prop_assert_eq!(u32::from(u16_at(&h, 34)), bps * 8, "bits per sample");
        let data_at = h.len() - 8;
        prop_assert_eq!(&h[data_at..data_at + 4], b"data");
        match len {
            None => {
                prop_assert_eq!(u32_at(&h, 4), u32::MAX);
                prop_assert_eq!(u32_at(&h, data_at + 4), u32::MAX);
            }
            Some(n) => {
                let padded = n + (n & 1);
                prop_assert_eq!(u64::from(u32_at(&h, 4)), h.len() as u64 - 8 + padded);
                prop_assert_eq!(u64::from(u32_at(&h, data_at + 4)), n);
                if !pcm {
                    prop_assert_eq!(u64::from(u32_at(&h, 46)), n / u64::from(bps), "fact");
                }
            }
        }
    }

    /// Streaming in arbitrary chunks gives bit-identically the output of one whole-signal call
    /// (tolerance 0: the same FFT blocks are processed in the same order either way).
    #[test]
    fn streaming_resample_equals_whole(
        rate in rate_strategy(),
        len in 0usize..8_000,
        sizes in proptest::collection::vec(1usize..4_000, 1..6),
    ) {
        let input = common::speech_like(len);
        let whole = resample_all(&input, rate).unwrap();
        let mut r = StreamResampler::new(rate).unwrap();
        let mut streamed = Vec::new();
        for chunk in common::chunked(&input, &sizes) {
            streamed.extend(r.push(chunk).unwrap());
        }
        streamed.extend(r.finish().unwrap());
        prop_assert_eq!(streamed.len(), whole.len());
        prop_assert!(streamed == whole, "rate {} len {}: streamed output differs", rate, len);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Our streaming wrapper matches rubato's own whole-clip `process_all` (same FFT settings):
    /// same length and samples within 1e-6.
    #[test]
    fn resample_matches_rubato_process_all(rate in rate_strategy(), len in 1usize..6_000) {
        prop_assume!(rate != 24_000);
        let input = common::speech_like(len);
        let ours = resample_all(&input, rate).unwrap();
        let mut fft = Fft::<f32>::new_custom(
            24_000, rate as usize, 256, 1, 1, WindowFunction::BlackmanHarris2, FixedSync::Both,
        ).unwrap();
        let adapter = InterleavedSlice::new(&input[..], 1, len).unwrap();
        let theirs = fft.process_all(&adapter, len, None).unwrap().take_data();
        prop_assert_eq!(ours.len(), theirs.len());
        let max_diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        prop_assert!(max_diff <= 1e-6, "max diff {}", max_diff);
    }
}
