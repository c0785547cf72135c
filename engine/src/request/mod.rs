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

pub use crate::sampling::InferMethod;
use crate::sampling::RepaintMode;
use crate::task::{ChunkMaskMode, TaskType};
pub use crate::task::ModelKind;

pub mod hosted;
mod limits;
mod parse;
mod resolve;
mod validate;

pub use limits::*;
pub use resolve::{LmSettings, RepaintWindow, ResolvedRequest, Sampling, SourceSpan};


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
/// `lyrics`, `instrumental`, `bpm`, `chunk_mask_mode`, `shift`, `timesteps` and `instruction` have
/// no other keys.
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
    /// The DiT's chunk mask for the repaint or lego window. Default auto, upstream's.
    pub chunk_mask_mode: ChunkMaskMode,
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
    /// Let the 5 Hz LM plan the piece first: it writes 5 Hz audio codes for the caption, lyrics
    /// and metas, and the DiT renders them as a cover would its source. Text2music reads it;
    /// upstream skips the LM for the audio tasks, and so does Backline. Default false.
    #[serde(skip_serializing_if = "is_false")]
    pub thinking: bool,
    /// 5 Hz audio codes as `<|audio_code_N|>` text (what the LM writes, or upstream's
    /// `audio_codes`): text2music renders them as a cover-style source, and the LM does not run.
    /// A take made with `thinking` records the LM's codes in its recipe's `lm` report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_code_string: Option<String>,
    /// The LM's sampling (`inference.py` `GenerationParams`): temperature (0.85), guidance
    /// (2.0; 1 turns the unconditional row off), top-k (0, off), top-p (0.9; 1 is off),
    /// repetition penalty (1.0, off), and the negative prompt of the unconditional row.
    pub lm_temperature: f64,
    pub lm_cfg_scale: f64,
    pub lm_top_k: u32,
    pub lm_top_p: f64,
    pub lm_repetition_penalty: f64,
    pub lm_negative_prompt: String,
    /// Let the LM's chain of thought write a caption, which the DiT then reads in place of the
    /// user's (upstream's default, true). Off, the thought plans the metas only.
    pub use_cot_caption: bool,
    /// Let the chain of thought write the language line (upstream's default, true). Off, the
    /// thought leaves it out, as upstream's does (the DiT's language stays the request's either
    /// way, as upstream's does).
    pub use_cot_language: bool,
    /// Sample mode (upstream `sample_query`, also `description`): before anything else the LM
    /// writes the whole request from this short description: caption, lyrics, bpm, key, time
    /// signature and duration, in place of the request's. A language the description names (or a
    /// `vocal_language` other than en) is the lyrics' language; "instrumental" in it asks for
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_query: Option<String>,
    /// Sample mode without a description: the LM invents the piece (upstream `sample_mode`).
    #[serde(skip_serializing_if = "is_false")]
    pub sample_mode: bool,
    /// Format (upstream `use_format`): before generating, the LM rewrites the caption and lyrics
    /// into fuller ones and fills in bpm, key, time signature and duration, keeping those the
    /// request gives.
    #[serde(skip_serializing_if = "is_false")]
    pub use_format: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
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
            chunk_mask_mode: ChunkMaskMode::Auto,
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
            thinking: false,
            audio_code_string: None,
            lm_temperature: 0.85,
            lm_cfg_scale: 2.0,
            lm_top_k: 0,
            lm_top_p: 0.9,
            lm_repetition_penalty: 1.0,
            lm_negative_prompt: crate::lm::prompt::NO_USER_INPUT.to_string(),
            use_cot_caption: true,
            use_cot_language: true,
            sample_query: None,
            sample_mode: false,
            use_format: false,
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
}

impl<'de> Deserialize<'de> for GenerationRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::from_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! What every test module of the request shares: the helpers below and the request's names.
    pub(super) use super::parse::{field_name, upstream_only, FIELDS};
    pub(crate) use super::*;
    pub(crate) use crate::sampling::RepaintMode;
    pub(crate) use crate::task::TaskType;
    pub(crate) use serde_json::{json, Value};

    pub(crate) fn parse(body: Value) -> Result<GenerationRequest, RequestError> {
        GenerationRequest::from_value(body)
    }

    pub(crate) fn field_of(err: RequestError) -> String {
        match err {
            RequestError::Invalid { field, .. } => field,
            other => panic!("not an Invalid error: {other}"),
        }
    }

    /// A request that passes every rule, for tests to break one rule at a time.
    pub(crate) fn repaint() -> GenerationRequest {
        GenerationRequest {
            task_type: TaskType::Repaint,
            src_audio: Some("take.wav".into()),
            repainting_start: 4.0,
            repainting_end: Some(8.0),
            ..Default::default()
        }
    }

    pub(crate) fn counting() -> impl FnMut() -> u32 {
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
            let err = GenerationRequest::from_json(r#"{"caption": "x", "loudness": 1}"#).unwrap_err();
            assert_eq!(err, RequestError::UnknownField { field: "loudness".into(), suggestion: None });
            assert_eq!(err.to_string(), "unknown field `loudness`");
            let err = parse(json!({"temperature": 1})).unwrap_err();
            assert!(err.to_string().ends_with("did you mean `lm_temperature`?"), "{err}");
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
                "thinking": false, "analysis_only": "false", "audio_code_string": "", "repaint_mode": "balanced",
                "repaint_strength": 0.5, "chunk_mask_mode": "auto", "repaint_latent_crossfade_frames": 10,
                "use_tiled_decode": true, "lm_temperature": 0.85, "lm_backend": "vllm", "use_cot_caption": true,
                "allowLmBatch": true,
            });
            assert_eq!(parse(defaults).unwrap(), GenerationRequest::default());
            let err = parse(json!({"full_analysis_only": true})).unwrap_err();
            assert!(matches!(&err, RequestError::UnsupportedField { field, .. } if field == "full_analysis_only"), "{err}");
            let err = parse(json!({"repaint_latent_crossfade_frames": 4})).unwrap_err();
            assert!(err.to_string().starts_with("`repaint_latent_crossfade_frames` = 4 is not supported"), "{err}");
            assert!(parse(json!({"format": "mp3"})).is_err(), "`format` is upstream's alias of use_format");
        }

        #[test]
        fn sample_mode_and_format_are_read_as_upstream_prepares_them() {
            let sampled = parse(json!({"description": "a soft Bengali love song, instrumental", "lm_temperature": 1.1, "lm_top_p": 1.0}))
                .unwrap();
            let rewrite = sampled.resolve(ModelKind::Turbo).unwrap().rewrite.expect("sample mode rewrites the request");
            let sample = rewrite.sample.expect("a sample query");
            assert_eq!((sample.query.as_str(), sample.instrumental, sample.language.as_deref()), ("a soft Bengali love song, instrumental", true, Some("bn")));
            assert!(!rewrite.format);
            assert_eq!((rewrite.sampling.temperature, rewrite.sampling.top_p), (1.1, Some(0.9)), "a top-p of 1 reads as upstream's 0.9");
            // A vocal language other than en wins over the description's.
            let told = parse(json!({"sampleMode": true, "vocal_language": "ja"})).unwrap().resolve(ModelKind::Turbo).unwrap();
            let sample = told.rewrite.unwrap().sample.unwrap();
            assert_eq!((sample.query.as_str(), sample.language.as_deref()), ("NO USER INPUT", Some("ja")));
            let formatted = parse(json!({"prompt": "synthwave", "format": "true"})).unwrap().resolve(ModelKind::Turbo).unwrap();
            let rewrite = formatted.rewrite.unwrap();
            assert!(rewrite.format && rewrite.sample.is_none());
            assert!(parse(json!({"sample_query": ""})).unwrap().resolve(ModelKind::Turbo).unwrap().rewrite.is_none(), "blank asks nothing");
        }

        #[test]
        fn thinking_and_audio_codes_are_read_and_checked() {
            let planned = parse(json!({"thinking": "true", "bpm": 90, "key": "A minor", "time_signature": "4", "audio_duration": 12,
                "lm_temperature": "1.1", "lmCfgScale": 1.5, "lm_top_k": 40, "lm_negative_prompt": "harsh"}))
            .unwrap();
            assert!(planned.thinking);
            planned.validate().unwrap();
            let resolved = planned.resolve(ModelKind::Turbo).unwrap();
            let lm = resolved.lm.expect("text2music with thinking plans with the LM");
            assert_eq!((lm.sampling.temperature, lm.sampling.top_k, lm.cfg_scale), (1.1, Some(40), 1.5));
            assert_eq!(lm.negative_prompt, "harsh");
            assert!(lm.cot_language, "the thought writes a language line unless told not to");
            // The metas left open are the LM's to plan.
            let open = parse(json!({"thinking": true, "bpm": 90, "cot_language": false})).unwrap();
            assert!(!open.resolve(ModelKind::Turbo).unwrap().lm.expect("planned").cot_language);
            // The audio tasks skip the LM, as upstream's do.
            let cover = parse(json!({"thinking": true, "task_type": "cover", "src_audio": "a.wav"})).unwrap();
            assert!(cover.resolve(ModelKind::Turbo).unwrap().lm.is_none());

            let coded = parse(json!({"audio_codes": "<|audio_code_5|><|audio_code_63999|>", "thinking": true})).unwrap();
            let resolved = coded.resolve(ModelKind::Turbo).unwrap();
            assert_eq!(resolved.audio_codes, Some(vec![5, 63_999]));
            assert!(resolved.lm.is_none(), "given codes are the plan");
            let err = parse(json!({"audio_code_string": "no codes"})).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains("audio_code_string"), "{err}");
            let err = parse(json!({"lm_top_p": 1.5})).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains("lm_top_p"), "{err}");
        }

        #[test]
        fn chunk_mask_mode_is_auto_unless_asked() {
            assert_eq!(parse(json!({})).unwrap().chunk_mask_mode, ChunkMaskMode::Auto);
            assert_eq!(parse(json!({"chunk_mask_mode": "explicit"})).unwrap().chunk_mask_mode, ChunkMaskMode::Explicit);
            let err = parse(json!({"chunk_mask_mode": "window"})).unwrap_err();
            assert_eq!(field_of(err), "chunk_mask_mode");
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
}
