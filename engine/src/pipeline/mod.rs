//! One generation from an admitted job to audio: VAE encode of the inputs, text encoding, the
//! task's conditioning, sampling, VAE decode, output levels, and the recipe (`model-spec.md`
//! sections 3 to 5).
//!
//! A [`Pipeline`] is the resident models one job runs on (a DiT and its folder's shared text
//! encoder and VAE, from the model store), so it holds nothing between jobs but `Arc`s. The job
//! has passed the pre-flight (`backend::admit`): the pipeline checks none of it again. Progress
//! and cancellation go through the job's [`JobContext`]; every stage's errors map to one
//! [`JobError`] naming the stage.

pub mod recipe;
pub mod source;
pub mod task_inputs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use crate::audio::{AudioBuffer, MODEL_SAMPLE_RATE};
use crate::backend::Admitted;
use crate::error::JobError;
use crate::model::acestep::{Condition, SourceInputs};
use crate::model::condition::ConditionInputs;
use crate::model::dit::ConditionKv;
use crate::model::text_encoder::{pad_batch, CAPTION_MAX_TOKENS, LYRIC_MAX_TOKENS};
use crate::progress::{JobContext, StopSignal};
use crate::prompt::PromptInputs;
use crate::request::{ModelKind, ResolvedRequest};
use crate::sampling::{
    base_schedule, schedule, turbo_schedule, Guidance, GuidanceMethod, Prediction, RunInputs, SamplerConfig,
    SamplerKind, SeededNoise, Start,
};
use crate::store::{ResidentDit, SharedModels};
use crate::task::TaskType;
use crate::timing::LATENT_FRAMES_PER_SECOND;
use recipe::Recipe;
use source::LatentCache;
use task_inputs::TaskInputs;

/// Upstream's CPU tile for the VAE decode (`vae_decode.py`), and the overlap on each side.
const DECODE_CHUNK_FRAMES: usize = 256;
const DECODE_OVERLAP_FRAMES: usize = 64;
/// Encoded inputs kept for repeated edits of the same capture.
pub const LATENT_CACHE_ENTRIES: usize = 8;

/// One finished generation: an [`AudioBuffer`] (48 kHz stereo) per batch item, and its recipe.
#[derive(Debug, Clone)]
pub struct Generation {
    pub audio: Vec<AudioBuffer>,
    pub recipe: Recipe,
}

/// The models one job runs on.
pub struct Pipeline {
    device: Device,
    dtype: DType,
    dit: Arc<ResidentDit>,
    shared: Arc<SharedModels>,
}

/// Seconds spent per stage, under upstream's `time_costs` names (`inference.py` prefixes the
/// DiT handler's keys with `dit_`); `vae_encode` and `text_encoder` are Backline's own stages.
struct StageClock {
    started: Instant,
    costs: BTreeMap<String, f64>,
}

impl StageClock {
    fn start() -> Self {
        Self { started: Instant::now(), costs: BTreeMap::new() }
    }

    /// Runs `stage` and records its seconds under `key`.
    fn time<T>(&mut self, key: &str, stage: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = stage();
        self.costs.insert(key.to_string(), start.elapsed().as_secs_f64());
        out
    }
}

impl Pipeline {
    pub fn new(dit: Arc<ResidentDit>, shared: Arc<SharedModels>, device: Device, dtype: DType) -> Self {
        Self { device, dtype, dit, shared }
    }

    pub fn model_kind(&self) -> ModelKind {
        self.dit.kind
    }

    /// Runs one admitted job. `latents` caches encoded inputs between jobs.
    pub fn generate(&self, job: &Admitted, latents: &mut LatentCache, ctx: &JobContext) -> Result<Generation, JobError> {
        let resolved = &job.resolved;
        let batch = resolved.batch_size();
        let mut clock = StageClock::start();

        if job.source.is_some() || job.reference.is_some() {
            ctx.stage("encode");
        }
        let inputs = clock.time("dit_vae_encode_time_cost", || TaskInputs::prepare(self, job, latents, ctx))?;
        if job.source.is_none() && job.reference.is_none() {
            clock.costs.clear(); // nothing was encoded
        }
        let frames = inputs.frames;

        ctx.stage("text");
        let text_stage = |clock: &mut StageClock| -> candle_core::Result<(Tensor, Tensor, (Tensor, Tensor), Option<(Tensor, Tensor)>)> {
            clock.time("dit_text_encoder_time_cost", || {
                let prompt = PromptInputs::new(&resolved.recipe).with_duration(inputs.prompt_duration);
                let (lyrics, lyric_mask) = self.lyric_embeddings(&prompt, batch)?;
                let caption = self.caption_states(&prompt.caption_prompt(), batch)?;
                let switches = resolved.task_type == TaskType::Cover && resolved.audio_cover_strength < 1.0;
                let non_cover = if switches { Some(self.caption_states(&prompt.non_cover_caption_prompt(), batch)?) } else { None };
                Ok((lyrics, lyric_mask, caption, non_cover))
            })
        };
        let (lyrics, lyric_mask, caption, non_cover_caption) = text_stage(&mut clock).map_err(|e| JobError::model("text encoder", e))?;
        ctx.check_cancelled()?;

        ctx.stage("condition");
        let texts = Texts { caption: &caption, non_cover_caption: non_cover_caption.as_ref(), lyrics: &lyrics, lyric_mask: &lyric_mask };
        let (main, text2music) = clock
            .time("dit_encoder_time_cost", || self.conditions(&inputs, &texts, batch))
            .map_err(|e| JobError::model("condition encoder", e))?;
        ctx.check_cancelled()?;

        ctx.stage("diffusion");
        let (latents_out, steps) = clock.time("dit_diffusion_time_cost", || self.sample(resolved, &inputs, &main, text2music.as_ref(), ctx))?;
        let per_step = clock.costs["dit_diffusion_time_cost"] / steps.max(1) as f64;
        clock.costs.insert("dit_diffusion_per_step_time_cost".into(), per_step);

        ctx.stage("decode");
        let audio = clock.time("dit_vae_decode_time_cost", || self.decode(&latents_out, &inputs, ctx))?;
        let total = clock.started.elapsed().as_secs_f64();
        clock.costs.insert("dit_total_time_cost".into(), total);

        let mut models = vec![self.dit.file.clone()];
        models.extend(self.shared.files.iter().cloned());
        let recipe = Recipe {
            request: resolved.recipe.clone(),
            model_kind: self.dit.kind,
            models,
            source: inputs.source.as_ref().map(|s| s.record.clone()),
            reference: inputs.reference.as_ref().map(|r| r.record.clone()),
            sample_rate: MODEL_SAMPLE_RATE,
            duration_s: frames as f64 / LATENT_FRAMES_PER_SECOND,
            engine: format!("backline-engine {}", env!("CARGO_PKG_VERSION")),
            time_costs: clock.costs,
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
            self.dit.model.prepare_condition(&inputs, source)
        };
        let is_cover = vec![inputs.is_cover; batch];
        let source = SourceInputs {
            latents: &inputs.context_source,
            chunk_mask: &inputs.chunk_mask,
            is_cover: &is_cover,
            silence: &self.dit.silence,
        };
        let main = condition_for(texts.caption, &source)?;
        let text2music = match texts.non_cover_caption {
            Some(caption) => {
                let silence = self.silence_frames(inputs.frames, batch)?;
                let plain = SourceInputs {
                    latents: &silence,
                    chunk_mask: &silence.ones_like()?,
                    is_cover: &vec![false; batch],
                    silence: &self.dit.silence,
                };
                Some(condition_for(caption, &plain)?)
            }
            None => None,
        };
        Ok((main, text2music))
    }

    /// Caption prompt → the text encoder's last hidden state, repeated over the batch, with its mask.
    fn caption_states(&self, prompt: &str, batch: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let ids = self.shared.tokenizer.encode(prompt, CAPTION_MAX_TOKENS)?;
        let (ids, mask) = pad_batch(&[ids], self.shared.tokenizer.pad_id(), &self.device)?;
        let states = self.shared.text_encoder.encode(&ids)?.to_dtype(self.dtype)?;
        Ok((states.repeat((batch, 1, 1))?, mask.to_dtype(self.dtype)?.repeat((batch, 1))?))
    }

    /// Lyric prompt → token embeddings (no transformer layers, as upstream), repeated over the batch.
    fn lyric_embeddings(&self, prompt: &PromptInputs, batch: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let ids = self.shared.tokenizer.encode(&prompt.lyric_prompt(), LYRIC_MAX_TOKENS)?;
        let (ids, mask) = pad_batch(&[ids], self.shared.tokenizer.pad_id(), &self.device)?;
        let embeds = self.shared.text_encoder.embed(&ids)?.to_dtype(self.dtype)?;
        Ok((embeds.repeat((batch, 1, 1))?, mask.to_dtype(self.dtype)?.repeat((batch, 1))?))
    }

    /// The silence latent's first `frames` frames for each batch item (repeated if the model's
    /// silence is shorter).
    fn silence_frames(&self, frames: usize, batch: usize) -> candle_core::Result<Tensor> {
        let stored = self.dit.silence.dim(1)?;
        let silence = if frames <= stored {
            self.dit.silence.narrow(1, 0, frames)?
        } else {
            self.dit.silence.repeat((1, frames.div_ceil(stored), 1))?.narrow(1, 0, frames)?
        };
        silence.repeat((batch, 1, 1))
    }

    fn sampler_config(&self, resolved: &ResolvedRequest) -> SamplerConfig {
        let s = &resolved.sampling;
        let (kind, timesteps) = match (self.dit.kind, &s.timesteps) {
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
        let audio_cover_strength = if resolved.task_type == TaskType::Cover { resolved.audio_cover_strength } else { 1.0 };
        SamplerConfig { kind, timesteps, method: s.infer_method, guidance, audio_cover_strength }
    }

    /// A condition's cross-attention K/V, and the null condition's when the run is guided.
    fn condition_kvs(&self, condition: &Condition, guided: bool) -> candle_core::Result<(ConditionKv, Option<ConditionKv>)> {
        let dit = &self.dit.model;
        let kv = dit.condition_kv(&condition.states)?;
        let null = if guided { Some(dit.condition_kv(&dit.null_condition(&condition.states)?)?) } else { None };
        Ok((kv, null))
    }

    /// The sampled latents and the number of steps run.
    fn sample(
        &self,
        resolved: &ResolvedRequest,
        inputs: &TaskInputs,
        main: &Condition,
        text2music: Option<&Condition>,
        ctx: &JobContext,
    ) -> Result<(Tensor, usize), JobError> {
        let fail = |e| JobError::model("diffusion", e);
        let config = self.sampler_config(resolved);
        let guided = config.guidance.is_some();
        let (kv, null_kv) = self.condition_kvs(main, guided).map_err(fail)?;
        let switched = match text2music {
            Some(c) => {
                let (kv, null) = self.condition_kvs(c, guided).map_err(fail)?;
                Some((c, kv, null))
            }
            None => None,
        };

        let mut noise = SeededNoise::new(&resolved.seeds);
        let channels = self.dit.silence.dim(2).map_err(fail)?;
        let initial = noise.draw(inputs.frames, channels, &self.device).and_then(|n| n.to_dtype(self.dtype)).map_err(fail)?;
        let start = match &inputs.source {
            Some(s) if resolved.task_type == TaskType::Cover && resolved.cover_noise_strength > 0.0 => {
                Start::Source { latents: &s.latents_batch, cover_noise_strength: resolved.cover_noise_strength }
            }
            _ => Start::Noise,
        };
        let run = RunInputs { noise: initial, start, repaint: inputs.repaint.as_ref(), fresh_noise: &mut noise };
        let stop = StopSignal::new();
        let mut steps = 0;
        let decoder = &self.dit.model.decoder;
        let result = config.run(
            run,
            |step| {
                let (context, kv, null_kv) = match (&switched, step.cover) {
                    (Some((c, kv, null)), false) => (&c.context, kv, null.as_ref()),
                    _ => (&main.context, &kv, null_kv.as_ref()),
                };
                let t = Tensor::full(step.t, step.x.dim(0)?, &self.device)?.to_dtype(self.dtype)?;
                let cond = decoder.forward(step.x, &t, &t, context, kv)?;
                let uncond = match (step.guided, null_kv) {
                    (true, Some(null)) => Some(decoder.forward(step.x, &t, &t, context, null)?),
                    _ => None,
                };
                Ok(Prediction { cond, uncond })
            },
            |step| {
                steps = step.count;
                ctx.step(step.index, step.count);
                stop.check(ctx)
            },
        );
        let latents = stop.outcome(result).map_err(JobError::from_stopped("diffusion"))?;
        check_finite(&latents, "diffusion", "the sampled latents")?;
        Ok((latents, steps))
    }

    /// Latents → audio per item: tiled VAE decode (checking for cancel between tiles), the
    /// repaint waveform splice, then upstream's output levels (peak cap, −1 dBFS).
    fn decode(&self, latents: &Tensor, inputs: &TaskInputs, ctx: &JobContext) -> Result<Vec<AudioBuffer>, JobError> {
        let fail = |e| JobError::model("VAE decode", e);
        let latents = latents.transpose(1, 2).and_then(|l| l.contiguous()).map_err(fail)?;
        let batch = latents.dim(0).map_err(fail)?;
        let mut out = Vec::with_capacity(batch);
        for item in 0..batch {
            let one = latents.narrow(0, item, 1).map_err(fail)?;
            let stop = StopSignal::new();
            let wave = self.shared.vae.decode_tiles(&one, DECODE_CHUNK_FRAMES, DECODE_OVERLAP_FRAMES, |_, _| stop.check(ctx));
            let wave = stop.outcome(wave).map_err(JobError::from_stopped("VAE decode"))?;
            let wave = wave.squeeze(0).and_then(|w| w.to_dtype(DType::F32)).and_then(|w| w.to_vec2::<f32>()).map_err(fail)?;
            let mut audio = AudioBuffer::new(MODEL_SAMPLE_RATE, wave);
            if audio.channels.iter().flatten().any(|v| !v.is_finite()) {
                return Err(JobError::model("VAE decode", "the decoded audio holds NaN or infinite samples"));
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
const REFERENCE_FRAMES: usize = source::REFERENCE_SECONDS * LATENT_FRAMES_PER_SECOND as usize;

/// Refuse NaN or infinite latents from `stage` with an error naming what held them.
fn check_finite(t: &Tensor, stage: &'static str, what: &str) -> Result<(), JobError> {
    let finite = t
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map(|v| v.iter().all(|x| x.is_finite()))
        .map_err(|e| JobError::model(stage, e))?;
    if finite {
        Ok(())
    } else {
        Err(JobError::model(stage, format!("{what} hold NaN or infinite values")))
    }
}
