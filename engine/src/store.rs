//! The resident model store: every model a process has loaded, shared by every backend in it.
//!
//! - The text encoder ([`ResidentText`]) and the VAE ([`ResidentVae`]) of a checkpoints folder
//!   load once and serve every DiT of that folder.
//! - Everything resident stays under a memory budget. Before a DiT loads, the least recently
//!   used DiTs are evicted until it fits; a DiT larger than the whole budget is a
//!   [`JobError::MemoryBudget`] before anything loads. The text encoder is freed once a job's
//!   prompts are encoded when the budget cannot hold it, the VAE and the job's DiT together.
//! - A 5 Hz LM ([`ResidentLm`]) counts against the same budget and is evicted like a DiT, least
//!   recently used first.
//! - [`Residency::PerStage`] loads each model for its stage without keeping it, so a one-shot
//!   job holds one model at a time.
//! - [`ModelStore::shared`] is the process's store: two plugin instances on two tracks (two
//!   backends, two worker threads) hold one copy of the weights. It lives while some backend
//!   holds it, so closing the last instance frees the memory.
//!
//! Models are handed out as `Arc`s: an evicted model that a running job still uses is freed when
//! that job ends. Loads are serialised (one at a time per store), so two workers asking for the
//! same model load it once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use candle_core::DType;

use crate::checkpoint::{
    CheckpointError, DitFolder, LmFolder, LoadAs, TextEncoderFolder, VaeFolder, DIT_WEIGHTS, TEXT_ENCODER_FOLDER,
    TEXT_WEIGHTS, VAE_FOLDER,
};
use crate::lm::genres::GenreVocabulary;
use crate::lm::tokenizer::LmTokenizer;
use crate::model::causal_lm::CausalLm;
use crate::error::JobError;
use crate::precision::Precision;
use crate::model::acestep::AceStepModel;
use crate::model::text_encoder::{PromptTokenizer, TextEncoder};
use crate::model::vae::Vae;
use crate::pipeline::recipe::{fingerprint, ModelFile};
use crate::progress::JobContext;
use crate::task::ModelKind;

/// Share of the machine's memory the resident models may hold when no budget is set. A
/// full-size turbo DiT, text encoder and VAE take 6.2 GiB in bf16: with 60 % they fit beside a
/// DAW on a 16 GB machine (in f32, 11.6 GiB, the text encoder is freed after each job's
/// prompts).
pub const DEFAULT_BUDGET_SHARE: f64 = 0.6;
/// The budget where the machine's memory cannot be read.
const FALLBACK_MEMORY_BYTES: u64 = 16 << 30;

/// How long a job's models stay in memory once their stage is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residency {
    /// Kept for the next job (the plugin, the server) under the budget: DiTs least recently
    /// used go first, and the text encoder is freed after the prompts when the budget cannot
    /// hold it, the VAE and the job's DiT together.
    #[default]
    Keep,
    /// Loaded for its stage and freed when the stage ends, so a job holds one model at a time:
    /// the least peak memory for one job, what a one-shot run (the CLI) wants.
    PerStage,
}

/// A loaded DiT.
pub struct ResidentDit {
    /// The checkpoint folder's name, e.g. `acestep-v15-turbo`.
    pub name: String,
    pub kind: ModelKind,
    pub model: AceStepModel,
    pub file: ModelFile,
    pub bytes: u64,
}

/// A loaded text encoder with its tokenizer (shared by every DiT of a checkpoints folder).
pub struct ResidentText {
    pub encoder: TextEncoder,
    pub tokenizer: PromptTokenizer,
    pub file: ModelFile,
    pub bytes: u64,
}

/// A loaded 5 Hz LM with its tokenizer.
pub struct ResidentLm {
    /// The folder's name, e.g. `acestep-5Hz-lm-1.7B`.
    pub name: String,
    pub model: CausalLm,
    pub tokenizer: LmTokenizer,
    /// Upstream's genre list, when the user has put it beside the checkpoints.
    pub genres: Option<GenreVocabulary>,
    pub file: ModelFile,
    pub bytes: u64,
}

/// A loaded VAE (shared by every DiT of a checkpoints folder).
pub struct ResidentVae {
    pub vae: Vae,
    pub bytes: u64,
}

/// What the store holds, for a front end to show.
#[derive(Debug, Clone, PartialEq)]
pub struct ResidentModel {
    /// The model's folder.
    pub dir: PathBuf,
    /// `Some` for a DiT; `None` for a text encoder or a VAE.
    pub dit: Option<ModelKind>,
    /// Memory its weights take.
    pub bytes: u64,
}

/// Which loaded copy: the same folder on another device, in another dtype or at another
/// precision is another model.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    dir: PathBuf,
    device: String,
    dtype: DType,
    precision: Precision,
}

#[derive(Clone)]
enum Resident {
    Dit(Arc<ResidentDit>),
    Text(Arc<ResidentText>),
    Vae(Arc<ResidentVae>),
    Lm(Arc<ResidentLm>),
}

impl Resident {
    /// DiTs and LMs make room for each other; the shared text encoder and VAE are not evicted.
    fn is_evictable(&self) -> bool {
        matches!(self, Resident::Dit(_) | Resident::Lm(_))
    }
}

/// A model type the store holds.
trait Stored: Sized {
    fn bytes(&self) -> u64;
    fn wrap(model: Arc<Self>) -> Resident;
    fn unwrap(resident: &Resident) -> Option<Arc<Self>>;
}

macro_rules! stored {
    ($model:ty, $variant:ident) => {
        impl Stored for $model {
            fn bytes(&self) -> u64 {
                self.bytes
            }
            fn wrap(model: Arc<Self>) -> Resident {
                Resident::$variant(model)
            }
            fn unwrap(resident: &Resident) -> Option<Arc<Self>> {
                match resident {
                    Resident::$variant(model) => Some(Arc::clone(model)),
                    _ => None,
                }
            }
        }
    };
}
stored!(ResidentDit, Dit);
stored!(ResidentText, Text);
stored!(ResidentVae, Vae);
stored!(ResidentLm, Lm);

struct Entry {
    key: Key,
    model: Resident,
    bytes: u64,
    /// The store's clock when a job last asked for it.
    last_used: u64,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    clock: u64,
    /// How many times each folder has been loaded, evictions included (for tests and reports).
    loads: BTreeMap<PathBuf, usize>,
}

/// See the module doc.
pub struct ModelStore {
    /// Bytes the resident models may take together.
    budget_bytes: AtomicU64,
    state: Mutex<State>,
    /// Held for a whole find-or-load, so one model never loads twice at once.
    loading: Mutex<()>,
}

impl ModelStore {
    /// A store of its own (tests, a server with its own budget).
    pub fn new(budget_bytes: u64) -> Arc<Self> {
        Arc::new(Self { budget_bytes: AtomicU64::new(budget_bytes), state: Mutex::default(), loading: Mutex::new(()) })
    }

    /// The process's store, made with [`default_budget_bytes`] when no backend holds it.
    pub fn shared() -> Arc<Self> {
        static SHARED: Mutex<Weak<ModelStore>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = shared.upgrade() {
            return store;
        }
        let store = Self::new(default_budget_bytes());
        *shared = Arc::downgrade(&store);
        store
    }

    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes.load(Relaxed)
    }

    /// A new budget, applied at the next load (nothing is evicted now).
    pub fn set_budget_bytes(&self, bytes: u64) {
        self.budget_bytes.store(bytes, Relaxed);
    }

    /// What is loaded now, most recently used first.
    pub fn resident(&self) -> Vec<ResidentModel> {
        let state = self.lock();
        let mut entries: Vec<&Entry> = state.entries.iter().collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        entries
            .into_iter()
            .map(|e| ResidentModel {
                dir: e.key.dir.clone(),
                dit: match &e.model {
                    Resident::Dit(dit) => Some(dit.kind),
                    Resident::Text(_) | Resident::Vae(_) | Resident::Lm(_) => None,
                },
                bytes: e.bytes,
            })
            .collect()
    }

    /// Bytes of all resident weights, DiTs and shared models.
    pub fn resident_bytes(&self) -> u64 {
        self.lock().entries.iter().map(|e| e.bytes).sum()
    }

    /// How many times the model in `dir` has been loaded by this store.
    pub fn load_count(&self, dir: &Path) -> usize {
        self.lock().loads.get(dir).copied().unwrap_or(0)
    }

    /// The bytes a DiT folder will take once loaded as `how`.
    pub fn dit_bytes(folder: &DitFolder, how: &LoadAs) -> Result<u64, JobError> {
        Ok(folder.footprint()?.bytes(how))
    }

    /// Refuses a DiT that the budget cannot hold even alone (checked before anything loads).
    pub fn check_fits(&self, folder: &DitFolder, how: &LoadAs) -> Result<(), JobError> {
        let needed_bytes = Self::dit_bytes(folder, how)?;
        let budget_bytes = self.budget_bytes();
        if needed_bytes > budget_bytes {
            return Err(JobError::MemoryBudget { model: folder_name(&folder.dir), needed_bytes, budget_bytes });
        }
        Ok(())
    }

    /// The DiT in `folder`: resident, or loaded now (after evicting what the budget needs) and
    /// kept as `residency` says.
    pub fn dit(&self, folder: &DitFolder, how: &LoadAs, residency: Residency, ctx: &JobContext) -> Result<Arc<ResidentDit>, JobError> {
        self.find_or_load(key(&folder.dir, how), residency, || {
            self.check_fits(folder, how)?;
            let bytes = Self::dit_bytes(folder, how)?;
            self.evict_for(bytes);
            let name = folder_name(&folder.dir);
            ctx.loading(&name);
            let model = folder.load(how)?.model;
            let file = model_file(&folder.dir, DIT_WEIGHTS)?;
            Ok(ResidentDit { name, kind: folder.model_kind(), model, file, bytes })
        })
    }

    /// The 5 Hz LM in `folder`: resident, or loaded now (after evicting what the budget needs)
    /// and kept as `residency` says.
    pub fn lm(&self, folder: &LmFolder, how: &LoadAs, residency: Residency, ctx: &JobContext) -> Result<Arc<ResidentLm>, JobError> {
        self.find_or_load(key(&folder.dir, how), residency, || {
            let bytes = folder.footprint()?.bytes(how);
            let name = folder.name();
            if bytes > self.budget_bytes() {
                return Err(JobError::MemoryBudget { model: name, needed_bytes: bytes, budget_bytes: self.budget_bytes() });
            }
            self.evict_for(bytes);
            ctx.loading(&name);
            let (model, tokenizer) = folder.load(how)?;
            let genres = folder.load_genres(&tokenizer)?;
            Ok(ResidentLm { name, model, tokenizer, genres, file: model_file(&folder.dir, TEXT_WEIGHTS)?, bytes })
        })
    }

    /// The text encoder of the checkpoints folder `root`: resident, or loaded now and kept as
    /// `residency` says.
    pub fn text_encoder(&self, root: &Path, how: &LoadAs, residency: Residency, ctx: &JobContext) -> Result<Arc<ResidentText>, JobError> {
        let dir = root.join(TEXT_ENCODER_FOLDER);
        self.find_or_load(key(&dir, how), residency, || {
            ctx.loading(TEXT_ENCODER_FOLDER);
            let folder = TextEncoderFolder::open(&dir)?;
            let (encoder, tokenizer) = folder.load(how)?;
            let bytes = folder.footprint()?.bytes(how);
            Ok(ResidentText { encoder, tokenizer, file: model_file(&dir, TEXT_WEIGHTS)?, bytes })
        })
    }

    /// The VAE of the checkpoints folder `root`: resident, or loaded now and kept as
    /// `residency` says.
    pub fn vae(&self, root: &Path, how: &LoadAs, residency: Residency, ctx: &JobContext) -> Result<Arc<ResidentVae>, JobError> {
        let dir = root.join(VAE_FOLDER);
        self.find_or_load(key(&dir, how), residency, || {
            ctx.loading(VAE_FOLDER);
            let folder = VaeFolder::open(&dir)?;
            let vae = folder.load(how)?;
            Ok(ResidentVae { vae, bytes: folder.footprint()?.bytes(how) })
        })
    }

    /// Frees the text encoder of `root` unless the budget holds it, the VAE and the DiT in
    /// `dit` together (other DiTs are evicted first). Called once the prompts are encoded, before
    /// the DiT loads.
    pub fn fit_text_encoder(&self, root: &Path, how: &LoadAs, dit: &DitFolder) -> Result<(), JobError> {
        let text_dir = root.join(TEXT_ENCODER_FOLDER);
        let vae_dir = root.join(VAE_FOLDER);
        // Resident models' bytes are known; only the others are counted from their folders.
        let resident = |dir: &Path| {
            let key = key(dir, how);
            self.lock().entries.iter().find(|e| e.key == key).map(|e| e.bytes)
        };
        let Some(text) = resident(&text_dir) else { return Ok(()) }; // nothing to free
        let vae = match resident(&vae_dir) {
            Some(bytes) => bytes,
            None => VaeFolder::open(&vae_dir)?.footprint()?.bytes(how),
        };
        let dit = match resident(&dit.dir) {
            Some(bytes) => bytes,
            None => Self::dit_bytes(dit, how)?,
        };
        if text + vae + dit > self.budget_bytes() {
            let text = key(&text_dir, how);
            self.lock().entries.retain(|e| e.key != text);
        }
        Ok(())
    }

    /// The model under `key`, or `load`'s, kept when `residency` says so. Loads are serialised,
    /// so two jobs asking for one model load it once.
    fn find_or_load<T: Stored>(
        &self,
        key: Key,
        residency: Residency,
        load: impl FnOnce() -> Result<T, JobError>,
    ) -> Result<Arc<T>, JobError> {
        let _loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = self.touch(&key).as_ref().and_then(T::unwrap) {
            return Ok(found);
        }
        let model = Arc::new(load()?);
        crate::alloc::release_freed_memory();
        let mut state = self.lock();
        state.clock += 1;
        *state.loads.entry(key.dir.clone()).or_default() += 1;
        if residency == Residency::Keep {
            let last_used = state.clock;
            state.entries.push(Entry { key, model: T::wrap(Arc::clone(&model)), bytes: model.bytes(), last_used });
        }
        Ok(model)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The resident model under `key`, marked as just used.
    fn touch(&self, key: &Key) -> Option<Resident> {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        let entry = state.entries.iter_mut().find(|e| &e.key == key)?;
        entry.last_used = now;
        Some(entry.model.clone())
    }

    /// Evict least recently used DiTs until `incoming` more bytes fit the budget.
    fn evict_for(&self, incoming: u64) {
        let budget = self.budget_bytes();
        let mut state = self.lock();
        loop {
            let resident: u64 = state.entries.iter().map(|e| e.bytes).sum();
            if resident + incoming <= budget {
                return;
            }
            let oldest = state
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.model.is_evictable())
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => drop(state.entries.remove(i)),
                None => return,
            }
        }
    }
}

fn key(dir: &Path, how: &LoadAs) -> Key {
    Key { dir: dir.to_path_buf(), device: format!("{:?}", how.device.location()), dtype: how.dtype, precision: how.precision }
}

/// A folder's own name (its last path component), as requests and recipes name models.
pub(crate) fn folder_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string())
}

/// The recipe's record of one weight file.
pub(crate) fn model_file(dir: &Path, file: &str) -> Result<ModelFile, CheckpointError> {
    let path = dir.join(file);
    let (bytes, fingerprint) = fingerprint(&path).map_err(|e| CheckpointError::io(&path, e))?;
    Ok(ModelFile { folder: folder_name(dir), file: file.into(), bytes, fingerprint })
}

/// [`DEFAULT_BUDGET_SHARE`] of the machine's physical memory.
pub fn default_budget_bytes() -> u64 {
    (physical_memory_bytes().unwrap_or(FALLBACK_MEMORY_BYTES) as f64 * DEFAULT_BUDGET_SHARE) as u64
}

/// The machine's physical memory, where the OS says.
pub fn physical_memory_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib: u64 = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    }
    #[cfg(target_os = "macos")]
    {
        let mut bytes: u64 = 0;
        let mut len = std::mem::size_of::<u64>();
        // SAFETY: "hw.memsize" is a NUL-terminated name, and `bytes`/`len` describe a u64.
        let rc = unsafe {
            libc::sysctlbyname(c"hw.memsize".as_ptr(), (&mut bytes as *mut u64).cast(), &mut len, std::ptr::null_mut(), 0)
        };
        (rc == 0).then_some(bytes)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_a_share_of_the_machine() {
        let total = physical_memory_bytes().expect("this machine's memory is readable");
        assert!(total > 1 << 30);
        let budget = default_budget_bytes();
        assert!(budget < total && budget as f64 >= total as f64 * 0.5, "{budget} of {total}");
    }

    #[test]
    fn the_process_store_is_one_while_held_and_freed_after() {
        let a = ModelStore::shared();
        let b = ModelStore::shared();
        assert!(Arc::ptr_eq(&a, &b));
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none(), "no backend holds it, so its models are freed");
    }
}
