//! The engine observer: turns the model thread's measurements into metrics.

use std::sync::Arc;
use std::time::Duration;

use vv_engine::EngineObserver;

use super::families::Metrics;

/// Records engine rounds, batch sizes, capacity, KV-cache bytes, queue waits and text starvation.
pub struct MetricsObserver(pub Arc<Metrics>);

impl EngineObserver for MetricsObserver {
    fn step(&self, elapsed: Duration, batch_size: usize) {
        self.0.engine_step_seconds.observe(elapsed.as_secs_f64());
        self.0.engine_batch_size.observe(batch_size as f64);
        self.0.capacity.round(elapsed, batch_size);
    }

    fn capacity(&self, capacity: usize, headroom: Option<f64>) {
        self.0
            .slots_total
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        if let Some(headroom) = headroom {
            self.0.capacity.realtime_headroom.set(headroom);
        }
    }

    fn kv_cache(&self, bytes: usize) {
        self.0
            .capacity
            .kv_cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    fn queue_wait(&self, wait: Duration) {
        self.0.queue_wait_seconds.observe(wait.as_secs_f64());
    }

    fn text_starved(&self) {
        self.0.text_starved_steps_total.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_families() {
        let m = Arc::new(Metrics::new().unwrap());
        let obs = MetricsObserver(Arc::clone(&m));
        obs.step(Duration::from_millis(40), 3);
        obs.queue_wait(Duration::from_millis(2));
        obs.text_starved();
        obs.text_starved();
        obs.kv_cache(3 << 20);
        assert_eq!(m.engine_step_seconds.get_sample_count(), 1);
        assert!((m.engine_step_seconds.get_sample_sum() - 0.04).abs() < 1e-9);
        assert!((m.engine_batch_size.get_sample_sum() - 3.0).abs() < 1e-12);
        assert_eq!(m.queue_wait_seconds.get_sample_count(), 1);
        assert_eq!(m.text_starved_steps_total.get(), 2);
        assert_eq!(m.capacity.kv_cache_bytes.get(), 3 << 20);
    }
}
