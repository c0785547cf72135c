//! `backline generate --bars N`: a take planned in bars (`audio::bar_plan`) and shaped to them
//! (`audio::take_shape`). The request is asked for the plan's span, tempo and the meter the model
//! knows; an audio task's source is cut to the bars from `--start-bar` and tiled; each result is
//! aligned, conformed, optionally key-corrected and looped, and written exactly N bars long.

use std::path::Path;

use backline_engine::audio::analysis::meter_of;
use backline_engine::audio::bar_plan::{BarPlan, BarSpec};
use backline_engine::audio::conform::{cut, ConformMode, OctaveChoice};
use backline_engine::audio::seam::SeamFix;
use backline_engine::audio::take_shape::TakeOptions;
use backline_engine::audio::{read_audio, to_model_format, AudioBuffer, MODEL_SAMPLE_RATE};
use backline_engine::audio::seam::{seam_report, SeamRepaint};
use backline_engine::audio::take_shape::{shape_take, GridReport};
use backline_engine::backend::{AudioInput, Backend, JobRequest};
use backline_engine::pipeline::Generation;
use backline_engine::request::GenerationRequest;
use backline_engine::task::TaskType;
use clap::{Args, ValueEnum};

use crate::outputs::item_recipe;
use crate::progress;

/// The grid flags of `backline generate`.
#[derive(Args, Debug, Clone)]
pub struct BarFlags {
    /// Make each take exactly N bars at --bpm in --timesignature (which may then be any meter:
    /// 7/8, 5/4, 12/8; the model is told the nearest it knows). Needs --bpm.
    #[arg(long, value_name = "N")]
    pub bars: Option<u32>,
    /// The bar the take starts at, counted from 1: for audio tasks, the bar of --src-audio the
    /// region is cut from.
    #[arg(long, value_name = "BAR", default_value_t = 1, requires = "bars")]
    pub start_bar: u32,
    /// Make the take loop: its end runs into its start (with --bars).
    #[arg(long = "loop", requires = "bars")]
    pub looped: bool,
    /// How the result is cut to the bars: off (as made), trim (from its first beat) or stretch
    /// (trim, and beats stretched onto the grid where they are off it).
    #[arg(long, value_enum, default_value_t = Conform::Stretch, requires = "bars")]
    pub conform: Conform,
    /// A result in half or double time: keep it and flag it, or stretch it to the tempo.
    #[arg(long, value_enum, default_value_t = Octave::Flag, requires = "bars")]
    pub octave: Octave,
    /// Shift the pitch by the nearest interval to the requested --keyscale (with --bars).
    #[arg(long, requires = "bars")]
    pub correct_key: bool,
    /// How a --loop take's wrap is closed: repaint (the model repaints a bar across it: a second,
    /// shorter job) or crossfade (into what the model played after the last bar).
    #[arg(long, value_enum, default_value_t = Seam::Repaint, requires = "looped")]
    pub seam: Seam,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seam {
    Repaint,
    Crossfade,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conform {
    Off,
    Trim,
    Stretch,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Octave {
    Flag,
    Stretch,
}

/// A planned run: the plan, what to do with each result, and the tiled source of an audio task.
pub struct BarRun {
    pub plan: BarPlan,
    pub options: TakeOptions,
    pub source: Option<AudioBuffer>,
}

impl BarFlags {
    /// The plan, from the tempo and meter as given (`bpm` may have decimals; the meter any n/d).
    pub fn plan(&self, bpm: Option<&str>, meter: Option<&str>) -> Result<Option<BarPlan>, String> {
        let Some(bars) = self.bars else { return Ok(None) };
        let bpm = bpm.ok_or("--bars needs --bpm: the tempo the bars are counted at")?;
        let bpm: f64 = bpm.trim().parse().map_err(|_| format!("--bpm {bpm}: not a number"))?;
        let meter = match meter.map(str::trim) {
            None => (4, 4),
            Some(text) if text.contains('/') => {
                let (n, d) = text.split_once('/').expect("checked");
                let number = |part: &str| part.trim().parse::<u32>().map_err(|_| format!("--timesignature {text}: expected N/D, e.g. 7/8"));
                (number(n)?, number(d)?)
            }
            Some(text) => {
                let m = meter_of(Some(text));
                if m.to_string() == "4/4" && text != "4" {
                    return Err(format!("--timesignature {text}: expected 2, 3, 4, 6 or N/D, e.g. 7/8"));
                }
                (m.numerator, m.denominator)
            }
        };
        let start_bar = self.start_bar.checked_sub(1).ok_or("--start-bar counts from 1")?;
        let spec = BarSpec { bars, start_bar, bpm, meter, sample_rate: MODEL_SAMPLE_RATE as f64 };
        BarPlan::new(spec).map(Some).map_err(|e| format!("--bars {bars}: {e}"))
    }

    pub fn options(&self) -> TakeOptions {
        TakeOptions {
            conform: match self.conform {
                Conform::Off => ConformMode::Off,
                Conform::Trim => ConformMode::Trim,
                Conform::Stretch => ConformMode::Stretch,
            },
            octave: match self.octave {
                Octave::Flag => OctaveChoice::Flag,
                Octave::Stretch => OctaveChoice::Stretch,
            },
            looped: self.looped,
            correct_key: self.correct_key,
            seam: match self.seam {
                Seam::Repaint => SeamFix::Repaint,
                Seam::Crossfade => SeamFix::Crossfade,
            },
        }
    }
}

/// Each item of `generation` shaped to the run's bars; a loop's wrap repainted by the model when
/// asked (one more job per item, followed like the first).
pub fn shape_items(backend: &dyn Backend, run: &BarRun, generation: &Generation) -> Result<Vec<(AudioBuffer, GridReport)>, String> {
    let mut takes = Vec::new();
    for (i, made) in generation.audio.iter().enumerate() {
        let request = item_recipe(&generation.recipe, i).request;
        let (mut take, mut report) = shape_take(made, &run.plan, run.source.as_ref(), request.keyscale.as_deref(), run.options);
        if run.options.looped && run.options.seam == SeamFix::Repaint {
            eprintln!("repainting the loop's wrap ({} of {})", i + 1, generation.audio.len());
            let seam = SeamRepaint::new(&run.plan, &take);
            let mut repaint = request;
            repaint.task_type = TaskType::Repaint;
            repaint.src_audio = None;
            repaint.duration = None;
            (repaint.repainting_start, repaint.repainting_end) = (seam.window_s.0, Some(seam.window_s.1));
            let job = JobRequest::new(repaint).with_source(AudioInput::samples("the loop, its wrap mid-pass", seam.source.clone()));
            let repainted = progress::follow(&backend.submit(job)).map_err(|e| format!("repainting the loop's wrap: {e}"))?;
            let span = repainted.audio.first().ok_or("repainting the loop's wrap gave no audio")?;
            take = seam.finish(span);
            report.seam = seam_report(&take, Some(run.plan.grid.samples_per_beat()));
            report.seam_fix = Some(SeamFix::Repaint);
        }
        takes.push((take, report));
    }
    Ok(takes)
}

/// Ask `request` for what `plan` needs: the rounded tempo, the meter the model knows, the span
/// (text2music) or the repaint window (the first pass of the tiled source; a window given in
/// seconds counts from the region's start). A lego layers the whole tiled source, as the
/// plugin's does, so both give the same take for the same request.
pub fn apply_plan(plan: &BarPlan, request: &mut GenerationRequest, window_given: bool) {
    request.bpm = Some(plan.metas_bpm());
    request.timesignature = Some(plan.metas_timesignature().to_string());
    match request.task_type {
        TaskType::Text2Music => request.duration = Some(plan.request_duration_s()),
        TaskType::Repaint if !window_given => {
            let (start, end) = plan.repaint_window_s();
            request.repainting_start = start;
            request.repainting_end = Some(end);
        }
        _ => {}
    }
}

/// The region of the source file from the plan's start bar, tiled as the plan says, at the
/// model's rate: the audio the job gets in place of the file.
pub fn tiled_source(plan: &BarPlan, path: &Path) -> Result<(AudioInput, AudioBuffer), String> {
    let audio = read_audio(path).and_then(|a| to_model_format(&a)).map_err(|e| format!("--src-audio: {e}"))?;
    let start = plan.grid.bar_start_sample(plan.start_bar as i64);
    if start as usize >= audio.frames() {
        return Err(format!(
            "--start-bar {}: {} is {:.1} s long, and bar {} starts at {:.1} s",
            plan.start_bar + 1,
            path.display(),
            audio.duration_s(),
            plan.start_bar + 1,
            start as f64 / MODEL_SAMPLE_RATE as f64
        ));
    }
    let region = cut(&audio, start as isize, plan.take_frames);
    let tiled = plan.tile_source(&region);
    let label = format!("{}, bars {}-{}", path.display(), plan.start_bar + 1, plan.start_bar + plan.bars);
    Ok((AudioInput::samples(label, tiled.clone()), tiled))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(bars: u32) -> BarFlags {
        BarFlags {
            bars: Some(bars),
            start_bar: 1,
            looped: false,
            conform: Conform::Stretch,
            octave: Octave::Flag,
            correct_key: false,
            seam: Seam::Repaint,
        }
    }

    #[test]
    fn tempo_and_meter_are_read_as_a_daw_gives_them() {
        let plan = flags(4).plan(Some("93.5"), Some("7/8")).unwrap().unwrap();
        assert_eq!((plan.grid.bpm(), plan.grid.meter().to_string(), plan.metas_bpm()), (93.5, "7/8".into(), 94));
        let plan = flags(2).plan(Some("120"), Some("6")).unwrap().unwrap();
        assert_eq!(plan.grid.meter().to_string(), "6/8");
        assert_eq!(flags(2).plan(Some("120"), None).unwrap().unwrap().grid.meter().to_string(), "4/4");
    }

    #[test]
    fn bad_grids_are_refused_with_the_flag_to_change() {
        let err = |f: BarFlags, bpm: Option<&str>, meter: Option<&str>| f.plan(bpm, meter).unwrap_err();
        assert!(err(flags(4), None, None).contains("--bars needs --bpm"));
        assert!(err(flags(0), Some("120"), None).contains("0 bars"));
        assert!(err(flags(4), Some("20"), None).contains("30-300"));
        assert!(err(flags(4), Some("fast"), None).contains("not a number"));
        assert!(err(flags(4), Some("120"), Some("0/0")).contains("0/0"));
        assert!(err(flags(4), Some("120"), Some("waltz")).contains("expected 2, 3, 4, 6 or N/D"));
        assert!(err(BarFlags { start_bar: 0, ..flags(4) }, Some("120"), None).contains("counts from 1"));
        assert_eq!(BarFlags { bars: None, ..flags(4) }.plan(None, None), Ok(None));
    }
}
