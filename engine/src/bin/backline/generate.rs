//! `backline generate`: everything that can fail without the models is checked first (the
//! request, the model folder against the task, the audio inputs, the output files), then one job
//! runs on the engine with a progress display, and each item is written with its recipe.

use std::path::{Path, PathBuf};
use std::time::Instant;

use backline_engine::audio::OutputFormat;
use backline_engine::checkpoint::{DitFolder, BASE_FOLDER, TURBO_FOLDER};
use backline_engine::job::Engine;
use backline_engine::pipeline::source::load_model_audio;
use backline_engine::pipeline::{PipelineOptions, PipelineWorker};
use backline_engine::request::{GenerationRequest, ModelKind, RequestError, ResolvedRequest};
use candle_core::{DType, Device};

use crate::args::{Format, GenerateArgs};
use crate::outputs::Outputs;
use crate::progress;

/// One generation as the CLI runs it.
pub struct Job {
    pub checkpoints: PathBuf,
    /// The DiT folder's name inside `checkpoints`.
    pub model: String,
    pub request: GenerationRequest,
    pub out: PathBuf,
    pub stem: String,
    pub format: OutputFormat,
    pub overwrite: bool,
}

pub fn run(args: GenerateArgs) -> Result<(), String> {
    let mut request = args.request.build()?;
    let format = match args.format {
        Some(format) => format,
        None => match request.audio_format {
            None => Format::Flac,
            Some(asked) => Format::from_request(asked).ok_or_else(|| {
                format!("the request asks for {}; the CLI writes wav or flac: pass --format", asked.as_str())
            })?,
        },
    };
    let model = request.model.clone().unwrap_or_else(|| TURBO_FOLDER.to_string());
    // The recipe records what was written and with which model.
    request.audio_format = Some(format.audio_format());
    request.model = Some(model.clone());
    let stem = args.name.unwrap_or_else(|| format!("backline-{}", request.task_type));
    let job = Job {
        checkpoints: args.checkpoints,
        model,
        request,
        out: args.out,
        stem,
        format: format.output(),
        overwrite: args.overwrite,
    };
    for path in generate(job)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Check, generate and write; returns the files written.
pub fn generate(job: Job) -> Result<Vec<PathBuf>, String> {
    job.request.validate().map_err(request_error)?;
    let kind = model_kind(&job.checkpoints, &job.model)?;
    let resolved = job.request.resolve(kind).map_err(request_error)?;
    check_audio_inputs(&resolved)?;
    let outputs = Outputs::plan(&job.out, &job.stem, &resolved.seeds, job.format, job.overwrite)?;
    outputs.prepare()?;

    let options =
        PipelineOptions { checkpoints: job.checkpoints, model: job.model, device: Device::Cpu, dtype: DType::F32 };
    let engine = Engine::start(move || Ok::<_, String>(PipelineWorker::new(options)))
        .map_err(|e| format!("cannot start the engine thread: {e}"))?;
    let started = Instant::now();
    // The resolved recipe carries the seeds the file names were made from.
    let handle = engine.submit(resolved.recipe.clone());
    let generation = progress::follow(&handle).map_err(|e| e.to_string())?;
    eprintln!(
        "generated {} item(s) of {:.1} s in {:.1} s",
        generation.audio.len(),
        generation.recipe.duration_s,
        started.elapsed().as_secs_f64()
    );
    outputs.write(&generation)
}

/// The kind of the DiT in `checkpoints/model`, refusing a folder that is not one.
fn model_kind(checkpoints: &Path, model: &str) -> Result<ModelKind, String> {
    if !checkpoints.is_dir() {
        return Err(format!(
            "the checkpoints folder {} does not exist; pass --checkpoints DIR or set BACKLINE_CHECKPOINTS \
             (`backline demo` writes a tiny synthetic set)",
            checkpoints.display()
        ));
    }
    let folder =
        DitFolder::open(&checkpoints.join(model)).map_err(|e| format!("cannot use the model `{model}`: {e}"))?;
    Ok(folder.model_kind())
}

fn request_error(e: RequestError) -> String {
    match e {
        RequestError::TaskNeedsBaseModel { .. } => format!("invalid request: {e} (pass --model {BASE_FOLDER})"),
        e => format!("invalid request: {e}"),
    }
}

/// Read the source and reference as the pipeline will, so a missing, empty, silent or too short
/// file stops the run before the models load.
fn check_audio_inputs(resolved: &ResolvedRequest) -> Result<(), String> {
    if let Some(path) = &resolved.src_audio {
        let audio = load_model_audio(Path::new(path), "source").map_err(|e| format!("--src-audio: {e}"))?;
        resolved.source_span(audio.duration_s()).map_err(|e| format!("invalid request: {e}"))?;
    }
    if let Some(path) = &resolved.reference_audio {
        load_model_audio(Path::new(path), "reference").map_err(|e| format!("--reference-audio: {e}"))?;
    }
    Ok(())
}
