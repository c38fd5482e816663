//! The report: each level's figures computed from its streams' records, printed as one JSON
//! document or as a table with one line per level.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::record::StreamRecord;
use super::stats::{audio_per_wall, median, minimum, percentile, stream_underruns};

/// How the server is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Protocol v1 over `GET /v1/tts/stream`.
    Websocket,
    /// `POST /v1/audio/speech`.
    Http,
}

/// The whole run (`--json` prints it).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The URL as given.
    pub url: String,
    pub mode: Mode,
    /// Seconds per level.
    pub seconds: u64,
    /// The client jitter buffer of the underrun rule.
    pub buffer_ms: u64,
    /// Characters of text per context or request.
    pub text_chars: usize,
    /// Whether the WebSocket contexts got their text word by word.
    pub word_by_word: bool,
    pub levels: Vec<LevelReport>,
}

/// One concurrency level.
#[derive(Debug, PartialEq, Serialize)]
pub struct LevelReport {
    /// Concurrent streams (sessions or request loops).
    pub streams: u32,
    /// Contexts (requests) started: completed, cut off at the deadline or ended by an error.
    pub contexts: usize,
    /// Seconds of audio received in all.
    pub audio_seconds: f64,
    /// First-audio percentiles over the contexts that produced audio (nearest rank).
    pub ttfa_p50_ms: Option<f64>,
    pub ttfa_p95_ms: Option<f64>,
    pub ttfa_p99_ms: Option<f64>,
    /// Streams in which at least one context would have starved a client with the buffer.
    pub underruns: usize,
    /// Per stream, audio seconds received per wall second (first send, i.e. the first
    /// WebSocket upgrade or HTTP request, to end): minimum and median over the streams.
    pub audio_per_wall_min: Option<f64>,
    pub audio_per_wall_median: Option<f64>,
    /// Errors by code.
    pub errors: BTreeMap<String, u64>,
}

impl LevelReport {
    /// The figures of a level of `streams` streams that recorded `records`.
    pub fn new(streams: u32, records: &[StreamRecord], buffer: Duration) -> Self {
        let ttfa_ms: Vec<f64> = records
            .iter()
            .flat_map(|s| &s.contexts)
            .filter_map(|c| c.ttfa())
            .map(|t| t.as_secs_f64() * 1e3)
            .collect();
        let per_wall: Vec<f64> = records.iter().filter_map(audio_per_wall).collect();
        let mut errors = BTreeMap::new();
        for (code, count) in records.iter().flat_map(|s| &s.errors) {
            *errors.entry(code.clone()).or_insert(0) += count;
        }
        let ms = |p: f64| percentile(&ttfa_ms, p).map(|v| round(v, 3));
        Self {
            streams,
            contexts: records.iter().map(|s| s.contexts.len()).sum(),
            audio_seconds: round(
                records.iter().map(StreamRecord::audio_seconds).sum::<f64>() + 0.0,
                3,
            ),
            ttfa_p50_ms: ms(50.0),
            ttfa_p95_ms: ms(95.0),
            ttfa_p99_ms: ms(99.0),
            underruns: records
                .iter()
                .filter(|s| stream_underruns(s, buffer))
                .count(),
            audio_per_wall_min: minimum(&per_wall).map(|v| round(v, 4)),
            audio_per_wall_median: median(&per_wall).map(|v| round(v, 4)),
            errors,
        }
    }
}

impl Report {
    /// A readable table: a title line, a header and one line per level.
    pub fn table(&self) -> String {
        let mode = match self.mode {
            Mode::Websocket => "WebSocket",
            Mode::Http => "HTTP",
        };
        let sent = if self.word_by_word {
            "word by word"
        } else {
            "whole"
        };
        let mut out = format!(
            "{mode} load test of {}: {} s per level, {} ms jitter buffer, {} characters sent {sent}\n",
            self.url, self.seconds, self.buffer_ms, self.text_chars
        );
        let _ = writeln!(
            out,
            "{:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}  errors",
            "streams",
            "contexts",
            "audio_s",
            "ttfa_p50",
            "ttfa_p95",
            "ttfa_p99",
            "underruns",
            "a/wall_min",
            "a/wall_med"
        );
        for level in &self.levels {
            let errors: Vec<String> = level
                .errors
                .iter()
                .map(|(code, count)| format!("{code}={count}"))
                .collect();
            let _ = writeln!(
                out,
                "{:>7} {:>8} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}  {}",
                level.streams,
                level.contexts,
                level.audio_seconds,
                cell(level.ttfa_p50_ms, "ms", 1),
                cell(level.ttfa_p95_ms, "ms", 1),
                cell(level.ttfa_p99_ms, "ms", 1),
                level.underruns,
                cell(level.audio_per_wall_min, "x", 2),
                cell(level.audio_per_wall_median, "x", 2),
                if errors.is_empty() {
                    "-".to_string()
                } else {
                    errors.join(" ")
                }
            );
        }
        out
    }
}

/// `value` rounded to `decimals` decimals (microseconds for milliseconds, and so on: the
/// report carries no false precision).
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// A value with its unit, or `-`.
fn cell(value: Option<f64>, unit: &str, decimals: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}{unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::loadtest::record::{ContextRecord, Frame};

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A stream with one context per (sent, first frame) pair, 1 s of audio each.
    fn stream(contexts: &[(u64, u64)], end: u64, errors: &[(&str, u64)]) -> StreamRecord {
        StreamRecord {
            first_send: contexts.first().map(|&(sent, _)| ms(sent)),
            end: ms(end),
            contexts: contexts
                .iter()
                .map(|&(sent, first)| ContextRecord {
                    sent: ms(sent),
                    sample_rate: 24_000,
                    frames: vec![Frame {
                        at: ms(first),
                        samples: 24_000,
                    }],
                })
                .collect(),
            errors: errors.iter().map(|&(c, n)| (c.to_string(), n)).collect(),
        }
    }

    #[test]
    fn a_level_sums_contexts_audio_and_errors_over_its_streams() {
        let records = [
            stream(&[(0, 100), (1000, 1200)], 2000, &[("overloaded", 2)]),
            stream(&[(0, 300)], 2000, &[("overloaded", 1), ("timeout", 1)]),
            StreamRecord {
                end: ms(2000),
                errors: [("connect_failed".to_string(), 1)].into(),
                ..StreamRecord::default()
            },
        ];
        let level = LevelReport::new(3, &records, ms(300));
        assert_eq!(level.streams, 3);
        assert_eq!(level.contexts, 3);
        assert_eq!(level.audio_seconds, 3.0);
        assert_eq!(level.ttfa_p50_ms, Some(200.0));
        assert_eq!(level.ttfa_p99_ms, Some(300.0));
        assert_eq!(level.underruns, 0);
        // 2 s of audio in 2 s, 1 s in 2 s; the stream that never sent is left out.
        assert_eq!(level.audio_per_wall_min, Some(0.5));
        assert_eq!(level.audio_per_wall_median, Some(0.75));
        let errors: Vec<(&str, u64)> = level.errors.iter().map(|(c, &n)| (c.as_str(), n)).collect();
        assert_eq!(
            errors,
            [("connect_failed", 1), ("overloaded", 3), ("timeout", 1)]
        );
    }

    #[test]
    fn a_level_without_audio_has_null_latencies_and_the_json_names_every_field() {
        let level = LevelReport::new(1, &[StreamRecord::default()], ms(300));
        let report = Report {
            url: "http://h:1".into(),
            mode: Mode::Http,
            seconds: 3,
            buffer_ms: 300,
            text_chars: 96,
            word_by_word: false,
            levels: vec![level],
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["mode"], "http");
        assert_eq!(
            (json["text_chars"].as_u64(), json["word_by_word"].as_bool()),
            (Some(96), Some(false))
        );
        let level = &json["levels"][0];
        for null in [
            "ttfa_p50_ms",
            "ttfa_p95_ms",
            "ttfa_p99_ms",
            "audio_per_wall_min",
            "audio_per_wall_median",
        ] {
            assert!(level[null].is_null(), "{null}: {level}");
        }
        assert_eq!(level["errors"], serde_json::json!({}));
        assert_eq!(level["streams"], 1);
        assert_eq!(level["underruns"], 0);
        let table = report.table();
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(table.lines().nth(2).unwrap().trim_start().starts_with('1'));
    }
}
