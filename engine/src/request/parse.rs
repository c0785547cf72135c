//! Reading a request from JSON the way upstream's REST server reads a body: canonical names,
//! aliases and camelCase keys, nested `param_obj` / `metas` objects, numbers and booleans sent as
//! strings, and upstream-only fields accepted only while they ask for nothing.

use super::*;

/// The request in a JSON object: top-level keys first, then the nested objects by priority.
pub(super) fn request_from_value(body: Value) -> Result<GenerationRequest, RequestError> {
    let Value::Object(top) = body else {
        return Err(RequestError::NotAnObject { found: json_kind(&body) });
    };
    let mut fields = Fields::default();
    let mut nested = fields.read_level(top, "")?;
    nested.sort_by_key(|(key, _)| NESTED_KEYS.iter().position(|k| *k == key.as_str()));
    for (key, value) in nested {
        let inner = nested_object(&key, value)?;
        fields.read_level(inner, &format!("{key}."))?;
    }
    fields.build()
}

/// Every field and the other keys accepted for it (see [`GenerationRequest`]'s table).
pub(super) const FIELDS: &[(&str, &[&str])] = &[
    ("task_type", &["taskType"]),
    ("caption", &["prompt"]),
    ("lyrics", &[]),
    ("instrumental", &[]),
    ("vocal_language", &["vocalLanguage", "language"]),
    ("bpm", &[]),
    ("keyscale", &["key_scale", "keyScale", "key"]),
    ("timesignature", &["time_signature", "timeSignature"]),
    ("duration", &["audio_duration", "audioDuration", "target_duration", "targetDuration"]),
    ("src_audio", &["src_audio_path", "ctx_audio_path", "sourceAudioPath", "srcAudioPath", "ctxAudioPath", "srcAudio"]),
    (
        "reference_audio",
        &["reference_audio_path", "ref_audio_path", "referenceAudioPath", "refAudioPath", "referenceAudio"],
    ),
    ("repainting_start", &["repaintingStart"]),
    ("repainting_end", &["repaintingEnd"]),
    ("repaint_mode", &["repaintMode"]),
    ("repaint_strength", &["repaintStrength"]),
    ("chunk_mask_mode", &[]),
    ("audio_cover_strength", &["audioCoverStrength", "cover_strength", "coverStrength"]),
    ("cover_noise_strength", &["coverNoiseStrength"]),
    ("track_name", &["trackName"]),
    ("track_classes", &["trackClasses", "instruments"]),
    ("inference_steps", &["inferenceSteps"]),
    ("shift", &[]),
    ("guidance_scale", &["guidanceScale"]),
    ("cfg_interval_start", &["cfgIntervalStart"]),
    ("cfg_interval_end", &["cfgIntervalEnd"]),
    ("use_adg", &["useAdg"]),
    ("infer_method", &["inferMethod"]),
    ("timesteps", &[]),
    ("seed", &["seeds"]),
    ("use_random_seed", &["useRandomSeed"]),
    ("batch_size", &["batchSize"]),
    ("audio_format", &["audioFormat"]),
    ("instruction", &[]),
    ("model", &["model_name", "modelName", "dit_model", "ditModel"]),
    ("thinking", &[]),
    ("audio_code_string", &["audioCodeString", "audio_codes"]),
    ("lm_temperature", &["lmTemperature"]),
    ("lm_cfg_scale", &["lmCfgScale"]),
    ("lm_top_k", &["lmTopK"]),
    ("lm_top_p", &["lmTopP"]),
    ("lm_repetition_penalty", &["lmRepetitionPenalty"]),
    ("lm_negative_prompt", &["lmNegativePrompt"]),
    ("use_cot_caption", &["cot_caption", "cot-caption"]),
    ("use_cot_language", &["cot_language", "cot-language"]),
    ("sample_query", &["sampleQuery", "description", "desc"]),
    ("sample_mode", &["sampleMode"]),
    ("use_format", &["useFormat", "format"]),
];

/// Nested objects whose keys count as fields, highest priority first
/// (`api/http/release_task_param_parser.py:105,126,136`).
const NESTED_KEYS: [&str; 6] = ["param_obj", "metas", "meta", "metadata", "user_metadata", "userMetadata"];

/// Which values of an upstream-only field ask for nothing.
#[derive(Clone, Copy)]
pub(super) enum Inert {
    /// Any value: a knob of the 5 Hz LM.
    Always,
    /// false, 0 or an empty string.
    Off,
    /// Off, or this number (upstream's default).
    Number(f64),
    /// Off is not inert here: only true, upstream's default.
    True,
}

const LM_KNOB: &str = "it only steers the 5 Hz LM";
const ANALYSIS: &str = "analysis-only jobs are not supported";
const REPAINT_TUNING: &str = "Backline tunes repaint through `repaint_mode` and `repaint_strength` only";

/// Upstream REST fields for features Backline does not have (`api/http/release_task_models.py`,
/// aliases from `release_task_param_parser.py`): canonical name, other keys, the values that ask
/// for nothing, and why anything else is refused.
const UPSTREAM_ONLY: &[(&str, &[&str], Inert, &str)] = &[
    ("global_caption", &[], Inert::Off, "SFT-stems lego checkpoints are not supported"),
    ("analysis_only", &["analysisOnly"], Inert::Off, ANALYSIS),
    ("full_analysis_only", &["fullAnalysisOnly"], Inert::Off, ANALYSIS),
    ("extract_codes_only", &["extractCodesOnly"], Inert::Off, ANALYSIS),
    ("repaint_latent_crossfade_frames", &[], Inert::Number(10.0), REPAINT_TUNING),
    ("repaint_wav_crossfade_sec", &[], Inert::Number(0.0), REPAINT_TUNING),
    ("use_tiled_decode", &["useTiledDecode"], Inert::True, "the engine chooses how the VAE decodes"),
    ("lm_model_path", &[], Inert::Always, LM_KNOB),
    ("lm_backend", &[], Inert::Always, LM_KNOB),
    ("constrained_decoding", &["constrainedDecoding", "constrained"], Inert::Always, LM_KNOB),
    ("constrained_decoding_debug", &["constrainedDecodingDebug"], Inert::Always, LM_KNOB),
    ("is_format_caption", &["isFormatCaption"], Inert::Always, LM_KNOB),
    ("allow_lm_batch", &["allowLmBatch", "parallel_thinking"], Inert::Always, LM_KNOB),
];

pub(super) fn field_name(key: &str) -> Option<&'static str> {
    FIELDS.iter().find(|(name, aliases)| *name == key || aliases.contains(&key)).map(|(name, _)| *name)
}

pub(super) fn upstream_only(key: &str) -> Option<(Inert, &'static str)> {
    UPSTREAM_ONLY
        .iter()
        .find(|(name, aliases, ..)| *name == key || aliases.contains(&key))
        .map(|&(_, _, inert, reason)| (inert, reason))
}

fn asks_for_nothing(inert: Inert, value: &Value) -> bool {
    let off = match value {
        Value::Null | Value::Bool(false) => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => matches!(s.trim().to_lowercase().as_str(), "" | "false" | "0" | "no" | "off"),
        _ => false,
    };
    match inert {
        Inert::Always => true,
        Inert::Off => off,
        Inert::Number(default) => off || loose_number(value) == Some(default),
        Inert::True => loose_bool(value) == Some(true),
    }
}

/// A field's best guess for a key nobody knows: same letters ignoring case, '_' and '-', else
/// within two edits.
fn suggest(key: &str) -> Option<&'static str> {
    let squash =
        |s: &str| s.chars().filter(|c| !matches!(c, '_' | '-')).flat_map(char::to_lowercase).collect::<String>();
    let wanted = squash(key);
    let candidates =
        FIELDS.iter().flat_map(|(name, aliases)| std::iter::once(name).chain(aliases.iter()).map(move |k| (*name, *k)));
    let mut best: Option<(usize, &'static str)> = None;
    for (name, known) in candidates {
        let distance = edit_distance(&wanted, &squash(known));
        if distance <= 2 && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, name));
        }
    }
    best.map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn nested_object(key: &str, value: Value) -> Result<Map<String, Value>, RequestError> {
    let parsed = match value {
        Value::String(text) if text.trim().is_empty() => return Ok(Map::new()),
        Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        other => other,
    };
    match parsed {
        Value::Object(map) => Ok(map),
        other => Err(invalid(key, format!("expected an object of request fields, got {}", json_kind(&other)))),
    }
}

/// A number, or a string holding one. Upstream parses form fields this way
/// (`api/http/release_task_param_parser.py:65-78`).
fn loose_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean, 0/1, or one of upstream's words for them (`release_task_param_parser.py:81-91`).
fn loose_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) if n.as_f64() == Some(1.0) => Some(true),
        Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
        Value::String(s) => match s.trim().to_lowercase().as_str() {
            "1" | "true" | "yes" | "y" | "on" => Some(true),
            "0" | "false" | "no" | "n" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The fields found in a body, by name, each with the key it was sent as.
#[derive(Default)]
struct Fields {
    found: BTreeMap<&'static str, (String, Value)>,
}

impl Fields {
    /// Take one level's keys. Fields already set by a higher level keep their value. Returns the
    /// nested objects found at the top level.
    fn read_level(&mut self, entries: Map<String, Value>, path: &str) -> Result<Vec<(String, Value)>, RequestError> {
        let mut level: BTreeMap<&'static str, (String, Value)> = BTreeMap::new();
        let mut nested = Vec::new();
        for (key, value) in entries {
            if value.is_null() {
                continue;
            }
            let shown = format!("{path}{key}");
            if path.is_empty() && NESTED_KEYS.contains(&key.as_str()) {
                nested.push((key, value));
            } else if let Some(name) = field_name(&key) {
                if let Some((first, _)) = level.get(name) {
                    return Err(RequestError::DuplicateField { field: name, first: first.clone(), second: shown });
                }
                level.insert(name, (shown, value));
            } else if let Some((inert, reason)) = upstream_only(&key) {
                if !asks_for_nothing(inert, &value) {
                    return Err(RequestError::UnsupportedField { field: shown, value: value.to_string(), reason });
                }
            } else {
                return Err(RequestError::UnknownField { field: shown, suggestion: suggest(&key) });
            }
        }
        for (name, entry) in level {
            self.found.entry(name).or_insert(entry);
        }
        Ok(nested)
    }

    fn take(&mut self, name: &'static str) -> Option<(String, Value)> {
        self.found.remove(name)
    }

    fn text(&mut self, name: &'static str) -> Result<Option<String>, RequestError> {
        let Some((key, value)) = self.take(name) else { return Ok(None) };
        match value {
            Value::String(s) => Ok(Some(s)),
            Value::Number(n) => Ok(Some(n.to_string())),
            other => Err(invalid(&key, format!("expected a string, got {other}"))),
        }
    }

    /// A string where blank means "not given".
    fn name(&mut self, name: &'static str) -> Result<Option<String>, RequestError> {
        Ok(self.text(name)?.filter(|s| !s.trim().is_empty()))
    }

    fn number(&mut self, name: &'static str) -> Result<Option<f64>, RequestError> {
        let Some((key, value)) = self.take(name) else { return Ok(None) };
        if value.as_str().is_some_and(|s| s.trim().is_empty()) {
            return Ok(None);
        }
        loose_number(&value).map(Some).ok_or_else(|| invalid(&key, format!("expected a number, got {value}")))
    }

    /// A number where -1 is upstream's "not given".
    fn number_or_unset(&mut self, name: &'static str) -> Result<Option<f64>, RequestError> {
        Ok(self.number(name)?.filter(|&v| v != -1.0))
    }

    fn whole(&mut self, name: &'static str) -> Result<Option<u32>, RequestError> {
        let Some((key, value)) = self.take(name) else { return Ok(None) };
        if value.as_str().is_some_and(|s| s.trim().is_empty()) {
            return Ok(None);
        }
        match loose_number(&value) {
            Some(n) if n.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&n) => Ok(Some(n as u32)),
            _ => Err(invalid(&key, format!("expected a whole number of at least 0, got {value}"))),
        }
    }

    fn boolean(&mut self, name: &'static str) -> Result<Option<bool>, RequestError> {
        let Some((key, value)) = self.take(name) else { return Ok(None) };
        if value.as_str().is_some_and(|s| s.trim().is_empty()) {
            return Ok(None);
        }
        loose_bool(&value).map(Some).ok_or_else(|| invalid(&key, format!("expected true or false, got {value}")))
    }

    fn choice<T: Copy>(&mut self, name: &'static str, choices: &[(&str, T)]) -> Result<Option<T>, RequestError> {
        let Some((key, value)) = self.take(name) else { return Ok(None) };
        let Value::String(given) = &value else {
            return Err(invalid(&key, format!("expected a string, got {value}")));
        };
        if given.trim().is_empty() {
            return Ok(None);
        }
        match choices.iter().find(|(text, _)| text == given) {
            Some(&(_, choice)) => Ok(Some(choice)),
            None => {
                let names: Vec<&str> = choices.iter().map(|(text, _)| *text).collect();
                Err(invalid(&key, format!("\"{given}\" is not one of {}", names.join(", "))))
            }
        }
    }

    /// A list of strings, or one string as a list of one.
    fn texts(&mut self, name: &'static str) -> Result<Vec<String>, RequestError> {
        let Some((key, value)) = self.take(name) else { return Ok(Vec::new()) };
        match value {
            Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
            Value::String(s) => Ok(vec![s]),
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    other => Err(invalid(&key, format!("expected a list of strings, got {other} in it"))),
                })
                .collect(),
            other => Err(invalid(&key, format!("expected a list of strings, got {other}"))),
        }
    }

    /// A list of numbers, or a string of comma-separated numbers.
    fn numbers(&mut self, name: &'static str) -> Result<Option<Vec<f64>>, RequestError> {
        let Some((key, value)) = self.take(name) else { return Ok(None) };
        let items: Vec<Value> = match value {
            Value::String(s) if s.trim().is_empty() => return Ok(None),
            Value::String(s) => {
                s.split(',').filter(|t| !t.trim().is_empty()).map(|t| Value::String(t.into())).collect()
            }
            Value::Array(items) => items,
            number @ Value::Number(_) => vec![number],
            other => return Err(invalid(&key, format!("expected a list of numbers, got {other}"))),
        };
        let parsed =
            items.iter().map(|item| loose_number(item).ok_or_else(|| invalid(&key, format!("{item} is not a number"))));
        Ok(Some(parsed.collect::<Result<_, _>>()?))
    }

    /// One seed, a list, or upstream's comma-separated string.
    fn seed(&mut self) -> Result<Option<Seed>, RequestError> {
        let Some((key, value)) = self.take("seed") else { return Ok(None) };
        let one = |item: &Value| match loose_number(item) {
            Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => Ok(n as i64),
            _ => Err(invalid(&key, format!("{item} is not a whole number"))),
        };
        match &value {
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) if s.contains(',') => {
                // Upstream reads an empty entry as -1 (`core/generation/handler/task_utils.py:33`).
                let list = s
                    .split(',')
                    .map(str::trim)
                    .map(|t| if t.is_empty() { Ok(-1) } else { one(&Value::String(t.into())) })
                    .collect::<Result<_, _>>()?;
                Ok(Some(Seed::PerItem(list)))
            }
            Value::Array(items) => Ok(Some(Seed::PerItem(items.iter().map(one).collect::<Result<_, _>>()?))),
            _ => Ok(Some(Seed::One(one(&value)?))),
        }
    }

    fn build(mut self) -> Result<GenerationRequest, RequestError> {
        let tasks: Vec<(&str, TaskType)> = TaskType::ALL.iter().map(|t| (t.as_str(), *t)).collect();
        let methods = [("ode", InferMethod::Ode), ("sde", InferMethod::Sde)];
        let formats: Vec<(&str, AudioFormat)> = AudioFormat::ALL.iter().map(|f| (f.as_str(), *f)).collect();
        let repaint_modes = [
            ("aggressive", RepaintMode::Aggressive),
            ("balanced", RepaintMode::Balanced),
            ("conservative", RepaintMode::Conservative),
        ];
        let mask_modes = [("auto", ChunkMaskMode::Auto), ("explicit", ChunkMaskMode::Explicit)];
        let defaults = GenerationRequest::default();
        let request = GenerationRequest {
            task_type: self.choice("task_type", &tasks)?.unwrap_or(defaults.task_type),
            caption: self.text("caption")?.unwrap_or_default(),
            lyrics: self.text("lyrics")?.unwrap_or_default(),
            instrumental: self.boolean("instrumental")?.unwrap_or(defaults.instrumental),
            vocal_language: self.name("vocal_language")?,
            bpm: self.whole("bpm")?,
            keyscale: self.name("keyscale")?,
            timesignature: self.name("timesignature")?,
            duration: self.number_or_unset("duration")?,
            src_audio: self.name("src_audio")?,
            reference_audio: self.name("reference_audio")?,
            repainting_start: self.number("repainting_start")?.unwrap_or(defaults.repainting_start),
            repainting_end: self.number_or_unset("repainting_end")?,
            repaint_mode: self.choice("repaint_mode", &repaint_modes)?.unwrap_or(defaults.repaint_mode),
            repaint_strength: self.number("repaint_strength")?.unwrap_or(defaults.repaint_strength),
            chunk_mask_mode: self.choice("chunk_mask_mode", &mask_modes)?.unwrap_or(defaults.chunk_mask_mode),
            audio_cover_strength: self.number("audio_cover_strength")?.unwrap_or(defaults.audio_cover_strength),
            cover_noise_strength: self.number("cover_noise_strength")?.unwrap_or(defaults.cover_noise_strength),
            track_name: self.name("track_name")?,
            track_classes: self.texts("track_classes")?,
            inference_steps: self.whole("inference_steps")?,
            shift: self.number("shift")?,
            guidance_scale: self.number("guidance_scale")?,
            cfg_interval_start: self.number("cfg_interval_start")?.unwrap_or(defaults.cfg_interval_start),
            cfg_interval_end: self.number("cfg_interval_end")?.unwrap_or(defaults.cfg_interval_end),
            use_adg: self.boolean("use_adg")?.unwrap_or(defaults.use_adg),
            infer_method: self.choice("infer_method", &methods)?.unwrap_or(defaults.infer_method),
            timesteps: self.numbers("timesteps")?,
            seed: self.seed()?,
            use_random_seed: self.boolean("use_random_seed")?,
            batch_size: self.whole("batch_size")?,
            audio_format: self.choice("audio_format", &formats)?,
            instruction: self.name("instruction")?,
            model: self.name("model")?,
            thinking: self.boolean("thinking")?.unwrap_or(defaults.thinking),
            audio_code_string: self.name("audio_code_string")?,
            lm_temperature: self.number("lm_temperature")?.unwrap_or(defaults.lm_temperature),
            lm_cfg_scale: self.number("lm_cfg_scale")?.unwrap_or(defaults.lm_cfg_scale),
            lm_top_k: self.whole("lm_top_k")?.unwrap_or(defaults.lm_top_k),
            lm_top_p: self.number("lm_top_p")?.unwrap_or(defaults.lm_top_p),
            lm_repetition_penalty: self.number("lm_repetition_penalty")?.unwrap_or(defaults.lm_repetition_penalty),
            lm_negative_prompt: self.text("lm_negative_prompt")?.unwrap_or(defaults.lm_negative_prompt),
            use_cot_caption: self.boolean("use_cot_caption")?.unwrap_or(defaults.use_cot_caption),
            use_cot_language: self.boolean("use_cot_language")?.unwrap_or(defaults.use_cot_language),
            sample_query: self.name("sample_query")?,
            sample_mode: self.boolean("sample_mode")?.unwrap_or(defaults.sample_mode),
            use_format: self.boolean("use_format")?.unwrap_or(defaults.use_format),
        };
        debug_assert!(self.found.is_empty(), "fields listed but never read: {:?}", self.found.keys());
        Ok(request)
    }
}
