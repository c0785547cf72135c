//! The native API's model and helper routes: `POST /v1/init` chooses the DiT that requests
//! without a `model` run on (it loads with the first job that uses it, as every model here does);
//! `POST /create_random_sample`, which upstream answers from its example files, draws from
//! Backline's own examples. (`/format_input` is the LM's: `describe`.)

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::body::read_body;
use super::reply::{wrapped, ApiError};
use super::ServerState;

/// `POST /v1/init`: `model` (a DiT folder here), `slot` (only 1: this server has one), and the
/// LM's `init_llm` (accepted where a 5 Hz LM folder is installed: it loads with the first job
/// that plans) and `lm_model_path` (refused: the LM is chosen from the installed folders).
pub async fn init(State(state): State<Arc<ServerState>>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let body = read_body(request, &state.upload_dir, state.config.max_upload_bytes).await?;
    state.authorize_with_body(&headers, body.fields.get("ai_token"))?;
    let fields = &body.fields;
    match fields.get("slot") {
        None | Some(Value::Null) => {}
        Some(slot) if slot.as_i64() == Some(1) || slot.as_str() == Some("1") => {}
        Some(slot) => return Err(ApiError::bad_request(format!("`slot` = {slot}: this server has one slot, 1"))),
    }
    let info = state.models().await?;
    if fields.get("init_llm").is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true")) && info.lm_models.is_empty() {
        return Err(ApiError::bad_request(format!(
            "`init_llm`: no 5 Hz LM folder ({}) is installed here",
            crate::checkpoint::LM_FOLDERS.join(", ")
        )));
    }
    if fields.get("lm_model_path").and_then(Value::as_str).is_some_and(|p| !p.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "`lm_model_path`: this server plans with the 5 Hz LM it has installed ({}), not one chosen by path",
            info.lm_models.join(", ")
        )));
    }
    if let Some(name) = fields.get("model").filter(|v| !v.is_null()) {
        let name = name.as_str().ok_or_else(|| ApiError::bad_request("`model` must be a model folder's name"))?;
        let dit = info.dits.iter().find(|d| d.name == name && d.problem.is_none()).ok_or_else(|| {
            let usable: Vec<&str> = info.dits.iter().filter(|d| d.problem.is_none()).map(|d| d.name.as_str()).collect();
            ApiError::bad_request(format!("`model`: there is no usable model `{name}` here (usable: {})", usable.join(", ")))
        })?;
        state.choose_model(dit.name.clone(), dit.tasks.clone());
    }
    let default = state.default_model(&info);
    let models: Vec<Value> = info
        .dits
        .iter()
        .filter(|d| d.problem.is_none())
        .map(|d| json!({ "name": d.name, "is_default": Some(&d.name) == default.as_ref(), "is_loaded": d.loaded }))
        .collect();
    Ok(wrapped(json!({
        "message": "Model initialization completed: it loads with the first job that uses it",
        "slot": 1,
        "loaded_model": default,
        "loaded_lm_model": null,
        "models": models,
        "llm_initialized": !info.lm_models.is_empty(),
        "lm_models": info.lm_models,
    })))
}

/// `POST /create_random_sample`: one of Backline's examples, in upstream's shape. `sample_type`
/// `simple_mode` (the default) gives a short description and no lyrics; `custom_mode` a caption,
/// lyrics and metas.
pub async fn create_random_sample(State(state): State<Arc<ServerState>>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let body = read_body(request, &state.upload_dir, state.config.max_upload_bytes).await?;
    state.authorize_with_body(&headers, body.fields.get("ai_token"))?;
    let custom = match body.fields.get("sample_type").and_then(Value::as_str) {
        None | Some("simple_mode") => false,
        Some("custom_mode") => true,
        Some(other) => return Err(ApiError::bad_request(format!("`sample_type` = \"{other}\": use \"simple_mode\" or \"custom_mode\""))),
    };
    let example = &EXAMPLES[draw(EXAMPLES.len())];
    let (caption, lyrics) = if custom { (example.caption, example.lyrics) } else { (example.description, "") };
    let instrumental = example.lyrics.is_empty();
    let language = if instrumental { "unknown" } else { "en" };
    Ok(wrapped(json!({
        "caption": caption,
        "lyrics": lyrics,
        "bpm": example.bpm,
        "key_scale": example.key,
        "time_signature": example.meter,
        "duration": example.duration,
        "vocal_language": language,
        "instrumental": instrumental,
    })))
}

/// An index below `n`, from the clock's low bits: a sample to fill a form, not a secret.
fn draw(n: usize) -> usize {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos as usize % n
}

struct Example {
    description: &'static str,
    caption: &'static str,
    lyrics: &'static str,
    bpm: u32,
    key: &'static str,
    meter: &'static str,
    duration: u32,
}

/// Backline's own examples (written for it; upstream's example files are not carried).
const EXAMPLES: [Example; 6] = [
    Example {
        description: "a dusty boom-bap beat for late-night writing",
        caption: "boom-bap hip hop, dusty sampled drums, upright bass, muted trumpet stabs, vinyl crackle",
        lyrics: "",
        bpm: 90,
        key: "D minor",
        meter: "4",
        duration: 60,
    },
    Example {
        description: "bright synth-pop about a summer drive",
        caption: "synth-pop, bright analog pads, gated drums, catchy female vocal, driving bass",
        lyrics: "[verse]\nWindows down on the coast road\nRadio humming our names\n\n[chorus]\nDrive, drive, into the gold\nWe never felt so young",
        bpm: 118,
        key: "A major",
        meter: "4",
        duration: 90,
    },
    Example {
        description: "a slow waltz for solo piano",
        caption: "solo piano waltz, intimate, soft felt hammers, rubato, warm room",
        lyrics: "",
        bpm: 84,
        key: "F major",
        meter: "3",
        duration: 60,
    },
    Example {
        description: "heavy riff-driven rock with a shouted chorus",
        caption: "hard rock, down-tuned guitars, pounding drums, gritty male vocal, big chorus",
        lyrics: "[verse]\nConcrete heart and a borrowed name\nI keep the engine running\n\n[chorus]\nBreak it down, break it loud",
        bpm: 140,
        key: "E minor",
        meter: "4",
        duration: 120,
    },
    Example {
        description: "deep house groove for a warm-up set",
        caption: "deep house, four-on-the-floor kick, warm chords, rolling bassline, airy vocal chops",
        lyrics: "",
        bpm: 122,
        key: "G minor",
        meter: "4",
        duration: 120,
    },
    Example {
        description: "a folk song in six-eight with fiddle",
        caption: "folk, acoustic guitar, fiddle, gentle male vocal, lilting six-eight feel",
        lyrics: "[verse]\nDown by the mill where the river turns\nI left my name in the stone\n\n[chorus]\nAnd the water sings me home",
        bpm: 100,
        key: "D major",
        meter: "6",
        duration: 90,
    },
];
