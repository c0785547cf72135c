//! One generated span becomes the planned take, in the order that keeps each step's measurement
//! true: put it back on its source (audio tasks), track its beats, conform it to the grid,
//! correct its key if asked, then close it as a loop or cut it to exact bars. [`GridReport`] says
//! what was found and done, for the recipe, the editor and the server.

use serde::{Deserialize, Serialize};

use super::align::{estimate_lag, remove_lag, Alignment};
use super::bar_plan::BarPlan;
use super::beats::track_beats;
use super::conform::{conform, cut, ConformMode, Correction, OctaveChoice};
use super::key::{estimate_key, Key, Mode};
use super::seam::{close_loop, seam_report, SeamFix, SeamReport, LOOP_FADE_S};
use super::stretch::pitch_shift;
use super::AudioBuffer;

/// What a front end asks of the grid for one take (a field left out of a saved one is its
/// default).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TakeOptions {
    pub conform: ConformMode,
    pub octave: OctaveChoice,
    /// Make the take's end run into its start.
    #[serde(rename = "loop")]
    pub looped: bool,
    /// How a loop's wrap is closed: [`shape_take`] crossfades; a front end with the model at hand
    /// may then have it repaint the wrap ([`SeamRepaint`](super::seam::SeamRepaint)).
    pub seam: SeamFix,
    /// Shift the pitch by the nearest interval to the requested key (off by default).
    pub correct_key: bool,
}

/// What shaping a take found and did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridReport {
    pub bars: u32,
    /// Counted from 0.
    pub start_bar: u32,
    pub bpm: f64,
    /// The real meter ("7/8"), and what the model's metas were told ("6").
    pub meter: String,
    pub metas_timesignature: String,
    pub sample_rate: u32,
    /// Exactly `bars` bars.
    pub frames: usize,
    pub options: TakeOptions,
    /// The result's lag against its source (audio tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alignment: Option<Alignment>,
    pub correction: Correction,
    /// Semitones the pitch was moved by (key correction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_shift_semitones: Option<i32>,
    /// Why the key was left alone although a correction was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_note: Option<String>,
    /// How the loop's wrap compares with the rest of it (loops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seam: Option<SeamReport>,
    /// How the wrap was closed (loops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seam_fix: Option<SeamFix>,
}

/// Shape `span` (at the plan's rate; for an audio task, `source` is the tiled source it was made
/// from, at the same rate) into the planned take. `keyscale` is the request's key.
pub fn shape_take(
    span: &AudioBuffer,
    plan: &BarPlan,
    source: Option<&AudioBuffer>,
    keyscale: Option<&str>,
    options: TakeOptions,
) -> (AudioBuffer, GridReport) {
    let grid = plan.grid;
    let alignment = source.and_then(|src| estimate_lag(src, span));
    let aligned = match alignment {
        Some(found) if found.applied => remove_lag(span, found.lag_frames),
        _ => span.clone(),
    };
    // An aligned result's sample 0 is the source's, which is a bar line: its beats are looked
    // for, but it is not moved again.
    let anchored = source.is_some();
    let track = track_beats(&aligned, grid.bpm(), grid.meter()).map_err(|e| e.to_string());
    let fade = if options.looped { (LOOP_FADE_S * grid.sample_rate()).round() as usize } else { 0 };
    let (mut conformed, correction) =
        conform(&aligned, plan, plan.take_frames + fade, options.conform, options.octave, anchored, track.as_ref().map_err(Clone::clone));

    let (mut key_shift_semitones, mut key_note) = (None, None);
    if options.correct_key {
        match key_shift(&conformed, keyscale) {
            Ok(0) => key_shift_semitones = Some(0),
            Ok(semitones) => {
                conformed = pitch_shift(&conformed, semitones as f32);
                key_shift_semitones = Some(semitones);
            }
            Err(why) => key_note = Some(why),
        }
    }

    let (take, seam) = if options.looped {
        let take = close_loop(&conformed, plan.take_frames);
        let seam = seam_report(&take, Some(grid.samples_per_beat()));
        (take, seam)
    } else {
        (cut(&conformed, 0, plan.take_frames), None)
    };
    let report = GridReport {
        bars: plan.bars,
        start_bar: plan.start_bar,
        bpm: grid.bpm(),
        meter: grid.meter().to_string(),
        metas_timesignature: plan.metas_timesignature().to_string(),
        sample_rate: span.sample_rate,
        frames: take.frames(),
        options,
        alignment,
        correction,
        key_shift_semitones,
        key_note,
        seam,
        seam_fix: options.looped.then_some(SeamFix::Crossfade),
    };
    (take, report)
}

/// Semitones that move `audio`'s estimated key onto the requested one by the nearer way round.
/// Between a major and a minor key the shift lines up their notes (A minor onto E♭ major moves
/// to C minor, E♭'s relative minor), so the correction never changes a take's mode.
fn key_shift(audio: &AudioBuffer, keyscale: Option<&str>) -> Result<i32, String> {
    let wanted = keyscale.ok_or("the request names no key")?;
    let wanted = Key::parse(wanted).ok_or_else(|| format!("\"{wanted}\" is not a key this can correct to"))?;
    let found = estimate_key(audio).map_err(|e| e.to_string())?.key;
    // Compare the keys' notes: each key as its relative major's tonic.
    let major_tonic = |key: Key| match key.mode {
        Mode::Major => key.tonic,
        Mode::Minor => (key.tonic + 3) % 12,
    };
    let as_major = |tonic| Key { tonic, mode: Mode::Major };
    Ok(as_major(major_tonic(found)).semitones_to(&as_major(major_tonic(wanted))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::bar_plan::BarSpec;
    use crate::audio::grid::TimeSignature;
    use crate::audio::test_music::{beat_times, drums, render, Voice, SR};

    fn plan(bars: u32, bpm: f64, meter: (u32, u32)) -> BarPlan {
        BarPlan::new(BarSpec { bars, start_bar: 0, bpm, meter, sample_rate: SR as f64 }).unwrap()
    }

    #[test]
    fn a_loop_take_is_exact_bars_on_the_grid_with_a_seamless_wrap() {
        // Asked for 4 bars of 4/4 at 120; the model played 121.5 BPM, 30 ms late, over 18 s.
        let p = plan(4, 120.0, (4, 4));
        let span = render(&drums(121.5, TimeSignature::FOUR_FOUR, 0.03, 18.0, 0.0), 18.0);
        let options = TakeOptions { looped: true, ..Default::default() };
        let (take, report) = shape_take(&span, &p, None, None, options);
        assert_eq!((take.frames(), report.frames), (p.take_frames, p.take_frames));
        assert!(report.correction.stretch_ratio.is_some(), "{report:?}");
        assert!(report.correction.grid_error_after_s.unwrap() < 0.004, "{report:?}");
        let seam = report.seam.unwrap();
        assert!(seam.seamless, "{seam:?}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!((json["meter"].as_str(), json["options"]["loop"].as_bool()), (Some("4/4"), Some(true)));
    }

    #[test]
    fn a_layer_is_put_back_on_its_source() {
        // 2 bars of 7/8 at 93, tiled; the "lego" result is the source's beats as bass notes,
        // 61 ms late.
        let p = plan(2, 93.0, (7, 8));
        let m = TimeSignature::new(7, 8).unwrap();
        let region = render(&drums(93.0, m, 0.0, p.region_s(), 0.0), p.region_s());
        let source = p.tile_source(&region);
        let seconds = source.duration_s();
        let events: Vec<_> = beat_times(93.0, m, 0.061, seconds).into_iter().map(|(t, _)| (t, Voice::Bass(55.0), 0.6)).collect();
        let result = render(&events, seconds);
        let (take, report) = shape_take(&result, &p, Some(&source), None, TakeOptions::default());
        let alignment = report.alignment.unwrap();
        assert!(alignment.applied && (alignment.lag_ms - 61.0).abs() < 1.0, "{alignment:?}");
        assert_eq!(report.correction.offset_s, 0.0, "an aligned result is not moved again");
        // The first note now starts at the take's first sample.
        let first = take.channels[0].iter().position(|v| v.abs() > 1e-3).unwrap();
        assert!((first as f64) < 0.001 * SR as f64, "first sound at sample {first}");
        assert_eq!(take.frames(), p.take_frames);
    }

    #[test]
    fn the_key_is_corrected_only_when_asked() {
        // An A-minor arpeggio asked to be in C minor: 3 semitones up.
        let p = plan(4, 100.0, (4, 4));
        let notes = [57, 60, 64, 69, 64, 60, 57, 52];
        let events: Vec<_> = beat_times(100.0, TimeSignature::FOUR_FOUR, 0.0, 12.0)
            .into_iter()
            .enumerate()
            .map(|(k, (t, _))| (t, Voice::Bass(440.0 * 2f32.powf((notes[k % notes.len()] - 69) as f32 / 12.0)), 0.5))
            .collect();
        let span = render(&events, 12.0);
        let (_, report) = shape_take(&span, &p, None, Some("C minor"), TakeOptions::default());
        assert_eq!(report.key_shift_semitones, None, "off by default");
        let options = TakeOptions { correct_key: true, ..Default::default() };
        let (take, report) = shape_take(&span, &p, None, Some("C minor"), options);
        assert_eq!(report.key_shift_semitones, Some(3));
        assert_eq!(estimate_key(&take).unwrap().key.to_string(), "C minor");
        // Its relative major needs no shift; no key asked is said so.
        let (_, report) = shape_take(&span, &p, None, Some("C major"), options);
        assert_eq!(report.key_shift_semitones, Some(0));
        let (_, report) = shape_take(&span, &p, None, None, options);
        assert_eq!(report.key_note.as_deref(), Some("the request names no key"));
    }
}
