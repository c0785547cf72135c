//! The audio thread never allocates. The alloc-check bundle (the release build with
//! `--features alloc-check`) aborts the host on any allocation or free inside `process`; these
//! tests drive it hard, and prove the check is armed.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use backline_tests::clap::{set_param, ClapPlugin, HostTransport};
use backline_tests::{clap_bundle, Build};

/// Thousands of blocks at two sample rates with every block size from 1 to 8192, the transport
/// playing (and jumping, as when a host loops), the click on, and parameters moving.
#[test]
fn thousands_of_blocks_without_allocating() {
    let mut plugin = ClapPlugin::load(&clap_bundle(Build::AllocCheck));
    let (gain, click, bypass, capture, take) = (
        plugin.param("Output gain"),
        plugin.param("Guide click"),
        plugin.param("Bypass"),
        plugin.param("Capture source"),
        plugin.param("Take level"),
    );
    let sizes = [1usize, 2, 17, 64, 256, 480, 1024, 4096, 8192, 333];
    let main: Vec<f32> = (0..8192).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
    let side: Vec<f32> = (0..8192).map(|i| (i as f32 * 0.02).cos() * 0.3).collect();
    let mut blocks = 0;
    for sample_rate in [44_100.0, 48_000.0] {
        plugin.activate(sample_rate, 8192);
        let mut quarters = 0.0;
        for i in 0..2_500usize {
            let len = sizes[i % sizes.len()];
            let events = match i % 50 {
                0 => vec![set_param(click, 1.0), set_param(gain, (i % 7) as f64 / 7.0)],
                10 => vec![set_param(bypass, 1.0), set_param(capture, 1.0)],
                20 => vec![set_param(bypass, 0.0), set_param(take, 0.3)],
                _ => vec![],
            };
            // Every 400 blocks the host loops back to bar 3.
            if i % 400 == 399 {
                quarters = 8.0;
            }
            let transport = HostTransport { playing: i % 300 < 280, tempo: Some(97.0), meter: Some((7, 8)), quarters };
            plugin.process([&main[..len], &main[..len]], [&side[..len], &side[..len]], &events, Some(&transport.event()));
            quarters += len as f64 / (sample_rate * 60.0 / 97.0);
            blocks += 1;
        }
    }
    assert_eq!(blocks, 5_000);
}

/// The check above can fail: with the checked build's probe switched on, the plugin allocates
/// in `process` and the host process must die by SIGABRT.
#[test]
fn an_allocation_in_process_aborts_the_host() {
    let run = |probe: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_clap-render"));
        cmd.arg(clap_bundle(Build::AllocCheck)).arg("20");
        if probe {
            cmd.env("BACKLINE_ALLOC_PROBE", "1");
        }
        cmd.output().expect("run clap-render")
    };
    let clean = run(false);
    assert!(clean.status.success(), "clean run failed: {}", String::from_utf8_lossy(&clean.stderr));
    let allocating = run(true);
    assert_eq!(
        allocating.status.signal(),
        Some(6),
        "expected SIGABRT, got {:?}; stderr: {}",
        allocating.status,
        String::from_utf8_lossy(&allocating.stderr)
    );
}
