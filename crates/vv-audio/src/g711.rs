//! ITU-T G.711 mu-law and A-law companding (the classic segment-table algorithms).
//!
//! Encoders take 16-bit linear PCM; mu-law uses its top 14 bits, A-law its top 13 bits, as
//! the standard specifies. Decoders return the segment midpoint, scaled back to 16 bits.

/// Upper bounds (inclusive) of the eight mu-law segments, on the biased 14-bit magnitude.
const MULAW_SEG_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// Upper bounds (inclusive) of the eight A-law segments, on the 13-bit magnitude.
const ALAW_SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
/// mu-law bias (0x84 in 16-bit units, 0x21 in 14-bit units).
const MULAW_BIAS: i32 = 0x84;
/// Largest 14-bit magnitude mu-law can code before clipping.
const MULAW_CLIP: i32 = 8159;

/// Index of the first segment whose end is >= `value`, or 8 if none is.
fn segment(value: i32, ends: &[i32; 8]) -> usize {
    ends.iter()
        .position(|&end| value <= end)
        .unwrap_or(ends.len())
}

/// Encodes one 16-bit linear sample as G.711 mu-law.
pub fn linear_to_mulaw(sample: i16) -> u8 {
    let mut value = i32::from(sample) >> 2;
    let mask: u8 = if value < 0 {
        value = -value;
        0x7F
    } else {
        0xFF
    };
    value = value.min(MULAW_CLIP) + (MULAW_BIAS >> 2);
    let seg = segment(value, &MULAW_SEG_END);
    if seg >= MULAW_SEG_END.len() {
        // Only the clipped maximum (8159 + 33 = 0x2000) lands here: the largest code.
        return 0x7F ^ mask;
    }
    let code = ((seg as i32) << 4) | ((value >> (seg + 1)) & 0x0F);
    (code as u8) ^ mask
}

/// Decodes one G.711 mu-law byte to 16-bit linear PCM.
pub fn mulaw_to_linear(code: u8) -> i16 {
    let u = i32::from(!code);
    let mut t = ((u & 0x0F) << 3) + MULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    let value = if u & 0x80 != 0 {
        MULAW_BIAS - t
    } else {
        t - MULAW_BIAS
    };
    // Range is [-32124, 32124].
    value as i16
}

/// Encodes one 16-bit linear sample as G.711 A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut value = i32::from(sample) >> 3;
    let mask: u8 = if value >= 0 {
        0xD5
    } else {
        value = -value - 1;
        0x55
    };
    // 13-bit magnitude is at most 0xFFF, so the segment is always < 8.
    let seg = segment(value, &ALAW_SEG_END);
    let mantissa = if seg < 2 {
        (value >> 1) & 0x0F
    } else {
        (value >> seg) & 0x0F
    };
    (((seg as i32) << 4 | mantissa) as u8) ^ mask
}

/// Decodes one G.711 A-law byte to 16-bit linear PCM.
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = i32::from(code ^ 0x55);
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    // Range is [-32256, 32256].
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// G.711 error bound for mu-law on |x| <= 32635 (no clipping): half a quantisation step of
    /// the sample's segment plus the 2 dropped LSBs, which is below |x|/32 + 9 in 16-bit units.
    fn mulaw_bound(x: i32) -> i32 {
        x.abs() / 32 + 9
    }

    /// Same for A-law: half a step (>= 2 LSB of 13 bits) plus the 3 dropped LSBs: |x|/32 + 16.
    fn alaw_bound(x: i32) -> i32 {
        x.abs() / 32 + 16
    }

    #[test]
    fn silence_codes() {
        assert_eq!(linear_to_mulaw(0), 0xFF);
        assert_eq!(mulaw_to_linear(0xFF), 0);
        assert_eq!(mulaw_to_linear(0x7F), 0);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
    }

    #[test]
    fn extremes_match_the_standard_tables() {
        assert_eq!(linear_to_mulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_mulaw(i16::MIN), 0x00);
        assert_eq!(mulaw_to_linear(0x80), 32124);
        assert_eq!(mulaw_to_linear(0x00), -32124);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn every_code_is_a_fixed_point() {
        for code in 0..=255u8 {
            let lin = mulaw_to_linear(code);
            let again = linear_to_mulaw(lin);
            // +0 and -0 (0xFF / 0x7F) both decode to 0, which encodes as 0xFF.
            if code == 0x7F {
                assert_eq!(again, 0xFF);
            } else {
                assert_eq!(again, code, "mu-law code {code:#04x} -> {lin}");
            }
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#04x}"
            );
        }
    }

    #[test]
    fn exhaustive_error_bounds_and_monotonicity() {
        let mut prev_mu = i16::MIN;
        let mut prev_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let xi = i32::from(x);
            let mu = mulaw_to_linear(linear_to_mulaw(x));
            let a = alaw_to_linear(linear_to_alaw(x));
            if xi.abs() <= 32635 {
                assert!(
                    (i32::from(mu) - xi).abs() <= mulaw_bound(xi),
                    "mu {x} -> {mu}"
                );
            }
            assert!((i32::from(a) - xi).abs() <= alaw_bound(xi), "A {x} -> {a}");
            assert!(mu >= prev_mu && a >= prev_a, "non-monotonic at {x}");
            prev_mu = mu;
            prev_a = a;
        }
    }
}
