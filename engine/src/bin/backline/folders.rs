//! Checkpoint folders as `models` and `check` see them: which model a folder holds (the loader
//! that accepts its `config.json`), and whether every tensor the model needs is there, shaped as
//! that config implies. Validation reads headers only, so it is quick even for full-size weights.

use std::path::Path;

use backline_engine::checkpoint::tensor_index::TensorIndex;
use backline_engine::checkpoint::{
    CheckpointError, DitFolder, LmFolder, TextEncoderFolder, VaeFolder, TEXT_ENCODER_FOLDER, VAE_FOLDER,
};

/// The names of the kinds, as listed.
const VAE: &str = "VAE";
const TEXT_ENCODER: &str = "text encoder";
const LM: &str = "5 Hz LM";

/// What a folder turned out to be.
enum Inspected {
    /// A loader accepted the config. `result` is the validation: a summary, or what is wrong.
    Checkpoint { kind: String, result: Result<String, CheckpointError> },
    /// No loader accepted the config: each one's reason.
    Unknown(Vec<(&'static str, CheckpointError)>),
}

/// Whether an open failed because the config describes another model (or there is none), as
/// opposed to a folder of this model with a problem.
fn refuses_config(e: &CheckpointError) -> bool {
    match e {
        CheckpointError::WrongModel { .. } => true,
        CheckpointError::MissingFile { path, .. } => path.file_name().is_some_and(|n| n == "config.json"),
        _ => false,
    }
}

fn summary(weights: &TensorIndex) -> String {
    let params = weights.parameter_count() as f64;
    let (value, unit) = if params >= 1e9 { (params / 1e9, "B") } else { (params / 1e6, "M") };
    format!("{} tensors, {value:.1}{unit} parameters", weights.tensors.len())
}

/// Try the DiT, the 5 Hz LM, the text encoder (both Qwen3s; the LM's weights carry `model.`),
/// then the VAE (whose config has no required name key, so it goes
/// last), and validate the first that accepts the folder.
fn inspect(dir: &Path) -> Inspected {
    let mut refusals = Vec::new();
    match DitFolder::open(dir) {
        Ok(f) => {
            let kind = format!("DiT ({})", f.model_kind());
            return Inspected::Checkpoint { kind, result: f.validate().map(|()| summary(&f.weights)) };
        }
        Err(e) if refuses_config(&e) => refusals.push(("a DiT", e)),
        Err(e) => return Inspected::Checkpoint { kind: "DiT".into(), result: Err(e) },
    }
    match LmFolder::open(dir) {
        Ok(f) => return Inspected::Checkpoint { kind: LM.into(), result: f.validate().map(|()| summary(&f.weights)) },
        Err(e) if refuses_config(&e) => refusals.push(("the 5 Hz LM", e)),
        Err(e) => return Inspected::Checkpoint { kind: LM.into(), result: Err(e) },
    }
    match TextEncoderFolder::open(dir) {
        Ok(f) => {
            return Inspected::Checkpoint {
                kind: TEXT_ENCODER.into(),
                result: f.validate().map(|()| summary(&f.weights)),
            }
        }
        Err(e) if refuses_config(&e) => refusals.push(("the text encoder", e)),
        Err(e) => return Inspected::Checkpoint { kind: TEXT_ENCODER.into(), result: Err(e) },
    }
    match VaeFolder::open(dir) {
        Ok(f) => Inspected::Checkpoint { kind: VAE.into(), result: f.validate().map(|()| summary(&f.weights)) },
        Err(e) if refuses_config(&e) => {
            refusals.push(("the VAE", e));
            Inspected::Unknown(refusals)
        }
        Err(e) => Inspected::Checkpoint { kind: VAE.into(), result: Err(e) },
    }
}

/// `backline check DIR`.
pub fn check(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    match inspect(dir) {
        Inspected::Checkpoint { kind, result: Ok(summary) } => {
            println!("{}: {kind}, OK ({summary})", dir.display());
            Ok(())
        }
        Inspected::Checkpoint { kind, result: Err(e) } => Err(format!("{} ({kind}) is not usable: {e}", dir.display())),
        Inspected::Unknown(refusals)
            if refusals.iter().all(|(_, e)| matches!(e, CheckpointError::MissingFile { .. })) =>
        {
            let hint = if dir.join(VAE_FOLDER).is_dir() || dir.join(TEXT_ENCODER_FOLDER).is_dir() {
                format!("; it looks like a checkpoints folder: try `backline models --checkpoints {}`", dir.display())
            } else {
                String::new()
            };
            Err(format!("{} has no config.json, so it is not a model's folder{hint}", dir.display()))
        }
        Inspected::Unknown(refusals) => {
            let reasons: Vec<String> = refusals.iter().map(|(what, e)| format!("\n  as {what}: {e}")).collect();
            Err(format!("{} is not a checkpoint folder:{}", dir.display(), reasons.concat()))
        }
    }
}

/// `backline models`: one line per folder; fails if any checkpoint is invalid, or if there is no
/// DiT, VAE or text encoder where the pipeline looks for them.
pub fn list(checkpoints: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(checkpoints).map_err(|e| {
        format!(
            "cannot read the checkpoints folder {}: {e}; pass --checkpoints DIR or set BACKLINE_CHECKPOINTS",
            checkpoints.display()
        )
    })?;
    let mut dirs: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    println!("{}:", checkpoints.display());
    let (mut failed, mut dits) = (0, 0);
    let line = |name: &str, kind: &str, status: &str| println!("  {name:<26} {kind:<14} {status}");
    for dir in &dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // The pipeline loads these two by name, so the folder must hold what its name says.
        let expected = match name.as_str() {
            VAE_FOLDER => Some(VAE),
            TEXT_ENCODER_FOLDER => Some(TEXT_ENCODER),
            _ => None,
        };
        match inspect(dir) {
            Inspected::Checkpoint { kind, result } => {
                let status = match (&result, expected) {
                    (_, Some(want)) if kind != want => format!("FAILED: holds a {kind}, not the {want}"),
                    (Ok(summary), _) => format!("OK ({summary})"),
                    (Err(e), _) => format!("FAILED: {e}"),
                };
                if status.starts_with("FAILED") {
                    failed += 1;
                } else if kind.starts_with("DiT") {
                    dits += 1;
                }
                line(&name, &kind, &status);
            }
            Inspected::Unknown(_) => match expected {
                Some(want) => {
                    failed += 1;
                    line(&name, want, "FAILED: not a checkpoint folder (see `backline check`)");
                }
                None => line(&name, "-", "not a checkpoint folder (skipped)"),
            },
        }
    }
    for (name, kind) in [(VAE_FOLDER, VAE), (TEXT_ENCODER_FOLDER, TEXT_ENCODER)] {
        if !checkpoints.join(name).is_dir() {
            failed += 1;
            line(name, kind, "MISSING (generation needs it)");
        }
    }
    if dits == 0 {
        failed += 1;
        println!("  no usable DiT folder (acestep-v15-turbo, acestep-v15-base, ...)");
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} problem(s) in {}", checkpoints.display())),
    }
}
