//! The statistics of a level, as pure functions: nearest-rank percentiles, the jitter-buffer
//! underrun rule, audio seconds per wall second, minimum and median.

use std::time::Duration;

use super::record::{ContextRecord, Frame, StreamRecord};

/// The nearest-rank `p`-th percentile (0 < p <= 100) of `values`: the smallest value such
/// that at least p % of the values are at most it; `None` for no values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p * sorted.len() as f64 / 100.0).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// The median (the mean of the two middle values for an even count); `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The smallest value; `None` for no values.
pub fn minimum(values: &[f64]) -> Option<f64> {
    values.iter().copied().min_by(f64::total_cmp)
}

/// Whether a client that starts playing `buffer` after the first frame arrives would starve:
/// a frame carrying samples [a, b) of the context that arrives at t underruns when
/// t > first arrival + buffer + a / sample_rate (frames without samples cannot starve it).
pub fn underruns(frames: &[Frame], sample_rate: u32, buffer: Duration) -> bool {
    let Some(first) = frames.first() else {
        return false;
    };
    // Compared exactly in nanoseconds x sample rate: t * rate > (start) * rate + a * 1e9.
    let rate = u128::from(sample_rate.max(1));
    let start = (first.at + buffer).as_nanos() * rate;
    let mut a: u128 = 0;
    for frame in frames {
        if frame.samples > 0 && frame.at.as_nanos() * rate > start + a * 1_000_000_000 {
            return true;
        }
        a += u128::from(frame.samples);
    }
    false
}

/// Whether any context of the stream underruns with a jitter buffer of `buffer`.
pub fn stream_underruns(stream: &StreamRecord, buffer: Duration) -> bool {
    stream
        .contexts
        .iter()
        .any(|c: &ContextRecord| underruns(&c.frames, c.sample_rate, buffer))
}

/// Seconds of audio the stream received per second of its wall time (first send to end);
/// `None` for a stream that never sent or had no wall time.
pub fn audio_per_wall(stream: &StreamRecord) -> Option<f64> {
    let wall = stream.end.checked_sub(stream.first_send?)?.as_secs_f64();
    (wall > 0.0).then(|| stream.audio_seconds() / wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 24_000;
    const BUFFER: Duration = Duration::from_millis(300);

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Frames of 3200 samples (133.33 ms) arriving at the given milliseconds.
    fn frames(arrivals_ms: &[u64]) -> Vec<Frame> {
        arrivals_ms
            .iter()
            .map(|&t| Frame {
                at: ms(t),
                samples: 3200,
            })
            .collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(5.0));
        assert_eq!(percentile(&values, 95.0), Some(10.0));
        assert_eq!(percentile(&values, 99.0), Some(10.0));
        assert_eq!(percentile(&values, 10.0), Some(1.0));
        assert_eq!(percentile(&values, 11.0), Some(2.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 95.0), Some(95.0));
        assert_eq!(percentile(&hundred, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.5], 50.0), Some(7.5));
        assert_eq!(percentile(&[7.5], 99.0), Some(7.5));
        assert_eq!(percentile(&[2.0, 1.0], 50.0), Some(1.0));
    }

    #[test]
    fn percentiles_of_nothing_are_none() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[], 99.0), None);
    }

    #[test]
    fn a_frame_on_time_or_exactly_at_its_deadline_does_not_underrun() {
        // Frame k is due at 100 ms + 300 ms + k x 133.33 ms.
        assert!(!underruns(&frames(&[100, 150, 200, 300]), RATE, BUFFER));
        // Exactly at the deadline: frame 1 due at 400 + 133.333... ms; with 2400 samples per
        // frame (100 ms) the deadlines are whole milliseconds.
        let exact = [
            Frame {
                at: ms(100),
                samples: 2400,
            },
            Frame {
                at: ms(500),
                samples: 2400,
            },
            Frame {
                at: ms(600),
                samples: 2400,
            },
        ];
        assert!(!underruns(&exact, RATE, BUFFER));
    }

    #[test]
    fn a_frame_late_by_one_millisecond_underruns() {
        let late = [
            Frame {
                at: ms(100),
                samples: 2400,
            },
            Frame {
                at: ms(501),
                samples: 2400,
            },
        ];
        assert!(underruns(&late, RATE, BUFFER));
        // The same with no buffer at all: frame 1 is due 100 ms after the first.
        let tight = [
            Frame {
                at: ms(0),
                samples: 2400,
            },
            Frame {
                at: ms(100),
                samples: 2400,
            },
        ];
        assert!(!underruns(&tight, RATE, Duration::ZERO));
        assert!(underruns(
            &[
                tight[0],
                Frame {
                    at: ms(101),
                    ..tight[1]
                }
            ],
            RATE,
            Duration::ZERO
        ));
    }

    #[test]
    fn a_late_frame_after_the_buffer_ran_dry_underruns() {
        // The first three frames arrive at once (400 ms of audio buffered on top of 300 ms);
        // the fourth is due at 300 + 400 = 700 ms but comes at 900 ms.
        assert!(underruns(&frames(&[0, 0, 0, 900]), RATE, BUFFER));
        // Arriving in time it would have been fine, and so would a slow but buffered tail.
        assert!(!underruns(&frames(&[0, 0, 0, 700]), RATE, BUFFER));
        assert!(!underruns(&frames(&[0, 400, 533, 666, 800]), RATE, BUFFER));
    }

    #[test]
    fn frames_without_samples_never_underrun_and_no_frames_is_no_underrun() {
        let mut f = frames(&[0, 100]);
        f.push(Frame {
            at: ms(60_000),
            samples: 0,
        });
        assert!(!underruns(&f, RATE, BUFFER));
        assert!(!underruns(&[], RATE, BUFFER));
    }

    #[test]
    fn the_rule_counts_in_samples_of_the_context_rate() {
        // 800 samples at 8 kHz = 100 ms, like 2400 at 24 kHz.
        let f = [
            Frame {
                at: ms(0),
                samples: 800,
            },
            Frame {
                at: ms(400),
                samples: 800,
            },
        ];
        assert!(!underruns(&f, 8000, BUFFER));
        assert!(underruns(
            &[
                f[0],
                Frame {
                    at: ms(401),
                    ..f[1]
                }
            ],
            8000,
            BUFFER
        ));
    }

    #[test]
    fn a_stream_underruns_when_any_of_its_contexts_does() {
        let context = |sent: u64, arrivals: &[u64]| ContextRecord {
            sent: ms(sent),
            sample_rate: RATE,
            frames: frames(arrivals),
        };
        let mut stream = StreamRecord {
            contexts: vec![context(0, &[100, 200]), context(1000, &[1100, 1200])],
            ..StreamRecord::default()
        };
        assert!(!stream_underruns(&stream, BUFFER));
        // Each context has its own playback start: a late first frame is no underrun.
        stream.contexts.push(context(5000, &[9000, 9100]));
        assert!(!stream_underruns(&stream, BUFFER));
        stream.contexts.push(context(10_000, &[10_100, 10_600]));
        assert!(stream_underruns(&stream, BUFFER));
        assert!(!stream_underruns(&stream, ms(1000)));
    }

    #[test]
    fn audio_per_wall_second_and_its_minimum_and_median() {
        let stream = |first_send: Option<u64>, end: u64, samples: u64| StreamRecord {
            first_send: first_send.map(ms),
            end: ms(end),
            contexts: vec![ContextRecord {
                sent: ms(0),
                sample_rate: RATE,
                frames: vec![Frame { at: ms(1), samples }],
            }],
            ..StreamRecord::default()
        };
        // 4 s of audio in 2 s of wall time, and 1 s in 2 s.
        assert_eq!(audio_per_wall(&stream(Some(1000), 3000, 96_000)), Some(2.0));
        assert_eq!(audio_per_wall(&stream(Some(0), 2000, 24_000)), Some(0.5));
        assert_eq!(audio_per_wall(&stream(None, 3000, 0)), None);
        assert_eq!(audio_per_wall(&stream(Some(3000), 3000, 0)), None);

        let values = [2.0, 0.5, 1.0, 4.0];
        assert_eq!(minimum(&values), Some(0.5));
        assert_eq!(median(&values), Some(1.5));
        assert_eq!(median(&values[..3]), Some(1.0));
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(minimum(&[]), None);
        assert_eq!(median(&[]), None);
    }
}
