//! The real probe on this machine. In a build without `cuda` and `metal` features (the
//! default), auto resolves to the CPU and explicit GPU requests name the missing feature.

use vv_device::probe::DeviceProbe;
use vv_device::{
    device_self_test, resolve_device, Backend, DeviceError, DeviceRequest, SystemProbe,
};

#[test]
fn auto_resolves_to_an_openable_device_that_passes_the_self_test() {
    let probe = SystemProbe::new();
    let resolution = resolve_device(DeviceRequest::Auto, &probe).unwrap();
    assert_eq!(resolution.backends.len(), 3);
    let cpu = &resolution.backends[2];
    assert!(cpu.present && cpu.compiled_in);
    assert!(cpu.devices[0].memory.total_bytes.unwrap_or(0) > 0);
    let device = resolution.device.to_candle_device().unwrap();
    assert!(device_self_test(&device).is_ok());
    if cfg!(not(any(feature = "cuda", feature = "metal"))) {
        assert_eq!(resolution.device.backend, Backend::Cpu);
        assert!(resolution.warnings.is_empty(), "{:?}", resolution.warnings);
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_request_names_the_cuda_feature() {
    let probe = SystemProbe::new();
    assert!(!probe.cuda_compiled());
    for request in [DeviceRequest::Cuda(0), DeviceRequest::Cuda(3)] {
        let err = resolve_device(request, &probe).unwrap_err();
        assert!(
            matches!(
                &err,
                DeviceError::NotCompiled {
                    feature: "cuda",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("--features cuda"));
    }
}

#[cfg(not(feature = "metal"))]
#[test]
fn mps_request_names_the_metal_feature() {
    let probe = SystemProbe::new();
    assert!(!probe.metal_compiled());
    let err = resolve_device(DeviceRequest::Metal, &probe).unwrap_err();
    assert_eq!(
        err,
        DeviceError::NotCompiled {
            device: "mps".into(),
            feature: "metal"
        }
    );
}

#[test]
fn cpu_info_is_read_from_the_system() {
    let info = SystemProbe::new().cpu_info();
    assert!(info.threads.unwrap_or(0) >= 1);
    assert!(info.total_memory_bytes.unwrap_or(0) >= info.available_memory_bytes.unwrap_or(0));
}
