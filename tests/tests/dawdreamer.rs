//! A real DAW engine: DawDreamer (JUCE's VST3 host, from PyPI) renders the VST3 with a playing
//! transport at 100 BPM. The render script is `tests/daw/dawdreamer_render.py`; it needs the
//! Python from `cargo xtask test`'s venv (`BACKLINE_PYTHON`, default `target/venv/bin/python`).

use std::path::PathBuf;
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

#[test]
fn dawdreamer_renders_the_vst3_in_time_with_its_transport() {
    let out_dir = artifacts_dir().join("dawdreamer");
    let output = Command::new(python())
        .arg(workspace_root().join("tests/daw/dawdreamer_render.py"))
        .arg(vst3_bundle(Build::Release))
        .arg(&out_dir)
        .output()
        .expect("run the DawDreamer render");
    assert!(output.status.success(), "render failed: {}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(
        output.stdout.rsplit(|b| *b == b'\n').find(|l| !l.is_empty()).expect("a JSON line"),
    )
    .expect("JSON summary");
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
