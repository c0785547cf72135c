//! Sample mode and format: before anything else, the 5 Hz LM rewrites the request's caption,
//! lyrics and metas (upstream `api/llm_generation_inputs.py` `prepare_llm_generation_inputs`).
//!
//! - Sample mode writes the whole piece from a short description; its caption, lyrics, bpm, key,
//!   time signature and duration replace the request's (a field it left out is left open, for
//!   thinking to plan).
//! - Format then rewrites the caption and lyrics into fuller ones, with the metas the request
//!   gives kept as given; what it wrote replaces the request's only where it wrote something.
//!
//! The rest of the job (thinking included) runs on the rewritten request; the recipe keeps the
//! request as asked and the rewrite in `rewritten`.

use std::sync::Arc;
use std::time::Instant;

use super::{lm_error, Chosen, Pipeline, StageClock};
use crate::backend::Admitted;
use crate::error::JobError;
use crate::lm::describe::{Description, Describer};
use crate::lm::think::{GivenMetas, THOUGHT_MAX_NEW_TOKENS};
use crate::pipeline::recipe::RewriteReport;
use crate::progress::JobContext;
use crate::store::ResidentLm;

impl Pipeline {
    /// The job as the LM rewrote it, and what it wrote; `None` when the request asks for neither
    /// mode.
    /// The LM stays in `held` for planning.
    pub(super) fn rewrite(
        &self,
        job: &Admitted,
        held: &mut Option<Arc<ResidentLm>>,
        clock: &mut StageClock,
        ctx: &JobContext,
    ) -> Result<Option<(Admitted, RewriteReport)>, JobError> {
        let Some(asked) = &job.resolved.rewrite else { return Ok(None) };
        let lm = self.lm(held, clock, ctx)?;
        ctx.check_cancelled()?;
        ctx.stage("lm");
        let describer = Describer {
            lm: &lm.model,
            tokenizer: &lm.tokenizer,
            genres: lm.genres.as_ref(),
            sampling: asked.sampling,
            seed: job.resolved.seeds.first().copied().unwrap_or_default().into(),
        };
        let mut job = job.clone();
        let request = &mut job.resolved.recipe;
        let mut modes = Vec::new();
        let mut last: Option<Description> = None;
        let keep_going = &mut || !ctx.is_cancelled();
        let progress = &mut |done: usize| ctx.step(done.min(THOUGHT_MAX_NEW_TOKENS), THOUGHT_MAX_NEW_TOKENS);

        if let Some(sample) = &asked.sample {
            let started = Instant::now();
            let written = describer
                .inspire(&sample.query, sample.instrumental, sample.language.as_deref(), keep_going, progress)
                .map_err(lm_error)?;
            clock.costs.insert("lm_sample_time_cost".into(), started.elapsed().as_secs_f64());
            let chosen = Chosen::from_plan(&written.plan);
            request.caption = chosen.caption.unwrap_or_default();
            request.lyrics.clone_from(&written.lyrics);
            (request.bpm, request.keyscale, request.timesignature, request.duration) =
                (chosen.bpm, chosen.keyscale, chosen.timesignature, chosen.duration);
            modes.push("sample".to_string());
            last = Some(written);
        }
        let has_text = !request.caption.trim().is_empty() || !request.lyrics.trim().is_empty();
        if asked.format && has_text {
            let started = Instant::now();
            // What the request gives, as upstream passes it on: whole numbers, a language other
            // than unknown.
            let given = GivenMetas {
                bpm: request.bpm.filter(|&b| b > 0).map(|b| b.to_string()),
                duration: request.duration.filter(|&d| d >= 1.0).map(|d| (d as i64).to_string()),
                keyscale: request.keyscale.clone(),
                timesignature: request.timesignature.clone(),
                language: request.vocal_language.clone().filter(|l| l != "unknown"),
                ..GivenMetas::default()
            };
            let written = describer.format(&request.caption, &request.lyrics, given, keep_going, progress).map_err(lm_error)?;
            clock.costs.insert("lm_format_time_cost".into(), started.elapsed().as_secs_f64());
            let chosen = Chosen::from_plan(&written.plan);
            if let Some(caption) = chosen.caption {
                request.caption = caption;
            }
            if !written.lyrics.trim().is_empty() {
                request.lyrics.clone_from(&written.lyrics);
            }
            request.bpm = chosen.bpm.or(request.bpm);
            request.keyscale = chosen.keyscale.or(request.keyscale.take());
            request.timesignature = chosen.timesignature.or(request.timesignature.take());
            request.duration = chosen.duration.or(request.duration);
            modes.push("format".to_string());
            last = Some(written);
        }
        if !job.resolved.task_type.needs_source_audio() {
            job.resolved.duration_s = Some(request.duration.unwrap_or(crate::request::FALLBACK_DURATION_S));
        }
        let request = &job.resolved.recipe;
        let plan = last.map(|d| d.plan).unwrap_or_default();
        let report = RewriteReport {
            model: lm.file.clone(),
            modes,
            caption: request.caption.clone(),
            lyrics: request.lyrics.clone(),
            bpm: request.bpm,
            keyscale: request.keyscale.clone(),
            timesignature: request.timesignature.clone(),
            duration: request.duration,
            language: plan.language,
            genres: plan.genres,
        };
        Ok(Some((job, report)))
    }
}
