//! The model panel's download as the session runs it, against a model hub on loopback serving
//! the tiny set: it runs on its own thread (the caller returns at once while the hub stalls),
//! reports progress, fills an empty folder that the session then uses, and a cancel stops it
//! with what arrived kept for the next try. Its own process: it sets `HF_ENDPOINT` and this
//! machine's settings.

#[path = "../../engine/tests/support/loopback_hub.rs"]
mod loopback_hub;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::checkpoint::{TEXT_ENCODER_FOLDER, TURBO_FOLDER, VAE_FOLDER};
use backline_engine::hub::registry;
use backline_plugin::model_download::DownloadState;
use backline_plugin::params::BacklineParams;
use backline_plugin::session::Session;
use backline_plugin::AudioShared;
use loopback_hub::{same_files, Faults, LoopbackHub};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model-download-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Wait for the download to leave `Running`, collecting the progress seen on the way (model,
/// bytes of it done).
fn wait(session: &Session) -> (DownloadState, Vec<(String, u64)>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let state = session.download().state();
        match &state {
            DownloadState::Running { model, done_bytes, .. } => seen.push((model.clone(), *done_bytes)),
            _ => return (state, seen),
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the download never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_panel_download_runs_off_the_callers_thread_cancels_and_completes() {
    let root = scratch("panel");
    let originals = root.join("originals");
    synth::write_set(&originals, SynthSize::Tiny, 3).unwrap();
    let hub = LoopbackHub::start();
    for folder in [TURBO_FOLDER, VAE_FOLDER, TEXT_ENCODER_FOLDER] {
        hub.add_folder(registry::MAIN_REPO, folder, &originals.join(folder));
    }
    std::env::set_var("HF_ENDPOINT", &hub.endpoint);
    std::env::set_var("XDG_CONFIG_HOME", root.join("config"));
    std::env::remove_var("BACKLINE_CHECKPOINTS");
    let session = Session::new(Arc::new(BacklineParams::default()), Arc::new(AudioShared::default()));
    let essential: Vec<_> = registry::ESSENTIAL.iter().map(|n| registry::find(n).unwrap()).collect();
    let target = root.join("checkpoints");

    // The hub stalls 1.5 s in the DiT's weights: the call returns long before, and Cancel stops it.
    hub.set_faults(Faults { stall: Some(("model.safetensors".into(), Duration::from_millis(1500))), ..Faults::default() });
    let asked = Instant::now();
    session.start_download(target.display().to_string(), essential.clone()).unwrap();
    assert!(asked.elapsed() < Duration::from_millis(500), "start_download blocked for {:?}", asked.elapsed());
    assert!(session.download().state().is_running());
    assert!(session.start_download(target.display().to_string(), essential.clone()).is_err(), "a second download while one runs");
    while !matches!(session.download().state(), DownloadState::Running { ref file, .. } if file == "model.safetensors") {
        std::thread::sleep(Duration::from_millis(2));
    }
    session.download().cancel();
    let (state, _) = wait(&session);
    assert_eq!(state, DownloadState::Cancelled);
    assert!(!target.join(TURBO_FOLDER).join("model.safetensors").exists());
    assert!(session.machine().checkpoints.is_empty(), "a cancelled download must not switch the folder");

    // Again, without the stall: it resumes, finishes, and the session uses the folder.
    hub.set_faults(Faults::default());
    session.start_download(target.display().to_string(), essential).unwrap();
    let (state, progress) = wait(&session);
    assert!(matches!(state, DownloadState::Finished { .. }), "{state:?}");
    assert!(progress.len() > 3, "the editor saw no progress: {progress:?}");
    assert!(progress.windows(2).all(|w| w[0].0 != w[1].0 || w[0].1 <= w[1].1), "progress went backwards within a model: {progress:?}");
    for folder in [TURBO_FOLDER, VAE_FOLDER, TEXT_ENCODER_FOLDER] {
        assert!(same_files(&target.join(folder), &originals.join(folder)), "{folder}");
    }
    assert_eq!(session.machine().checkpoints, target.display().to_string());
    let info = session.models().expect("the downloaded folder serves models");
    assert!(info.dits.iter().any(|d| d.name == TURBO_FOLDER && d.problem.is_none()));
    assert!(hub.served().iter().any(|s| s.path.ends_with("model.safetensors") && s.range_start.is_some()), "the second try resumed");
}
