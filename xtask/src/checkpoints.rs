//! `cargo xtask tiny-checkpoint DIR` and `cargo xtask synth-checkpoint DIR --full`: synthetic
//! checkpoint sets in the published folder layout (see `backline_engine::checkpoint::synth`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use backline_engine::checkpoint::synth::{self, SynthSize};

const DEFAULT_SEED: u64 = 20_261_124;

pub fn run(command: &str, args: &[String]) -> anyhow::Result<()> {
    let mut dir = None;
    let mut seed = DEFAULT_SEED;
    let mut full = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seed" => seed = rest.next().context("--seed needs a value")?.parse().context("--seed must be an integer")?,
            "--full" => full = true,
            other if other.starts_with('-') => bail!("unknown option {other}"),
            other if dir.is_none() => dir = Some(PathBuf::from(other)),
            other => bail!("unexpected argument {other}"),
        }
    }
    let dir = dir.with_context(|| format!("usage: cargo xtask {command} DIR [--seed N]{}", if command == "synth-checkpoint" { " --full" } else { "" }))?;
    let size = match (command, full) {
        ("tiny-checkpoint", false) => SynthSize::Tiny,
        ("synth-checkpoint", true) => SynthSize::Full,
        ("synth-checkpoint", false) => bail!("synth-checkpoint writes the full-size set: pass --full (for the tiny set use tiny-checkpoint)"),
        _ => bail!("tiny-checkpoint takes no --full (use synth-checkpoint DIR --full)"),
    };

    let started = Instant::now();
    let report = synth::write_set(&dir, size, seed).with_context(|| format!("writing {}", dir.display()))?;
    for (folder, bytes) in &report.folders {
        println!("{:>12} bytes  {}", bytes, folder.display());
    }
    println!("{:?} checkpoint set (seed {seed}) in {:.1} s", size, started.elapsed().as_secs_f64());
    Ok(())
}
