//! One generation from an admitted job to audio: VAE encode of the inputs, text encoding, the
//! task's conditioning, sampling, VAE decode, output levels, and the recipe (`model-spec.md`
//! sections 3 to 5).
//!
//! A [`Pipeline`] runs one job. It takes each model from the model store when its stage begins
//! (the VAE to encode, the text encoder, the DiT, the VAE to decode) and lets go of it when the
//! stage ends, so under [`Residency::PerStage`] a job holds one model at a time. The job has
//! passed the pre-flight (`backend::admit`): the pipeline checks none of it again. Progress and
//! cancellation go through the job's [`JobContext`]; every stage's errors map to one
//! [`JobError`] naming the stage.

pub mod recipe;
mod rewrite;
pub mod source;
pub mod task_inputs;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use crate::audio::{AudioBuffer, MODEL_SAMPLE_RATE};
use crate::backend::Admitted;
use crate::checkpoint::{DitFolder, LmFolder, LoadAs, VaeFolder, LM_FOLDERS, VAE_FOLDER, VAE_WEIGHTS};
use crate::lm::codes::{generate_codes, CodesRequest, LmError, CODES_PER_SECOND};
use crate::lm::plan::{Plan, Value as PlanValue};
use crate::lm::think::{generate_thought, GivenMetas, ThoughtRequest, THOUGHT_MAX_NEW_TOKENS};
use crate::model::fsq::format_audio_codes;
use crate::error::JobError;
use crate::model::acestep::{Condition, SourceInputs};
use crate::model::condition::ConditionInputs;
use crate::model::dit::ConditionKv;
use crate::model::text_encoder::{fit_to_width, pad_batch, CAPTION_MAX_TOKENS, LYRIC_MAX_TOKENS};
use crate::progress::{JobContext, StopSignal};
use crate::prompt::PromptInputs;
use crate::request::{ModelKind, ResolvedRequest};
use crate::sampling::{
    base_schedule, schedule, turbo_schedule, Guidance, GuidanceMethod, Prediction, RunInputs, SamplerConfig,
    SamplerKind, SeededNoise, Start,
};
use crate::store::{model_file, ModelStore, Residency, ResidentDit, ResidentLm, ResidentText, ResidentVae};
use crate::task::TaskType;
use crate::timing::LATENT_FRAMES_PER_SECOND;
use recipe::{LmReport, ModelFile, Recipe};
use source::LatentCache;
use task_inputs::TaskInputs;

/// The VAE decode's tile: windows of upstream's CPU chunk (256 latent frames, `vae_decode.py`)
/// with 16 frames of context on each side, decoded and thrown away. The decoder sees about 9
/// frames either side (its receptive field), so the tiles equal one pass to float rounding;
/// upstream's 64-frame overlap decodes every frame twice for nothing.
pub const DECODE_CHUNK_FRAMES: usize = 256;
pub const DECODE_OVERLAP_FRAMES: usize = 16;
/// Encoded inputs kept for repeated edits of the same capture.
pub const LATENT_CACHE_ENTRIES: usize = 8;

/// One finished generation: an [`AudioBuffer`] (48 kHz stereo) per batch item, and its recipe.
#[derive(Debug, Clone)]
pub struct Generation {
    pub audio: Vec<AudioBuffer>,
    pub recipe: Recipe,
}

/// Where a job's models come from and how long they stay.
pub struct JobModels {
    pub store: Arc<ModelStore>,
    /// The checkpoints folder of the text encoder and the VAE.
    pub checkpoints: PathBuf,
    pub how: LoadAs,
    pub residency: Residency,
}

/// One job's run (see the module doc).
pub struct Pipeline {
    models: JobModels,
    device: Device,
    dtype: DType,
    /// The job's DiT folder (opened, not loaded).
    dit: DitFolder,
    kind: ModelKind,
    /// (1, S, 64): what the model reads as "no audio here", from the DiT folder.
    silence: Tensor,
    /// The VAE's weight file: the recipe names it, and the latent cache keys on it.
    vae_file: ModelFile,
    /// Audio samples per latent frame.
    hop: usize,
}

/// A text2music job's audio codes, per item, and the LM's report when it wrote them.
struct Planned {
    codes: Vec<Vec<u32>>,
    report: Option<LmReport>,
    /// What the chain of thought chose, when it ran (phase 1).
    chosen: Option<Chosen>,
}

/// The chain of thought's choices that reach the DiT (upstream `_update_metadata_from_lm` and
/// `use_cot_caption`): bpm, key, time signature and duration where the request left them open,
/// and the caption in place of the user's. Values the DiT could not read are left out.
struct Chosen {
    bpm: Option<u32>,
    keyscale: Option<String>,
    timesignature: Option<String>,
    duration: Option<f64>,
    caption: Option<String>,
}

impl Chosen {
    fn from_plan(plan: &Plan) -> Self {
        let int = |v: &Option<PlanValue>| v.as_ref().and_then(PlanValue::as_int);
        Self {
            bpm: int(&plan.bpm).and_then(|b| u32::try_from(b).ok()).filter(|b| (crate::request::BPM_MIN..=crate::request::BPM_MAX).contains(b)),
            keyscale: plan.keyscale.clone().filter(|k| crate::task::is_valid_keyscale(k)),
            timesignature: plan.timesignature.clone().filter(|t| crate::request::TIME_SIGNATURES.contains(&t.as_str())),
            duration: int(&plan.duration)
                .map(|d| d as f64)
                .filter(|d| (crate::timing::DURATION_MIN_S..=crate::timing::DURATION_MAX_S).contains(d)),
            caption: plan.caption.clone().filter(|c| !c.trim().is_empty()),
        }
    }

    /// The job with the open fields filled in.
    fn apply_to(&self, job: &Admitted) -> Admitted {
        let mut job = job.clone();
        let resolved = &mut job.resolved;
        let request = &mut resolved.recipe;
        request.bpm = request.bpm.or(self.bpm);
        if request.keyscale.is_none() {
            request.keyscale.clone_from(&self.keyscale);
        }
        if request.timesignature.is_none() {
            request.timesignature.clone_from(&self.timesignature);
        }
        let duration = request.duration.is_none().then_some(self.duration).flatten();
        if let Some(d) = duration {
            request.duration = Some(d);
        }
        if let Some(caption) = &self.caption {
            request.caption.clone_from(caption);
        }
        if let Some(d) = duration {
            resolved.duration_s = Some(d);
        }
        job
    }
}

/// The 5 Hz LM a job plans with: upstream's default (1.7B) where it is installed, else the
/// smallest, else the largest.
pub(crate) fn choose_lm(checkpoints: &std::path::Path) -> Result<LmFolder, JobError> {
    let order = [LM_FOLDERS[1], LM_FOLDERS[0], LM_FOLDERS[2]];
    match order.iter().map(|name| checkpoints.join(name)).find(|dir| dir.is_dir()) {
        Some(dir) => Ok(LmFolder::open(&dir)?),
        None => Err(JobError::Model {
            stage: "5 Hz LM",
            message: format!(
                "the 5 Hz LM (`thinking`, sample mode, format) needs one of its folders ({}) in {}",
                LM_FOLDERS.join(", "),
                checkpoints.display()
            ),
        }),
    }
}

pub(crate) fn lm_error(e: LmError) -> JobError {
    match e {
        LmError::Cancelled => JobError::Cancelled,
        other => JobError::Model { stage: "5 Hz LM", message: other.to_string() },
    }
}

/// Seconds spent loading models during the job (Backline's own key).
const MODEL_LOAD_KEY: &str = "model_load_time_cost";

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

    /// Runs a model load (nothing when the model is resident), adding its seconds to
    /// `model_load_time_cost` so that the stages' own figures leave loading out.
    fn load<T>(&mut self, load: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = load();
        *self.costs.entry(MODEL_LOAD_KEY.to_string()).or_default() += start.elapsed().as_secs_f64();
        out
    }
}

impl Pipeline {
    /// A run of a job on `dit`: reads the DiT's silence latent and the VAE's config (no weights).
    pub fn new(models: JobModels, dit: &DitFolder) -> Result<Self, JobError> {
        let (device, dtype) = (models.how.device.clone(), models.how.dtype);
        let silence = dit.read_silence_latent(&device)?.to_dtype(dtype).map_err(|e| JobError::model("silence latent", e))?;
        let vae = VaeFolder::open(&models.checkpoints.join(VAE_FOLDER))?;
        let vae_file = model_file(&vae.dir, VAE_WEIGHTS)?;
        let hop = vae.config.hop_length();
        Ok(Self { device, dtype, kind: dit.model_kind(), dit: dit.clone(), silence, vae_file, hop, models })
    }

    pub fn model_kind(&self) -> ModelKind {
        self.kind
    }

    /// The VAE, from the store (loaded now unless resident).
    fn vae(&self, ctx: &JobContext) -> Result<Arc<ResidentVae>, JobError> {
        let m = &self.models;
        m.store.vae(&m.checkpoints, &m.how, m.residency, ctx)
    }

    fn text_encoder(&self, ctx: &JobContext) -> Result<Arc<ResidentText>, JobError> {
        let m = &self.models;
        m.store.text_encoder(&m.checkpoints, &m.how, m.residency, ctx)
    }

    fn load_dit(&self, ctx: &JobContext) -> Result<Arc<ResidentDit>, JobError> {
        let m = &self.models;
        m.store.dit(&self.dit, &m.how, m.residency, ctx)
    }

    /// Ends this job's hold on a model. Under `PerStage` that frees it, and its memory goes back
    /// to the system before the next model loads (the allocator would keep it otherwise).
    fn let_go<T>(&self, model: Arc<T>) {
        drop(model);
        if self.models.residency == Residency::PerStage {
            crate::alloc::release_freed_memory();
        }
    }

    /// Runs one admitted job. `latents` caches encoded inputs between jobs.
    pub fn generate(&self, job: &Admitted, latents: &mut LatentCache, ctx: &JobContext) -> Result<Generation, JobError> {
        let asked = job.resolved.recipe.clone();
        let mut clock = StageClock::start();

        // Sample mode and format rewrite the request first; everything after runs on the rewrite.
        // The LM, once loaded, serves both (it is let go of after planning).
        let mut lm = None;
        let rewrite = self.rewrite(job, &mut lm, &mut clock, ctx)?;
        let (job, rewritten) = match rewrite {
            Some((rewritten_job, report)) => (std::borrow::Cow::Owned(rewritten_job), Some(report)),
            None => (std::borrow::Cow::Borrowed(job), None),
        };
        let job: &Admitted = &job;
        let planned = self.plan(&job.resolved, &mut lm, &mut clock, ctx)?;
        if let Some(lm) = lm.take() {
            self.let_go(lm);
        }
        // What the LM chose fills what the request left open; the rest of the job runs on that.
        let planned_job;
        let job = match planned.as_ref().and_then(|p| p.chosen.as_ref()) {
            Some(chosen) => {
                planned_job = chosen.apply_to(job);
                &planned_job
            }
            None => job,
        };
        let resolved = &job.resolved;
        let batch = resolved.batch_size();
        let mut vae = None;
        let inputs = clock.time("dit_vae_encode_time_cost", || TaskInputs::prepare(self, job, &mut vae, latents, ctx));
        if let Some(vae) = vae {
            self.let_go(vae);
        }
        let inputs = inputs?;
        if job.source.is_none() && job.reference.is_none() {
            clock.costs.remove("dit_vae_encode_time_cost"); // nothing was encoded
        }
        let frames = inputs.frames;

        // Text2music with audio codes runs as cover, with the cover instruction (upstream's
        // handler switches the task when codes are given).
        let mut prompt_request = resolved.recipe.clone();
        if planned.is_some() {
            prompt_request.task_type = TaskType::Cover;
        }
        let text = clock.load(|| self.text_encoder(ctx))?;
        ctx.check_cancelled()?;
        ctx.stage("text");
        let text_stage = |clock: &mut StageClock| -> candle_core::Result<(Tensor, Tensor, (Tensor, Tensor), Option<(Tensor, Tensor)>)> {
            clock.time("dit_text_encoder_time_cost", || {
                let prompt = PromptInputs::new(&prompt_request).with_duration(inputs.prompt_duration);
                let (lyrics, lyric_mask) = self.lyric_embeddings(&text, &prompt, batch)?;
                let caption = self.caption_states(&text, &prompt.caption_prompt(), batch, None)?;
                let switches = prompt_request.task_type == TaskType::Cover && resolved.audio_cover_strength < 1.0;
                // Upstream fits the second caption to the cover caption's length (cut, or padded
                // with encoded pad tokens that the DiT attends), so the same is done here.
                let cover_width = caption.0.dim(1)?;
                let non_cover =
                    if switches { Some(self.caption_states(&text, &prompt.non_cover_caption_prompt(), batch, Some(cover_width))?) } else { None };
                Ok((lyrics, lyric_mask, caption, non_cover))
            })
        };
        let (lyrics, lyric_mask, caption, non_cover_caption) = text_stage(&mut clock).map_err(|e| JobError::model("text encoder", e))?;
        let text_file = text.file.clone();
        self.let_go(text);
        if self.models.residency == Residency::Keep {
            let m = &self.models;
            m.store.fit_text_encoder(&m.checkpoints, &m.how, &self.dit)?;
        }
        ctx.check_cancelled()?;

        let dit = clock.load(|| self.load_dit(ctx))?;
        ctx.check_cancelled()?;
        ctx.stage("condition");
        let texts = Texts { caption: &caption, non_cover_caption: non_cover_caption.as_ref(), lyrics: &lyrics, lyric_mask: &lyric_mask };
        let hints = match &planned {
            Some(plan) => Some(self.code_hints(&dit, &plan.codes, frames).map_err(|e| JobError::model("audio code detokenizer", e))?),
            None => None,
        };
        let (main, text2music) = clock
            .time("dit_encoder_time_cost", || self.conditions(&dit, &inputs, hints.as_ref(), &texts, batch))
            .map_err(|e| JobError::model("condition encoder", e))?;
        ctx.check_cancelled()?;

        ctx.stage("diffusion");
        let (latents_out, steps) = clock.time("dit_diffusion_time_cost", || self.sample(&dit, resolved, &inputs, &main, text2music.as_ref(), ctx))?;
        let per_step = clock.costs["dit_diffusion_time_cost"] / steps.max(1) as f64;
        clock.costs.insert("dit_diffusion_per_step_time_cost".into(), per_step);
        let dit_file = dit.file.clone();
        self.let_go(dit);

        let vae = clock.load(|| self.vae(ctx))?;
        ctx.check_cancelled()?;
        ctx.stage("decode");
        let audio = clock.time("dit_vae_decode_time_cost", || self.decode(&vae, &latents_out, &inputs, ctx))?;
        self.let_go(vae);
        let total = clock.started.elapsed().as_secs_f64();
        clock.costs.insert("dit_total_time_cost".into(), total);

        let recipe = Recipe {
            request: asked,
            model_kind: self.kind,
            models: vec![dit_file, self.vae_file.clone(), text_file],
            source: inputs.source.as_ref().map(|s| s.record.clone()),
            reference: inputs.reference.as_ref().map(|r| r.record.clone()),
            sample_rate: MODEL_SAMPLE_RATE,
            duration_s: frames as f64 / LATENT_FRAMES_PER_SECOND,
            engine: format!("backline-engine {}", env!("CARGO_PKG_VERSION")),
            precision: self.models.how.precision,
            time_costs: clock.costs,
            analysis: None,
            grid: None,
            lm: planned.and_then(|p| p.report),
            rewritten,
        };
        Ok(Generation { audio, recipe })
    }

/// The condition of the task and, for a cover that switches part-way, text2music's: the
    /// text2music instruction's caption with silence as the source.
    fn conditions(
        &self,
        dit: &ResidentDit,
        inputs: &TaskInputs,
        hints: Option<&Tensor>,
        texts: &Texts,
        batch: usize,
    ) -> candle_core::Result<(Condition, Option<Condition>)> {
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
            dit.model.prepare_condition(&inputs, source)
        };
        let is_cover = vec![inputs.is_cover; batch];
        // Hints decoded from audio codes are the source as they are: upstream passes them as
        // precomputed hints, with no FSQ round trip.
        let source = SourceInputs {
            latents: hints.unwrap_or(&inputs.context_source),
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

    /// The audio codes a text2music job renders: the request's own, or the 5 Hz LM's (one run
    /// per item, seeded by the item's seed) when it asked for `thinking`. `None` for every other job.
    /// The job's 5 Hz LM: the one `held` already, else loaded now (and held).
    fn lm(&self, held: &mut Option<Arc<ResidentLm>>, clock: &mut StageClock, ctx: &JobContext) -> Result<Arc<ResidentLm>, JobError> {
        if let Some(lm) = held {
            return Ok(Arc::clone(lm));
        }
        let m = &self.models;
        let folder = choose_lm(&m.checkpoints)?;
        let lm = clock.load(|| m.store.lm(&folder, &m.how, m.residency, ctx))?;
        *held = Some(Arc::clone(&lm));
        Ok(lm)
    }

    fn plan(
        &self,
        resolved: &ResolvedRequest,
        held: &mut Option<Arc<ResidentLm>>,
        clock: &mut StageClock,
        ctx: &JobContext,
    ) -> Result<Option<Planned>, JobError> {
        if let Some(codes) = &resolved.audio_codes {
            return Ok(Some(Planned { codes: vec![codes.clone(); resolved.batch_size()], report: None, chosen: None }));
        }
        let Some(settings) = &resolved.lm else { return Ok(None) };
        let lm = self.lm(held, clock, ctx)?;
        ctx.check_cancelled()?;
        ctx.stage("lm");
        let request = &resolved.recipe;
        // The user's metas, as upstream passes them: whole numbers for bpm and duration.
        let given = GivenMetas {
            bpm: request.bpm.map(|b| b.to_string()),
            duration: request.duration.map(|d| (d as i64).to_string()),
            keyscale: request.keyscale.clone(),
            timesignature: request.timesignature.clone(),
            ..GivenMetas::default()
        };
        let mut plan = Plan {
            bpm: request.bpm.map(|b| PlanValue::Int(b.into())),
            duration: request.duration.map(|d| PlanValue::Int(d as i64)),
            keyscale: request.keyscale.clone(),
            timesignature: request.timesignature.clone(),
            ..Plan::default()
        };
        let lyrics = if request.instrumental { crate::prompt::INSTRUMENTAL_LYRICS } else { request.lyrics.as_str() };
        // Phase 1 when the user left any of them open: once for the batch, as upstream, seeded
        // by the first item's seed.
        let mut chosen = None;
        if !plan.has_all_metas() {
            let started = Instant::now();
            let asked = ThoughtRequest {
                caption: &request.caption,
                lyrics,
                given,
                skip_caption: !settings.cot_caption,
                skip_language: !settings.cot_language,
                sampling: settings.sampling,
                seed: resolved.seeds.first().copied().unwrap_or_default().into(),
            };
            let thought = generate_thought(&lm.model, &lm.tokenizer, &asked, &mut || !ctx.is_cancelled(), &mut |done| {
                ctx.step(done.min(THOUGHT_MAX_NEW_TOKENS), THOUGHT_MAX_NEW_TOKENS)
            })
            .map_err(lm_error)?;
            clock.costs.insert("lm_phase1_time_cost".into(), started.elapsed().as_secs_f64());
            plan = thought.plan;
            chosen = Some(Chosen::from_plan(&plan));
        }
        let duration = request.duration.or_else(|| plan.duration.as_ref().and_then(PlanValue::as_int).map(|d| d as f64));
        let duration = duration.unwrap_or(crate::request::FALLBACK_DURATION_S);
        let seconds_of_codes = duration.clamp(crate::timing::DURATION_MIN_S, crate::timing::DURATION_MAX_S);
        let target_codes = (seconds_of_codes * CODES_PER_SECOND as f64) as usize;
        let started = Instant::now();
        let mut tokens = 0usize;
        let mut codes = Vec::with_capacity(resolved.seeds.len());
        for &seed in &resolved.seeds {
            let asked = CodesRequest {
                caption: &request.caption,
                lyrics,
                plan: &plan,
                negative_prompt: &settings.negative_prompt,
                target_codes,
                cfg_scale: settings.cfg_scale,
                sampling: settings.sampling,
                seed: seed.into(),
            };
            let out = generate_codes(&lm.model, &lm.tokenizer, &asked, &mut || !ctx.is_cancelled(), &mut |done, total| ctx.step(done, total))
                .map_err(lm_error)?;
            tokens += out.tokens.len();
            codes.push(out.codes);
        }
        let seconds = started.elapsed().as_secs_f64();
        clock.costs.insert("lm_phase2_time_cost".into(), seconds);
        let report = LmReport {
            model: lm.file.clone(),
            chain_of_thought: plan.chain_of_thought(),
            audio_codes: codes.iter().map(|c| format_audio_codes(c)).collect(),
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
        };
        Ok(Some(Planned { codes, report: Some(report), chosen }))
    }

    /// Each item's codes as 25 Hz hints (B, frames, 64): detokenized, then padded with the
    /// silence latent or cut to the job's length.
    fn code_hints(&self, dit: &ResidentDit, codes: &[Vec<u32>], frames: usize) -> candle_core::Result<Tensor> {
        let rows = codes
            .iter()
            .map(|c| {
                let hints = dit.model.hints_from_codes(c)?.to_dtype(self.dtype)?;
                let have = hints.dim(1)?;
                if have >= frames {
                    hints.narrow(1, 0, frames)
                } else {
                    Tensor::cat(&[&hints, &self.silence_frames(frames - have, 1)?], 1)
                }
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&rows, 0)
    }

    /// Caption prompt → the text encoder's last hidden state, repeated over the batch, with its
    /// mask; its tokens cut or padded to `width` when given.
    fn caption_states(&self, text: &ResidentText, prompt: &str, batch: usize, width: Option<usize>) -> candle_core::Result<(Tensor, Tensor)> {
        let ids = text.tokenizer.encode(prompt, CAPTION_MAX_TOKENS)?;
        let (ids, mask) = match width {
            Some(width) => fit_to_width(ids, width, text.tokenizer.pad_id(), &self.device)?,
            None => pad_batch(&[ids], text.tokenizer.pad_id(), &self.device)?,
        };
        let states = text.encoder.encode(&ids)?.to_dtype(self.dtype)?;
        Ok((states.repeat((batch, 1, 1))?, mask.to_dtype(self.dtype)?.repeat((batch, 1))?))
    }

    /// Lyric prompt → token embeddings (no transformer layers, as upstream), repeated over the batch.
    fn lyric_embeddings(&self, text: &ResidentText, prompt: &PromptInputs, batch: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let ids = text.tokenizer.encode(&prompt.lyric_prompt(), LYRIC_MAX_TOKENS)?;
        let (ids, mask) = pad_batch(&[ids], text.tokenizer.pad_id(), &self.device)?;
        let embeds = text.encoder.embed(&ids)?.to_dtype(self.dtype)?;
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
        let audio_cover_strength = if resolved.task_type == TaskType::Cover { resolved.audio_cover_strength } else { 1.0 };
        SamplerConfig { kind, timesteps, method: s.infer_method, guidance, audio_cover_strength }
    }

    /// A condition's cross-attention K/V and, when the run is guided, the condition's and the
    /// null condition's stacked as one batch (a guided step is one forward of both).
    fn condition_kvs(dit: &ResidentDit, condition: &Condition, guided: bool) -> candle_core::Result<(ConditionKv, Option<ConditionKv>)> {
        let dit = &dit.model;
        let kv = dit.condition_kv(&condition.states)?;
        let with_null = if guided { Some(kv.stack(&dit.condition_kv(&dit.null_condition(&condition.states)?)?)?) } else { None };
        Ok((kv, with_null))
    }

    /// The sampled latents and the number of steps run.
    fn sample(
        &self,
        dit: &ResidentDit,
        resolved: &ResolvedRequest,
        inputs: &TaskInputs,
        main: &Condition,
        text2music: Option<&Condition>,
        ctx: &JobContext,
    ) -> Result<(Tensor, usize), JobError> {
        let fail = |e| JobError::model("diffusion", e);
        let config = self.sampler_config(resolved);
        let guided = config.guidance.is_some();
        let (kv, null_kv) = Self::condition_kvs(dit, main, guided).map_err(fail)?;
        let switched = match text2music {
            Some(c) => {
                let (kv, null) = Self::condition_kvs(dit, c, guided).map_err(fail)?;
                Some((c, kv, null))
            }
            None => None,
        };

        let mut noise = SeededNoise::new(&resolved.seeds);
        let channels = self.silence.dim(2).map_err(fail)?;
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
        let decoder = &dit.model.decoder;
        let result = config.run(
            run,
            |step| {
                let (context, kv, with_null) = match (&switched, step.cover) {
                    (Some((c, kv, with_null)), false) => (&c.context, kv, with_null.as_ref()),
                    _ => (&main.context, &kv, null_kv.as_ref()),
                };
                let rows = step.x.dim(0)?;
                match (step.guided, with_null) {
                    (true, Some(both)) => {
                        let t = Tensor::full(step.t, 2 * rows, &self.device)?.to_dtype(self.dtype)?;
                        let x = Tensor::cat(&[step.x, step.x], 0)?;
                        let context = Tensor::cat(&[context, context], 0)?;
                        let v = decoder.forward(&x, &t, &t, &context, both)?;
                        Ok(Prediction { cond: v.narrow(0, 0, rows)?, uncond: Some(v.narrow(0, rows, rows)?) })
                    }
                    _ => {
                        let t = Tensor::full(step.t, rows, &self.device)?.to_dtype(self.dtype)?;
                        Ok(Prediction { cond: decoder.forward(step.x, &t, &t, context, kv)?, uncond: None })
                    }
                }
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
    fn decode(&self, vae: &ResidentVae, latents: &Tensor, inputs: &TaskInputs, ctx: &JobContext) -> Result<Vec<AudioBuffer>, JobError> {
        let fail = |e| JobError::model("VAE decode", e);
        let latents = latents.transpose(1, 2).and_then(|l| l.contiguous()).map_err(fail)?;
        let batch = latents.dim(0).map_err(fail)?;
        let mut out = Vec::with_capacity(batch);
        for item in 0..batch {
            let one = latents.narrow(0, item, 1).map_err(fail)?;
            let stop = StopSignal::new();
            let wave = vae.vae.decode_tiles(&one, DECODE_CHUNK_FRAMES, DECODE_OVERLAP_FRAMES, |_, _| stop.check(ctx));
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
