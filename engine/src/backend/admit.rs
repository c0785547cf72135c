//! The pre-flight every local job goes through, once, before any model loads: validate the
//! request, choose the DiT folder, check the task against it and the memory budget, resolve the
//! per-model defaults and seeds, and read, convert and check each audio input. What passes is an
//! [`Admitted`] job, which the pipeline runs without checking any of it again.

use std::path::{Path, PathBuf};
use std::sync::Arc;



use super::{AudioInput, JobRequest};
use crate::audio::{read_audio, to_model_format, AudioBuffer};
use crate::checkpoint::{CheckpointError, DitFolder, LoadAs};
use crate::error::{AudioRole, InputError, JobError};
use crate::request::{RequestError, ResolvedRequest, SourceSpan};
use crate::store::{folder_name, ModelStore};
use crate::task::{ModelKind, TaskType};

/// Audio quieter than this everywhere (−90 dBFS) counts as silence: nothing for the model to
/// follow, and almost always a wrong file or an empty capture.
pub const SILENCE_PEAK: f32 = 3.162e-5;

/// An audio input as the model takes it: 48 kHz stereo, finite, clamped to [−1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelAudio {
    /// The file's path or the samples' label.
    pub label: String,
    pub audio: AudioBuffer,
}

/// A job that passed the pre-flight.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The request made concrete for the chosen DiT; its `recipe` names the model folder.
    pub resolved: ResolvedRequest,
    /// The chosen DiT folder, opened (config and weight index read, nothing loaded).
    pub dit: DitFolder,
    /// Present for every task but text2music.
    pub source: Option<ModelAudio>,
    /// How repaint and lego pad the source (zero padding for the other tasks).
    pub span: Option<SourceSpan>,
    pub reference: Option<ModelAudio>,
}

/// Runs the pre-flight of `job` against the checkpoints folder `root` and `store`'s budget.
pub fn admit(root: &Path, store: &ModelStore, how: &LoadAs, job: JobRequest) -> Result<Admitted, JobError> {
    let JobRequest { mut request, src, reference } = job;
    let task = request.task_type;
    let src = src.or_else(|| request.src_audio.as_ref().map(|p| AudioInput::File(p.into())));
    let reference = reference.or_else(|| request.reference_audio.as_ref().map(|p| AudioInput::File(p.into())));
    request.validate_for_inputs(src.is_some())?;

    if how.device.is_cpu() {
        if let Some(missing) = how.precision.missing_instructions() {
            return Err(JobError::PrecisionUnsupported { precision: how.precision, missing });
        }
    }
    let dit = choose_dit(root, request.model.as_deref(), task)?;
    let kind = dit.model_kind();
    store.check_fits(&dit, how)?;

    // The recipe names what was used: the model folder, and the files (samples have no path).
    request.model = Some(folder_name(&dit.dir));
    request.src_audio = match &src {
        Some(AudioInput::File(path)) if task.needs_source_audio() => Some(path.display().to_string()),
        _ => None,
    };
    request.reference_audio = match &reference {
        Some(AudioInput::File(path)) => Some(path.display().to_string()),
        _ => None,
    };
    let resolved = request.resolve(kind)?;

    let (source, span) = match src.filter(|_| task.needs_source_audio()) {
        Some(input) => {
            let audio = model_audio(&input, AudioRole::Source)?;
            let span = resolved.source_span(audio.audio.duration_s()).map_err(|e| length_error(e, &audio))?;
            (Some(audio), Some(span))
        }
        None => (None, None),
    };
    let reference = reference.map(|input| model_audio(&input, AudioRole::Reference)).transpose()?;
    Ok(Admitted { resolved, dit, source, span, reference })
}

/// A source-length problem (too short or long for the model, a window past its end) is the
/// audio's fault when `source_span` names `src_audio`, else the window's.
fn length_error(e: RequestError, audio: &ModelAudio) -> JobError {
    match e {
        RequestError::Invalid { field, problem } if field == AudioRole::Source.field() => {
            InputError::Length { role: AudioRole::Source, label: audio.label.clone(), problem }.into()
        }
        e => e.into(),
    }
}

/// Reads and converts one input to the model's format, refusing what the model cannot use.
pub fn model_audio(input: &AudioInput, role: AudioRole) -> Result<ModelAudio, JobError> {
    let label = input.label();
    let decoded;
    let audio: &AudioBuffer = match input {
        AudioInput::File(path) => {
            decoded = read_audio(path).map_err(|e| InputError::Unreadable { role, error: e.into() })?;
            &decoded
        }
        AudioInput::Samples { audio, .. } => audio,
    };
    let problem = |p: &str| InputError::Malformed { role, label: label.clone(), problem: p.to_string() };
    if audio.sample_rate == 0 {
        return Err(problem("its sample rate is 0 Hz").into());
    }
    if audio.channels.is_empty() {
        return Err(problem("it has no channels").into());
    }
    if audio.validate().is_err() {
        return Err(problem("its channels differ in length").into());
    }
    if audio.is_empty() {
        return Err(InputError::Empty { role, label }.into());
    }
    if audio.channels.iter().flatten().any(|v| !v.is_finite()) {
        return Err(InputError::NotFinite { role, label }.into());
    }
    let mut converted = to_model_format(audio).map_err(|e| InputError::Unreadable { role, error: e.into() })?;
    if converted.peak() < SILENCE_PEAK {
        return Err(InputError::Silent { role, label }.into());
    }
    for v in converted.channels.iter_mut().flatten() {
        *v = v.clamp(-1.0, 1.0);
    }
    Ok(ModelAudio { label, audio: converted })
}

/// Each DiT folder of `root`, by name, sorted: opened, or why it cannot be (folders whose
/// config names another model, like `vae/`, are left out).
pub fn dit_folders(root: &Path) -> Result<Vec<(String, Result<DitFolder, Arc<CheckpointError>>)>, JobError> {
    let entries = std::fs::read_dir(root).map_err(|e| CheckpointError::Io {
        path: root.to_path_buf(),
        source: std::io::Error::new(e.kind(), format!("cannot read the checkpoints folder: {e}")),
    })?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    Ok(dirs
        .into_iter()
        .filter_map(|dir| match DitFolder::open(&dir) {
            Err(CheckpointError::WrongModel { .. }) => None,
            Err(CheckpointError::MissingFile { path, .. }) if path.ends_with("config.json") => None,
            opened => Some((folder_name(&dir), opened.map_err(Arc::new))),
        })
        .collect())
}

/// The DiT a job runs on: the one `asked` names (a folder name, or `turbo`/`base`/`sft`), else
/// the task's usual model (turbo for text2music, cover and repaint; base for the rest).
pub fn choose_dit(root: &Path, asked: Option<&str>, task: TaskType) -> Result<DitFolder, JobError> {
    let folders = dit_folders(root)?;
    let named = |name: &str| folders.iter().find(|(n, _)| n == name);
    let found = match asked {
        Some(asked) => {
            let alias = [ModelKind::Turbo, ModelKind::Base, ModelKind::Sft].into_iter().find(|k| k.as_str() == asked);
            let entry = named(asked).or_else(|| alias.and_then(|k| named(k.folder())));
            let Some((_, opened)) = entry else {
                return Err(RequestError::UnknownModel {
                    model: asked.to_string(),
                    available: folders.iter().map(|(n, _)| n.clone()).collect(),
                }
                .into());
            };
            opened
        }
        None => {
            let usual = if task.needs_base_model() { ModelKind::Base } else { ModelKind::Turbo };
            match named(usual.folder()) {
                Some((_, opened)) => opened,
                // Without the usual model, any usable DiT that runs the task will do.
                None => match folders.iter().find(|(_, f)| f.as_ref().is_ok_and(|f| f.model_kind().runs(task))) {
                    Some((_, opened)) => opened,
                    None => {
                        return Err(RequestError::ModelNotDownloaded {
                            task,
                            folder: usual.folder(),
                            checkpoints: root.display().to_string(),
                        }
                        .into())
                    }
                },
            }
        }
    };
    let folder = found.as_ref().map_err(|e| JobError::Checkpoint(Arc::clone(e)))?;
    let model = folder.model_kind();
    if !model.runs(task) {
        return Err(RequestError::TaskNeedsBaseModel { task, model }.into());
    }
    Ok(folder.clone())
}
