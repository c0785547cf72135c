//! The contract every front end (the plugin, the CLI, the REST server) uses to run generations,
//! whether the engine is in this process ([`LocalBackend`]) or behind a REST server
//! ([`RemoteBackend`]).
//!
//! A front end builds a [`JobRequest`]: the [`GenerationRequest`] plus its audio inputs, each a
//! file or samples in memory (any rate and channel count), so a captured region never touches
//! the disk. It submits it and follows the job through a [`JobHandle`] (events plus cancel), or
//! hands a callback to [`Backend::submit_with`] so the result is handled on the worker even when
//! no editor is open. Before it submits, [`Backend::models`] says what the checkpoints folder
//! holds, which tasks each DiT runs, and what is loaded.
//!
//! Everything that can be wrong with a job reaches the front end as a typed [`JobError`] in the
//! job's `Failed` event, before any model loads when the request or its inputs are at fault.

pub mod admit;
pub mod local;
pub mod remote;

use std::path::PathBuf;
use std::sync::Arc;

use crate::audio::AudioBuffer;
use crate::checkpoint::footprint::Footprint;
use crate::checkpoint::LoadAs;
use crate::error::JobError;
use crate::job::{EventCallback, JobControl, JobHandle};
use crate::pipeline::Generation;
use crate::precision::Precision;
use crate::request::GenerationRequest;
use crate::store::ResidentModel;
use crate::task::{ModelKind, TaskType};

pub use admit::{Admitted, ModelAudio};
pub use local::{LocalBackend, LocalSettings};
pub use remote::{ApiForm, RemoteBackend, RemoteSettings};

/// One audio input of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioInput {
    /// A file the engine reads (WAV, FLAC, MP3, Ogg Vorbis).
    File(PathBuf),
    /// Samples in memory at any rate and channel count; converted to the model's 48 kHz stereo
    /// inside. `label` names them in errors and in the recipe (e.g. "capture, bars 9-16").
    Samples { label: String, audio: Arc<AudioBuffer> },
}

impl AudioInput {
    pub fn samples(label: impl Into<String>, audio: AudioBuffer) -> Self {
        Self::Samples { label: label.into(), audio: Arc::new(audio) }
    }

    /// The file's path, or the samples' label.
    pub fn label(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Samples { label, .. } => label.clone(),
        }
    }
}

/// A request and its audio inputs: what a front end submits.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub request: GenerationRequest,
    /// The source audio. `None`: the request's `src_audio` path, if it has one.
    pub src: Option<AudioInput>,
    /// The timbre reference. `None`: the request's `reference_audio` path, if it has one.
    pub reference: Option<AudioInput>,
}

impl JobRequest {
    /// A request whose audio inputs (if any) are the files its `src_audio` and
    /// `reference_audio` name.
    pub fn new(request: GenerationRequest) -> Self {
        Self { request, src: None, reference: None }
    }

    /// Use `input` as the source audio, in place of any `src_audio` path in the request.
    pub fn with_source(mut self, input: AudioInput) -> Self {
        self.src = Some(input);
        self
    }

    /// Use `input` as the timbre reference, in place of any `reference_audio` path.
    pub fn with_reference(mut self, input: AudioInput) -> Self {
        self.reference = Some(input);
        self
    }
}

/// The callback form of a job's events (see [`Backend::submit_with`]).
pub type GenerationCallback = EventCallback<Generation>;

/// What runs generations: in this process, or on a server.
pub trait Backend: Send + Sync {
    /// Queues `job` and returns its handle at once. Pre-flight problems (an invalid request, a
    /// model that is not there, unusable audio) end the job with a typed `Failed` event before
    /// any model loads.
    fn submit(&self, job: JobRequest) -> JobHandle<Generation>;

    /// Like [`submit`](Self::submit), with every event passed to `on_event` instead of a
    /// channel; the backend calls it from its own thread (the local engine's worker), so the
    /// result is handled whether or not anybody is watching.
    fn submit_with(&self, job: JobRequest, on_event: GenerationCallback) -> JobControl;

    /// The checkpoint folders found, which tasks each DiT runs, what is loaded and the budget.
    fn models(&self) -> Result<ModelsInfo, JobError>;

    /// Runs one of the 5 Hz LM's description modes on the calling thread (it blocks for the
    /// whole generation); `cancel` stops it between tokens. Backends without the LM say so.
    fn describe(&self, request: &DescribeRequest, cancel: &std::sync::atomic::AtomicBool) -> Result<Described, JobError> {
        let _ = (request, cancel);
        Err(JobError::Model { stage: "5 Hz LM", message: "this backend does not run the 5 Hz LM's description modes".into() })
    }
}

/// A description-mode job of the 5 Hz LM, run on its own (upstream's `/format_input`,
/// `/v1/create_sample` and understand).
#[derive(Debug, Clone)]
pub struct DescribeRequest {
    pub mode: DescribeMode,
    pub sampling: crate::lm::sample::Sampling,
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub enum DescribeMode {
    /// Audio codes (`<|audio_code_N|>` text) to caption, metas and lyrics.
    Understand { audio_codes: String },
    /// A short description to a whole piece (sample mode).
    Inspire { query: String, instrumental: bool, language: Option<String> },
    /// The user's caption and lyrics rewritten, with the metas given kept.
    Format { caption: String, lyrics: String, given: crate::lm::think::GivenMetas },
}

/// What a description job wrote, and with which LM.
#[derive(Debug, Clone)]
pub struct Described {
    /// The LM that wrote it: its folder's name (`acestep-5Hz-lm-1.7B`), or the server's address
    /// for a remote backend (whose answer carries the fields only: no text or token ids).
    pub model: String,
    pub description: crate::lm::describe::Description,
}

/// What a front end shows before it submits.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelsInfo {
    /// The checkpoints folder read.
    pub checkpoints: PathBuf,
    /// Each DiT folder found, by name.
    pub dits: Vec<DitInfo>,
    /// What is wrong with the shared models' folders (`vae/`, `Qwen3-Embedding-0.6B/`), if
    /// anything: every generation needs both.
    pub shared_problem: Option<String>,
    /// The 5 Hz LM folders that open (`acestep-5Hz-lm-*`), smallest first: what `thinking` plans with.
    pub lm_models: Vec<String>,
    /// What the model store holds now (all checkpoints folders of this process).
    pub resident: Vec<ResidentModel>,
    /// Bytes the resident DiTs may take together.
    pub budget_bytes: u64,
    /// How this backend loads the Linear weights on the CPU.
    pub precision: Precision,
    /// What the text encoder and VAE take together, for any precision; `None` when they cannot
    /// be read.
    pub shared_footprint: Option<Footprint>,
}

impl ModelsInfo {
    /// The memory one generation needs at `precision`: the largest usable DiT plus the text
    /// encoder and VAE (on the CPU in f32); `None` when the folder lacks them.
    pub fn memory_at(&self, precision: Precision) -> Option<u64> {
        let how = LoadAs::cpu(precision);
        let dit = self.dits.iter().filter_map(|d| d.footprint.as_ref()).map(|f| f.bytes(&how)).max()?;
        Some(dit + self.shared_footprint.as_ref()?.bytes(&how))
    }
}

/// One DiT folder of the checkpoints folder.
#[derive(Debug, Clone, PartialEq)]
pub struct DitInfo {
    /// The folder's name: what a request's `model` names.
    pub name: String,
    /// `None` when the folder cannot be used (see `problem`).
    pub kind: Option<ModelKind>,
    /// The tasks it runs.
    pub tasks: Vec<TaskType>,
    /// Memory its weights take once loaded by this backend.
    pub bytes: u64,
    /// What its weights take for any precision; `None` when the folder cannot be used.
    pub footprint: Option<Footprint>,
    pub loaded: bool,
    /// Why it cannot be used, naming the file or tensor.
    pub problem: Option<String>,
}
