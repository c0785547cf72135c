//! `backline serve` over real HTTP on loopback, on the tiny synthetic checkpoint set: the native
//! API as ACE-Step's own client (`acestep.sh`) and its docs use it, in JSON, form and multipart
//! bodies; authentication; what `/v1/audio` refuses to serve; the upload and queue limits;
//! cancel; and every kind of bad request answered with the status and a message naming the field.
#![cfg(feature = "server")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backline_engine::audio::{decode_bytes, write_audio, AudioBuffer, OutputFormat};
use backline_engine::backend::{
    ApiForm, AudioInput, Backend, DescribeMode, DescribeRequest, JobRequest, LocalBackend, LocalSettings, RemoteBackend, RemoteSettings,
};
use backline_engine::lm::plan::Value as LmValue;
use backline_engine::lm::sample::Sampling as LmSampling;
use backline_engine::lm::think::GivenMetas;
use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::precision::Precision;
use backline_engine::request::GenerationRequest;
use backline_engine::server::{self, ServerConfig};
use backline_engine::task::TaskType;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};

fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("backline-serve-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `backline serve` process on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    url: String,
    out: PathBuf,
    checkpoints: PathBuf,
    client: Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(name: &str, extra: &[&str]) -> Server {
        let dir = scratch(name);
        let checkpoints = dir.join("checkpoints");
        synth::write_set(&checkpoints, SynthSize::Tiny, 0).unwrap();
        let out = dir.join("out");
        let mut child = Command::new(env!("CARGO_BIN_EXE_backline"))
            .args(["serve", "--port", "0", "--checkpoints"])
            .arg(&checkpoints)
            .arg("--out")
            .arg(&out)
            .args(["--precision", "f32"])
            .args(extra)
            .env_remove("BACKLINE_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("backline serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        let client = Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        Server { child, url, out: out.canonicalize().unwrap(), checkpoints, client }
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    fn post_json(&self, path: &str, body: Value) -> RequestBuilder {
        self.client
            .post(format!("{}{path}", self.url))
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body.to_string())
    }
}

/// Status and JSON body.
fn send(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Polls `/query_result` every 100 ms as acestep.sh does (it waits 5 s), until the task ends.
/// Returns the outer item and its parsed `result`.
fn wait_for(server: &Server, task_id: &str, auth: Option<&str>) -> (Value, Vec<Value>) {
    let start = Instant::now();
    loop {
        let mut request = server.post_json("/query_result", json!({ "task_id_list": [task_id] }));
        if let Some(key) = auth {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let (status, body) = send(request);
        assert_eq!(status, 200, "{body}");
        let item = body["data"][0].clone();
        assert_eq!(item["task_id"], task_id);
        let result: Vec<Value> = serde_json::from_str(item["result"].as_str().expect("result is JSON text")).unwrap();
        if item["status"] != 0 {
            return (item, result);
        }
        assert!(result[0]["progress"].as_f64().unwrap() < 1.0, "{result:?}");
        assert!(start.elapsed() < Duration::from_secs(300), "the task never ended: {item}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wav_bytes(seconds: f64) -> Vec<u8> {
    let rate = 44_100;
    let n = (seconds * rate as f64) as usize;
    let tone: Vec<f32> = (0..n).map(|i| 0.3 * (i as f32 * 220.0 * std::f32::consts::TAU / rate as f32).sin()).collect();
    let dir = scratch("wav");
    let path = dir.join("source.wav");
    write_audio(&path, &AudioBuffer::new(rate, vec![tone.clone(), tone]), OutputFormat::WavPcm16, false).unwrap();
    std::fs::read(&path).unwrap()
}

/// A multipart body by hand, as curl's `-F` sends it: text fields, then files.
fn multipart(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "------------------------backline7f3a";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    for (name, file_name, bytes) in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// acestep.sh in its native mode, with its defaults (thinking and use_format on, mp3): the task
/// is queued, polled to the end with per-step progress, and each file downloads from the
/// root-relative URL the result gives, decoding to the asked length.
#[test]
fn ace_steps_own_client_generates_through_the_native_api() {
    let server = Server::start("native", &[]);
    let (status, health) = send(server.get("/health"));
    assert_eq!(status, 200);
    assert_eq!((health["code"].as_u64(), health["data"]["status"].as_str()), (Some(200), Some("ok")), "{health}");
    assert!(health["timestamp"].as_u64().unwrap() > 1_700_000_000_000, "milliseconds: {health}");
    assert_eq!(health["data"]["device"], "cpu");

    let body = json!({"prompt": "dusty boom-bap drums", "lyrics": "", "sample_query": "", "thinking": true, "use_format": true,
        "use_cot_caption": true, "use_cot_language": true, "vocal_language": "en", "audio_format": "mp3", "use_random_seed": true,
        "audio_duration": 10, "bpm": 90, "key_scale": "A minor", "time_signature": "4", "inference_steps": 2});
    let (status, queued) = send(server.post_json("/release_task", body));
    assert_eq!(status, 200, "{queued}");
    assert_eq!((queued["data"]["status"].as_str(), queued["data"]["queue_position"].as_u64()), (Some("queued"), Some(1)));
    let task_id = queued["data"]["task_id"].as_str().unwrap().to_owned();

    let (item, result) = wait_for(&server, &task_id, None);
    assert_eq!(item["status"], 1, "{item}");
    assert_eq!(result.len(), 2, "upstream's REST default batch is 2: {result:?}");
    let seeds = result[0]["seed_value"].as_str().unwrap();
    assert_eq!(seeds.split(',').count(), 2, "{seeds}");
    for entry in &result {
        assert_eq!(entry["status"], 1);
        assert_eq!(entry["metas"]["bpm"], 90);
        assert_eq!(entry["metas"]["keyscale"], "A minor");
        assert_eq!(entry["metas"]["prompt"], "dusty boom-bap drums");
        assert_eq!(entry["dit_model"], "acestep-v15-turbo");
        // Every meta the LM plans from is given, and the tiny set has one: it wrote the codes.
        assert_eq!(entry["lm_model"], "acestep-5Hz-lm-0.6B", "{entry}");
        assert_eq!(entry["recipe"]["lm"]["audio_codes"].as_array().unwrap().len(), 2, "one code string per item");
        // use_format: the LM rewrote the caption first, keeping the metas given.
        let rewritten = &entry["recipe"]["rewritten"];
        assert_eq!(rewritten["modes"], json!(["format"]), "{entry}");
        assert_eq!((rewritten["bpm"].as_u64(), rewritten["keyscale"].as_str()), (Some(90), Some("A minor")), "{rewritten}");
        assert!(entry["notes"].as_array().unwrap().is_empty(), "{entry}");
        let file = entry["file"].as_str().unwrap();
        assert!(file.starts_with("/v1/audio?path=%2F"), "{file}");
        let response = server.get(file).send().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], "audio/mpeg");
        let audio = decode_bytes(&response.bytes().unwrap(), Some("mp3")).expect("an MP3");
        assert!((audio.duration_s() - 10.0).abs() < 0.1, "{} s", audio.duration_s());
    }

    // The same request as a form (as `curl -d` sends it), WAV this time.
    let form = "prompt=tape+hiss&audio_duration=10&inference_steps=2&batch_size=1&audio_format=wav&seed=7&use_random_seed=false";
    let (status, queued) = send(
        server.client.post(format!("{}/release_task", server.url)).header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(form),
    );
    assert_eq!(status, 200, "{queued}");
    let (item, result) = wait_for(&server, queued["data"]["task_id"].as_str().unwrap(), None);
    assert_eq!((item["status"].as_u64(), result.len()), (Some(1), 1), "{item}");
    assert_eq!(result[0]["seed_value"], "7");
    assert!(result[0]["file"].as_str().unwrap().ends_with(".wav"));

    let (status, stats) = send(server.get("/v1/stats"));
    assert_eq!(status, 200);
    assert_eq!(stats["data"]["jobs"]["succeeded"], 2, "{stats}");
    let (_, inventory) = send(server.get("/v1/model_inventory"));
    let turbo = inventory["data"]["models"].as_array().unwrap().iter().find(|m| m["name"] == "acestep-v15-turbo").unwrap().clone();
    assert_eq!((turbo["is_loaded"].as_bool(), turbo["is_default"].as_bool()), (Some(true), Some(true)), "{inventory}");
    assert_eq!(turbo["supported_task_types"], json!(["text2music", "repaint", "cover"]));
}

/// A cover of an uploaded file, in the multipart form: the upload is decoded, used, recorded in
/// the recipe by its name, and never left on the server's disk.
#[test]
fn a_multipart_upload_is_the_source_of_a_cover() {
    let server = Server::start("upload", &[]);
    let (content_type, body) = multipart(
        &[("prompt", "same groove, brighter"), ("task_type", "cover"), ("audio_format", "flac"), ("batch_size", "1"), ("inference_steps", "2")],
        &[("src_audio", "my loop.wav", &wav_bytes(12.0))],
    );
    let (status, queued) = send(server.client.post(format!("{}/release_task", server.url)).header(CONTENT_TYPE, content_type).body(body));
    assert_eq!(status, 200, "{queued}");
    let (item, result) = wait_for(&server, queued["data"]["task_id"].as_str().unwrap(), None);
    assert_eq!(item["status"], 1, "{item}");
    assert_eq!(result[0]["recipe"]["source"]["path"], "upload my loop.wav");
    let audio = decode_bytes(&server.get(result[0]["file"].as_str().unwrap()).send().unwrap().bytes().unwrap(), Some("flac")).unwrap();
    assert!((audio.duration_s() - 12.0).abs() < 0.05, "the cover is the source's length: {} s", audio.duration_s());
    let left: Vec<_> = std::fs::read_dir(server.out.join(".uploads")).unwrap().collect();
    assert!(left.is_empty(), "uploads are removed once read: {left:?}");

    // An upload that is not audio is refused, naming it.
    let (content_type, body) = multipart(&[("task_type", "cover")], &[("src_audio", "notes.txt", b"not audio at all")]);
    let (status, refused) = send(server.client.post(format!("{}/release_task", server.url)).header(CONTENT_TYPE, content_type).body(body));
    assert_eq!(status, 400);
    assert!(refused["detail"].as_str().unwrap().contains("notes.txt"), "{refused}");
}

/// Every kind of bad request gets its status and a message that names the field.
#[test]
fn bad_requests_are_refused_with_the_field_named() {
    let server = Server::start("bad", &[]);
    let refused = |request: RequestBuilder, status: u16, needle: &str| {
        let (got, body) = send(request);
        assert_eq!(got, status, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(needle), "{needle:?} not in {body}");
    };
    let raw = |body: &'static str, content_type: &str| {
        server.client.post(format!("{}/release_task", server.url)).header(CONTENT_TYPE, content_type).body(body)
    };
    refused(raw("{\"prompt\": ", "application/json"), 400, "Malformed JSON");
    refused(raw("[1, 2]", "application/json"), 400, "must be an object");
    refused(raw("just words", "text/plain"), 415, "Unsupported Content-Type");
    refused(server.post_json("/release_task", json!({"prompt": "x", "bpm": 1000})), 400, "bpm");
    refused(server.post_json("/release_task", json!({"prompt": "x", "inference_stepz": 8})), 400, "inference_stepz");
    refused(server.post_json("/release_task", json!({"prompt": "x", "full_analysis_only": true})), 400, "full_analysis_only");
    refused(server.post_json("/release_task", json!({"prompt": "x", "audio_format": "opus"})), 400, "audio_format");
    refused(server.post_json("/release_task", json!({"task_type": "cover", "src_audio_path": "/home/me/loop.wav"})), 400, "multipart");
    refused(server.post_json("/query_result", json!({"task_id_list": [1]})), 400, "task_id_list");
    refused(server.post_json("/cancel_task", json!({})), 400, "task_id");

    // A task id this server never issued ends the poll (status 2) instead of leaving it waiting.
    let (status, body) = send(server.post_json("/query_result", json!({ "task_id_list": "[\"nope\"]" })));
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["status"], 2, "{body}");
    assert!(body["data"][0]["result"].as_str().unwrap().contains("no task nope"));
}

/// With a key: `/health` stays open (acestep.sh calls it bare); everything else wants the key in
/// the header or as `ai_token`. `/v1/audio` serves the server's own results and nothing else.
/// Bodies over the upload limit get 413; a full queue 429; a cancelled task reads as ended.
#[test]
fn keys_paths_and_limits_are_enforced() {
    let server = Server::start("auth", &["--api-key", "s3cret", "--max-upload-mb", "1", "--max-queue", "1"]);
    let bearer = |r: RequestBuilder| r.header(AUTHORIZATION, "Bearer s3cret");
    assert_eq!(send(server.get("/health")).0, 200);
    let job = json!({"prompt": "x", "audio_duration": 10, "inference_steps": 2, "batch_size": 1, "audio_format": "wav"});
    let (status, body) = send(server.post_json("/release_task", job.clone()));
    assert_eq!((status, body["detail"].as_str()), (401, Some("Missing ai_token or Authorization header")));
    let wrong = server.post_json("/release_task", job.clone()).header(AUTHORIZATION, "Bearer guess");
    assert_eq!(send(wrong).1["detail"], "Invalid API key");
    let mut with_token = job.clone();
    with_token["ai_token"] = json!("guess");
    assert_eq!(send(bearer(server.post_json("/release_task", with_token))).1["detail"], "Invalid ai_token", "the body's token wins");
    assert_eq!(send(server.get("/v1/stats")).0, 401);

    let mut with_token = job.clone();
    with_token["ai_token"] = json!("s3cret");
    let (status, queued) = send(server.post_json("/release_task", with_token));
    assert_eq!(status, 200, "{queued}");
    let first = queued["data"]["task_id"].as_str().unwrap().to_owned();
    let (status, full) = send(bearer(server.post_json("/release_task", job.clone())));
    assert_eq!(status, 429, "one job queued or running is the limit: {full}");
    let (item, _) = wait_for(&server, &first, Some("s3cret"));
    assert_eq!(item["status"], 1, "{item}");

    // Cancel: a queued or running task ends as cancelled; an ended one cannot be.
    let (_, queued) = send(bearer(server.post_json("/release_task", json!({"prompt": "y", "audio_duration": 240, "inference_steps": 8, "batch_size": 1}))));
    let second = queued["data"]["task_id"].as_str().unwrap().to_owned();
    let (status, cancel) = send(bearer(server.post_json("/cancel_task", json!({ "task_id": second }))));
    assert_eq!((status, cancel["data"]["cancelled"].as_bool()), (200, Some(true)), "{cancel}");
    let (item, result) = wait_for(&server, &second, Some("s3cret"));
    assert_eq!((item["status"].as_u64(), result[0]["stage"].as_str()), (Some(2), Some("cancelled")), "{item}");
    let (_, again) = send(bearer(server.post_json("/cancel_task", json!({ "task_id": second }))));
    assert_eq!(again["data"]["cancelled"], false);

    // What /v1/audio serves.
    let (_, body) = send(bearer(server.post_json("/query_result", json!({ "task_id_list": [first] }))));
    let result: Vec<Value> = serde_json::from_str(body["data"][0]["result"].as_str().unwrap()).unwrap();
    let file = result[0]["file"].as_str().unwrap();
    assert_eq!(send(server.get(file)).0, 401, "the header is needed");
    assert_eq!(bearer(server.get(file)).send().unwrap().status().as_u16(), 200);
    std::fs::write(server.out.join("planted.wav"), b"RIFF").unwrap();
    let outside = scratch("outside").join("x.wav");
    std::fs::write(&outside, b"RIFF").unwrap();
    for path in [
        "/etc/passwd".to_owned(),
        format!("{}/../checkpoints/vae/config.json", server.out.display()),
        server.out.join("planted.wav").display().to_string(),
        outside.display().to_string(),
    ] {
        let url = format!("/v1/audio?path={}", path.replace('/', "%2F"));
        let (status, body) = send(bearer(server.get(&url)));
        assert_eq!(status, 403, "{path}: {body}");
    }
    assert_eq!(send(bearer(server.get(&format!("/v1/audio?path={}%2Fgone.wav", server.out.display())))).0, 404);

    // Two megabytes of upload against a one-megabyte limit.
    let (content_type, body) = multipart(&[("task_type", "cover")], &[("src_audio", "big.wav", &vec![0u8; 2 << 20])]);
    let (status, body) = send(bearer(server.client.post(format!("{}/release_task", server.url)).header(CONTENT_TYPE, content_type).body(body)));
    assert_eq!(status, 413, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("1 MB"), "{body}");
}

/// The job form: `/v1/music/generate` queues (unwrapped, `job_id`), `/v1/jobs/{id}` reports the
/// queue, progress and the result's paths, which download; cancel ends a job as failed with
/// `cancelled`; an unknown id is 404.
#[test]
fn the_job_form_queues_reports_and_cancels() {
    let server = Server::start("jobs", &[]);
    let body = json!({"caption": "brushed snare", "audio_duration": 10, "inference_steps": 2, "batch_size": 1, "audio_format": "wav"});
    let (status, queued) = send(server.post_json("/v1/music/generate", body));
    assert_eq!(status, 200, "{queued}");
    assert_eq!((queued["status"].as_str(), queued["queue_position"].as_u64()), (Some("queued"), Some(1)), "{queued}");
    let id = queued["job_id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    let job = loop {
        let (status, job) = send(server.get(&format!("/v1/jobs/{id}")));
        assert_eq!(status, 200, "{job}");
        match job["status"].as_str().unwrap() {
            "queued" => assert!(job["eta_seconds"].as_f64().is_some(), "{job}"),
            "running" => assert!(job["eta_seconds"].is_null()),
            _ => break job,
        }
        assert!(start.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    let result = &job["result"];
    assert_eq!(result["first_audio_path"], result["audio_paths"][0]);
    assert!(result["second_audio_path"].is_null());
    assert_eq!(result["metas"]["prompt"], "brushed snare");
    let wav = server.get(result["audio_paths"][0].as_str().unwrap()).send().unwrap().bytes().unwrap();
    assert!((decode_bytes(&wav, Some("wav")).unwrap().duration_s() - 10.0).abs() < 0.01);

    let (_, queued) = send(server.post_json("/v1/music/generate", json!({"caption": "long", "audio_duration": 240, "inference_steps": 8, "batch_size": 1})));
    let long = queued["job_id"].as_str().unwrap().to_owned();
    let (status, cancel) = send(server.client.post(format!("{}/v1/jobs/{long}/cancel", server.url)));
    assert_eq!((status, cancel["cancelled"].as_bool()), (200, Some(true)), "{cancel}");
    let ended = loop {
        let (_, job) = send(server.get(&format!("/v1/jobs/{long}")));
        if job["status"] != "queued" && job["status"] != "running" {
            break job;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!((ended["status"].as_str(), ended["cancelled"].as_bool()), (Some("failed"), Some(true)), "{ended}");
    let (status, missing) = send(server.get("/v1/jobs/nope"));
    assert_eq!((status, missing["detail"].as_str()), (404, Some("Job not found")));
}

/// The chat form as acestep.sh's default completion mode uses it: the model id from
/// `/v1/models`' first entry, a tagged prompt, the audio back as a base64 data URL of the asked
/// format and length; a cover from an `input_audio` part; what cannot be done refused.
#[test]
fn the_chat_form_answers_as_ace_steps_client_reads_it() {
    use base64::Engine as _;
    let server = Server::start("chat", &[]);
    let (status, models) = send(server.get("/v1/models"));
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    let model = models["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(model, "acestep/acestep-v15-turbo", "the default model first: {models}");
    assert_eq!(send(server.get("/api/v1/models")).1, models, "the same list under /api");

    let body = json!({"model": model, "messages": [{"role": "user", "content": "<prompt>lofi keys</prompt><lyrics>[verse]\nhello</lyrics>"}],
        "stream": false, "thinking": true, "use_format": false, "sample_mode": false, "use_cot_caption": false, "use_cot_language": false,
        "audio_config": {"format": "mp3", "vocal_language": "en", "duration": 10}, "inference_steps": 2});
    let (status, reply) = send(server.post_json("/v1/chat/completions", body));
    assert_eq!(status, 200, "{reply}");
    assert!(reply["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(reply["model"], model);
    let choice = &reply["choices"][0];
    assert_eq!(choice["finish_reason"], "stop");
    let content = choice["message"]["content"].as_str().unwrap();
    assert!(content.contains("**Caption:** lofi keys") && content.contains("## Lyrics\n[verse]\nhello"), "{content}");
    let codes = choice["message"]["audio_codes"].as_str().expect("the LM planned: its codes come back");
    assert!(!content.contains("5 Hz LM"), "no note: the LM ran: {content}");
    assert_eq!(codes.matches("<|audio_code_").count(), 50, "10 s of codes: {codes}");
    let url = choice["message"]["audio"][0]["audio_url"]["url"].as_str().unwrap();
    let encoded = url.strip_prefix("data:audio/mpeg;base64,").expect("an MP3 data URL");
    let mp3 = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    assert!((decode_bytes(&mp3, Some("mp3")).unwrap().duration_s() - 10.0).abs() < 0.1);

    // A cover of the audio in the message, as `acestep.sh --src-audio` sends it (raw base64).
    let source = base64::engine::general_purpose::STANDARD.encode(wav_bytes(12.0));
    let body = json!({"model": model, "task_type": "cover", "inference_steps": 2, "audio_config": {"format": "wav"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "<prompt>brighter</prompt>"},
            {"type": "input_audio", "input_audio": {"data": source, "format": "wav"}}]}]});
    let (status, reply) = send(server.post_json("/v1/chat/completions", body));
    assert_eq!(status, 200, "{reply}");
    let url = reply["choices"][0]["message"]["audio"][0]["audio_url"]["url"].as_str().unwrap();
    let wav = base64::engine::general_purpose::STANDARD.decode(url.strip_prefix("data:audio/wav;base64,").unwrap()).unwrap();
    assert!((decode_bytes(&wav, Some("wav")).unwrap().duration_s() - 12.0).abs() < 0.01, "the cover is the source's length");

    for (body, needle) in [
        (json!({"model": model, "messages": [{"role": "user", "content": "x"}], "stream": true}), "stream"),
        (json!({"model": model, "messages": []}), "user message"),
        (json!({"model": model, "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "%%%"}}]}]}), "base64"),
    ] {
        let (status, refused) = send(server.post_json("/v1/chat/completions", body));
        assert_eq!(status, 400, "{refused}");
        assert!(refused["detail"].as_str().unwrap().contains(needle), "{needle:?}: {refused}");
    }
}

/// Events until the job's end, and its result.
fn follow(handle: &backline_engine::job::JobHandle<backline_engine::pipeline::Generation>) -> (Vec<String>, Result<backline_engine::pipeline::Generation, String>) {
    use backline_engine::job::JobEvent;
    let mut seen = Vec::new();
    loop {
        let event = handle.events().recv_timeout(Duration::from_secs(300)).expect("the job ends");
        let name = match &event {
            JobEvent::Queued { .. } => "queued".to_owned(),
            JobEvent::Started => "started".to_owned(),
            JobEvent::Loading { .. } => "loading".to_owned(),
            JobEvent::Stage { name } => format!("stage {name}"),
            JobEvent::Step { index, count } => format!("step {index}/{count}"),
            JobEvent::Done(_) => "done".to_owned(),
            JobEvent::Failed(e) => format!("failed {e}"),
            JobEvent::Cancelled => "cancelled".to_owned(),
        };
        seen.push(name);
        match event {
            JobEvent::Done(generation) => return (seen, Ok(generation)),
            JobEvent::Failed(e) => return (seen, Err(e.to_string())),
            JobEvent::Cancelled => return (seen, Err("cancelled".into())),
            _ => {}
        }
    }
}

fn remote(server: &Server, form: ApiForm, key: Option<&str>) -> RemoteBackend {
    let mut settings = RemoteSettings::new(server.url.clone());
    settings.form = Some(form);
    settings.api_key = key.map(str::to_owned);
    settings.poll_every = Duration::from_millis(50);
    RemoteBackend::new(settings).unwrap()
}

fn text_job(seconds: f64, steps: u32) -> JobRequest {
    JobRequest::new(
        GenerationRequest::from_value(json!({"caption": "remote groove", "duration": seconds, "inference_steps": steps,
            "batch_size": 1, "seed": 3, "use_random_seed": false}))
        .unwrap(),
    )
}

/// The remote backend against `backline serve` in each of the three forms gives the audio the
/// local backend gives for the same request, sample for sample (results travel as float WAV),
/// with the same kind of events; a captured region goes up as samples and comes back covered.
#[test]
fn the_remote_backend_gives_what_the_local_one_gives_in_every_form() {
    let server = Server::start("remote", &[]);
    let local = LocalBackend::new(LocalSettings { precision: Precision::F32, ..LocalSettings::cpu(&server.checkpoints) }).unwrap();
    let (_, expected) = follow(&local.submit(text_job(10.0, 2)));
    let expected = expected.unwrap();
    for form in [ApiForm::Native, ApiForm::Jobs, ApiForm::Chat] {
        let backend = remote(&server, form, None);
        let models = backend.models().unwrap();
        let turbo = models.dits.iter().find(|d| d.name == "acestep-v15-turbo").unwrap_or_else(|| panic!("{form:?}: {models:?}"));
        assert!(turbo.tasks.contains(&TaskType::Text2Music));
        let (events, result) = follow(&backend.submit(text_job(10.0, 2)));
        let generation = result.unwrap_or_else(|e| panic!("{form:?}: {e}"));
        assert_eq!(events.first().map(String::as_str), Some("queued"), "{form:?}: {events:?}");
        assert!(events.contains(&"started".to_owned()), "{form:?}: {events:?}");
        if form != ApiForm::Chat {
            // Stages as the server reports them (steps too, where a poll lands on one: the
            // cancel test waits for one).
            assert!(events.iter().any(|e| e == "stage decode"), "{form:?}: the server's stages: {events:?}");
            assert_eq!((&generation.recipe.request, &generation.recipe.models), (&expected.recipe.request, &expected.recipe.models), "{form:?}: the server's own recipe");
        }
        assert_eq!(generation.audio.len(), 1);
        assert!(generation.audio[0] == expected.audio[0], "{form:?}: not the local audio sample for sample");
    }

    // A captured region in memory, covered through the server.
    let region = AudioBuffer::new(44_100, vec![vec![0.2; 44_100 * 12]; 2]);
    for form in [ApiForm::Native, ApiForm::Chat] {
        let mut job = JobRequest::new(
            GenerationRequest::from_value(json!({"task_type": "cover", "caption": "x", "inference_steps": 2, "batch_size": 1})).unwrap(),
        );
        job = job.with_source(AudioInput::samples("capture, bars 1-8", region.clone()));
        let (_, result) = follow(&remote(&server, form, None).submit(job));
        let generation = result.unwrap_or_else(|e| panic!("{form:?}: {e}"));
        assert!((generation.audio[0].duration_s() - 12.0).abs() < 0.01, "{form:?}: {} s", generation.audio[0].duration_s());
    }

    // The LM's format mode through the server's /format_input writes what the local LM writes.
    let given = GivenMetas { bpm: Some("100".into()), keyscale: Some("E minor".into()), ..GivenMetas::default() };
    let format = DescribeRequest {
        mode: DescribeMode::Format { caption: "pop rock".into(), lyrics: "la".into(), given },
        sampling: LmSampling { temperature: 0.85, top_k: None, top_p: None, repetition_penalty: 1.0 },
        seed: 4,
    };
    let here = local.describe(&format, &AtomicBool::new(false)).unwrap().description;
    let there = remote(&server, ApiForm::Native, None).describe(&format, &AtomicBool::new(false)).unwrap().description;
    assert_eq!((&there.plan.caption, &there.lyrics), (&here.plan.caption, &here.lyrics), "the server's LM wrote what the local one did");
    assert_eq!(there.plan.bpm, Some(LmValue::Int(100)), "the given bpm is kept");
    let understand = DescribeRequest { mode: DescribeMode::Understand { audio_codes: "<|audio_code_5|>".into() }, ..format };
    let refused = remote(&server, ApiForm::Native, None).describe(&understand, &AtomicBool::new(false)).unwrap_err();
    assert!(refused.to_string().contains("no route"), "{refused}");
}

/// Cancel reaches the server; a server that is down, or that wants a key the backend lacks, is
/// a failed job with the reason, never a hang.
#[test]
fn the_remote_backend_cancels_and_reports_what_went_wrong() {
    let server = Server::start("remote-bad", &["--api-key", "k"]);
    let backend = remote(&server, ApiForm::Native, Some("k"));
    let handle = backend.submit(text_job(240.0, 8));
    loop {
        match handle.events().recv_timeout(Duration::from_secs(120)).unwrap() {
            backline_engine::job::JobEvent::Step { .. } => break,
            e if e.is_terminal() => panic!("ended before a step: {e:?}"),
            _ => {}
        }
    }
    assert!(handle.cancel());
    let (_, result) = follow(&handle);
    assert_eq!(result.err().as_deref(), Some("cancelled"));
    let start = Instant::now();
    loop {
        let (_, stats) = send(server.get("/v1/stats").header(AUTHORIZATION, "Bearer k"));
        if stats["data"]["jobs"]["cancelled"] == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the server's task was not cancelled: {stats}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (_, result) = follow(&remote(&server, ApiForm::Native, None).submit(text_job(10.0, 2)));
    let error = result.unwrap_err();
    assert!(error.contains("401") && error.contains("Missing ai_token"), "{error}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut settings = RemoteSettings::new(format!("http://{closed}"));
    settings.form = Some(ApiForm::Native);
    let (_, result) = follow(&RemoteBackend::new(settings).unwrap().submit(text_job(10.0, 2)));
    let error = result.unwrap_err();
    assert!(error.contains("not answering"), "{error}");
}

/// `backline generate --remote` in each form writes the files a local run writes for the same
/// flags, sample for sample: both items of a batch, named by their seeds.
#[test]
fn generate_with_remote_writes_what_a_local_run_writes() {
    let server = Server::start("remote-cli", &[]);
    let dir = scratch("remote-cli-out");
    let generate = |out: &str, extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_backline"))
            .args(["generate", "--caption", "remote groove", "--duration", "10", "--inference-steps", "2", "--seed", "5"])
            .args(["--batch-size", "2", "--format", "wav", "--name", "take", "--precision", "f32", "--out"])
            .arg(dir.join(out))
            .args(extra)
            .env_remove("BACKLINE_REMOTE_API_KEY")
            .output()
            .unwrap();
        assert!(output.status.success(), "{out}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let checkpoints = server.checkpoints.display().to_string();
    generate("local", &["--checkpoints", &checkpoints]);
    for form in ["native", "jobs", "chat"] {
        generate(form, &["--remote", &server.url, "--api-form", form]);
        for seed in [5, 6] {
            let file = format!("take-{seed}.wav");
            let local = std::fs::read(dir.join("local").join(&file)).unwrap();
            let remote = std::fs::read(dir.join(form).join(&file)).unwrap_or_else(|e| panic!("{form}: {file}: {e}"));
            assert!(local == remote, "{form}: {file} differs from the local run's");
            let recipe: Value = serde_json::from_slice(&std::fs::read(dir.join(form).join(format!("take-{seed}.json"))).unwrap()).unwrap();
            assert_eq!(recipe["request"]["seed"], json!([seed]), "{form}: {recipe}");
        }
    }
}

/// The hosted endpoints' shapes over multipart: `tags` as the caption and an out-paint that
/// extends a 12 s upload by 4 s before and 6 s after (22 s back); an in-paint window counted
/// back from the source's end (the source's length back). `/v1/init` switches the model that
/// requests without one run on; the LM's routes and switches are refused with the reason; a
/// random sample comes in upstream's shape.
#[test]
fn hosted_shapes_and_the_model_routes() {
    let server = Server::start("hosted", &[]);
    let submit = |fields: &[(&str, &str)]| {
        let (content_type, body) = multipart(fields, &[("src_audio", "verse.wav", &wav_bytes(12.0))]);
        let (status, queued) = send(server.client.post(format!("{}/release_task", server.url)).header(CONTENT_TYPE, content_type).body(body));
        assert_eq!(status, 200, "{queued}");
        let (item, result) = wait_for(&server, queued["data"]["task_id"].as_str().unwrap(), None);
        assert_eq!(item["status"], 1, "{item}");
        let audio = decode_bytes(&server.get(result[0]["file"].as_str().unwrap()).send().unwrap().bytes().unwrap(), Some("wav")).unwrap();
        (result[0].clone(), audio.duration_s())
    };
    let common = [("audio_format", "wav"), ("batch_size", "1"), ("number_of_steps", "2")];
    let (item, seconds) = submit(&[&common[..], &[("tags", "brighter outro"), ("extend_before_duration", "4"), ("extend_after_duration", "6")]].concat());
    assert!((seconds - 22.0).abs() < 0.05, "out-painted to {seconds} s");
    let request = &item["recipe"]["request"];
    assert_eq!((request["caption"].as_str(), request["task_type"].as_str()), (Some("brighter outro"), Some("repaint")));
    assert_eq!((request["repainting_start"].as_f64(), request["repainting_end"].as_f64()), (Some(-4.0), Some(18.0)));
    let (item, seconds) = submit(&[&common[..], &[("tags", "new ending"), ("start_time", "5"), ("start_time_relative_to", "end")]].concat());
    assert!((seconds - 12.0).abs() < 0.05, "in-painted to {seconds} s");
    assert_eq!(item["recipe"]["request"]["repainting_start"].as_f64(), Some(7.0));
    let (content_type, body) = multipart(&[("tags", "x"), ("start_time", "1"), ("extend_after_duration", "3")], &[("src_audio", "a.wav", &wav_bytes(12.0))]);
    let (status, refused) = send(server.client.post(format!("{}/release_task", server.url)).header(CONTENT_TYPE, content_type).body(body));
    assert_eq!(status, 400);
    assert!(refused["detail"].as_str().unwrap().contains("cannot be mixed"), "{refused}");

    // /v1/init: a model that is not here, slot 2 and the LM are refused; a real one becomes the
    // default that requests without `model` run on.
    let (_, inventory) = send(server.get("/v1/model_inventory"));
    let other = inventory["data"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .find(|n| n != "acestep-v15-turbo")
        .expect("the tiny set has a second DiT");
    for (body, needle) in [
        (json!({"model": "acestep-v15-nothing"}), "acestep-v15-nothing"),
        (json!({"model": other, "slot": 2}), "slot"),
        (json!({"lm_model_path": "/models/acestep-5Hz-lm-4B"}), "acestep-5Hz-lm-0.6B"),
    ] {
        let (status, refused) = send(server.post_json("/v1/init", body));
        assert_eq!(status, 400, "{refused}");
        assert!(refused["detail"].as_str().unwrap().contains(needle), "{needle}: {refused}");
    }
    let (status, init) = send(server.post_json("/v1/init", json!({"model": other, "init_llm": true})));
    assert_eq!(status, 200, "{init}");
    assert_eq!(init["data"]["llm_initialized"], true, "the tiny set has an LM: {init}");
    assert_eq!(init["data"]["lm_models"], json!(["acestep-5Hz-lm-0.6B"]));
    assert_eq!(init["data"]["loaded_model"].as_str(), Some(other.as_str()), "{init}");
    let (_, queued) = send(server.post_json("/release_task", json!({"prompt": "on the chosen model", "audio_duration": 10, "batch_size": 1, "inference_steps": 2, "audio_format": "wav"})));
    let (_, result) = wait_for(&server, queued["data"]["task_id"].as_str().unwrap(), None);
    assert_eq!(result[0]["dit_model"].as_str(), Some(other.as_str()), "{:?}", result[0]);

    // The LM's routes, as upstream's clients send them: the given metas come back as given.
    let param_obj = json!({"bpm": 100, "duration": 30, "key": "E minor", "time_signature": "3"}).to_string();
    let (status, formatted) = send(server.post_json("/format_input", json!({"prompt": "pop rock", "lyrics": "la", "param_obj": param_obj, "seed": 4})));
    assert_eq!(status, 200, "{formatted}");
    let data = &formatted["data"];
    assert_eq!((data["bpm"].as_i64(), data["duration"].as_f64(), data["key_scale"].as_str()), (Some(100), Some(30.0), Some("E minor")), "{data}");
    assert_eq!(data["time_signature"], "3", "{data}");
    assert!(!data["caption"].as_str().unwrap().is_empty() && !data["lyrics"].as_str().unwrap().is_empty(), "{data}");
    let (status, sample) = send(server.post_json("/v1/create_sample", json!({"query": "a rainy night", "vocal_language": "ja", "seed": 5})));
    assert_eq!(status, 200, "{sample}");
    assert_eq!(sample["data"]["vocal_language"], "ja", "the language asked is written: {sample}");
    let (status, refused) = send(server.post_json("/format_input", json!({"prompt": "x", "temperature": 9})));
    assert_eq!(status, 400, "{refused}");
    for (kind, lyrics_may_be_empty) in [("simple_mode", true), ("custom_mode", false)] {
        let (status, sample) = send(server.post_json("/create_random_sample", json!({"sample_type": kind})));
        assert_eq!(status, 200, "{sample}");
        let data = &sample["data"];
        assert!(!data["caption"].as_str().unwrap().is_empty() && data["bpm"].as_u64().is_some() && data["duration"].as_u64().is_some(), "{data}");
        if !lyrics_may_be_empty && !data["instrumental"].as_bool().unwrap() {
            assert!(!data["lyrics"].as_str().unwrap().is_empty(), "{data}");
        }
        if lyrics_may_be_empty {
            assert_eq!(data["lyrics"], "", "simple mode gives a description only: {data}");
        }
    }
    let (status, _) = send(server.post_json("/create_random_sample", json!({"sample_type": "odd"})));
    assert_eq!(status, 400);
}

/// A bounded load: 8 clients send 200 submissions in all, in the three forms' JSON, as fast as
/// they can, to a server that queues at most 4; meanwhile a ninth client asks `/health` over and
/// over. Every submission is accepted or refused with 429, every accepted job ends (done or
/// failed with a reason; none is lost or left running), and `/health` answers throughout.
#[test]
fn a_burst_of_two_hundred_requests_is_accepted_or_refused_and_every_job_ends() {
    let server = Server::start("load", &["--max-queue", "4"]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (accepted, health_answers) = std::thread::scope(|scope| {
        let health = scope.spawn(|| {
            let mut answers = 0;
            while !stop.load(Ordering::Acquire) {
                let (status, body) = send(server.get("/health"));
                assert_eq!((status, body["data"]["status"].as_str()), (200, Some("ok")), "{body}");
                answers += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            answers
        });
        let clients: Vec<_> = (0..8)
            .map(|client| {
                let server = &server;
                scope.spawn(move || {
                    let mut accepted = Vec::new();
                    for i in 0..25 {
                        let job = json!({"prompt": format!("load {client}-{i}"), "audio_duration": 10, "batch_size": 1,
                            "inference_steps": 1, "audio_format": "wav"});
                        let (path, id_at): (&str, fn(&Value) -> Option<String>) = match i % 2 {
                            0 => ("/release_task", |v: &Value| v["data"]["task_id"].as_str().map(str::to_owned)),
                            _ => ("/v1/music/generate", |v: &Value| v["job_id"].as_str().map(str::to_owned)),
                        };
                        let (status, body) = send(server.post_json(path, job));
                        match status {
                            200 => accepted.push(id_at(&body).unwrap_or_else(|| panic!("no id in {body}"))),
                            429 => {}
                            other => panic!("{path}: {other} {body}"),
                        }
                    }
                    accepted
                })
            })
            .collect();
        let accepted: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
        for id in &accepted {
            let (item, result) = wait_for(&server, id, None);
            assert!(item["status"] == 1 || result[0]["error"].as_str().is_some_and(|e| !e.is_empty()), "{item}");
        }
        stop.store(true, Ordering::Release);
        (accepted, health.join().unwrap())
    });
    assert!(!accepted.is_empty() && accepted.len() < 200, "{} of 200 accepted with a queue of 4", accepted.len());
    assert!(health_answers > 10, "/health answered only {health_answers} times");
    let (_, stats) = send(server.get("/v1/stats"));
    let jobs = &stats["data"]["jobs"];
    assert_eq!(jobs["succeeded"].as_u64().unwrap() + jobs["failed"].as_u64().unwrap(), accepted.len() as u64, "{stats}");
    assert_eq!((jobs["queued"].as_u64(), jobs["running"].as_u64()), (Some(0), Some(0)), "{stats}");
}

/// The figures in docs/benchmarks.md (run by hand: `cargo test --release --features server -p
/// backline-engine --test server measure_ -- --ignored --nocapture`): requests per second that
/// `/health` and `/query_result` answer from 4 clients while a job runs, and the time a remote
/// job adds over the same job in process. For the second, one engine serves both: the server runs
/// in this process on the very backend the in-process runs use, so the difference is HTTP,
/// polling and the WAV transport, not a second copy of the model.
#[test]
#[ignore = "a measurement, not a check: prints the request rates and remote latency that docs/benchmarks.md (The server and the remote backend) reports; run by hand with the command above"]
fn measure_request_rates_and_remote_latency() {
    let server = Server::start("measure", &[]);
    let (_, queued) = send(server.post_json("/release_task", json!({"prompt": "busy", "audio_duration": 600, "batch_size": 8, "inference_steps": 20})));
    let busy = queued["data"]["task_id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_secs(2));
    let rate = |name: &str, request: &(dyn Fn() -> RequestBuilder + Sync)| {
        let window = Duration::from_secs(5);
        let count = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let start = Instant::now();
                    while start.elapsed() < window {
                        assert_eq!(request().send().unwrap().status().as_u16(), 200);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        let rate = count.load(Ordering::Relaxed) as f64 / window.as_secs_f64();
        println!("{name}: {rate:.0} requests/s from 4 clients while a job runs");
    };
    rate("/health", &|| server.get("/health"));
    rate("/query_result", &|| server.post_json("/query_result", json!({ "task_id_list": [busy] })));
    let (_, status) = send(server.post_json("/query_result", json!({ "task_id_list": [busy] })));
    assert_eq!(status["data"][0]["status"], 0, "the job ended before the rates were measured: {status}");
    send(server.post_json("/cancel_task", json!({ "task_id": busy })));

    let local: Arc<dyn Backend> =
        Arc::new(LocalBackend::new(LocalSettings { precision: Precision::F32, ..LocalSettings::cpu(&server.checkpoints) }).unwrap());
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        api_key: None,
        max_queue: server::DEFAULT_MAX_QUEUE,
        max_upload_bytes: 64 << 20,
        out_dir: scratch("measure-in-process"),
        retention: server::DEFAULT_RETENTION,
    };
    let in_process = server::start(config, Arc::clone(&local), "cpu".into()).unwrap();
    let time = |backend: &dyn Backend| {
        let runs = 5;
        let start = Instant::now();
        for _ in 0..runs {
            follow(&backend.submit(text_job(10.0, 8))).1.unwrap();
        }
        start.elapsed().as_secs_f64() / runs as f64
    };
    time(&*local);
    for form in [ApiForm::Native, ApiForm::Jobs, ApiForm::Chat] {
        for poll_ms in [50, 500] {
            let mut settings = RemoteSettings::new(format!("http://{}", in_process.addr));
            settings.form = Some(form);
            settings.poll_every = Duration::from_millis(poll_ms);
            let there = time(&RemoteBackend::new(settings).unwrap());
            let here = time(&*local);
            println!("{form:?}, polled every {poll_ms} ms: {there:.3} s a job against {here:.3} s in process: {:+.0} ms", (there - here) * 1000.0);
        }
    }
    in_process.stop();
}
