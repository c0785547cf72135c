//! One generation from request to audio: text encoding, the task's conditioning, sampling, VAE
//! decode, output levels, and the recipe (`model-spec.md` sections 3 to 5).
//!
//! [`Pipeline`] holds the three models (text encoder, DiT, VAE), loaded once, and a cache of
//! encoded source audio. It runs on the job engine's worker thread; progress and cancellation
//! go through the job's [`JobContext`].

pub mod recipe;
pub mod source;
pub mod task_inputs;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

use crate::audio::{AudioBuffer, AudioError, MODEL_SAMPLE_RATE};
use crate::checkpoint::{
    CheckpointError, DitFolder, TextEncoderFolder, VaeFolder, DIT_WEIGHTS, TEXT_ENCODER_FOLDER, TEXT_WEIGHTS,
    TURBO_FOLDER, VAE_FOLDER, VAE_WEIGHTS,
};
use crate::job::{JobContext, JobError};
use crate::model::acestep::{AceStepModel, Condition, SourceInputs};
use crate::model::condition::ConditionInputs;
use crate::model::dit::ConditionKv;
use crate::model::text_encoder::{pad_batch, PromptTokenizer, TextEncoder, CAPTION_MAX_TOKENS, LYRIC_MAX_TOKENS};
use crate::model::vae::Vae;
use crate::prompt::PromptInputs;
use crate::request::{GenerationRequest, ModelKind, RequestError, ResolvedRequest};
use crate::sampling::{
    base_schedule, schedule, turbo_schedule, Guidance, GuidanceMethod, Method, Prediction, RunInputs,
    SamplerConfig, SamplerKind, SeededNoise, Start,
};
use crate::task::TaskType;
use recipe::{ModelFile, Recipe};
use source::LatentCache;
use task_inputs::TaskInputs;

/// Latent frames per second: 48 kHz audio over the VAE's hop of 1920 samples.
pub const FRAMES_PER_SECOND: f64 = 25.0;
/// Upstream's CPU tile for the VAE decode (`vae_decode.py`), and the overlap on each side.
const DECODE_CHUNK_FRAMES: usize = 256;
const DECODE_OVERLAP_FRAMES: usize = 64;
/// Encoded inputs kept for repeated edits of the same capture.
const LATENT_CACHE_ENTRIES: usize = 8;

/// Why a generation did not produce audio.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Audio or latents the model cannot use: empty or silent audio, NaN in the latents.
    #[error("{0}")]
    Input(String),
    #[error("{stage} failed: {message}")]
    Model { stage: &'static str, message: String },
    #[error("cancelled")]
    Cancelled,
}

impl From<PipelineError> for JobError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Cancelled => JobError::Cancelled,
            e => JobError::failed(e),
        }
    }
}

/// Where the models live and what to run them on.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// The checkpoints folder: `acestep-v15-*/`, `vae/`, `Qwen3-Embedding-0.6B/`.
    pub checkpoints: PathBuf,
    /// The DiT folder's name inside it, e.g. `acestep-v15-base`.
    pub model: String,
    pub device: Device,
    pub dtype: DType,
}

impl PipelineOptions {
    /// The turbo model on the CPU in float32.
    pub fn cpu(checkpoints: impl Into<PathBuf>) -> Self {
        Self { checkpoints: checkpoints.into(), model: TURBO_FOLDER.into(), device: Device::Cpu, dtype: DType::F32 }
    }
}

/// One finished generation: an [`AudioBuffer`] (48 kHz stereo) per batch item, and its recipe.
#[derive(Debug, Clone)]
pub struct Generation {
    pub audio: Vec<AudioBuffer>,
    pub recipe: Recipe,
}

/// The resident models and the encoded-input cache.
pub struct Pipeline {
    device: Device,
    dtype: DType,
    kind: ModelKind,
    dit: AceStepModel,
    /// (1, S, 64): what the model reads as "no audio here".
    silence: Tensor,
    vae: Vae,
    text_encoder: TextEncoder,
    tokenizer: PromptTokenizer,
    models: Vec<ModelFile>,
    latents: LatentCache,
}

/// Map a candle error from `stage` into a pipeline error, unless the job was cancelled (the
/// sampler's callbacks stop it with an error).
fn model_error<'a>(stage: &'static str, ctx: &'a JobContext<'a>) -> impl Fn(candle_core::Error) -> PipelineError + 'a {
    move |e| if ctx.is_cancelled() { PipelineError::Cancelled } else { PipelineError::Model { stage, message: e.to_string() } }
}

impl Pipeline {
    /// Load the text encoder, the DiT named in `options` and the VAE, reporting each to `ctx`.
    pub fn load(options: &PipelineOptions, ctx: &JobContext) -> Result<Self, PipelineError> {
        let root = &options.checkpoints;
        let (device, dtype) = (&options.device, options.dtype);
        let mut models = Vec::new();
        let mut record = |folder: &str, file: &str| -> Result<(), PipelineError> {
            let path = root.join(folder).join(file);
            let (bytes, fingerprint) = recipe::fingerprint(&path).map_err(|e| CheckpointError::io(&path, e))?;
            models.push(ModelFile { folder: folder.into(), file: file.into(), bytes, fingerprint });
            Ok(())
        };

        ctx.loading(&options.model);
        let dit_folder = DitFolder::open(&root.join(&options.model))?;
        let kind = dit_folder.model_kind();
        let dit = dit_folder.load(dtype, device)?;
        record(&options.model, DIT_WEIGHTS)?;
        ctx.check_cancelled().map_err(|_| PipelineError::Cancelled)?;

        ctx.loading(VAE_FOLDER);
        let vae = VaeFolder::open(&root.join(VAE_FOLDER))?.load(dtype, device)?;
        record(VAE_FOLDER, VAE_WEIGHTS)?;
        ctx.check_cancelled().map_err(|_| PipelineError::Cancelled)?;

        ctx.loading(TEXT_ENCODER_FOLDER);
        let (text_encoder, tokenizer) = TextEncoderFolder::open(&root.join(TEXT_ENCODER_FOLDER))?.load(dtype, device)?;
        record(TEXT_ENCODER_FOLDER, TEXT_WEIGHTS)?;

        Ok(Self {
            device: device.clone(),
            dtype,
            kind,
            dit: dit.model,
            silence: dit.silence_latent,
            vae,
            text_encoder,
            tokenizer,
            models,
            latents: LatentCache::new(LATENT_CACHE_ENTRIES),
        })
    }

    pub fn model_kind(&self) -> ModelKind {
        self.kind
    }

    /// Run one request.
    pub fn generate(&mut self, request: &GenerationRequest, ctx: &JobContext) -> Result<Generation, PipelineError> {
        let resolved = request.resolve(self.kind)?;
        let batch = resolved.batch_size();

        ctx.stage("audio");
        let inputs = TaskInputs::prepare(self, &resolved, ctx)?;
        let frames = inputs.frames;

        ctx.stage("text");
        let prompt = inputs.prompt.clone();
        let (lyrics, lyric_mask) = self.lyric_embeddings(&prompt, batch).map_err(model_error("lyric embedding", ctx))?;
        let caption = self.caption_states(&prompt.caption_prompt(), batch).map_err(model_error("text encoder", ctx))?;
        let switches = resolved.task_type == TaskType::Cover && resolved.audio_cover_strength < 1.0;
        let non_cover_caption = if switches {
            Some(self.caption_states(&prompt.non_cover_caption_prompt(), batch).map_err(model_error("text encoder", ctx))?)
        } else {
            None
        };

        ctx.stage("condition");
        let texts = Texts { caption: &caption, non_cover_caption: non_cover_caption.as_ref(), lyrics: &lyrics, lyric_mask: &lyric_mask };
        let (main, text2music) = self.conditions(&inputs, &texts, batch).map_err(model_error("condition encoder", ctx))?;

        ctx.stage("diffusion");
        let latents = self.sample(&resolved, &inputs, &main, text2music.as_ref(), ctx)?;

        ctx.stage("decode");
        let audio = self.decode(&latents, &inputs, ctx)?;

        let recipe = Recipe {
            request: resolved.recipe.clone(),
            model_kind: self.kind.to_string(),
            models: self.models.clone(),
            seeds: resolved.seeds.clone(),
            source: inputs.source.as_ref().map(|s| s.record.clone()),
            reference: inputs.reference.as_ref().map(|r| r.record.clone()),
            sample_rate: MODEL_SAMPLE_RATE,
            duration_s: frames as f64 / FRAMES_PER_SECOND,
            engine: format!("backline-engine {}", env!("CARGO_PKG_VERSION")),
        };
        Ok(Generation { audio, recipe })
    }

    /// The condition of the task and, for a cover that switches part-way, text2music's: the
    /// text2music instruction's caption with silence as the source.
    fn conditions(&self, inputs: &TaskInputs, texts: &Texts, batch: usize) -> candle_core::Result<(Condition, Option<Condition>)> {
        let clip_item: Vec<usize> = (0..batch).collect();
        let clips = match &inputs.reference {
            Some(r) => r.latents.repeat((batch, 1, 1))?,
            None => self.silence_frames(REFERENCE_FRAMES, batch)?,
        };
        let condition_for = |caption: &(Tensor, Tensor), source: &SourceInputs| {
            let inputs = ConditionInputs {
                text: &caption.0,
                text_mask: &caption.1,
                lyrics: texts.lyrics,
                lyric_mask: texts.lyric_mask,
                reference_clips: &clips,
                clip_item: &clip_item,
            };
            self.dit.prepare_condition(&inputs, source)
        };
        let is_cover = vec![inputs.is_cover; batch];
        let source = SourceInputs {
            latents: &inputs.context_source,
            chunk_mask: &inputs.chunk_mask,
            is_cover: &is_cover,
            silence: &self.silence,
        };
        let main = condition_for(texts.caption, &source)?;
        let text2music = match texts.non_cover_caption {
            Some(caption) => {
                let silence = self.silence_frames(inputs.frames, batch)?;
                let plain = SourceInputs {
                    latents: &silence,
                    chunk_mask: &silence.ones_like()?,
                    is_cover: &vec![false; batch],
                    silence: &self.silence,
                };
                Some(condition_for(caption, &plain)?)
            }
            None => None,
        };
        Ok((main, text2music))
    }

    /// Caption prompt → the text encoder's last hidden state, repeated over the batch, with its mask.
    fn caption_states(&self, prompt: &str, batch: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let ids = self.tokenizer.encode(prompt, CAPTION_MAX_TOKENS)?;
        let (ids, mask) = pad_batch(&[ids], self.tokenizer.pad_id(), &self.device)?;
        let states = self.text_encoder.encode(&ids)?.to_dtype(self.dtype)?;
        Ok((states.repeat((batch, 1, 1))?, mask.to_dtype(self.dtype)?.repeat((batch, 1))?))
    }

    /// Lyric prompt → token embeddings (no transformer layers, as upstream), repeated over the batch.
    fn lyric_embeddings(&self, prompt: &PromptInputs, batch: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let ids = self.tokenizer.encode(&prompt.lyric_prompt(), LYRIC_MAX_TOKENS)?;
        let (ids, mask) = pad_batch(&[ids], self.tokenizer.pad_id(), &self.device)?;
        let embeds = self.text_encoder.embed(&ids)?.to_dtype(self.dtype)?;
        Ok((embeds.repeat((batch, 1, 1))?, mask.to_dtype(self.dtype)?.repeat((batch, 1))?))
    }

    /// The silence latent's first `frames` frames for each batch item (repeated if the model's
    /// silence is shorter).
    fn silence_frames(&self, frames: usize, batch: usize) -> candle_core::Result<Tensor> {
        let stored = self.silence.dim(1)?;
        let silence = if frames <= stored {
            self.silence.narrow(1, 0, frames)?
        } else {
            self.silence.repeat((1, frames.div_ceil(stored), 1))?.narrow(1, 0, frames)?
        };
        silence.repeat((batch, 1, 1))
    }

    fn sampler_config(&self, resolved: &ResolvedRequest) -> SamplerConfig {
        let s = &resolved.sampling;
        let (kind, timesteps) = match (self.kind, &s.timesteps) {
            (ModelKind::Turbo, Some(t)) => (SamplerKind::Turbo, schedule::turbo_custom_schedule(t)),
            (ModelKind::Turbo, None) => (SamplerKind::Turbo, turbo_schedule(s.steps as usize, s.shift)),
            (_, Some(t)) => (SamplerKind::Base, schedule::base_custom_schedule(t)),
            (_, None) => (SamplerKind::Base, base_schedule(s.steps as usize, s.shift)),
        };
        let guidance = (s.guidance_scale > 1.0).then_some(Guidance {
            scale: s.guidance_scale,
            method: if s.use_adg { GuidanceMethod::Adg } else { GuidanceMethod::Apg },
            interval: (s.cfg_interval_start, s.cfg_interval_end),
        });
        let method = match s.infer_method {
            crate::request::InferMethod::Ode => Method::Ode,
            crate::request::InferMethod::Sde => Method::Sde,
        };
        let audio_cover_strength = if resolved.task_type == TaskType::Cover { resolved.audio_cover_strength } else { 1.0 };
        SamplerConfig { kind, timesteps, method, guidance, audio_cover_strength }
    }

    /// A condition's cross-attention K/V, and the null condition's when the run is guided.
    fn condition_kvs(&self, condition: &Condition, guided: bool) -> candle_core::Result<(ConditionKv, Option<ConditionKv>)> {
        let kv = self.dit.condition_kv(&condition.states)?;
        let null = if guided { Some(self.dit.condition_kv(&self.dit.null_condition(&condition.states)?)?) } else { None };
        Ok((kv, null))
    }

    fn sample(
        &self,
        resolved: &ResolvedRequest,
        inputs: &TaskInputs,
        main: &Condition,
        text2music: Option<&Condition>,
        ctx: &JobContext,
    ) -> Result<Tensor, PipelineError> {
        let fail = model_error("diffusion", ctx);
        let config = self.sampler_config(resolved);
        let guided = config.guidance.is_some();
        let (kv, null_kv) = self.condition_kvs(main, guided).map_err(&fail)?;
        let switched = match text2music {
            Some(c) => {
                let (kv, null) = self.condition_kvs(c, guided).map_err(&fail)?;
                Some((c, kv, null))
            }
            None => None,
        };

        let mut noise = SeededNoise::new(&resolved.seeds);
        let channels = self.silence.dim(2).map_err(&fail)?;
        let initial = noise.draw(inputs.frames, channels, &self.device).map_err(&fail)?.to_dtype(self.dtype).map_err(&fail)?;
        let start = match &inputs.source {
            Some(s) if resolved.task_type == TaskType::Cover && resolved.cover_noise_strength > 0.0 => {
                Start::Source { latents: &s.latents_batch, cover_noise_strength: resolved.cover_noise_strength }
            }
            _ => Start::Noise,
        };
        let run = RunInputs { noise: initial, start, repaint: inputs.repaint.as_ref(), fresh_noise: &mut noise };
        let latents = config
            .run(
                run,
                |step| {
                    let (context, kv, null_kv) = match (&switched, step.cover) {
                        (Some((c, kv, null)), false) => (&c.context, kv, null.as_ref()),
                        _ => (&main.context, &kv, null_kv.as_ref()),
                    };
                    let t = Tensor::full(step.t, step.x.dim(0)?, &self.device)?.to_dtype(self.dtype)?;
                    let cond = self.dit.decoder.forward(step.x, &t, &t, context, kv)?;
                    let uncond = match (step.guided, null_kv) {
                        (true, Some(null)) => Some(self.dit.decoder.forward(step.x, &t, &t, context, null)?),
                        _ => None,
                    };
                    Ok(Prediction { cond, uncond })
                },
                |step| {
                    ctx.step(step.index, step.count);
                    ctx.check_cancelled().map_err(|e| candle_core::Error::msg(e.to_string()))
                },
            )
            .map_err(&fail)?;
        check_finite(&latents, "the sampled latents")?;
        Ok(latents)
    }

    /// Latents → audio per item: tiled VAE decode (checking for cancel between tiles), the
    /// repaint waveform splice, then upstream's output levels (peak cap, −1 dBFS).
    fn decode(&self, latents: &Tensor, inputs: &TaskInputs, ctx: &JobContext) -> Result<Vec<AudioBuffer>, PipelineError> {
        let fail = model_error("VAE decode", ctx);
        let latents = latents.transpose(1, 2).map_err(&fail)?.contiguous().map_err(&fail)?;
        let batch = latents.dim(0).map_err(&fail)?;
        let mut out = Vec::with_capacity(batch);
        for item in 0..batch {
            let one = latents.narrow(0, item, 1).map_err(&fail)?;
            let wave = self
                .vae
                .decode_tiles(&one, DECODE_CHUNK_FRAMES, DECODE_OVERLAP_FRAMES, |_, _| {
                    ctx.check_cancelled().map_err(|e| candle_core::Error::msg(e.to_string()))
                })
                .map_err(&fail)?;
            let wave = wave.squeeze(0).map_err(&fail)?.to_dtype(DType::F32).map_err(&fail)?;
            let mut audio = AudioBuffer::new(MODEL_SAMPLE_RATE, wave.to_vec2::<f32>().map_err(&fail)?);
            if audio.channels.iter().flatten().any(|v| !v.is_finite()) {
                return Err(PipelineError::Input("the decoded audio holds NaN or infinite samples".into()));
            }
            if let Some(splice) = &inputs.splice {
                splice.apply(&mut audio);
            }
            audio.normalize_output();
            out.push(audio);
        }
        Ok(out)
    }
}

/// The encoded prompts, each `[batch, tokens, hidden]` with its `[batch, tokens]` mask.
struct Texts<'a> {
    caption: &'a (Tensor, Tensor),
    non_cover_caption: Option<&'a (Tensor, Tensor)>,
    lyrics: &'a Tensor,
    lyric_mask: &'a Tensor,
}

/// Frames of reference latents the timbre encoder takes (30 s).
const REFERENCE_FRAMES: usize = source::REFERENCE_SECONDS * FRAMES_PER_SECOND as usize;

/// Refuse NaN or infinite latents with an error naming what held them.
fn check_finite(t: &Tensor, what: &str) -> Result<(), PipelineError> {
    let finite = t
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map(|v| v.iter().all(|x| x.is_finite()))
        .map_err(|e| PipelineError::Model { stage: "check", message: e.to_string() })?;
    if finite {
        Ok(())
    } else {
        Err(PipelineError::Input(format!("{what} hold NaN or infinite values")))
    }
}

/// The pipeline as the job engine's worker: the models load on the first job (reported as
/// `Loading` events, cancellable between models) and stay resident for the next.
pub struct PipelineWorker {
    options: PipelineOptions,
    pipeline: Option<Pipeline>,
}

impl PipelineWorker {
    pub fn new(options: PipelineOptions) -> Self {
        Self { options, pipeline: None }
    }
}

impl crate::job::Worker for PipelineWorker {
    type Request = GenerationRequest;
    type Output = Generation;

    fn run(&mut self, request: GenerationRequest, ctx: &JobContext<'_>) -> Result<Generation, JobError> {
        let pipeline = match &mut self.pipeline {
            Some(p) => p,
            None => self.pipeline.insert(Pipeline::load(&self.options, ctx)?),
        };
        Ok(pipeline.generate(&request, ctx)?)
    }
}
