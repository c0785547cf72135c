//! Checkpoint folders in the published layout, loaded unchanged:
//!
//! ```text
//! checkpoints/
//!   acestep-v15-turbo/      config.json, model.safetensors, silence_latent.pt
//!   acestep-v15-base/       (same)
//!   vae/                    config.json, diffusion_pytorch_model.safetensors
//!   Qwen3-Embedding-0.6B/   config.json, model.safetensors, tokenizer.json
//! ```
//!
//! Every load is validated first: each tensor the model's constructor asks for must be present,
//! shaped as the folder's `config.json` implies and stored as a float; the first problem is
//! reported by tensor name and file. Truncated or malformed files and a folder of the wrong model
//! are errors, never panics. Weights are read tensor by tensor and converted as [`LoadAs`] says.

pub mod footprint;
pub mod synth;
pub mod tensor_index;
pub mod torch_pt;
pub mod validate;
pub mod widen;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::lm::genres::GenreVocabulary;
use crate::lm::tokenizer::LmTokenizer;
use crate::model::acestep::AceStepModel;
use crate::model::causal_lm::CausalLm;
use crate::model::config::AceStepConfig;
use crate::model::text_encoder::{self, PromptTokenizer, TextEncoder};
use crate::model::vae::{Vae, VaeConfig};
use crate::precision::Precision;
use footprint::Footprint;
use tensor_index::TensorIndex;
use validate::ValidatingBackend;

use crate::task::ModelKind;

pub const TURBO_FOLDER: &str = ModelKind::Turbo.folder();
pub const BASE_FOLDER: &str = ModelKind::Base.folder();
pub const VAE_FOLDER: &str = "vae";
pub const TEXT_ENCODER_FOLDER: &str = "Qwen3-Embedding-0.6B";
/// The 5 Hz LMs' folders, smallest first (upstream's default is the 1.7B).
pub const LM_FOLDERS: [&str; 3] = ["acestep-5Hz-lm-0.6B", "acestep-5Hz-lm-1.7B", "acestep-5Hz-lm-4B"];

pub const DIT_WEIGHTS: &str = "model.safetensors";
pub const VAE_WEIGHTS: &str = "diffusion_pytorch_model.safetensors";
pub const TEXT_WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";
pub const SILENCE_LATENT: &str = "silence_latent.pt";

/// Why a checkpoint folder cannot be used; every variant names the file (and tensor) at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is missing ({what})")]
    MissingFile { path: PathBuf, what: &'static str },
    #[error("{file}: {why}")]
    Malformed { file: PathBuf, why: String },
    #[error("{file} is not {expected}: {why}")]
    WrongModel { file: PathBuf, expected: &'static str, why: String },
    #[error("tensor `{name}` is missing from {files}")]
    MissingTensor { name: String, files: String },
    #[error("tensor `{name}` in {file} has shape {found:?}; the folder's config.json implies {expected:?}")]
    WrongShape { name: String, file: PathBuf, found: Vec<usize>, expected: Vec<usize> },
    #[error("tensor `{name}` in {file} is stored as {found}; expected a float type (F32, BF16 or F16)")]
    WrongType { name: String, file: PathBuf, found: String },
    #[error("{folder}: {message}")]
    Model { folder: PathBuf, message: String },
}

impl CheckpointError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}

fn require_file(dir: &Path, name: &str, what: &'static str) -> Result<PathBuf, CheckpointError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(CheckpointError::MissingFile { path, what })
    }
}

/// Which model a folder's `config.json` must describe: the key naming the model (`model_type`,
/// diffusers' `_class_name`), the name it must have, whether the key must be there at all, and
/// how to call the model in an error.
pub struct ConfigKind {
    pub key: &'static str,
    pub name: &'static str,
    pub required: bool,
    pub expected: &'static str,
}

const DIT_KIND: ConfigKind = ConfigKind { key: "model_type", name: "acestep", required: false, expected: "an ACE-Step 1.5 DiT config" };
const VAE_KIND: ConfigKind =
    ConfigKind { key: "_class_name", name: "AutoencoderOobleck", required: false, expected: "an AutoencoderOobleck (VAE) config" };
const TEXT_KIND: ConfigKind = ConfigKind { key: "model_type", name: "qwen3", required: true, expected: "a Qwen3 text encoder config" };
const LM_KIND: ConfigKind = ConfigKind { key: "model_type", name: "qwen3", required: true, expected: "a Qwen3 causal LM config (the 5 Hz LM)" };

/// Read a folder's `config.json` once, refuse one that names another model, and parse it with
/// `parse`; any failure is "not {expected}".
pub fn read_config<T>(
    dir: &Path,
    kind: &ConfigKind,
    parse: impl FnOnce(serde_json::Value) -> Result<T, serde_json::Error>,
) -> Result<T, CheckpointError> {
    let path = require_file(dir, "config.json", "the model's config.json")?;
    let text = std::fs::read_to_string(&path).map_err(|e| CheckpointError::io(&path, e))?;
    let wrong = |why: String| CheckpointError::WrongModel { file: path.clone(), expected: kind.expected, why };
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| wrong(e.to_string()))?;
    match raw.get(kind.key) {
        Some(serde_json::Value::String(name)) if name == kind.name => {}
        None if !kind.required => {}
        found => {
            let found = found.map_or("missing".to_string(), |v| v.to_string());
            return Err(wrong(format!("its {} is {found}, not \"{}\"", kind.key, kind.name)));
        }
    }
    parse(raw).map_err(|e| wrong(e.to_string()))
}

/// How a model's weights are loaded: the dtype it computes in, on which device, and (on the CPU
/// in f32) how its Linear weights are held.
#[derive(Debug, Clone)]
pub struct LoadAs {
    pub dtype: DType,
    pub precision: Precision,
    pub device: Device,
}

impl LoadAs {
    /// f32 on the CPU with Linear weights held at `precision`.
    pub fn cpu(precision: Precision) -> Self {
        Self { dtype: DType::F32, precision, device: Device::Cpu }
    }
}

/// Run a model constructor against a folder's tensors: shape-checked, and loaded as `how` says
/// when `load` (otherwise nothing is read). Also returns what the weights take resident.
pub fn build_validated<T>(
    folder: &Path,
    index: &TensorIndex,
    how: &LoadAs,
    load: bool,
    construct: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<T>,
) -> Result<(T, Footprint), CheckpointError> {
    let (vb, report) = ValidatingBackend::var_builder(index.clone(), load, how.dtype, how.precision, &how.device);
    let built = construct(vb);
    let mut report = report.lock().unwrap_or_else(|p| p.into_inner());
    match built {
        Ok(model) => Ok((model, std::mem::take(&mut report.footprint))),
        Err(e) => Err(report
            .first_error
            .take()
            .unwrap_or_else(|| CheckpointError::Model { folder: folder.to_path_buf(), message: e.to_string() })),
    }
}

/// Shapes only, on the CPU: what validation and memory estimates use.
fn shapes_only() -> LoadAs {
    LoadAs::cpu(Precision::F32)
}

/// A DiT folder (`acestep-v15-turbo/`, `acestep-v15-base/`, ...), opened but not loaded.
#[derive(Debug, Clone)]
pub struct DitFolder {
    pub dir: PathBuf,
    pub config: AceStepConfig,
    pub weights: TensorIndex,
    pub silence_latent: PathBuf,
}

/// A loaded DiT checkpoint.
#[derive(Debug, Clone)]
pub struct LoadedDit {
    pub model: AceStepModel,
    /// (1, S, A): upstream transposes the stored (1, A, S) at load.
    pub silence_latent: Tensor,
}

impl DitFolder {
    /// Read `config.json`, the weight file's header and check `silence_latent.pt` is there.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let config: AceStepConfig = read_config(dir, &DIT_KIND, serde_json::from_value)?;
        let weights_path = require_file(dir, DIT_WEIGHTS, "the DiT weights")?;
        let silence_latent = require_file(dir, SILENCE_LATENT, "the silence latent")?;
        let weights = TensorIndex::from_files(&[weights_path])?;
        Ok(Self { dir: dir.to_path_buf(), config, weights, silence_latent })
    }

    /// Whether this is a turbo (CFG-distilled, 8-step) model.
    pub fn is_turbo(&self) -> bool {
        self.config.is_turbo
    }

    /// Turbo from the config; base and SFT share a config, so SFT is told by its folder name
    /// (`acestep-v15-sft`).
    pub fn model_kind(&self) -> ModelKind {
        let name = self.dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if self.is_turbo() {
            ModelKind::Turbo
        } else if name.contains("sft") {
            ModelKind::Sft
        } else {
            ModelKind::Base
        }
    }

    /// Check every tensor without loading any weights.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        build_validated(&self.dir, &self.weights, &shapes_only(), false, |vb| AceStepModel::new(&self.config, vb))?;
        self.read_silence_latent(&Device::Cpu).map(|_| ())
    }

    /// What the weights take resident, for any load (a shapes-only pass: nothing is read).
    pub fn footprint(&self) -> Result<Footprint, CheckpointError> {
        Ok(build_validated(&self.dir, &self.weights, &shapes_only(), false, |vb| AceStepModel::new(&self.config, vb))?.1)
    }

    pub fn load(&self, how: &LoadAs) -> Result<LoadedDit, CheckpointError> {
        let (model, _) = build_validated(&self.dir, &self.weights, how, true, |vb| AceStepModel::new(&self.config, vb))?;
        let silence_latent = self.read_silence_latent(&how.device)?.to_dtype(how.dtype).map_err(|e| self.model_error(e))?;
        Ok(LoadedDit { model, silence_latent })
    }

    /// The silence latent as (1, S, A).
    pub fn read_silence_latent(&self, device: &Device) -> Result<Tensor, CheckpointError> {
        let stored = torch_pt::read_tensor(&self.silence_latent, device)?;
        let channels = self.config.audio_acoustic_hidden_dim;
        match stored.dims() {
            [1, c, frames] if *c == channels && *frames > 0 => {
                stored.transpose(1, 2).and_then(|t| t.contiguous()).map_err(|e| self.model_error(e))
            }
            dims => Err(CheckpointError::Malformed {
                file: self.silence_latent.clone(),
                why: format!("holds a tensor of shape {dims:?}; expected [1, {channels}, frames]"),
            }),
        }
    }

    fn model_error(&self, e: candle_core::Error) -> CheckpointError {
        CheckpointError::Model { folder: self.dir.clone(), message: e.to_string() }
    }
}

/// The `vae/` folder (diffusers' `AutoencoderOobleck`).
#[derive(Debug, Clone)]
pub struct VaeFolder {
    pub dir: PathBuf,
    pub config: VaeConfig,
    pub weights: TensorIndex,
}

impl VaeFolder {
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let config: VaeConfig = read_config(dir, &VAE_KIND, serde_json::from_value)?;
        let weights_path = require_file(dir, VAE_WEIGHTS, "the VAE weights")?;
        let weights = TensorIndex::from_files(&[weights_path])?;
        Ok(Self { dir: dir.to_path_buf(), config, weights })
    }

    pub fn validate(&self) -> Result<(), CheckpointError> {
        build_validated(&self.dir, &self.weights, &shapes_only(), false, |vb| Vae::new(&self.config, vb)).map(|_| ())
    }

    /// What the weights take resident, for any load (a shapes-only pass: nothing is read).
    pub fn footprint(&self) -> Result<Footprint, CheckpointError> {
        Ok(build_validated(&self.dir, &self.weights, &shapes_only(), false, |vb| Vae::new(&self.config, vb))?.1)
    }

    pub fn load(&self, how: &LoadAs) -> Result<Vae, CheckpointError> {
        Ok(build_validated(&self.dir, &self.weights, how, true, |vb| Vae::new(&self.config, vb))?.0)
    }
}

/// The text encoder folder (`Qwen3-Embedding-0.6B/`): the transformer and its tokenizer.
#[derive(Debug, Clone)]
pub struct TextEncoderFolder {
    pub dir: PathBuf,
    pub config: candle_transformers::models::qwen3::Config,
    pub weights: TensorIndex,
    pub tokenizer: PathBuf,
}

impl TextEncoderFolder {
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let config = read_config(dir, &TEXT_KIND, |raw| text_encoder::config_from_json(&raw.to_string()))?;
        let weights_path = require_file(dir, TEXT_WEIGHTS, "the text encoder weights")?;
        let tokenizer = require_file(dir, TOKENIZER, "the text encoder's tokenizer.json")?;
        let weights = TensorIndex::from_files(&[weights_path])?;
        Ok(Self { dir: dir.to_path_buf(), config, weights, tokenizer })
    }

    pub fn validate(&self) -> Result<(), CheckpointError> {
        build_validated(&self.dir, &self.weights, &shapes_only(), false, |vb| TextEncoder::new(&self.config, vb))?;
        self.load_tokenizer().map(|_| ())
    }

    /// What the weights take resident, for any load (a shapes-only pass: nothing is read).
    pub fn footprint(&self) -> Result<Footprint, CheckpointError> {
        Ok(build_validated(&self.dir, &self.weights, &shapes_only(), false, |vb| TextEncoder::new(&self.config, vb))?.1)
    }

    pub fn load(&self, how: &LoadAs) -> Result<(TextEncoder, PromptTokenizer), CheckpointError> {
        let (encoder, _) = build_validated(&self.dir, &self.weights, how, true, |vb| TextEncoder::new(&self.config, vb))?;
        Ok((encoder, self.load_tokenizer()?))
    }

    pub fn load_tokenizer(&self) -> Result<PromptTokenizer, CheckpointError> {
        let tokenizer = PromptTokenizer::from_file(&self.tokenizer)
            .map_err(|e| CheckpointError::Malformed { file: self.tokenizer.clone(), why: e.to_string() })?;
        // A tokenizer from another model would index past the embedding table.
        if tokenizer.vocab_size() > self.config.vocab_size {
            return Err(CheckpointError::Malformed {
                file: self.tokenizer.clone(),
                why: format!(
                    "has {} tokens but the model's vocabulary has {} (a tokenizer of another model?)",
                    tokenizer.vocab_size(),
                    self.config.vocab_size
                ),
            });
        }
        Ok(tokenizer)
    }
}

/// A 5 Hz LM folder (`acestep-5Hz-lm-1.7B/`: config.json, model.safetensors, tokenizer.json),
/// opened but not loaded.
#[derive(Debug, Clone)]
pub struct LmFolder {
    pub dir: PathBuf,
    pub config: candle_transformers::models::qwen3::Config,
    pub weights: TensorIndex,
    pub tokenizer: PathBuf,
}

impl LmFolder {
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let config = read_config(dir, &LM_KIND, |raw| text_encoder::config_from_json(&raw.to_string()))?;
        let weights_path = require_file(dir, TEXT_WEIGHTS, "the 5 Hz LM weights")?;
        let tokenizer = require_file(dir, TOKENIZER, "the 5 Hz LM's tokenizer.json")?;
        let weights = TensorIndex::from_files(std::slice::from_ref(&weights_path))?;
        // The text encoder is a Qwen3 too; a causal LM's body is saved under `model.`.
        if weights.get("model.embed_tokens.weight").is_none() {
            return Err(CheckpointError::WrongModel {
                file: weights_path,
                expected: LM_KIND.expected,
                why: "it has no model.embed_tokens.weight (a Qwen3 saved without the LM head's `model.` prefix, like the text encoder)".into(),
            });
        }
        Ok(Self { dir: dir.to_path_buf(), config, weights, tokenizer })
    }

    /// The folder name, which is the model's name (`acestep-5Hz-lm-1.7B`).
    pub fn name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), CheckpointError> {
        build_validated(&self.dir, &self.weights, &shapes_only(), false, |vb| CausalLm::new(&self.config, vb))?;
        self.load_tokenizer().map(|_| ())
    }

    /// What the weights take resident, for any load (a shapes-only pass: nothing is read).
    pub fn footprint(&self) -> Result<Footprint, CheckpointError> {
        Ok(build_validated(&self.dir, &self.weights, &shapes_only(), false, |vb| CausalLm::new(&self.config, vb))?.1)
    }

    pub fn load(&self, how: &LoadAs) -> Result<(CausalLm, LmTokenizer), CheckpointError> {
        let tokenizer = self.load_tokenizer()?;
        let (model, _) = build_validated(&self.dir, &self.weights, how, true, |vb| CausalLm::new(&self.config, vb))?;
        Ok((model, tokenizer))
    }

    /// The tokenizer, checked against the model: the same vocabulary size, so every id the model
    /// can emit decodes and the audio codes sit where the model puts them.
    pub fn load_tokenizer(&self) -> Result<LmTokenizer, CheckpointError> {
        let malformed = |why: String| CheckpointError::Malformed { file: self.tokenizer.clone(), why };
        let tokenizer = LmTokenizer::from_file(&self.tokenizer).map_err(malformed)?;
        if tokenizer.vocab_size() != self.config.vocab_size {
            return Err(malformed(format!(
                "has {} tokens but the model's vocabulary has {} (a tokenizer of another model?)",
                tokenizer.vocab_size(),
                self.config.vocab_size
            )));
        }
        Ok(tokenizer)
    }

    /// Upstream's genre list (`genres_vocab.txt`, shipped in its Python package, not with the
    /// weights): in this folder, else in the checkpoints folder above it.
    pub fn genre_list_path(&self) -> Option<PathBuf> {
        let here = self.dir.join(crate::lm::genres::FILE_NAME);
        let above = self.dir.parent().map(|root| root.join(crate::lm::genres::FILE_NAME));
        [Some(here), above].into_iter().flatten().find(|p| p.is_file())
    }

    /// The genre list for `tokenizer`, if the user has put one where
    /// [`genre_list_path`](Self::genre_list_path) looks.
    pub fn load_genres(&self, tokenizer: &LmTokenizer) -> Result<Option<GenreVocabulary>, CheckpointError> {
        let Some(path) = self.genre_list_path() else { return Ok(None) };
        GenreVocabulary::load(&path, tokenizer).map(Some).map_err(|why| CheckpointError::Malformed { file: path, why })
    }
}
