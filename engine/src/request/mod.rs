//! The generation request: what a caller asks the engine for, in ACE-Step's own field names, so
//! the plugin, the CLI, the REST server and the remote client share one type.
//!
//! A request goes through three steps:
//! 1. Parsing ([`GenerationRequest::from_json`], [`GenerationRequest::from_value`] or serde).
//!    Upstream's REST aliases and camelCase keys are accepted, and values may arrive as strings, as
//!    form fields do. An unknown field is an error that names it.
//! 2. [`GenerationRequest::validate`]. It returns one error per problem, naming the field, the
//!    value and what is allowed.
//! 3. [`GenerationRequest::resolve`] for the loaded model. This fills in the per-model defaults
//!    (steps, shift, guidance), draws and records the per-item seeds, and builds the prompt
//!    inputs. Lego, extract and complete need the base model.
//!
//! Names, aliases, bounds and defaults follow upstream ACE-Step 1.5 at 6d467e4 (paths are
//! relative to `acestep/`); see `reference/model-spec.md` sections 3 to 5. Where upstream's layers
//! disagree, the choice is written next to the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::prompt::PromptInputs;
pub use crate::sampling::InferMethod;
use crate::sampling::{RepaintMode, RepaintSettings};
use crate::task::{is_valid_keyscale, TaskType, TRACK_NAMES};
pub use crate::task::{ModelKind, BASE_MAX_STEPS, BASE_STEPS, SFT_STEPS, TURBO_MAX_STEPS, TURBO_STEPS};

mod parse;

/// Shortest and longest audio the DiT makes, in seconds (`constants.py:58-59`).
pub const DURATION_MIN_S: f64 = 10.0;
pub const DURATION_MAX_S: f64 = 600.0;
/// What text2music generates when no duration is given and no LM picks one
/// (`core/generation/handler/padding_utils.py:81`). The metas still say 30 seconds, as upstream's do.
pub const FALLBACK_DURATION_S: f64 = 120.0;
/// Tempo range (`constants.py:52-53`).
pub const BPM_MIN: u32 = 30;
pub const BPM_MAX: u32 = 300;
/// Time signatures, as the LM writes them (`constants.py:66`, `VALID_TIME_SIGNATURES`), and as
/// users write them (model-spec section 5.1: "4/4" goes into the metas verbatim).
pub const TIME_SIGNATURES: [&str; 8] = ["2", "3", "4", "6", "2/4", "3/4", "4/4", "6/8"];
/// Vocal language codes (`constants.py:13-20`, `VALID_LANGUAGES`).
pub const VOCAL_LANGUAGES: [&str; 51] = [
    "ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr", "ht", "hu",
    "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro", "ru", "sa", "sk", "sr",
    "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh", "unknown",
];
/// The lyric header's language when none is given: `GenerationParams.vocal_language`
/// (`inference.py:117`). Upstream's REST model says "en" instead (`release_task_models.py:40`).
pub const DEFAULT_VOCAL_LANGUAGE: &str = "unknown";
/// Items per job (`core/generation/handler/service_generate_request.py:12`, `MAX_BATCH_SIZE`).
pub const MAX_BATCH_SIZE: u32 = 8;
/// Items per job when not given (`api/job_generation_setup.py:203`; `inference.py:243`).
pub const DEFAULT_BATCH_SIZE: u32 = 2;
/// Timestep shift: default and range (`api/http/release_task_models.py:92-95`;
/// `ui/gradio/interfaces/generation_advanced_dit_controls.py:129-131`).
pub const DEFAULT_SHIFT: f64 = 3.0;
pub const SHIFT_RANGE: (f64, f64) = (1.0, 5.0);
/// CFG (APG) guidance of the base and SFT models: default and range (`inference.py:136`;
/// `ui/gradio/interfaces/generation_advanced_dit_controls.py:37-39`). 1 means no CFG.
pub const DEFAULT_GUIDANCE_SCALE: f64 = 7.0;
pub const GUIDANCE_RANGE: (f64, f64) = (1.0, 15.0);
/// The most a seed can be: upstream draws seeds with `random.randint(0, 2**32 - 1)`
/// (`core/generation/handler/task_utils.py:27`). -1 asks for a random seed.
pub const MAX_SEED: i64 = u32::MAX as i64;

/// The encoded file a job returns (`api/http/release_task_models.py:101-104`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    /// `GenerationConfig`'s default (`inference.py:249`). Upstream's REST model defaults to mp3.
    #[default]
    Flac,
    Mp3,
    Opus,
    Aac,
    Wav,
    Wav32,
}

impl AudioFormat {
    pub const ALL: [AudioFormat; 6] = [
        AudioFormat::Flac,
        AudioFormat::Mp3,
        AudioFormat::Opus,
        AudioFormat::Aac,
        AudioFormat::Wav,
        AudioFormat::Wav32,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AudioFormat::Flac => "flac",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Opus => "opus",
            AudioFormat::Aac => "aac",
            AudioFormat::Wav => "wav",
            AudioFormat::Wav32 => "wav32",
        }
    }
}

/// The seed(s) a request asks for. -1 means "draw one".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Seed {
    /// One seed for the whole batch: item i gets `seed + i` (mod 2^32), so the batch is
    /// reproducible from one number. Upstream draws items 1.. at random instead
    /// (`core/generation/handler/task_utils.py:48-52`).
    One(i64),
    /// One seed per item; missing items and -1 entries are drawn (`task_utils.py:49-56`).
    PerItem(Vec<i64>),
}

/// A request for one generation job, batch included.
///
/// Field names are upstream's `GenerationParams`/`GenerationConfig` names (`inference.py:100-251`).
/// Serialising writes these names and leaves out unset options. Parsing also accepts the keys
/// below: upstream's REST aliases (`api/http/release_task_param_parser.py:9-46`, cited as
/// "parser:LINE") and camelCase ("B": added by Backline, where upstream has no camelCase key).
///
/// | field | other keys |
/// |---|---|
/// | `task_type` | `taskType` (parser:34) |
/// | `caption` | `prompt` (parser:10; upstream REST's own name, `release_task_models.py:19`) |
/// | `vocal_language` | `vocalLanguage`, `language` (parser:23) |
/// | `keyscale` | `key_scale`, `keyScale`, `key` (parser:20) |
/// | `timesignature` | `time_signature`, `timeSignature` (parser:21) |
/// | `duration` | `audio_duration`, `audioDuration`, `target_duration`, `targetDuration` (parser:22) |
/// | `src_audio` | `src_audio_path`, `ctx_audio_path`, `sourceAudioPath`, `srcAudioPath`, `ctxAudioPath` (parser:33); `srcAudio` (B) |
/// | `reference_audio` | `reference_audio_path`, `ref_audio_path`, `referenceAudioPath`, `refAudioPath` (parser:32); `referenceAudio` (B) |
/// | `repainting_start`, `repainting_end` | `repaintingStart`, `repaintingEnd` (B) |
/// | `repaint_mode`, `repaint_strength` | `repaintMode`, `repaintStrength` (B) |
/// | `audio_cover_strength` | `audioCoverStrength`, `cover_strength`, `coverStrength` (parser:29) |
/// | `cover_noise_strength` | `coverNoiseStrength` (parser:30) |
/// | `track_name` | `trackName` (parser:44) |
/// | `track_classes` | `trackClasses`, `instruments` (parser:45) |
/// | `inference_steps` | `inferenceSteps` (parser:25) |
/// | `guidance_scale` | `guidanceScale` (parser:26) |
/// | `cfg_interval_start`, `cfg_interval_end` | `cfgIntervalStart`, `cfgIntervalEnd` (B) |
/// | `use_adg` | `useAdg` (B) |
/// | `infer_method` | `inferMethod` (parser:35) |
/// | `seed` | `seeds` (B, after `GenerationConfig.seeds`, `inference.py:246`) |
/// | `use_random_seed` | `useRandomSeed` (parser:27) |
/// | `batch_size` | `batchSize` (B) |
/// | `audio_format` | `audioFormat` (B) |
/// | `model` | `model_name`, `modelName`, `dit_model`, `ditModel` (parser:19) |
///
/// `lyrics`, `instrumental`, `bpm`, `shift`, `timesteps` and `instruction` have no other keys.
/// As upstream's parser does, keys may also sit in a nested `param_obj` object, or in a `metas`,
/// `meta`, `metadata`, `user_metadata` or `userMetadata` object (parser:105,126). A nested object
/// may also be sent as a JSON string. Top-level keys win over `param_obj`, which wins over the
/// metas objects (parser:136). `null` counts as not given.
///
/// Upstream REST fields for features Backline does not have are listed in `UPSTREAM_ONLY`.
/// They are accepted only while they ask for nothing (false, empty, or upstream's default), so
/// clients that send upstream's whole default body keep working. Any other value is an error
/// naming the field. The 5 Hz LM's sampling knobs (`lm_temperature`, ...) are accepted with any
/// value and dropped: they steer only the LM, which Backline does not run, like an upstream server
/// started without one. `thinking: true` is an error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationRequest {
    /// Default text2music (`inference.py:100`).
    pub task_type: TaskType,
    /// What the music is. Default empty.
    pub caption: String,
    /// Default empty. Tags such as `[Verse]` are plain text.
    pub lyrics: String,
    /// Replace the lyrics with `[Instrumental]` (what upstream's UI checkbox does). Default false.
    /// Upstream's REST has no such field.
    pub instrumental: bool,
    /// The lyric header's language code, one of [`VOCAL_LANGUAGES`]. Unset reads as
    /// [`DEFAULT_VOCAL_LANGUAGE`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocal_language: Option<String>,
    /// Whole beats per minute, [`BPM_MIN`] to [`BPM_MAX`]. Unset reads "N/A" in the metas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpm: Option<u32>,
    /// E.g. "F# minor" (see `task::is_valid_keyscale`). Unset reads "N/A".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyscale: Option<String>,
    /// One of [`TIME_SIGNATURES`]. It is written into the metas as given. Unset reads "N/A".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timesignature: Option<String>,
    /// Seconds to generate for text2music, [`DURATION_MIN_S`] to [`DURATION_MAX_S`]; -1 (upstream's
    /// "auto") reads as unset. Unset generates [`FALLBACK_DURATION_S`]. The audio tasks take the
    /// source's length and do not read this, as upstream (`inference.py:816-820`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// The source audio file, needed by every task but text2music (which does not read it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_audio: Option<String>,
    /// Audio whose timbre conditions the result, for any task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_audio: Option<String>,
    /// Start of the window that repaint regenerates and lego fills, in seconds of the source.
    /// Negative values out-paint before the source. Default 0. Other tasks do not read it.
    pub repainting_start: f64,
    /// End of that window. Past the source's end it out-paints after it. Unset, or -1, means
    /// the source's end (`inference.py:162`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repainting_end: Option<f64>,
    /// How strongly repaint holds on to the source outside the window: "aggressive",
    /// "balanced" or "conservative". Default balanced (`api/http/release_task_models.py`).
    /// Only repaint reads it.
    pub repaint_mode: RepaintMode,
    /// Balanced mode's dial, 0 (keep the source, like conservative) to 1 (like aggressive).
    /// Default 0.5. The other modes and tasks do not read it.
    pub repaint_strength: f64,
    /// Share of the steps that see the source's structure, 0 to 1. Default 1
    /// (`inference.py:188`). About 0.2 gives style transfer.
    pub audio_cover_strength: f64,
    /// How close to the source the noise starts, 0 (pure noise) to 1. Default 0 (`inference.py:189`).
    pub cover_noise_strength: f64,
    /// The track that lego adds or extract pulls out, one of `task::TRACK_NAMES` (any case).
    /// Unset gives the task's generic instruction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_name: Option<String>,
    /// The tracks that complete adds, each one of `task::TRACK_NAMES` (any case). A single string is
    /// one class, as upstream (`api/http/release_task_request_builder.py:35-37`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub track_classes: Vec<String>,
    /// Model evaluations. Unset: 8 on turbo, 32 on base, 50 on SFT. At most 20 on turbo and 200
    /// otherwise. Ignored when `timesteps` is given (`api/http/release_task_models.py:98`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_steps: Option<u32>,
    /// Timestep shift `s·t / (1 + (s - 1)·t)`, from 1 to 5. Unset gives [`DEFAULT_SHIFT`] on every
    /// model. Ignored when `timesteps` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift: Option<f64>,
    /// CFG (APG) strength for base and SFT, from 1 (off) to 15. Unset gives
    /// [`DEFAULT_GUIDANCE_SCALE`]. The turbo model reads it as 1, as upstream does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f64>,
    /// The timesteps (1 = noise) between which CFG applies. Defaults 0 and 1 (`inference.py:138-139`).
    pub cfg_interval_start: f64,
    pub cfg_interval_end: f64,
    /// Adaptive dual guidance instead of APG (base and SFT). Default false.
    pub use_adg: bool,
    pub infer_method: InferMethod,
    /// A custom schedule from 1 (noise) down, e.g. `[0.97, 0.76, 0.5, 0.28, 0]`. It may also be sent
    /// as upstream's comma-separated string (`api/server_utils.py:124`). It replaces
    /// `inference_steps` and `shift`. Turbo drops trailing zeros and takes at most 20 values. Base
    /// uses the list as pairs, so it needs at least two values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timesteps: Option<Vec<f64>>,
    /// Also accepted as upstream's comma-separated string, e.g. "42, -1, 7". Unset draws every seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<Seed>,
    /// `true` draws every seed, and then `seed` must be unset or -1. Unset means "random unless a
    /// seed is given". Upstream's REST defaults it to true, so there a seed is ignored unless this
    /// is false (`api/job_generation_setup.py:81`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_random_seed: Option<bool>,
    /// Items, 1 to [`MAX_BATCH_SIZE`]. Unset: the length of a per-item seed list, else
    /// [`DEFAULT_BATCH_SIZE`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Unset gives [`AudioFormat::Flac`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_format: Option<AudioFormat>,
    /// The caption prompt's first block, used as given. Unset, blank, or the text2music default
    /// selects the task's instruction (see `prompt::resolve_instruction`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    /// The DiT checkpoint folder the client asks for (e.g. "acestep-v15-base"). The engine or
    /// server picks the model by it; [`GenerationRequest::resolve`] takes the loaded model's kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Default for GenerationRequest {
    fn default() -> Self {
        Self {
            task_type: TaskType::Text2Music,
            caption: String::new(),
            lyrics: String::new(),
            instrumental: false,
            vocal_language: None,
            bpm: None,
            keyscale: None,
            timesignature: None,
            duration: None,
            src_audio: None,
            reference_audio: None,
            repainting_start: 0.0,
            repainting_end: None,
            repaint_mode: RepaintMode::Balanced,
            repaint_strength: 0.5,
            audio_cover_strength: 1.0,
            cover_noise_strength: 0.0,
            track_name: None,
            track_classes: Vec::new(),
            inference_steps: None,
            shift: None,
            guidance_scale: None,
            cfg_interval_start: 0.0,
            cfg_interval_end: 1.0,
            use_adg: false,
            infer_method: InferMethod::Ode,
            timesteps: None,
            seed: None,
            use_random_seed: None,
            batch_size: None,
            audio_format: None,
            instruction: None,
            model: None,
        }
    }
}

/// Why a request cannot run. Parsing errors name the key as it was sent. Validation errors name
/// the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("the request is not valid JSON: {0}")]
    Json(String),
    #[error("the request must be a JSON object, not {found}")]
    NotAnObject { found: &'static str },
    #[error("unknown field `{field}`{}", did_you_mean(.suggestion))]
    UnknownField { field: String, suggestion: Option<&'static str> },
    #[error("`{first}` and `{second}` both set `{field}`; send only one of them")]
    DuplicateField { field: &'static str, first: String, second: String },
    #[error("`{field}` = {value} is not supported: {reason}")]
    UnsupportedField { field: String, value: String, reason: &'static str },
    #[error("`{field}`: {problem}")]
    Invalid { field: String, problem: String },
    #[error(
        "task `{task}` needs the base model, and the requested model is {model}: ask for `{}` to run \
         lego, extract or complete (or leave `model` out)",
        ModelKind::Base.folder()
    )]
    TaskNeedsBaseModel { task: TaskType, model: ModelKind },
    /// `model` names no DiT folder of the checkpoints folder.
    #[error("`model`: there is no model folder \"{model}\" in the checkpoints folder; it has {}", list_or_none(.available))]
    UnknownModel { model: String, available: Vec<String> },
    /// The task's model is not in the checkpoints folder.
    #[error("task `{task}` needs the `{folder}` model, and {checkpoints} has no such folder: download it there")]
    ModelNotDownloaded { task: TaskType, folder: &'static str, checkpoints: String },
}

impl RequestError {
    /// The request field at fault, where there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::UnknownField { field, .. } | Self::UnsupportedField { field, .. } | Self::Invalid { field, .. } => {
                Some(field)
            }
            Self::DuplicateField { field, .. } => Some(field),
            Self::TaskNeedsBaseModel { .. } | Self::UnknownModel { .. } | Self::ModelNotDownloaded { .. } => Some("model"),
            Self::Json(_) | Self::NotAnObject { .. } => None,
        }
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no model folders".to_string()
    } else {
        names.join(", ")
    }
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion.map_or(String::new(), |s| format!("; did you mean `{s}`?"))
}

fn invalid(field: &str, problem: impl Into<String>) -> RequestError {
    RequestError::Invalid { field: field.to_string(), problem: problem.into() }
}

/// The window a repaint or lego regenerates, in seconds of the source's timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepaintWindow {
    /// Negative: out-paint before the source.
    pub start_s: f64,
    /// `None`: the source's end. Past the end: out-paint after it.
    pub end_s: Option<f64>,
}

/// The source as the DiT sees it. Repaint and lego pad it with silence on either side when
/// their window reaches past it (`core/generation/handler/padding_utils.py:42-48`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceSpan {
    pub left_pad_s: f64,
    pub right_pad_s: f64,
    /// Source plus padding: the length of the result.
    pub total_s: f64,
}

/// How the sampler runs, with the model's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Model evaluations: `inference_steps`, or the model's default, or the number of evaluations
    /// that `timesteps` implies.
    pub steps: u32,
    pub shift: f64,
    /// The request's custom schedule, if any. Turbo maps each value to its nearest valid timestep
    /// when it samples (`models/turbo/modeling_acestep_v15_turbo.py:1939-1964`).
    pub timesteps: Option<Vec<f64>>,
    /// 1 on turbo: no CFG.
    pub guidance_scale: f64,
    pub cfg_interval_start: f64,
    pub cfg_interval_end: f64,
    /// Always false on turbo.
    pub use_adg: bool,
    pub infer_method: InferMethod,
}

/// A request made concrete for one model: what the pipeline runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRequest {
    pub task_type: TaskType,
    pub model: ModelKind,
    /// The prompts' inputs. For the audio tasks the duration is `None` until the source is known;
    /// see [`ResolvedRequest::prompt_for_source`].
    pub prompt: PromptInputs,
    /// Seconds to generate: `Some` for text2music, `None` for the audio tasks, whose length is the
    /// source's.
    pub duration_s: Option<f64>,
    /// `None` for text2music, which does not read a source.
    pub src_audio: Option<String>,
    pub reference_audio: Option<String>,
    /// For repaint and lego.
    pub repaint: Option<RepaintWindow>,
    /// What `repaint_mode` and `repaint_strength` turn into: the source injection and the
    /// crossfades at the window's edges. Only meaningful for repaint; the other tasks ignore it.
    pub repaint_settings: RepaintSettings,
    pub audio_cover_strength: f64,
    pub cover_noise_strength: f64,
    pub sampling: Sampling,
    /// One seed per item; the batch size is its length.
    pub seeds: Vec<u32>,
    pub audio_format: AudioFormat,
    /// The request with every default that `resolve` chose written in (seeds per item, batch size,
    /// steps, shift, guidance). Resolving it again on the same model gives this same result, so it
    /// is what a take stores.
    pub recipe: GenerationRequest,
}

impl GenerationRequest {
    /// Parse a JSON body.
    pub fn from_json(text: &str) -> Result<Self, RequestError> {
        let body: Value = serde_json::from_str(text).map_err(|e| RequestError::Json(e.to_string()))?;
        Self::from_value(body)
    }

    /// Parse a JSON value, such as a form turned into an object of strings.
    pub fn from_value(body: Value) -> Result<Self, RequestError> {
        parse::request_from_value(body)
    }

    /// Check every value against ACE-Step's limits and names. This runs without the model or
    /// the source audio; [`GenerationRequest::resolve`] and [`ResolvedRequest::source_span`]
    /// check what needs them.
    pub fn validate(&self) -> Result<(), RequestError> {
        self.validate_for_inputs(self.src_audio.as_deref().is_some_and(|s| !s.trim().is_empty()))
    }

    /// [`GenerationRequest::validate`] for a job whose source audio may come from elsewhere
    /// than `src_audio` (samples in memory): `has_source` says whether it has one.
    pub fn validate_for_inputs(&self, has_source: bool) -> Result<(), RequestError> {
        let task = self.task_type;
        if task == TaskType::Text2Music {
            if let Some(d) = self.duration {
                if !(DURATION_MIN_S..=DURATION_MAX_S).contains(&d) {
                    let allowed = format!("{DURATION_MIN_S} to {DURATION_MAX_S} seconds (or -1 for the default)");
                    return Err(invalid("duration", format!("{d} is outside {allowed}")));
                }
            }
        }
        if let Some(bpm) = self.bpm {
            if !(BPM_MIN..=BPM_MAX).contains(&bpm) {
                return Err(invalid("bpm", format!("{bpm} is outside {BPM_MIN} to {BPM_MAX}")));
            }
        }
        if let Some(key) = &self.keyscale {
            if !is_valid_keyscale(key) {
                let hint = keyscale_suggestion(key).map_or(String::new(), |k| format!(" (did you mean \"{k}\"?)"));
                return Err(invalid(
                    "keyscale",
                    format!(
                        "\"{key}\" is not a known key{hint}: write a note A to G, optionally followed by # or b \
                         (or ♯ ♭), a space, then major or minor, e.g. \"F# minor\""
                    ),
                ));
            }
        }
        if let Some(ts) = &self.timesignature {
            if !TIME_SIGNATURES.contains(&ts.as_str()) {
                return Err(invalid("timesignature", format!("\"{ts}\" is not one of {}", TIME_SIGNATURES.join(", "))));
            }
        }
        if let Some(lang) = &self.vocal_language {
            if !VOCAL_LANGUAGES.contains(&lang.as_str()) {
                return Err(invalid(
                    "vocal_language",
                    format!("\"{lang}\" is not a known language code; use one of {}", VOCAL_LANGUAGES.join(", ")),
                ));
            }
        }
        self.validate_source_and_tracks(has_source)?;
        self.validate_sampling()?;
        self.validate_seeds()
    }

    fn validate_source_and_tracks(&self, has_source: bool) -> Result<(), RequestError> {
        let task = self.task_type;
        if task.needs_source_audio() && !has_source {
            return Err(invalid("src_audio", format!("task `{task}` needs source audio, and none was given")));
        }
        if matches!(task, TaskType::Repaint | TaskType::Lego) {
            let start = self.repainting_start;
            if !start.is_finite() {
                return Err(invalid("repainting_start", format!("{start} is not a number of seconds")));
            }
            if let Some(end) = self.repainting_end {
                if !end.is_finite() || end <= 0.0 {
                    return Err(invalid(
                        "repainting_end",
                        format!("{end} must be after the source's start (0 s), or -1 for the source's end"),
                    ));
                }
                if end <= start {
                    return Err(invalid(
                        "repainting_end",
                        format!("the window {start} s to {end} s is empty: the end must come after the start"),
                    ));
                }
                if end - start > DURATION_MAX_S {
                    return Err(invalid(
                        "repainting_end",
                        format!("the window {start} s to {end} s is longer than {DURATION_MAX_S} s"),
                    ));
                }
            }
            if -start > DURATION_MAX_S - DURATION_MIN_S {
                return Err(invalid(
                    "repainting_start",
                    format!("{start} s out-paints more than the {DURATION_MAX_S} s the model can make"),
                ));
            }
        }
        for (field, value) in [
            ("audio_cover_strength", self.audio_cover_strength),
            ("cover_noise_strength", self.cover_noise_strength),
            ("repaint_strength", self.repaint_strength),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(field, format!("{value} is outside 0 to 1")));
            }
        }
        if let Some(name) = &self.track_name {
            check_track("track_name", name)?;
            if task == TaskType::Complete {
                return Err(invalid("track_name", "complete reads `track_classes`, not `track_name`"));
            }
        }
        for class in &self.track_classes {
            check_track("track_classes", class)?;
        }
        if matches!(task, TaskType::Lego | TaskType::Extract) && !self.track_classes.is_empty() {
            return Err(invalid("track_classes", format!("{task} reads `track_name`, not `track_classes`")));
        }
        Ok(())
    }

    fn validate_sampling(&self) -> Result<(), RequestError> {
        if let Some(steps) = self.inference_steps {
            if !(1..=BASE_MAX_STEPS).contains(&steps) {
                return Err(invalid("inference_steps", format!("{steps} is outside 1 to {BASE_MAX_STEPS}")));
            }
        }
        let (lo, hi) = SHIFT_RANGE;
        if let Some(shift) = self.shift.filter(|s| !(lo..=hi).contains(s)) {
            return Err(invalid("shift", format!("{shift} is outside {lo} to {hi}")));
        }
        let (lo, hi) = GUIDANCE_RANGE;
        if let Some(g) = self.guidance_scale.filter(|g| !(lo..=hi).contains(g)) {
            return Err(invalid("guidance_scale", format!("{g} is outside {lo} to {hi}")));
        }
        let (start, end) = (self.cfg_interval_start, self.cfg_interval_end);
        for (field, value) in [("cfg_interval_start", start), ("cfg_interval_end", end)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(field, format!("{value} is outside 0 to 1")));
            }
        }
        if start > end {
            return Err(invalid("cfg_interval_end", format!("{end} is before cfg_interval_start ({start})")));
        }
        if let Some(ts) = &self.timesteps {
            if ts.is_empty() {
                return Err(invalid("timesteps", "the list is empty; leave it out to use inference_steps"));
            }
            if let Some(t) = ts.iter().find(|t| !(0.0..=1.0).contains(*t)) {
                return Err(invalid("timesteps", format!("{t} is outside 0 to 1")));
            }
            if ts[0] == 0.0 {
                return Err(invalid("timesteps", "the schedule must start above 0 (1 is pure noise)"));
            }
            // Strictly decreasing; only trailing zeros may repeat.
            if let Some(pair) = ts.windows(2).find(|p| p[1] >= p[0] && !(p[0] == 0.0 && p[1] == 0.0)) {
                return Err(invalid("timesteps", format!("{} then {}: values must decrease", pair[0], pair[1])));
            }
        }
        Ok(())
    }

    fn validate_seeds(&self) -> Result<(), RequestError> {
        if let Some(n) = self.batch_size {
            if !(1..=MAX_BATCH_SIZE).contains(&n) {
                return Err(invalid("batch_size", format!("{n} is outside 1 to {MAX_BATCH_SIZE}")));
            }
        }
        let Some(seed) = &self.seed else { return Ok(()) };
        let values = match seed {
            Seed::One(s) => std::slice::from_ref(s),
            Seed::PerItem(list) => list.as_slice(),
        };
        if values.is_empty() {
            return Err(invalid("seed", "the list is empty; leave `seed` out to draw every seed"));
        }
        if let Some(s) = values.iter().find(|&&s| s != -1 && !(0..=MAX_SEED).contains(&s)) {
            return Err(invalid("seed", format!("{s} is outside 0 to {MAX_SEED} (or -1 to draw one)")));
        }
        if let Seed::PerItem(list) = seed {
            let batch = self.batch_size.unwrap_or(list.len() as u32);
            if list.len() > batch as usize {
                return Err(invalid("seed", format!("{} seeds were given for a batch of {batch}", list.len())));
            }
        }
        if self.use_random_seed == Some(true) && values.iter().any(|&s| s != -1) {
            return Err(invalid("seed", "a seed is given and use_random_seed is true; send only one of them"));
        }
        Ok(())
    }

    /// The prompts' inputs: the text fields as given, track names in lower case, the vocal
    /// language defaulted. The duration is the request's for text2music and `None` for the audio
    /// tasks, whose metas state the source's length.
    pub fn prompt_inputs(&self) -> PromptInputs {
        PromptInputs {
            task_type: self.task_type,
            instruction: self.instruction.clone(),
            track_name: self.track_name.as_deref().map(str::to_lowercase),
            track_classes: self.track_classes.iter().map(|c| c.to_lowercase()).collect(),
            caption: self.caption.clone(),
            lyrics: self.lyrics.clone(),
            instrumental: self.instrumental,
            vocal_language: self.vocal_language.clone().unwrap_or_else(|| DEFAULT_VOCAL_LANGUAGE.to_string()),
            bpm: self.bpm,
            keyscale: self.keyscale.clone(),
            timesignature: self.timesignature.clone(),
            duration: if self.task_type.needs_source_audio() { None } else { self.duration },
        }
    }

    /// Validate, then make the request concrete for `model`. Seeds that are not given are drawn
    /// here, once, and recorded in [`ResolvedRequest::recipe`].
    pub fn resolve(&self, model: ModelKind) -> Result<ResolvedRequest, RequestError> {
        self.resolve_with(model, draw_seed)
    }

    /// [`GenerationRequest::resolve`], drawing missing seeds from `draw_seed`.
    pub fn resolve_with(
        &self,
        model: ModelKind,
        mut draw_seed: impl FnMut() -> u32,
    ) -> Result<ResolvedRequest, RequestError> {
        // Whether there is source audio is a question about the job's inputs, which may be
        // samples in memory: `validate` and the backend's pre-flight answer it.
        self.validate_for_inputs(true)?;
        let task = self.task_type;
        if !model.runs(task) {
            return Err(RequestError::TaskNeedsBaseModel { task, model });
        }
        let sampling = self.sampling(model)?;
        let batch = self.batch_size.unwrap_or(match &self.seed {
            Some(Seed::PerItem(list)) => list.len() as u32,
            _ => DEFAULT_BATCH_SIZE,
        });
        let seeds: Vec<u32> = (0..batch).map(|i| self.seed_for(i as usize, &mut draw_seed)).collect();

        let mut recipe = self.clone();
        recipe.seed = Some(Seed::PerItem(seeds.iter().map(|&s| s as i64).collect()));
        recipe.use_random_seed = None;
        recipe.batch_size = Some(batch);
        if sampling.timesteps.is_none() {
            recipe.inference_steps = Some(sampling.steps);
            recipe.shift = Some(sampling.shift);
        }
        recipe.guidance_scale = Some(sampling.guidance_scale);

        let source_task = task.needs_source_audio();
        Ok(ResolvedRequest {
            task_type: task,
            model,
            prompt: self.prompt_inputs(),
            duration_s: if source_task { None } else { Some(self.duration.unwrap_or(FALLBACK_DURATION_S)) },
            src_audio: if source_task { self.src_audio.clone() } else { None },
            reference_audio: self.reference_audio.clone(),
            repaint: matches!(task, TaskType::Repaint | TaskType::Lego)
                .then_some(RepaintWindow { start_s: self.repainting_start, end_s: self.repainting_end }),
            repaint_settings: self.repaint_mode.settings(self.repaint_strength),
            audio_cover_strength: self.audio_cover_strength,
            cover_noise_strength: self.cover_noise_strength,
            sampling,
            seeds,
            audio_format: self.audio_format.unwrap_or_default(),
            recipe,
        })
    }

    fn sampling(&self, model: ModelKind) -> Result<Sampling, RequestError> {
        let max = model.max_steps();
        let steps = match &self.timesteps {
            // Turbo runs one step per non-zero value; base runs one per pair.
            Some(ts) if model == ModelKind::Turbo => {
                let nonzero = ts.iter().rposition(|&t| t != 0.0).map_or(0, |i| i + 1) as u32;
                if nonzero > max {
                    let problem = format!("{nonzero} steps is more than the turbo model's {max}");
                    return Err(invalid("timesteps", problem));
                }
                nonzero
            }
            Some(ts) => {
                let pairs = ts.len() as u32 - 1;
                if !(1..=max).contains(&pairs) {
                    let problem = format!(
                        "{} values make {pairs} steps on the {model} model, which takes pairs of values: \
                         give 2 to {} values, ending at 0",
                        ts.len(),
                        max + 1
                    );
                    return Err(invalid("timesteps", problem));
                }
                pairs
            }
            None => {
                let steps = self.inference_steps.unwrap_or(model.default_steps());
                if steps > max {
                    let problem = format!(
                        "{steps} is more than the {model} model's {max} (its default is {})",
                        model.default_steps()
                    );
                    return Err(invalid("inference_steps", problem));
                }
                steps
            }
        };
        let cfg = model.uses_cfg();
        Ok(Sampling {
            steps,
            shift: self.shift.unwrap_or(DEFAULT_SHIFT),
            timesteps: self.timesteps.clone(),
            guidance_scale: if cfg { self.guidance_scale.unwrap_or(DEFAULT_GUIDANCE_SCALE) } else { 1.0 },
            cfg_interval_start: self.cfg_interval_start,
            cfg_interval_end: self.cfg_interval_end,
            use_adg: cfg && self.use_adg,
            infer_method: self.infer_method,
        })
    }

    /// Item `i`'s seed (validated: -1, or 0 to `MAX_SEED`).
    fn seed_for(&self, i: usize, draw_seed: &mut impl FnMut() -> u32) -> u32 {
        let given = match &self.seed {
            _ if self.use_random_seed == Some(true) => None,
            Some(Seed::One(s)) if *s >= 0 => Some((*s as u32).wrapping_add(i as u32)),
            Some(Seed::PerItem(list)) => list.get(i).filter(|&&s| s >= 0).map(|&s| s as u32),
            _ => None,
        };
        given.unwrap_or_else(draw_seed)
    }
}

impl ResolvedRequest {
    pub fn batch_size(&self) -> usize {
        self.seeds.len()
    }

    /// Check the source's length against the model's limits and work out how repaint and lego
    /// pad it. The window must touch or overlap the source, and the padded source must be
    /// [`DURATION_MIN_S`] to [`DURATION_MAX_S`] long.
    pub fn source_span(&self, source_s: f64) -> Result<SourceSpan, RequestError> {
        if !(source_s.is_finite() && source_s > 0.0) {
            return Err(invalid("src_audio", format!("the source is {source_s} s long")));
        }
        let (left_pad_s, right_pad_s) = match self.repaint {
            None => (0.0, 0.0),
            Some(RepaintWindow { start_s, end_s }) => {
                let end = end_s.unwrap_or(source_s);
                if start_s >= source_s {
                    return Err(invalid(
                        "repainting_start",
                        format!("{start_s} s is not before the end of the {source_s} s source"),
                    ));
                }
                if end <= start_s {
                    return Err(invalid("repainting_end", format!("the window {start_s} s to {end} s is empty")));
                }
                ((-start_s).max(0.0), (end - source_s).max(0.0))
            }
        };
        let total_s = source_s + left_pad_s + right_pad_s;
        if !(DURATION_MIN_S..=DURATION_MAX_S).contains(&total_s) {
            let what = if self.repaint.is_some() {
                format!("the {source_s} s source, extended by the repaint window, is {total_s} s long")
            } else {
                format!("the source is {source_s} s long")
            };
            return Err(invalid(
                "src_audio",
                format!("{what}; the model makes {DURATION_MIN_S} to {DURATION_MAX_S} s"),
            ));
        }
        Ok(SourceSpan { left_pad_s, right_pad_s, total_s })
    }

    /// The prompts' inputs for an audio task, whose metas state the (unpadded) source's length
    /// (`core/generation/handler/batch_prep.py:100`).
    pub fn prompt_for_source(&self, source_s: f64) -> PromptInputs {
        PromptInputs { duration: Some(source_s), ..self.prompt.clone() }
    }
}

/// A fresh seed in upstream's range. std's `RandomState` is keyed from the OS once per thread and
/// stepped for every instance, which is random enough for a seed that is recorded anyway.
fn draw_seed() -> u32 {
    use std::hash::BuildHasher;
    (std::collections::hash_map::RandomState::new().hash_one(0u8) >> 32) as u32
}

fn check_track(field: &str, name: &str) -> Result<(), RequestError> {
    if TRACK_NAMES.contains(&name.to_lowercase().as_str()) {
        Ok(())
    } else {
        Err(invalid(field, format!("\"{name}\" is not a known track; use one of {}", TRACK_NAMES.join(", "))))
    }
}

/// The spelling `key` was probably meant to have: "c Major" -> "C major".
fn keyscale_suggestion(key: &str) -> Option<String> {
    let mut words = key.split_whitespace();
    let (tonic, mode) = (words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    let mut chars = tonic.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    let fixed = format!("{letter}{} {}", chars.as_str(), mode.to_lowercase());
    is_valid_keyscale(&fixed).then_some(fixed)
}

impl<'de> Deserialize<'de> for GenerationRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::from_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::parse::{field_name, upstream_only, FIELDS};
    use serde_json::json;

    fn parse(body: Value) -> Result<GenerationRequest, RequestError> {
        GenerationRequest::from_value(body)
    }

    fn field_of(err: RequestError) -> String {
        match err {
            RequestError::Invalid { field, .. } => field,
            other => panic!("not an Invalid error: {other}"),
        }
    }

    /// A request that passes every rule, for tests to break one rule at a time.
    fn repaint() -> GenerationRequest {
        GenerationRequest {
            task_type: TaskType::Repaint,
            src_audio: Some("take.wav".into()),
            repainting_start: 4.0,
            repainting_end: Some(8.0),
            ..Default::default()
        }
    }

    fn counting() -> impl FnMut() -> u32 {
        let mut next = 1000;
        move || {
            next += 1;
            next
        }
    }

    mod parsing {
        use super::*;

        #[test]
        fn snake_case_camel_case_and_aliases_parse_to_the_same_request() {
            let snake = json!({
                "task_type": "repaint", "caption": "lofi drums", "vocal_language": "en", "keyscale": "F# minor",
                "timesignature": "4", "duration": 30.0, "src_audio": "/a.wav", "reference_audio": "/r.wav",
                "repainting_start": 1.5, "repainting_end": 9.0, "audio_cover_strength": 0.5,
                "cover_noise_strength": 0.2, "inference_steps": 8, "guidance_scale": 5.0,
                "cfg_interval_start": 0.1, "cfg_interval_end": 0.9, "use_adg": true, "infer_method": "sde",
                "use_random_seed": false, "batch_size": 3, "audio_format": "wav", "track_name": "drums",
                "track_classes": ["bass"], "model": "acestep-v15-base", "seed": 7,
            });
            let camel = json!({
                "taskType": "repaint", "prompt": "lofi drums", "vocalLanguage": "en", "keyScale": "F# minor",
                "timeSignature": "4", "audioDuration": 30.0, "srcAudio": "/a.wav", "referenceAudio": "/r.wav",
                "repaintingStart": 1.5, "repaintingEnd": 9.0, "audioCoverStrength": 0.5,
                "coverNoiseStrength": 0.2, "inferenceSteps": 8, "guidanceScale": 5.0,
                "cfgIntervalStart": 0.1, "cfgIntervalEnd": 0.9, "useAdg": true, "inferMethod": "sde",
                "useRandomSeed": false, "batchSize": 3, "audioFormat": "wav", "trackName": "drums",
                "trackClasses": ["bass"], "modelName": "acestep-v15-base", "seeds": 7,
            });
            // Upstream REST spellings, with values as form fields send them (strings).
            let rest = json!({
                "task_type": "repaint", "prompt": "lofi drums", "language": "en", "key_scale": "F# minor",
                "time_signature": 4, "audio_duration": "30", "src_audio_path": "/a.wav",
                "ref_audio_path": "/r.wav", "repainting_start": "1.5", "repainting_end": "9",
                "cover_strength": "0.5", "cover_noise_strength": 0.2, "inference_steps": "8",
                "guidance_scale": "5", "cfg_interval_start": 0.1, "cfg_interval_end": 0.9,
                "use_adg": "true", "infer_method": "sde", "use_random_seed": "false", "batch_size": "3",
                "audio_format": "wav", "track_name": "drums", "instruments": "bass",
                "dit_model": "acestep-v15-base", "seed": "7",
            });
            let want = parse(snake).unwrap();
            assert_eq!(parse(camel).unwrap(), want);
            assert_eq!(parse(rest).unwrap(), want);
            assert_eq!(want.caption, "lofi drums");
            assert_eq!(want.duration, Some(30.0));
            assert_eq!(want.seed, Some(Seed::One(7)));
            assert_eq!(want.track_classes, ["bass"]);
            assert_eq!(want.infer_method, InferMethod::Sde);
        }

        #[test]
        fn every_alias_of_every_field_is_read() {
            for (name, aliases) in FIELDS {
                for key in std::iter::once(name).chain(aliases.iter()) {
                    assert_eq!(field_name(key), Some(*name), "{key}");
                    assert!(upstream_only(key).is_none(), "{key} is both a field and upstream-only");
                }
            }
        }

        #[test]
        fn an_empty_body_is_the_default_request() {
            assert_eq!(GenerationRequest::from_json("{}").unwrap(), GenerationRequest::default());
            let unset = parse(json!({"duration": -1, "repainting_end": -1, "bpm": "", "keyscale": " ", "seed": null}));
            assert_eq!(unset.unwrap(), GenerationRequest::default());
        }

        #[test]
        fn unknown_fields_are_named() {
            let err = GenerationRequest::from_json(r#"{"caption": "x", "temperature": 1}"#).unwrap_err();
            assert_eq!(err, RequestError::UnknownField { field: "temperature".into(), suggestion: None });
            assert_eq!(err.to_string(), "unknown field `temperature`");
            let err = parse(json!({"inference_step": 8})).unwrap_err();
            assert_eq!(err.to_string(), "unknown field `inference_step`; did you mean `inference_steps`?");
            let err = parse(json!({"Repainting-Start": 1})).unwrap_err();
            assert!(err.to_string().contains("did you mean `repainting_start`"), "{err}");
            let err = parse(json!({"metas": {"genre": "pop"}})).unwrap_err();
            assert!(err.to_string().starts_with("unknown field `metas.genre`"), "{err}");
            // Through serde too, with the same message.
            let err = serde_json::from_str::<GenerationRequest>(r#"{"colour": "red"}"#).unwrap_err();
            assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        }

        #[test]
        fn two_keys_for_one_field_are_an_error() {
            let err = parse(json!({"caption": "a", "prompt": "b"})).unwrap_err();
            let want =
                RequestError::DuplicateField { field: "caption", first: "caption".into(), second: "prompt".into() };
            assert_eq!(err, want);
        }

        #[test]
        fn nested_objects_fill_what_the_top_level_leaves_out() {
            let request = parse(json!({
                "bpm": 120,
                "metas": {"bpm": 90, "keyscale": "C major", "duration": 20},
                "param_obj": "{\"duration\": 40}",
            }))
            .unwrap();
            assert_eq!(
                (request.bpm, request.keyscale.as_deref(), request.duration),
                (Some(120), Some("C major"), Some(40.0))
            );
            let err = parse(json!({"metas": [1]})).unwrap_err();
            assert_eq!(field_of(err), "metas");
        }

        #[test]
        fn upstream_only_fields_pass_while_they_ask_for_nothing() {
            let defaults = json!({
                "thinking": false, "sample_mode": "false", "audio_code_string": "", "repaint_mode": "balanced",
                "repaint_strength": 0.5, "chunk_mask_mode": "auto", "repaint_latent_crossfade_frames": 10,
                "use_tiled_decode": true, "lm_temperature": 0.85, "lm_backend": "vllm", "use_cot_caption": true,
                "allowLmBatch": true,
            });
            assert_eq!(parse(defaults).unwrap(), GenerationRequest::default());
            let err = parse(json!({"thinking": true})).unwrap_err();
            assert!(matches!(&err, RequestError::UnsupportedField { field, .. } if field == "thinking"), "{err}");
            assert!(err.to_string().contains("5 Hz LM"), "{err}");
            let err = parse(json!({"chunk_mask_mode": "explicit"})).unwrap_err();
            assert!(err.to_string().starts_with("`chunk_mask_mode` = \"explicit\" is not supported"), "{err}");
            assert!(parse(json!({"format": "mp3"})).is_err(), "`format` is upstream's alias of use_format");
        }

        #[test]
        fn repaint_mode_and_strength() {
            let request = parse(json!({"repaint_mode": "conservative", "repaint_strength": 0.2})).unwrap();
            assert_eq!((request.repaint_mode, request.repaint_strength), (RepaintMode::Conservative, 0.2));
            let request = parse(json!({"repaint_mode": "aggressive"})).unwrap();
            assert_eq!((request.repaint_mode, request.repaint_strength), (RepaintMode::Aggressive, 0.5));
            let camel = parse(json!({"repaintMode": "conservative", "repaintStrength": "0.75"})).unwrap();
            assert_eq!((camel.repaint_mode, camel.repaint_strength), (RepaintMode::Conservative, 0.75));
            let nested = parse(json!({"param_obj": {"repaint_mode": "aggressive"}})).unwrap();
            assert_eq!(nested.repaint_mode, RepaintMode::Aggressive);
            let blank = parse(json!({"repaint_mode": "", "repaint_strength": ""})).unwrap();
            assert_eq!(blank, GenerationRequest::default());

            let err = parse(json!({"repaintMode": "gentle"})).unwrap_err();
            assert_eq!(err.to_string(), "`repaintMode`: \"gentle\" is not one of aggressive, balanced, conservative");
            assert_eq!(field_of(parse(json!({"repaint_mode": 1})).unwrap_err()), "repaint_mode");
            assert_eq!(field_of(parse(json!({"repaint_strength": "half"})).unwrap_err()), "repaint_strength");
            let err = parse(json!({"repaint_mode": "balanced", "repaintMode": "aggressive"})).unwrap_err();
            assert!(matches!(err, RequestError::DuplicateField { field: "repaint_mode", .. }), "{err}");
        }

        #[test]
        fn values_of_the_wrong_type_name_the_key_as_sent() {
            let err = parse(json!({"audioDuration": "long"})).unwrap_err();
            assert_eq!(err.to_string(), "`audioDuration`: expected a number, got \"long\"");
            assert_eq!(field_of(parse(json!({"bpm": 120.5})).unwrap_err()), "bpm");
            assert_eq!(field_of(parse(json!({"use_adg": "maybe"})).unwrap_err()), "use_adg");
            assert_eq!(field_of(parse(json!({"task_type": "remix"})).unwrap_err()), "task_type");
            assert_eq!(field_of(parse(json!({"task_type": "cover-nofsq"})).unwrap_err()), "task_type");
            assert_eq!(field_of(parse(json!({"audio_format": "ogg"})).unwrap_err()), "audio_format");
            assert_eq!(field_of(parse(json!({"seed": "12, x"})).unwrap_err()), "seed");
            assert!(matches!(GenerationRequest::from_json("[1]"), Err(RequestError::NotAnObject { .. })));
            assert!(matches!(GenerationRequest::from_json("{"), Err(RequestError::Json(_))));
        }

        #[test]
        fn seeds_and_timesteps_in_upstream_string_form() {
            let request = parse(json!({"seed": "42, -1, ,7", "timesteps": "0.97,0.5, 0.3,0"})).unwrap();
            assert_eq!(request.seed, Some(Seed::PerItem(vec![42, -1, -1, 7])));
            assert_eq!(request.timesteps, Some(vec![0.97, 0.5, 0.3, 0.0]));
            assert_eq!(parse(json!({"seed": [1, "2"]})).unwrap().seed, Some(Seed::PerItem(vec![1, 2])));
            assert_eq!(parse(json!({"seed": "42"})).unwrap().seed, Some(Seed::One(42)));
        }

        #[test]
        fn round_trip() {
            let full = GenerationRequest {
                caption: "dusty soul".into(),
                lyrics: "[Verse]\nla".into(),
                instrumental: true,
                vocal_language: Some("ja".into()),
                bpm: Some(92),
                keyscale: Some("B♭ minor".into()),
                timesignature: Some("6/8".into()),
                duration: Some(47.25),
                reference_audio: Some("/r.flac".into()),
                repaint_mode: RepaintMode::Conservative,
                repaint_strength: 0.8,
                audio_cover_strength: 0.4,
                cover_noise_strength: 0.3,
                inference_steps: Some(40),
                shift: Some(2.5),
                guidance_scale: Some(6.5),
                cfg_interval_start: 0.2,
                cfg_interval_end: 0.8,
                use_adg: true,
                infer_method: InferMethod::Sde,
                timesteps: Some(vec![1.0, 0.6, 0.25, 0.0]),
                seed: Some(Seed::PerItem(vec![3, -1])),
                use_random_seed: Some(false),
                batch_size: Some(2),
                audio_format: Some(AudioFormat::Wav32),
                instruction: Some("Fill it:".into()),
                model: Some("acestep-v15-sft".into()),
                ..repaint()
            };
            let lego = GenerationRequest {
                task_type: TaskType::Lego,
                repainting_start: -2.0,
                repainting_end: None,
                track_name: Some("guitar".into()),
                seed: Some(Seed::One(9)),
                ..full.clone()
            };
            let complete =
                GenerationRequest { task_type: TaskType::Complete, track_classes: vec!["drums".into()], ..repaint() };
            for request in [GenerationRequest::default(), full, lego, complete] {
                let json = serde_json::to_string(&request).unwrap();
                assert_eq!(serde_json::from_str::<GenerationRequest>(&json).unwrap(), request, "{json}");
                let value = serde_json::to_value(&request).unwrap();
                for key in value.as_object().unwrap().keys() {
                    assert!(FIELDS.iter().any(|(name, _)| name == key), "serialised `{key}` is not a field name");
                }
            }
        }
    }

    mod validation {
        use super::*;

        fn check(request: GenerationRequest) -> Result<(), String> {
            request.validate().map_err(field_of)
        }

        #[test]
        fn duration() {
            let t2m = |d| GenerationRequest { duration: Some(d), ..Default::default() };
            assert_eq!(check(t2m(10.0)), Ok(()));
            assert_eq!(check(t2m(600.0)), Ok(()));
            assert_eq!(check(t2m(9.9)), Err("duration".into()));
            assert_eq!(check(t2m(600.5)), Err("duration".into()));
            assert_eq!(check(t2m(f64::NAN)), Err("duration".into()));
            let err = t2m(5.0).validate().unwrap_err().to_string();
            assert_eq!(err, "`duration`: 5 is outside 10 to 600 seconds (or -1 for the default)");
            // The audio tasks take the source's length and do not read it.
            assert_eq!(check(GenerationRequest { duration: Some(5.0), ..repaint() }), Ok(()));
        }

        #[test]
        fn bpm() {
            let with = |bpm| GenerationRequest { bpm: Some(bpm), ..Default::default() };
            assert_eq!(check(with(30)), Ok(()));
            assert_eq!(check(with(300)), Ok(()));
            assert_eq!(with(29).validate().unwrap_err().to_string(), "`bpm`: 29 is outside 30 to 300");
            assert_eq!(check(with(301)), Err("bpm".into()));
        }

        #[test]
        fn keyscale() {
            let with = |k: &str| GenerationRequest { keyscale: Some(k.into()), ..Default::default() };
            assert_eq!(check(with("Eb major")), Ok(()));
            assert_eq!(check(with("G♯ minor")), Ok(()));
            let err = with("c Major").validate().unwrap_err().to_string();
            assert!(err.starts_with("`keyscale`: \"c Major\" is not a known key (did you mean \"C major\"?)"), "{err}");
            assert_eq!(check(with("Am")), Err("keyscale".into()));
        }

        #[test]
        fn time_signature() {
            let with = |t: &str| GenerationRequest { timesignature: Some(t.into()), ..Default::default() };
            for ok in ["2", "3", "4", "6", "4/4", "6/8"] {
                assert_eq!(check(with(ok)), Ok(()), "{ok}");
            }
            let err = with("5/4").validate().unwrap_err().to_string();
            assert_eq!(err, "`timesignature`: \"5/4\" is not one of 2, 3, 4, 6, 2/4, 3/4, 4/4, 6/8");
        }

        #[test]
        fn vocal_language() {
            let with = |l: &str| GenerationRequest { vocal_language: Some(l.into()), ..Default::default() };
            assert_eq!(check(with("yue")), Ok(()));
            assert_eq!(check(with("unknown")), Ok(()));
            assert_eq!(check(with("english")), Err("vocal_language".into()));
        }

        #[test]
        fn batch_size() {
            let with = |n| GenerationRequest { batch_size: Some(n), ..Default::default() };
            assert_eq!(check(with(1)), Ok(()));
            assert_eq!(check(with(8)), Ok(()));
            assert_eq!(check(with(0)), Err("batch_size".into()));
            assert_eq!(with(9).validate().unwrap_err().to_string(), "`batch_size`: 9 is outside 1 to 8");
        }

        #[test]
        fn seeds() {
            let with = |seed, batch| GenerationRequest { seed: Some(seed), batch_size: batch, ..Default::default() };
            assert_eq!(check(with(Seed::One(0), None)), Ok(()));
            assert_eq!(check(with(Seed::One(MAX_SEED), None)), Ok(()));
            assert_eq!(check(with(Seed::One(-1), None)), Ok(()));
            assert_eq!(check(with(Seed::One(-2), None)), Err("seed".into()));
            assert_eq!(check(with(Seed::One(MAX_SEED + 1), None)), Err("seed".into()));
            assert_eq!(check(with(Seed::PerItem(vec![]), None)), Err("seed".into()));
            assert_eq!(check(with(Seed::PerItem(vec![1, 2, 3]), Some(3))), Ok(()));
            let err = with(Seed::PerItem(vec![1, 2, 3]), Some(2)).validate().unwrap_err().to_string();
            assert_eq!(err, "`seed`: 3 seeds were given for a batch of 2");
            let random =
                |seed| GenerationRequest { seed: Some(seed), use_random_seed: Some(true), ..Default::default() };
            assert_eq!(check(random(Seed::One(-1))), Ok(()));
            assert_eq!(check(random(Seed::One(5))), Err("seed".into()));
        }

        #[test]
        fn tasks_that_need_a_source() {
            for task in TaskType::ALL {
                let bare = GenerationRequest { task_type: task, ..Default::default() };
                let with_source = GenerationRequest { src_audio: Some("in.wav".into()), ..bare.clone() };
                assert_eq!(check(with_source), Ok(()), "{task}");
                let want = if task.needs_source_audio() { Err("src_audio".to_string()) } else { Ok(()) };
                assert_eq!(check(bare), want, "{task}");
            }
            assert_eq!(check(GenerationRequest { src_audio: Some(" ".into()), ..repaint() }), Err("src_audio".into()));
            let err = GenerationRequest { src_audio: None, ..repaint() }.validate().unwrap_err().to_string();
            assert_eq!(err, "`src_audio`: task `repaint` needs source audio, and none was given");
        }

        #[test]
        fn repaint_window() {
            let window = |start, end| GenerationRequest { repainting_start: start, repainting_end: end, ..repaint() };
            assert_eq!(check(window(0.0, None)), Ok(()));
            assert_eq!(check(window(-5.0, Some(3.0))), Ok(()), "out-paint before the source");
            assert_eq!(check(window(20.0, Some(40.0))), Ok(()), "may reach past the source's end");
            assert_eq!(check(window(8.0, Some(8.0))), Err("repainting_end".into()));
            assert_eq!(check(window(8.0, Some(4.0))), Err("repainting_end".into()));
            assert_eq!(check(window(-8.0, Some(-2.0))), Err("repainting_end".into()), "entirely before the source");
            assert_eq!(check(window(0.0, Some(601.0))), Err("repainting_end".into()));
            assert_eq!(check(window(-595.0, None)), Err("repainting_start".into()));
            let err = window(8.0, Some(4.0)).validate().unwrap_err().to_string();
            assert_eq!(err, "`repainting_end`: the window 8 s to 4 s is empty: the end must come after the start");
            // Tasks without a window do not read it.
            assert_eq!(check(GenerationRequest { task_type: TaskType::Cover, ..window(8.0, Some(4.0)) }), Ok(()));
        }

        #[test]
        fn cover_strengths() {
            let with = |a, n| GenerationRequest { audio_cover_strength: a, cover_noise_strength: n, ..repaint() };
            assert_eq!(check(with(0.0, 1.0)), Ok(()));
            assert_eq!(check(with(1.2, 0.0)), Err("audio_cover_strength".into()));
            assert_eq!(check(with(1.0, -0.1)), Err("cover_noise_strength".into()));
        }

        #[test]
        fn repaint_strength() {
            let with = |s| GenerationRequest { repaint_strength: s, ..repaint() };
            assert_eq!(check(with(0.0)), Ok(()));
            assert_eq!(check(with(1.0)), Ok(()));
            assert_eq!(check(with(-0.1)), Err("repaint_strength".into()));
            assert_eq!(check(with(f64::NAN)), Err("repaint_strength".into()));
            assert_eq!(check(with(f64::INFINITY)), Err("repaint_strength".into()));
            assert_eq!(with(1.5).validate().unwrap_err().to_string(), "`repaint_strength`: 1.5 is outside 0 to 1");
            let parsed = parse(json!({"repaint_strength": "2"})).unwrap();
            assert_eq!(check(parsed), Err("repaint_strength".into()));
        }

        #[test]
        fn tracks() {
            let lego = |name: &str| GenerationRequest {
                task_type: TaskType::Lego,
                track_name: Some(name.into()),
                ..repaint()
            };
            assert_eq!(check(lego("backing_vocals")), Ok(()));
            assert_eq!(check(lego("Guitar")), Ok(()), "any case");
            let err = lego("kazoo").validate().unwrap_err().to_string();
            assert!(
                err.starts_with("`track_name`: \"kazoo\" is not a known track; use one of woodwinds, brass"),
                "{err}"
            );
            let complete = |classes: &[&str]| GenerationRequest {
                task_type: TaskType::Complete,
                track_classes: classes.iter().map(|c| c.to_string()).collect(),
                ..repaint()
            };
            assert_eq!(check(complete(&["drums", "bass"])), Ok(()));
            assert_eq!(check(complete(&["drums", "cowbell"])), Err("track_classes".into()));
            let misplaced = GenerationRequest { track_name: Some("drums".into()), ..complete(&[]) };
            assert_eq!(check(misplaced), Err("track_name".into()));
            let misplaced = GenerationRequest { track_classes: vec!["drums".into()], ..lego("bass") };
            assert_eq!(check(misplaced), Err("track_classes".into()));
        }

        #[test]
        fn sampler_settings() {
            let ok = GenerationRequest {
                inference_steps: Some(200),
                shift: Some(5.0),
                guidance_scale: Some(15.0),
                ..Default::default()
            };
            assert_eq!(check(ok.clone()), Ok(()));
            assert_eq!(
                check(GenerationRequest { inference_steps: Some(0), ..ok.clone() }),
                Err("inference_steps".into())
            );
            assert_eq!(
                check(GenerationRequest { inference_steps: Some(201), ..ok.clone() }),
                Err("inference_steps".into())
            );
            assert_eq!(check(GenerationRequest { shift: Some(0.5), ..ok.clone() }), Err("shift".into()));
            assert_eq!(
                check(GenerationRequest { guidance_scale: Some(20.0), ..ok.clone() }),
                Err("guidance_scale".into())
            );
            let interval =
                |start, end| GenerationRequest { cfg_interval_start: start, cfg_interval_end: end, ..ok.clone() };
            assert_eq!(check(interval(0.3, 0.3)), Ok(()));
            assert_eq!(check(interval(-0.1, 1.0)), Err("cfg_interval_start".into()));
            assert_eq!(check(interval(0.6, 0.4)), Err("cfg_interval_end".into()));
        }

        #[test]
        fn timesteps() {
            let with = |ts: &[f64]| GenerationRequest { timesteps: Some(ts.to_vec()), ..Default::default() };
            assert_eq!(check(with(&[0.97, 0.76, 0.5, 0.0, 0.0])), Ok(()));
            assert_eq!(check(with(&[])), Err("timesteps".into()));
            assert_eq!(check(with(&[1.2, 0.5])), Err("timesteps".into()));
            assert_eq!(check(with(&[0.0])), Err("timesteps".into()));
            assert_eq!(check(with(&[0.5, 0.7])), Err("timesteps".into()));
            assert_eq!(check(with(&[0.5, 0.0, 0.3])), Err("timesteps".into()));
        }
    }

    mod resolving {
        use super::*;

        #[test]
        fn turbo_defaults() {
            let resolved = GenerationRequest::default().resolve(ModelKind::Turbo).unwrap();
            let s = &resolved.sampling;
            assert_eq!((s.steps, s.shift, s.guidance_scale, s.use_adg), (8, 3.0, 1.0, false));
            assert_eq!(resolved.duration_s, Some(FALLBACK_DURATION_S));
            assert_eq!(resolved.batch_size(), 2);
            assert_eq!(resolved.audio_format, AudioFormat::Flac);
            assert_eq!(resolved.prompt.vocal_language, "unknown");
            assert_eq!(resolved.prompt.duration, None, "the metas say 30 seconds, as upstream's do");
        }

        #[test]
        fn base_and_sft_defaults() {
            for (model, steps) in [(ModelKind::Base, 32), (ModelKind::Sft, 50)] {
                let resolved = GenerationRequest::default().resolve(model).unwrap();
                let s = &resolved.sampling;
                assert_eq!((s.steps, s.shift, s.guidance_scale), (steps, 3.0, 7.0), "{model}");
                assert_eq!((s.cfg_interval_start, s.cfg_interval_end), (0.0, 1.0));
            }
        }

        #[test]
        fn requests_override_defaults_except_turbo_guidance() {
            let request = GenerationRequest {
                inference_steps: Some(12),
                shift: Some(2.0),
                guidance_scale: Some(4.0),
                use_adg: true,
                ..Default::default()
            };
            let base = request.resolve(ModelKind::Base).unwrap().sampling;
            assert_eq!((base.steps, base.shift, base.guidance_scale, base.use_adg), (12, 2.0, 4.0, true));
            let turbo = request.resolve(ModelKind::Turbo).unwrap().sampling;
            assert_eq!((turbo.steps, turbo.shift, turbo.guidance_scale, turbo.use_adg), (12, 2.0, 1.0, false));
        }

        #[test]
        fn step_limits_per_model() {
            let steps = |n| GenerationRequest { inference_steps: Some(n), ..Default::default() };
            assert_eq!(steps(20).resolve(ModelKind::Turbo).unwrap().sampling.steps, 20);
            let err = steps(21).resolve(ModelKind::Turbo).unwrap_err().to_string();
            assert_eq!(err, "`inference_steps`: 21 is more than the turbo model's 20 (its default is 8)");
            assert_eq!(steps(200).resolve(ModelKind::Base).unwrap().sampling.steps, 200);
        }

        #[test]
        fn timesteps_set_the_step_count() {
            let request = GenerationRequest { timesteps: Some(vec![1.0, 0.75, 0.5, 0.25, 0.0]), ..Default::default() };
            assert_eq!(request.resolve(ModelKind::Turbo).unwrap().sampling.steps, 4, "trailing zeros dropped");
            assert_eq!(request.resolve(ModelKind::Base).unwrap().sampling.steps, 4, "pairs");
            let single = GenerationRequest { timesteps: Some(vec![0.5]), ..Default::default() };
            assert_eq!(single.resolve(ModelKind::Turbo).unwrap().sampling.steps, 1);
            assert_eq!(field_of(single.resolve(ModelKind::Base).unwrap_err()), "timesteps");
            let long: Vec<f64> = (0..21).map(|i| 1.0 - i as f64 / 21.0).collect();
            let long = GenerationRequest { timesteps: Some(long), ..Default::default() };
            assert_eq!(field_of(long.resolve(ModelKind::Turbo).unwrap_err()), "timesteps");
            assert_eq!(long.resolve(ModelKind::Base).unwrap().sampling.steps, 20);
        }

        #[test]
        fn base_only_tasks_on_turbo_say_to_load_the_base_model() {
            for task in [TaskType::Lego, TaskType::Extract, TaskType::Complete] {
                let request = GenerationRequest { task_type: task, ..repaint() };
                assert!(request.resolve(ModelKind::Base).is_ok(), "{task}");
                for model in [ModelKind::Turbo, ModelKind::Sft] {
                    let err = request.resolve(model).unwrap_err();
                    assert_eq!(err, RequestError::TaskNeedsBaseModel { task, model });
                    let text = err.to_string();
                    assert!(text.contains("needs the base model") && text.contains("acestep-v15-base"), "{text}");
                }
            }
            let text =
                GenerationRequest { task_type: TaskType::Lego, ..repaint() }.resolve(ModelKind::Turbo).unwrap_err();
            assert_eq!(
                text.to_string(),
                "task `lego` needs the base model, and the requested model is turbo: ask for `acestep-v15-base` to \
                 run lego, extract or complete (or leave `model` out)"
            );
            for task in [TaskType::Text2Music, TaskType::Repaint, TaskType::Cover] {
                let request = GenerationRequest { task_type: task, ..repaint() };
                assert!(request.resolve(ModelKind::Turbo).is_ok(), "{task}");
            }
        }

        #[test]
        fn fixed_seeds_reproduce() {
            let one = GenerationRequest { seed: Some(Seed::One(42)), batch_size: Some(3), ..Default::default() };
            let first = one.resolve(ModelKind::Turbo).unwrap();
            assert_eq!(first.seeds, [42, 43, 44]);
            assert_eq!(one.resolve(ModelKind::Turbo).unwrap().seeds, first.seeds);
            let top = GenerationRequest { seed: Some(Seed::One(MAX_SEED)), batch_size: Some(2), ..Default::default() };
            assert_eq!(top.resolve(ModelKind::Turbo).unwrap().seeds, [u32::MAX, 0]);
            let list = GenerationRequest { seed: Some(Seed::PerItem(vec![7, 1, 5])), ..Default::default() };
            assert_eq!(list.resolve(ModelKind::Base).unwrap().seeds, [7, 1, 5], "the list sets the batch size");
        }

        #[test]
        fn missing_seeds_are_drawn_once_and_recorded() {
            let request = GenerationRequest { batch_size: Some(3), ..Default::default() };
            let resolved = request.resolve_with(ModelKind::Turbo, counting()).unwrap();
            assert_eq!(resolved.seeds, [1001, 1002, 1003]);
            assert_eq!(resolved.recipe.seed, Some(Seed::PerItem(vec![1001, 1002, 1003])));
            // The recipe reproduces the take without drawing again.
            let again = resolved.recipe.resolve_with(ModelKind::Turbo, || panic!("drew a seed")).unwrap();
            assert_eq!(again, resolved);

            let partial =
                GenerationRequest { seed: Some(Seed::PerItem(vec![5, -1])), batch_size: Some(3), ..Default::default() };
            assert_eq!(partial.resolve_with(ModelKind::Turbo, counting()).unwrap().seeds, [5, 1001, 1002]);
            let random = GenerationRequest { use_random_seed: Some(true), batch_size: Some(3), ..Default::default() };
            assert_eq!(random.resolve_with(ModelKind::Turbo, counting()).unwrap().seeds, [1001, 1002, 1003]);

            let drawn =
                GenerationRequest { batch_size: Some(8), ..Default::default() }.resolve(ModelKind::Turbo).unwrap();
            assert_eq!(drawn.seeds.len(), 8);
            let distinct: std::collections::BTreeSet<_> = drawn.seeds.iter().collect();
            assert!(distinct.len() > 1, "drawn seeds differ: {:?}", drawn.seeds);
        }

        #[test]
        fn recipe_pins_the_model_defaults() {
            let resolved = GenerationRequest::default().resolve_with(ModelKind::Base, counting()).unwrap();
            let recipe = &resolved.recipe;
            assert_eq!((recipe.inference_steps, recipe.shift, recipe.guidance_scale), (Some(32), Some(3.0), Some(7.0)));
            assert_eq!(recipe.batch_size, Some(2));
            let json = serde_json::to_string(recipe).unwrap();
            assert_eq!(&GenerationRequest::from_json(&json).unwrap(), recipe);
        }

        #[test]
        fn prompt_inputs_come_from_the_request() {
            let request = GenerationRequest {
                task_type: TaskType::Lego,
                caption: "warm tape".into(),
                track_name: Some("Guitar".into()),
                bpm: Some(90),
                keyscale: Some("D minor".into()),
                timesignature: Some("3".into()),
                vocal_language: Some("en".into()),
                duration: Some(30.0),
                ..repaint()
            };
            let resolved = request.resolve(ModelKind::Base).unwrap();
            let prompt = &resolved.prompt;
            assert_eq!(prompt.instruction(), "Generate the GUITAR track based on the audio context:");
            assert_eq!(prompt.track_name.as_deref(), Some("guitar"));
            assert_eq!(prompt.duration, None, "an audio task's metas state the source's length");
            assert_eq!(resolved.duration_s, None);
            let with_source = resolved.prompt_for_source(12.5);
            assert!(with_source
                .caption_prompt()
                .contains("- bpm: 90\n- timesignature: 3\n- keyscale: D minor\n- duration: 12 seconds\n"));
            assert_eq!(with_source.lyric_prompt(), "# Languages\nen\n\n# Lyric\n<|endoftext|>");

            let t2m =
                GenerationRequest { duration: Some(45.5), ..Default::default() }.resolve(ModelKind::Turbo).unwrap();
            assert_eq!((t2m.duration_s, t2m.prompt.duration), (Some(45.5), Some(45.5)));
        }

        #[test]
        fn repaint_settings_follow_mode_and_strength() {
            let settings = |mode, strength| {
                let request = GenerationRequest { repaint_mode: mode, repaint_strength: strength, ..repaint() };
                request.resolve(ModelKind::Turbo).unwrap().repaint_settings
            };
            let balanced = repaint().resolve(ModelKind::Turbo).unwrap().repaint_settings;
            assert_eq!((balanced.injection_ratio, balanced.crossfade_frames), (0.5, 12));
            assert!((balanced.splice_crossfade_s - 0.025).abs() < 1e-12, "{balanced:?}");
            let conservative = settings(RepaintMode::Conservative, 0.9);
            assert_eq!(
                conservative,
                RepaintSettings { injection_ratio: 1.0, crossfade_frames: 25, splice_crossfade_s: 0.05 }
            );
            let aggressive = settings(RepaintMode::Aggressive, 0.1);
            assert_eq!(
                aggressive,
                RepaintSettings { injection_ratio: 0.0, crossfade_frames: 0, splice_crossfade_s: 0.0 }
            );
            assert_eq!(settings(RepaintMode::Balanced, 1.0), aggressive);
            assert_eq!(settings(RepaintMode::Balanced, 0.0), conservative);

            let request = GenerationRequest { repaint_mode: RepaintMode::Aggressive, ..repaint() };
            let resolved = request.resolve(ModelKind::Turbo).unwrap();
            assert_eq!(
                (resolved.recipe.repaint_mode, resolved.recipe.repaint_strength),
                (RepaintMode::Aggressive, 0.5)
            );
            let json = serde_json::to_value(&resolved.recipe).unwrap();
            assert_eq!((&json["repaint_mode"], &json["repaint_strength"]), (&json!("aggressive"), &json!(0.5)));
            assert_eq!(resolved.recipe.resolve(ModelKind::Turbo).unwrap().repaint_settings, resolved.repaint_settings);
        }

        #[test]
        fn source_span_pads_for_out_painting_within_the_limits() {
            let window = |start, end| {
                let request = GenerationRequest { repainting_start: start, repainting_end: end, ..repaint() };
                request.resolve(ModelKind::Turbo).unwrap()
            };
            let span = |start, end, source| window(start, end).source_span(source);
            assert_eq!(span(4.0, Some(8.0), 30.0), Ok(SourceSpan { left_pad_s: 0.0, right_pad_s: 0.0, total_s: 30.0 }));
            assert_eq!(span(-5.0, None, 30.0), Ok(SourceSpan { left_pad_s: 5.0, right_pad_s: 0.0, total_s: 35.0 }));
            assert_eq!(
                span(20.0, Some(40.0), 30.0),
                Ok(SourceSpan { left_pad_s: 0.0, right_pad_s: 10.0, total_s: 40.0 })
            );
            assert_eq!(span(-2.0, Some(12.0), 8.0).unwrap().total_s, 14.0, "a short source extended past 10 s");
            assert_eq!(field_of(span(30.0, Some(40.0), 30.0).unwrap_err()), "repainting_start");
            assert_eq!(field_of(span(35.0, None, 30.0).unwrap_err()), "repainting_start");
            let err = span(0.0, Some(4.0), 8.0).unwrap_err().to_string();
            assert_eq!(
                err,
                "`src_audio`: the 8 s source, extended by the repaint window, is 8 s long; the model makes 10 to 600 s"
            );
            assert_eq!(field_of(span(-10.0, None, 595.0).unwrap_err()), "src_audio");

            let cover =
                GenerationRequest { task_type: TaskType::Cover, ..repaint() }.resolve(ModelKind::Turbo).unwrap();
            assert_eq!(cover.repaint, None);
            assert_eq!(cover.source_span(42.0).unwrap().total_s, 42.0);
            assert_eq!(
                cover.source_span(9.0).unwrap_err().to_string(),
                "`src_audio`: the source is 9 s long; the model makes 10 to 600 s"
            );
            assert_eq!(field_of(cover.source_span(f64::NAN).unwrap_err()), "src_audio");
        }
    }
}
