//! The 5 Hz LM's description routes, in upstream's shapes (`api/http/sample_format_routes.py`):
//! `POST /format_input` rewrites a caption and lyrics and fills in the metas; `POST
//! /v1/create_sample` writes a whole piece from a short description. Both run on the backend's LM
//! (`Backend::describe`) off the async runtime's threads, and answer in the `{data, code}`
//! wrapper. Without an LM folder they are refused with the reason (503), as upstream refuses them
//! when its LM cannot start.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::body::read_body;
use super::reply::{wrapped, ApiError};
use super::submit::truthy;
use super::ServerState;
use crate::backend::{DescribeMode, DescribeRequest, Described};
use crate::lm::plan::Value as PlanValue;
use crate::lm::sample::Sampling;
use crate::lm::think::GivenMetas;

/// `POST /format_input`: `prompt`, `lyrics`, `temperature` (0.85) and `param_obj` (an object or
/// its JSON text) with the metas to keep: `bpm`, `duration`, `key`/`key_scale`,
/// `time_signature`, `language`.
pub async fn format_input(State(state): State<Arc<ServerState>>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let body = read_body(request, &state.upload_dir, state.config.max_upload_bytes).await?;
    state.authorize_with_body(&headers, body.fields.get("ai_token"))?;
    let fields = &body.fields;
    let prompt = text(fields, "prompt");
    let lyrics = text(fields, "lyrics");
    let temperature = number(fields.get("temperature")).unwrap_or(0.85);
    // Upstream reads a `param_obj` that is not JSON as none.
    let params = match fields.get("param_obj") {
        Some(Value::Object(map)) => map.clone(),
        Some(Value::String(s)) => serde_json::from_str::<Map<String, Value>>(s).unwrap_or_default(),
        _ => Map::new(),
    };
    let duration = number(params.get("duration"));
    let bpm = number(params.get("bpm")).map(|b| b as i64);
    let key = [text(&params, "key"), text(&params, "key_scale")].into_iter().find(|k| !k.is_empty()).unwrap_or_default();
    let meter = [text(&params, "time_signature"), text(fields, "time_signature")].into_iter().find(|t| !t.is_empty()).unwrap_or_default();
    let language = text(&params, "language");
    let given = GivenMetas {
        bpm: bpm.filter(|&b| b > 0).map(|b| b.to_string()),
        duration: duration.filter(|&d| d >= 1.0).map(|d| (d as i64).to_string()),
        keyscale: Some(key.clone()).filter(|k| !k.is_empty()),
        timesignature: Some(meter.clone()).filter(|t| !t.is_empty()),
        language: Some(language.clone()).filter(|l| !l.is_empty() && l != "unknown"),
        ..GivenMetas::default()
    };
    let mode = DescribeMode::Format { caption: prompt.clone(), lyrics: lyrics.clone(), given };
    let written = describe(&state, mode, temperature, fields).await?;
    let plan = &written.description.plan;
    Ok(wrapped(json!({
        "caption": plan.caption.clone().filter(|c| !c.is_empty()).unwrap_or(prompt),
        "lyrics": Some(written.description.lyrics.clone()).filter(|l| !l.is_empty()).unwrap_or(lyrics),
        "bpm": int(&plan.bpm).map_or_else(|| json!(bpm), |b| json!(b)),
        "key_scale": plan.keyscale.clone().filter(|k| !k.is_empty()).unwrap_or(key),
        "time_signature": plan.timesignature.clone().filter(|t| !t.is_empty()).unwrap_or(meter),
        "duration": int(&plan.duration).map_or_else(|| json!(duration), |d| json!(d)),
        "vocal_language": plan.language.clone().filter(|l| !l.is_empty()).unwrap_or(if language.is_empty() { "unknown".into() } else { language }),
    })))
}

/// `POST /v1/create_sample`: `query`, `instrumental` (false), `vocal_language` (unknown: the
/// LM chooses) and `temperature` (0.85).
pub async fn create_sample(State(state): State<Arc<ServerState>>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let body = read_body(request, &state.upload_dir, state.config.max_upload_bytes).await?;
    state.authorize_with_body(&headers, body.fields.get("ai_token"))?;
    let fields = &body.fields;
    let instrumental = fields.get("instrumental").is_some_and(truthy);
    let language = Some(text(fields, "vocal_language")).filter(|l| !l.is_empty()).unwrap_or_else(|| "unknown".into());
    let temperature = number(fields.get("temperature")).filter(|&t| t != 0.0).unwrap_or(0.85);
    let mode = DescribeMode::Inspire { query: text(fields, "query"), instrumental, language: Some(language.clone()) };
    let written = describe(&state, mode, temperature, fields).await?;
    let plan = &written.description.plan;
    Ok(wrapped(json!({
        "caption": plan.caption.clone().unwrap_or_default(),
        "lyrics": written.description.lyrics,
        "bpm": int(&plan.bpm),
        "keyscale": plan.keyscale.clone().unwrap_or_default(),
        "duration": int(&plan.duration),
        "timesignature": plan.timesignature.clone().unwrap_or_default(),
        "vocal_language": plan.language.clone().filter(|l| !l.is_empty()).unwrap_or(language),
    })))
}

/// Runs `mode` on the backend's LM: unseeded, as upstream's routes are (a `seed` field is read
/// where given, so a result can be had again).
async fn describe(state: &ServerState, mode: DescribeMode, temperature: f64, fields: &Map<String, Value>) -> Result<Described, ApiError> {
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_request(format!("`temperature` = {temperature} is outside 0 to 2")));
    }
    let info = state.models().await?;
    if info.lm_models.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this needs the 5 Hz LM, and no LM folder ({}) is installed here", crate::checkpoint::LM_FOLDERS.join(", ")),
        ));
    }
    let seed = number(fields.get("seed")).filter(|&s| s >= 0.0).map_or_else(random_seed, |s| s as u64);
    let request = DescribeRequest { mode, sampling: Sampling { temperature: temperature as f32, top_k: None, top_p: None, repetition_penalty: 1.0 }, seed };
    let backend = Arc::clone(&state.backend);
    tokio::task::spawn_blocking(move || backend.describe(&request, &AtomicBool::new(false)))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn random_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64 & 0xffff_ffff)
}

fn text(fields: &Map<String, Value>, key: &str) -> String {
    match fields.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A number as upstream's `to_float` reads one: a JSON number or numeric text.
fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn int(value: &Option<PlanValue>) -> Option<i64> {
    value.as_ref().and_then(PlanValue::as_int)
}
