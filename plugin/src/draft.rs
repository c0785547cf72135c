//! The one place the editor's draft becomes an engine job: [`job_request`] maps the saved
//! [`SessionState`], the host grid (tempo, meter, rate) and the captured bars to a [`JobRequest`]
//! plus the [`TakePlan`] that says how to cut the result back to whole bars.
//!
//! The model makes 10 s to 600 s. A region shorter than 10 s is generated as a longer span of
//! whole repeats of it (the captured bars looped, for the audio tasks) and the first pass is
//! cut out; an audio task's source also gets one more bar so the cut never runs short.

use backline_engine::audio::grid::{Grid, TimeSignature};
use backline_engine::audio::AudioBuffer;
use backline_engine::backend::{AudioInput, JobRequest};
use backline_engine::request::{GenerationRequest, BPM_MAX, BPM_MIN, DURATION_MAX_S, DURATION_MIN_S, TIME_SIGNATURES};
use backline_engine::task::TaskType;
use serde_json::json;

use crate::capture_store::CapturedRegion;
use crate::state::SessionState;

/// How a finished generation becomes a take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TakePlan {
    pub start_bar: u32,
    pub bars: u32,
    /// Where the take's first sample sits, in quarter notes.
    pub start_quarters: f64,
    /// The host's tempo, meter and rate when the job was submitted.
    pub grid: Grid,
    /// Exactly `bars` bars at the host rate.
    pub frames: usize,
}

/// The draft as a job, or why it cannot run yet (in words for the editor).
pub fn job_request(
    draft: &SessionState,
    grid: &Grid,
    captured: Option<&CapturedRegion>,
) -> Result<(JobRequest, TakePlan), String> {
    let bars = draft.length_bars.max(1);
    let region_s = grid.bars_to_seconds(bars as f64);
    let bar_s = grid.bars_to_seconds(1.0);
    let repeats = (DURATION_MIN_S / region_s).ceil().max(1.0) as usize;
    let task = draft.task;
    let needs_source = task.needs_source_audio();
    let span_s = repeats as f64 * region_s + if needs_source { bar_s } else { 0.0 };
    if span_s > DURATION_MAX_S {
        return Err(format!(
            "{bars} bars at {:.2} BPM last {region_s:.1} s; the model makes at most {DURATION_MAX_S} s",
            grid.bpm()
        ));
    }

    let mut body = json!({
        "task_type": task.as_str(),
        "caption": draft.caption,
        "instrumental": draft.instrumental,
        "lyrics": if draft.instrumental { "" } else { draft.lyrics.as_str() },
        "batch_size": 1,
    });
    let bpm = grid.bpm().round();
    if (BPM_MIN as f64..=BPM_MAX as f64).contains(&bpm) {
        body["bpm"] = json!(bpm as u32);
    }
    if let Some(signature) = time_signature(grid.meter()) {
        body["timesignature"] = json!(signature);
    }
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
        // A multiple of 0.2 s is a whole number of latent frames, so the engine's rounding never
        // makes the audio shorter than asked.
        TaskType::Text2Music => body["duration"] = json!((span_s * 5.0).ceil() / 5.0),
        TaskType::Cover => body["audio_cover_strength"] = json!(draft.strength),
        // The first pass is repainted; the repeats around it are the context it must fit.
        TaskType::Repaint => {
            body["repainting_start"] = json!(0.0);
            body["repainting_end"] = json!(region_s);
        }
        TaskType::Lego | TaskType::Extract => body["track_name"] = json!(draft.track_name),
        TaskType::Complete => body["track_classes"] = json!([draft.track_name]),
    }
    let request = GenerationRequest::from_value(body).map_err(|e| e.to_string())?;

    let first_bar = draft.start_bar;
    let mut job = JobRequest::new(request);
    let start_quarters = match (needs_source, captured) {
        (false, _) => first_bar as f64 * grid.meter().quarters_per_bar(),
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
            job = job.with_source(AudioInput::samples(label, looped(&region.audio, repeats, bars)));
            region.start_quarters
        }
    };
    let frames = (grid.bars_to_seconds(bars as f64) * grid.sample_rate()).round() as usize;
    Ok((job, TakePlan { start_bar: first_bar, bars, start_quarters, grid: *grid, frames }))
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

/// The metas' time signature for a meter, when the model knows it ("4/4" is written "4").
fn time_signature(meter: TimeSignature) -> Option<String> {
    let full = meter.to_string();
    let short = meter.numerator.to_string();
    if meter.denominator == 4 && TIME_SIGNATURES.contains(&short.as_str()) {
        Some(short)
    } else {
        TIME_SIGNATURES.contains(&full.as_str()).then_some(full)
    }
}

/// `repeats` passes of the region and then its first bar again: a loop, long enough for the
/// model and for the cut.
fn looped(region: &AudioBuffer, repeats: usize, bars: u32) -> AudioBuffer {
    let frames = region.frames();
    let first_bar = (frames as f64 / bars as f64).round() as usize;
    let channels = region
        .channels
        .iter()
        .map(|c| {
            let mut out = Vec::with_capacity(frames * repeats + first_bar);
            for _ in 0..repeats {
                out.extend_from_slice(c);
            }
            out.extend_from_slice(&c[..first_bar.min(c.len())]);
            out
        })
        .collect();
    AudioBuffer::new(region.sample_rate, channels)
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn a_short_text2music_loop_asks_for_whole_repeats_and_cuts_one() {
        let draft = SessionState { caption: "lofi keys".into(), keyscale: "F# minor".into(), start_bar: 8, length_bars: 4, seed: 7, ..Default::default() };
        let (job, plan) = job_request(&draft, &grid(120.0, (4, 4)), None).unwrap();
        let r = &job.request;
        // 4 bars at 120 = 8 s: two passes, 16 s.
        assert_eq!(r.duration, Some(16.0));
        assert_eq!((r.bpm, r.timesignature.as_deref(), r.keyscale.as_deref()), (Some(120), Some("4"), Some("F# minor")));
        assert_eq!(r.seed, Some(Seed::One(7)));
        assert_eq!(r.batch_size, Some(1));
        assert_eq!(plan.frames, 8 * 48_000);
        assert_eq!(plan.start_quarters, 32.0);
        assert!(job.src.is_none());
    }

    #[test]
    fn lego_loops_the_captured_bars_and_adds_a_bar() {
        let draft = SessionState { task: TaskType::Lego, track_name: "bass".into(), length_bars: 4, ..Default::default() };
        // 93 BPM 7/8: a bar is 3.5 quarters = 2.258 s; 4 bars 9.03 s -> two passes plus a bar.
        let g = grid(93.0, (7, 8));
        let captured = region(g.bars_to_seconds(4.0));
        let (job, plan) = job_request(&draft, &g, Some(&captured)).unwrap();
        let r = &job.request;
        assert_eq!((r.task_type, r.track_name.as_deref(), r.bpm, r.timesignature.as_deref()), (TaskType::Lego, Some("bass"), Some(93), None));
        let Some(AudioInput::Samples { audio, label }) = &job.src else { panic!("source in memory") };
        assert_eq!(label, "capture, bars 1-4");
        assert_eq!(audio.frames(), captured.audio.frames() * 2 + (captured.audio.frames() as f64 / 4.0).round() as usize);
        assert_eq!(plan.start_quarters, 16.0, "the take goes where the capture was");
        assert_eq!(plan.frames, (g.bars_to_seconds(4.0) * 48_000.0).round() as usize);
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
    fn too_long_a_region_is_refused_in_words() {
        let draft = SessionState { length_bars: 400, ..Default::default() };
        let err = job_request(&draft, &grid(60.0, (4, 4)), None).unwrap_err();
        assert!(err.contains("at most 600"), "{err}");
    }
}
