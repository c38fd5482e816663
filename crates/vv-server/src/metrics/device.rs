//! Device gauges: memory used/free/total per backend, GPU utilisation and temperature where
//! known, process RSS and system memory. Refreshed at every scrape from
//! [`BackendOps::memory_stats`]; a value that cannot be read is not exported (never an error).

use std::sync::Arc;

use candle_core::Device;
use prometheus::{GaugeVec, Opts, Registry};
use vv_device::{BackendOps, CandleOps, MemoryStats};

use super::families::register;

/// The device whose statistics are exported, and the operations that read them.
#[derive(Clone)]
pub struct DeviceMonitor {
    device: Device,
    ops: Arc<dyn BackendOps>,
}

impl DeviceMonitor {
    /// Reads `device` through candle and the drivers.
    pub fn new(device: Device) -> Self {
        Self::with_ops(device, Arc::new(CandleOps))
    }

    /// Reads `device` through `ops` (tests pass a recording implementation).
    pub fn with_ops(device: Device, ops: Arc<dyn BackendOps>) -> Self {
        Self { device, ops }
    }

    /// Current statistics; unreadable values are `None`.
    pub fn stats(&self) -> MemoryStats {
        self.ops.memory_stats(&self.device)
    }
}

/// Gauges labelled `{backend, device}` (host gauges carry no labels).
#[derive(Clone)]
pub struct DeviceGauges {
    memory_used_bytes: GaugeVec,
    memory_free_bytes: GaugeVec,
    memory_total_bytes: GaugeVec,
    utilization_percent: GaugeVec,
    temperature_celsius: GaugeVec,
    cuda_pool_reserved_bytes: GaugeVec,
    cuda_pool_used_bytes: GaugeVec,
    cuda_graph_reserved_bytes: GaugeVec,
    cuda_graph_used_bytes: GaugeVec,
    process_resident_memory_bytes: GaugeVec,
    system_memory_total_bytes: GaugeVec,
    system_memory_available_bytes: GaugeVec,
}

const DEVICE_LABELS: &[&str] = &["backend", "device"];

fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, prometheus::Error> {
    register(registry, GaugeVec::new(Opts::new(name, help), labels)?)
}

impl DeviceGauges {
    pub(super) fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let l = DEVICE_LABELS;
        Ok(Self {
            memory_used_bytes: gauge(r, "device_memory_used_bytes", "Device memory in use", l)?,
            memory_free_bytes: gauge(r, "device_memory_free_bytes", "Device memory free", l)?,
            memory_total_bytes: gauge(
                r,
                "device_memory_total_bytes",
                "Device memory in all (Metal: recommended working set; CPU: system memory)",
                l,
            )?,
            utilization_percent: gauge(
                r,
                "device_utilization_percent",
                "GPU utilisation in percent",
                l,
            )?,
            temperature_celsius: gauge(
                r,
                "device_temperature_celsius",
                "GPU temperature in degrees Celsius",
                l,
            )?,
            cuda_pool_reserved_bytes: gauge(
                r,
                "cuda_pool_reserved_bytes",
                "CUDA stream-ordered pool (tensors): memory mapped",
                l,
            )?,
            cuda_pool_used_bytes: gauge(
                r,
                "cuda_pool_used_bytes",
                "CUDA stream-ordered pool (tensors): memory handed out",
                l,
            )?,
            cuda_graph_reserved_bytes: gauge(
                r,
                "cuda_graph_memory_reserved_bytes",
                "CUDA graph memory pool: memory mapped for graphs",
                l,
            )?,
            cuda_graph_used_bytes: gauge(
                r,
                "cuda_graph_memory_used_bytes",
                "CUDA graph memory pool: memory held by graphs",
                l,
            )?,
            process_resident_memory_bytes: gauge(
                r,
                "process_resident_memory_bytes",
                "Resident set size of the service",
                &[],
            )?,
            system_memory_total_bytes: gauge(
                r,
                "system_memory_total_bytes",
                "Host memory in all",
                &[],
            )?,
            system_memory_available_bytes: gauge(
                r,
                "system_memory_available_bytes",
                "Host memory available",
                &[],
            )?,
        })
    }

    /// Replaces every series with the values of `stats`; absent values are not exported.
    pub fn update(&self, stats: &MemoryStats) {
        let labels = [stats.backend.as_str(), stats.device.as_str()];
        let as_f64 = |v: Option<u32>| v.map(f64::from);
        let bytes = |v: Option<u64>| v.map(|b| b as f64);
        let labelled = [
            (&self.memory_used_bytes, bytes(stats.used_bytes)),
            (&self.memory_free_bytes, bytes(stats.free_bytes)),
            (&self.memory_total_bytes, bytes(stats.total_bytes)),
            (&self.utilization_percent, as_f64(stats.utilization_percent)),
            (&self.temperature_celsius, as_f64(stats.temperature_celsius)),
            (
                &self.cuda_pool_reserved_bytes,
                bytes(stats.cuda_allocators.pool_reserved_bytes),
            ),
            (
                &self.cuda_pool_used_bytes,
                bytes(stats.cuda_allocators.pool_used_bytes),
            ),
            (
                &self.cuda_graph_reserved_bytes,
                bytes(stats.cuda_allocators.graph_reserved_bytes),
            ),
            (
                &self.cuda_graph_used_bytes,
                bytes(stats.cuda_allocators.graph_used_bytes),
            ),
        ];
        for (family, value) in labelled {
            set_or_clear(family, &labels, value);
        }
        let host = [
            (
                &self.process_resident_memory_bytes,
                bytes(stats.process_rss_bytes),
            ),
            (
                &self.system_memory_total_bytes,
                bytes(stats.system_total_bytes),
            ),
            (
                &self.system_memory_available_bytes,
                bytes(stats.system_available_bytes),
            ),
        ];
        for (family, value) in host {
            set_or_clear(family, &[], value);
        }
    }
}

fn set_or_clear(family: &GaugeVec, labels: &[&str], value: Option<f64>) {
    family.reset();
    if let Some(v) = value {
        family.with_label_values(labels).set(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use proptest::prelude::*;
    use vv_device::probe::MetalInfo;
    use vv_device::{Backend, RecordingOps};

    /// The sample `name{backend="metal",device="mps"}` of an exposition, if exported.
    fn metal_sample(text: &str, name: &str) -> Option<f64> {
        let prefix = format!("vibevoice_{name}{{backend=\"metal\",device=\"mps\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|v| v.parse().unwrap())
    }

    proptest! {
        /// Seed property 14 through the real Prometheus families: whatever the Metal driver
        /// reports (any value missing), a scrape exports allocated bytes as used, the
        /// recommended working set as total, their difference as free, and nothing for what
        /// Metal cannot tell (utilisation, temperature); collecting never fails.
        #[test]
        fn metal_statistics_are_exported_through_the_prometheus_families(
            allocated in proptest::option::of(0u64..(1 << 40)),
            working_set in proptest::option::of(0u64..(1 << 40)),
        ) {
            let info = MetalInfo { name: Some("applegpu_g14s".into()), allocated_bytes: allocated,
                                   recommended_working_set_bytes: working_set };
            let ops = RecordingOps::new(Backend::Metal).with_stats(MemoryStats::from_metal_info(&info));
            let monitor = DeviceMonitor::with_ops(Device::Cpu, Arc::new(ops));
            let m = Metrics::new().unwrap();
            m.device.update(&monitor.stats());
            let text = m.render().unwrap();
            let as_f64 = |v: Option<u64>| v.map(|b| b as f64);
            prop_assert_eq!(metal_sample(&text, "device_memory_used_bytes"), as_f64(allocated));
            prop_assert_eq!(metal_sample(&text, "device_memory_total_bytes"), as_f64(working_set));
            let free = working_set.zip(allocated).map(|(w, a)| w.saturating_sub(a));
            prop_assert_eq!(metal_sample(&text, "device_memory_free_bytes"), as_f64(free));
            prop_assert_eq!(metal_sample(&text, "device_utilization_percent"), None);
            prop_assert_eq!(metal_sample(&text, "device_temperature_celsius"), None);
        }
    }

    #[test]
    fn available_values_are_exported_and_missing_ones_are_not() {
        let m = Metrics::new().unwrap();
        let stats = MemoryStats {
            used_bytes: Some(1_000),
            total_bytes: Some(8_000),
            utilization_percent: Some(42),
            cuda_allocators: vv_device::CudaAllocatorMemory {
                pool_reserved_bytes: Some(700),
                graph_reserved_bytes: Some(300),
                graph_used_bytes: Some(200),
                ..Default::default()
            },
            ..MemoryStats::unavailable(Backend::Cuda, 1)
        };
        let monitor = DeviceMonitor::with_ops(
            Device::Cpu,
            Arc::new(RecordingOps::new(Backend::Cuda).with_stats(stats)),
        );
        m.device.update(&monitor.stats());
        let text = m.render().unwrap();
        let l = "{backend=\"cuda\",device=\"cuda:1\"}";
        assert!(
            text.contains(&format!("vibevoice_device_memory_used_bytes{l} 1000")),
            "{text}"
        );
        assert!(text.contains(&format!("vibevoice_device_memory_total_bytes{l} 8000")));
        assert!(text.contains(&format!("vibevoice_device_utilization_percent{l} 42")));
        assert!(!text.contains("vibevoice_device_temperature_celsius{"));
        assert!(!text.contains("vibevoice_device_memory_free_bytes{"));
        assert!(text.contains(&format!("vibevoice_cuda_pool_reserved_bytes{l} 700")));
        assert!(text.contains(&format!(
            "vibevoice_cuda_graph_memory_reserved_bytes{l} 300"
        )));
        assert!(text.contains(&format!("vibevoice_cuda_graph_memory_used_bytes{l} 200")));
        assert!(!text.contains("vibevoice_cuda_pool_used_bytes{"));

        m.device.update(&MemoryStats::unavailable(Backend::Cuda, 1));
        let text = m.render().unwrap();
        assert!(
            !text.contains("vibevoice_device_memory_used_bytes{"),
            "{text}"
        );
    }

    #[test]
    fn cpu_stats_come_from_the_host() {
        let stats = DeviceMonitor::new(Device::Cpu).stats();
        assert_eq!(stats.backend, Backend::Cpu);
        assert_eq!(stats.device, "cpu");
        let m = Metrics::new().unwrap();
        m.device.update(&stats);
        let text = m.render().unwrap();
        if stats.total_bytes.is_some() {
            assert!(text
                .contains("vibevoice_device_memory_total_bytes{backend=\"cpu\",device=\"cpu\"}"));
        }
    }
}
