//! Shared test helpers: random mocked environments and a tracing capture.
#![allow(dead_code)]

use candle_core::DType;
use proptest::prelude::*;
use std::io;
use std::sync::{Arc, Mutex};
use vv_device::{Backend, DTypeRequest, DeviceRequest, MockProbe};

/// A mocked machine: what is compiled in, what the drivers say, what Metal supports.
#[derive(Debug, Clone)]
pub struct Env {
    pub cuda_compiled: bool,
    pub cuda: Result<usize, String>,
    pub metal_compiled: bool,
    pub metal: Result<(), String>,
    pub bf16: bool,
    pub f16: bool,
}

impl Env {
    pub fn probe(&self) -> MockProbe {
        let probe = match &self.cuda {
            Ok(n) => MockProbe::new().with_cuda_devices(*n),
            Err(reason) => MockProbe::new().with_cuda_failure(reason.clone()),
        }
        .with_cuda_compiled(self.cuda_compiled);
        match &self.metal {
            Ok(()) => probe.with_metal(),
            Err(reason) => probe.with_metal_failure(reason.clone()),
        }
        .with_metal_compiled(self.metal_compiled)
        .with_half_support(DType::BF16, self.bf16)
        .with_half_support(DType::F16, self.f16)
    }

    pub fn cuda_count(&self) -> usize {
        match self.cuda {
            Ok(n) if self.cuda_compiled => n,
            _ => 0,
        }
    }

    pub fn cuda_usable(&self) -> bool {
        self.cuda_count() > 0
    }

    pub fn metal_usable(&self) -> bool {
        self.metal_compiled && self.metal.is_ok()
    }

    /// The backend auto must pick: CUDA > Metal > CPU among usable ones.
    pub fn expected_best(&self) -> Backend {
        if self.cuda_usable() {
            Backend::Cuda
        } else if self.metal_usable() {
            Backend::Metal
        } else {
            Backend::Cpu
        }
    }
}

fn reason() -> impl Strategy<Value = String> {
    "[a-z][a-z ]{0,24}".prop_map(|s| format!("mock failure: {s}"))
}

/// Any mocked machine.
pub fn env() -> impl Strategy<Value = Env> {
    (
        any::<bool>(),
        prop_oneof![(0usize..4).prop_map(Ok), reason().prop_map(Err)],
        any::<bool>(),
        prop_oneof![Just(Ok(())), reason().prop_map(Err)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(cuda_compiled, cuda, metal_compiled, metal, bf16, f16)| Env {
                cuda_compiled,
                cuda,
                metal_compiled,
                metal,
                bf16,
                f16,
            },
        )
}

/// A mocked machine with no usable GPU (backends may still be compiled in).
pub fn env_without_gpu() -> impl Strategy<Value = Env> {
    env().prop_map(|mut e| {
        if e.cuda_compiled && e.cuda_usable() {
            e.cuda = Ok(0);
        }
        if e.metal_compiled && e.metal.is_ok() {
            e.metal = Err("mock failure: no metal device".to_string());
        }
        e
    })
}

pub fn device_request() -> impl Strategy<Value = DeviceRequest> {
    prop_oneof![
        Just(DeviceRequest::Auto),
        Just(DeviceRequest::Cpu),
        (0usize..6).prop_map(DeviceRequest::Cuda),
        Just(DeviceRequest::Metal),
    ]
}

pub fn dtype_request() -> impl Strategy<Value = DTypeRequest> {
    prop_oneof![
        Just(DTypeRequest::Auto),
        Just(DTypeRequest::Bf16),
        Just(DTypeRequest::F16),
        Just(DTypeRequest::F32),
    ]
}

pub fn backend() -> impl Strategy<Value = Backend> {
    prop_oneof![
        Just(Backend::Cuda),
        Just(Backend::Metal),
        Just(Backend::Cpu)
    ]
}

#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with a tracing subscriber that writes plain text (all levels) into a buffer;
/// returns `f`'s value and the captured log.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    // tracing caches each callsite's interest. Were a callsite first hit on another test thread
    // with no subscriber at all, it would be cached as uninteresting and this thread's scoped
    // subscriber would miss it. A global subscriber interested in everything (writing nowhere)
    // keeps every callsite enabled, so parallel tests capture reliably.
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        let sink = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let _ = tracing::subscriber::set_global_default(sink);
    });
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Buffer(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    (value, text)
}
