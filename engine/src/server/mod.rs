//! `backline serve` (feature `server`): ACE-Step 1.5's REST API over a [`Backend`], so ACE-Step's
//! own clients (its `acestep.sh`, scripts written against its docs) work unchanged against
//! Backline. docs/api.md is the reference, with every difference from upstream.
//!
//! - [`body`]: a body in JSON, form or multipart form, with its audio uploads.
//! - [`submit`]: fields and uploads to a job, everything wrong refused before it is queued.
//! - [`tasks`]: the record of tasks by id, following their jobs' events; retention.
//! - [`output`]: an item as the file the client asked for (MP3, WAV, FLAC).
//! - [`native`]: the native routes (`/release_task`, `/query_result`, `/v1/audio`, ...).
//! - [`job_form`]: the job form (`/v1/music/generate`, `/v1/jobs/{id}`).
//! - [`chat`]: the chat form (`/v1/chat/completions`, `/v1/models`).
//! - [`describe`]: the 5 Hz LM's routes (`/format_input`, `/v1/create_sample`).
//! - [`init`]: `/v1/init` and `/create_random_sample`.
//! - [`reply`]: the response wrapper and the refusals.
//!
//! Threads: axum's handlers run on a small tokio runtime and never block it (blocking work, such
//! as decoding an upload or reading the checkpoints folder, goes to `spawn_blocking`); jobs run
//! on the backend's worker, whose event callback updates [`tasks::Tasks`] and writes the files.

pub mod body;
pub mod chat;
pub mod describe;
pub mod init;
pub mod job_form;
pub mod native;
pub mod output;
pub mod reply;
pub mod submit;
pub mod tasks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use crate::backend::{Backend, ModelsInfo};

use body::Body;
use reply::ApiError;
use tasks::Tasks;

/// Upstream's port (`ACESTEP_API_PORT`).
pub const DEFAULT_PORT: u16 = 8001;
/// Jobs queued or running at once before `/release_task` answers 429.
pub const DEFAULT_MAX_QUEUE: usize = 200;
pub const DEFAULT_MAX_UPLOAD_MB: usize = 200;
/// How long a finished task and its files are kept (upstream purges its job store after 24 h).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often finished tasks are looked over for removal.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// `None`: no authentication (an empty key counts as none).
    pub api_key: Option<String>,
    pub max_queue: usize,
    pub max_upload_bytes: usize,
    /// Where results are written; `/v1/audio` serves from nowhere else. Made absolute at start.
    pub out_dir: PathBuf,
    pub retention: Duration,
}

/// How old `/health`'s loaded model may be.
pub const HEALTH_FRESH_FOR: Duration = Duration::from_secs(1);

/// What every handler shares.
pub struct ServerState {
    pub backend: Arc<dyn Backend>,
    pub tasks: Arc<Tasks>,
    pub config: ServerConfig,
    /// Uploads wait here while they are decoded (inside `out_dir`, removed at once).
    pub upload_dir: PathBuf,
    /// What runs the models, for `/health` ("cpu", "cuda:0").
    pub device: String,
    /// The model `/v1/init` chose and the tasks it runs: requests without a `model` run on it
    /// where it runs their task.
    chosen: std::sync::Mutex<Option<(String, Vec<crate::task::TaskType>)>>,
    /// `/health`'s loaded model and when it was read: monitors poll it often, and reading the
    /// model folders each time would put the disk in every answer.
    health_loaded: std::sync::Mutex<Option<(std::time::Instant, Option<String>)>>,
}

impl ServerState {
    /// Checks the `Authorization` header (`Bearer KEY`, or the bare key) against the key.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = self.key() else { return Ok(()) };
        let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let Some(header) = header else { return Err(ApiError::unauthorized("Missing Authorization header")) };
        let token = header.strip_prefix("Bearer ").unwrap_or(header).trim();
        if token == key {
            Ok(())
        } else {
            Err(ApiError::unauthorized("Invalid API key"))
        }
    }

    /// Upstream's body-or-header check: a body `ai_token`, when given, must be the key.
    pub fn authorize_with_body(&self, headers: &HeaderMap, ai_token: Option<&Value>) -> Result<(), ApiError> {
        let Some(key) = self.key() else { return Ok(()) };
        match ai_token.and_then(Value::as_str).filter(|t| !t.is_empty()) {
            Some(token) if token == key => Ok(()),
            Some(_) => Err(ApiError::unauthorized("Invalid ai_token")),
            None if headers.contains_key(AUTHORIZATION) => self.authorize(headers),
            None => Err(ApiError::unauthorized("Missing ai_token or Authorization header")),
        }
    }

    fn key(&self) -> Option<&str> {
        self.config.api_key.as_deref().filter(|k| !k.is_empty())
    }

    /// Queues `body` as a task; returns its id and its place in the queue at submission.
    pub async fn submit(self: &Arc<Self>, body: Body) -> Result<(String, usize), ApiError> {
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let lm_installed = state.backend.models().is_ok_and(|info| !info.lm_models.is_empty());
            let mut submission = submit::submission(body, lm_installed)?;
            let request = &mut submission.job.request;
            if request.model.is_none() {
                request.model = state.chosen_for(request.task_type);
            }
            let (id, position) =
                state.tasks.open(submission.asked, state.config.max_queue).ok_or(ApiError::queue_full(state.config.max_queue))?;
            let tasks = Arc::clone(&state.tasks);
            let task_id = id.clone();
            let control = state.backend.submit_with(submission.job, Box::new(move |event| tasks.on_event(&task_id, event)));
            state.tasks.attach(&id, control);
            Ok((id, position))
        })
        .await
        .map_err(|e| ApiError::internal(format!("the submission failed: {e}")))?
    }

    /// The backend's models, read off the runtime's threads.
    pub async fn models(&self) -> Result<ModelsInfo, ApiError> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || backend.models())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// The loaded model for `/health`, at most [`HEALTH_FRESH_FOR`] old.
    pub async fn loaded_model(&self) -> Option<String> {
        let cached = self.health_loaded.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((_, loaded)) = cached.filter(|(at, _)| at.elapsed() < HEALTH_FRESH_FOR) {
            return loaded;
        }
        let models = self.models().await.ok();
        let loaded = models.and_then(|m| m.dits.into_iter().find(|d| d.loaded).map(|d| d.name));
        *self.health_loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), loaded.clone()));
        loaded
    }

    /// `/v1/init`'s choice: requests without a `model` run on `name` where it runs their task.
    pub fn choose_model(&self, name: String, tasks: Vec<crate::task::TaskType>) {
        *self.chosen.lock().unwrap_or_else(|p| p.into_inner()) = Some((name, tasks));
    }

    fn chosen_for(&self, task: crate::task::TaskType) -> Option<String> {
        let chosen = self.chosen.lock().unwrap_or_else(|p| p.into_inner());
        chosen.as_ref().filter(|(_, tasks)| tasks.contains(&task)).map(|(name, _)| name.clone())
    }

    /// The model a text2music request without `model` runs on: `/v1/init`'s choice, else as the
    /// engine chooses it: turbo (the task's usual model) when it is there, else any usable DiT
    /// that runs the task.
    pub fn default_model(&self, info: &ModelsInfo) -> Option<String> {
        if let Some(chosen) = self.chosen_for(crate::task::TaskType::Text2Music) {
            if info.dits.iter().any(|d| d.name == chosen && d.problem.is_none()) {
                return Some(chosen);
            }
        }
        let usable = |d: &&crate::backend::DitInfo| d.problem.is_none() && d.tasks.contains(&crate::task::TaskType::Text2Music);
        let usual = crate::task::ModelKind::Turbo.folder();
        info.dits
            .iter()
            .filter(usable)
            .find(|d| d.name == usual)
            .or_else(|| info.dits.iter().find(usable))
            .map(|d| d.name.clone())
    }
}

/// The routes over `state`.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/release_task", post(native::release_task))
        .route("/query_result", post(native::query_result))
        .route("/cancel_task", post(native::cancel_task))
        .route("/v1/audio", get(native::audio))
        .route("/health", get(native::health))
        .route("/v1/model_inventory", get(native::model_inventory))
        .route("/v1/stats", get(native::stats))
        .route("/v1/init", post(init::init))
        .route("/format_input", post(describe::format_input))
        .route("/v1/create_sample", post(describe::create_sample))
        .route("/create_random_sample", post(init::create_random_sample))
        .route("/v1/music/generate", post(job_form::generate))
        .route("/v1/jobs/{job_id}", get(job_form::job))
        .route("/v1/jobs/{job_id}/cancel", post(job_form::cancel))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/models", get(chat::models))
        .route("/api/v1/models", get(chat::models))
        .layer(DefaultBodyLimit::max(state.config.max_upload_bytes))
        .with_state(state)
}

/// A server bound and serving on its own runtime until [`RunningServer::stop`] or drop.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, lets the answers in flight finish, and joins the server thread.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Binds `config.addr` (port 0 picks a free one) and serves on a thread of its own.
pub fn start(config: ServerConfig, backend: Arc<dyn Backend>, device: String) -> Result<RunningServer, String> {
    let mut config = config;
    std::fs::create_dir_all(&config.out_dir).map_err(|e| format!("cannot create {}: {e}", config.out_dir.display()))?;
    config.out_dir = config.out_dir.canonicalize().map_err(|e| format!("{}: {e}", config.out_dir.display()))?;
    let upload_dir = config.out_dir.join(".uploads");
    std::fs::create_dir_all(&upload_dir).map_err(|e| format!("cannot create {}: {e}", upload_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("backline-http")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.addr))
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let state = Arc::new(ServerState {
        backend,
        tasks: Tasks::new(config.out_dir.clone()),
        config,
        upload_dir,
        device,
        chosen: Default::default(),
        health_loaded: Default::default(),
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(Arc::clone(&state));
    let sweeper = Arc::clone(&state);
    let thread = std::thread::Builder::new()
        .name("backline-server".into())
        .spawn(move || {
            runtime.spawn(async move {
                let mut every = tokio::time::interval(SWEEP_EVERY);
                loop {
                    every.tick().await;
                    sweeper.tasks.sweep(sweeper.config.retention);
                }
            });
            let served = runtime.block_on(async move {
                axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
            });
            if let Err(e) = served {
                eprintln!("error: the server stopped: {e}");
            }
        })
        .map_err(|e| format!("cannot start the server thread: {e}"))?;
    Ok(RunningServer { addr, state, shutdown: Some(tx), thread: Some(thread) })
}
