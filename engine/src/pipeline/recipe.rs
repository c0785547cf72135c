//! The recipe written beside every result: enough to make the same audio again (the resolved
//! request with its seeds, which model files, which source), and to tell two results apart.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audio::analysis::TakeAnalysis;
use crate::audio::take_shape::GridReport;
use crate::precision::Precision;
use crate::request::{GenerationRequest, Seed};
use crate::task::{ChunkMaskMode, ModelKind};

/// One model file the result came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFile {
    /// The checkpoint folder's name, e.g. `acestep-v15-turbo`.
    pub folder: String,
    pub file: String,
    pub bytes: u64,
    /// See [`fingerprint`].
    pub fingerprint: String,
}

/// An audio input the result came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioInput {
    /// The file's path, or the label of samples given in memory.
    pub path: String,
    /// SHA-256 of the 48 kHz stereo samples the model saw (after conversion and padding).
    pub audio_sha256: String,
    /// SHA-256 of the VAE latents it encoded to.
    pub latents_sha256: String,
}

/// Everything that decided one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The request with every default filled in and the seeds made explicit: submitting it again
    /// with the same models gives the same audio.
    #[serde(deserialize_with = "request_of_any_age")]
    pub request: GenerationRequest,
    pub model_kind: ModelKind,
    /// The DiT's weight file, then the VAE's and the text encoder's.
    pub models: Vec<ModelFile>,
    pub source: Option<AudioInput>,
    pub reference: Option<AudioInput>,
    pub sample_rate: u32,
    /// Seconds of audio per item.
    pub duration_s: f64,
    pub engine: String,
    /// How the CPU held the Linear weights (`crate::precision`): another precision gives other
    /// samples (bf16 gives f32's). Recipes from before the choice have none: they ran in f32.
    #[serde(default = "full_precision")]
    pub precision: Precision,
    /// Seconds per stage, under upstream's `time_costs` names (`dit_encoder_time_cost`,
    /// `dit_diffusion_time_cost`, `dit_vae_decode_time_cost`, `dit_total_time_cost`, ...).
    /// Facts about one run, not part of what makes the audio.
    #[serde(default)]
    pub time_costs: BTreeMap<String, f64>,
    /// One take measured against its request (tempo, phase, key): filled in where a single
    /// item's recipe is written, absent from a batch's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<TakeAnalysis>,
    /// How a take planned in bars was cut, conformed, aligned and looped (`audio::take_shape`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<GridReport>,
    /// What the 5 Hz LM chose, when the request asked it to plan (`thinking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lm: Option<LmReport>,
    /// What the 5 Hz LM wrote in place of the request's text and metas, when the request asked
    /// for sample mode or format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<RewriteReport>,
}

/// The request as the 5 Hz LM's sample mode or format left it: the caption, lyrics and metas
/// the job ran with (upstream's `create_sample` / `format_sample` results), and what else it
/// wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewriteReport {
    pub model: ModelFile,
    /// `sample`, `format`, or both, in the order they ran.
    pub modes: Vec<String>,
    pub caption: String,
    pub lyrics: String,
    pub bpm: Option<u32>,
    pub keyscale: Option<String>,
    pub timesignature: Option<String>,
    pub duration: Option<f64>,
    /// The language and genres it wrote (the DiT reads neither from here).
    pub language: Option<String>,
    pub genres: Option<String>,
}

/// The 5 Hz LM's part of a generation: the model, the plan it followed (as the chain of thought
/// it was prompted with) and the audio codes it wrote, one string per item, as upstream's result
/// carries them (`audio_codes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmReport {
    pub model: ModelFile,
    pub chain_of_thought: String,
    pub audio_codes: Vec<String>,
    /// Tokens generated per second, both guidance rows counted once (a fact of the run).
    pub tokens_per_second: f64,
}

fn full_precision() -> Precision {
    Precision::F32
}

/// A stored request. Recipes from before `chunk_mask_mode` have none: those jobs sent the
/// explicit mask, while a request without the key now means upstream's auto.
fn request_of_any_age<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<GenerationRequest, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    let before_the_choice = value.get("chunk_mask_mode").is_none();
    let mut request = GenerationRequest::from_value(value).map_err(serde::de::Error::custom)?;
    if before_the_choice {
        request.chunk_mask_mode = ChunkMaskMode::Explicit;
    }
    Ok(request)
}

/// The bpm, key and time signature a generation ran with: the request's, else (where it left
/// them open) the ones the 5 Hz LM's plan chose.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetasUsed {
    pub bpm: Option<u32>,
    pub keyscale: Option<String>,
    pub timesignature: Option<String>,
}

impl Recipe {
    /// The metas the job ran with: the LM's rewrite's (sample mode, format), else the request's,
    /// else, where those left them open, the plan's.
    pub fn metas_used(&self) -> MetasUsed {
        let r = &self.request;
        let (bpm, keyscale, timesignature) = match &self.rewritten {
            Some(w) => (w.bpm, w.keyscale.clone(), w.timesignature.clone()),
            None => (r.bpm, r.keyscale.clone(), r.timesignature.clone()),
        };
        let plan = self.lm.as_ref().map(|lm| crate::lm::plan::Plan::parse(&lm.chain_of_thought)).unwrap_or_default();
        let text = |asked: Option<String>, planned: Option<String>| asked.filter(|v| !v.is_empty()).or(planned);
        MetasUsed {
            bpm: bpm.or_else(|| plan.bpm.as_ref().and_then(|b| b.as_int()).and_then(|b| u32::try_from(b).ok())),
            keyscale: text(keyscale, plan.keyscale),
            timesignature: text(timesignature, plan.timesignature),
        }
    }

    /// The seed of each batch item, in order (the request records them).
    pub fn seeds(&self) -> Vec<u32> {
        match &self.request.seed {
            Some(Seed::PerItem(list)) => list.iter().map(|&s| s as u32).collect(),
            Some(Seed::One(s)) => vec![*s as u32],
            None => Vec::new(),
        }
    }
}

/// A quick identity of a model file: SHA-256 over its length, its first MiB (the safetensors
/// header) and 64 KiB at 64 evenly spaced offsets. Hashing every byte of a 4.8 GB DiT at each
/// load would cost seconds; samples through the whole file still tell fine-tunes of one
/// architecture apart, whose headers are identical.
pub fn fingerprint(path: &Path) -> std::io::Result<(u64, String)> {
    const HEAD: u64 = 1 << 20;
    const SAMPLE: u64 = 64 << 10;
    const SAMPLES: u64 = 64;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = Sha256::new();
    hasher.update(len.to_le_bytes());
    let mut buf = Vec::new();
    let mut read_at = |offset: u64, size: u64, hasher: &mut Sha256| -> std::io::Result<()> {
        buf.resize(size.min(len.saturating_sub(offset)) as usize, 0);
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut buf)?;
        hasher.update(&buf);
        Ok(())
    };
    read_at(0, HEAD, &mut hasher)?;
    if len > HEAD {
        for i in 0..SAMPLES {
            read_at(HEAD + (len - HEAD) * i / SAMPLES, SAMPLE, &mut hasher)?;
        }
    }
    Ok((len, hex(&hasher.finalize())))
}

/// SHA-256 of f32 samples (little-endian bytes), channel after channel.
pub fn samples_sha256<'a>(channels: impl IntoIterator<Item = &'a [f32]>) -> String {
    let mut hasher = Sha256::new();
    for channel in channels {
        for v in channel {
            hasher.update(v.to_le_bytes());
        }
    }
    hex(&hasher.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metas_used_are_the_requests_else_the_lms_plan() {
        let request = GenerationRequest { bpm: Some(90), ..Default::default() };
        let mut planned = recipe(request, Precision::F32);
        assert_eq!(planned.metas_used(), MetasUsed { bpm: Some(90), ..Default::default() });
        planned.lm = Some(LmReport {
            model: ModelFile { folder: "acestep-5Hz-lm-0.6B".into(), file: "model.safetensors".into(), bytes: 1, fingerprint: "f".into() },
            chain_of_thought: "<think>\nbpm: 120\nduration: 10\nkeyscale: A# minor\ntimesignature: 3\n</think>".into(),
            audio_codes: Vec::new(),
            tokens_per_second: 1.0,
        });
        let used = planned.metas_used();
        assert_eq!((used.bpm, used.keyscale.as_deref(), used.timesignature.as_deref()), (Some(90), Some("A# minor"), Some("3")));
    }

    fn recipe(request: GenerationRequest, precision: Precision) -> Recipe {
        Recipe {
            request,
            model_kind: ModelKind::Turbo,
            models: Vec::new(),
            source: None,
            reference: None,
            sample_rate: 48_000,
            duration_s: 10.0,
            engine: "backline-engine".into(),
            precision,
            time_costs: BTreeMap::new(),
            analysis: None,
            grid: None,
            lm: None,
            rewritten: None,
        }
    }

    #[test]
    fn fingerprint_sees_a_change_deep_inside_the_file() {
        let dir = std::env::temp_dir().join(format!("backline-fingerprint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weights.bin");
        let mut data = vec![7u8; 5 << 20];
        std::fs::write(&path, &data).unwrap();
        let (len, a) = fingerprint(&path).unwrap();
        assert_eq!(len, 5 << 20);
        assert_eq!(fingerprint(&path).unwrap().1, a, "deterministic");
        // A byte at a sampled offset past the header (the 10th of 64 samples) changes it.
        let offset = (1 << 20) + ((5 << 20) - (1 << 20)) * 10 / 64 + 5;
        data[offset as usize] = 8;
        std::fs::write(&path, &data).unwrap();
        assert_ne!(fingerprint(&path).unwrap().1, a);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_recipe_from_before_the_chunk_mask_choice_reads_as_explicit() {
        let request = GenerationRequest::from_value(serde_json::json!({"task_type": "repaint"})).unwrap();
        let recipe = recipe(request, Precision::F32);
        let mut json = serde_json::to_value(&recipe).unwrap();
        assert_eq!(json["request"]["chunk_mask_mode"], "auto");
        assert_eq!(serde_json::from_value::<Recipe>(json.clone()).unwrap(), recipe);
        json["request"].as_object_mut().unwrap().remove("chunk_mask_mode");
        let old: Recipe = serde_json::from_value(json).unwrap();
        assert_eq!(old.request.chunk_mask_mode, ChunkMaskMode::Explicit);
    }

    #[test]
    fn a_recipe_from_before_the_precision_choice_reads_as_f32() {
        let request = GenerationRequest::from_value(serde_json::json!({"caption": "x"})).unwrap();
        let recipe = recipe(request, Precision::Q8);
        let mut json = serde_json::to_value(&recipe).unwrap();
        assert_eq!(json["precision"], "q8");
        json.as_object_mut().unwrap().remove("precision");
        let old: Recipe = serde_json::from_value(json).unwrap();
        assert_eq!(old.precision, Precision::F32);
    }
}
