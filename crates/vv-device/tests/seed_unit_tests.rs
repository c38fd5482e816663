//! The unit tests of the seed's testing strategy that belong to the device layer: detection,
//! Metal availability, resolution, errors, auto fallback, dtype per device, cache clearing and
//! synchronization per backend, plus the model-info record and the `devices` report.

use candle_core::{DType, Device};
use vv_device::ops::{method_for, BackendOp, OpMethod};
use vv_device::probe::{CudaDeviceInfo, DeviceProbe};
use vv_device::{
    detect_best_device, resolve_device, select_dtype, Backend, BackendOps, CandleOps, DTypeRequest,
    DeviceError, DeviceRequest, DevicesReport, MockProbe, ModelInfo, SystemProbe,
};

#[test]
fn detect_best_device_returns_a_valid_device_string() {
    let probes = [
        MockProbe::new(),
        MockProbe::new().with_cuda_devices(3),
        MockProbe::new().with_metal(),
        MockProbe::new().with_cuda_failure("no driver").with_metal(),
    ];
    let expected = ["cpu", "cuda:0", "mps", "mps"];
    for (probe, want) in probes.iter().zip(expected) {
        let device = detect_best_device(probe);
        assert_eq!(device.label(), want);
        // The label is a valid request that selects the same device.
        let request: DeviceRequest = device.label().parse().unwrap();
        assert_eq!(resolve_device(request, probe).unwrap().device, device);
    }
    let real = detect_best_device(&SystemProbe::new());
    assert!(real.label().parse::<DeviceRequest>().is_ok(), "{real}");
}

#[test]
fn metal_availability_on_this_platform() {
    let probe = SystemProbe::new();
    assert_eq!(probe.metal_compiled(), cfg!(feature = "metal"));
    if cfg!(not(feature = "metal")) {
        let reason = probe.metal_available().unwrap_err();
        assert!(reason.contains("not compiled"), "{reason}");
        assert!(probe.metal_supports(DType::F16).is_err());
    } else if cfg!(not(target_os = "macos")) {
        assert!(probe.metal_available().is_err());
    } else if probe.metal_available().is_ok() {
        let info = probe.metal_info();
        assert!(
            info.recommended_working_set_bytes.unwrap_or(0) > 0,
            "{info:?}"
        );
    }
}

#[test]
fn resolve_device_with_various_inputs() {
    let probe = MockProbe::new()
        .with_cuda_device(CudaDeviceInfo {
            name: Some("GPU A".into()),
            ..Default::default()
        })
        .with_cuda_device(CudaDeviceInfo {
            name: Some("GPU B".into()),
            ..Default::default()
        })
        .with_metal();
    for (input, backend, ordinal, name) in [
        ("auto", Backend::Cuda, 0, Some("GPU A")),
        (" CUDA ", Backend::Cuda, 0, Some("GPU A")),
        ("cuda:1", Backend::Cuda, 1, Some("GPU B")),
        ("mps", Backend::Metal, 0, Some("Mock Apple GPU")),
        ("Metal", Backend::Metal, 0, Some("Mock Apple GPU")),
        ("cpu", Backend::Cpu, 0, Some("Mock CPU")),
    ] {
        let request: DeviceRequest = input.parse().unwrap();
        let resolution = resolve_device(request, &probe).unwrap();
        assert_eq!(resolution.device.backend, backend, "{input}");
        assert_eq!(resolution.device.ordinal, ordinal, "{input}");
        assert_eq!(resolution.device.name.as_deref(), name, "{input}");
        assert!(resolution.warnings.is_empty());
        assert_eq!(resolution.backends.len(), 3);
    }
}

#[test]
fn unavailable_devices_raise_the_right_error() {
    let cpu_only = MockProbe::new();
    let err = resolve_device(DeviceRequest::Cuda(0), &cpu_only).unwrap_err();
    assert_eq!(
        err,
        DeviceError::NotCompiled {
            device: "cuda:0".into(),
            feature: "cuda"
        }
    );
    assert!(err.to_string().contains("rebuild with --features cuda"));
    let err = resolve_device(DeviceRequest::Metal, &cpu_only).unwrap_err();
    assert_eq!(err.code(), "device_not_compiled");
    assert!(err.to_string().contains("--features metal"), "{err}");

    let no_driver = MockProbe::new().with_cuda_failure("libcuda.so.1: cannot open shared object");
    let err = resolve_device(DeviceRequest::Cuda(1), &no_driver).unwrap_err();
    assert_eq!(err.code(), "device_unavailable");
    assert_eq!(
        err.to_string(),
        "device cuda:1 is unavailable: libcuda.so.1: cannot open shared object; \
         use TTS_DEVICE=auto to pick the best available device"
    );

    let no_device = MockProbe::new().with_cuda_devices(0);
    let err = resolve_device(DeviceRequest::Cuda(0), &no_device).unwrap_err();
    assert_eq!(err.code(), "device_unavailable");
    assert!(err.to_string().contains("no CUDA device found"), "{err}");

    let two = MockProbe::new().with_cuda_devices(2);
    let err = resolve_device(DeviceRequest::Cuda(5), &two).unwrap_err();
    assert_eq!(
        err,
        DeviceError::OutOfRange {
            device: "cuda:5".into(),
            index: 5,
            count: 2
        }
    );
    assert!(
        err.to_string().contains(
            "index 5 is out of range, 2 CUDA device(s) present (valid: cuda:0 to cuda:1)"
        ),
        "{err}"
    );

    let no_metal = MockProbe::new().with_metal_failure("no Metal device found");
    let err = resolve_device(DeviceRequest::Metal, &no_metal).unwrap_err();
    assert_eq!(err.device(), "mps");
    assert!(err.to_string().contains("no Metal device found"));
}

#[test]
fn auto_falls_back_with_a_warning_per_skipped_backend() {
    let probe = MockProbe::new()
        .with_cuda_failure("driver too old")
        .with_metal_failure("no Metal device");
    let resolution = resolve_device(DeviceRequest::Auto, &probe).unwrap();
    assert_eq!(resolution.device.backend, Backend::Cpu);
    assert_eq!(
        resolution.warnings,
        vec![
            "auto: cuda is compiled in but unavailable (driver too old); falling back to cpu",
            "auto: metal is compiled in but unavailable (no Metal device); falling back to cpu",
        ]
    );
    // A backend that is not compiled in is skipped without a warning.
    let resolution = resolve_device(DeviceRequest::Auto, &MockProbe::new().with_metal()).unwrap();
    assert_eq!(resolution.device.backend, Backend::Metal);
    assert!(resolution.warnings.is_empty());
    // Explicit requests never fall back.
    assert!(resolve_device(DeviceRequest::Cuda(0), &probe).is_err());
}

#[test]
fn dtype_selection_per_device() {
    let half_ok = MockProbe::new()
        .with_metal()
        .with_half_support(DType::BF16, true)
        .with_half_support(DType::F16, false);
    let cases = [
        (Backend::Cuda, DTypeRequest::Auto, DType::BF16),
        (Backend::Cuda, DTypeRequest::F16, DType::F16),
        (Backend::Cuda, DTypeRequest::F32, DType::F32),
        (Backend::Metal, DTypeRequest::Auto, DType::F32),
        (Backend::Metal, DTypeRequest::Bf16, DType::BF16),
        (Backend::Metal, DTypeRequest::F16, DType::F32),
        (Backend::Cpu, DTypeRequest::Auto, DType::F32),
        (Backend::Cpu, DTypeRequest::Bf16, DType::F32),
        (Backend::Cpu, DTypeRequest::F16, DType::F32),
    ];
    for (backend, request, want) in cases {
        let choice = select_dtype(backend, request, &half_ok);
        assert_eq!(choice.dtype, want, "{backend} {request}");
    }
    let cpu = select_dtype(Backend::Cpu, DTypeRequest::Bf16, &half_ok);
    assert!(cpu.reason.contains("CPU always uses f32"), "{}", cpu.reason);
    let metal = select_dtype(Backend::Metal, DTypeRequest::F16, &half_ok);
    assert!(metal.reason.contains("not supported"), "{}", metal.reason);
}

#[test]
fn cache_clearing_and_synchronize_per_backend() {
    assert_eq!(
        method_for(BackendOp::ClearCache, Backend::Cuda),
        OpMethod::CudaSynchronizeAndTrimPool
    );
    assert_eq!(
        method_for(BackendOp::ClearCache, Backend::Metal),
        OpMethod::MetalWaitUntilCompleted
    );
    assert_eq!(
        method_for(BackendOp::Synchronize, Backend::Cuda),
        OpMethod::CudaSynchronize
    );
    for op in [BackendOp::Synchronize, BackendOp::ClearCache] {
        assert_eq!(method_for(op, Backend::Cpu), OpMethod::CpuNoop);
    }
    let ops = CandleOps;
    let sync = ops.synchronize(&Device::Cpu);
    let clear = ops.clear_cache(&Device::Cpu);
    assert_eq!((sync.method, sync.error), (OpMethod::CpuNoop, None));
    assert_eq!((clear.method, clear.error), (OpMethod::CpuNoop, None));
    let stats = ops.memory_stats(&Device::Cpu);
    assert_eq!(stats.backend, Backend::Cpu);
    assert!(stats.process_rss_bytes.unwrap_or(0) > 0, "{stats:?}");
    assert!(stats.system_total_bytes.unwrap_or(0) >= stats.process_rss_bytes.unwrap_or(0));
    assert_eq!(stats.metal_allocated_bytes, None);
    assert_eq!(stats.utilization_percent, None);
}

#[test]
fn model_info_records_device_and_dtype_with_reasons() {
    let probe = MockProbe::new().with_cuda_devices(1);
    let resolution = resolve_device(DeviceRequest::Auto, &probe).unwrap();
    let dtype = select_dtype(resolution.device.backend, DTypeRequest::Auto, &probe);
    let info = ModelInfo::new(&resolution, &dtype);
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["device_request"], "auto");
    assert_eq!(json["device"]["backend"], "cuda");
    assert_eq!(json["dtype"], "bf16");
    assert_eq!(json["dtype_reason"], "auto on CUDA means bf16");
    assert!(json["device_reason"]
        .as_str()
        .unwrap()
        .contains("CUDA device 0"));
    assert_eq!(json["backends"].as_array().unwrap().len(), 3);
}

#[test]
fn devices_report_lists_backends_and_keeps_the_table_on_error() {
    let probe = MockProbe::new().with_cuda_devices(2);
    let ok = DevicesReport::collect(
        DeviceRequest::Cuda(1),
        DTypeRequest::F16,
        &probe,
        &CandleOps,
    );
    assert!(ok.error().is_none());
    assert_eq!(ok.resolved.as_ref().unwrap().label(), "cuda:1");
    assert_eq!(ok.dtype.as_ref().unwrap().dtype, DType::F16);
    let table = ok.render_table();
    for needle in [
        "cuda:0",
        "cuda:1",
        "Mock GPU 1",
        "15.0 GiB free / 16.0 GiB total",
        "f16",
    ] {
        assert!(table.contains(needle), "{needle} missing in\n{table}");
    }

    let failed =
        DevicesReport::collect(DeviceRequest::Metal, DTypeRequest::Auto, &probe, &CandleOps);
    let error = failed.error().unwrap();
    assert_eq!(error.code(), "device_not_compiled");
    assert!(failed.resolved.is_none() && failed.dtype.is_none());
    assert_eq!(failed.backends.len(), 3);
    let table = failed.render_table();
    assert!(
        table.contains("Mock GPU 0") && table.contains("[device_not_compiled]"),
        "{table}"
    );
    let json = serde_json::to_value(&failed).unwrap();
    assert_eq!(json["error"]["code"], "device_not_compiled");
    assert!(json["resolved"].is_null());
}
