//! Test helpers: an [`EngineInfo`] for a pretend engine, to test request binding without a model.

use vv_device::{Backend, DTypeRequest, DeviceRequest, ModelInfo, ResolvedDevice};
use vv_engine::{EngineInfo, ModelSummary};

/// Facts of a pretend CPU engine with `voices` installed (the first is the default).
pub fn engine_info(voices: &[&str]) -> EngineInfo {
    EngineInfo {
        model: ModelSummary {
            source: "testdata".to_string(),
            random_weights: false,
            sample_rate: 24_000,
            frame_samples: 3200,
            text_window: 5,
            speech_window: 6,
            max_positions: 8192,
            load_seconds: 0.5,
            warmup_seconds: Some(0.25),
            cpu_fallbacks: Vec::new(),
            quantize_request: vv_model::Quantize::Auto,
            quantize: "int8",
            quantize_reason: "auto: f32 on a CPU with SIMD kernels for packed weights".to_string(),
        },
        device: ModelInfo {
            device_request: DeviceRequest::Cpu,
            device: ResolvedDevice {
                backend: Backend::Cpu,
                ordinal: 0,
                name: None,
            },
            device_reason: "cpu requested".to_string(),
            dtype_request: DTypeRequest::Auto,
            dtype: candle_core::DType::F32,
            dtype_reason: "auto on CPU means f32".to_string(),
            backends: Vec::new(),
            warnings: Vec::new(),
        },
        voices: voices.iter().map(|v| v.to_string()).collect(),
        default_voice: voices.first().map(|v| v.to_string()).unwrap_or_default(),
        slots: vv_engine::SlotPolicy::Fixed { slots: 2 },
        version: "test",
    }
}
