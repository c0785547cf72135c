//! `backline demo`: the first command to run, with nothing downloaded. It writes the tiny
//! synthetic checkpoint set (random weights in the published layout) once, then generates ten
//! seconds through the whole pipeline. Random weights make noise-like audio: the demo shows that
//! everything runs and what a run writes, not what the model sounds like.

use std::path::{Path, PathBuf};

use backline_engine::audio::OutputFormat;
use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::checkpoint::TURBO_FOLDER;
use backline_engine::request::GenerationRequest;
use serde_json::json;

use crate::args::DemoArgs;
use crate::generate::{run_generate, GenerateRun};

/// Everything the demo writes by default, relative to the current folder.
const DEMO_ROOT: &str = "target/backline-demo";
/// The synthetic weights' seed: every demo set is the same.
const SYNTH_SEED: u64 = 0;
const SEED: u32 = 42;
const CAPTION: &str = "warm lo-fi hip hop, dusty drums, mellow electric piano, vinyl crackle";

pub fn run(args: &DemoArgs) -> Result<(), String> {
    let root = Path::new(DEMO_ROOT);
    let checkpoints = args.checkpoints.clone().unwrap_or_else(|| root.join("checkpoints"));
    // Earlier demo output is replaced only in the demo's own folder.
    let (out, overwrite): (PathBuf, bool) = match &args.out {
        Some(dir) => (dir.clone(), args.overwrite),
        None => (root.join("out"), true),
    };
    let synthetic = args.checkpoints.is_none() || !checkpoints.join(TURBO_FOLDER).is_dir();
    if !checkpoints.join(TURBO_FOLDER).is_dir() {
        eprintln!("writing the tiny synthetic checkpoint set to {}", checkpoints.display());
        synth::write_set(&checkpoints, SynthSize::Tiny, SYNTH_SEED)
            .map_err(|e| format!("cannot write the synthetic checkpoints: {e}"))?;
    }
    let request = GenerationRequest::from_value(json!({
        "task_type": "text2music",
        "caption": CAPTION,
        "instrumental": true,
        "duration": 10,
        "seed": SEED,
        "batch_size": 1,
        "audio_format": "flac",
        "model": TURBO_FOLDER,
    }))
    .map_err(|e| format!("the demo request is invalid: {e}"))?;
    let run = GenerateRun {
        checkpoints: checkpoints.clone(),
        device: candle_core::Device::Cpu,
        precision: backline_engine::precision::Precision::default(),
        request,
        bars: None,
        out,
        stem: "backline-demo".to_string(),
        format: OutputFormat::Flac24,
        overwrite,
        remote: None,
    };
    let written = run_generate(run)?;
    for path in &written {
        println!("{}", path.display());
    }
    if synthetic {
        eprintln!(
            "\nThese weights are tiny and random ({}), so the audio is noise-like: the demo checks that\n\
             every stage runs and shows what a run writes (audio plus its JSON recipe).",
            checkpoints.display()
        );
    }
    eprintln!(
        "For music, download the ACE-Step 1.5 checkpoints and run, for example:\n  \
         backline generate --checkpoints DIR --caption \"{CAPTION}\" --duration 30 --out takes\n\
         (`backline models --checkpoints DIR` checks the download first)."
    );
    Ok(())
}
