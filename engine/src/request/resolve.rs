//! [`GenerationRequest::resolve`]: a request made concrete for one model: the per-model defaults,
//! the seeds drawn and recorded, and (once the source is known) its span.

use super::limits::*;
use super::{invalid, AudioFormat, GenerationRequest, RequestError, Seed};
use crate::sampling::{InferMethod, RepaintSettings};
use crate::task::{ModelKind, TaskType};

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

/// How the 5 Hz LM samples a job's codes (the request's `lm_*` fields).
#[derive(Debug, Clone, PartialEq)]
pub struct LmSettings {
    pub sampling: crate::lm::sample::Sampling,
    pub cfg_scale: f32,
    pub negative_prompt: String,
    /// Whether the chain of thought writes a caption (and the DiT reads it).
    pub cot_caption: bool,
    /// Whether the chain of thought writes the language line.
    pub cot_language: bool,
}

/// What the LM writes in place of the request's caption, lyrics and metas before the job runs
/// (upstream `prepare_llm_generation_inputs`): sample mode first, then format.
#[derive(Debug, Clone, PartialEq)]
pub struct LmRewrite {
    pub sample: Option<SampleQuery>,
    /// Format the caption and lyrics (when, after sample mode, there are any).
    pub format: bool,
    /// The request's `lm_temperature`, `lm_top_k` and `lm_top_p` (upstream passes no penalty
    /// here, and reads a top-p of 1 as its default 0.9).
    pub sampling: crate::lm::sample::Sampling,
}

/// Sample mode's input.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleQuery {
    /// The description, or upstream's `NO USER INPUT` for `sample_mode` without one.
    pub query: String,
    /// The description asks for no vocals.
    pub instrumental: bool,
    /// The lyrics' language: `vocal_language` unless it is en or unknown, else the one the
    /// description names.
    pub language: Option<String>,
}

/// A request made concrete for one model: what the pipeline runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRequest {
    pub task_type: TaskType,
    pub model: ModelKind,
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
    /// Text2music's 5 Hz audio codes, given as `audio_code_string`: the DiT renders them as a
    /// cover-style source and the LM does not run.
    pub audio_codes: Option<Vec<u32>>,
    /// Text2music with `thinking` and no codes given: the LM writes them first, with these settings.
    pub lm: Option<LmSettings>,
    /// Sample mode or format, when asked: the LM rewrites the request before anything else.
    pub rewrite: Option<LmRewrite>,
    /// The request with every default that `resolve` chose written in (seeds per item, batch size,
    /// steps, shift, guidance). Resolving it again on the same model gives this same result, so it
    /// is what a take stores.
    pub recipe: GenerationRequest,
}

impl GenerationRequest {
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
            audio_codes: self
                .audio_code_string
                .as_deref()
                .filter(|_| task == TaskType::Text2Music)
                .map(crate::model::fsq::parse_audio_codes),
            lm: (task == TaskType::Text2Music && self.thinking && self.audio_code_string.is_none()).then(|| LmSettings {
                sampling: crate::lm::sample::Sampling::new(
                    self.lm_temperature as f32,
                    self.lm_top_k as usize,
                    self.lm_top_p as f32,
                    self.lm_repetition_penalty as f32,
                ),
                cfg_scale: self.lm_cfg_scale as f32,
                negative_prompt: self.lm_negative_prompt.clone(),
                cot_caption: self.use_cot_caption,
                cot_language: self.use_cot_language,
            }),
            rewrite: self.lm_rewrite(),
            recipe,
        })
    }

    fn lm_rewrite(&self) -> Option<LmRewrite> {
        let sample = (self.sample_mode || self.sample_query.is_some()).then(|| {
            let query = self.sample_query.clone().unwrap_or_else(|| crate::lm::prompt::NO_USER_INPUT.to_string());
            let (named, instrumental) = crate::lm::describe::description_hints(&query);
            let language = self.vocal_language.clone().filter(|l| !matches!(l.as_str(), "en" | "unknown")).or(named.map(str::to_string));
            SampleQuery { query, instrumental, language }
        });
        let top_p = if self.lm_top_p > 0.0 && self.lm_top_p < 1.0 { self.lm_top_p } else { 0.9 };
        (sample.is_some() || self.use_format).then(|| LmRewrite {
            sample,
            format: self.use_format,
            sampling: crate::lm::sample::Sampling::new(self.lm_temperature as f32, self.lm_top_k as usize, top_p as f32, 1.0),
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
}

/// A fresh seed in upstream's range. std's `RandomState` is keyed from the OS once per thread and
/// stepped for every instance, which is random enough for a seed that is recorded anyway.
fn draw_seed() -> u32 {
    use std::hash::BuildHasher;
    (std::collections::hash_map::RandomState::new().hash_one(0u8) >> 32) as u32
}

#[cfg(test)]
mod resolving {
    use crate::request::tests::*;
    use crate::prompt::PromptInputs;
    use crate::sampling::RepaintSettings;

    #[test]
    fn turbo_defaults() {
        let resolved = GenerationRequest::default().resolve(ModelKind::Turbo).unwrap();
        let s = &resolved.sampling;
        assert_eq!((s.steps, s.shift, s.guidance_scale, s.use_adg), (8, 3.0, 1.0, false));
        assert_eq!(resolved.duration_s, Some(FALLBACK_DURATION_S));
        assert_eq!(resolved.batch_size(), 2);
        assert_eq!(resolved.audio_format, AudioFormat::Flac);
        let prompt = PromptInputs::new(&resolved.recipe);
        assert!(prompt.lyric_prompt().starts_with("# Languages\nunknown\n"));
        assert_eq!(prompt.duration, None, "the metas say 30 seconds, as upstream's do");
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
        let prompt = PromptInputs::new(&resolved.recipe);
        assert_eq!(prompt.instruction(), "Generate the GUITAR track based on the audio context:");
        assert_eq!(prompt.duration, None, "an audio task's metas state the source's length");
        assert_eq!(resolved.duration_s, None);
        let with_source = prompt.with_duration(Some(12.5));
        assert!(with_source
            .caption_prompt()
            .contains("- bpm: 90\n- timesignature: 3\n- keyscale: D minor\n- duration: 12 seconds\n"));
        assert_eq!(with_source.lyric_prompt(), "# Languages\nen\n\n# Lyric\n<|endoftext|>");

        let t2m =
            GenerationRequest { duration: Some(45.5), ..Default::default() }.resolve(ModelKind::Turbo).unwrap();
        assert_eq!((t2m.duration_s, PromptInputs::new(&t2m.recipe).duration), (Some(45.5), Some(45.5)));
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
