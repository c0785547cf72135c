//! The resident model store: every model a process has loaded, shared by every backend in it.
//!
//! - The text encoder, its tokenizer and the VAE of a checkpoints folder load once
//!   ([`SharedModels`]) and serve every DiT of that folder.
//! - DiTs ([`ResidentDit`]) stay loaded under a memory budget. Before a DiT loads, the least
//!   recently used ones are evicted until it fits; a DiT larger than the whole budget is a
//!   [`JobError::MemoryBudget`] before anything loads.
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

use candle_core::{DType, Tensor};

use crate::checkpoint::{
    CheckpointError, DitFolder, LoadAs, TextEncoderFolder, VaeFolder, DIT_WEIGHTS, TEXT_ENCODER_FOLDER, TEXT_WEIGHTS,
    VAE_FOLDER, VAE_WEIGHTS,
};
use crate::error::JobError;
use crate::precision::Precision;
use crate::model::acestep::AceStepModel;
use crate::model::text_encoder::{PromptTokenizer, TextEncoder};
use crate::model::vae::Vae;
use crate::pipeline::recipe::{fingerprint, ModelFile};
use crate::progress::JobContext;
use crate::task::ModelKind;

/// Share of the machine's memory the DiTs may hold when no budget is set. A full-size DiT in
/// f32 is 9.6 GB: with 60 % one fits beside a DAW on a 16 GB machine, two on 32 GB.
pub const DEFAULT_BUDGET_SHARE: f64 = 0.6;
/// The budget where the machine's memory cannot be read.
const FALLBACK_MEMORY_BYTES: u64 = 16 << 30;

/// A loaded DiT with what the pipeline needs beside it.
pub struct ResidentDit {
    /// The checkpoint folder's name, e.g. `acestep-v15-turbo`.
    pub name: String,
    pub kind: ModelKind,
    pub model: AceStepModel,
    /// (1, S, 64): what the model reads as "no audio here".
    pub silence: Tensor,
    pub file: ModelFile,
    pub bytes: u64,
}

/// The models every DiT of a checkpoints folder shares.
pub struct SharedModels {
    pub vae: Vae,
    pub text_encoder: TextEncoder,
    pub tokenizer: PromptTokenizer,
    /// The VAE's and the text encoder's weight files, in that order.
    pub files: Vec<ModelFile>,
    pub bytes: u64,
}

/// What the store holds, for a front end to show.
#[derive(Debug, Clone, PartialEq)]
pub struct ResidentModel {
    /// The model's folder.
    pub dir: PathBuf,
    /// `Some` for a DiT; `None` for the shared text encoder and VAE of `dir`'s checkpoints.
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

enum Resident {
    Dit(Arc<ResidentDit>),
    Shared(Arc<SharedModels>),
}

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
    /// Bytes the resident DiTs may take together.
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
                    Resident::Shared(_) => None,
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

    /// The DiT in `folder`, loaded now (after evicting what the budget needs) or already resident.
    pub fn dit(&self, folder: &DitFolder, how: &LoadAs, ctx: &JobContext) -> Result<Arc<ResidentDit>, JobError> {
        let _loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        let key = key(&folder.dir, how);
        if let Some(Resident::Dit(dit)) = self.touch(&key) {
            return Ok(dit);
        }
        self.check_fits(folder, how)?;
        let bytes = Self::dit_bytes(folder, how)?;
        self.evict_for(bytes);
        let name = folder_name(&folder.dir);
        ctx.loading(&name);
        let loaded = folder.load(how)?;
        crate::alloc::release_freed_memory();
        let file = model_file(&folder.dir, DIT_WEIGHTS)?;
        let dit = Arc::new(ResidentDit {
            name,
            kind: folder.model_kind(),
            model: loaded.model,
            silence: loaded.silence_latent,
            file,
            bytes,
        });
        self.insert(key, Resident::Dit(Arc::clone(&dit)), bytes);
        Ok(dit)
    }

    /// The VAE and text encoder of the checkpoints folder `root`, loaded once.
    pub fn shared_models(&self, root: &Path, how: &LoadAs, ctx: &JobContext) -> Result<Arc<SharedModels>, JobError> {
        let _loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        let key = key(root, how);
        if let Some(Resident::Shared(models)) = self.touch(&key) {
            return Ok(models);
        }
        ctx.loading(VAE_FOLDER);
        let vae_folder = VaeFolder::open(&root.join(VAE_FOLDER))?;
        let vae = vae_folder.load(how)?;
        ctx.check_cancelled()?;
        ctx.loading(TEXT_ENCODER_FOLDER);
        let text_folder = TextEncoderFolder::open(&root.join(TEXT_ENCODER_FOLDER))?;
        let (text_encoder, tokenizer) = text_folder.load(how)?;
        crate::alloc::release_freed_memory();
        let files = vec![model_file(&vae_folder.dir, VAE_WEIGHTS)?, model_file(&text_folder.dir, TEXT_WEIGHTS)?];
        let bytes = vae_folder.footprint()?.plus(&text_folder.footprint()?).bytes(how);
        let models = Arc::new(SharedModels { vae, text_encoder, tokenizer, files, bytes });
        self.insert(key, Resident::Shared(Arc::clone(&models)), bytes);
        Ok(models)
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
        Some(match &entry.model {
            Resident::Dit(dit) => Resident::Dit(Arc::clone(dit)),
            Resident::Shared(models) => Resident::Shared(Arc::clone(models)),
        })
    }

    /// Evict least recently used DiTs until `incoming` more bytes of DiT fit the budget.
    fn evict_for(&self, incoming: u64) {
        let budget = self.budget_bytes();
        let mut state = self.lock();
        loop {
            let dit_bytes: u64 = state.entries.iter().filter(|e| matches!(e.model, Resident::Dit(_))).map(|e| e.bytes).sum();
            if dit_bytes + incoming <= budget {
                return;
            }
            let oldest = state
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(e.model, Resident::Dit(_)))
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => drop(state.entries.remove(i)),
                None => return,
            }
        }
    }

    fn insert(&self, key: Key, model: Resident, bytes: u64) {
        let mut state = self.lock();
        state.clock += 1;
        let last_used = state.clock;
        *state.loads.entry(key.dir.clone()).or_default() += 1;
        state.entries.push(Entry { key, model, bytes, last_used });
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
fn model_file(dir: &Path, file: &str) -> Result<ModelFile, CheckpointError> {
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
