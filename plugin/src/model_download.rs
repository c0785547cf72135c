//! [`ModelDownload`]: the model panel's download of published models into a checkpoints folder,
//! on a thread of its own (never the audio thread, never the GUI thread, which only reads the
//! progress and asks for a cancel). The engine's `hub` does the work: resumable, every file's
//! size and hash checked, each folder validated at the end. `HF_ENDPOINT` and `HF_TOKEN` apply
//! as they do for `backline models download`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use backline_engine::hub::{self, DownloadError, DownloadProgress, Hub, HubModel};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the download is, for the editor.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DownloadState {
    #[default]
    Idle,
    Running { model: String, file: String, done_bytes: u64, total_bytes: u64 },
    /// Every model arrived and validated.
    Finished { message: String },
    /// Stopped by the user; what arrived is kept for the next try.
    Cancelled,
    Failed { message: String },
}

impl DownloadState {
    pub fn is_running(&self) -> bool {
        matches!(self, DownloadState::Running { .. })
    }
}

/// One download at a time. Fields: `state` is written by the download thread and read by the
/// GUI thread; `cancel` is set by the GUI (or shutdown) and read by the download thread.
#[derive(Default)]
pub struct ModelDownload {
    state: Arc<Mutex<DownloadState>>,
    cancel: Arc<AtomicBool>,
}

impl ModelDownload {
    pub fn state(&self) -> DownloadState {
        lock(&self.state).clone()
    }

    /// Start fetching `models` into `checkpoints` on a new thread; `ended` runs on that thread
    /// with the state the download ended in. Refused while one runs.
    pub fn start(
        &self,
        checkpoints: PathBuf,
        models: Vec<&'static HubModel>,
        ended: impl FnOnce(&DownloadState) + Send + 'static,
    ) -> Result<(), String> {
        let mut state = lock(&self.state);
        if state.is_running() {
            return Err("A download is already running.".into());
        }
        let first = models.first().map(|m| m.name.to_string()).unwrap_or_default();
        *state = DownloadState::Running { model: first, file: String::new(), done_bytes: 0, total_bytes: 0 };
        drop(state);
        self.cancel.store(false, Ordering::Release);
        let (shared, cancel) = (Arc::clone(&self.state), Arc::clone(&self.cancel));
        let spawned = std::thread::Builder::new()
            .name("backline-download".into())
            .spawn(move || {
                let end = run(&checkpoints, &models, &shared, &cancel);
                ended(&end);
                *lock(&shared) = end;
            });
        spawned.map(|_| ()).map_err(|e| {
            let message = format!("Backline could not start the download thread: {e}");
            *lock(&self.state) = DownloadState::Failed { message: message.clone() };
            message
        })
    }

    /// Ask the running download to stop; it ends within a chunk and keeps what arrived.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }
}

/// The download thread: each model in turn, then its validation; the state it ended in.
fn run(checkpoints: &std::path::Path, models: &[&'static HubModel], state: &Mutex<DownloadState>, cancel: &AtomicBool) -> DownloadState {
    let hub = Hub::from_env();
    for model in models {
        let progress = |p: DownloadProgress| {
            *lock(state) = DownloadState::Running {
                model: p.model.to_string(),
                file: p.file.to_string(),
                done_bytes: p.done_bytes,
                total_bytes: p.total_bytes,
            };
        };
        match hub.download(model, checkpoints, &progress, cancel) {
            Ok(report) => {
                if let Err(e) = hub::validate(model.role, &report.dir) {
                    return DownloadState::Failed { message: format!("{} arrived but is not usable: {e}", model.name) };
                }
            }
            Err(DownloadError::Cancelled) => return DownloadState::Cancelled,
            Err(e) => return DownloadState::Failed { message: format!("{}: {e}", model.name) },
        }
    }
    let names: Vec<&str> = models.iter().map(|m| m.name).collect();
    DownloadState::Finished { message: format!("Downloaded and checked: {}.", names.join(", ")) }
}
