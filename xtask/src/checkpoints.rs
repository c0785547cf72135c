//! Synthetic checkpoint sets in the published folder layout (see
//! `backline_engine::checkpoint::synth`):
//! - `cargo xtask tiny-checkpoint DIR [--xl]`: the tiny set, plus a tiny XL turbo DiT with `--xl`;
//! - `cargo xtask synth-checkpoint DIR --full`: the set at the published 2B shapes (bf16);
//! - `cargo xtask synth-checkpoint DIR --xl`: the XL turbo DiT folder at the published XL shapes,
//!   stored in f32 as the published XL weights are (about 20 GB);
//! - `cargo xtask synth-checkpoint DIR --lm 0.6B|1.7B|4B`: a 5 Hz LM folder at that model's
//!   published shapes (bf16), for the LM's speed and memory work.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use backline_engine::checkpoint::synth::{self, SynthSize};

const DEFAULT_SEED: u64 = 20_261_124;

pub fn run(command: &str, args: &[String]) -> anyhow::Result<()> {
    let mut dir = None;
    let mut seed = DEFAULT_SEED;
    let (mut full, mut xl) = (false, false);
    let mut lm = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seed" => seed = rest.next().context("--seed needs a value")?.parse().context("--seed must be an integer")?,
            "--full" => full = true,
            "--xl" => xl = true,
            "--lm" => {
                lm = Some(match rest.next().map(String::as_str) {
                    Some("0.6B") => synth::LmSize::Lm0_6B,
                    Some("1.7B") => synth::LmSize::Lm1_7B,
                    Some("4B") => synth::LmSize::Lm4B,
                    other => bail!("--lm takes 0.6B, 1.7B or 4B, not {other:?}"),
                })
            }
            other if other.starts_with('-') => bail!("unknown option {other}"),
            other if dir.is_none() => dir = Some(PathBuf::from(other)),
            other => bail!("unexpected argument {other}"),
        }
    }
    let usage = match command {
        "synth-checkpoint" => "usage: cargo xtask synth-checkpoint DIR (--full | --xl | --lm 0.6B|1.7B|4B) [--seed N]",
        _ => "usage: cargo xtask tiny-checkpoint DIR [--xl] [--seed N]",
    };
    let dir = dir.context(usage)?;

    let started = Instant::now();
    let mut folders = Vec::new();
    let xl_folder = |size| synth::write_xl_turbo(&dir, size, seed + 4).with_context(|| format!("writing the XL DiT under {}", dir.display()));
    if let Some(size) = lm {
        if command != "synth-checkpoint" || full || xl {
            bail!("--lm goes alone with synth-checkpoint: cargo xtask synth-checkpoint DIR --lm 0.6B");
        }
        let folder = dir.join(size.folder());
        let bytes = synth::write_lm_folder(&folder, size, seed + 5).with_context(|| format!("writing {}", folder.display()))?;
        println!("{bytes:>12} bytes  {}", folder.display());
        println!("checkpoints (seed {seed}) written in {:.1} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    match (command, full, xl) {
        ("tiny-checkpoint", false, _) => {
            folders = synth::write_set(&dir, SynthSize::Tiny, seed).with_context(|| format!("writing {}", dir.display()))?.folders;
            if xl {
                folders.push(xl_folder(SynthSize::Tiny)?);
            }
        }
        ("synth-checkpoint", true, false) => {
            folders = synth::write_set(&dir, SynthSize::Full, seed).with_context(|| format!("writing {}", dir.display()))?.folders;
        }
        ("synth-checkpoint", false, true) => {
            folders.push(xl_folder(SynthSize::Full)?);
        }
        ("tiny-checkpoint", true, _) => bail!("tiny-checkpoint takes no --full (use synth-checkpoint DIR --full)"),
        _ => bail!("synth-checkpoint writes a published-size set: pass --full (2B set) or --xl (XL DiT); for the tiny set use tiny-checkpoint"),
    }
    for (folder, bytes) in &folders {
        println!("{:>12} bytes  {}", bytes, folder.display());
    }
    println!("checkpoints (seed {seed}) written in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
