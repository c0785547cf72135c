//! The session as the editor drives it, on the tiny checkpoint set, without a host: Cancel ends a
//! running job within a step and leaves no take; a job the engine refuses becomes a message; a
//! finished job becomes a take (file, hash, recipe, slot 1) with nobody watching; the weights'
//! precision is priced, remembered and used by the next job.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use backline_engine::audio::grid::TimeSignature;
use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::checkpoint::LoadAs;
use backline_engine::precision::Precision;
use backline_engine::task::ModelKind;
use backline_plugin::settings::MachineSettings;
use backline_plugin::params::BacklineParams;
use backline_plugin::session::{JobState, Session};
use backline_plugin::transport::TransportSnapshot;
use backline_plugin::bridge::AudioEnds;
use backline_plugin::capture::{CaptureWriter, WhenFull};
use backline_plugin::AudioShared;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("session-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tiny set, and this machine's settings pointing at it (set before any session exists).
fn machine() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let root = scratch("machine");
        synth::write_set(&root.join("checkpoints"), SynthSize::Tiny, 3).unwrap();
        std::env::set_var("XDG_CONFIG_HOME", root.join("config"));
        std::env::set_var("BACKLINE_CHECKPOINTS", root.join("checkpoints"));
    });
}

/// A session whose host plays at 120 BPM in 4/4, with takes going to `takes`.
fn session(takes: &Path) -> Arc<Session> {
    let session = unstarted_session(takes);
    session.start();
    session
}

/// The same session before its service thread starts; the audio ends are forgotten (nothing
/// plays, the commands just queue).
fn unstarted_session(takes: &Path) -> Arc<Session> {
    let (session, ends) = session_with_audio_ends(takes);
    std::mem::forget(ends);
    session
}

/// An unstarted session and the audio thread's ends of its queues.
fn session_with_audio_ends(takes: &Path) -> (Arc<Session>, AudioEnds) {
    machine();
    let params = Arc::new(BacklineParams::default());
    let shared = Arc::new(AudioShared::default());
    shared.transport.publish(&TransportSnapshot {
        playing: true,
        bpm: 120.0,
        tempo_from_host: true,
        meter: TimeSignature::FOUR_FOUR,
        meter_from_host: true,
        pos_quarters: Some(0.0),
        pos_samples: Some(0),
        ..TransportSnapshot::default()
    });
    let session = Session::new(params, shared);
    let ends = session.connect(48_000.0, 512);
    session.params.session.write().take_folder = takes.display().to_string();
    (session, ends)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn cancel_ends_a_running_job_within_a_step_and_leaves_no_take() {
    let takes = scratch("cancel-takes");
    let s = session(&takes);
    {
        let mut draft = s.params.session.write();
        draft.length_bars = 64; // 128 s at 120 BPM
        draft.steps = 200;
        draft.model = "acestep-v15-base".into();
    }
    s.generate();
    let mut seen_step = 0;
    wait_until("the first DiT steps", Duration::from_secs(120), || {
        let jobs = s.jobs();
        let state = jobs.first().map(|j| j.state.lock().unwrap().clone());
        if let Some(JobState::Running { stage, step, .. }) = state {
            seen_step = step;
            return stage == "diffusion" && step >= 2;
        }
        false
    });
    s.cancel_all();
    let cancelled_at = Instant::now();
    wait_until("the job to end", Duration::from_secs(60), || s.jobs().is_empty());
    let took = cancelled_at.elapsed();
    assert!(seen_step < 200);
    assert!(s.params.session.read().takes.is_empty(), "a cancelled job makes no take");
    assert_eq!(std::fs::read_dir(&takes).map(|d| d.count()).unwrap_or(0), 0, "and writes no file");
    assert!(s.notices().is_empty(), "a cancel is not an error: {:?}", s.notices());
    // A step of this job takes milliseconds; ending within a step is far under a second.
    assert!(took < Duration::from_secs(5), "cancel took {took:?}");
    s.shutdown();
}

/// The host presses Generate (the parameter) in the first blocks after activation, while the
/// service thread is still starting: the press is a request, never taken for an old one.
#[test]
fn a_generate_pressed_as_the_plugin_starts_is_not_lost() {
    let takes = scratch("early-press-takes");
    let s = unstarted_session(&takes);
    {
        let mut draft = s.params.session.write();
        draft.steps = 2;
        draft.length_bars = 1;
    }
    s.start();
    s.audio.generate_requests.fetch_add(1, std::sync::atomic::Ordering::Release);
    wait_until("the take", Duration::from_secs(120), || !s.params.session.read().takes.is_empty());
    assert!(s.notices().is_empty(), "{:?}", s.notices());
    s.shutdown();
}

#[test]
fn a_refused_job_is_a_message_and_a_finished_one_a_take() {
    let takes = scratch("message-takes");
    let s = session(&takes);
    s.params.session.write().model = "acestep-v15-nonexistent".into();
    s.generate();
    wait_until("the failure", Duration::from_secs(60), || !s.notices().is_empty());
    let notice = s.notices().join(" ");
    assert!(notice.contains("failed") && notice.contains("acestep-v15-nonexistent"), "{notice}");
    assert!(s.params.session.read().takes.is_empty());

    s.dismiss_notices();
    {
        let mut draft = s.params.session.write();
        draft.model.clear();
        draft.steps = 2;
        draft.seed = 42;
        draft.length_bars = 2;
        draft.take_options.looped = true;
    }
    s.generate();
    wait_until("the take", Duration::from_secs(120), || !s.params.session.read().takes.is_empty());
    let state = s.params.session.read().clone();
    let take = &state.takes[0];
    assert_eq!(state.slots[0], Some(take.id), "the new take is the A/B choice");
    assert_eq!((take.bars, take.meter.as_str(), take.placement.bpm), (2, "4/4", 120.0));
    assert_eq!(take.recipe.seeds(), vec![42]);
    // The take's grid: 2 bars at 120 (4 s at the host's 48 kHz), closed as a loop, measured.
    let grid = take.recipe.grid.as_ref().expect("the take's grid report");
    assert_eq!((grid.frames, grid.options.looped), (4 * 48_000, true));
    assert_eq!(grid.seam_fix, Some(backline_engine::audio::seam::SeamFix::Repaint), "the model repainted the wrap");
    let (tag, lines) = backline_plugin::takes::grid_summary(&take.recipe);
    assert!(tag.starts_with("loop"), "{tag}");
    assert!(lines.iter().any(|l| l.starts_with("Tempo:")) && lines.iter().any(|l| l.starts_with("Loop seam:")), "{lines:?}");
    let bytes = std::fs::read(&take.file).unwrap();
    assert_eq!(backline_plugin::takes::sha256_hex(&bytes), take.audio_sha256);
    assert!(s.notices().is_empty(), "{:?}", s.notices());
    s.shutdown();
}

#[test]
fn a_folder_without_weights_says_how_to_get_them_and_nothing_breaks() {
    let takes = scratch("no-weights-takes");
    let s = session(&takes);
    let empty = scratch("not-a-checkpoints-folder");
    s.set_checkpoints(empty.display().to_string());
    // The models panel lists no DiT and names the missing shared folders; it adds how to get
    // the weights (`HOW_TO_GET_WEIGHTS`) to both.
    let info = s.models().expect("an empty folder is read, not an error");
    assert!(info.dits.is_empty(), "{:?}", info.dits);
    assert!(info.shared_problem.is_some());
    s.generate();
    wait_until("the message", Duration::from_secs(60), || !s.notices().is_empty());
    let notice = s.notices().join(" ");
    assert!(notice.contains("failed"), "{notice}");
    assert!(s.params.session.read().takes.is_empty());
    // Pointing back at the weights works without restarting anything.
    s.set_checkpoints(std::env::var("BACKLINE_CHECKPOINTS").unwrap());
    assert!(s.models().is_ok());
    s.shutdown();
}

/// More input than the capture keeps: the oldest bars go, the editor says so with the limit the
/// producer set (remembered for the machine), and the newest bars are all there.
#[test]
fn a_capture_longer_than_the_limit_drops_the_oldest_bars_with_a_message() {
    let takes = scratch("limit-takes");
    let (s, ends) = session_with_audio_ends(&takes);
    s.start();
    s.set_capture_limit(10.0);
    assert_eq!(s.machine().capture_limit_s, 10.0);
    let mut writer = CaptureWriter::new(ends.capture, WhenFull::Wait);
    // 16 s at 120 BPM in 4/4 (bars of 2 s), in host blocks of 480 frames.
    let (rate, spq) = (48_000.0f32, 24_000.0);
    let block = [0.25f32; 480];
    for k in 0..(16 * 48_000 / 480) {
        let quarters = (k * 480) as f64 / spq;
        let t = TransportSnapshot {
            playing: true,
            bpm: 120.0,
            tempo_from_host: true,
            meter: TimeSignature::FOUR_FOUR,
            meter_from_host: true,
            sample_rate: rate,
            pos_samples: Some((k * 480) as i64),
            pos_quarters: Some(quarters),
            bar_start_quarters: Some((quarters / 4.0).floor() * 4.0),
            bar_number: Some((quarters / 4.0).floor() as i32),
            ..TransportSnapshot::default()
        };
        writer.record(&t, &block, &block);
    }
    writer.flush();
    // The message comes with the first bar dropped; the service thread may still be draining the
    // newer blocks then, so wait for the newest bar as well.
    let newest_complete = || s.capture().summary().iter().filter(|b| b.complete).map(|b| b.number).last();
    wait_until("the limit message and the newest bar", Duration::from_secs(30), || {
        s.notices().iter().any(|n| n.contains("capture limit (10 s)")) && newest_complete() == Some(7)
    });
    let capture = s.capture();
    assert!(capture.seconds() <= 10.0, "{} s kept", capture.seconds());
    let complete: Vec<i64> = capture.summary().iter().filter(|b| b.complete).map(|b| b.number).collect();
    assert_eq!(complete.last(), Some(&7), "the newest bar (8) is kept: {complete:?}");
    assert!(!complete.contains(&0), "the oldest bar went first: {complete:?}");
    drop(capture);
    s.shutdown();
}

/// The *Weights* choice: each precision is priced before anything loads, the choice is
/// remembered for the machine, and the next job loads the models at it.
#[test]
fn the_precision_choice_is_priced_remembered_and_used_by_the_next_job() {
    let takes = scratch("precision-takes");
    let s = session(&takes);
    let info = s.models().unwrap();
    assert_eq!(info.precision, Precision::Bf16, "bf16 by default");
    let memory = |p| info.memory_at(p).unwrap_or_else(|| panic!("no memory figure for {p}"));
    assert!(memory(Precision::Q4) < memory(Precision::Q8), "q4 {} vs q8 {}", memory(Precision::Q4), memory(Precision::Q8));
    assert!(memory(Precision::Q8) < memory(Precision::F32), "q8 {} vs f32 {}", memory(Precision::Q8), memory(Precision::F32));

    s.set_precision(Precision::Q8);
    assert_eq!(s.machine().precision, Precision::Q8);
    let saved = std::fs::read_to_string(MachineSettings::file().unwrap()).unwrap();
    assert!(saved.contains("\"precision\": \"q8\""), "{saved}");
    let info = s.models().unwrap();
    assert_eq!(info.precision, Precision::Q8);

    {
        let mut draft = s.params.session.write();
        draft.steps = 2;
        draft.length_bars = 2;
    }
    s.generate();
    wait_until("the take", Duration::from_secs(120), || !s.params.session.read().takes.is_empty());
    let info = s.models().unwrap();
    let turbo = info.dits.iter().find(|d| d.kind == Some(ModelKind::Turbo)).unwrap();
    let resident = info.resident.iter().find(|r| r.dir.ends_with(&turbo.name)).expect("the turbo DiT is loaded");
    assert_eq!(resident.bytes, turbo.footprint.as_ref().unwrap().bytes(&LoadAs::cpu(Precision::Q8)), "loaded at q8");
    s.set_precision(Precision::Bf16);
    s.shutdown();
}
