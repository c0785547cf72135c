//! Bars out: a generated span becomes exactly the planned number of samples, with its beats on
//! the host's grid.
//!
//! - [`ConformMode::Off`]: the first `take_frames` samples as the model made them.
//! - [`ConformMode::Trim`]: the span moved by under half a beat so a beat is its sample 0 (the
//!   beat just after the start is taken from, or the one just before it is reached with silence
//!   in front); then cut, or padded with silence.
//! - [`ConformMode::Stretch`]: as trim, and where the beats would still land more than
//!   [`STRETCH_THRESHOLD_S`] off the grid, a time-stretch (pitch kept) that puts them on it: one
//!   ratio for a steady take, each found beat moved to its grid line when the tempo wanders by more
//!   than [`WANDER_LIMIT_S`].
//!
//! A take in half or double time is, by [`OctaveChoice`], either kept in its octave (each of its
//! beats is two grid beats, or half of one) and flagged, or stretched to the requested tempo.

use super::bar_plan::BarPlan;
use super::beats::{BeatTrack, TempoRelation};
use super::stretch::{warp, TimeMap};
use super::AudioBuffer;

/// Beats this far off the grid after trimming are stretched onto it: about where two hits a
/// producer lines up start to sound like a flam.
pub const STRETCH_THRESHOLD_S: f64 = 0.005;
/// A tempo that wanders this far from a straight line gets each beat moved, not one ratio.
pub const WANDER_LIMIT_S: f64 = 0.010;
/// The speed changes the stretcher is asked for at most (its clean range is 0.75 to 1.5):
/// further off, the take is flagged, not stretched.
pub const MAX_STRETCH: f64 = 1.25;

/// How a generated span is cut to the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConformMode {
    Off,
    Trim,
    #[default]
    Stretch,
}

impl ConformMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "off" => Some(Self::Off),
            "trim" => Some(Self::Trim),
            "stretch" => Some(Self::Stretch),
            _ => None,
        }
    }
}

/// What to do with a take in half or double time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OctaveChoice {
    /// Keep its feel: its beats are put on every other grid beat (or between them), and the
    /// relation is reported.
    #[default]
    Flag,
    /// Stretch it to the requested tempo.
    Stretch,
}

/// What the conform did, for the recipe and the editor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Correction {
    pub mode: ConformMode,
    /// Seconds taken off the start so a beat is the take's first sample (negative: silence put
    /// in front).
    pub offset_s: f64,
    /// The largest distance of a found beat from the host's grid, before and after, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grid_error_before_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grid_error_after_s: Option<f64>,
    /// Output seconds per input second, when stretched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stretch_ratio: Option<f64>,
    /// Found beats moved one by one onto their lines (0: one ratio, or no stretch).
    pub beats_moved: usize,
    /// Why less was done than asked ("no beat found: ...", "measured 150 BPM, too far from 120").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `frames` samples (the plan's take, or more for a loop to close) of `span` (at the plan's
/// rate) by `mode`, with the beats `track` found in it. An `anchored` span's sample 0 is already
/// a bar line (a result put back on its source): it is stretched where its beats are off, never
/// moved.
pub fn conform(
    span: &AudioBuffer,
    plan: &BarPlan,
    frames: usize,
    mode: ConformMode,
    octave: OctaveChoice,
    anchored: bool,
    track: Result<&BeatTrack, String>,
) -> (AudioBuffer, Correction) {
    let rate = span.sample_rate as f64;
    let mut correction = Correction {
        mode,
        offset_s: 0.0,
        grid_error_before_s: None,
        grid_error_after_s: None,
        stretch_ratio: None,
        beats_moved: 0,
        note: None,
    };
    if mode == ConformMode::Off {
        return (cut(span, 0, frames), correction);
    }
    let track = match track {
        Ok(track) => track,
        Err(problem) => {
            correction.note = Some(problem);
            return (cut(span, 0, frames), correction);
        }
    };
    let grid_beat_s = plan.grid.samples_per_beat() / rate;
    let measured_period_s = 60.0 / track.bpm * plan.grid.meter().quarters_per_beat();
    let phase_s = match track.phase_s {
        _ if anchored => 0.0,
        phase if phase > measured_period_s / 2.0 => phase - measured_period_s,
        phase => phase,
    };
    let offset = (phase_s * rate).round() as isize;
    correction.offset_s = offset as f64 / rate;

    // Grid beats per measured beat.
    let (factor, too_far) = match (track.relation, octave) {
        (TempoRelation::HalfTime, OctaveChoice::Flag) => (2.0, None),
        (TempoRelation::DoubleTime, OctaveChoice::Flag) => (0.5, None),
        (TempoRelation::OnTempo | TempoRelation::HalfTime | TempoRelation::DoubleTime, _) => (1.0, None),
        (TempoRelation::Other { ratio }, _) if (1.0 / MAX_STRETCH..=MAX_STRETCH).contains(&ratio) => (1.0, None),
        (TempoRelation::Other { .. }, _) => (
            1.0,
            Some(format!("measured {:.1} BPM, too far from {:.1} BPM to stretch", track.bpm, plan.grid.bpm())),
        ),
    };
    // Each found beat: where it is in the trimmed span, and its grid line.
    let anchors: Vec<(f64, f64)> = track
        .beats
        .iter()
        .map(|&t| {
            let index = ((t - phase_s) / measured_period_s).round();
            (t - correction.offset_s, index * factor * grid_beat_s)
        })
        .collect();
    let before = anchors.iter().map(|&(x, y)| (x - y).abs()).fold(0.0, f64::max);
    correction.grid_error_before_s = Some(before);
    let trimmed = cut(span, offset, (span.frames() as isize - offset).max(0) as usize);
    if mode == ConformMode::Trim || before <= STRETCH_THRESHOLD_S || too_far.is_some() {
        correction.note = too_far;
        correction.grid_error_after_s = Some(before);
        return (cut(&trimmed, 0, frames), correction);
    }

    let slope = slope_through_origin(&anchors);
    correction.stretch_ratio = Some(slope);
    if (1.0 / slope).max(slope) > MAX_STRETCH {
        correction.note = Some(format!(
            "a stretch by {slope:.2} is outside the stretcher's clean range; flagged, not stretched"
        ));
        correction.stretch_ratio = None;
        correction.grid_error_after_s = Some(before);
        return (cut(&trimmed, 0, frames), correction);
    }
    let map = if track.drift_s > WANDER_LIMIT_S {
        correction.beats_moved = anchors.len();
        TimeMap::new(std::iter::once((0.0, 0.0)).chain(anchors.iter().map(|&(x, y)| (x * rate, y * rate))))
    } else {
        TimeMap::constant(slope)
    };
    let after = anchors.iter().map(|&(x, y)| (map.at(x * rate) / rate - y).abs()).fold(0.0, f64::max);
    correction.grid_error_after_s = Some(after);
    (warp(&trimmed, &map, 0.0, frames), correction)
}

/// The least-squares slope of `y = slope · x` through the points.
fn slope_through_origin(points: &[(f64, f64)]) -> f64 {
    let xy: f64 = points.iter().map(|&(x, y)| x * y).sum();
    let xx: f64 = points.iter().map(|&(x, _)| x * x).sum();
    if xx > 0.0 { xy / xx } else { 1.0 }
}

/// `frames` samples of `audio` from `start` (negative: that much silence first), padded with
/// silence past its end.
pub fn cut(audio: &AudioBuffer, start: isize, frames: usize) -> AudioBuffer {
    let channels = audio
        .channels
        .iter()
        .map(|c| {
            (0..frames as isize)
                .map(|i| usize::try_from(start + i).ok().and_then(|j| c.get(j)).copied().unwrap_or(0.0))
                .collect()
        })
        .collect();
    AudioBuffer::new(audio.sample_rate, channels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::bar_plan::BarSpec;
    use crate::audio::beats::track_beats;
    use crate::audio::grid::TimeSignature;
    use crate::audio::test_music::{beat_times, drums, render, Voice, SR};

    fn plan(bars: u32, bpm: f64, meter: (u32, u32)) -> BarPlan {
        BarPlan::new(BarSpec { bars, start_bar: 0, bpm, meter, sample_rate: SR as f64 }).unwrap()
    }

    /// The largest distance of a found beat from the plan's grid lines (from sample 0), seconds.
    fn grid_error(take: &AudioBuffer, plan: &BarPlan) -> f64 {
        let track = track_beats(take, plan.grid.bpm(), plan.grid.meter()).unwrap();
        let beat = plan.grid.samples_per_beat() / SR as f64;
        track.beats.iter().map(|&t| (t - (t / beat).round() * beat).abs()).fold(0.0, f64::max)
    }

    fn conformed(span: &AudioBuffer, plan: &BarPlan, mode: ConformMode, octave: OctaveChoice) -> (AudioBuffer, Correction) {
        let track = track_beats(span, plan.grid.bpm(), plan.grid.meter()).map_err(|e| e.to_string());
        conform(span, plan, plan.take_frames, mode, octave, false, track.as_ref().map_err(Clone::clone))
    }

    #[test]
    fn trim_starts_the_take_on_its_first_beat_and_cuts_it_exact() {
        // 4 bars of 4/4 at 120, the model's beats 37 ms late.
        let p = plan(4, 120.0, (4, 4));
        let m = TimeSignature::FOUR_FOUR;
        let span = render(&drums(120.0, m, 0.037, 18.0, 0.0), 18.0);
        let (take, correction) = conformed(&span, &p, ConformMode::Trim, OctaveChoice::Flag);
        assert_eq!(take.frames(), p.take_frames);
        assert!((correction.offset_s - 0.037).abs() < 0.002, "{correction:?}");
        assert!(grid_error(&take, &p) < 0.003, "{}", grid_error(&take, &p));
        assert_eq!(correction.stretch_ratio, None);
        // Beats 0.45 s in (the model started 50 ms early of a beat): 50 ms of silence in front, the
        // take does not lose a beat.
        let early = render(&drums(120.0, m, 0.45, 18.0, 0.0), 18.0);
        let (take, correction) = conformed(&early, &p, ConformMode::Trim, OctaveChoice::Flag);
        assert!((correction.offset_s + 0.05).abs() < 0.002, "{correction:?}");
        assert!(take.channels[0][..2300].iter().all(|&v| v == 0.0));
        assert!(grid_error(&take, &p) < 0.003, "{}", grid_error(&take, &p));
        // Off: the first samples as made, beats still late.
        let (take, correction) = conformed(&span, &p, ConformMode::Off, OctaveChoice::Flag);
        assert_eq!((take.frames(), correction.offset_s), (p.take_frames, 0.0));
        assert!(grid_error(&take, &p) > 0.03);
    }

    #[test]
    fn stretch_puts_a_take_off_its_tempo_on_the_grid() {
        // Asked for 120 in 7/8 and 100 in 3/4, the model played 2 % fast and 1.5 % slow.
        for (bpm, meter, played) in [(120.0, (7, 8), 122.4), (100.0, (3, 4), 98.5)] {
            let p = plan(4, bpm, meter);
            let m = TimeSignature::new(meter.0, meter.1).unwrap();
            let span = render(&drums(played, m, 0.021, 20.0, 0.0), 20.0);
            let (trimmed, _) = conformed(&span, &p, ConformMode::Trim, OctaveChoice::Flag);
            let (take, correction) = conformed(&span, &p, ConformMode::Stretch, OctaveChoice::Flag);
            assert_eq!(take.frames(), p.take_frames);
            let ratio = correction.stretch_ratio.expect("stretched");
            assert!((ratio - played / bpm).abs() < 0.002, "{ratio} for {played}/{bpm}");
            let (before, after) = (grid_error(&trimmed, &p), grid_error(&take, &p));
            assert!(before > 0.05 && after < 0.004, "{meter:?}: {before} s before, {after} s after");
            let tempo = track_beats(&take, bpm, m).unwrap().bpm;
            assert!((tempo / bpm - 1.0).abs() < 0.002, "{tempo}");
        }
    }

    #[test]
    fn a_wandering_tempo_has_each_beat_moved_onto_its_line() {
        // Kick and snare at 120 speeding up by 3 % over 18 s: ~30 ms off a straight line.
        let mut events = Vec::new();
        let mut t = 0.05;
        let mut k = 0;
        while t < 17.9 {
            events.push((t, if k % 2 == 0 { Voice::Kick } else { Voice::Snare }, 0.8));
            t += 60.0 / (120.0 * (1.0 + 0.03 * t / 18.0));
            k += 1;
        }
        let span = render(&events, 18.0);
        let p = plan(4, 120.0, (4, 4));
        let (take, correction) = conformed(&span, &p, ConformMode::Stretch, OctaveChoice::Flag);
        assert!(correction.beats_moved > 10, "{correction:?}");
        assert!(grid_error(&take, &p) < 0.004, "{}", grid_error(&take, &p));
    }

    #[test]
    fn half_time_is_kept_and_flagged_or_stretched_as_chosen() {
        let p = plan(4, 120.0, (4, 4));
        let m = TimeSignature::FOUR_FOUR;
        // Asked for 120, played at 60 (and 1 % slow) with nothing between its beats: they are
        // every other grid beat.
        let events: Vec<_> = beat_times(59.4, m, 0.0, 20.0)
            .into_iter()
            .flat_map(|(t, pos)| [(t, if pos % 2 == 0 { Voice::Kick } else { Voice::Snare }, 0.8), (t, Voice::Bass(55.0), 0.5)])
            .collect();
        let span = render(&events, 20.0);
        let (take, correction) = conformed(&span, &p, ConformMode::Stretch, OctaveChoice::Flag);
        let ratio = correction.stretch_ratio.expect("1 % off is stretched");
        assert!((ratio - 0.99).abs() < 0.003, "{ratio}");
        let track = track_beats(&take, 120.0, m).unwrap();
        assert_eq!(track.relation, TempoRelation::HalfTime);
        assert!((track.bpm - 60.0).abs() < 0.15, "{}", track.bpm);
        // Stretching an octave is outside the clean range: flagged, not stretched.
        let (_, correction) = conformed(&span, &p, ConformMode::Stretch, OctaveChoice::Stretch);
        assert_eq!(correction.stretch_ratio, None);
        assert!(correction.note.unwrap().contains("clean range"));
    }

    #[test]
    fn silence_is_cut_to_length_with_the_reason() {
        let p = plan(3, 93.0, (7, 8));
        let silent = AudioBuffer::silence(SR, 2, 5 * SR as usize);
        let (take, correction) = conformed(&silent, &p, ConformMode::Stretch, OctaveChoice::Flag);
        assert_eq!(take.frames(), p.take_frames, "padded to the plan");
        assert!(correction.note.unwrap().starts_with("no beat found"));
    }
}
