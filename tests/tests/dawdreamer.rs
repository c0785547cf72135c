//! A real DAW engine: DawDreamer (JUCE's VST3 host, from PyPI) renders the VST3 with a playing
//! transport at 100 BPM. The render script is `tests/daw/dawdreamer_render.py`; it needs the
//! Python from `cargo xtask test`'s venv (`BACKLINE_PYTHON`, default `target/venv/bin/python`).

use std::path::{Path, PathBuf};
use std::process::Command;

use backline_engine::audio::grid::TimeSignature;
use backline_tests::clicks::{assert_beats, expected_beats, find_onsets};
use backline_tests::{artifacts_dir, existing, vst3_bundle, workspace_root, Build};

/// The venv's Python, which has DawDreamer.
fn python() -> PathBuf {
    existing(workspace_root().join("target/venv/bin/python"), "BACKLINE_PYTHON")
}

/// Channels of a float WAV.
fn read_wav(path: &str) -> Vec<Vec<f32>> {
    let mut reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let channels = reader.spec().channels as usize;
    let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
    (0..channels).map(|c| samples.iter().skip(c).step_by(channels).copied().collect()).collect()
}

/// Runs `tests/daw/<script> PLUGIN.vst3 <args>` in the venv's Python; returns the JSON summary
/// it prints last.
fn run_script(script: &str, args: &[&Path], env: &[(&str, &Path)]) -> serde_json::Value {
    let output = Command::new(python())
        .arg(workspace_root().join("tests/daw").join(script))
        .arg(vst3_bundle(Build::Release))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(output.status.success(), "{script} failed: {}", String::from_utf8_lossy(&output.stderr));
    let last_line = output.stdout.rsplit(|b| *b == b'\n').find(|l| !l.is_empty()).expect("a JSON line");
    serde_json::from_slice(last_line).expect("JSON summary")
}

#[test]
fn dawdreamer_renders_the_vst3_in_time_with_its_transport() {
    let out_dir = artifacts_dir().join("dawdreamer");
    let summary = run_script("dawdreamer_render.py", &[&out_dir], &[]);
    let (sample_rate, bpm) = (summary["sample_rate"].as_f64().unwrap(), summary["bpm"].as_f64().unwrap());

    // Click on, silence in: a click on every beat DawDreamer's transport plays, accented per bar.
    let clicks = read_wav(summary["clicks"].as_str().unwrap());
    assert_eq!(clicks[0], clicks[1]);
    let expected = expected_beats(bpm, TimeSignature::FOUR_FOUR, sample_rate, 0.0, clicks[0].len());
    assert_eq!(expected.len(), 8);
    assert_beats(&find_onsets(&clicks[0], 1.0), &expected, 0, "DawDreamer at 100 BPM");

    // Click off: the main input passes through; the sidechain does not leak in.
    let through = read_wav(summary["passthrough"].as_str().unwrap());
    for ch in 0..2 {
        let worst = through[ch].iter().zip(&through[ch + 2]).map(|(o, i)| (o - i).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-6, "channel {ch}: output differs from input by {worst}");
    }

    // Saved state (click on, gain -24 dB) loaded into a fresh instance behaves the same.
    let gain_db: f32 = summary["saved_params"]["Output gain"].as_str().unwrap().parse().unwrap();
    assert_eq!(summary["saved_params"]["Guide click"], "On");
    let restored = read_wav(summary["restored_clicks"].as_str().unwrap());
    let gain = 10f32.powf(gain_db / 20.0);
    let onsets = find_onsets(&restored[0], gain);
    assert_beats(&onsets, &expected, 0, "restored state");
    assert!((onsets[0].amplitude - 0.5 * gain).abs() < 1e-4, "restored gain {:?}", onsets[0]);
}

/// A project made in the JUCE host holds a take, and reopening it plays the take at its bars:
/// DawDreamer automates Generate (the default 4-bar text2music draft, tiny checkpoint set),
/// saves the state once the take exists, loads it into a fresh instance and renders 5 bars from
/// the song's start. Bars 1-4 are the take file sample for sample; bar 5 is silent.
#[test]
fn a_saved_project_with_a_take_renders_the_take_at_its_bars() {
    use backline_tests::workflow::{read_take, scratch, use_tiny_checkpoints};
    use_tiny_checkpoints("dawdreamer");
    let takes = scratch("dawdreamer-takes");
    let out_dir = scratch("dawdreamer-take");
    let summary = run_script("dawdreamer_take.py", &[&takes, &out_dir], &[("BACKLINE_TAKES", &takes)]);
    let files = summary["takes"].as_array().unwrap();
    assert_eq!(files.len(), 1, "one press, one take: {files:?}");
    let take = read_take(files[0].as_str().unwrap());
    let (rate, bpm) = (summary["sample_rate"].as_f64().unwrap(), summary["bpm"].as_f64().unwrap());
    let bar = (4.0 * 60.0 / bpm * rate).round() as usize;
    assert_eq!(take[0].len(), 4 * bar, "the take is exactly four bars");
    assert!(take[0].iter().any(|&x| x.abs() > 1e-4), "the take is not silent");

    let played = read_wav(summary["playback"].as_str().unwrap());
    assert_eq!(played[0].len(), 5 * bar);
    for ch in 0..2 {
        let differs = played[ch][..4 * bar].iter().zip(&take[ch]).position(|(p, t)| p != t);
        assert_eq!(differs, None, "channel {ch}: bars 1-4 are the take, sample for sample (first difference)");
        assert_eq!(played[ch][4 * bar..].iter().position(|&x| x != 0.0), None, "channel {ch}: bar 5 is silent");
    }
}
