//! `quantize` on the engine: what it resolves to is in the engine's info, and an explicit
//! format on a GPU is a typed load error (before the device is opened), never a panic.

use vv_device::probe::SystemProbe;
use vv_device::{DTypeRequest, DeviceRequest, MockProbe};
use vv_engine::{Runtime, SlotPolicy};
use vv_model::Quantize;

use crate::support::options;

fn load(tune: impl FnOnce(&mut vv_engine::EngineOptions)) -> Result<Runtime, String> {
    load_with(tune, &SystemProbe::new())
}

fn load_with(
    tune: impl FnOnce(&mut vv_engine::EngineOptions),
    probe: &dyn vv_device::DeviceProbe,
) -> Result<Runtime, String> {
    let mut opts = options(SlotPolicy::Fixed { slots: 1 });
    opts.warmup = false;
    tune(&mut opts);
    Runtime::load(&opts, probe).map_err(|e| e.code().to_string())
}

#[test]
fn the_format_in_effect_is_in_the_info() {
    for (request, name) in [
        (Quantize::Int8, "int8"),
        (Quantize::Bf16, "bf16"),
        (Quantize::None, "none"),
    ] {
        let runtime = load(|o| o.quantize = request).unwrap();
        let model = &runtime.info().model;
        assert_eq!(model.quantize_request, request);
        assert_eq!(model.quantize, name);
        assert_eq!(runtime.model().packing().name(), name);
    }
}

/// The CPU computes in f32 whatever dtype is requested, so a format applies there.
#[test]
fn a_half_dtype_request_on_the_cpu_still_quantizes() {
    let runtime = load(|o| {
        o.quantize = Quantize::Int8;
        o.dtype = DTypeRequest::Bf16;
    })
    .unwrap();
    assert_eq!(runtime.info().model.quantize, "int8");
}

#[test]
fn explicit_formats_on_a_gpu_are_refused_before_the_device_is_opened() {
    let gpus = MockProbe::new().with_cuda_devices(1).with_metal();
    for device in [DeviceRequest::Cuda(0), DeviceRequest::Metal] {
        for q in [Quantize::Int8, Quantize::Bf16] {
            let err = load_with(
                |o| {
                    o.quantize = q;
                    o.device = device;
                },
                &gpus,
            );
            assert_eq!(
                err.err().as_deref(),
                Some("quantize_unsupported"),
                "{q} on {device}"
            );
        }
    }
}
