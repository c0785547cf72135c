//! `backline generate`: the CLI as a client of [`LocalBackend`], or with `--remote` of a
//! [`RemoteBackend`]. The local backend's pre-flight checks everything that can fail without the
//! models (the request, the model folder against the task, the audio inputs); a remote run checks
//! the request and its audio here and leaves the models to the server. Then the output files are
//! checked, one job runs with a progress display (Ctrl-C cancels it within a step, on the server
//! too, and nothing is written), and each item is written with its recipe.

use std::path::{Path, PathBuf};

use backline_engine::audio::{read_audio, OutputFormat};
use backline_engine::backend::{ApiForm, AudioInput, Backend, JobRequest, LocalBackend, LocalSettings, RemoteBackend, RemoteSettings};
use backline_engine::checkpoint::BASE_FOLDER;
use backline_engine::error::{AudioRole, JobError};
use backline_engine::precision::Precision;
use backline_engine::request::hosted::read_hosted_fields;
use backline_engine::request::{GenerationRequest, RequestError, Seed};
use backline_engine::store::Residency;
use backline_engine::task::{ModelKind, TaskType};
use serde_json::{Map, Value};
use candle_core::{DType, Device};

use crate::args::{Format, GenerateArgs};
use crate::bars::{apply_plan, shape_items, tiled_source, BarRun};
use crate::outputs::Outputs;
use crate::{interrupt, progress};

/// One generation as the CLI runs it.
pub struct GenerateRun {
    pub checkpoints: PathBuf,
    pub device: Device,
    pub precision: Precision,
    /// Unset `model`: the backend picks the task's usual model.
    pub request: GenerationRequest,
    /// With `--bars`: the plan, and the source the job gets in place of `src_audio`.
    pub bars: Option<(BarRun, Option<AudioInput>)>,
    pub out: PathBuf,
    pub stem: String,
    pub format: OutputFormat,
    pub overwrite: bool,
    /// `--remote`: the server that generates instead of this machine.
    pub remote: Option<RemoteSettings>,
}

pub fn run(args: GenerateArgs) -> Result<(), String> {
    let mut flags = args.request;
    let (bpm, meter) = match args.bars.bars {
        Some(_) => (flags.take_text("bpm"), flags.take_text("timesignature")),
        None => (None, None),
    };
    let hosted_window = args.window.fields();
    let window_given = flags.has("repainting_start") || flags.has("repainting_end") || !hosted_window.is_empty();
    let mut request = flags.build()?;
    if !hosted_window.is_empty() {
        if args.bars.bars.is_some() {
            return Err("--start-time, --end-time and --extend-*-duration are seconds of the source; with --bars, \
                        give the window as --repainting-start/--repainting-end"
                .into());
        }
        apply_hosted_window(&mut request, hosted_window)?;
    }
    let format = match args.format {
        Some(format) => format,
        None => match request.audio_format {
            None => Format::Flac,
            Some(asked) => Format::from_request(asked).ok_or_else(|| {
                format!("the request asks for {}; the CLI writes wav or flac: pass --format", asked.as_str())
            })?,
        },
    };
    // The recipe records what was written.
    request.audio_format = Some(format.audio_format());
    // A request file's tempo and meter count when no flag gave them.
    let bpm = bpm.or_else(|| request.bpm.map(|b| b.to_string()));
    let meter = meter.or_else(|| request.timesignature.clone());
    let bars = match args.bars.plan(bpm.as_deref(), meter.as_deref())? {
        None => None,
        Some(plan) => {
            apply_plan(&plan, &mut request, window_given);
            let (input, source) = match (request.task_type.needs_source_audio(), &request.src_audio) {
                (true, Some(path)) => tiled_source(&plan, path.as_ref()).map(|(i, s)| (Some(i), Some(s)))?,
                _ => (None, None),
            };
            Some((BarRun { plan, options: args.bars.options(), source }, input))
        }
    };
    let stem = args.name.unwrap_or_else(|| format!("backline-{}", request.task_type));
    let run = GenerateRun {
        checkpoints: args.checkpoints,
        device: parse_device(&args.device)?,
        precision: parse_precision(&args.precision)?,
        request,
        bars,
        out: args.out,
        stem,
        format: format.output(),
        overwrite: args.overwrite,
        remote: args.remote.map(|url| {
            let mut settings = RemoteSettings::new(url);
            settings.api_key = args.api_key;
            settings.form = args.api_form.as_deref().and_then(ApiForm::parse);
            settings
        }),
    };
    for path in run_generate(run)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// The hosted endpoints' window flags onto `request`, measured against its source: the task
/// becomes a repaint unless it names another that takes a window (lego).
fn apply_hosted_window(request: &mut GenerationRequest, mut window: Map<String, Value>) -> Result<(), String> {
    let source = request.src_audio.clone().ok_or("--start-time, --end-time and --extend-*-duration need --src-audio")?;
    let source_s = read_audio(Path::new(&source)).map_err(|e| format!("--src-audio: {e}"))?.duration_s();
    // The errors name the fields, which are the flags' names with `_` for `-`.
    read_hosted_fields(&mut window, Some(source_s)).map_err(|e| format!("the window flags: {e}"))?;
    if request.task_type == TaskType::Text2Music {
        request.task_type = TaskType::Repaint;
    }
    request.repainting_start = window["repainting_start"].as_f64().unwrap_or(0.0);
    request.repainting_end = window["repainting_end"].as_f64();
    Ok(())
}

pub fn parse_precision(name: &str) -> Result<Precision, String> {
    Precision::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Precision::ALL.iter().map(|p| p.name()).collect();
        format!("unknown precision `{name}`: use one of {}", names.join(", "))
    })
}

/// Check, generate and write; returns the files written.
pub fn run_generate(run: GenerateRun) -> Result<Vec<PathBuf>, String> {
    let mut job = JobRequest::new(run.request);
    let bar_run = match run.bars {
        Some((bar_run, input)) => {
            if let Some(input) = input {
                job = job.with_source(input);
            }
            Some(bar_run)
        }
        None => None,
    };
    let (backend, handle, outputs): (Box<dyn Backend>, _, _) = match run.remote {
        Some(settings) => {
            let seeds = draw_seeds(&mut job).map_err(|e| describe(&e))?;
            let outputs = Outputs::plan(&run.out, &run.stem, &seeds, run.format, run.overwrite)?;
            outputs.prepare()?;
            let backend = RemoteBackend::new(settings).map_err(|e| format!("cannot start the client thread: {e}"))?;
            interrupt::install();
            let handle = backend.submit(job);
            (Box::new(backend), handle, outputs)
        }
        None => {
            if !run.checkpoints.is_dir() {
                return Err(format!(
                    "the checkpoints folder {} does not exist; pass --checkpoints DIR or set BACKLINE_CHECKPOINTS \
                     (`backline demo` writes a tiny synthetic set)",
                    run.checkpoints.display()
                ));
            }
            // One job per process: each model is freed when its stage is over.
            let settings = LocalSettings {
                checkpoints: run.checkpoints,
                device: run.device,
                dtype: DType::F32,
                precision: run.precision,
                residency: Residency::PerStage,
            };
            let backend = LocalBackend::new(settings).map_err(|e| format!("cannot start the engine thread: {e}"))?;
            let admitted = backend.admit(job).map_err(|e| describe(&e))?;
            // The seeds are drawn by now, so the file names are known before any work.
            let outputs = Outputs::plan(&run.out, &run.stem, &admitted.resolved.seeds, run.format, run.overwrite)?;
            outputs.prepare()?;
            interrupt::install();
            let handle = backend.submit_admitted(admitted);
            (Box::new(backend), handle, outputs)
        }
    };
    let generation = progress::follow(&handle).map_err(|e| match e {
        JobError::Cancelled => "cancelled (Ctrl-C); nothing was written".to_string(),
        e => describe(&e),
    })?;
    let total = generation.recipe.time_costs.get("dit_total_time_cost").copied().unwrap_or_default();
    eprintln!("generated {} item(s) of {:.1} s in {total:.1} s", generation.audio.len(), generation.recipe.duration_s);
    match &bar_run {
        Some(run) => {
            let takes = shape_items(backend.as_ref(), run, &generation)?;
            outputs.write(&generation, Some((&takes, run)))
        }
        None => outputs.write(&generation, None),
    }
}

/// A remote job's seeds, drawn here (and written into its request) so the file names are known
/// before the server starts, as a local run's are; the request is checked on the way (the
/// backend reads the audio inputs before it sends anything).
fn draw_seeds(job: &mut JobRequest) -> Result<Vec<u32>, JobError> {
    let request = &mut job.request;
    let kind = match &request.model {
        Some(name) => ModelKind::from_folder_name(name),
        None if ModelKind::Turbo.runs(request.task_type) => ModelKind::Turbo,
        None => ModelKind::Base,
    };
    let seeds = request.resolve(kind).map_err(JobError::Request)?.seeds;
    request.seed = Some(Seed::PerItem(seeds.iter().map(|&s| s as i64).collect()));
    request.use_random_seed = Some(false);
    request.batch_size = Some(seeds.len() as u32);
    Ok(seeds)
}

/// A job error as one line, with the flag to change where there is one.
fn describe(e: &JobError) -> String {
    match e {
        JobError::Request(RequestError::TaskNeedsBaseModel { .. }) => format!("{e} (pass --model {BASE_FOLDER})"),
        JobError::Input(input) => {
            let flag = match input.role() {
                AudioRole::Source => "--src-audio",
                AudioRole::Reference => "--reference-audio",
            };
            format!("{flag}: {e}")
        }
        e => e.to_string(),
    }
}

/// This machine's engine on `checkpoints`, with the device and precision as the flags name them.
pub fn local_backend(checkpoints: PathBuf, device: &str, precision: &str, residency: Residency) -> Result<LocalBackend, String> {
    let settings =
        LocalSettings { checkpoints, device: parse_device(device)?, dtype: DType::F32, precision: parse_precision(precision)?, residency };
    LocalBackend::new(settings).map_err(|e| format!("cannot start the engine thread: {e}"))
}

/// `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N`, where this build has that backend.
pub fn parse_device(spec: &str) -> Result<Device, String> {
    let (name, index) = match spec.split_once(':') {
        Some((name, n)) => (name, n.parse::<usize>().map_err(|_| format!("--device {spec}: `{n}` is not a device number"))?),
        None => (spec, 0),
    };
    let missing = |feature: &str| {
        format!("--device {spec}: this build of backline has no {feature} support; rebuild with `--features {feature}`")
    };
    match name {
        "cpu" if index == 0 => Ok(Device::Cpu),
        "cuda" if cfg!(feature = "cuda") => Device::new_cuda(index).map_err(|e| format!("--device {spec}: {e}")),
        "cuda" => Err(missing("cuda")),
        "metal" if cfg!(feature = "metal") => Device::new_metal(index).map_err(|e| format!("--device {spec}: {e}")),
        "metal" => Err(missing("metal")),
        _ => Err(format!("--device {spec}: expected cpu, cuda, cuda:N, metal or metal:N")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_or_say_what_is_missing() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        if !cfg!(feature = "cuda") {
            let err = parse_device("cuda:1").unwrap_err();
            assert!(err.contains("no cuda support") && err.contains("--features cuda"), "{err}");
        }
        if !cfg!(feature = "metal") {
            assert!(parse_device("metal").unwrap_err().contains("--features metal"));
        }
        assert!(parse_device("cuda:x").unwrap_err().contains("not a device number"));
        assert!(parse_device("tpu").unwrap_err().contains("expected cpu"));
    }
}
