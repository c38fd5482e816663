//! Handling of backend failures: classifying candle errors, falling a component back to the
//! CPU when its backend lacks an operation (one warning per component), and retrying once
//! after clearing the cache when a device runs out of memory.

use crate::backend::Backend;
use crate::ops::BackendOps;
use candle_core::{Device, Error};
use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use tracing::warn;

/// What kind of failure a candle error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The backend does not implement the operation or dtype.
    UnsupportedOperation,
    /// The device ran out of memory.
    OutOfMemory,
    /// Anything else.
    Other,
}

/// Lower-case message fragments of candle's CUDA and Metal backends meaning "out of memory".
const OUT_OF_MEMORY_PATTERNS: [&str; 6] = [
    "out of memory",
    "out_of_memory",
    "outofmemory",
    "insufficient memory",
    "alloc_failed",
    "failed to create metal resource: buffer",
];

/// Lower-case message fragments meaning "this backend cannot do that operation".
const UNSUPPORTED_PATTERNS: [&str; 8] = [
    "no metal implementation",
    "no cuda implementation",
    "not implemented",
    "unimplemented",
    "not supported",
    "unsupported",
    "does not uspport",
    "does not support",
];

/// Classifies a candle error by its type and, for backend errors, its message.
pub fn classify(error: &Error) -> FailureKind {
    let inner = innermost(error);
    if matches!(inner, Error::UnsupportedDTypeForOp(..)) {
        return FailureKind::UnsupportedOperation;
    }
    classify_message(&inner.to_string())
}

/// Classifies an error message (case-insensitive); out-of-memory wins over unsupported.
pub fn classify_message(message: &str) -> FailureKind {
    let message = message.to_ascii_lowercase();
    if OUT_OF_MEMORY_PATTERNS.iter().any(|p| message.contains(p)) {
        FailureKind::OutOfMemory
    } else if UNSUPPORTED_PATTERNS.iter().any(|p| message.contains(p)) {
        FailureKind::UnsupportedOperation
    } else {
        FailureKind::Other
    }
}

/// The error under backtrace, context and path wrappers (their text is not the backend's).
fn innermost(error: &Error) -> &Error {
    match error {
        Error::WithBacktrace { inner, .. }
        | Error::Context { inner, .. }
        | Error::WithPath { inner, .. } => innermost(inner),
        other => other,
    }
}

/// Remembers which components fell back to the CPU and warns once per component.
#[derive(Debug, Default)]
pub struct FallbackNotice {
    components: Mutex<BTreeSet<String>>,
}

impl FallbackNotice {
    /// A notice with no fallback recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `component`, which failed with `error` on `backend`, should run on the CPU:
    /// true for an unsupported operation on a GPU backend. The first fallback of each
    /// component logs a warning; later ones are silent.
    pub fn falls_back_to_cpu(&self, component: &str, backend: Backend, error: &Error) -> bool {
        if backend == Backend::Cpu || classify(error) != FailureKind::UnsupportedOperation {
            return false;
        }
        let first = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(component.to_string());
        if first {
            warn!(
                component,
                %backend,
                error = %innermost(error),
                "operation not supported on {backend}; running {component} on the CPU"
            );
        }
        true
    }

    /// The components that fell back, sorted.
    pub fn fallen_back(&self) -> Vec<String> {
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// Runs `f`; when it fails with out-of-memory, clears the device cache through `ops` and runs
/// it once more. Other errors, and the second attempt's error, are returned as they are.
pub fn retry_after_clear_cache<T>(
    ops: &dyn BackendOps,
    device: &Device,
    mut f: impl FnMut() -> candle_core::Result<T>,
) -> candle_core::Result<T> {
    match f() {
        Err(error) if classify(&error) == FailureKind::OutOfMemory => {
            warn!(error = %innermost(&error), "device out of memory; clearing the cache and retrying once");
            ops.clear_cache(device);
            f()
        }
        outcome => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{BackendOp, RecordingOps};
    use candle_core::DType;

    fn msg(text: &str) -> Error {
        Error::Msg(text.to_string())
    }

    #[test]
    fn classifies_candle_backend_errors() {
        let unsupported = [
            Error::UnsupportedDTypeForOp(DType::BF16, "conv1d"),
            msg("Metal conv_transpose1d BF16 not implemented"),
            msg("upsample-nearest1d is not supported on cuda"),
            msg("no metal implementation for the op").bt(),
            msg("Map1 does not uspport this dtype."),
        ];
        for error in &unsupported {
            assert_eq!(
                classify(error),
                FailureKind::UnsupportedOperation,
                "{error}"
            );
        }
        let oom = [
            Error::Cuda(Box::new(std::io::Error::other(
                "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
            ))),
            msg("Failed to create metal resource: Buffer"),
            msg("CUBLAS_STATUS_ALLOC_FAILED"),
        ];
        for error in &oom {
            assert_eq!(classify(error), FailureKind::OutOfMemory, "{error}");
        }
        assert_eq!(
            classify(&msg("shape mismatch in matmul")),
            FailureKind::Other
        );
        // Only the backend's message counts, not the context a caller wrapped around it.
        let wrapped = Error::Context {
            inner: Box::new(msg("shape mismatch")),
            context: Box::new("op not implemented in this layer"),
        };
        assert_eq!(classify(&wrapped), FailureKind::Other);
        let wrapped = Error::Context {
            inner: Box::new(msg("CUDA_ERROR_OUT_OF_MEMORY")),
            context: Box::new("decoder"),
        };
        assert_eq!(classify(&wrapped), FailureKind::OutOfMemory);
    }

    #[test]
    fn notice_falls_back_unsupported_gpu_operations_once_per_component() {
        let notice = FallbackNotice::new();
        let unsupported = msg("Metal conv1d F16 not implemented");
        assert!(notice.falls_back_to_cpu("decoder", Backend::Metal, &unsupported));
        assert!(notice.falls_back_to_cpu("decoder", Backend::Metal, &unsupported));
        assert!(notice.falls_back_to_cpu("connector", Backend::Cuda, &unsupported));
        assert!(!notice.falls_back_to_cpu("lm", Backend::Cpu, &unsupported));
        assert!(!notice.falls_back_to_cpu("lm", Backend::Metal, &msg("out of memory")));
        assert_eq!(notice.fallen_back(), vec!["connector", "decoder"]);
    }

    #[test]
    fn retries_once_only_on_out_of_memory() {
        let ops = RecordingOps::new(Backend::Cuda);
        let mut attempts = 0;
        let result: candle_core::Result<()> = retry_after_clear_cache(&ops, &Device::Cpu, || {
            attempts += 1;
            Err(msg("CUDA_ERROR_OUT_OF_MEMORY"))
        });
        assert!(result.is_err());
        assert_eq!(attempts, 2);
        assert_eq!(ops.calls().len(), 1);
        assert_eq!(ops.calls()[0].op, BackendOp::ClearCache);

        let ops = RecordingOps::new(Backend::Metal);
        let mut attempts = 0;
        let result: candle_core::Result<()> = retry_after_clear_cache(&ops, &Device::Cpu, || {
            attempts += 1;
            Err(msg("shape mismatch"))
        });
        assert!(result.is_err());
        assert_eq!(attempts, 1);
        assert!(ops.calls().is_empty());
    }
}
