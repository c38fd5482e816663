//! The metric families of protocol.md, registered once in a private registry.

use std::sync::Arc;
use std::time::Instant;

use prometheus::core::Collector;
use prometheus::{
    Counter, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use vv_engine::EngineInfo;

use super::capacity::CapacityMetrics;
use super::connections::ConnectionMetrics;
use super::context::ContextRecorder;
use super::device::DeviceGauges;

/// Time to first audio, in seconds.
const TTFA_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];
/// Wait between admission and the first engine step, in seconds.
const QUEUE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Request (or text) arrival to an utterance's stage, in seconds.
const STAGE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0,
    16.0, 32.0, 64.0,
];
/// Duration of one engine step, in seconds.
const STEP_BUCKETS: &[f64] = &[
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.133, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4,
];
/// Utterances advanced together in one step.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 64.0, 96.0, 128.0, 192.0, 256.0, 512.0,
];
/// Real-time factor (generation time / audio duration).
const RTF_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0];

/// Every metric the service exports. Fields are public so that other parts of the server
/// (the WebSocket protocol) record into the same families.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by matched route and status code.
    pub requests_total: IntCounterVec,
    /// Open WebSocket sessions.
    pub ws_sessions_active: IntGauge,
    /// Utterances being synthesised.
    pub contexts_active: IntGauge,
    /// Utterances ended, by outcome (`done`, `cancelled`, `failed`).
    pub contexts_total: IntCounterVec,
    /// First text received -> first audio byte written.
    pub ttfa_seconds: Histogram,
    /// Admission -> first engine step.
    pub queue_wait_seconds: Histogram,
    /// Request (or first text) arrival -> each stage of an utterance (`stage` label: see
    /// [`crate::trace::Stage`]).
    pub stage_seconds: HistogramVec,
    /// How long a WebSocket session left client messages unread for a context's first audio
    /// (`first_audio_hold_ms`), one observation per hold.
    pub first_audio_hold_seconds: Histogram,
    /// Duration of one engine step.
    pub engine_step_seconds: Histogram,
    /// Utterances per engine step.
    pub engine_batch_size: Histogram,
    /// Utterance slots in use.
    pub slots_used: IntGauge,
    /// Utterance slots in all.
    pub slots_total: IntGauge,
    /// Real-time factor of finished utterances.
    pub rtf: Histogram,
    /// Seconds of audio produced.
    pub audio_seconds_total: Counter,
    /// Engine steps an utterance waited for text.
    pub text_starved_steps_total: IntCounter,
    /// Errors by stable code.
    pub errors_total: IntCounterVec,
    /// Seconds spent loading the model.
    pub model_load_seconds: Gauge,
    /// Seconds spent in the warmup generation.
    pub warmup_seconds: Gauge,
    /// Constant 1, labelled with version, device and dtype.
    pub build_info: IntGaugeVec,
    /// Tasks alive on the async runtime (refreshed at scrape; a leak shows as growth).
    pub runtime_alive_tasks: IntGauge,
    /// Live heap bytes (allocated, not yet freed; jemalloc and glibc builds), read at scrape time.
    pub heap_in_use_bytes: IntGauge,
    /// Device memory and utilisation gauges.
    pub device: DeviceGauges,
    /// Round times by batch size, headroom, admissions.
    pub capacity: CapacityMetrics,
    /// Open and refused client connections.
    pub connections: ConnectionMetrics,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("vibevoice".to_string()), None)?;
        let r = &registry;
        Ok(Self {
            requests_total: register(
                r,
                IntCounterVec::new(
                    Opts::new("requests_total", "HTTP requests by route and status"),
                    &["route", "status"],
                )?,
            )?,
            ws_sessions_active: register(
                r,
                IntGauge::new("ws_sessions_active", "Open WebSocket sessions")?,
            )?,
            contexts_active: register(
                r,
                IntGauge::new("contexts_active", "Utterances being synthesised")?,
            )?,
            contexts_total: register(
                r,
                IntCounterVec::new(
                    Opts::new("contexts_total", "Utterances ended, by outcome"),
                    &["outcome"],
                )?,
            )?,
            ttfa_seconds: histogram(
                r,
                "ttfa_seconds",
                "First text received to first audio byte written",
                TTFA_BUCKETS,
            )?,
            queue_wait_seconds: histogram(
                r,
                "queue_wait_seconds",
                "Wait between admission and the first engine step",
                QUEUE_BUCKETS,
            )?,
            stage_seconds: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "stage_seconds",
                        "Request (or first text) arrival to each stage of an utterance",
                    )
                    .buckets(STAGE_BUCKETS.to_vec()),
                    &["stage"],
                )?,
            )?,
            first_audio_hold_seconds: histogram(
                r,
                "first_audio_hold_seconds",
                "Time a WebSocket session left client messages unread for a context's first audio",
                STAGE_BUCKETS,
            )?,
            engine_step_seconds: histogram(
                r,
                "engine_step_seconds",
                "Duration of one engine step",
                STEP_BUCKETS,
            )?,
            engine_batch_size: histogram(
                r,
                "engine_batch_size",
                "Utterances advanced in one engine step",
                BATCH_BUCKETS,
            )?,
            slots_used: register(r, IntGauge::new("slots_used", "Utterance slots in use")?)?,
            slots_total: register(r, IntGauge::new("slots_total", "Utterance slots in all")?)?,
            rtf: histogram(
                r,
                "rtf",
                "Real-time factor (generation time / audio duration) of finished utterances",
                RTF_BUCKETS,
            )?,
            audio_seconds_total: register(
                r,
                Counter::new("audio_seconds_total", "Seconds of audio produced")?,
            )?,
            text_starved_steps_total: register(
                r,
                IntCounter::new(
                    "text_starved_steps_total",
                    "Engine steps an utterance waited for text",
                )?,
            )?,
            errors_total: register(
                r,
                IntCounterVec::new(Opts::new("errors_total", "Errors by code"), &["code"])?,
            )?,
            model_load_seconds: register(
                r,
                Gauge::new("model_load_seconds", "Seconds spent loading the model")?,
            )?,
            warmup_seconds: register(
                r,
                Gauge::new("warmup_seconds", "Seconds spent in the warmup generation")?,
            )?,
            build_info: register(
                r,
                IntGaugeVec::new(
                    Opts::new("build_info", "Build and runtime information (always 1)"),
                    &["version", "device", "dtype"],
                )?,
            )?,
            runtime_alive_tasks: register(
                r,
                IntGauge::new("runtime_alive_tasks", "Tasks alive on the async runtime")?,
            )?,
            heap_in_use_bytes: register(
                r,
                IntGauge::new(
                    "process_heap_in_use_bytes",
                    "Heap bytes allocated and not freed (jemalloc's stats.allocated or glibc's \
                     mallinfo2; absent elsewhere): the live heap, without the free memory the \
                     allocator keeps resident",
                )?,
            )?,
            device: DeviceGauges::new(r)?,
            capacity: CapacityMetrics::new(r)?,
            connections: ConnectionMetrics::new(r)?,
            registry,
        })
    }

    /// Counts one HTTP response.
    pub fn record_request(&self, route: &str, status: u16) {
        self.requests_total
            .with_label_values(&[route, &status.to_string()])
            .inc();
    }

    /// Counts one error by its stable code.
    pub fn record_error(&self, code: &str) {
        self.errors_total.with_label_values(&[code]).inc();
    }

    /// Starts recording an utterance whose first text arrived at `text_received`.
    pub fn context(self: &Arc<Self>, text_received: Instant, sample_rate: u32) -> ContextRecorder {
        ContextRecorder::new(Arc::clone(self), text_received, sample_rate)
    }

    /// Records the static facts of a loaded engine.
    pub fn record_engine(&self, info: &EngineInfo) {
        self.model_load_seconds.set(info.model.load_seconds);
        if let Some(warmup) = info.model.warmup_seconds {
            self.warmup_seconds.set(warmup);
        }
        self.build_info
            .with_label_values(&[
                info.version,
                &info.device.device.label(),
                info.device.dtype.as_str(),
            ])
            .set(1);
    }

    /// Updates the slot gauge from the engine.
    pub fn record_slots(&self, used: usize, total: usize) {
        self.slots_used.set(gauge_value(used));
        self.slots_total.set(gauge_value(total));
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Registers `metric` and returns it.
pub(super) fn register<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> Result<M, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, prometheus::Error> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(registry, Histogram::with_opts(opts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_prefix() {
        let m = Metrics::new().unwrap();
        m.record_request("/health", 200);
        m.record_error("overloaded");
        m.ttfa_seconds.observe(0.25);
        let text = m.render().unwrap();
        assert!(
            text.contains("vibevoice_requests_total{route=\"/health\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("vibevoice_errors_total{code=\"overloaded\"} 1"));
        assert!(text.contains("vibevoice_ttfa_seconds_bucket{le=\"0.3\"} 1"));
        assert!(text.contains("# TYPE vibevoice_rtf histogram"));
        assert!(text.contains("vibevoice_slots_total 0"));
        m.capacity.round(std::time::Duration::from_millis(12), 40);
        m.capacity.admissions(5, 2);
        m.capacity.admissions(7, 2);
        let text = m.render().unwrap();
        assert!(
            text.contains("vibevoice_engine_round_seconds_bucket{batch=\"48\",le=\"0.016\"} 1"),
            "{text}"
        );
        assert!(text.contains("vibevoice_engine_batch_current 40"));
        assert!(text.contains("vibevoice_admissions_total{outcome=\"admitted\"} 7"));
        assert!(text.contains("vibevoice_admissions_total{outcome=\"refused\"} 2"));
    }
}
