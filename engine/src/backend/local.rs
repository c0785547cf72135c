//! [`LocalBackend`]: the engine in this process. One worker thread per backend runs its jobs in
//! order; the models come from a [`ModelStore`] that every backend of the process shares.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use candle_core::{DType, Device};

use super::admit::{admit, dit_folders, Admitted};
use super::{Backend, DescribeMode, DescribeRequest, Described, DitInfo, GenerationCallback, JobRequest, ModelsInfo};
use crate::checkpoint::footprint::Footprint;
use crate::checkpoint::{CheckpointError, LmFolder, LoadAs, TextEncoderFolder, VaeFolder, LM_FOLDERS, TEXT_ENCODER_FOLDER, VAE_FOLDER};
use crate::precision::Precision;
use crate::error::JobError;
use crate::job::{Engine, JobControl, JobHandle, Worker};
use crate::lm::describe::Describer;
use crate::pipeline::source::LatentCache;
use crate::pipeline::{Generation, JobModels, Pipeline, LATENT_CACHE_ENTRIES};
use crate::progress::JobContext;
use crate::store::{ModelStore, Residency};
use crate::task::TaskType;

/// Where a local backend's models live and what it runs them on.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// The checkpoints folder: `acestep-v15-*/`, `vae/`, `Qwen3-Embedding-0.6B/`.
    pub checkpoints: PathBuf,
    pub device: Device,
    pub dtype: DType,
    /// How Linear weights are held on the CPU in f32 (`crate::precision`).
    pub precision: Precision,
    /// Whether models stay loaded between jobs.
    pub residency: Residency,
}

impl LocalSettings {
    /// The CPU in float32, weights held in bf16, models kept between jobs.
    pub fn cpu(checkpoints: impl Into<PathBuf>) -> Self {
        Self {
            checkpoints: checkpoints.into(),
            device: Device::Cpu,
            dtype: DType::F32,
            precision: Precision::default(),
            residency: Residency::Keep,
        }
    }

    pub fn load_as(&self) -> LoadAs {
        LoadAs { dtype: self.dtype, precision: self.precision, device: self.device.clone() }
    }
}

/// What the worker thread runs: a raw job (pre-flight first) or one already admitted.
pub enum LocalJob {
    Request(JobRequest),
    Admitted(Box<Admitted>),
}

/// The engine in this process. Dropping it cancels its jobs and joins its thread; the models stay
/// in the store while another backend holds it.
pub struct LocalBackend {
    settings: LocalSettings,
    store: Arc<ModelStore>,
    engine: Engine<LocalWorker>,
    /// Footprints already counted, by weight files and their sizes and times: counting builds
    /// the model's structure, and a front end asks for [`Backend::models`] every few seconds.
    footprints: Mutex<HashMap<Vec<FileStamp>, Footprint>>,
}

/// A weight file as it was when its footprint was counted.
type FileStamp = (PathBuf, u64, Option<SystemTime>);

fn stamps(files: &[PathBuf]) -> Vec<FileStamp> {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok();
            (f.clone(), meta.as_ref().map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok()))
        })
        .collect()
}

impl LocalBackend {
    /// A backend on the process's model store ([`ModelStore::shared`]).
    pub fn new(settings: LocalSettings) -> std::io::Result<Self> {
        Self::with_store(settings, ModelStore::shared())
    }

    /// A backend on `store`. The only error is the OS refusing to spawn the worker thread.
    pub fn with_store(settings: LocalSettings, store: Arc<ModelStore>) -> std::io::Result<Self> {
        let worker = LocalWorker { settings: settings.clone(), store: Arc::clone(&store), latents: LatentCache::new(LATENT_CACHE_ENTRIES) };
        let engine = Engine::start(move || Ok::<_, String>(worker))?;
        Ok(Self { settings, store, engine, footprints: Mutex::default() })
    }

    pub fn settings(&self) -> &LocalSettings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<ModelStore> {
        &self.store
    }

    /// The pre-flight on the calling thread: for a front end that wants the resolved request (its
    /// seeds, its model) or the error before it queues anything. Reads the audio inputs.
    pub fn admit(&self, job: JobRequest) -> Result<Admitted, JobError> {
        admit(&self.settings.checkpoints, &self.store, &self.settings.load_as(), job)
    }

    /// Queues a job that [`admit`](Self::admit) has passed.
    pub fn submit_admitted(&self, job: Admitted) -> JobHandle<Generation> {
        self.engine.submit(LocalJob::Admitted(Box::new(job)))
    }

    /// Cancels the running job and every queued one.
    pub fn cancel_all(&self) {
        self.engine.cancel_all();
    }

    /// How many jobs are queued or running.
    pub fn pending(&self) -> usize {
        self.engine.pending()
    }
}

impl Backend for LocalBackend {
    fn submit(&self, job: JobRequest) -> JobHandle<Generation> {
        self.engine.submit(LocalJob::Request(job))
    }

    fn submit_with(&self, job: JobRequest, on_event: GenerationCallback) -> JobControl {
        self.engine.submit_with(LocalJob::Request(job), on_event)
    }

    fn describe(&self, request: &DescribeRequest, cancel: &AtomicBool) -> Result<Described, JobError> {
        let settings = &self.settings;
        let ctx = JobContext::detached(cancel);
        let folder = crate::pipeline::choose_lm(&settings.checkpoints)?;
        let lm = self.store.lm(&folder, &settings.load_as(), settings.residency, &ctx)?;
        let describer = Describer {
            lm: &lm.model,
            tokenizer: &lm.tokenizer,
            genres: lm.genres.as_ref(),
            sampling: request.sampling,
            seed: request.seed,
        };
        let keep_going = &mut || !ctx.is_cancelled();
        let on_token = &mut |_| {};
        let description = match &request.mode {
            DescribeMode::Understand { audio_codes } => describer.understand(audio_codes, keep_going, on_token),
            DescribeMode::Inspire { query, instrumental, language } => {
                describer.inspire(query, *instrumental, language.as_deref(), keep_going, on_token)
            }
            DescribeMode::Format { caption, lyrics, given } => describer.format(caption, lyrics, given.clone(), keep_going, on_token),
        }
        .map_err(crate::pipeline::lm_error)?;
        Ok(Described { model: lm.name.clone(), description })
    }

    fn models(&self) -> Result<ModelsInfo, JobError> {
        let root = &self.settings.checkpoints;
        let how = self.settings.load_as();
        let resident = self.store.resident();
        let dits = dit_folders(root)?
            .into_iter()
            .map(|(name, opened)| match opened {
                Ok(folder) => {
                    let kind = folder.model_kind();
                    let footprint = self.footprint(&folder.weights.files, || folder.footprint());
                    DitInfo {
                        loaded: resident.iter().any(|r| r.dir == folder.dir),
                        tasks: TaskType::ALL.into_iter().filter(|&t| kind.runs(t)).collect(),
                        bytes: footprint.as_ref().map_or(0, |f| f.bytes(&how)),
                        kind: Some(kind),
                        problem: footprint.as_ref().err().map(|e| e.to_string()),
                        footprint: footprint.ok(),
                        name,
                    }
                }
                Err(e) => DitInfo { name, kind: None, tasks: Vec::new(), bytes: 0, footprint: None, loaded: false, problem: Some(e.to_string()) },
            })
            .collect();
        let vae = VaeFolder::open(&root.join(VAE_FOLDER))
            .and_then(|f| self.footprint(&f.weights.files, || f.footprint()))
            .map_err(|e| format!("{VAE_FOLDER}: {e}"));
        let text = TextEncoderFolder::open(&root.join(TEXT_ENCODER_FOLDER))
            .and_then(|f| self.footprint(&f.weights.files, || f.footprint()))
            .map_err(|e| format!("{TEXT_ENCODER_FOLDER}: {e}"));
        let (shared_footprint, shared_problem) = match (vae, text) {
            (Ok(vae), Ok(text)) => (Some(vae.plus(&text)), None),
            (Err(e), _) | (_, Err(e)) => (None, Some(e)),
        };
        let lm_models = LM_FOLDERS.iter().filter(|name| LmFolder::open(&root.join(name)).is_ok()).map(|n| n.to_string()).collect();
        Ok(ModelsInfo {
            checkpoints: root.clone(),
            dits,
            lm_models,
            shared_problem,
            resident,
            budget_bytes: self.store.budget_bytes(),
            precision: self.settings.precision,
            shared_footprint,
        })
    }
}

impl LocalBackend {
    /// `count`'s footprint of the model in `files`, counted once while the files stay the same.
    fn footprint(&self, files: &[PathBuf], count: impl FnOnce() -> Result<Footprint, CheckpointError>) -> Result<Footprint, CheckpointError> {
        let key = stamps(files);
        if let Some(known) = self.footprints.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(known.clone());
        }
        let counted = count()?;
        self.footprints.lock().unwrap_or_else(PoisonError::into_inner).insert(key, counted.clone());
        Ok(counted)
    }
}

/// The worker thread's state: the settings, the shared store, and encoded inputs kept between
/// jobs of this backend.
struct LocalWorker {
    settings: LocalSettings,
    store: Arc<ModelStore>,
    latents: LatentCache,
}

impl Worker for LocalWorker {
    type Request = LocalJob;
    type Output = Generation;

    fn run(&mut self, job: LocalJob, ctx: &JobContext<'_>) -> Result<Generation, JobError> {
        let how = self.settings.load_as();
        let checkpoints = &self.settings.checkpoints;
        let admitted = match job {
            LocalJob::Admitted(admitted) => *admitted,
            LocalJob::Request(request) => {
                ctx.stage("audio");
                admit(checkpoints, &self.store, &how, request)?
            }
        };
        ctx.check_cancelled()?;
        let models = JobModels {
            store: Arc::clone(&self.store),
            checkpoints: checkpoints.clone(),
            how,
            residency: self.settings.residency,
        };
        let generation = Pipeline::new(models, &admitted.dit).and_then(|p| p.generate(&admitted, &mut self.latents, ctx));
        // The job's activations are freed; give their memory back to the system.
        crate::alloc::release_freed_memory();
        generation
    }
}
