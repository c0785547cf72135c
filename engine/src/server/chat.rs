//! The chat form of ACE-Step's API (OpenRouter's shape, `docs/en/Openrouter_API_DOC.md`
//! upstream): `POST /v1/chat/completions` answers with the audio as a base64 data URL in
//! `choices[0].message.audio`, and `GET /v1/models` (also `/api/v1/models`) lists the models as
//! `acestep/<folder>`. It is `acestep.sh`'s default ("completion") mode.
//!
//! The last user message carries the request: `<prompt>`/`<lyrics>` tags, or text that reads as
//! lyrics (section markers, or several short lines), or else a caption; audio parts
//! (`input_audio`) are the source (for the tasks that take one) or the timbre reference. Settings
//! come from `audio_config` and the top-level fields upstream reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::body::{read_body, Body, Upload};
use super::output::mime;
use super::reply::{now_s, ApiError};
use super::tasks::TaskState;
use super::ServerState;
use crate::task::TaskType;

/// How long a chat request waits for its audio (upstream's `ACESTEP_GENERATION_TIMEOUT`); then 504.
const GENERATION_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the waiting request looks at its task.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Section markers that make a message lyrics rather than a caption.
const LYRIC_MARKERS: [&str; 9] = ["[verse", "[chorus", "[bridge", "[intro", "[outro", "[hook", "[pre-chorus", "[refrain", "[inst"];

pub async fn completions(State(state): State<Arc<ServerState>>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    state.authorize(&headers)?;
    let body = read_body(request, &state.upload_dir, state.config.max_upload_bytes).await?;
    let chat = body.fields;
    let model_asked = chat.get("model").and_then(Value::as_str).unwrap_or("acestep/acestep-v15-turbo").to_owned();
    let info = state.models().await?;
    let folders: Vec<String> = info.dits.iter().filter(|d| d.problem.is_none()).map(|d| d.name.clone()).collect();
    let mut job = job_body(&chat, &folders, &state.upload_dir)?;
    if let Some(name) = job.unknown_model.take() {
        job.notes.push(format!("there is no model `{name}` here; the default model ran"));
    }
    let (id, _) = state.submit(job.body).await?;
    let start = Instant::now();
    let task = loop {
        let task = state.tasks.get(&id).ok_or_else(|| ApiError::internal("the task was forgotten while it ran"))?;
        if !task.state.is_active() {
            break task;
        }
        if start.elapsed() > GENERATION_TIMEOUT {
            state.tasks.cancel(&id);
            return Err(ApiError::new(axum::http::StatusCode::GATEWAY_TIMEOUT, "Generation timeout"));
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    if task.state != TaskState::Succeeded {
        return Err(ApiError::internal(task.error.unwrap_or_else(|| format!("the job ended: {}", task.stage))));
    }
    let audio = match task.files.first() {
        Some(file) => {
            let bytes = tokio::fs::read(file).await.map_err(|e| ApiError::internal(format!("reading the result: {e}")))?;
            let url = format!("data:{};base64,{}", mime(file), base64::engine::general_purpose::STANDARD.encode(bytes));
            json!([{ "type": "audio_url", "audio_url": { "url": url } }])
        }
        None => Value::Null,
    };
    let generation = task.generation.as_ref().expect("a succeeded task has its generation");
    let mut notes = job.notes;
    notes.extend(task.asked.notes.iter().cloned());
    let content = reply_text(&generation.recipe.request, generation.recipe.duration_s, &task.asked.prompt, &notes);
    Ok(Json(json!({
        "id": format!("chatcmpl-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        "object": "chat.completion",
        "created": now_s() as u64,
        "model": model_asked,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "audio": audio, "audio_codes": generation.recipe.lm.as_ref().and_then(|lm| lm.audio_codes.first()) },
            "finish_reason": "stop",
        }],
        "usage": { "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0 },
    }))
    .into_response())
}

/// The models a chat client may name, default first (acestep.sh takes `data[0].id`).
pub async fn models(State(state): State<Arc<ServerState>>) -> Result<Response, ApiError> {
    let info = state.models().await?;
    let default = state.default_model(&info);
    let mut usable: Vec<&str> = info.dits.iter().filter(|d| d.problem.is_none()).map(|d| d.name.as_str()).collect();
    usable.sort_by_key(|name| Some(*name) != default.as_deref());
    let created = now_s() as u64;
    let data: Vec<Value> = usable
        .iter()
        .map(|name| {
            json!({
                "id": format!("acestep/{name}"), "name": format!("ACE-Step {name}"), "created": created,
                "input_modalities": ["text", "audio"], "output_modalities": ["audio", "text"],
                "context_length": 4096, "max_output_length": 300,
                "pricing": { "prompt": "0", "completion": "0", "request": "0", "image": "0" },
                "description": "AI music generation model", "architecture": null,
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })).into_response())
}

/// A chat request as a job body.
struct ChatJob {
    body: Body,
    /// The model named when no such folder is here (upstream falls back to its default).
    unknown_model: Option<String>,
    notes: Vec<String>,
}

/// Fields the chat form passes to the job as they are (upstream's `_to_generate_music_request`).
const PASSED_FIELDS: [&str; 13] = [
    "task_type", "seed", "guidance_scale", "inference_steps", "infer_method", "repainting_start", "repainting_end",
    "audio_cover_strength", "thinking", "use_format", "cover_noise_strength", "use_cot_caption", "sample_mode",
];

fn job_body(chat: &Map<String, Value>, folders: &[String], upload_dir: &std::path::Path) -> Result<ChatJob, ApiError> {
    if chat.get("stream").is_some_and(|s| s.as_bool() == Some(true)) {
        return Err(ApiError::bad_request("`stream`: streamed answers are not supported by this server; send stream false"));
    }
    let messages = chat.get("messages").and_then(Value::as_array).ok_or_else(|| ApiError::bad_request("`messages` is required"))?;
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .ok_or_else(|| ApiError::bad_request("`messages` has no user message"))?;
    let (text, audio_parts) = message_parts(last_user.get("content").unwrap_or(&Value::Null))?;
    let (mut prompt, mut lyrics) = split_prompt_and_lyrics(&text);
    if let Some(given) = chat.get("lyrics").and_then(Value::as_str).filter(|l| !l.is_empty()) {
        if prompt.is_empty() {
            prompt = text.trim().to_owned();
        }
        lyrics = given.to_owned();
    }
    if prompt.is_empty() && lyrics.is_empty() && audio_parts.is_empty() {
        return Err(ApiError::bad_request("No valid prompt, lyrics, sample query, or input audio found in request"));
    }

    let mut fields = Map::new();
    fields.insert("prompt".into(), json!(prompt));
    fields.insert("lyrics".into(), json!(lyrics));
    fields.insert("batch_size".into(), chat.get("batch_size").cloned().unwrap_or(json!(1)));
    for key in PASSED_FIELDS {
        if let Some(value) = chat.get(key).filter(|v| !v.is_null()) {
            fields.insert(key.into(), value.clone());
        }
    }
    if chat.get("seed").is_some_and(|s| !s.is_null()) {
        fields.insert("use_random_seed".into(), json!(false));
    }
    let config = chat.get("audio_config").and_then(Value::as_object).cloned().unwrap_or_default();
    // audio_config first; the same keys at the top level (an older form) otherwise.
    let setting = |keys: &[&str]| keys.iter().find_map(|k| config.get(*k).or_else(|| chat.get(*k)).filter(|v| !v.is_null()).cloned());
    for (field, keys) in [
        ("audio_duration", &["duration", "audio_duration"][..]),
        ("bpm", &["bpm"]),
        ("key_scale", &["key_scale", "keyscale"]),
        ("time_signature", &["time_signature", "timesignature"]),
        ("vocal_language", &["vocal_language"]),
        ("audio_format", &["format", "audio_format"]),
    ] {
        if let Some(value) = setting(keys) {
            fields.insert(field.into(), value);
        }
    }
    if setting(&["instrumental"]).and_then(|v| v.as_bool()) == Some(true) && lyrics.is_empty() {
        fields.insert("lyrics".into(), json!("[inst]"));
    }

    let mut unknown_model = None;
    if let Some(asked) = chat.get("model").and_then(Value::as_str) {
        let name = asked.split_once('/').map_or(asked, |(_, n)| n);
        if folders.iter().any(|f| f == name) {
            fields.insert("model".into(), json!(name));
        } else {
            unknown_model = Some(asked.to_owned());
        }
    }

    // Audio parts: the source for tasks that take one (and then the reference), else the reference.
    let task = fields
        .get("task_type")
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_value::<TaskType>(json!(t)).ok())
        .unwrap_or(TaskType::Text2Music);
    let roles: &[&str] = if task.needs_source_audio() { &["src_audio", "reference_audio"] } else { &["reference_audio"] };
    let mut uploads = Vec::new();
    for ((bytes, format), role) in audio_parts.into_iter().zip(roles) {
        let path = upload_dir.join(format!("{role}-{}.{format}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, bytes).map_err(|e| ApiError::internal(format!("cannot store the audio: {e}")))?;
        uploads.push(Upload { field: role.to_string(), file_name: format!("message audio.{format}"), path });
    }
    Ok(ChatJob { body: Body { fields, uploads }, unknown_model, notes: Vec::new() })
}

/// The message's text parts joined, and its audio parts (bytes and format).
fn message_parts(content: &Value) -> Result<(String, Vec<(Vec<u8>, String)>), ApiError> {
    match content {
        Value::String(text) => Ok((text.clone(), Vec::new())),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            let mut audio = Vec::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(part.get("text").and_then(Value::as_str).unwrap_or_default().to_owned()),
                    Some("input_audio") => {
                        let input = &part["input_audio"];
                        let data = input.get("data").and_then(Value::as_str).unwrap_or_default();
                        // A data URL or bare base64.
                        let encoded = data.split_once(";base64,").map_or(data, |(_, b)| b);
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(encoded.trim())
                            .map_err(|e| ApiError::bad_request(format!("`input_audio.data` is not base64: {e}")))?;
                        let format: String = input
                            .get("format")
                            .and_then(Value::as_str)
                            .unwrap_or("wav")
                            .chars()
                            .filter(char::is_ascii_alphanumeric)
                            .take(8)
                            .collect();
                        audio.push((bytes, format));
                    }
                    _ => {}
                }
            }
            Ok((texts.join("\n"), audio))
        }
        Value::Null => Ok((String::new(), Vec::new())),
        other => Err(ApiError::bad_request(format!("Invalid request format: a message's content is {other}"))),
    }
}

/// `<prompt>` and `<lyrics>` tags when present (text outside them is the prompt if there is no
/// prompt tag); otherwise text that reads as lyrics is lyrics, and anything else the prompt.
fn split_prompt_and_lyrics(text: &str) -> (String, String) {
    let tagged = |tag: &str| {
        let lower = text.to_ascii_lowercase();
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let start = lower.find(&open)?;
        let end = lower[start..].find(&close)? + start;
        Some((start, end + close.len(), text[start + open.len()..end].trim().to_owned()))
    };
    let prompt_tag = tagged("prompt");
    let lyrics_tag = tagged("lyrics");
    if prompt_tag.is_some() || lyrics_tag.is_some() {
        let prompt = match &prompt_tag {
            Some((_, _, p)) => p.clone(),
            None => {
                let (start, end, _) = lyrics_tag.clone().unwrap();
                format!("{}{}", &text[..start], &text[end..]).trim().to_owned()
            }
        };
        return (prompt, lyrics_tag.map(|(_, _, l)| l).unwrap_or_default());
    }
    let text = text.trim();
    if reads_as_lyrics(text) {
        (String::new(), text.to_owned())
    } else {
        (text.to_owned(), String::new())
    }
}

fn reads_as_lyrics(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if LYRIC_MARKERS.iter().any(|m| lower.contains(m)) {
        return true;
    }
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.len() >= 4 && lines.iter().map(|l| l.chars().count()).sum::<usize>() < 60 * lines.len()
}

/// The reply's text: the metadata that ran, the lyrics, and what was not done as asked.
fn reply_text(request: &crate::request::GenerationRequest, duration_s: f64, asked_prompt: &str, notes: &[String]) -> String {
    let mut meta = Vec::new();
    let caption = if asked_prompt.is_empty() { request.caption.as_str() } else { asked_prompt };
    if !caption.is_empty() {
        meta.push(format!("**Caption:** {caption}"));
    }
    if let Some(bpm) = request.bpm {
        meta.push(format!("**BPM:** {bpm}"));
    }
    meta.push(format!("**Duration:** {duration_s:.1}s"));
    if let Some(key) = request.keyscale.as_deref().filter(|k| !k.is_empty()) {
        meta.push(format!("**Key:** {key}"));
    }
    if let Some(ts) = request.timesignature.as_deref().filter(|t| !t.is_empty()) {
        meta.push(format!("**Time Signature:** {ts}"));
    }
    let mut parts = vec![format!("## Metadata\n{}", meta.join("\n"))];
    let lyrics = request.lyrics.trim();
    if !lyrics.is_empty() && !matches!(lyrics.to_ascii_lowercase().as_str(), "[inst]" | "[instrumental]") {
        parts.push(format!("## Lyrics\n{lyrics}"));
    }
    if !notes.is_empty() {
        parts.push(format!("## Notes\n{}", notes.iter().map(|n| format!("- {n}")).collect::<Vec<_>>().join("\n")));
    }
    parts.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_lyrics_and_captions_are_told_apart_as_upstream_does() {
        let split = |t: &str| split_prompt_and_lyrics(t);
        assert_eq!(split("<prompt>lofi</prompt><lyrics>[verse]\nla</lyrics>"), ("lofi".into(), "[verse]\nla".into()));
        assert_eq!(split("warm synths <LYRICS>hey</LYRICS>"), ("warm synths".into(), "hey".into()));
        assert_eq!(split("[Chorus]\nsing it"), (String::new(), "[Chorus]\nsing it".into()));
        assert_eq!(split("one\ntwo\nthree\nfour"), (String::new(), "one\ntwo\nthree\nfour".into()));
        assert_eq!(split("an upbeat funk track with slap bass"), ("an upbeat funk track with slap bass".into(), String::new()));
    }

    #[test]
    fn a_chat_request_becomes_the_job_it_asks_for() {
        let chat = json!({
            "model": "acemusic/acestep-v15-turbo",
            "messages": [{"role": "system", "content": "ignored"}, {"role": "user", "content": "<prompt>lofi drums</prompt>"}],
            "thinking": true, "seed": 5, "audio_config": {"format": "wav", "duration": 12, "bpm": 80, "instrumental": true},
        });
        let job = job_body(chat.as_object().unwrap(), &["acestep-v15-turbo".into()], std::path::Path::new("/tmp")).unwrap();
        let f = &job.body.fields;
        assert_eq!((f["prompt"].as_str(), f["lyrics"].as_str(), f["model"].as_str()), (Some("lofi drums"), Some("[inst]"), Some("acestep-v15-turbo")));
        assert_eq!((f["audio_duration"].as_i64(), f["bpm"].as_i64(), f["audio_format"].as_str()), (Some(12), Some(80), Some("wav")));
        assert_eq!((f["seed"].as_i64(), f["use_random_seed"].as_bool(), f["batch_size"].as_i64()), (Some(5), Some(false), Some(1)));
        assert_eq!(f["thinking"], true, "passed on, so the job notes it");
        let other = json!({"model": "acestep/nope", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(job_body(other.as_object().unwrap(), &[], std::path::Path::new("/tmp")).unwrap().unknown_model.as_deref(), Some("acestep/nope"));
        let empty = json!({"messages": [{"role": "user", "content": "  "}]});
        assert!(job_body(empty.as_object().unwrap(), &[], std::path::Path::new("/tmp")).err().unwrap().detail.contains("No valid prompt"));
    }
}
