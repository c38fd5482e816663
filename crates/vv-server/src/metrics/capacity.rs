//! Capacity metrics: round time by batch size, the current batch, the real-time headroom,
//! admissions by outcome (admitted or refused for want of a slot), and the active utterances'
//! KV-cache bytes.

use std::time::Duration;

use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use vv_model::graphs::bucket;

use super::families::register;

/// Round time, in seconds.
const ROUND_BUCKETS: &[f64] = &[
    0.002, 0.004, 0.008, 0.016, 0.025, 0.05, 0.075, 0.1, 0.133, 0.2, 0.4, 0.8, 1.6,
];

/// The capacity families.
pub struct CapacityMetrics {
    /// Duration of one engine round by batch-size bucket (`batch` = the bucket's upper size).
    pub round_seconds: HistogramVec,
    /// Utterances advanced in the last round.
    pub batch_current: IntGauge,
    /// 1 − round time / frame duration at the current batch size (negative: slower than real
    /// time).
    pub realtime_headroom: Gauge,
    /// Utterances admitted and refused (`outcome` = `admitted` | `refused`).
    pub admissions_total: IntCounterVec,
    /// Bytes of KV cache the active utterances own.
    pub kv_cache_bytes: IntGauge,
}

impl CapacityMetrics {
    /// Creates and registers the families.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let opts = HistogramOpts::new(
            "engine_round_seconds",
            "Duration of one engine round, by batch-size bucket",
        )
        .buckets(ROUND_BUCKETS.to_vec());
        Ok(Self {
            round_seconds: register(r, HistogramVec::new(opts, &["batch"])?)?,
            batch_current: register(
                r,
                IntGauge::new(
                    "engine_batch_current",
                    "Utterances advanced in the last round",
                )?,
            )?,
            realtime_headroom: register(
                r,
                Gauge::new(
                    "realtime_headroom",
                    "1 - round time / frame duration at the current batch size",
                )?,
            )?,
            admissions_total: register(
                r,
                IntCounterVec::new(
                    Opts::new("admissions_total", "Utterances admitted or refused"),
                    &["outcome"],
                )?,
            )?,
            kv_cache_bytes: register(
                r,
                IntGauge::new(
                    "kv_cache_bytes",
                    "Bytes of KV cache the active utterances own (voice prompts they share \
                     not counted)",
                )?,
            )?,
        })
    }

    /// Records a round of `batch` utterances.
    pub fn round(&self, elapsed: Duration, batch: usize) {
        let label = bucket(batch).map_or_else(|| "more".to_string(), |b| b.to_string());
        self.round_seconds
            .with_label_values(&[label.as_str()])
            .observe(elapsed.as_secs_f64());
        self.batch_current
            .set(i64::try_from(batch).unwrap_or(i64::MAX));
    }

    /// Brings the admission counters up to the engine's totals.
    pub fn admissions(&self, admitted: u64, refused: u64) {
        for (outcome, total) in [("admitted", admitted), ("refused", refused)] {
            let counter = self.admissions_total.with_label_values(&[outcome]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }
}
