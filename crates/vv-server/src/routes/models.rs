//! `GET /v1/models` and `GET /v1/models/{id}` in OpenAI's shape. Besides the native id the
//! service answers to OpenAI's speech model names, so SDK defaults work unchanged.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// The native model id.
pub const MODEL_ID: &str = "vibevoice-realtime-0.5b";

/// Every accepted model id: the native one first, then OpenAI's speech model names.
pub const MODEL_IDS: [&str; 4] = [MODEL_ID, "tts-1", "tts-1-hd", "gpt-4o-mini-tts"];

/// Whether `id` is an accepted model id.
pub fn is_known_model(id: &str) -> bool {
    MODEL_IDS.contains(&id)
}

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(list))
        .route("/v1/models/{id}", get(retrieve))
}

fn model_object(id: &str) -> Value {
    json!({ "id": id, "object": "model", "created": 0, "owned_by": "vibevoice-rt" })
}

async fn list() -> Json<Value> {
    let data: Vec<Value> = MODEL_IDS.iter().map(|id| model_object(id)).collect();
    Json(json!({ "object": "list", "data": data }))
}

async fn retrieve(Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if is_known_model(&id) {
        Ok(Json(model_object(&id)))
    } else {
        Err(ApiError::UnknownModel(id))
    }
}
