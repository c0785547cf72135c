//! What the workflow tests share: a tiny checkpoint set the plugin finds the way a user's machine
//! points it at one, a click track to capture, and edits of the session inside a saved state.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use backline_engine::audio::grid::{Grid, TimeSignature};
use backline_engine::audio::read_audio;
use backline_engine::checkpoint::synth::{self, SynthSize};
use serde_json::Value;

use crate::artifacts_dir;

/// A scratch folder under `target/test-artifacts/`, emptied.
pub fn scratch(name: &str) -> PathBuf {
    let dir = artifacts_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// Writes the tiny synthetic set (turbo and base) once per test process, and points every
/// plugin instance made afterwards at it, as a user's saved settings would. The settings file
/// goes to a scratch config folder, never the user's.
pub fn use_tiny_checkpoints(process_name: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = scratch(&format!("{process_name}-machine"));
        let checkpoints = root.join("checkpoints");
        synth::write_set(&checkpoints, SynthSize::Tiny, 11).expect("tiny set");
        std::env::set_var("XDG_CONFIG_HOME", root.join("config"));
        std::env::set_var("BACKLINE_CHECKPOINTS", &checkpoints);
        std::env::set_var("BACKLINE_TAKES", root.join("default-takes"));
        checkpoints
    })
}

/// A click on every beat (a 5 ms 1 kHz burst, louder on downbeats), `len` samples from song
/// position `start_quarters`.
pub fn click_track(bpm: f64, meter: TimeSignature, sample_rate: f64, start_quarters: f64, len: usize) -> Vec<f32> {
    let grid = Grid::new(bpm, meter, sample_rate).expect("valid grid");
    let spq = grid.samples_per_quarter();
    let beat = meter.quarters_per_beat();
    let burst = (0.005 * sample_rate) as usize;
    let mut out = vec![0.0f32; len];
    let first = (start_quarters / beat).ceil() as i64;
    for k in first.. {
        let at = ((k as f64 * beat - start_quarters) * spq).round() as usize;
        if at >= len {
            break;
        }
        let level = if k.rem_euclid(meter.numerator as i64) == 0 { 0.6 } else { 0.3 };
        for (i, s) in out[at..(at + burst).min(len)].iter_mut().enumerate() {
            *s = level * (std::f32::consts::TAU * 1000.0 * i as f32 / sample_rate as f32).sin();
        }
    }
    out
}

/// The session inside a nice-plug state (it is stored as a JSON string).
pub fn session(state: &Value) -> Value {
    serde_json::from_str(state["fields"]["session"].as_str().expect("a session field")).expect("session JSON")
}

/// Edits the session inside a nice-plug state.
pub fn edit_session(state: &mut Value, edit: impl FnOnce(&mut Value)) {
    let mut s = session(state);
    edit(&mut s);
    state["fields"]["session"] = Value::String(s.to_string());
}

/// A take file's two channels.
pub fn read_take(path: &str) -> [Vec<f32>; 2] {
    let audio = read_audio(Path::new(path)).unwrap_or_else(|e| panic!("read take {path}: {e}"));
    let mut channels = audio.channels.into_iter();
    [channels.next().expect("left"), channels.next().expect("right")]
}
