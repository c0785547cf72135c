//! A body's fields and uploads turned into a job, with everything wrong said before it is queued:
//! the engine's own parser and validation (400 naming the field), uploads that do not decode (400
//! naming the upload), formats this server does not write, and the 5 Hz LM's switches: `thinking`
//! plans with the LM where one is installed, and otherwise runs without it and says so in the
//! result, as `use_format` does; `sample_mode` and `sample_query` run where an LM is installed
//! and are refused where none is, since nothing could stand in for the piece they write.

use serde_json::{Map, Value};

use crate::audio::read_audio;
use crate::backend::{AudioInput, JobRequest};
use crate::request::hosted::read_hosted_fields;
use crate::request::{AudioFormat, GenerationRequest};

use super::body::{Body, REFERENCE_UPLOADS, SOURCE_UPLOADS};
use super::output::SERVED_FORMATS;
use super::reply::ApiError;
use super::tasks::Asked;

/// Switches of the 5 Hz LM that a job can run without, each under its keys: when on, the job
/// runs on the caption and metas as given, and the result says so.
const LM_SWITCHES: [(&str, &[&str], &str); 1] = [
    (
        "use_format",
        &["use_format", "useFormat", "format"],
        "`use_format` was asked for, but no 5 Hz LM folder is installed on this server: the caption and lyrics were used as written",
    ),
];

/// Upstream's keys for sample mode's description and switch.
const SAMPLE_QUERY_KEYS: [&str; 4] = ["sample_query", "sampleQuery", "description", "desc"];
const SAMPLE_MODE_KEYS: [&str; 2] = ["sample_mode", "sampleMode"];

/// Body fields that only authenticate or steer the server's reply, never the job.
const NOT_REQUEST_FIELDS: [&str; 1] = ["ai_token"];

/// A job ready to queue, and what its result will report of the asking.
pub struct Submission {
    pub job: JobRequest,
    pub asked: Asked,
}

/// Builds the job from a parsed body. Decoding an upload is blocking work: call this off the
/// async runtime's threads.
pub fn submission(mut body: Body, lm_installed: bool) -> Result<Submission, ApiError> {
    for key in NOT_REQUEST_FIELDS {
        body.fields.remove(key);
    }
    let mut fields = std::mem::take(&mut body.fields);
    // Decoded first: the hosted shapes' windows are measured against the source.
    let source = body.take_upload(&SOURCE_UPLOADS).map(|u| decoded(&u.field, &u.file_name, &u.path)).transpose()?;
    let reference = body.take_upload(&REFERENCE_UPLOADS).map(|u| decoded(&u.field, &u.file_name, &u.path)).transpose()?;
    let source_s = source.as_ref().and_then(|s| match s {
        AudioInput::Samples { audio, .. } => Some(audio.duration_s()),
        AudioInput::File(_) => None,
    });
    read_hosted_fields(&mut fields, source_s).map_err(ApiError::bad_request)?;
    let thinking = fields.remove("thinking").is_some_and(|v| truthy(&v));
    // Sample mode and format run where an LM is installed; without one, format is noted and
    // skipped, and sample mode refused (nothing could stand in for the piece it writes).
    let mut notes = Vec::new();
    if !lm_installed {
        let described = SAMPLE_QUERY_KEYS.iter().any(|k| fields.get(*k).and_then(Value::as_str).is_some_and(|q| !q.trim().is_empty()));
        if described || SAMPLE_MODE_KEYS.iter().any(|k| fields.get(*k).is_some_and(truthy)) {
            return Err(ApiError::bad_request(
                "`sample_query` / `sample_mode` (sample mode) needs the 5 Hz LM, and no LM folder is installed on this server",
            ));
        }
        notes = take_lm_switches(&mut fields);
    }
    let prompt = text_field(&fields, &["prompt", "caption"]);
    let lyrics = text_field(&fields, &["lyrics"]);
    let mut request = GenerationRequest::from_value(Value::Object(fields)).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if request.src_audio.is_some() || request.reference_audio.is_some() {
        let field = if request.src_audio.is_some() { "src_audio_path" } else { "reference_audio_path" };
        return Err(ApiError::bad_request(format!(
            "`{field}`: this server reads no paths on its own disk; upload the file as multipart `{}`",
            if request.src_audio.is_some() { "src_audio" } else { "reference_audio" }
        )));
    }
    // Upstream's REST default; the engine's own is FLAC.
    let format = *request.audio_format.get_or_insert(AudioFormat::Mp3);
    if !SERVED_FORMATS.contains(&format) {
        let names: Vec<&str> = SERVED_FORMATS.iter().map(|f| f.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "`audio_format` = {} is not written by this server: use one of {}",
            format.as_str(),
            names.join(", ")
        )));
    }
    if thinking {
        match without_the_lm(&request, lm_installed) {
            None => request.thinking = true,
            Some(why) => notes.push(format!("`thinking` was asked for, but {why}: the DiT ran on the caption and metas as given, with no LM audio codes")),
        }
    }
    request.validate_for_inputs(source.is_some()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut job = JobRequest::new(request);
    job.src = source;
    job.reference = reference;
    Ok(Submission { job, asked: Asked { prompt, lyrics, format, notes } })
}

/// The upload's audio in memory, labelled with the client's file name.
fn decoded(field: &str, file_name: &str, path: &std::path::Path) -> Result<AudioInput, ApiError> {
    let audio = read_audio(path).map_err(|e| ApiError::bad_request(format!("`{field}` ({file_name}): {e}")))?;
    Ok(AudioInput::samples(format!("upload {file_name}"), audio))
}

/// Why a text2music request asking for `thinking` runs without the 5 Hz LM, if it does. The
/// audio tasks never plan with it (upstream skips it for them), so for them nothing is said.
fn without_the_lm(request: &GenerationRequest, lm_installed: bool) -> Option<String> {
    if request.task_type != crate::task::TaskType::Text2Music || request.audio_code_string.is_some() {
        return None;
    }
    (!lm_installed).then(|| "no 5 Hz LM folder is installed on this server".into())
}

/// Removes the LM switches from `fields`, returning a note for each that was on.
fn take_lm_switches(fields: &mut Map<String, Value>) -> Vec<String> {
    let mut notes = Vec::new();
    for (_, keys, note) in LM_SWITCHES {
        let mut on = false;
        for key in keys {
            if let Some(value) = fields.remove(*key) {
                on |= truthy(&value);
            }
        }
        if on {
            notes.push(note.to_string());
        }
    }
    notes
}

/// Upstream's reading of a switch: a JSON true, a non-zero number, or one of 1/true/yes/y/on.
pub(super) fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "y" | "on"),
        _ => false,
    }
}

/// The first of `keys` that holds text, as sent.
fn text_field(fields: &Map<String, Value>, keys: &[&str]) -> String {
    keys.iter().find_map(|k| fields.get(*k).and_then(Value::as_str)).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Body {
        Body { fields: value.as_object().unwrap().clone(), uploads: Vec::new() }
    }

    #[test]
    fn what_ace_steps_own_client_sends_is_accepted_and_the_lm_switches_noted() {
        // acestep.sh's native-mode body with its defaults (thinking and use_format on).
        let sent = json!({"prompt": "lofi drums", "lyrics": "", "sample_query": "", "thinking": true, "use_format": true,
            "use_cot_caption": true, "use_cot_language": true, "vocal_language": "en", "audio_format": "mp3",
            "use_random_seed": true, "audio_duration": 12, "bpm": 90, "time_signature": "4/4", "ai_token": "k"});
        let s = submission(body(sent.clone()), true).unwrap();
        assert_eq!(s.job.request.caption, "lofi drums");
        assert_eq!((s.job.request.bpm, s.job.request.duration), (Some(90), Some(12.0)));
        assert_eq!(s.asked.format, AudioFormat::Mp3);
        assert!(s.job.request.thinking, "the LM plans, the missing key included");
        assert!(s.job.request.use_format, "the LM formats the caption first");
        assert!(s.asked.notes.is_empty(), "{:?}", s.asked.notes);
        let s = submission(body(sent), false).unwrap();
        assert!(!s.job.request.thinking && !s.job.request.use_format);
        assert_eq!(s.asked.notes.len(), 2, "{:?}", s.asked.notes);
        assert!(s.asked.notes.iter().all(|n| n.contains("no 5 Hz LM folder")), "{:?}", s.asked.notes);
    }

    #[test]
    fn requests_the_server_cannot_honour_are_refused_naming_the_field() {
        let refused = |value: Value| submission(body(value), true).err().expect("refused").detail;
        let without_lm = |value: Value| submission(body(value), false).err().expect("refused").detail;
        assert!(without_lm(json!({"prompt": "x", "sample_mode": true})).contains("sample_mode"));
        assert!(without_lm(json!({"description": "a sad waltz"})).contains("no LM folder"));
        let sampled = submission(body(json!({"description": "a sad waltz", "sampleMode": "true"})), true).unwrap();
        assert_eq!((sampled.job.request.sample_query.as_deref(), sampled.job.request.sample_mode), (Some("a sad waltz"), true));
        assert!(refused(json!({"prompt": "x", "audio_format": "opus"})).contains("audio_format"));
        assert!(refused(json!({"prompt": "x", "task_type": "cover", "src_audio_path": "/home/me/a.wav"}))
            .contains("upload the file as multipart `src_audio`"));
        assert!(refused(json!({"prompt": "x", "bpm": 1000})).contains("bpm"));
        assert!(refused(json!({"prompt": "x", "task_type": "cover"})).contains("src_audio"), "a cover needs a source");
    }

    #[test]
    fn switches_read_as_upstream_reads_them() {
        assert!(truthy(&json!("Yes")) && truthy(&json!(1)) && truthy(&json!(true)));
        assert!(!truthy(&json!("false")) && !truthy(&json!("")) && !truthy(&json!(0)) && !truthy(&Value::Null));
    }
}
