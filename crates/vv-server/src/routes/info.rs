//! `GET /api/info`: model, device and dtype with the reasons they were chosen, voices, slots
//! used and total, readiness and build information. Engine fields are `null` while loading.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::ready::readiness;
use crate::state::AppState;
use vv_engine::EngineHandle;

/// Cargo features of this build that select a backend or math library.
pub fn enabled_features() -> Vec<&'static str> {
    [
        ("cuda", cfg!(feature = "cuda")),
        ("cudnn", cfg!(feature = "cudnn")),
        ("metal", cfg!(feature = "metal")),
        ("mkl", cfg!(feature = "mkl")),
        ("accelerate", cfg!(feature = "accelerate")),
        ("jemalloc", cfg!(feature = "jemalloc")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}

/// The capacity block: how slots are decided, the capacity now, the current batch's real-time
/// headroom, round times by batch size, admissions.
fn capacity(engine: &EngineHandle) -> Value {
    let report = engine.capacity();
    json!({
        "mode": report.mode,
        "capacity": report.capacity,
        "headroom_setting": report.headroom,
        "budget_ms": report.budget_ms,
        "current_batch": report.current_batch,
        "realtime_headroom": report.realtime_headroom,
        "round_ms_by_batch": report.round_ms_by_batch,
        "admitted": engine.admitted(),
        "refused": engine.refused(),
    })
}

/// The route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/info", get(info))
}

async fn info(State(state): State<AppState>) -> Json<Value> {
    let build = json!({
        "name": "vibevoice-rt",
        "version": env!("CARGO_PKG_VERSION"),
        "features": enabled_features(),
        "allocator": crate::memory_release::ALLOCATOR,
    });
    let status = readiness(&state);
    let Some(engine) = state.loaded_engine() else {
        return Json(json!({
            "status": status,
            "model": null,
            "device": null,
            "voices": null,
            "slots": null,
            "capacity": null,
            "build": build,
        }));
    };
    let info = engine.info();
    Json(json!({
        "status": status,
        "model": info.model,
        "device": {
            "device": info.device.device.label(),
            "name": info.device.device.name,
            "backend": info.device.device.backend,
            "reason": info.device.device_reason,
            "request": info.device.device_request.to_string(),
            "dtype": info.device.dtype.as_str(),
            "dtype_reason": info.device.dtype_reason,
            "dtype_request": info.device.dtype_request.to_string(),
            "backends": info.device.backends,
            "warnings": info.device.warnings,
            "cpu_fallbacks": info.model.cpu_fallbacks,
        },
        "voices": info.voices,
        "default_voice": info.default_voice,
        "slots": { "used": engine.slots_used(), "total": engine.slots_total() },
        "capacity": capacity(engine),
        "build": build,
    }))
}
