//! Admission by capacity: how many utterances the engine can advance in real time. The model
//! thread records the wall time of every round against its batch size (a moving average per
//! size, seeded by the warm-up's calibration rounds); the capacity is the largest batch whose
//! projected round time stays within the real-time budget (one frame of audio) times the
//! configured headroom. A fixed slot count bypasses the projection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

/// Weight of a new round in its batch size's moving average.
const EWMA_WEIGHT: f64 = 0.1;
/// A round counts as at most this many times its size's average.
const OUTLIER_FACTOR: f64 = 4.0;

/// How the number of slots is decided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum SlotPolicy {
    /// A fixed number of concurrent utterances.
    Fixed {
        /// The number.
        slots: usize,
    },
    /// As many as the device advances in real time: a new utterance is admitted only while the
    /// projected round time at the larger batch stays within `headroom` of the real-time
    /// budget; never fewer than one, never more than `limit`.
    Auto { headroom: f64, limit: usize },
}

/// Round times by batch size, and the capacity they give.
#[derive(Debug)]
pub struct CapacityModel {
    policy: SlotPolicy,
    /// Audio per frame: the real-time budget of one round.
    budget: Duration,
    rounds: Mutex<BTreeMap<usize, f64>>,
    /// Utterances in the last round.
    last_batch: AtomicUsize,
}

/// What `/api/info` shows of the capacity.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    /// `auto` or `fixed`.
    pub mode: &'static str,
    /// Utterances admitted at once now.
    pub capacity: usize,
    /// Real-time budget of a round (one frame of audio), ms.
    pub budget_ms: f64,
    /// Fraction of the budget a round may take (`auto` only).
    pub headroom: Option<f64>,
    /// Utterances in the last round.
    pub current_batch: usize,
    /// 1 − projected round time / budget at the current batch (`None` before any round).
    pub realtime_headroom: Option<f64>,
    /// Moving average of the round time by batch size, ms.
    pub round_ms_by_batch: BTreeMap<usize, f64>,
}

impl CapacityModel {
    /// A model for rounds of `budget` (one frame of audio) under `policy`.
    pub fn new(policy: SlotPolicy, budget: Duration) -> Self {
        Self {
            policy,
            budget,
            rounds: Mutex::new(BTreeMap::new()),
            last_batch: AtomicUsize::new(0),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> SlotPolicy {
        self.policy
    }

    /// The real-time budget of a round: one frame of audio.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Records a round of `batch` utterances that took `elapsed`. A round far slower than
    /// its size's average (a lazily captured graph, a host hiccup) counts as
    /// [`OUTLIER_FACTOR`] times the average, so one outlier cannot shut admission for long.
    pub fn observe(&self, batch: usize, elapsed: Duration) {
        if batch == 0 {
            return;
        }
        self.last_batch.store(batch, Ordering::Relaxed);
        let ms = elapsed.as_secs_f64() * 1e3;
        let mut rounds = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
        rounds
            .entry(batch)
            .and_modify(|avg| *avg += EWMA_WEIGHT * (ms.min(OUTLIER_FACTOR * *avg) - *avg))
            .or_insert(ms);
    }

    /// Seeds the round time of `batch` (a calibration measurement), replacing what was there.
    pub fn seed(&self, batch: usize, elapsed: Duration) {
        if batch > 0 {
            let mut rounds = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
            rounds.insert(batch, elapsed.as_secs_f64() * 1e3);
        }
    }

    /// The projected round time of `batch` utterances, ms: measured, interpolated between the
    /// nearest measured sizes, or extrapolated along the line through the two largest (never
    /// below the largest measured time); `None` before any round.
    pub fn projected_ms(&self, batch: usize) -> Option<f64> {
        let rounds = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
        project(&rounds, batch)
    }

    /// Utterances admitted at once now.
    pub fn capacity(&self) -> usize {
        match self.policy {
            SlotPolicy::Fixed { slots: n } => n.max(1),
            SlotPolicy::Auto { headroom, limit } => {
                let rounds = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
                let allowed = self.budget.as_secs_f64() * 1e3 * headroom;
                let fits = |b: usize| project(&rounds, b).is_some_and(|ms| ms <= allowed);
                // Round time grows with the batch: the last size that fits.
                let mut best = 1;
                for b in 1..=limit.max(1) {
                    if !fits(b) {
                        break;
                    }
                    best = b;
                }
                best
            }
        }
    }

    /// The capacity and what it rests on.
    pub fn report(&self) -> CapacityReport {
        let (mode, headroom) = match self.policy {
            SlotPolicy::Fixed { .. } => ("fixed", None),
            SlotPolicy::Auto { headroom, .. } => ("auto", Some(headroom)),
        };
        let current_batch = self.last_batch.load(Ordering::Relaxed);
        CapacityReport {
            mode,
            capacity: self.capacity(),
            budget_ms: self.budget.as_secs_f64() * 1e3,
            headroom,
            current_batch,
            realtime_headroom: self.headroom_at(current_batch),
            round_ms_by_batch: self
                .rounds
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// Real-time headroom at `batch`: 1 − projected round time / budget (negative when slower
    /// than real time); `None` before any round.
    pub fn headroom_at(&self, batch: usize) -> Option<f64> {
        let budget = self.budget.as_secs_f64() * 1e3;
        self.projected_ms(batch.max(1)).map(|ms| 1.0 - ms / budget)
    }
}

fn project(rounds: &BTreeMap<usize, f64>, batch: usize) -> Option<f64> {
    if let Some(&ms) = rounds.get(&batch) {
        return Some(ms);
    }
    let below = rounds.range(..batch).next_back();
    let above = rounds.range(batch..).next();
    match (below, above) {
        (Some((&b0, &t0)), Some((&b1, &t1))) => {
            let f = (batch - b0) as f64 / (b1 - b0) as f64;
            Some(t0 + f * (t1 - t0))
        }
        (None, Some((_, &t1))) => Some(t1),
        (Some((&b1, &t1)), None) => {
            // Beyond the largest measured size: along the last segment, or in proportion to
            // the batch with a single point (pessimistic: batching is sublinear).
            let slope = match rounds.range(..b1).next_back() {
                Some((&b0, &t0)) => ((t1 - t0) / (b1 - b0) as f64).max(0.0),
                None => t1 / b1 as f64,
            };
            Some(t1 + slope * (batch - b1) as f64)
        }
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_micros(133_333);

    fn auto() -> CapacityModel {
        CapacityModel::new(
            SlotPolicy::Auto {
                headroom: 0.7,
                limit: 256,
            },
            FRAME,
        )
    }

    #[test]
    fn the_capacity_is_the_largest_batch_projected_within_the_budget() {
        let m = auto();
        // Before any measurement one utterance is still admitted.
        assert_eq!(m.capacity(), 1);
        m.seed(1, Duration::from_millis(5));
        m.seed(64, Duration::from_millis(25));
        m.seed(128, Duration::from_millis(45));
        // 0.7 * 133.3 = 93.3 ms; beyond 128 the slope is 20 ms per 64 streams: 256 fit.
        assert_eq!(m.capacity(), 256, "limited to 256");
        let at = |b| m.projected_ms(b).unwrap();
        assert!((at(32) - (5.0 + 31.0 * 20.0 / 63.0)).abs() < 1e-9);
        // Slower large batches: 45 ms per 64 streams beyond 128 leave room for 33 more.
        m.seed(128, Duration::from_millis(70));
        let cap = m.capacity();
        assert_eq!(cap, 161);
        assert!(at(cap) <= 93.34 && at(cap + 1) > 93.33, "capacity {cap}");
    }

    #[test]
    fn a_device_slower_than_real_time_still_admits_one() {
        let m = auto();
        m.seed(1, Duration::from_millis(200));
        assert_eq!(m.capacity(), 1);
        assert!(m.headroom_at(1).unwrap() < 0.0);
        // One point: extrapolation is proportional.
        assert!((m.projected_ms(3).unwrap() - 600.0).abs() < 1e-9);
    }

    #[test]
    fn fixed_slots_ignore_the_round_times_and_observations_average() {
        let m = CapacityModel::new(SlotPolicy::Fixed { slots: 3 }, FRAME);
        m.observe(2, Duration::from_secs(10));
        assert_eq!(m.capacity(), 3);
        m.observe(2, Duration::from_millis(0));
        // 10 s, then one zero-length round at weight 0.1.
        assert!((m.projected_ms(2).unwrap() - 9000.0).abs() < 1e-6);
        // An outlier counts as four times the average.
        m.observe(2, Duration::from_secs(1000));
        assert!((m.projected_ms(2).unwrap() - (9000.0 + 0.1 * 27000.0)).abs() < 1e-6);
        assert_eq!(m.report().mode, "fixed");
    }

    #[test]
    fn slower_rounds_lower_the_capacity() {
        let m = auto();
        m.seed(1, Duration::from_millis(4));
        m.seed(8, Duration::from_millis(20));
        let before = m.capacity();
        for _ in 0..50 {
            m.observe(8, Duration::from_millis(60));
        }
        assert!(m.capacity() < before, "{} !< {before}", m.capacity());
    }
}
