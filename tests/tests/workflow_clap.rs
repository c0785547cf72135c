//! The producer's workflow in a real CLAP host (clack-host) on the tiny checkpoint set: capture
//! bars from the sidechain, press Generate, keep processing while the job runs, and hear the take
//! at the bars it was made for, on the main output and on its own bus; then save a project with
//! two takes, open it in a new instance, and open it again with a take file deleted.

use std::time::{Duration, Instant};

use backline_engine::audio::grid::{Grid, TimeSignature};
use backline_tests::clap::{set_param, state_bytes, state_json, ClapPlugin, HostTransport};
use backline_tests::workflow::{click_track, edit_session, read_take, scratch, session, use_tiny_checkpoints};
use backline_tests::{clap_bundle, Build};
use clack_host::events::event_types::ParamValueEvent;
use serde_json::{json, Value};

const RATE: f64 = 48_000.0;
const BLOCK: usize = 512;
/// Longest a tiny job may take before the test gives up (on a busy two-core machine).
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

fn load(build: Build) -> ClapPlugin {
    use_tiny_checkpoints("workflow-clap");
    ClapPlugin::load(&clap_bundle(build))
}

/// What one stretch of processing produced.
struct Render {
    main: [Vec<f32>; 2],
    /// Take buses 1-4.
    buses: Vec<[Vec<f32>; 2]>,
}

/// Processes `len` samples from song position `from_quarters` at `bpm`/`meter`, the transport
/// playing (and moving) or stopped, with `sidechain` (else silence) on the sidechain and silence
/// on the main input; `events` go with the first block.
#[allow(clippy::too_many_arguments)]
fn run(
    plugin: &mut ClapPlugin,
    bpm: f64,
    meter: (u16, u16),
    from_quarters: f64,
    len: usize,
    playing: bool,
    sidechain: Option<&[f32]>,
    events: &[ParamValueEvent],
) -> Render {
    let spq = RATE * 60.0 / bpm;
    let silence = vec![0.0f32; BLOCK];
    let mut render = Render { main: [Vec::new(), Vec::new()], buses: vec![[Vec::new(), Vec::new()]; 4] };
    let mut done = 0;
    let mut events = events;
    while done < len {
        let n = BLOCK.min(len - done);
        let quarters = if playing { from_quarters + done as f64 / spq } else { from_quarters };
        let transport = HostTransport { playing, tempo: Some(bpm), meter: Some(meter), quarters };
        let side = sidechain.map_or(&silence[..n], |s| &s[done..done + n]);
        let out = plugin.process([&silence[..n], &silence[..n]], [side, side], events, Some(&transport.event()));
        events = &[];
        for ch in 0..2 {
            render.main[ch].extend_from_slice(&out[ch]);
            for (bus, got) in render.buses.iter_mut().zip(plugin.buses()) {
                bus[ch].extend_from_slice(&got[ch]);
            }
        }
        done += n;
    }
    render
}

/// Presses Generate (on, then off, as a button does) with the transport stopped.
fn press_generate(plugin: &mut ClapPlugin, bpm: f64, meter: (u16, u16)) {
    let id = plugin.param("Generate");
    run(plugin, bpm, meter, 0.0, BLOCK, false, None, &[set_param(id, 1.0)]);
    run(plugin, bpm, meter, 0.0, BLOCK, false, None, &[set_param(id, 0.0)]);
}

/// Keeps processing (transport stopped, in real time) until the session lists `count` takes;
/// returns the saved state then.
fn wait_for_takes(plugin: &mut ClapPlugin, bpm: f64, meter: (u16, u16), count: usize) -> Value {
    let started = Instant::now();
    loop {
        for _ in 0..10 {
            run(plugin, bpm, meter, 0.0, BLOCK, false, None, &[]);
            std::thread::sleep(Duration::from_millis(10));
        }
        let state = state_json(&plugin.save_state());
        if session(&state)["takes"].as_array().map_or(0, Vec::len) >= count {
            return state;
        }
        assert!(started.elapsed() < JOB_TIMEOUT, "no take after {JOB_TIMEOUT:?}: {}", session(&state));
    }
}

/// Sets the draft and where takes go, through the saved state as a project would.
fn set_draft(plugin: &mut ClapPlugin, draft: Value) {
    let mut state = state_json(&plugin.save_state());
    edit_session(&mut state, |s| {
        for (key, value) in draft.as_object().unwrap() {
            s[key] = value.clone();
        }
    });
    plugin.load_state(&state_bytes(&state)).expect("load the draft");
}

/// The first sample where `signal` is not silent.
fn first_sound(signal: &[f32]) -> Option<usize> {
    signal.iter().position(|&x| x != 0.0)
}

/// How the host renders: offline (faster than real time, as for a bounce) or in real time.
#[derive(Debug, Clone, Copy)]
enum Pace {
    Offline,
    Realtime,
}

fn lego_on_captured_bars(bpm: f64, meter: (u16, u16), build: Build, pace: Pace) {
    let what = format!("{bpm} BPM {}/{}, {build:?}, {pace:?}", meter.0, meter.1);
    let mut plugin = load(build);
    if let Pace::Offline = pace {
        plugin.render_offline();
    }
    plugin.activate(RATE, BLOCK as u32);
    let takes_dir = scratch(&format!("workflow-lego-{bpm}-{}-{}-{build:?}", meter.0, meter.1));
    set_draft(&mut plugin, json!({
        "task": "lego", "track_name": "bass", "start_bar": 0, "length_bars": 4,
        "steps": 2, "seed": 5, "take_folder": takes_dir.display().to_string(),
    }));
    let grid = Grid::new(bpm, TimeSignature::new(meter.0 as u32, meter.1 as u32).unwrap(), RATE).unwrap();
    let bar = grid.samples_per_bar();

    // Capture bars 1-4 (and a little of bar 5) of a click track on the sidechain.
    let capture_len = (5.2 * bar) as usize;
    let clicks = click_track(bpm, grid.meter(), RATE, 0.0, capture_len);
    let sidechain = plugin.param("Capture source");
    let capture_on = [set_param(sidechain, 1.0)];
    match pace {
        // A bounce: as fast as the machine goes; the capture waits for its thread.
        Pace::Offline => {
            run(&mut plugin, bpm, meter, 0.0, capture_len, true, Some(&clicks), &capture_on);
        }
        // Real time, sped up ten times: a host's pace, with room for the capture thread to
        // keep up (its queue holds over five seconds), as it must in a DAW.
        Pace::Realtime => {
            let spq = RATE * 60.0 / bpm;
            let chunk = (RATE / 10.0) as usize;
            for from in (0..capture_len).step_by(chunk) {
                let len = chunk.min(capture_len - from);
                let events: &[ParamValueEvent] = if from == 0 { &capture_on } else { &[] };
                run(&mut plugin, bpm, meter, from as f64 / spq, len, true, Some(&clicks[from..]), events);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    // Generate, and keep processing blocks while the job runs.
    press_generate(&mut plugin, bpm, meter);
    let state = wait_for_takes(&mut plugin, bpm, meter, 1);
    let s = session(&state);
    let take = &s["takes"][0];
    assert_eq!((take["start_bar"].as_u64(), take["bars"].as_u64()), (Some(0), Some(4)), "{what}");
    assert_eq!(take["meter"], format!("{}/{}", meter.0, meter.1));
    assert_eq!(take["recipe"]["request"]["task_type"], "lego");
    assert_eq!(take["recipe"]["request"]["track_name"], "bass");
    assert_eq!(s["slots"][0], take["id"], "the new take is the A/B choice");
    let file = take["file"].as_str().unwrap();
    assert!(file.starts_with(takes_dir.to_str().unwrap()), "{file}");
    let audio = read_take(file);
    let frames = (grid.bars_to_seconds(4.0) * RATE).round() as usize;
    assert_eq!(audio[0].len(), frames, "{what}: exactly 4 bars at the host rate");
    assert!(audio[0].iter().any(|&x| x != 0.0), "{what}: the take is not silence");

    // Replay from one bar before bar 1: the take starts on bar 1's sample and lasts 4 bars.
    let render = run(&mut plugin, bpm, meter, -grid.meter().quarters_per_bar(), (6.0 * bar) as usize, true, None, &[]);
    let start = bar.round() as usize;
    let first = first_sound(&render.main[0]).expect("the take plays");
    let lead = first_sound(&audio[0]).unwrap();
    assert_eq!(first, start + lead, "{what}: the take starts on bar 1's sample");
    for ch in 0..2 {
        assert_eq!(&render.main[ch][start..start + frames], &audio[ch][..], "{what}: the take, sample for sample");
        assert!(render.main[ch][start + frames..].iter().all(|&x| x == 0.0), "{what}: nothing after 4 bars");
        assert_eq!(render.buses[0][ch], render.main[ch], "{what}: bus Take 1 carries the take");
        assert!(render.buses[1][ch].iter().all(|&x| x == 0.0), "{what}: bus Take 2 is empty");
    }

    // Stopped: silent.
    let stopped = run(&mut plugin, bpm, meter, 4.0, 8 * BLOCK, false, None, &[]);
    assert!(stopped.main[0].iter().all(|&x| x == 0.0), "{what}: silent while stopped");
}

#[test]
fn lego_on_captured_bars_at_120_in_4_4() {
    lego_on_captured_bars(120.0, (4, 4), Build::Release, Pace::Offline);
}

#[test]
fn lego_on_captured_bars_at_93_in_7_8() {
    lego_on_captured_bars(93.0, (7, 8), Build::Release, Pace::Offline);
}

/// A loop take under a host loop over its bars: 16 passes, the host wrapping at the take's last
/// bar line, play the take 16 times over sample for sample (no fade, gap or doubling at the
/// wraps), and the take's wrap measures as seamless against its own beats.
#[test]
fn a_loop_take_plays_over_a_host_loop_without_a_seam() {
    let (bpm, meter) = (120.0, (4u16, 4u16));
    let mut plugin = load(Build::Release);
    plugin.render_offline();
    plugin.activate(RATE, BLOCK as u32);
    let takes_dir = scratch("workflow-loop");
    set_draft(&mut plugin, json!({
        "task": "text2music", "caption": "loop", "start_bar": 0, "length_bars": 2, "steps": 2, "seed": 9,
        "take_folder": takes_dir.display().to_string(), "take_options": { "loop": true },
    }));
    press_generate(&mut plugin, bpm, meter);
    let state = wait_for_takes(&mut plugin, bpm, meter, 1);
    let take = &session(&state)["takes"][0];
    let grid = &take["recipe"]["grid"];
    assert_eq!(grid["options"]["loop"], true, "{grid}");
    let audio = read_take(take["file"].as_str().unwrap());
    let frames = audio[0].len();
    assert_eq!(frames, 4 * RATE as usize, "2 bars at 120");
    let seam = backline_engine::audio::seam::seam_report(
        &backline_engine::audio::AudioBuffer::new(RATE as u32, audio.to_vec()),
        Some(RATE / 2.0),
    )
    .expect("a take to measure");
    assert!(seam.seamless && seam.flux_ratio <= backline_engine::audio::seam::SEAM_FLUX_BOUND, "{seam:?}");
    // JSON keeps the figure to the last bit or so (serde_json's default float parsing).
    let reported = grid["seam"]["flux_ratio"].as_f64().expect("the recipe reports the seam");
    assert!((reported - seam.flux_ratio).abs() <= 1e-12 * seam.flux_ratio.abs().max(1.0), "the recipe reports {reported}, measured {}", seam.flux_ratio);

    let mut played = [Vec::new(), Vec::new()];
    for _ in 0..16 {
        let pass = run(&mut plugin, bpm, meter, 0.0, frames, true, None, &[]);
        for ch in 0..2 {
            played[ch].extend_from_slice(&pass.main[ch]);
        }
    }
    for ch in 0..2 {
        for (pass, got) in played[ch].chunks(frames).enumerate() {
            assert!(got == &audio[ch][..], "channel {ch}, pass {}: not the take sample for sample", pass + 1);
        }
    }
}

/// The alloc-check bundle aborts on any allocation or free inside `process`: the whole flow in
/// real time, with a job running while blocks are processed, must get through.
#[test]
fn the_flow_never_allocates_on_the_audio_thread() {
    lego_on_captured_bars(120.0, (4, 4), Build::AllocCheck, Pace::Realtime);
}

#[test]
fn a_project_with_two_takes_reopens_and_a_missing_file_is_contained() {
    let (bpm, meter) = (120.0, (4, 4));
    let bar = 96_000usize;
    let mut plugin = load(Build::Release);
    plugin.activate(RATE, BLOCK as u32);
    let takes_dir = scratch("workflow-reopen");
    set_draft(&mut plugin, json!({
        "task": "text2music", "caption": "dusty drums", "start_bar": 0, "length_bars": 2,
        "steps": 2, "take_folder": takes_dir.display().to_string(),
    }));
    press_generate(&mut plugin, bpm, meter);
    wait_for_takes(&mut plugin, bpm, meter, 1);
    press_generate(&mut plugin, bpm, meter);
    let mut state = wait_for_takes(&mut plugin, bpm, meter, 2);
    let s = session(&state);
    let (first, second) = (s["takes"][0].clone(), s["takes"][1].clone());
    assert_ne!(first["audio_sha256"], second["audio_sha256"], "two seeds, two takes");
    assert_eq!(s["slots"][0], second["id"]);
    // The producer puts the first take on bus Take 2.
    edit_session(&mut state, |s| s["slots"][1] = first["id"].clone());
    let saved = state_bytes(&state);
    let (a, b) = (read_take(second["file"].as_str().unwrap()), read_take(first["file"].as_str().unwrap()));

    let reopen = |saved: &[u8]| {
        let mut plugin = load(Build::Release);
        plugin.load_state(saved).expect("the project loads");
        plugin.activate(RATE, BLOCK as u32);
        // Takes load off the audio thread; give the session a second while processing (other
        // tests' jobs may be running on the same cores).
        for _ in 0..100 {
            run(&mut plugin, bpm, meter, 0.0, BLOCK, false, None, &[]);
            std::thread::sleep(Duration::from_millis(10));
        }
        let render = run(&mut plugin, bpm, meter, 0.0, 2 * bar, true, None, &[]);
        (plugin, render)
    };

    let (_, render) = reopen(&saved);
    for ch in 0..2 {
        assert_eq!(render.buses[0][ch], a[ch], "bus Take 1: the A/B take");
        assert_eq!(render.buses[1][ch], b[ch], "bus Take 2: the first take");
        for i in (0..2 * bar).step_by(997) {
            assert!((render.main[ch][i] - (a[ch][i] + b[ch][i])).abs() < 1e-6, "main = both takes");
        }
    }

    // The A/B take's file is deleted behind the plugin's back: the project still opens, that
    // take is silent, the other still plays, and both stay listed.
    std::fs::remove_file(second["file"].as_str().unwrap()).unwrap();
    let (mut plugin, render) = reopen(&saved);
    for ch in 0..2 {
        assert!(render.buses[0][ch].iter().all(|&x| x == 0.0), "the missing take is silent");
        assert_eq!(render.buses[1][ch], b[ch], "the other take plays");
        assert_eq!(render.main[ch], b[ch]);
    }
    let listed = session(&state_json(&plugin.save_state()))["takes"].as_array().unwrap().len();
    assert_eq!(listed, 2, "a missing file never drops the take from the project");
}

/// The producer removes Backline from the track while a long job runs: the host destroys the
/// instance, which cancels the job (it stops within a step, so destroying does not wait for
/// the rest of it), writes no take, and leaves the process's engine and shared models ready
/// for the next instance, whose job completes.
#[test]
fn removing_the_plugin_mid_job_cancels_it_and_the_next_instance_works() {
    let (bpm, meter) = (120.0, (4, 4));
    let takes_dir = scratch("workflow-cancel");
    let mut plugin = load(Build::Release);
    plugin.activate(RATE, BLOCK as u32);
    set_draft(&mut plugin, json!({
        "task": "text2music", "caption": "long ambient pad", "start_bar": 0, "length_bars": 64,
        "steps": 200, "model": "acestep-v15-base", "take_folder": takes_dir.display().to_string(),
    }));
    press_generate(&mut plugin, bpm, meter);
    // Let it get into the diffusion loop, processing blocks as a host does.
    for _ in 0..40 {
        run(&mut plugin, bpm, meter, 0.0, BLOCK, false, None, &[]);
        std::thread::sleep(Duration::from_millis(50));
    }
    let destroying = Instant::now();
    drop(plugin);
    let destroyed_in = destroying.elapsed();
    eprintln!("destroyed mid-job in {destroyed_in:?}");

    // The next instance generates on the same engine and models.
    let mut next = load(Build::Release);
    next.activate(RATE, BLOCK as u32);
    set_draft(&mut next, json!({
        "task": "text2music", "caption": "short drums", "start_bar": 0, "length_bars": 2,
        "steps": 2, "take_folder": takes_dir.display().to_string(),
    }));
    let job_started = Instant::now();
    press_generate(&mut next, bpm, meter);
    let state = wait_for_takes(&mut next, bpm, meter, 1);
    let short_job = job_started.elapsed();
    let files: Vec<_> = std::fs::read_dir(&takes_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(files.len(), 1, "only the second instance's take was written: {files:?}");
    assert!(files[0].to_string_lossy().contains("short drums"), "{files:?}");
    assert_eq!(session(&state)["takes"].as_array().unwrap().len(), 1);
    // 200 steps of a 128 s clip are far longer than a 2-step 4 s clip; a destroy that waited
    // for the long job would take many times the short job's whole run.
    assert!(destroyed_in < short_job * 3, "destroy took {destroyed_in:?}; a whole short job {short_job:?}");
}
