//! A request body in any of the three forms ACE-Step's clients send (JSON, form-urlencoded,
//! multipart with audio uploads), read into one JSON object of fields plus the uploaded files,
//! the way upstream's `/release_task` reads them (`api/http/release_task_request_parser.py`):
//! the content type decides; without one, a body that starts with `{` is JSON and one with `=` is
//! a form; anything else is refused (415).

use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::reply::ApiError;

/// Multipart file fields, by what they carry: the source first, then the timbre reference, each
/// under upstream's names in its order of precedence.
pub const SOURCE_UPLOADS: [&str; 2] = ["ctx_audio", "src_audio"];
pub const REFERENCE_UPLOADS: [&str; 2] = ["ref_audio", "reference_audio"];

/// One uploaded file, written to the server's upload folder. The file is removed when this is
/// dropped (after the job that read it has ended).
#[derive(Debug)]
pub struct Upload {
    /// The form field it came in.
    pub field: String,
    /// The name the client gave it, for the recipe and errors.
    pub file_name: String,
    pub path: PathBuf,
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A parsed body: its fields as a JSON object, and any uploads.
#[derive(Debug, Default)]
pub struct Body {
    pub fields: Map<String, Value>,
    pub uploads: Vec<Upload>,
}

impl Body {
    /// Takes the first upload among `fields` (in that order).
    pub fn take_upload(&mut self, fields: &[&str]) -> Option<Upload> {
        let index = fields.iter().find_map(|f| self.uploads.iter().position(|u| u.field == *f))?;
        Some(self.uploads.remove(index))
    }
}

/// Reads `request`'s body into a [`Body`], writing uploads into `upload_dir`. `limit_bytes` is
/// the body limit, named in the 413.
pub async fn read_body(request: Request, upload_dir: &Path, limit_bytes: usize) -> Result<Body, ApiError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &()).await.map_err(|e| ApiError::bad_request(e.body_text()))?;
        return read_multipart(multipart, upload_dir, limit_bytes).await;
    }
    let bytes = Bytes::from_request(request, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit_bytes)
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    let fields = if content_type.starts_with("application/json") || content_type.contains("+json") {
        json_object(&bytes)?
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        form_fields(&bytes)
    } else {
        let text = String::from_utf8_lossy(&bytes);
        let start = text.trim_start();
        if start.is_empty() {
            Map::new()
        } else if start.starts_with('{') || start.starts_with('[') {
            json_object(&bytes)?
        } else if start.contains('=') {
            form_fields(&bytes)
        } else {
            let shown = if content_type.is_empty() { "(missing)" } else { content_type.as_str() };
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Unsupported Content-Type: {shown}; use application/json, application/x-www-form-urlencoded, or multipart/form-data"
                ),
            ));
        }
    };
    Ok(Body { fields, uploads: Vec::new() })
}

/// A JSON body that must be an object.
pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("JSON payload must be an object")),
        Err(e) => Err(ApiError::bad_request(format!("Malformed JSON payload: {e}"))),
    }
}

/// Form fields as strings (the request parser reads numbers and booleans from text). A key sent
/// more than once keeps its first value, as upstream's query-string fallback does.
fn form_fields(bytes: &[u8]) -> Map<String, Value> {
    let mut fields = Map::new();
    for (key, value) in form_urlencoded::parse(bytes) {
        fields.entry(key.into_owned()).or_insert(Value::String(value.into_owned()));
    }
    fields
}

async fn read_multipart(mut multipart: Multipart, upload_dir: &Path, limit_bytes: usize) -> Result<Body, ApiError> {
    let mut body = Body::default();
    let refuse = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit_bytes)
        } else {
            ApiError::bad_request(format!("the multipart body cannot be read: {}", e.body_text()))
        }
    };
    while let Some(field) = multipart.next_field().await.map_err(refuse)? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let is_audio_field = SOURCE_UPLOADS.contains(&name.as_str()) || REFERENCE_UPLOADS.contains(&name.as_str());
        match file_name {
            Some(file_name) if is_audio_field => {
                let bytes = field.bytes().await.map_err(refuse)?;
                if bytes.is_empty() {
                    continue;
                }
                let path = upload_path(upload_dir, &name, &file_name);
                tokio::fs::write(&path, &bytes)
                    .await
                    .map_err(|e| ApiError::internal(format!("cannot store the upload `{name}`: {e}")))?;
                body.uploads.push(Upload { field: name, file_name, path });
            }
            Some(file_name) => {
                return Err(ApiError::bad_request(format!(
                    "`{name}`: a file ({file_name}) in a field that takes none; audio goes in {} or {}",
                    SOURCE_UPLOADS.join("/"),
                    REFERENCE_UPLOADS.join("/")
                )))
            }
            None => {
                let text = field.text().await.map_err(refuse)?;
                // Upstream keeps every value of a repeated field as a list.
                match body.fields.get_mut(&name) {
                    Some(Value::Array(list)) => list.push(Value::String(text)),
                    Some(first) => *first = Value::Array(vec![first.take(), Value::String(text)]),
                    None => {
                        body.fields.insert(name, Value::String(text));
                    }
                }
            }
        }
    }
    Ok(body)
}

/// A fresh file in `dir` that keeps the upload's extension (the decoder goes by it).
fn upload_path(dir: &Path, field: &str, file_name: &str) -> PathBuf {
    let extension = Path::new(file_name)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|e| format!(".{}", e.to_ascii_lowercase()))
        .unwrap_or_default();
    dir.join(format!("{field}-{}{extension}", uuid::Uuid::new_v4().simple()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_keeps_the_first_of_a_repeated_key_and_decodes_its_text() {
        let fields = form_fields(b"prompt=lofi+drums%2C+dusty&bpm=90&bpm=120&lyrics=");
        assert_eq!(fields["prompt"], "lofi drums, dusty");
        assert_eq!(fields["bpm"], "90");
        assert_eq!(fields["lyrics"], "");
    }

    #[test]
    fn json_must_be_an_object() {
        assert_eq!(json_object(b"[1]").unwrap_err().detail, "JSON payload must be an object");
        assert!(json_object(b"{\"a\":").unwrap_err().detail.starts_with("Malformed JSON payload"));
    }

    #[test]
    fn an_upload_keeps_a_plain_extension_only() {
        let dir = Path::new("/x");
        assert!(upload_path(dir, "src_audio", "take 1.WAV").to_str().unwrap().ends_with(".wav"));
        let odd = upload_path(dir, "src_audio", "../../etc/passwd");
        assert_eq!(odd.parent(), Some(dir));
        assert!(odd.extension().is_none());
    }
}
