//! The one place the editor's draft becomes an engine job: [`job_request`] maps the saved
//! [`SessionState`], the host grid (tempo, meter, rate) and the captured bars to a [`JobRequest`]
//! plus the [`TakePlan`] that says how the result becomes a take of whole bars.
//!
//! The engine's [`BarPlan`] does the planning (whole passes of a short region and a bar after
//! them, the meter the model is told, an audio task's tiled source), and its `take_shape` turns
//! the result into the take: aligned to the captured bars, conformed to the host grid, cut exact.

use std::sync::Arc;

use backline_engine::audio::bar_plan::{BarPlan, BarSpec};
use backline_engine::audio::grid::Grid;
use backline_engine::audio::take_shape::TakeOptions;
use backline_engine::audio::AudioBuffer;
use backline_engine::backend::{AudioInput, JobRequest};
use backline_engine::request::GenerationRequest;
use backline_engine::task::TaskType;
use serde_json::json;

use crate::capture_store::CapturedRegion;
use crate::state::SessionState;

/// How a finished generation becomes a take.
#[derive(Debug, Clone, PartialEq)]
pub struct TakePlan {
    /// The bars at the host's tempo, meter and rate when the job was submitted.
    pub bars: BarPlan,
    /// Where the take's first sample sits, in quarter notes.
    pub start_quarters: f64,
    /// The tiled captured bars the job was given (audio tasks), at the host rate: the result is
    /// aligned to them.
    pub source: Option<Arc<AudioBuffer>>,
    /// The request's key, for the take's report.
    pub keyscale: Option<String>,
    pub options: TakeOptions,
}

impl TakePlan {
    pub fn grid(&self) -> &Grid {
        &self.bars.grid
    }
}

/// The draft as a job, or why it cannot run yet (in words for the editor).
pub fn job_request(
    draft: &SessionState,
    grid: &Grid,
    captured: Option<&CapturedRegion>,
) -> Result<(JobRequest, TakePlan), String> {
    let meter = grid.meter();
    let spec = BarSpec {
        bars: draft.length_bars.max(1),
        start_bar: draft.start_bar,
        bpm: grid.bpm(),
        meter: (meter.numerator, meter.denominator),
        sample_rate: grid.sample_rate(),
    };
    let plan = BarPlan::new(spec).map_err(|e| e.to_string())?;
    let task = draft.task;

    let mut body = json!({
        "task_type": task.as_str(),
        "caption": draft.caption,
        "instrumental": draft.instrumental,
        "lyrics": if draft.instrumental { "" } else { draft.lyrics.as_str() },
        "batch_size": 1,
        "bpm": plan.metas_bpm(),
        "timesignature": plan.metas_timesignature(),
    });
    if !draft.keyscale.is_empty() {
        body["keyscale"] = json!(draft.keyscale);
    }
    if draft.steps > 0 {
        body["inference_steps"] = json!(draft.steps);
    }
    if draft.seed >= 0 {
        body["seed"] = json!(draft.seed);
        body["use_random_seed"] = json!(false);
    }
    if !draft.model.is_empty() {
        body["model"] = json!(draft.model);
    }
    match task {
        TaskType::Text2Music => {
            body["duration"] = json!(plan.request_duration_s());
            if draft.plan_with_lm {
                body["thinking"] = json!(true);
            }
        }
        TaskType::Cover => body["audio_cover_strength"] = json!(draft.strength),
        // The first pass is repainted; the passes around it are the context it must fit.
        TaskType::Repaint => {
            let (start, end) = plan.repaint_window_s();
            body["repainting_start"] = json!(start);
            body["repainting_end"] = json!(end);
        }
        TaskType::Lego | TaskType::Extract => body["track_name"] = json!(draft.track_name),
        TaskType::Complete => body["track_classes"] = json!([draft.track_name]),
    }
    let request = GenerationRequest::from_value(body).map_err(|e| e.to_string())?;

    let (first_bar, bars) = (plan.start_bar, plan.bars);
    let mut job = JobRequest::new(request);
    let (start_quarters, source) = match (task.needs_source_audio(), captured) {
        (false, _) => (plan.start_quarters(), None),
        (true, None) => {
            return Err(format!(
                "{} needs audio: play bars {}–{} through the plugin with the transport running first",
                task_title(task),
                first_bar + 1,
                first_bar + bars
            ))
        }
        (true, Some(region)) => {
            let label = format!("capture, bars {}-{}", first_bar + 1, first_bar + bars);
            let tiled = Arc::new(plan.tile_source(&region.audio));
            job = job.with_source(AudioInput::Samples { label, audio: Arc::clone(&tiled) });
            (region.start_quarters, Some(tiled))
        }
    };
    let keyscale = (!draft.keyscale.is_empty()).then(|| draft.keyscale.clone());
    Ok((job, TakePlan { bars: plan, start_quarters, source, keyscale, options: draft.take_options }))
}

/// What a task is called in messages.
pub fn task_title(task: TaskType) -> &'static str {
    match task {
        TaskType::Text2Music => "Generate",
        TaskType::Repaint => "Repaint",
        TaskType::Cover => "Cover",
        TaskType::Lego => "Add a layer",
        TaskType::Extract => "Extract a stem",
        TaskType::Complete => "Complete",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backline_engine::audio::grid::TimeSignature;
    use backline_engine::request::Seed;

    fn grid(bpm: f64, meter: (u32, u32)) -> Grid {
        Grid::new(bpm, TimeSignature::new(meter.0, meter.1).unwrap(), 48_000.0).unwrap()
    }

    fn region(seconds: f64) -> CapturedRegion {
        let frames = (seconds * 44_100.0).round() as usize;
        CapturedRegion {
            audio: AudioBuffer::new(44_100, vec![vec![0.1; frames], vec![0.2; frames]]),
            start_quarters: 16.0,
            start_sample: 352_800,
        }
    }

    #[test]
    fn letting_the_model_plan_asks_for_thinking() {
        let draft = SessionState { caption: "lofi keys".into(), keyscale: "A minor".into(), plan_with_lm: true, ..Default::default() };
        let (job, _) = job_request(&draft, &grid(90.0, (4, 4)), None).unwrap();
        assert!(job.request.thinking);
        job.request.validate().expect("the grid gives the LM its tempo, meter and length");
        let unplanned = SessionState { plan_with_lm: false, ..draft.clone() };
        assert!(!job_request(&unplanned, &grid(90.0, (4, 4)), None).unwrap().0.request.thinking);
        // Without a key the LM chooses one; tempo, meter and length stay the DAW's.
        let keyless = SessionState { keyscale: String::new(), ..draft };
        let (job, _) = job_request(&keyless, &grid(90.0, (4, 4)), None).unwrap();
        assert!(job.request.thinking && job.request.keyscale.is_none());
        assert_eq!(job.request.bpm, Some(90));
    }

    #[test]
    fn a_short_text2music_loop_asks_for_whole_repeats_and_cuts_one() {
        let draft = SessionState { caption: "lofi keys".into(), keyscale: "F# minor".into(), start_bar: 8, length_bars: 4, seed: 7, ..Default::default() };
        let (job, plan) = job_request(&draft, &grid(120.0, (4, 4)), None).unwrap();
        let r = &job.request;
        // 4 bars at 120 = 8 s: two passes and a bar, 18 s.
        assert_eq!(r.duration, Some(18.0));
        assert_eq!((r.bpm, r.timesignature.as_deref(), r.keyscale.as_deref()), (Some(120), Some("4"), Some("F# minor")));
        assert_eq!(r.seed, Some(Seed::One(7)));
        assert_eq!(r.batch_size, Some(1));
        assert_eq!(plan.bars.take_frames, 8 * 48_000);
        assert_eq!(plan.start_quarters, 32.0);
        assert_eq!(plan.keyscale.as_deref(), Some("F# minor"));
        assert!(job.src.is_none() && plan.source.is_none());
    }

    #[test]
    fn lego_loops_the_captured_bars_and_adds_a_bar() {
        let draft = SessionState { task: TaskType::Lego, track_name: "bass".into(), length_bars: 4, ..Default::default() };
        // 93 BPM 7/8: a bar is 3.5 quarters = 2.258 s; 4 bars 9.03 s -> two passes plus a bar.
        let g = grid(93.0, (7, 8));
        let captured = region(g.bars_to_seconds(4.0));
        let (job, plan) = job_request(&draft, &g, Some(&captured)).unwrap();
        let r = &job.request;
        // The model knows 6 beats a bar nearest 7/8; the grid keeps 7/8.
        assert_eq!((r.task_type, r.track_name.as_deref(), r.bpm, r.timesignature.as_deref()), (TaskType::Lego, Some("bass"), Some(93), Some("6")));
        assert_eq!(plan.grid().meter().to_string(), "7/8");
        let Some(AudioInput::Samples { audio, label }) = &job.src else { panic!("source in memory") };
        assert_eq!(label, "capture, bars 1-4");
        // Two passes and a bar: 9 bars at the capture's rate.
        assert_eq!(audio.frames(), (g.bars_to_seconds(9.0) * 44_100.0).round() as usize);
        assert!(Arc::ptr_eq(audio, plan.source.as_ref().unwrap()), "the take is aligned to what the job got");
        assert_eq!(plan.start_quarters, 16.0, "the take goes where the capture was");
        assert_eq!(plan.bars.take_frames, (g.bars_to_seconds(4.0) * 48_000.0).round() as usize);
    }

    #[test]
    fn audio_tasks_without_a_capture_say_what_to_do() {
        for task in [TaskType::Cover, TaskType::Repaint, TaskType::Lego, TaskType::Extract, TaskType::Complete] {
            let draft = SessionState { task, ..Default::default() };
            let err = job_request(&draft, &grid(120.0, (4, 4)), None).unwrap_err();
            assert!(err.contains("play bars 1–4"), "{err}");
        }
    }

    #[test]
    fn each_task_carries_its_own_fields() {
        let g = grid(100.0, (3, 4));
        let captured = region(g.bars_to_seconds(8.0));
        let cover = SessionState { task: TaskType::Cover, strength: 0.3, length_bars: 8, ..Default::default() };
        let (job, _) = job_request(&cover, &g, Some(&captured)).unwrap();
        assert_eq!((job.request.audio_cover_strength, job.request.timesignature.as_deref()), (0.3, Some("3")));
        let repaint = SessionState { task: TaskType::Repaint, length_bars: 8, ..Default::default() };
        let (job, _) = job_request(&repaint, &g, Some(&captured)).unwrap();
        assert_eq!((job.request.repainting_start, job.request.repainting_end), (0.0, Some(g.bars_to_seconds(8.0))));
        let complete = SessionState { task: TaskType::Complete, track_name: "keyboard".into(), length_bars: 8, ..Default::default() };
        let (job, _) = job_request(&complete, &g, Some(&captured)).unwrap();
        assert_eq!(job.request.track_classes, vec!["keyboard".to_string()]);
        let steps = SessionState { steps: 4, model: "acestep-v15-turbo".into(), ..Default::default() };
        let (job, _) = job_request(&steps, &g, None).unwrap();
        assert_eq!((job.request.inference_steps, job.request.model.as_deref()), (Some(4), Some("acestep-v15-turbo")));
        assert_eq!(job.request.seed, None, "seed -1 draws a new one");
    }

    #[test]
    fn too_long_a_region_or_an_unusable_tempo_is_refused_in_words() {
        let draft = SessionState { length_bars: 400, ..Default::default() };
        let err = job_request(&draft, &grid(60.0, (4, 4)), None).unwrap_err();
        assert!(err.contains("at most 600"), "{err}");
        let err = job_request(&SessionState::default(), &grid(320.0, (4, 4)), None).unwrap_err();
        assert!(err.contains("30-300 BPM"), "{err}");
    }
}
