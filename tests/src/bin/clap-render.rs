//! `clap-render <plugin.clap> <blocks>`: load a CLAP plugin and process `blocks` blocks of
//! silence with a playing transport and the guide click on, then exit 0.
//!
//! A separate process, so a test can watch a plugin abort the host (the alloc-check bundle aborts
//! on any allocation in `process`) without taking the test runner down with it.

use std::path::PathBuf;

use backline_tests::clap::{render_silence, set_param, ClapPlugin, HostTransport};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(blocks)) = (args.next(), args.next()) else {
        eprintln!("usage: clap-render <plugin.clap> <blocks>");
        std::process::exit(2);
    };
    let blocks: usize = blocks.parse().expect("blocks is a number");
    let mut plugin = ClapPlugin::load(&PathBuf::from(path));
    plugin.activate(48_000.0, 512);
    let click = set_param(plugin.param("Guide click"), 1.0);
    let transport = HostTransport { playing: true, tempo: Some(120.0), meter: Some((4, 4)), quarters: 0.0 };
    render_silence(&mut plugin, 48_000.0, transport, &[512], blocks * 512, &[click]);
    println!("processed {blocks} blocks");
}
