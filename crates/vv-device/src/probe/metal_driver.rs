//! Metal queries through candle; compiled with the `metal` feature only. Opening the device is
//! guarded (candle panics when the machine has no Metal device).

use super::MetalInfo;
use crate::guard::catch_panic;
use candle_core::Device;

/// Opens Metal device 0, or says why it cannot be opened.
pub(crate) fn open_device() -> Result<Device, String> {
    match catch_panic(|| Device::new_metal(0)) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(format!(
            "the Metal device could not be initialised ({e}); updating macOS may help"
        )),
        Err(panic) => Err(format!(
            "no Metal device found ({panic}); Metal needs a Mac with Apple Silicon or a Metal GPU"
        )),
    }
}

/// Name, allocated size and recommended working set of a Metal device (`Default` for a
/// non-Metal device).
pub(crate) fn device_info(device: &Device) -> MetalInfo {
    let Ok(metal) = device.as_metal_device() else {
        return MetalInfo::default();
    };
    let raw = metal.metal_device();
    catch_panic(|| MetalInfo {
        name: Some(raw.architecture_name()),
        allocated_bytes: Some(raw.current_allocated_size() as u64),
        recommended_working_set_bytes: Some(raw.recommended_max_working_set_size() as u64),
    })
    .unwrap_or_default()
}
