//! [`RemoteBackend`]: the [`Backend`] contract over HTTP, to `backline serve` or any ACE-Step 1.5
//! server, in the API form it speaks: the native one (`/release_task`, `/query_result`), the job
//! form (`/v1/music/generate`, `/v1/jobs/{id}`) or the chat form (`/v1/chat/completions`),
//! chosen by setting or found by asking the server.
//!
//! Jobs run one at a time on the same job engine as the local backend, so a front end gets the
//! same events (queued, started, stage and step from the server's progress, done, failed,
//! cancelled) and cannot tell the two apart except by speed. Audio inputs are uploaded
//! (multipart, or base64 in a chat message), never named as server paths; results come back as
//! 32-bit float WAV, so nothing is lost on the way. Calls that change nothing on the server
//! (polls, downloads, model lists) are retried with backoff; a submission is retried only when it
//! never reached the server.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::{multipart, Client, RequestBuilder, Response};
use reqwest::header::AUTHORIZATION;
use serde_json::{json, Map, Value};

use super::{AudioInput, Backend, DescribeMode, DescribeRequest, Described, DitInfo, GenerationCallback, JobRequest, ModelsInfo};
use crate::audio::{decode_bytes, read_audio, write_audio, AudioBuffer, OutputFormat};
use crate::error::JobError;
use crate::job::{Engine, JobContext, JobControl, JobHandle, Worker};
use crate::lm::describe::Description;
use crate::lm::plan::{Plan, Value as PlanValue};
use crate::pipeline::recipe::{ModelFile, Recipe};
use crate::pipeline::Generation;
use crate::precision::Precision;
use crate::request::{AudioFormat, Seed};
use crate::task::{ModelKind, TaskType};

/// Which of ACE-Step's API forms to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiForm {
    Native,
    Jobs,
    Chat,
}

impl ApiForm {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "native" => Some(Self::Native),
            "jobs" | "job" => Some(Self::Jobs),
            "chat" | "completion" => Some(Self::Chat),
            _ => None,
        }
    }
}

/// Where the server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// e.g. `http://127.0.0.1:8001` (a trailing `/` is dropped).
    pub url: String,
    pub api_key: Option<String>,
    /// `None`: ask the server (`/health` answers in the native wrapper, else `/v1/models` as a
    /// chat server).
    pub form: Option<ApiForm>,
    /// How often a running job is polled.
    pub poll_every: Duration,
    /// The longest one job may take before it is given up (and cancelled on the server).
    pub job_timeout: Duration,
}

impl RemoteSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), api_key: None, form: None, poll_every: Duration::from_millis(500), job_timeout: Duration::from_secs(3600) }
    }
}

/// Tries of a call that changes nothing on the server, and the first wait between them (doubled
/// each time).
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// One HTTP exchange's limit; a chat request waits for its whole job instead.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CHAT_TIMEOUT: Duration = Duration::from_secs(660);
/// How often a wait looks at the cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// A backend on another machine.
pub struct RemoteBackend {
    engine: Engine<RemoteWorker>,
    http: Http,
    settings: RemoteSettings,
}

impl RemoteBackend {
    /// Starts the backend's worker thread. Nothing is sent until the first call.
    pub fn new(settings: RemoteSettings) -> std::io::Result<Self> {
        let mut settings = settings;
        settings.url = settings.url.trim_end_matches('/').to_owned();
        let http = Http::new(&settings)?;
        let worker = RemoteWorker { http: http.clone(), settings: settings.clone(), form: settings.form };
        let engine = Engine::start(move || Ok::<_, String>(worker))?;
        Ok(Self { engine, http, settings })
    }

    pub fn settings(&self) -> &RemoteSettings {
        &self.settings
    }

    /// The form the server speaks (asking it when the settings leave it open).
    pub fn form(&self) -> Result<ApiForm, JobError> {
        match self.settings.form {
            Some(form) => Ok(form),
            None => detect_form(&self.http),
        }
    }
}

impl Backend for RemoteBackend {
    fn submit(&self, job: JobRequest) -> JobHandle<Generation> {
        self.engine.submit(job)
    }

    fn submit_with(&self, job: JobRequest, on_event: GenerationCallback) -> JobControl {
        self.engine.submit_with(job, on_event)
    }

    fn models(&self) -> Result<ModelsInfo, JobError> {
        let dits = match self.form()? {
            ApiForm::Chat => {
                let list = self.http.get_json("/v1/models")?;
                let ids = list["data"].as_array().cloned().unwrap_or_default();
                ids.iter()
                    .filter_map(|m| m["id"].as_str())
                    .map(|id| dit_info(id.split_once('/').map_or(id, |(_, n)| n), None, false))
                    .collect()
            }
            ApiForm::Native | ApiForm::Jobs => {
                let inventory = self.http.get_json("/v1/model_inventory")?;
                let models = inventory["data"]["models"].as_array().cloned().unwrap_or_default();
                models
                    .iter()
                    .filter_map(|m| {
                        let tasks: Option<Vec<TaskType>> = m["supported_task_types"]
                            .as_array()
                            .map(|list| list.iter().filter_map(|t| serde_json::from_value(t.clone()).ok()).collect());
                        Some(dit_info(m["name"].as_str()?, tasks, m["is_loaded"].as_bool() == Some(true)))
                    })
                    .collect()
            }
        };
        Ok(ModelsInfo {
            checkpoints: PathBuf::from(&self.settings.url),
            dits,
            lm_models: Vec::new(),
            shared_problem: None,
            resident: Vec::new(),
            budget_bytes: 0,
            precision: Precision::F32,
            shared_footprint: None,
        })
    }

    /// Format and sample mode through the server's `/format_input` and `/v1/create_sample`
    /// (temperature and seed are sent; those routes take no other sampling settings).
    /// Understanding has no route in ACE-Step's API.
    fn describe(&self, request: &DescribeRequest, _cancel: &std::sync::atomic::AtomicBool) -> Result<Described, JobError> {
        let temperature = request.sampling.temperature;
        let (path, body) = match &request.mode {
            DescribeMode::Format { caption, lyrics, given } => {
                let number = |v: &Option<String>| v.as_deref().and_then(|n| n.parse::<f64>().ok());
                let params = json!({
                    "bpm": number(&given.bpm), "duration": number(&given.duration), "key": given.keyscale,
                    "time_signature": given.timesignature, "language": given.language,
                });
                let body = json!({"prompt": caption, "lyrics": lyrics, "temperature": temperature, "seed": request.seed, "param_obj": params});
                ("/format_input", body)
            }
            DescribeMode::Inspire { query, instrumental, language } => {
                let language = language.clone().unwrap_or_else(|| "unknown".into());
                let body = json!({"query": query, "instrumental": instrumental, "vocal_language": language, "temperature": temperature, "seed": request.seed});
                ("/v1/create_sample", body)
            }
            DescribeMode::Understand { .. } => {
                return Err(self.http.error(None, "ACE-Step's API has no route that understands audio codes: run it on this machine's engine"))
            }
        };
        let url = format!("{}{path}", self.http.base);
        let response = self.http.send(false, || self.http.client.post(&url).json(&body).timeout(CHAT_TIMEOUT))?;
        let answer = self.http.json(response)?;
        if answer["code"].as_u64().is_some_and(|c| c != 200) {
            return Err(self.http.error(answer["code"].as_u64().map(|c| c as u16), answer["error"].as_str().unwrap_or("failed").to_owned()));
        }
        let data = &answer["data"];
        let text = |keys: &[&str]| keys.iter().find_map(|k| data[*k].as_str()).filter(|t| !t.is_empty()).map(str::to_owned);
        let whole = |key: &str| data[key].as_f64().map(|n| PlanValue::Int(n as i64));
        let plan = Plan {
            bpm: whole("bpm"),
            caption: text(&["caption"]),
            duration: whole("duration"),
            genres: None,
            keyscale: text(&["key_scale", "keyscale"]),
            language: text(&["vocal_language"]),
            timesignature: text(&["time_signature", "timesignature"]),
        };
        let description = Description { plan, lyrics: text(&["lyrics"]).unwrap_or_default(), text: String::new(), tokens: Vec::new() };
        Ok(Described { model: self.settings.url.clone(), description })
    }
}

fn dit_info(name: &str, tasks: Option<Vec<TaskType>>, loaded: bool) -> DitInfo {
    let kind = ModelKind::from_folder_name(name);
    let tasks = tasks.unwrap_or_else(|| TaskType::ALL.into_iter().filter(|&t| kind.runs(t)).collect());
    DitInfo { name: name.to_owned(), kind: Some(kind), tasks, bytes: 0, footprint: None, loaded, problem: None }
}

fn detect_form(http: &Http) -> Result<ApiForm, JobError> {
    if let Ok(health) = http.get_json("/health") {
        if health.get("data").is_some_and(Value::is_object) {
            return Ok(ApiForm::Native);
        }
    }
    match http.get_json("/v1/models") {
        Ok(list) if list["object"] == "list" => Ok(ApiForm::Chat),
        Ok(_) => Err(http.error(None, "it answers, but not as an ACE-Step server (neither /health nor /v1/models)")),
        Err(e) => Err(e),
    }
}

/// The HTTP side: the client, the base URL and the key.
#[derive(Clone)]
struct Http {
    client: Client,
    base: String,
    key: Option<String>,
}

impl Http {
    fn new(settings: &RemoteSettings) -> std::io::Result<Self> {
        let client = Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| std::io::Error::other(format!("cannot build the HTTP client: {e}")))?;
        let key = settings.api_key.clone().filter(|k| !k.is_empty());
        Ok(Self { client, base: settings.url.clone(), key })
    }

    fn error(&self, status: Option<u16>, message: impl Into<String>) -> JobError {
        JobError::Remote { url: self.base.clone(), status, message: message.into() }
    }

    fn with_key(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.key {
            Some(key) => request.header(AUTHORIZATION, format!("Bearer {key}")),
            None => request,
        }
    }

    /// Sends, retrying what never reached the server (refused or unreachable) and, when
    /// `idempotent`, timeouts and 5xx answers too.
    fn send(&self, idempotent: bool, build: impl Fn() -> RequestBuilder) -> Result<Response, JobError> {
        let mut wait = FIRST_BACKOFF;
        for attempt in 1..=RETRIES {
            let last = attempt == RETRIES;
            match self.with_key(build()).send() {
                Ok(response) if response.status().is_server_error() && idempotent && !last => {}
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().unwrap_or_default();
                    let detail = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["detail"].as_str().or(v["error"].as_str()).map(str::to_owned))
                        .unwrap_or(text);
                    return Err(self.error(Some(status), detail));
                }
                Err(e) if !last && (e.is_connect() || (idempotent && e.is_timeout())) => {}
                Err(e) if e.is_connect() => return Err(self.error(None, format!("not answering ({})", root_cause(&e)))),
                Err(e) => return Err(self.error(None, root_cause(&e))),
            }
            std::thread::sleep(wait);
            wait *= 2;
        }
        unreachable!("the last attempt returns")
    }

    fn json(&self, response: Response) -> Result<Value, JobError> {
        let text = response.text().map_err(|e| self.error(None, e.to_string()))?;
        serde_json::from_str(&text).map_err(|_| self.error(None, format!("not JSON: {}", text.chars().take(200).collect::<String>())))
    }

    fn get_json(&self, path: &str) -> Result<Value, JobError> {
        let url = format!("{}{path}", self.base);
        let response = self.send(true, || self.client.get(&url))?;
        self.json(response)
    }

    fn post_json(&self, path: &str, body: &Value, idempotent: bool) -> Result<Value, JobError> {
        let url = format!("{}{path}", self.base);
        let response = self.send(idempotent, || self.client.post(&url).json(body))?;
        self.json(response)
    }

    /// A root-relative file URL from a result, fetched.
    fn download(&self, file: &str) -> Result<Vec<u8>, JobError> {
        let url = if file.starts_with("http://") || file.starts_with("https://") { file.to_owned() } else { format!("{}{file}", self.base) };
        let response = self.send(true, || self.client.get(&url).timeout(CHAT_TIMEOUT))?;
        response.bytes().map(|b| b.to_vec()).map_err(|e| self.error(None, format!("downloading {file}: {e}")))
    }
}

/// The worker: one job at a time, over HTTP.
struct RemoteWorker {
    http: Http,
    settings: RemoteSettings,
    /// Found on the first job when the settings leave it open.
    form: Option<ApiForm>,
}

impl Worker for RemoteWorker {
    type Request = JobRequest;
    type Output = Generation;

    fn run(&mut self, job: JobRequest, ctx: &JobContext<'_>) -> Result<Generation, JobError> {
        let form = match self.form {
            Some(form) => form,
            None => {
                let form = detect_form(&self.http)?;
                self.form = Some(form);
                form
            }
        };
        let inputs = Inputs::read(&job)?;
        ctx.check_cancelled()?;
        match form {
            ApiForm::Native | ApiForm::Jobs => self.run_polled(form, job, &inputs, ctx),
            ApiForm::Chat => self.run_chat(job, &inputs, ctx),
        }
    }
}

/// A job's audio inputs as the bytes to upload.
struct Inputs {
    source: Option<(String, Vec<u8>)>,
    reference: Option<(String, Vec<u8>)>,
}

impl Inputs {
    fn read(job: &JobRequest) -> Result<Self, JobError> {
        let source = job.src.clone().or_else(|| job.request.src_audio.clone().map(|p| AudioInput::File(p.into())));
        let reference = job.reference.clone().or_else(|| job.request.reference_audio.clone().map(|p| AudioInput::File(p.into())));
        Ok(Self { source: source.map(|i| upload_bytes(&i)).transpose()?, reference: reference.map(|i| upload_bytes(&i)).transpose()? })
    }

    fn is_empty(&self) -> bool {
        self.source.is_none() && self.reference.is_none()
    }
}

/// A file as it is on disk; samples as a 32-bit float WAV.
fn upload_bytes(input: &AudioInput) -> Result<(String, Vec<u8>), JobError> {
    let failed = |e: String| JobError::Model { stage: "upload", message: format!("{}: {e}", input.label()) };
    match input {
        AudioInput::File(path) => {
            // Read here so a missing file is named before anything is sent.
            read_audio(path).map_err(|e| failed(e.to_string()))?;
            let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
            let name = path.file_name().map_or("audio".into(), |n| n.to_string_lossy().into_owned());
            Ok((name, bytes))
        }
        AudioInput::Samples { label, audio } => Ok((format!("{}.wav", file_safe(label)), wav_bytes(audio).map_err(failed)?)),
    }
}

fn file_safe(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn wav_bytes(audio: &AudioBuffer) -> Result<Vec<u8>, String> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("backline-upload-{}.wav", uuid_like()));
    write_audio(&path, audio, OutputFormat::WavF32, false).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&path).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&path);
    bytes
}

/// A name no other upload of this process has.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The request's fields as the server reads them: its own names (the server knows them and
/// their aliases), the paths taken out (the audio is uploaded), float WAV asked for.
fn request_fields(job: &JobRequest) -> Map<String, Value> {
    let mut fields = match serde_json::to_value(&job.request) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    fields.remove("src_audio");
    fields.remove("reference_audio");
    fields.insert("audio_format".into(), json!(AudioFormat::Wav32.as_str()));
    fields.retain(|_, v| !v.is_null());
    fields
}

/// Sleeps `total`, returning early with `Cancelled` when the job is cancelled.
fn wait(total: Duration, ctx: &JobContext<'_>) -> Result<(), JobError> {
    let end = Instant::now() + total;
    while Instant::now() < end {
        ctx.check_cancelled()?;
        std::thread::sleep(CANCEL_CHECK.min(end.saturating_duration_since(Instant::now())));
    }
    Ok(())
}

/// Follows the server's stage text ("dit step 3/8") as the local engine's events.
#[derive(Default)]
struct ProgressEcho {
    stage: String,
    step: Option<(usize, usize)>,
}

impl ProgressEcho {
    fn follow(&mut self, text: &str, ctx: &JobContext<'_>) {
        let mut words = text.split_whitespace();
        let stage = words.next().unwrap_or_default();
        if stage.is_empty() || matches!(stage, "queued" | "running" | "succeeded" | "failed" | "cancelled") {
            return;
        }
        if stage == "loading" {
            ctx.loading(&text["loading".len()..].trim_start().to_owned());
            return;
        }
        if stage != self.stage {
            self.stage = stage.to_owned();
            self.step = None;
            ctx.stage(stage);
        }
        let step = (words.next() == Some("step"))
            .then(|| words.next()?.split_once('/').and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?))))
            .flatten();
        if let Some((done, count)) = step.filter(|&(done, _)| done >= 1) {
            if self.step != Some((done, count)) {
                self.step = Some((done, count));
                ctx.step(done - 1, count);
            }
        }
    }
}

impl RemoteWorker {
    /// The native and job forms: submit, poll, download.
    fn run_polled(&self, form: ApiForm, job: JobRequest, inputs: &Inputs, ctx: &JobContext<'_>) -> Result<Generation, JobError> {
        let http = &self.http;
        let fields = request_fields(&job);
        let (submit_path, id_key) = match form {
            ApiForm::Native => ("/release_task", "task_id"),
            _ => ("/v1/music/generate", "job_id"),
        };
        let answer = if inputs.is_empty() {
            http.post_json(submit_path, &Value::Object(fields), false)?
        } else {
            let url = format!("{}{submit_path}", http.base);
            let param_obj = Value::Object(fields).to_string();
            let response = http.send(false, || {
                let mut form = multipart::Form::new().text("param_obj", param_obj.clone());
                for (field, input) in [("src_audio", &inputs.source), ("reference_audio", &inputs.reference)] {
                    if let Some((name, bytes)) = input {
                        form = form.part(field, multipart::Part::bytes(bytes.clone()).file_name(name.clone()));
                    }
                }
                http.client.post(&url).multipart(form)
            })?;
            http.json(response)?
        };
        let data = if form == ApiForm::Native { &answer["data"] } else { &answer };
        let id = data[id_key].as_str().ok_or_else(|| http.error(None, format!("no {id_key} in {answer}")))?.to_owned();

        let start = Instant::now();
        let mut echo = ProgressEcho::default();
        let cancel_remote = || {
            let _ = match form {
                ApiForm::Native => http.post_json("/cancel_task", &json!({ "task_id": id }), true),
                _ => http.post_json(&format!("/v1/jobs/{id}/cancel"), &json!({}), true),
            };
        };
        loop {
            if let Err(cancelled) = wait(self.settings.poll_every, ctx) {
                cancel_remote();
                return Err(cancelled);
            }
            if start.elapsed() > self.settings.job_timeout {
                cancel_remote();
                return Err(http.error(None, format!("the job took longer than {:?}", self.settings.job_timeout)));
            }
            let poll = match form {
                ApiForm::Native => NativePoll::read(&http.post_json("/query_result", &json!({ "task_id_list": [id] }), true)?)?,
                _ => NativePoll::from_job(&http.get_json(&format!("/v1/jobs/{id}"))?),
            };
            match poll.status {
                0 => echo.follow(&poll.stage, ctx),
                1 => return self.collect(job, &poll.files, poll.recipe, &poll.seeds, &poll.dit_model, ctx),
                _ => return Err(http.error(None, poll.error)),
            }
        }
    }

    /// Downloads and decodes each file; the recipe is the server's own when it sends one
    /// (`backline serve` does), else built from the request and what the result says.
    fn collect(
        &self,
        job: JobRequest,
        files: &[String],
        recipe: Option<Value>,
        seeds: &str,
        dit_model: &str,
        ctx: &JobContext<'_>,
    ) -> Result<Generation, JobError> {
        ctx.stage("download");
        let mut audio = Vec::new();
        for (i, file) in files.iter().enumerate() {
            ctx.check_cancelled()?;
            let bytes = self.http.download(file)?;
            let extension = if file.contains(".mp3") { "mp3" } else if file.contains(".flac") { "flac" } else { "wav" };
            audio.push(decode_bytes(&bytes, Some(extension)).map_err(|e| self.http.error(None, format!("the result {file}: {e}")))?);
            ctx.step(i, files.len());
        }
        let recipe = match recipe.and_then(|r| serde_json::from_value::<Recipe>(r).ok()) {
            Some(mut recipe) => {
                // Float WAV was the transport's choice, not the user's.
                recipe.request.audio_format = job.request.audio_format;
                recipe
            }
            None => self.recipe_of(job, &audio, seeds, dit_model),
        };
        Ok(Generation { audio, recipe })
    }

    fn recipe_of(&self, job: JobRequest, audio: &[AudioBuffer], seeds: &str, dit_model: &str) -> Recipe {
        let mut request = job.request;
        let seeds: Vec<i64> = seeds.split(',').filter_map(|s| s.trim().parse().ok()).collect();
        if !seeds.is_empty() {
            // As a local recipe records them: one seed per item, the batch their count.
            request.batch_size = Some(seeds.len() as u32);
            request.seed = Some(Seed::PerItem(seeds));
            request.use_random_seed = None;
        }
        Recipe {
            request,
            model_kind: ModelKind::from_folder_name(dit_model),
            models: vec![ModelFile { folder: dit_model.to_owned(), file: String::new(), bytes: 0, fingerprint: String::new() }],
            source: None,
            reference: None,
            sample_rate: audio.first().map_or(48_000, |a| a.sample_rate),
            duration_s: audio.first().map_or(0.0, AudioBuffer::duration_s),
            engine: format!("remote {}", self.settings.url),
            precision: Precision::F32,
            time_costs: Default::default(),
            analysis: None,
            grid: None,
            lm: None,
            rewritten: None,
        }
    }

    /// The chat form: one blocking call per item (the form returns one audio per answer), each
    /// with its own seed, so a batch comes back as the local backend gives it. Each call runs on
    /// a helper thread so a cancel ends the job at once (the server, which has no cancel in this
    /// form, finishes its copy).
    fn run_chat(&self, job: JobRequest, inputs: &Inputs, ctx: &JobContext<'_>) -> Result<Generation, JobError> {
        let request = &job.request;
        let kind = ModelKind::from_folder_name(request.model.as_deref().unwrap_or(ModelKind::Turbo.folder()));
        let seeds = request.resolve(kind).map_err(JobError::Request)?.seeds;
        let mut text = format!("<prompt>{}</prompt>", request.caption);
        if !request.lyrics.is_empty() {
            text.push_str(&format!("<lyrics>{}</lyrics>", request.lyrics));
        }
        let mut content = vec![json!({ "type": "text", "text": text })];
        for (name, bytes) in inputs.source.iter().chain(inputs.reference.iter()) {
            let format = name.rsplit_once('.').map_or("wav", |(_, e)| e);
            content.push(json!({ "type": "input_audio", "input_audio": {
                "data": base64::engine::general_purpose::STANDARD.encode(bytes), "format": format } }));
        }
        let fields = request_fields(&job);
        let mut body = json!({
            "messages": [{ "role": "user", "content": content }],
            "stream": false,
            "batch_size": 1,
            "audio_config": { "format": AudioFormat::Wav32.as_str() },
        });
        if let Some(model) = &request.model {
            body["model"] = json!(format!("acestep/{model}"));
        }
        for (config, field) in
            [("duration", "duration"), ("bpm", "bpm"), ("key_scale", "keyscale"), ("time_signature", "timesignature"), ("vocal_language", "vocal_language")]
        {
            if let Some(value) = fields.get(field) {
                body["audio_config"][config] = value.clone();
            }
        }
        for field in ["task_type", "guidance_scale", "inference_steps", "infer_method", "repainting_start", "repainting_end", "audio_cover_strength"] {
            if let Some(value) = fields.get(field) {
                body[field] = value.clone();
            }
        }
        ctx.stage("remote");
        let mut audio = Vec::new();
        let mut model = String::new();
        for (i, &seed) in seeds.iter().enumerate() {
            body["seed"] = json!(seed);
            let (item, item_model) = self.chat_call(&body, ctx)?;
            audio.push(item);
            model = item_model;
            ctx.step(i, seeds.len());
        }
        let seeds: Vec<String> = seeds.iter().map(u32::to_string).collect();
        let recipe = self.recipe_of(job, &audio, &seeds.join(","), &model);
        Ok(Generation { audio, recipe })
    }

    /// One chat call: the decoded audio of its answer and the model that made it.
    fn chat_call(&self, body: &Value, ctx: &JobContext<'_>) -> Result<(AudioBuffer, String), JobError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let http = self.http.clone();
        let url = format!("{}/v1/chat/completions", http.base);
        let body = body.clone();
        std::thread::Builder::new()
            .name("backline-remote-chat".into())
            .spawn(move || {
                let answer = http.send(false, || http.client.post(&url).timeout(CHAT_TIMEOUT).json(&body)).and_then(|r| http.json(r));
                let _ = tx.send(answer);
            })
            .map_err(|e| self.http.error(None, format!("cannot start the request: {e}")))?;
        let answer = loop {
            ctx.check_cancelled()?;
            match rx.recv_timeout(CANCEL_CHECK) {
                Ok(answer) => break answer?,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Err(self.http.error(None, "the request ended without an answer")),
            }
        };
        let url = answer["choices"][0]["message"]["audio"][0]["audio_url"]["url"]
            .as_str()
            .ok_or_else(|| self.http.error(None, "the answer holds no audio"))?;
        let encoded = url.split_once(";base64,").map_or(url, |(_, b)| b);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| self.http.error(None, format!("the answer's audio is not base64: {e}")))?;
        let audio = decode_bytes(&bytes, Some("wav")).map_err(|e| self.http.error(None, format!("the answer's audio: {e}")))?;
        let model = answer["model"].as_str().map(|m| m.split_once('/').map_or(m, |(_, n)| n).to_owned()).unwrap_or_default();
        Ok((audio, model))
    }
}

/// One poll's reading, in either polled form.
struct NativePoll {
    /// 0 running, 1 done, 2 failed.
    status: u64,
    stage: String,
    files: Vec<String>,
    recipe: Option<Value>,
    seeds: String,
    dit_model: String,
    error: String,
}

impl NativePoll {
    fn read(answer: &Value) -> Result<Self, JobError> {
        let item = &answer["data"][0];
        let result: Vec<Value> = item["result"].as_str().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
        let first = result.first().cloned().unwrap_or(Value::Null);
        let error = first["error"].as_str().or(item["progress_text"].as_str()).unwrap_or("the job failed on the server").to_owned();
        Ok(Self {
            status: item["status"].as_u64().unwrap_or(0),
            stage: first["stage"].as_str().unwrap_or_default().to_owned(),
            files: result.iter().filter_map(|r| r["file"].as_str()).filter(|f| !f.is_empty()).map(str::to_owned).collect(),
            recipe: first.get("recipe").cloned(),
            seeds: first["seed_value"].as_str().unwrap_or_default().to_owned(),
            dit_model: first["dit_model"].as_str().unwrap_or_default().to_owned(),
            error,
        })
    }

    fn from_job(job: &Value) -> Self {
        let status = match job["status"].as_str() {
            Some("succeeded") => 1,
            Some("failed") => 2,
            _ => 0,
        };
        let result = &job["result"];
        Self {
            status,
            stage: job["stage"].as_str().unwrap_or_default().to_owned(),
            files: result["audio_paths"].as_array().map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect()).unwrap_or_default(),
            recipe: result.get("recipe").cloned(),
            seeds: result["seed_value"].as_str().unwrap_or_default().to_owned(),
            dit_model: result["dit_model"].as_str().unwrap_or_default().to_owned(),
            error: job["error"].as_str().unwrap_or("the job failed on the server").to_owned(),
        }
    }
}

/// The innermost reason of a transport error ("Connection refused (os error 111)"), which says
/// more to a user than reqwest's "error sending request for url (...)"; the URL is said already.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}
