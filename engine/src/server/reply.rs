//! The two shapes every answer takes, as upstream's server gives them: the wrapper
//! `{data, code, error, timestamp, extra}` around a success (HTTP 200, `code` 200), and a plain
//! `{"detail": message}` with the HTTP status for a refusal (`api_server.py`'s `_wrap_response`
//! and FastAPI's `HTTPException`).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Milliseconds since the epoch, the wrapper's `timestamp`.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the epoch, as a result item's `create_time`.
pub fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A success in the wrapper.
pub fn wrapped(data: Value) -> Response {
    Json(json!({ "data": data, "code": 200, "error": null, "timestamp": now_ms(), "extra": null })).into_response()
}

/// A refusal: the HTTP status and `{"detail": message}`. The message names the field at fault
/// where there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into() }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over this server's upload limit of {} MB", limit_bytes / (1024 * 1024)),
        )
    }

    pub fn queue_full(limit: usize) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, format!("Server busy: queue is full ({limit} jobs queued or running)"))
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "detail": self.detail }))).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}
