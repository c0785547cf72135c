//! The job form of ACE-Step's API (`POST /v1/music/generate`, `GET /v1/jobs/{id}`), which
//! upstream's server spoke before `/release_task` and which hosted front ends and older scripts
//! still use: the same bodies, unwrapped answers keyed by `job_id`. Cancel
//! (`POST /v1/jobs/{id}/cancel`) is beyond upstream.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::body::read_body;
use super::native::audio_url;
use super::reply::ApiError;
use super::tasks::{Task, TaskState};
use super::ServerState;

pub async fn generate(State(state): State<Arc<ServerState>>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let body = read_body(request, &state.upload_dir, state.config.max_upload_bytes).await?;
    state.authorize_with_body(&headers, body.fields.get("ai_token"))?;
    let (id, position) = state.submit(body).await?;
    Ok(Json(json!({ "job_id": id, "status": "queued", "queue_position": position })).into_response())
}

pub async fn job(State(state): State<Arc<ServerState>>, headers: axum::http::HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    state.authorize(&headers)?;
    let task = state.tasks.get(&id).ok_or_else(|| ApiError::not_found("Job not found"))?;
    let position = state.tasks.queue_position(&id);
    Ok(Json(job_view(&task, position, state.tasks.average_job_s())).into_response())
}

pub async fn cancel(State(state): State<Arc<ServerState>>, headers: axum::http::HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    state.authorize(&headers)?;
    let task = state.tasks.get(&id).ok_or_else(|| ApiError::not_found("Job not found"))?;
    let cancelled = state.tasks.cancel(&id);
    Ok(Json(json!({ "job_id": id, "cancelled": cancelled, "status": status_word(task.state) })).into_response())
}

/// Upstream's four words; a cancelled job reads as failed (with `cancelled: true`), so clients
/// that know only those four stop polling.
fn status_word(state: TaskState) -> &'static str {
    match state {
        TaskState::Cancelled => "failed",
        other => other.word(),
    }
}

/// `/v1/jobs/{id}`'s answer.
pub fn job_view(task: &Task, queue_position: usize, average_job_s: f64) -> Value {
    let queued = task.state == TaskState::Queued;
    json!({
        "job_id": task.id,
        "status": status_word(task.state),
        "cancelled": task.state == TaskState::Cancelled,
        "created_at": task.created_s,
        "started_at": task.started_s,
        "finished_at": task.finished_s,
        "queue_position": queue_position,
        "eta_seconds": queued.then(|| queue_position as f64 * average_job_s),
        "avg_job_seconds": average_job_s,
        "progress": task.progress,
        "stage": task.stage,
        "result": job_result(task),
        "error": task.error,
    })
}

fn job_result(task: &Task) -> Value {
    let Some(generation) = task.generation.as_ref().filter(|_| task.state == TaskState::Succeeded) else {
        return Value::Null;
    };
    let recipe = &generation.recipe;
    let paths: Vec<String> = task.files.iter().map(|f| audio_url(f)).collect();
    let seeds: Vec<String> = recipe.seeds().iter().map(u32::to_string).collect();
    let used = recipe.metas_used();
    let (keyscale, timesignature) = (used.keyscale, used.timesignature);
    json!({
        "first_audio_path": paths.first(),
        "second_audio_path": paths.get(1),
        "audio_paths": paths,
        "generation_info": super::native::generation_info(task, generation),
        "status_message": "Success",
        "seed_value": seeds.join(","),
        "metas": {
            "bpm": used.bpm, "duration": recipe.duration_s, "genres": null,
            "keyscale": keyscale, "timesignature": timesignature,
            "prompt": task.asked.prompt, "lyrics": task.asked.lyrics,
        },
        "bpm": used.bpm,
        "duration": recipe.duration_s,
        "genres": null,
        "keyscale": keyscale,
        "timesignature": timesignature,
        "lm_model": recipe.lm.as_ref().map(|lm| lm.model.folder.clone()),
        "dit_model": recipe.models.first().map(|m| m.folder.clone()),
        "notes": task.asked.notes,
        "recipe": recipe,
    })
}
