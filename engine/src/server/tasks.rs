//! The server's record of its tasks, by task id: what `/query_result` and the job form report
//! after the job's handle has moved on. Each task follows its job's events (queued, running with
//! per-step progress, succeeded with its files, failed with the reason, cancelled), and is
//! forgotten, files and all, once finished for longer than the retention time.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::job::{JobControl, JobEvent};
use crate::pipeline::Generation;
use crate::request::AudioFormat;

use super::output::write_item;
use super::reply::now_s;

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }

    /// The job form's status word (`/v1/jobs/{id}`).
    pub fn word(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What the client asked, as the result reports it beside what ran.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    pub prompt: String,
    pub lyrics: String,
    pub format: AudioFormat,
    /// Requests the server did not run as asked (the 5 Hz LM's switches), said in the result.
    pub notes: Vec<String>,
}

/// One task: its job's state and, once done, its files and recipe.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    /// Submission order, for queue positions.
    pub seq: u64,
    pub asked: Asked,
    pub state: TaskState,
    pub created_s: f64,
    pub started_s: Option<f64>,
    pub finished_s: Option<f64>,
    /// 0 to 1 over the whole job.
    pub progress: f64,
    /// What the job is doing, e.g. "dit step 3/8".
    pub stage: String,
    /// One file per batch item, in the server's output folder.
    pub files: Vec<PathBuf>,
    pub generation: Option<Arc<Generation>>,
    pub error: Option<String>,
}

struct Entry {
    task: Task,
    control: Option<JobControl>,
}

/// How many finished jobs the running mean of job time counts (upstream's `ACESTEP_AVG_WINDOW`).
const AVERAGE_WINDOW: usize = 50;
/// The mean job time before any job has finished (upstream's `ACESTEP_AVG_JOB_SECONDS`).
const FIRST_AVERAGE_S: f64 = 5.0;

/// Every task of this server.
pub struct Tasks {
    entries: Mutex<HashMap<String, Entry>>,
    next_seq: AtomicU64,
    job_seconds: Mutex<VecDeque<f64>>,
    out_dir: PathBuf,
}

/// Counts for `/v1/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub queued: usize,
    pub running: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
}

impl Tasks {
    pub fn new(out_dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(1),
            job_seconds: Mutex::new(VecDeque::new()),
            out_dir,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves plain data behind; carry on with it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new queued task and returns its id and its place in the queue (1 plus the
    /// tasks queued or running before it), or `None` when `max_active` tasks are already queued
    /// or running.
    pub fn open(&self, asked: Asked, max_active: usize) -> Option<(String, usize)> {
        let mut entries = self.lock();
        let active = entries.values().filter(|e| e.task.state.is_active()).count();
        if active >= max_active {
            return None;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let task = Task {
            id: id.clone(),
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            asked,
            state: TaskState::Queued,
            created_s: now_s(),
            started_s: None,
            finished_s: None,
            progress: 0.0,
            stage: "queued".into(),
            files: Vec::new(),
            generation: None,
            error: None,
        };
        entries.insert(id.clone(), Entry { task, control: None });
        Some((id, active + 1))
    }

    /// Gives the task its job's cancel control.
    pub fn attach(&self, id: &str, control: JobControl) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.control = Some(control);
        }
    }

    /// A copy of task `id`.
    pub fn get(&self, id: &str) -> Option<Task> {
        self.lock().get(id).map(|e| e.task.clone())
    }

    /// 1 plus the number of active tasks submitted before task `id` while it is queued, else 0.
    pub fn queue_position(&self, id: &str) -> usize {
        let entries = self.lock();
        let Some(task) = entries.get(id).map(|e| &e.task) else { return 0 };
        if task.state != TaskState::Queued {
            return 0;
        }
        1 + entries.values().filter(|e| e.task.state.is_active() && e.task.seq < task.seq).count()
    }

    /// Cancels task `id`'s job. Returns false when there is no such task or it has ended.
    pub fn cancel(&self, id: &str) -> bool {
        let control = {
            let entries = self.lock();
            match entries.get(id) {
                Some(entry) if entry.task.state.is_active() => entry.control.clone(),
                _ => return false,
            }
        };
        control.is_some_and(|c| c.cancel())
    }

    pub fn counts(&self) -> Counts {
        let entries = self.lock();
        let mut counts = Counts { total: entries.len(), ..Counts::default() };
        for entry in entries.values() {
            match entry.task.state {
                TaskState::Queued => counts.queued += 1,
                TaskState::Running => counts.running += 1,
                TaskState::Succeeded => counts.succeeded += 1,
                TaskState::Failed => counts.failed += 1,
                TaskState::Cancelled => counts.cancelled += 1,
            }
        }
        counts
    }

    /// The mean seconds of the last finished jobs.
    pub fn average_job_s(&self) -> f64 {
        let times = self.job_seconds.lock().unwrap_or_else(|e| e.into_inner());
        if times.is_empty() {
            FIRST_AVERAGE_S
        } else {
            times.iter().sum::<f64>() / times.len() as f64
        }
    }

    /// Whether `path` is a file one of this server's tasks wrote (the only files `/v1/audio`
    /// serves).
    pub fn produced(&self, path: &Path) -> bool {
        self.lock().values().any(|e| e.task.files.iter().any(|f| f == path))
    }

    /// Follows one event of task `id`'s job. On `Done` the items are written here, on the
    /// engine's worker, so a result exists whether or not anybody polls.
    pub fn on_event(&self, id: &str, event: JobEvent<Generation>) {
        if let JobEvent::Done(generation) = event {
            let format = match self.get(id) {
                Some(task) => task.asked.format,
                None => return,
            };
            let written: Result<Vec<PathBuf>, String> = generation
                .audio
                .iter()
                .enumerate()
                .map(|(i, audio)| write_item(&self.out_dir, id, i, audio, format))
                .collect();
            self.finish(id, |task| match written {
                Ok(files) => {
                    task.state = TaskState::Succeeded;
                    task.files = files;
                    task.generation = Some(Arc::new(generation));
                    task.progress = 1.0;
                    task.stage = "succeeded".into();
                }
                Err(message) => {
                    task.state = TaskState::Failed;
                    task.error = Some(message);
                    task.stage = "failed".into();
                }
            });
            return;
        }
        let terminal = event.is_terminal();
        let update = |task: &mut Task| match event {
            JobEvent::Queued { .. } => {}
            JobEvent::Started => {
                task.state = TaskState::Running;
                task.started_s = Some(now_s());
                task.stage = "running".into();
            }
            JobEvent::Loading { what } => task.stage = format!("loading {what}"),
            JobEvent::Stage { name } => {
                task.progress = task.progress.max(stage_start(&name));
                task.stage = name;
            }
            JobEvent::Step { index, count } => {
                let stage = task.stage.split(' ').next().unwrap_or("").to_owned();
                let (start, end) = (stage_start(&stage), stage_end(&stage));
                task.progress = start + (end - start) * (index + 1) as f64 / count.max(1) as f64;
                task.stage = format!("{stage} step {}/{count}", index + 1);
            }
            JobEvent::Failed(error) => {
                task.state = TaskState::Failed;
                task.error = Some(error.to_string());
                task.stage = "failed".into();
            }
            JobEvent::Cancelled => {
                task.state = TaskState::Cancelled;
                task.stage = "cancelled".into();
            }
            JobEvent::Done(_) => unreachable!("handled above"),
        };
        if terminal {
            self.finish(id, update);
        } else if let Some(entry) = self.lock().get_mut(id) {
            update(&mut entry.task);
        }
    }

    /// Ends task `id` with `update` and counts its time.
    fn finish(&self, id: &str, update: impl FnOnce(&mut Task)) {
        let seconds = {
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(id) else { return };
            update(&mut entry.task);
            let now = now_s();
            entry.task.finished_s = Some(now);
            entry.control = None;
            entry.task.started_s.map(|s| now - s)
        };
        if let Some(seconds) = seconds {
            let mut times = self.job_seconds.lock().unwrap_or_else(|e| e.into_inner());
            if times.len() == AVERAGE_WINDOW {
                times.pop_front();
            }
            times.push_back(seconds);
        }
    }

    /// Forgets the tasks finished more than `retention` ago and deletes their files. Returns how
    /// many were forgotten.
    pub fn sweep(&self, retention: Duration) -> usize {
        let cutoff = now_s() - retention.as_secs_f64();
        let gone: Vec<Entry> = {
            let mut entries = self.lock();
            let old: Vec<String> = entries
                .iter()
                .filter(|(_, e)| e.task.finished_s.is_some_and(|f| f <= cutoff))
                .map(|(id, _)| id.clone())
                .collect();
            old.iter().filter_map(|id| entries.remove(id)).collect()
        };
        for entry in &gone {
            for file in &entry.task.files {
                let _ = std::fs::remove_file(file);
            }
        }
        gone.len()
    }
}

/// Where each stage's share of a job's progress begins and ends: the diffusion steps are most
/// of the time.
fn stage_start(stage: &str) -> f64 {
    match stage {
        "dit" => 0.1,
        "vae" => 0.9,
        _ => 0.0,
    }
}

fn stage_end(stage: &str) -> f64 {
    match stage {
        "dit" => 0.9,
        "vae" => 1.0,
        _ => 0.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::JobError;

    fn tasks() -> Arc<Tasks> {
        Tasks::new(std::env::temp_dir())
    }

    #[test]
    fn a_task_follows_its_jobs_events_with_progress() {
        let tasks = tasks();
        let (id, position) = tasks.open(Asked::default(), 4).unwrap();
        assert_eq!((tasks.get(&id).unwrap().state, tasks.queue_position(&id), position), (TaskState::Queued, 1, 1));
        tasks.on_event(&id, JobEvent::Started);
        tasks.on_event(&id, JobEvent::Stage { name: "dit".into() });
        tasks.on_event(&id, JobEvent::Step { index: 3, count: 8 });
        let task = tasks.get(&id).unwrap();
        assert_eq!((task.state, task.stage.as_str()), (TaskState::Running, "dit step 4/8"));
        assert!((task.progress - 0.5).abs() < 1e-12, "{}", task.progress);
        assert_eq!(tasks.queue_position(&id), 0, "running is not queued");
        tasks.on_event(&id, JobEvent::Failed(JobError::EngineStopped));
        let task = tasks.get(&id).unwrap();
        assert_eq!(task.state, TaskState::Failed);
        assert_eq!(task.error.as_deref(), Some("the engine stopped before the job ended"));
        assert!(task.finished_s.is_some());
    }

    #[test]
    fn the_queue_limit_counts_only_active_tasks() {
        let tasks = tasks();
        let (first, _) = tasks.open(Asked::default(), 2).unwrap();
        let (second, position) = tasks.open(Asked::default(), 2).unwrap();
        assert_eq!((tasks.queue_position(&second), position), (2, 2));
        assert!(tasks.open(Asked::default(), 2).is_none(), "full");
        tasks.on_event(&first, JobEvent::Cancelled);
        assert_eq!(tasks.queue_position(&second), 1);
        assert!(tasks.open(Asked::default(), 2).is_some(), "room again");
        assert_eq!(tasks.counts(), Counts { total: 3, queued: 2, cancelled: 1, ..Counts::default() });
    }

    #[test]
    fn finished_tasks_are_forgotten_after_the_retention_time() {
        let tasks = tasks();
        let (id, _) = tasks.open(Asked::default(), 2).unwrap();
        let (active, _) = tasks.open(Asked::default(), 2).unwrap();
        tasks.on_event(&id, JobEvent::Cancelled);
        assert_eq!(tasks.sweep(Duration::from_secs(3600)), 0, "too recent");
        assert_eq!(tasks.sweep(Duration::ZERO), 1);
        assert!(tasks.get(&id).is_none());
        assert!(tasks.get(&active).is_some(), "an active task is never swept");
    }
}
