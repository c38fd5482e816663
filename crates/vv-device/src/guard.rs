//! Turning panics of driver constructors (candle, cudarc, Metal) into error strings.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, returning its value, or the panic message when it panics.
///
/// candle's CUDA and Metal constructors panic instead of returning an error when the driver
/// library or the device is missing; every call into them goes through here. The default panic
/// hook still prints the message to stderr once; callers cache probe results so that happens at
/// most once per process.
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        format!("panicked: {msg}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_value_or_panic_message() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        let err = catch_panic(|| -> u8 { panic!("no libcuda") }).unwrap_err();
        assert_eq!(err, "panicked: no libcuda");
        let err = catch_panic(|| -> u8 { panic!("{} devices", 0) }).unwrap_err();
        assert_eq!(err, "panicked: 0 devices");
    }
}
