//! Takes as files: a generation cut to its bars at the host rate ([`cut_to_plan`]), written as a
//! WAV file in the take folder with its SHA-256 ([`write_take`]), and read back when a project
//! opens ([`load_take`]), where a missing or changed file is a notice, never a failed load.
//!
//! Runs on the engine worker (new takes) and the session's service thread (reloads), never on
//! the audio thread.

use std::path::{Path, PathBuf};

use backline_engine::audio::beats::TempoRelation;
use backline_engine::audio::seam::SeamRepaint;
use backline_engine::audio::take_shape::{shape_take, GridReport};
use backline_engine::audio::{decode_bytes, resample, to_stereo, write_audio, AudioBuffer, AudioError, OutputFormat};
use backline_engine::pipeline::recipe::{hex, Recipe};
use backline_engine::pipeline::Generation;
use sha2::{Digest, Sha256};

use crate::draft::TakePlan;
use crate::playback::{Placement, TakeAudio};
use crate::state::{SavedPlacement, TakeRecord};

/// The engine's audio as a take: stereo at the host rate, shaped to the plan's bars (aligned to
/// the captured bars, conformed to the grid, exactly the plan's length), with the report of what
/// was done.
pub fn cut_to_plan(audio: &AudioBuffer, plan: &TakePlan) -> Result<(TakeAudio, GridReport), String> {
    let host_rate = plan.grid().sample_rate().round() as u32;
    let stereo = to_stereo(audio).and_then(|a| resample(&a, host_rate)).map_err(|e| e.to_string())?;
    let (take, report) = shape_take(&stereo, &plan.bars, plan.source.as_deref(), plan.keyscale.as_deref(), plan.options);
    let mut channels = take.channels.into_iter();
    let (left, right) = (channels.next().unwrap_or_default(), channels.next().unwrap_or_default());
    Ok((TakeAudio { left, right, sample_rate: host_rate as f32 }, report))
}

/// A loop's wrap as the model repainted it (`generation` answered `seam`'s job): at the host
/// rate, rotated back and closed.
pub fn repainted_loop(generation: &Generation, seam: &SeamRepaint, plan: &TakePlan) -> Result<TakeAudio, String> {
    let span = generation.audio.first().ok_or("the repaint gave no audio")?;
    let host_rate = plan.grid().sample_rate().round() as u32;
    let span = to_stereo(span).and_then(|a| resample(&a, host_rate)).map_err(|e| e.to_string())?;
    let looped = seam.finish(&span);
    let mut channels = looped.channels.into_iter();
    let (left, right) = (channels.next().unwrap_or_default(), channels.next().unwrap_or_default());
    Ok(TakeAudio { left, right, sample_rate: host_rate as f32 })
}

/// What a take's recipe says of its grid, for the take list: a short tag beside its name
/// ("loop, stretched +1.2 %", "half time", "key: E minor") and the lines of its details.
pub fn grid_summary(recipe: &Recipe) -> (String, Vec<String>) {
    let mut tags = Vec::new();
    let mut lines = Vec::new();
    let grid = recipe.grid.as_ref();
    if let Some(tempo) = recipe.analysis.as_ref().and_then(|a| a.tempo.as_ref()) {
        match (&tempo.measured, &tempo.problem) {
            (Some(track), _) => {
                let relation = match track.relation {
                    TempoRelation::OnTempo => "on tempo".to_string(),
                    TempoRelation::HalfTime => "half time".to_string(),
                    TempoRelation::DoubleTime => "double time".to_string(),
                    TempoRelation::Other { ratio } => format!("{ratio:.2}× the tempo"),
                };
                if track.relation != TempoRelation::OnTempo {
                    tags.push(relation.clone());
                }
                lines.push(format!("Tempo: {:.2} BPM measured, {relation}", track.bpm));
            }
            (None, Some(problem)) => lines.push(format!("Tempo: {problem}")),
            (None, None) => {}
        }
    }
    if let Some(correction) = grid.map(|g| &g.correction) {
        if let Some(ratio) = correction.stretch_ratio {
            tags.push(format!("stretched {:+.1} %", (ratio - 1.0) * 100.0));
        }
        if let (Some(before), Some(after)) = (correction.grid_error_before_s, correction.grid_error_after_s) {
            lines.push(format!("Beats off the grid: {:.1} ms, {:.1} ms after", before * 1e3, after * 1e3));
        }
        if let Some(note) = &correction.note {
            lines.push(format!("Not conformed: {note}"));
        }
    }
    if let Some(alignment) = grid.and_then(|g| g.alignment).filter(|a| a.applied) {
        lines.push(format!("Put back on the captured bars: {:+.1} ms lag removed", alignment.lag_ms));
    }
    if let Some(key) = recipe.analysis.as_ref().map(|a| &a.key) {
        match (&key.measured, &key.requested) {
            (Some(found), Some(asked)) => {
                if key.matches == Some(false) {
                    tags.push(format!("key: {found}"));
                }
                lines.push(format!("Key: {found} (asked {asked})"));
            }
            (Some(found), None) => lines.push(format!("Key: {found}")),
            (None, _) => lines.extend(key.problem.as_ref().map(|p| format!("Key: {p}"))),
        }
    }
    if let Some(shift) = grid.and_then(|g| g.key_shift_semitones).filter(|&s| s != 0) {
        lines.push(format!("Pitch moved {shift:+} semitones to the asked key"));
    }
    if let Some(seam) = grid.and_then(|g| g.seam) {
        tags.insert(0, if seam.seamless { "loop".into() } else { "loop (audible seam)".into() });
        lines.push(format!(
            "Loop seam: flux {:.2}× the loop's beats, level step {:.1} dB (theirs {:.1} dB)",
            seam.flux_ratio, seam.level_step_db, seam.median_level_step_db
        ));
    }
    if let Some(lm) = &recipe.lm {
        tags.insert(0, "planned".into());
        let codes = lm.audio_codes.first().map_or(0, |c| c.matches("<|audio_code_").count());
        lines.push(format!("Planned by {}: {codes} audio codes from {}", lm.model.folder, plan_summary(&lm.chain_of_thought)));
    }
    (tags.join(", "), lines)
}

/// The chain of thought's fields on one line ("bpm 90, duration 8, keyscale A minor, ...").
fn plan_summary(chain_of_thought: &str) -> String {
    let plan = backline_engine::lm::plan::Plan::parse(chain_of_thought);
    let mut parts = Vec::new();
    let number = |v: &backline_engine::lm::plan::Value| match v {
        backline_engine::lm::plan::Value::Int(i) => i.to_string(),
        backline_engine::lm::plan::Value::Text(t) => t.clone(),
    };
    if let Some(v) = &plan.bpm {
        parts.push(format!("{} BPM", number(v)));
    }
    if let Some(k) = &plan.keyscale {
        parts.push(k.clone());
    }
    if let Some(t) = &plan.timesignature {
        parts.push(format!("{t} beats a bar"));
    }
    if let Some(v) = &plan.duration {
        parts.push(format!("{} s", number(v)));
    }
    parts.join(", ")
}

/// The placement a take of `plan` plays at.
pub fn saved_placement(plan: &TakePlan) -> SavedPlacement {
    SavedPlacement { start_quarters: plan.start_quarters, bpm: plan.grid().bpm(), gain: 1.0 }
}

/// The placement at the host's current rate.
pub fn placement(saved: &SavedPlacement, sample_rate: f32) -> Placement {
    Placement {
        start_quarters: saved.start_quarters,
        samples_per_quarter: sample_rate as f64 * 60.0 / saved.bpm,
        gain: saved.gain,
    }
}

/// A file name that says what the take is: "007 lego bass s1234.wav".
pub fn file_name(id: u64, what: &str, seed: Option<u32>) -> String {
    let words: String = what
        .chars()
        .map(|c| if c.is_alphanumeric() || c == ' ' || c == '-' { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ");
    let seed = seed.map(|s| format!(" s{s}")).unwrap_or_default();
    format!("{id:03} {words}{seed}.wav")
}

/// Writes the take as 32-bit float WAV in `folder` (created if needed); returns its path and
/// the SHA-256 of the file's bytes.
pub fn write_take(folder: &Path, name: &str, take: &TakeAudio) -> Result<(PathBuf, String), String> {
    std::fs::create_dir_all(folder).map_err(|e| format!("cannot create the take folder {}: {e}", folder.display()))?;
    let buffer = AudioBuffer::new(take.sample_rate.round() as u32, vec![take.left.clone(), take.right.clone()]);
    // Another instance (or project) may use the same folder: never overwrite, take the next name.
    let stem = name.strip_suffix(".wav").unwrap_or(name);
    let mut path = folder.join(name);
    for n in 2.. {
        match write_audio(&path, &buffer, OutputFormat::WavF32, false) {
            Ok(()) => break,
            Err(AudioError::AlreadyExists { .. }) if n < 1000 => path = folder.join(format!("{stem} ({n}).wav")),
            Err(e) => return Err(e.to_string()),
        }
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read back {}: {e}", path.display()))?;
    Ok((path, sha256_hex(&bytes)))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Why a saved take could not be played.
#[derive(Debug, Clone, PartialEq)]
pub enum TakeLoadError {
    Missing { path: String },
    Changed { path: String },
    Unreadable { path: String, reason: String },
}

impl std::fmt::Display for TakeLoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { path } => write!(f, "its file {path} is missing (moved or deleted)"),
            Self::Changed { path } => write!(f, "its file {path} was changed since Backline wrote it"),
            Self::Unreadable { path, reason } => write!(f, "its file {path} cannot be read: {reason}"),
        }
    }
}

/// Reads a take's file, checks its hash, and converts it to the host rate.
pub fn load_take(record: &TakeRecord, sample_rate: f32) -> Result<TakeAudio, TakeLoadError> {
    let path = record.file.clone();
    let bytes = std::fs::read(&record.file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TakeLoadError::Missing { path: path.clone() },
        _ => TakeLoadError::Unreadable { path: path.clone(), reason: e.to_string() },
    })?;
    if sha256_hex(&bytes) != record.audio_sha256 {
        return Err(TakeLoadError::Changed { path });
    }
    let unreadable = |reason: String| TakeLoadError::Unreadable { path: path.clone(), reason };
    let audio = decode_bytes(&bytes, Some("wav")).map_err(|e| unreadable(e.to_string()))?;
    let audio = to_stereo(&audio).and_then(|a| resample(&a, sample_rate.round() as u32)).map_err(|e| unreadable(e.to_string()))?;
    let mut channels = audio.channels.into_iter();
    let (left, right) = (channels.next().unwrap_or_default(), channels.next().unwrap_or_default());
    Ok(TakeAudio { left, right, sample_rate })
}

#[cfg(test)]
mod tests {
    use super::*;
    use backline_engine::audio::bar_plan::{BarPlan, BarSpec};
    use backline_engine::audio::take_shape::TakeOptions;

    fn plan(rate: f64, bars: u32) -> TakePlan {
        let spec = BarSpec { bars, start_bar: 0, bpm: 93.0, meter: (7, 8), sample_rate: rate };
        let bars = BarPlan::new(spec).unwrap();
        TakePlan { bars, start_quarters: 0.0, source: None, keyscale: None, options: TakeOptions::default() }
    }

    #[test]
    fn cuts_to_exactly_the_bars_at_the_host_rate() {
        let model = AudioBuffer::new(48_000, vec![vec![0.25; 48_000 * 20], vec![-0.25; 48_000 * 20]]);
        for rate in [44_100.0, 48_000.0, 96_000.0] {
            let p = plan(rate, 4);
            let (take, report) = cut_to_plan(&model, &p).unwrap();
            let frames = p.bars.take_frames;
            assert_eq!((take.left.len(), take.right.len(), report.frames), (frames, frames, frames), "{rate}");
            assert_eq!(take.sample_rate, rate as f32);
            assert!((take.left[frames / 2] - 0.25).abs() < 1e-3);
            // No beat in a constant: cut as made, and the report says why.
            assert!(report.correction.note.as_deref().is_some_and(|n| n.starts_with("no beat found")), "{report:?}");
        }
        // Short by a few frames: padded with silence, never longer or shorter than the bars.
        let short = AudioBuffer::new(48_000, vec![vec![0.5; 1000]]);
        let p = plan(48_000.0, 1);
        let (take, _) = cut_to_plan(&short, &p).unwrap();
        assert_eq!((take.left.len(), take.right[999], take.right[1000]), (p.bars.take_frames, 0.5, 0.0));
    }

    #[test]
    fn a_lego_at_93_in_7_8_comes_back_on_the_captured_bars_within_a_millisecond() {
        use crate::capture_store::CapturedRegion;
        use crate::draft::job_request;
        use crate::state::SessionState;
        use backline_engine::audio::grid::{Grid, TimeSignature};
        use backline_engine::backend::AudioInput;
        use backline_engine::task::TaskType;

        // Captured bars 1-4 at the host's 48 kHz: a 2 kHz click on every eighth, accented on
        // the downbeats.
        let grid = Grid::new(93.0, TimeSignature::new(7, 8).unwrap(), 48_000.0).unwrap();
        let frames = grid.bars_to_samples(4) as usize;
        let mut clicks = vec![0.0f32; frames];
        let beat = grid.samples_per_beat();
        for k in 0..(frames as f64 / beat) as usize {
            let at = (k as f64 * beat).round() as usize;
            let gain = if k % 7 == 0 { 0.9 } else { 0.5 };
            for i in 0..96.min(frames - at) {
                let t = i as f32 / 48_000.0;
                clicks[at + i] = gain * (-t / 0.001).exp() * (std::f32::consts::TAU * 2000.0 * t).sin();
            }
        }
        let captured = CapturedRegion { audio: AudioBuffer::new(48_000, vec![clicks.clone(), clicks]), start_quarters: 0.0, start_sample: 0 };
        let draft = SessionState { task: TaskType::Lego, track_name: "bass".into(), length_bars: 4, ..Default::default() };
        let (job, plan) = job_request(&draft, &grid, Some(&captured)).unwrap();
        let Some(AudioInput::Samples { audio: source, .. }) = &job.src else { panic!("the capture goes with the job") };
        // The engine's result: what it was given, 1234 samples (25.7 ms) late.
        let late = AudioBuffer::new(
            48_000,
            source.channels.iter().map(|c| std::iter::repeat_n(0.0, 1234).chain(c.iter().copied()).collect()).collect(),
        );
        let (take, report) = cut_to_plan(&late, &plan).unwrap();
        let alignment = report.alignment.expect("compared with the capture");
        assert!(alignment.applied && alignment.lag_frames == 1234, "{alignment:?}");
        assert_eq!(take.frames(), frames, "exactly the captured bars");
        let first = take.left.iter().position(|v| v.abs() > 1e-3).unwrap();
        assert!(first < 48, "the first click {first} samples in, not within 1 ms of bar 1");
        assert_eq!(report.correction.offset_s, 0.0, "aligned, not moved again");
    }

    #[test]
    fn a_written_take_loads_back_and_a_changed_or_missing_one_says_so() {
        let dir = std::env::temp_dir().join(format!("backline-takes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let take = TakeAudio { left: (0..4800).map(|i| (i as f32 * 0.01).sin()).collect(), right: vec![0.1; 4800], sample_rate: 48_000.0 };
        let name = file_name(7, "lego: bass / drums!", Some(1234));
        assert_eq!(name, "007 lego bass drums s1234.wav");
        let (path, sha) = write_take(&dir, &name, &take).unwrap();
        let record = TakeRecord {
            id: 7,
            name: "bass".into(),
            file: path.display().to_string(),
            audio_sha256: sha,
            placement: SavedPlacement { start_quarters: 0.0, bpm: 120.0, gain: 1.0 },
            start_bar: 0,
            bars: 1,
            meter: "4/4".into(),
            recipe: serde_json::from_value(serde_json::json!({
                "request": {}, "model_kind": "turbo", "models": [], "source": null, "reference": null,
                "sample_rate": 48000, "duration_s": 0.1, "engine": "test"
            })).unwrap(),
        };
        assert_eq!(load_take(&record, 48_000.0).unwrap(), take);
        assert_eq!(load_take(&record, 96_000.0).unwrap().frames(), 9600, "resampled to the host");
        let (second, _) = write_take(&dir, &name, &take).unwrap();
        assert_eq!(second.file_name().unwrap(), "007 lego bass drums s1234 (2).wav", "never overwrites a take");
        std::fs::write(&path, b"RIFF....").unwrap();
        assert!(matches!(load_take(&record, 48_000.0), Err(TakeLoadError::Changed { .. })));
        std::fs::remove_file(&path).unwrap();
        let err = load_take(&record, 48_000.0).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
