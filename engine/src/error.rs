//! [`JobError`]: why a job did not produce audio, with its cause kept as a value, so a server can
//! answer 400, 404 or 500 and the plugin can show the right message without reading text.
//!
//! | variant | who fixes it | REST |
//! |---|---|---|
//! | `Request` | the caller: a field (named in the error) is wrong, or names a model not there | 400 (404 for `UnknownModel`) |
//! | `Input` | the caller: an audio input is unreadable, empty, silent, non-finite or the wrong length | 400 |
//! | `Checkpoint` | the user: a checkpoint file is missing, truncated or of another model | 500 |
//! | `MemoryBudget` | the user: the memory budget cannot hold the model the job needs | 500 |
//! | `Model` | nobody: a model stage failed (a bug or a broken weight) | 500 |
//! | `Cancelled` | nobody: the job was cancelled | - |
//! | `Panicked`, `WorkerInit`, `EngineStopped` | nobody: the engine itself failed | 500 |

use std::fmt;
use std::sync::Arc;

use crate::audio::AudioError;
use crate::checkpoint::CheckpointError;
use crate::precision::Precision;
use crate::progress::{Cancelled, Stopped};
use crate::request::RequestError;

/// Why a job did not produce its output.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The request cannot run as written; the error names the field.
    #[error("invalid request: {0}")]
    Request(#[from] RequestError),
    /// An audio input cannot be used.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A checkpoint could not be read or is not the model it should be; names the file or tensor.
    #[error("checkpoint problem: {0}")]
    Checkpoint(Arc<CheckpointError>),
    /// The model the job needs is larger than the whole memory budget for models.
    #[error(
        "the model `{model}` needs {} of memory and the model memory budget is {}: raise the \
         budget or free memory",
        mib(*needed_bytes),
        mib(*budget_bytes)
    )]
    MemoryBudget { model: String, needed_bytes: u64, budget_bytes: u64 },
    /// This CPU lacks the instructions the chosen weight precision runs on.
    #[error("{precision} weights need the {missing} instructions, which this CPU lacks: choose bf16 or f32")]
    PrecisionUnsupported { precision: Precision, missing: &'static str },
    /// A model stage failed.
    #[error("{stage} failed: {message}")]
    Model { stage: &'static str, message: String },
    #[error("the job was cancelled")]
    Cancelled,
    /// The worker panicked; this is the panic message. The engine goes on serving.
    #[error("the engine panicked while running the job: {0}")]
    Panicked(String),
    /// The engine's worker could not be built, so no job can run; this is the cause.
    #[error("the engine's worker could not start: {0}")]
    WorkerInit(String),
    /// A remote server refused the job, failed it, or could not be reached (`RemoteBackend`);
    /// `status` is the HTTP status where there was an answer, `message` the server's reason.
    #[error("the server at {url}{}: {message}", .status.map(|s| format!(" answered {s}")).unwrap_or_default())]
    Remote { url: String, status: Option<u16>, message: String },
    /// The worker thread went away without answering (a bug: it should never happen).
    #[error("the engine stopped before the job ended")]
    EngineStopped,
}

impl JobError {
    /// A [`JobError::Model`] for a candle error in `stage`.
    pub fn model(stage: &'static str, error: impl fmt::Display) -> Self {
        Self::Model { stage, message: error.to_string() }
    }

    /// Whether the caller's request or inputs are at fault (a REST 4xx), not the engine.
    pub fn is_callers_fault(&self) -> bool {
        matches!(self, Self::Request(_) | Self::Input(_))
    }

    /// Maps the result of a candle computation watched by a `StopSignal` in `stage`.
    pub fn from_stopped(stage: &'static str) -> impl Fn(Stopped) -> Self {
        move |stopped| match stopped {
            Stopped::Cancelled => Self::Cancelled,
            Stopped::Failed(e) => Self::model(stage, e),
        }
    }
}

/// Two errors are equal when they are of the same kind and say the same thing (the I/O errors
/// inside some of them cannot be compared otherwise).
impl PartialEq for JobError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other) && self.to_string() == other.to_string()
    }
}

impl From<Cancelled> for JobError {
    fn from(_: Cancelled) -> Self {
        Self::Cancelled
    }
}

impl From<CheckpointError> for JobError {
    fn from(e: CheckpointError) -> Self {
        Self::Checkpoint(Arc::new(e))
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Which audio input of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioRole {
    /// `src_audio`: what cover, repaint, lego, extract and complete work on.
    Source,
    /// `reference_audio`: the timbre to follow.
    Reference,
}

impl AudioRole {
    /// The request field that carries this input.
    pub fn field(self) -> &'static str {
        match self {
            AudioRole::Source => "src_audio",
            AudioRole::Reference => "reference_audio",
        }
    }
}

impl fmt::Display for AudioRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AudioRole::Source => "source",
            AudioRole::Reference => "reference",
        })
    }
}

/// Why an audio input cannot be used. `label` is the file's path, or the label given with
/// samples in memory.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The file could not be read or decoded (missing, not audio, corrupt).
    #[error("the {role} audio cannot be read: {error}")]
    Unreadable { role: AudioRole, error: Arc<AudioError> },
    /// Samples in memory with a sample rate of 0, no channels or channels of unequal length.
    #[error("the {role} audio {label} is not usable audio: {problem}")]
    Malformed { role: AudioRole, label: String, problem: String },
    #[error("the {role} audio {label} has no samples")]
    Empty { role: AudioRole, label: String },
    #[error("the {role} audio {label} holds NaN or infinite samples")]
    NotFinite { role: AudioRole, label: String },
    #[error("the {role} audio {label} is silent (peak below −90 dBFS)")]
    Silent { role: AudioRole, label: String },
    /// Too short or too long for the model (with the task's window taken into account).
    #[error("the {role} audio {label} cannot be used: {problem}")]
    Length { role: AudioRole, label: String, problem: String },
}

impl InputError {
    pub fn role(&self) -> AudioRole {
        match self {
            Self::Unreadable { role, .. }
            | Self::Malformed { role, .. }
            | Self::Empty { role, .. }
            | Self::NotFinite { role, .. }
            | Self::Silent { role, .. }
            | Self::Length { role, .. } => *role,
        }
    }
}
