//! The official web demo's wire formats: PCM16 chunks with per-chunk peak normalisation and
//! int16 truncation, and JSON log events stamped in UTC+8.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Converts one float chunk as the demo does: if its peak |x| exceeds 1, divide the whole
/// chunk by the peak; clip to [-1, 1]; multiply by 32767; truncate toward zero to int16;
/// little-endian bytes. NaN becomes 0.
pub fn demo_pcm16(samples: &[f32]) -> Vec<u8> {
    let peak = samples
        .iter()
        .filter(|x| x.is_finite())
        .fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if peak > 1.0 { 1.0 / peak } else { 1.0 };
    samples
        .iter()
        .flat_map(|&x| {
            let v = ((x * scale).clamp(-1.0, 1.0) * 32767.0) as i16;
            v.to_le_bytes()
        })
        .collect()
}

/// A log event: `{"type":"log","event":E,"data":{...},"timestamp":"YYYY-MM-DD HH:MM:SS.mmm"}`.
pub fn log_event(event: &str, data: Value) -> String {
    json!({
        "type": "log",
        "event": event,
        "data": data,
        "timestamp": demo_timestamp(SystemTime::now()),
    })
    .to_string()
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC+8, the demo's timestamp format.
pub fn demo_timestamp(at: SystemTime) -> String {
    let millis = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()) + 8 * 3_600_000;
    let (days, ms_of_day) = (millis / 86_400_000, millis % 86_400_000);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    let secs = ms_of_day / 1000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn samples(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn pcm16_truncates_and_normalises() {
        assert_eq!(
            samples(&demo_pcm16(&[0.0, 0.5, -0.5, 1.0, -1.0])),
            [0, 16383, -16383, 32767, -32767]
        );
        // Peak 2.0: the whole chunk is halved.
        assert_eq!(
            samples(&demo_pcm16(&[2.0, 1.0, -0.5])),
            [32767, 16383, -8191]
        );
        assert_eq!(samples(&demo_pcm16(&[f32::NAN, 0.25])), [0, 8191]);
    }

    #[test]
    fn timestamps_are_utc_plus_8() {
        assert_eq!(demo_timestamp(UNIX_EPOCH), "1970-01-01 08:00:00.000");
        // 2024-02-29T17:30:05.123Z = 1709227805123 ms
        let t = UNIX_EPOCH + Duration::from_millis(1_709_227_805_123);
        assert_eq!(demo_timestamp(t), "2024-03-01 01:30:05.123");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_000); // 2000-02-29T00:00Z
        assert_eq!(demo_timestamp(t), "2000-02-29 08:00:00.000");
    }

    #[test]
    fn log_events_have_the_demo_shape() {
        let v: Value =
            serde_json::from_str(&log_event("backend_busy", json!({"message": "x"}))).unwrap();
        assert_eq!(v["type"], "log");
        assert_eq!(v["event"], "backend_busy");
        assert_eq!(v["data"]["message"], "x");
        assert_eq!(v["timestamp"].as_str().unwrap().len(), 23);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Two bytes per sample; samples within [-1, 1] keep their sign and never exceed 32767.
        #[test]
        fn pcm16_length_and_range(x in prop::collection::vec(-4.0f32..4.0, 0..64)) {
            let out = samples(&demo_pcm16(&x));
            prop_assert_eq!(out.len(), x.len());
            let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, b) in x.iter().zip(&out) {
                prop_assert!(*b > i16::MIN);
                if peak <= 1.0 {
                    prop_assert_eq!(*b, (a * 32767.0) as i16);
                }
            }
        }

        /// Day arithmetic agrees with counting days forward.
        #[test]
        fn civil_dates_are_consecutive(days in 0i64..80_000) {
            let (y, m, d) = civil_from_days(days);
            let (y2, m2, d2) = civil_from_days(days + 1);
            let next_day = (y2, m2, d2) == (y, m, d + 1);
            let next_month = d2 == 1 && ((y2, m2) == (y, m + 1) || (y2, m2, m) == (y + 1, 1, 12));
            prop_assert!(next_day || next_month);
        }
    }
}
