//! `process-bench [plugin.clap]`: how long Backline's `process()` takes per 64-sample block at
//! 48 kHz (a 1.333 ms period; the budget is 2%, 26.7 µs), measured through clack-host:
//! - idle: the transport playing, capture on, no take;
//! - while a job runs: a lego job on the tiny checkpoint set runs on the engine worker (the
//!   same two cores), the transport playing and capturing;
//! - playing a take: the result on the timeline in slot 1.
//!
//! Each figure includes the test host's own per-call work (copying the buffers in and out), which
//! the idle row bounds. Wall time counts the moments the OS gives the core to the job's threads
//! (this host thread has no real-time priority, as a DAW's audio thread has); the thread's CPU
//! time does not, so both are reported. Run with
//! `cargo run --release --features backline-engine/cli -p backline-tests --bin process-bench`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use backline_engine::audio::grid::TimeSignature;
use backline_tests::clap::{set_param, state_bytes, state_json, ClapPlugin, HostTransport};
use backline_tests::workflow::{click_track, edit_session, scratch, session, use_tiny_checkpoints};
use backline_tests::{clap_bundle, Build};

const RATE: f64 = 48_000.0;
const BLOCK: usize = 64;
const BPM: f64 = 120.0;

/// CPU time this thread has used, in seconds.
fn thread_cpu_s() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// One block's cost: wall seconds and this thread's CPU seconds.
type Cost = (f64, f64);

struct Host {
    plugin: ClapPlugin,
    quarters: f64,
    clicks: Vec<f32>,
    silence: Vec<f32>,
}

impl Host {
    /// One block of the song, playing; returns what `process` took.
    fn block(&mut self, playing: bool) -> Cost {
        let at = ((self.quarters * RATE * 60.0 / BPM) as usize) % (self.clicks.len() - BLOCK);
        let side = &self.clicks[at..at + BLOCK];
        let t = HostTransport { playing, tempo: Some(BPM), meter: Some((4, 4)), quarters: self.quarters };
        let event = t.event();
        let (started, cpu) = (Instant::now(), thread_cpu_s());
        self.plugin.process([&self.silence, &self.silence], [side, side], &[], Some(&event));
        let took = (started.elapsed().as_secs_f64(), thread_cpu_s() - cpu);
        if playing {
            self.quarters += BLOCK as f64 / (RATE * 60.0 / BPM);
        }
        took
    }
}

fn report(what: &str, costs: Vec<Cost>) {
    let period = BLOCK as f64 / RATE;
    let stats = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
        let max = *times.last().unwrap();
        let cell = |t: f64| format!("{:.1} µs ({:.2}%)", t * 1e6, 100.0 * t / period);
        format!("{} | {} | {}", cell(mean), cell(p99), cell(max))
    };
    let wall = stats(costs.iter().map(|c| c.0).collect());
    let cpu = stats(costs.iter().map(|c| c.1).collect());
    println!("| {what}, wall | {} | {wall} |", costs.len());
    println!("| {what}, thread CPU | {} | {cpu} |", costs.len());
}

fn main() {
    use_tiny_checkpoints("process-bench");
    let path = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| clap_bundle(Build::Release));
    let mut plugin = ClapPlugin::load(&path);
    plugin.activate(RATE, BLOCK as u32);
    let takes = scratch("process-bench-takes");
    let mut state = state_json(&plugin.save_state());
    edit_session(&mut state, |s| {
        s["task"] = "lego".into();
        s["track_name"] = "bass".into();
        s["length_bars"] = 4.into();
        s["steps"] = 8.into();
        s["take_folder"] = takes.display().to_string().into();
    });
    plugin.load_state(&state_bytes(&state)).expect("draft");
    let capture = plugin.param("Capture source");
    let generate = plugin.param("Generate");
    let clicks = click_track(BPM, TimeSignature::FOUR_FOUR, RATE, 0.0, (RATE * 10.5) as usize);
    let first = HostTransport { playing: true, tempo: Some(BPM), meter: Some((4, 4)), quarters: 0.0 }.event();
    let silence = vec![0.0f32; BLOCK];
    plugin.process([&silence, &silence], [&clicks[..BLOCK], &clicks[..BLOCK]], &[set_param(capture, 1.0)], Some(&first));
    let mut host = Host { plugin, quarters: BLOCK as f64 / (RATE * 60.0 / BPM), clicks, silence };

    println!("| state | blocks | mean | p99 | max |\n|---|---|---|---|---|");
    // Five bars captured (and the idle figure on the way).
    let idle: Vec<Cost> = (0..(RATE * 10.0) as usize / BLOCK).map(|_| host.block(true)).collect();
    report("idle (playing, capturing)", idle);

    let on = HostTransport { playing: false, tempo: Some(BPM), meter: Some((4, 4)), quarters: 0.0 }.event();
    let s = host.silence.clone();
    host.plugin.process([&s, &s], [&s, &s], &[set_param(generate, 1.0)], Some(&on));
    host.plugin.process([&s, &s], [&s, &s], &[set_param(generate, 0.0)], Some(&on));
    let mut during = Vec::new();
    let started = Instant::now();
    host.quarters = 0.0;
    loop {
        // Keep pace with real time, as a DAW does.
        let block_start = Instant::now();
        during.push(host.block(true));
        if during.len() % 500 == 0 {
            let takes = session(&state_json(&host.plugin.save_state()))["takes"].as_array().map_or(0, Vec::len);
            if takes > 0 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(600), "the job did not finish");
        }
        let period = Duration::from_secs_f64(BLOCK as f64 / RATE);
        if let Some(rest) = period.checked_sub(block_start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    report("while a lego job runs", during);

    host.quarters = 0.0;
    let playing: Vec<Cost> = (0..(RATE * 8.0) as usize / BLOCK).map(|_| host.block(true)).collect();
    report("playing the take (slot 1)", playing);
}
