//! The session on an ACE-Step server, as the editor's Engine row sets it: `backline serve`'s
//! server runs in this process on loopback, on the tiny checkpoint set. A take made through it is
//! the take made in process, file for file; a server that is down, or that wants another key, is
//! a message, never a hang; switching back to this computer works at once. (Its own test binary:
//! the switch is saved in this machine's settings, which the other session tests share.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backline_engine::audio::grid::TimeSignature;
use backline_engine::backend::{LocalBackend, LocalSettings};
use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::server::{self, ServerConfig};
use backline_plugin::params::BacklineParams;
use backline_plugin::session::Session;
use backline_plugin::settings::MachineSettings;
use backline_plugin::transport::TransportSnapshot;
use backline_plugin::AudioShared;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("remote-session-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn session(takes: &Path) -> Arc<Session> {
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
    std::mem::forget(session.connect(48_000.0, 512));
    {
        let mut draft = session.params.session.write();
        draft.take_folder = takes.display().to_string();
        draft.caption = "remote drums".into();
        draft.steps = 2;
        draft.seed = 42;
        draft.length_bars = 2;
    }
    session.start();
    session
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Generates the draft and returns its take's audio hash, or the message.
fn one_take(s: &Arc<Session>) -> Result<String, String> {
    s.dismiss_notices();
    let before = s.params.session.read().takes.len();
    s.generate();
    wait_until("the job's end", Duration::from_secs(120), || s.params.session.read().takes.len() > before || !s.notices().is_empty());
    match s.params.session.read().takes.get(before) {
        Some(take) => Ok(take.audio_sha256.clone()),
        None => Err(s.notices().join(" ")),
    }
}

#[test]
fn a_take_through_a_server_is_the_take_made_here() {
    let root = scratch("machine");
    let checkpoints = root.join("checkpoints");
    synth::write_set(&checkpoints, SynthSize::Tiny, 3).unwrap();
    std::env::set_var("XDG_CONFIG_HOME", root.join("config"));
    std::env::set_var("BACKLINE_CHECKPOINTS", &checkpoints);
    // The server's engine holds the weights as the plugin's would.
    let precision = MachineSettings::default().precision;
    let backend = LocalBackend::new(LocalSettings { precision, ..LocalSettings::cpu(&checkpoints) }).unwrap();
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        api_key: Some("studio-key".into()),
        max_queue: server::DEFAULT_MAX_QUEUE,
        max_upload_bytes: 64 << 20,
        out_dir: root.join("served"),
        retention: server::DEFAULT_RETENTION,
    };
    let running = server::start(config, Arc::new(backend), "cpu".into()).unwrap();
    let address = running.addr.to_string();

    let s = session(&scratch("takes"));
    let here = one_take(&s).expect("the take made in process");

    // The editor's row: a server, typed without its scheme, with its key.
    s.set_server(true, &address, "studio-key");
    assert_eq!(s.machine().server_url, format!("http://{address}"));
    wait_until("the server's models", Duration::from_secs(30), || s.models().is_ok());
    let models = s.models().unwrap();
    assert!(models.dits.iter().any(|d| d.name == "acestep-v15-turbo"), "{:?}", models.dits);
    let there = one_take(&s).expect("the take made through the server");
    assert_eq!(there, here, "the server's take is not the one made in process");
    let take = s.params.session.read().takes.last().cloned().unwrap();
    assert_eq!((take.bars, take.recipe.seeds()), (2, vec![42]));
    // Remembered for the machine: a new instance uses the server too.
    assert!(MachineSettings::load().use_server);

    // A wrong key, then a server that is down: messages with the reason.
    s.set_server(true, &address, "wrong");
    let message = one_take(&s).unwrap_err();
    assert!(message.contains("failed") && message.contains("401"), "{message}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    s.set_server(true, &format!("http://{closed}"), "");
    wait_until("the models panel's message", Duration::from_secs(30), || s.models().is_err_and(|e| e.contains("not answering")));
    let message = one_take(&s).unwrap_err();
    assert!(message.contains("failed") && message.contains("not answering"), "{message}");
    // No address at all.
    s.set_server(true, "", "");
    assert!(s.models().unwrap_err().contains("Enter the address"));

    // Back to this computer, at once.
    s.set_server(false, &address, "");
    assert_eq!(one_take(&s), Ok(here));
    s.shutdown();
    running.stop();
}
