//! The native API of the ACE-Step 1.5 server (`docs/en/API.md` upstream): `/release_task`,
//! `/query_result`, `/v1/audio`, `/health`, `/v1/model_inventory`, `/v1/stats`, and, beyond
//! upstream, `/cancel_task`. Answers keep upstream's shapes, field for field; docs/api.md lists
//! every difference.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::read_body;
use super::output::mime;
use super::reply::{wrapped, ApiError};
use super::tasks::{Task, TaskState};
use super::ServerState;
use crate::pipeline::Generation;

/// The `env` every result item carries (upstream writes its deployment name there).
const ENV: &str = "backline";

pub async fn release_task(State(state): State<Arc<ServerState>>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let body = read_body(request, &state.upload_dir, state.config.max_upload_bytes).await?;
    state.authorize_with_body(&headers, body.fields.get("ai_token"))?;
    let (id, position) = state.submit(body).await?;
    Ok(wrapped(json!({ "task_id": id, "status": "queued", "queue_position": position })))
}

pub async fn query_result(State(state): State<Arc<ServerState>>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let body = read_body(request, &state.upload_dir, state.config.max_upload_bytes).await?;
    state.authorize_with_body(&headers, body.fields.get("ai_token"))?;
    let ids = task_ids(body.fields.get("task_id_list"))?;
    let data: Vec<Value> = ids.iter().map(|id| query_item(&state, id)).collect();
    Ok(wrapped(Value::Array(data)))
}

/// `task_id_list` as a JSON array, or a string holding one (as a form sends it).
fn task_ids(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let list = match value {
        None => return Ok(Vec::new()),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(list) => list,
            // A bare id, as a form field may carry it.
            Err(_) => Value::Array(vec![Value::String(text.clone())]),
        },
        Some(list) => list.clone(),
    };
    match list {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(id) => Ok(id),
                other => Err(ApiError::bad_request(format!("`task_id_list`: {other} is not a task id"))),
            })
            .collect(),
        other => Err(ApiError::bad_request(format!("`task_id_list` must be a list of task ids, not {other}"))),
    }
}

/// One entry of `/query_result`'s list. An id this server does not know (never issued, or
/// forgotten after the retention time) is status 2 with the reason, where upstream answers 0 and
/// leaves its client polling forever.
fn query_item(state: &ServerState, id: &str) -> Value {
    let Some(task) = state.tasks.get(id) else {
        let item = json!([{ "file": "", "wave": "", "status": 2, "stage": "unknown", "error": format!("no task {id} on this server") }]);
        return json!({ "task_id": id, "result": item.to_string(), "status": 2, "progress_text": "unknown task id" });
    };
    let status = match task.state {
        TaskState::Queued | TaskState::Running => 0,
        TaskState::Succeeded => 1,
        TaskState::Failed | TaskState::Cancelled => 2,
    };
    let items = result_items(&task);
    json!({ "task_id": id, "result": Value::Array(items).to_string(), "status": status, "progress_text": progress_text(&task) })
}

fn progress_text(task: &Task) -> String {
    match task.state {
        TaskState::Queued | TaskState::Running => format!("{} ({:.0}%)", task.stage, task.progress * 100.0),
        TaskState::Failed | TaskState::Cancelled => task.error.clone().unwrap_or_else(|| task.stage.clone()),
        TaskState::Succeeded => String::new(),
    }
}

/// `result`'s items: one per file once succeeded, else one describing the state.
pub fn result_items(task: &Task) -> Vec<Value> {
    let base = json!({
        "file": "", "wave": "", "create_time": task.created_s as u64, "env": ENV,
        "progress": task.progress, "stage": task.stage,
    });
    let with = |mut item: Value, extra: Value| {
        item.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        item
    };
    match (task.state, &task.generation) {
        (TaskState::Succeeded, Some(generation)) => task
            .files
            .iter()
            .map(|file| with(base.clone(), succeeded_item(task, generation, file)))
            .collect(),
        (TaskState::Queued | TaskState::Running, _) => vec![with(base, json!({ "status": 0 }))],
        _ => vec![with(base, json!({ "status": 2, "error": task.error.clone().unwrap_or_else(|| task.stage.clone()) }))],
    }
}

fn succeeded_item(task: &Task, generation: &Generation, file: &std::path::Path) -> Value {
    let recipe = &generation.recipe;
    let request = &recipe.request;
    let or_na = |value: Option<Value>| value.unwrap_or_else(|| json!("N/A"));
    let used = recipe.metas_used();
    let seeds: Vec<String> = recipe.seeds().iter().map(u32::to_string).collect();
    json!({
        "file": audio_url(file),
        "status": 1,
        "prompt": request.caption,
        "lyrics": request.lyrics,
        "metas": {
            "bpm": or_na(used.bpm.map(|b| json!(b))),
            "duration": recipe.duration_s,
            "genres": "N/A",
            "keyscale": or_na(used.keyscale.map(Value::String)),
            "timesignature": or_na(used.timesignature.map(Value::String)),
            "prompt": task.asked.prompt,
            "lyrics": task.asked.lyrics,
        },
        "generation_info": generation_info(task, generation),
        "seed_value": seeds.join(","),
        "lm_model": recipe.lm.as_ref().map(|lm| lm.model.folder.clone()),
        "dit_model": recipe.models.first().map(|m| m.folder.clone()),
        "notes": task.asked.notes,
        "recipe": recipe,
    })
}

/// A short timing summary in upstream's markdown manner, with the notes under it.
pub fn generation_info(task: &Task, generation: &Generation) -> String {
    let items = generation.audio.len().max(1);
    let total = generation.recipe.time_costs.get("dit_total_time_cost").copied().unwrap_or_else(|| {
        task.finished_s.zip(task.started_s).map_or(0.0, |(end, start)| end - start)
    });
    let mut lines = vec![
        format!("**Total generation time ({items} {}): {total:.2}s**", if items == 1 { "item" } else { "items" }),
        format!("- {:.2}s per item", total / items as f64),
    ];
    for (stage, seconds) in &generation.recipe.time_costs {
        if stage != "dit_total_time_cost" {
            lines.push(format!("- {stage}: {seconds:.2}s"));
        }
    }
    lines.extend(task.asked.notes.iter().map(|n| format!("- Note: {n}")));
    lines.join("\n")
}

/// The root-relative URL of a file, every reserved byte of its path encoded (upstream's
/// `quote(path, safe="")`).
pub fn audio_url(file: &std::path::Path) -> String {
    let encoded = percent_encoding::utf8_percent_encode(&file.to_string_lossy(), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        // Unreserved characters stay as they are, as Python's quote leaves them.
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
        .replace("%7E", "~");
    format!("/v1/audio?path={encoded}")
}

#[derive(Deserialize)]
pub struct AudioQuery {
    path: Option<String>,
}

/// Only files this server's tasks wrote: a path anywhere else (another folder, `..`, a
/// symlink out) is refused with 403, whether or not it exists.
pub async fn audio(State(state): State<Arc<ServerState>>, headers: HeaderMap, Query(query): Query<AudioQuery>) -> Result<Response, ApiError> {
    state.authorize(&headers)?;
    let asked = query.path.filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("`path` is required"))?;
    let denied = || ApiError::new(axum::http::StatusCode::FORBIDDEN, "Access denied: path outside allowed directory");
    let path = PathBuf::from(&asked);
    let real = match tokio::fs::canonicalize(&path).await {
        Ok(real) => real,
        Err(_) if path.starts_with(&state.config.out_dir) && !asked.contains("..") => {
            return Err(ApiError::not_found("Audio file not found"))
        }
        Err(_) => return Err(denied()),
    };
    if !real.starts_with(&state.config.out_dir) || !state.tasks.produced(&real) {
        return Err(denied());
    }
    let bytes = tokio::fs::read(&real).await.map_err(|_| ApiError::not_found("Audio file not found"))?;
    Ok(([(CONTENT_TYPE, mime(&real))], bytes).into_response())
}

pub async fn health(State(state): State<Arc<ServerState>>) -> Response {
    let loaded = state.loaded_model().await;
    wrapped(json!({
        "status": "ok",
        "service": "ACE-Step API",
        "version": "1.0",
        "models_initialized": loaded.is_some(),
        "llm_initialized": false,
        "loaded_model": loaded,
        "loaded_lm_model": null,
        "device": state.device,
        "engine": concat!("backline ", env!("CARGO_PKG_VERSION")),
    }))
}

pub async fn model_inventory(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.authorize(&headers)?;
    let info = state.models().await?;
    let default = state.default_model(&info);
    let models: Vec<Value> = info
        .dits
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "is_default": Some(&d.name) == default.as_ref(),
                "is_loaded": d.loaded,
                "supported_task_types": d.tasks.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                "problem": d.problem,
            })
        })
        .collect();
    Ok(wrapped(json!({
        "models": models, "default_model": default, "lm_models": info.lm_models, "loaded_lm_model": null,
        "llm_initialized": !info.lm_models.is_empty(),
    })))
}

pub async fn stats(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.authorize(&headers)?;
    let counts = state.tasks.counts();
    Ok(wrapped(json!({
        "jobs": {
            "total": counts.total, "queued": counts.queued, "running": counts.running,
            "succeeded": counts.succeeded, "failed": counts.failed, "cancelled": counts.cancelled,
        },
        "queue_size": counts.queued,
        "queue_maxsize": state.config.max_queue,
        "avg_job_seconds": state.tasks.average_job_s(),
    })))
}

/// Beyond upstream: `POST /cancel_task` with `{"task_id": ...}` cancels a queued or running task
/// (it then reads as status 2, stage "cancelled").
pub async fn cancel_task(State(state): State<Arc<ServerState>>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let body = read_body(request, &state.upload_dir, state.config.max_upload_bytes).await?;
    state.authorize_with_body(&headers, body.fields.get("ai_token"))?;
    let id = body.fields.get("task_id").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request("`task_id` is required"))?;
    let task = state.tasks.get(id).ok_or_else(|| ApiError::not_found(format!("no task {id} on this server")))?;
    let cancelled = state.tasks.cancel(id);
    Ok(wrapped(json!({ "task_id": id, "cancelled": cancelled, "status": task.state.word() })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_come_as_a_list_or_as_text_holding_one() {
        assert_eq!(task_ids(Some(&json!(["a", "b"]))).unwrap(), ["a", "b"]);
        assert_eq!(task_ids(Some(&json!("[\"a\"]"))).unwrap(), ["a"]);
        assert_eq!(task_ids(Some(&json!("a"))).unwrap(), ["a"]);
        assert!(task_ids(Some(&json!([1]))).unwrap_err().detail.contains("task_id_list"));
        assert!(task_ids(None).unwrap().is_empty());
    }

    #[test]
    fn a_file_url_encodes_its_path_as_upstream_does() {
        let url = audio_url(std::path::Path::new("/srv/out/a b-1_x.mp3"));
        assert_eq!(url, "/v1/audio?path=%2Fsrv%2Fout%2Fa%20b-1_x.mp3");
    }
}
