//! `cargo xtask bench [--checkpoints DIR] [--runs N] [--upstream DIR] [--python PATH]
//! [--skip-torch]`: speed and memory of the candle engine against upstream ACE-Step 1.5 in
//! PyTorch, both in f32 on the CPU with 2 threads, on the same synthetic checkpoint set (bf16 on
//! disk, as published) and the same shapes. See `docs/benchmarks.md`.
//!
//! Five stages, each one model: the turbo DiT (load, `condition_kv` for an encoder-state length
//! of 400, one decoder forward at 750 latent frames = 30 s), the VAE (load, an untiled decode of
//! 250 frames = 10 s), the VAE encode of 10 s and of 60 s of audio (each side as its pipeline
//! does it: Backline's tiles, upstream's `tiled_encode` with its CPU chunking, posterior sample
//! included) and the text encoder (load, a forward of 256 tokens); batch 1 throughout.
//! `--stages dit,vae-encode-60s` runs a subset.
//! Sizes that depend on the model (hidden widths, latent and context channels, vocabulary) come
//! from the set's `config.json` files, so the tiny set runs the same code.
//!
//! Every stage runs in its own process on each side, so each peak RSS belongs to one model: this
//! binary re-invoked as `xtask bench-stage --stage S --checkpoints DIR --runs N` (internal; it
//! prints one JSON object), and `xtask/bench/torch_bench.py`, which imports upstream from
//! `--upstream` and prints the same JSON fields. Before each process the stage's files are read
//! once, so both sides load from a warm page cache, and then as much memory as the process will use
//! is touched and freed, so neither side starts on memory the VM's host has taken back. Each measured
//! call runs once to warm up, then N times (min and median are reported); a load is the best of
//! three processes per side, taking turns (two of them load only). Each process also records
//! the CPU that other processes used meanwhile (`/proc/stat`), so noisy runs show.
//!
//! The table goes to stdout and, as markdown, to `target/bench/benchmarks.md`, with every raw
//! measurement in `target/bench/benchmarks.json`.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use backline_engine::checkpoint::{DitFolder, LoadAs, TextEncoderFolder, VaeFolder, TEXT_ENCODER_FOLDER, TURBO_FOLDER, VAE_FOLDER};
use backline_engine::precision::Precision;
use backline_engine::pipeline::task_inputs::{ENCODE_CHUNK_FRAMES, ENCODE_OVERLAP_FRAMES};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

/// Threads on both sides: `RAYON_NUM_THREADS` for candle, `torch.set_num_threads` for PyTorch.
const THREADS: usize = 2;
const DEFAULT_RUNS: usize = 5;
/// Processes that load each model on each side; the best load is reported. A load's time depends
/// on how recently the VM's host backed the memory it touches (see `warm_memory`), more than on
/// anything either side does, and one process is not enough to see past that.
const LOAD_PROCESSES: usize = 3;
const DEFAULT_CHECKPOINTS: &str = "target/synth-full";
/// DiT latent frames per forward (25 frames/s: 30 s) and the encoder-state length.
const DIT_FRAMES: usize = 750;
const ENCODER_LEN: usize = 400;
/// VAE latent frames per decode (10 s).
const VAE_FRAMES: usize = 250;
/// Timed runs of a VAE encode (after one warm-up): a minute of audio takes about a minute a call.
const ENCODE_RUNS: usize = 2;
/// Text encoder tokens per forward (upstream's caption limit).
const TEXT_TOKENS: usize = 256;
/// The timestep `t` (= `r`, as the turbo sampler calls it) of the DiT forward.
const TIMESTEP: f32 = 0.7;
const SEED: u64 = 0;
const CANDLE_VERSION: &str = "0.11.1";
/// A stage whose others' CPU share exceeds this is marked as loaded.
const NOISY_PCT: f64 = 10.0;
/// Fewer `/proc/stat` ticks than this (all CPUs together; 100 a second each) give no share:
/// a tick is then more than 2% of the window.
const MIN_CPU_TICKS: u64 = 50;

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ has a parent").to_path_buf()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Dit,
    Vae,
    VaeEncode10,
    VaeEncode60,
    Text,
}

impl Stage {
    const ALL: [Stage; 5] = [Stage::Dit, Stage::Vae, Stage::VaeEncode10, Stage::VaeEncode60, Stage::Text];

    fn name(self) -> &'static str {
        match self {
            Stage::Dit => "dit",
            Stage::Vae => "vae",
            Stage::VaeEncode10 => "vae-encode-10s",
            Stage::VaeEncode60 => "vae-encode-60s",
            Stage::Text => "text",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name).with_context(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
            format!("unknown stage {name} ({})", names.join(", "))
        })
    }

    fn folder(self) -> &'static str {
        match self {
            Stage::Dit => TURBO_FOLDER,
            Stage::Vae | Stage::VaeEncode10 | Stage::VaeEncode60 => VAE_FOLDER,
            Stage::Text => TEXT_ENCODER_FOLDER,
        }
    }

    /// Seconds of audio a VAE encode stage encodes.
    fn encode_seconds(self) -> Option<usize> {
        match self {
            Stage::VaeEncode10 => Some(10),
            Stage::VaeEncode60 => Some(60),
            _ => None,
        }
    }

    /// Whether the table reports this stage's load (the encode stages load the VAE the `vae`
    /// stage already reports).
    fn reports_load(self) -> bool {
        self.encode_seconds().is_none()
    }

    /// The table's rows for this stage: the key in the stage's JSON (`load` or a timing) and
    /// the label.
    fn rows(self) -> Vec<(&'static str, String)> {
        match self {
            Stage::Dit => vec![
                ("load", "DiT turbo: load (bf16 file -> f32)".into()),
                ("condition_kv", format!("DiT turbo: condition_kv (L = {ENCODER_LEN}, once per request)")),
                ("forward", format!("DiT turbo: one forward (T = {DIT_FRAMES} frames = 30 s, B = 1)")),
            ],
            Stage::Vae => vec![
                ("load", "VAE: load (bf16 file -> f32)".into()),
                ("decode", format!("VAE: decode, untiled ({VAE_FRAMES} frames = 10 s, B = 1)")),
            ],
            Stage::VaeEncode10 | Stage::VaeEncode60 => {
                let seconds = self.encode_seconds().unwrap_or_default();
                vec![("encode", format!("VAE: encode {seconds} s of audio, each side's tiling, + posterior sample (B = 1)"))]
            }
            Stage::Text => vec![
                ("load", "Text encoder: load (bf16 file -> f32, + tokenizer)".into()),
                ("encode", format!("Text encoder: forward ({TEXT_TOKENS} tokens, B = 1)")),
            ],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring (shared by the stage processes)

/// This process's peak RSS (`VmHWM`) in MiB.
fn peak_rss_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM in /proc/self/status")?;
    let kib: f64 = line.split_whitespace().nth(1).context("malformed VmHWM line")?.parse().context("malformed VmHWM")?;
    Ok(round1(kib / 1024.0))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The share of the machine's CPU time that other processes used since `start`, in percent of
/// all cores: busy ticks from `/proc/stat` minus this process's own utime + stime. `None` (JSON
/// null) when the window is too short to say.
struct CpuMeter {
    start: (u64, u64, u64),
}

impl CpuMeter {
    fn start() -> Self {
        Self { start: Self::read().unwrap_or_default() }
    }

    /// (busy ticks, total ticks, this process's ticks).
    fn read() -> Result<(u64, u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let cpu: Vec<u64> = stat.lines().next().context("empty /proc/stat")?.split_whitespace().skip(1).take(8).map(str::parse).collect::<std::result::Result<_, _>>()?;
        ensure!(cpu.len() == 8, "short cpu line in /proc/stat");
        let (idle, iowait) = (cpu[3], cpu[4]);
        let busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7];
        let own = std::fs::read_to_string("/proc/self/stat")?;
        let after_comm = &own[own.rfind(')').context("malformed /proc/self/stat")? + 2..];
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        ensure!(fields.len() > 12, "short /proc/self/stat");
        let own = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok((busy, busy + idle + iowait, own))
    }

    fn others_pct(&self) -> Option<f64> {
        let (busy, total, own) = Self::read().ok()?;
        let d_total = total.saturating_sub(self.start.1);
        if d_total < MIN_CPU_TICKS {
            return None;
        }
        let others = busy.saturating_sub(self.start.0) as f64 - own.saturating_sub(self.start.2) as f64;
        Some(round1((100.0 * others / d_total as f64).max(0.0)))
    }
}

/// One load, timed.
fn timed_load<T>(load: impl FnOnce() -> Result<T>) -> Result<(T, Value)> {
    let meter = CpuMeter::start();
    let started = Instant::now();
    let loaded = load()?;
    let seconds = started.elapsed().as_secs_f64();
    let report = json!({ "seconds": round3(seconds), "others_cpu_pct": meter.others_pct(), "peak_rss_mib": peak_rss_mib()? });
    Ok((loaded, report))
}

/// One warm-up call, then `runs` timed calls; the report and the last call's output.
fn time_runs<T>(runs: usize, mut call: impl FnMut() -> Result<T>) -> Result<(Value, T)> {
    let meter = CpuMeter::start();
    let mut last = call()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let out = call()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        last = out;
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    let report = json!({
        "runs_ms": times.iter().map(|&t| round3(t)).collect::<Vec<_>>(),
        "min_ms": round3(sorted[0]),
        "median_ms": round3(median),
        "others_cpu_pct": meter.others_pct(),
        "peak_rss_mib": peak_rss_mib()?,
    });
    Ok((report, last))
}

fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?.iter().all(|x| x.is_finite()))
}

fn with_finite(mut report: Value, output: &Tensor) -> Result<Value> {
    report["finite"] = json!(all_finite(output)?);
    Ok(report)
}

/// SplitMix64: reproducible token ids without a rand dependency.
fn token_ids(count: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % vocab as u64) as u32
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The candle stages (`xtask bench-stage`, one per process)

/// `xtask bench-stage --stage S --checkpoints DIR --runs N`: run one candle stage and print its
/// JSON report on stdout.
pub fn run_stage(args: &[String]) -> Result<()> {
    let (mut stage, mut checkpoints, mut runs, mut load_only) = (None, None, DEFAULT_RUNS, false);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--stage" => stage = Some(Stage::parse(value()?)?),
            "--checkpoints" => checkpoints = Some(PathBuf::from(value()?)),
            "--runs" => runs = value()?.parse().context("--runs must be a positive integer")?,
            "--load-only" => load_only = true,
            other => bail!("bench-stage: unexpected argument {other}"),
        }
    }
    let (stage, checkpoints) = (stage.context("bench-stage needs --stage")?, checkpoints.context("bench-stage needs --checkpoints")?);
    ensure!(runs >= 1, "--runs must be at least 1");
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build of xtask: candle timings are meaningless (run `cargo xtask bench`, which builds in release)");
    }

    let rss_start = peak_rss_mib()?;
    let dir = checkpoints.join(stage.folder());
    let dev = Device::Cpu;
    let (load, timings, shapes) = match stage {
        Stage::Dit => candle_dit(&dir, runs, load_only, &dev)?,
        Stage::Vae => candle_vae(&dir, runs, load_only, &dev)?,
        Stage::VaeEncode10 | Stage::VaeEncode60 => {
            candle_vae_encode(&dir, stage.encode_seconds().unwrap_or_default(), runs.min(ENCODE_RUNS), load_only, &dev)?
        }
        Stage::Text => candle_text(&dir, runs, load_only, &dev)?,
    };
    let report = json!({
        "side": "candle",
        "stage": stage.name(),
        "threads": candle_core::utils::get_num_threads(),
        "versions": { "candle-core": CANDLE_VERSION, "avx": candle_core::utils::with_avx() },
        "shapes": shapes,
        "rss_start_mib": rss_start,
        "load": load,
        "timings": timings,
    });
    println!("{report}");
    Ok(())
}

type StageReport = (Value, Value, Value);

/// The report of a `--load-only` process: the load alone.
fn load_only_report(load: Value) -> StageReport {
    (load, json!({}), json!({}))
}

fn candle_dit(dir: &Path, runs: usize, load_only: bool, dev: &Device) -> Result<StageReport> {
    let (loaded, load) = timed_load(|| Ok(DitFolder::open(dir)?.load(&LoadAs { dtype: DType::F32, precision: Precision::F32, device: dev.clone() })?))?;
    if load_only {
        return Ok(load_only_report(load));
    }
    let model = &loaded.model;
    let cfg = &model.config;
    let latent = cfg.audio_acoustic_hidden_dim;
    let context_channels = cfg.in_channels.checked_sub(latent).context("the DiT config has in_channels < audio_acoustic_hidden_dim")?;
    let states = Tensor::randn(0f32, 1f32, (1, ENCODER_LEN, cfg.hidden_size), dev)?;
    let x = Tensor::randn(0f32, 1f32, (1, DIT_FRAMES, latent), dev)?;
    let context = Tensor::randn(0f32, 1f32, (1, DIT_FRAMES, context_channels), dev)?;
    let t = Tensor::new(&[TIMESTEP], dev)?;

    let (kv_report, kv) = time_runs(runs, || Ok(model.condition_kv(&states)?))?;
    let (forward_report, velocity) = time_runs(runs, || Ok(model.decoder.forward(&x, &t, &t, &context, &kv)?))?;
    let timings = json!({ "condition_kv": kv_report, "forward": with_finite(forward_report, &velocity)? });
    let shapes = json!({
        "frames": DIT_FRAMES, "encoder_len": ENCODER_LEN, "hidden": cfg.hidden_size, "latent_channels": latent,
        "context_channels": context_channels, "layers": cfg.num_hidden_layers, "attention": "matmul+softmax",
    });
    Ok((load, timings, shapes))
}

fn candle_vae(dir: &Path, runs: usize, load_only: bool, dev: &Device) -> Result<StageReport> {
    let (vae, load) = timed_load(|| Ok(VaeFolder::open(dir)?.load(&LoadAs { dtype: DType::F32, precision: Precision::F32, device: dev.clone() })?))?;
    if load_only {
        return Ok(load_only_report(load));
    }
    let cfg = vae.config().clone();
    let latents = Tensor::randn(0f32, 1f32, (1, cfg.decoder_input_channels, VAE_FRAMES), dev)?;
    let (decode_report, audio) = time_runs(runs, || Ok(vae.decode(&latents)?))?;
    let samples = VAE_FRAMES * cfg.hop_length();
    ensure!(audio.dim(2)? == samples, "the VAE decoded {} samples, expected {samples}", audio.dim(2)?);
    let timings = json!({ "decode": with_finite(decode_report, &audio)? });
    let shapes = json!({
        "frames": VAE_FRAMES, "latent_channels": cfg.decoder_input_channels, "samples": samples,
        "seconds": samples as f64 / cfg.sampling_rate as f64,
    });
    Ok((load, timings, shapes))
}

/// The bench's audio: two channels of deterministic tones, the same on both sides
/// (`torch_bench.py`'s `bench_audio`).
fn bench_audio(samples: usize, dev: &Device) -> Result<Tensor> {
    let channel = |c: usize| (0..samples).map(move |i| 0.5 * (0.0137 * i as f64 + c as f64).sin() + 0.1 * (0.31 * i as f64).cos());
    let values: Vec<f32> = (0..2).flat_map(channel).map(|v| v as f32).collect();
    Ok(Tensor::from_vec(values, (1, 2, samples), dev)?)
}

fn candle_vae_encode(dir: &Path, seconds: usize, runs: usize, load_only: bool, dev: &Device) -> Result<StageReport> {
    let (vae, load) = timed_load(|| Ok(VaeFolder::open(dir)?.load(&LoadAs { dtype: DType::F32, precision: Precision::F32, device: dev.clone() })?))?;
    if load_only {
        return Ok(load_only_report(load));
    }
    let cfg = vae.config().clone();
    let samples = seconds * cfg.sampling_rate;
    let audio = bench_audio(samples, dev)?;
    let (encode_report, latents) = time_runs(runs, || {
        let posterior = vae.encode_tiles(&audio, ENCODE_CHUNK_FRAMES, ENCODE_OVERLAP_FRAMES, |_, _| Ok(()))?;
        let noise = posterior.mean.randn_like(0.0, 1.0)?;
        Ok(posterior.sample(&noise)?)
    })?;
    let frames = samples / cfg.hop_length();
    ensure!(latents.dim(2)? == frames, "the VAE encoded {} frames, expected {frames}", latents.dim(2)?);
    let timings = json!({ "encode": with_finite(encode_report, &latents)? });
    let shapes = json!({
        "seconds": seconds, "samples": samples, "frames": frames, "latent_channels": cfg.latent_channels(),
    });
    Ok((load, timings, shapes))
}

fn candle_text(dir: &Path, runs: usize, load_only: bool, dev: &Device) -> Result<StageReport> {
    let folder = TextEncoderFolder::open(dir)?;
    let cfg = folder.config.clone();
    ensure!(TEXT_TOKENS <= cfg.max_position_embeddings, "{TEXT_TOKENS} tokens exceed the text encoder's {} positions", cfg.max_position_embeddings);
    let ((encoder, _tokenizer), load) = timed_load(|| Ok(folder.load(&LoadAs { dtype: DType::F32, precision: Precision::F32, device: dev.clone() })?))?;
    if load_only {
        return Ok(load_only_report(load));
    }
    let ids = Tensor::from_vec(token_ids(TEXT_TOKENS, cfg.vocab_size, SEED), (1, TEXT_TOKENS), dev)?;
    let (encode_report, hidden) = time_runs(runs, || Ok(encoder.encode(&ids)?))?;
    let timings = json!({ "encode": with_finite(encode_report, &hidden)? });
    let shapes = json!({
        "tokens": TEXT_TOKENS, "hidden": cfg.hidden_size, "vocab": cfg.vocab_size, "layers": cfg.num_hidden_layers,
        "attention": "matmul+softmax (causal mask)",
    });
    Ok((load, timings, shapes))
}

// ---------------------------------------------------------------------------------------------
// The driver (`cargo xtask bench`)

struct Options {
    stages: Vec<Stage>,
    checkpoints: PathBuf,
    runs: usize,
    upstream: Option<PathBuf>,
    python: Option<PathBuf>,
    skip_torch: bool,
}

const USAGE: &str = "usage: cargo xtask bench [--checkpoints DIR] [--runs N] [--upstream DIR] [--python PATH] [--skip-torch] \
                     [--stages dit,vae,vae-encode-10s,vae-encode-60s,text]";

fn parse_options(args: &[String]) -> Result<Options> {
    let mut opts = Options {
        stages: Stage::ALL.to_vec(),
        checkpoints: workspace_root().join(DEFAULT_CHECKPOINTS),
        runs: DEFAULT_RUNS,
        upstream: None,
        python: None,
        skip_torch: false,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().with_context(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--checkpoints" => opts.checkpoints = PathBuf::from(value()?),
            "--runs" => opts.runs = value()?.parse().context("--runs must be a positive integer")?,
            "--upstream" => opts.upstream = Some(PathBuf::from(value()?)),
            "--python" => opts.python = Some(PathBuf::from(value()?)),
            "--skip-torch" => opts.skip_torch = true,
            "--stages" => opts.stages = value()?.split(',').map(Stage::parse).collect::<Result<_>>()?,
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unexpected argument {other}\n{USAGE}"),
        }
    }
    ensure!(opts.runs >= 1, "--runs must be at least 1");
    Ok(opts)
}

/// The checkpoint set must hold the three folders the stages read.
fn check_checkpoints(dir: &Path) -> Result<()> {
    let hint = "create the full-size set with `cargo xtask synth-checkpoint target/synth-full --full` (about 11 GB), \
                or pass --checkpoints DIR (a tiny set: `cargo xtask tiny-checkpoint DIR`)";
    if !dir.is_dir() {
        bail!("no checkpoint set at {}: {hint}", dir.display());
    }
    for stage in Stage::ALL {
        let folder = dir.join(stage.folder());
        if !folder.is_dir() {
            bail!("{} has no {}/ folder: not a checkpoint set in the published layout; {hint}", dir.display(), stage.folder());
        }
    }
    Ok(())
}

fn python_has_torch(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import torch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `--python`, else `target/venv/bin/python` when it has torch, else `python3`.
fn resolve_python(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(python) = given {
        ensure!(python_has_torch(python), "--python {}: it cannot `import torch`", python.display());
        return Ok(python.to_path_buf());
    }
    let venv = workspace_root().join("target/venv/bin/python");
    if venv.is_file() && python_has_torch(&venv) {
        return Ok(venv);
    }
    let python3 = PathBuf::from("python3");
    ensure!(
        python_has_torch(&python3),
        "no Python with torch: neither {} nor python3 can `import torch`; pass --python PATH (a Python with torch, \
         transformers and diffusers), or --skip-torch",
        venv.display()
    );
    Ok(python3)
}

/// Read every file of a checkpoint folder once, so each side's load finds it in the page cache.
fn warm_page_cache(dir: &Path) -> Result<()> {
    let mut buf = vec![0u8; 8 << 20];
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            let mut file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            while file.read(&mut buf).with_context(|| format!("reading {}", path.display()))? > 0 {}
        }
    }
    Ok(())
}

/// Touch, then free, as much anonymous memory as a stage's process will use (twice its folder,
/// the f32 weights, plus 1 GiB), just before each side's process. On a VM whose host takes freed
/// guest memory back, the first process to touch memory after a pause also pays the host's
/// faults: the DiT load took 12-16 s in whichever process ran first and 3-4 s in the next, on
/// either side. The host takes it back within about a second (a load 1 s after the warm-up took
/// 8 s, at once 3.4 s), so this runs last before the process starts, after the page cache. It is
/// capped to leave the page cache of the folder alone, and runs in a child of its own
/// (`xtask bench-warm-memory BYTES`): Linux carries a parent's peak RSS into a child's
/// `ru_maxrss` across fork and exec, which would inflate the torch side's.
fn warm_memory(folder: &Path) -> Result<()> {
    let folder_bytes: u64 = std::fs::read_dir(folder)?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib << 10);
    let bytes = (2 * folder_bytes + (1 << 30)).min(available.saturating_sub(folder_bytes + (1 << 30)));
    let status = Command::new(std::env::current_exe()?).arg("bench-warm-memory").arg(bytes.to_string()).status()?;
    ensure!(status.success(), "bench-warm-memory failed ({status})");
    Ok(())
}

/// `xtask bench-warm-memory BYTES` (internal): touch every page of BYTES of fresh memory, then exit.
pub fn warm_memory_child(args: &[String]) -> Result<()> {
    let bytes: usize = args.first().context("bench-warm-memory needs BYTES")?.parse()?;
    let mut memory: Vec<u8> = Vec::with_capacity(bytes);
    for page in memory.spare_capacity_mut().chunks_mut(4096) {
        page[0].write(1);
    }
    Ok(())
}

/// Run a stage process; its report is the last stdout line that is a JSON object.
fn run_child(mut cmd: Command, what: &str) -> Result<Value> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    eprintln!("+ {cmd:?}");
    let output = cmd.output().with_context(|| format!("could not start {what}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("{what} failed ({}); its stdout:\n{stdout}", output.status);
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{what} printed no JSON report; its stdout:\n{stdout}"))?;
    serde_json::from_str(line).with_context(|| format!("{what} printed a malformed JSON report: {line}"))
}

fn candle_stage(stage: Stage, opts: &Options, load_only: bool) -> Result<Value> {
    let mut cmd = Command::new(std::env::current_exe().context("locating the xtask binary")?);
    cmd.arg("bench-stage").arg("--stage").arg(stage.name()).arg("--checkpoints").arg(&opts.checkpoints);
    cmd.arg("--runs").arg(opts.runs.to_string()).env("RAYON_NUM_THREADS", THREADS.to_string());
    if load_only {
        cmd.arg("--load-only");
    }
    run_child(cmd, &format!("the candle {} stage", stage.name()))
}

fn torch_stage(stage: Stage, opts: &Options, python: &Path, upstream: &Path, load_only: bool) -> Result<Value> {
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("xtask/bench/torch_bench.py"));
    cmd.arg("--stage").arg(stage.name()).arg("--checkpoints").arg(&opts.checkpoints).arg("--upstream").arg(upstream);
    let runs = if stage.encode_seconds().is_some() { opts.runs.min(ENCODE_RUNS) } else { opts.runs };
    cmd.arg("--runs").arg(runs.to_string()).arg("--threads").arg(THREADS.to_string());
    cmd.args(["--frames", &DIT_FRAMES.to_string(), "--encoder-len", &ENCODER_LEN.to_string()]);
    cmd.args(["--vae-frames", &VAE_FRAMES.to_string(), "--text-tokens", &TEXT_TOKENS.to_string()]);
    cmd.arg("--seed").arg(SEED.to_string());
    if load_only {
        cmd.arg("--load-only");
    }
    for var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS"] {
        cmd.env(var, THREADS.to_string());
    }
    run_child(cmd, &format!("the torch {} stage", stage.name()))
}

/// Put every load a side measured under `loads` and its fastest as the report's `load`.
fn keep_best_load(report: &mut Value, loads: Vec<Value>) {
    let seconds = |load: &Value| load["seconds"].as_f64().unwrap_or(f64::INFINITY);
    if let Some(best) = loads.iter().min_by(|a, b| seconds(a).total_cmp(&seconds(b))) {
        report["load"] = best.clone();
    }
    report["loads"] = json!(loads);
}

/// Both sides must have run the same sizes: every shape both report must agree.
fn check_same_shapes(stage: Stage, candle: &Value, torch: &Value) -> Result<()> {
    let (Some(a), Some(b)) = (candle["shapes"].as_object(), torch["shapes"].as_object()) else {
        bail!("a {} stage report has no shapes", stage.name())
    };
    for (key, value) in a {
        if let (Some(x), Some(y)) = (value.as_f64(), b.get(key).and_then(Value::as_f64)) {
            ensure!(x == y, "{} stage: candle ran {key} = {x}, torch {key} = {y}", stage.name());
        }
    }
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = parse_options(args)?;
    check_checkpoints(&opts.checkpoints)?;
    let torch = if opts.skip_torch {
        None
    } else {
        let upstream = opts.upstream.clone().context(
            "--upstream DIR is required (the folder holding upstream ACE-Step 1.5's acestep/ package), or pass --skip-torch",
        )?;
        ensure!(
            upstream.join("acestep/models").is_dir(),
            "--upstream {}: no acestep/models/ there (upstream ACE-Step 1.5's package)",
            upstream.display()
        );
        Some((resolve_python(opts.python.as_deref())?, upstream))
    };

    let mut results = Vec::new();
    for &stage in &opts.stages {
        let folder = opts.checkpoints.join(stage.folder());
        // Just before each process: its files into the page cache, then its memory warmed.
        let prepare = || -> Result<()> {
            warm_page_cache(&folder)?;
            warm_memory(&folder)
        };
        prepare()?;
        let mut candle = candle_stage(stage, &opts, false)?;
        let mut torch_report = match &torch {
            Some((python, upstream)) => {
                prepare()?;
                let report = torch_stage(stage, &opts, python, upstream, false)?;
                check_same_shapes(stage, &candle, &report)?;
                Some(report)
            }
            None => None,
        };
        // More load-only processes, the sides taking turns; each side keeps its best load.
        let mut candle_loads = vec![candle["load"].clone()];
        let mut torch_loads: Vec<Value> = torch_report.iter().map(|t| t["load"].clone()).collect();
        let load_processes = if stage.reports_load() { LOAD_PROCESSES } else { 1 };
        for _ in 1..load_processes {
            prepare()?;
            candle_loads.push(candle_stage(stage, &opts, true)?["load"].clone());
            if let Some((python, upstream)) = &torch {
                prepare()?;
                torch_loads.push(torch_stage(stage, &opts, python, upstream, true)?["load"].clone());
            }
        }
        keep_best_load(&mut candle, candle_loads);
        if let Some(report) = torch_report.as_mut() {
            keep_best_load(report, torch_loads);
        }
        results.push((stage, candle, torch_report));
    }

    let command = std::iter::once("cargo xtask bench".to_string()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ");
    let meta = Meta::collect(&opts, command);
    let table = Table::build(&results);
    println!("\n{}", table.text());

    let out_dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let md_path = out_dir.join("benchmarks.md");
    std::fs::write(&md_path, markdown(&meta, &table, &results)).with_context(|| format!("writing {}", md_path.display()))?;
    let raw = json!({
        "command": meta.command,
        "date": meta.date,
        "commit": meta.commit,
        "machine": meta.machine,
        "checkpoints": opts.checkpoints.display().to_string(),
        "runs": opts.runs,
        "threads": THREADS,
        "shapes": { "dit_frames": DIT_FRAMES, "encoder_len": ENCODER_LEN, "vae_frames": VAE_FRAMES, "text_tokens": TEXT_TOKENS, "batch": 1 },
        "stages": results.iter().map(|(s, c, t)| (s.name().to_string(), json!({ "candle": c, "torch": t }))).collect::<serde_json::Map<_, _>>(),
    });
    let json_path = out_dir.join("benchmarks.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&raw)? + "\n").with_context(|| format!("writing {}", json_path.display()))?;
    println!("\nwrote {} and {}", md_path.display(), json_path.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reporting

struct Meta {
    command: String,
    date: String,
    commit: String,
    machine: String,
    checkpoints: PathBuf,
    runs: usize,
}

impl Meta {
    fn collect(opts: &Options, command: String) -> Self {
        let capture = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .current_dir(workspace_root())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let date = capture("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown date".into());
        let commit = match capture("git", &["rev-parse", "--short", "HEAD"]) {
            Some(hash) => {
                let dirty = capture("git", &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
                if dirty { format!("{hash} + uncommitted changes") } else { hash }
            }
            None => "unknown".into(),
        };
        Self { command, date, commit, machine: machine_description(), checkpoints: opts.checkpoints.clone(), runs: opts.runs }
    }
}

pub(crate) fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().to_string()))
    };
    let family = match (field("cpu family"), field("model")) {
        (Some(f), Some(m)) => format!(" (family {f} model {m})"),
        _ => String::new(),
    };
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let flags = cpuinfo.lines().find_map(|l| l.strip_prefix("flags").and_then(|r| r.split_once(':')).map(|(_, f)| f.to_string())).unwrap_or_default();
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    let simd: Vec<&str> = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"].into_iter().filter(|f| has(f)).collect();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or_else(|| "unknown".into(), |kib| format!("{:.1}", kib / (1024.0 * 1024.0)));
    format!("{model}{family}, {cpus} logical CPUs ({}), {mem_gib} GiB RAM", simd.join(", "))
}

/// One side's measurement of one row.
struct Cell {
    /// Load: seconds, once. Timing: (min, median) in ms.
    value: CellValue,
    rss_mib: f64,
    others_pct: f64,
    finite: Option<bool>,
}

enum CellValue {
    Seconds(f64),
    Ms(f64, f64),
}

impl Cell {
    fn from_report(report: &Value, key: &str) -> Option<Self> {
        let entry = if key == "load" { &report["load"] } else { &report["timings"][key] };
        let value = if key == "load" {
            CellValue::Seconds(entry["seconds"].as_f64()?)
        } else {
            CellValue::Ms(entry["min_ms"].as_f64()?, entry["median_ms"].as_f64()?)
        };
        Some(Self {
            value,
            rss_mib: entry["peak_rss_mib"].as_f64()?,
            others_pct: entry["others_cpu_pct"].as_f64().unwrap_or(f64::NAN),
            finite: entry["finite"].as_bool(),
        })
    }

    fn primary(&self) -> f64 {
        match self.value {
            CellValue::Seconds(s) => s,
            CellValue::Ms(min, _) => min,
        }
    }

    fn time(&self) -> String {
        let mut text = match self.value {
            CellValue::Seconds(s) => format!("{s:.2} s"),
            CellValue::Ms(min, median) => format!("{min:.1} / {median:.1} ms"),
        };
        if self.finite == Some(false) {
            text.push_str(" (non-finite output!)");
        }
        text
    }

    fn others(&self) -> String {
        if self.others_pct.is_nan() {
            "n/a (short)".into()
        } else if self.others_pct > NOISY_PCT {
            format!("{:.0}% (loaded)", self.others_pct)
        } else {
            format!("{:.0}%", self.others_pct)
        }
    }
}

fn rss(mib: f64) -> String {
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

struct Table {
    header: [&'static str; 6],
    rows: Vec<[String; 6]>,
}

impl Table {
    fn build(results: &[(Stage, Value, Option<Value>)]) -> Self {
        let header = ["stage", "candle min / median", "torch min / median", "ratio candle/torch (min)", "peak RSS candle / torch", "CPU used by others candle / torch"];
        let mut rows = Vec::new();
        for (stage, candle, torch) in results {
            for (key, label) in stage.rows() {
                let c = Cell::from_report(candle, key);
                let t = torch.as_ref().and_then(|t| Cell::from_report(t, key));
                let dash = || "-".to_string();
                let ratio = match (&c, &t) {
                    (Some(c), Some(t)) if t.primary() > 0.0 => match c.primary() / t.primary() {
                        r if r >= 0.1 => format!("{r:.2}"),
                        r => format!("{r:.3}"),
                    },
                    _ => dash(),
                };
                rows.push([
                    label,
                    c.as_ref().map_or_else(dash, Cell::time),
                    t.as_ref().map_or_else(dash, Cell::time),
                    ratio,
                    format!("{} / {}", c.as_ref().map_or_else(dash, |c| rss(c.rss_mib)), t.as_ref().map_or_else(dash, |t| rss(t.rss_mib))),
                    format!("{} / {}", c.as_ref().map_or_else(dash, Cell::others), t.as_ref().map_or_else(dash, Cell::others)),
                ]);
            }
        }
        Self { header, rows }
    }

    fn text(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            cells.iter().zip(&widths).map(|(c, &w)| format!("{c:<w$}")).collect::<Vec<_>>().join(" | ").trim_end().to_string()
        };
        let mut out = line(&self.header.map(String::from));
        out.push('\n');
        out.push_str(&widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>().join("-+-"));
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row));
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("| {} |\n|{}\n", self.header.join(" | "), "---|".repeat(self.header.len()));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }
}

fn markdown(meta: &Meta, table: &Table, results: &[(Stage, Value, Option<Value>)]) -> String {
    let mut versions: Vec<String> = vec![format!("candle-core {CANDLE_VERSION}")];
    for (_, _, torch) in results {
        if let Some(v) = torch.as_ref().and_then(|t| t["versions"].as_object()) {
            for (name, version) in v {
                let entry = format!("{name} {}", version.as_str().unwrap_or_default());
                if !versions.contains(&entry) {
                    versions.push(entry);
                }
            }
        }
    }
    let model = |stage: Stage| -> String {
        let Some((_, candle, _)) = results.iter().find(|(s, _, _)| *s == stage) else { return String::new() };
        let shapes = &candle["shapes"];
        match stage {
            Stage::Dit | Stage::Text => format!("{} layers, hidden {}", shapes["layers"], shapes["hidden"]),
            Stage::Vae | Stage::VaeEncode10 | Stage::VaeEncode60 => format!("{} latent channels", shapes["latent_channels"]),
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmark: candle vs PyTorch (f32, CPU)\n");
    let _ = writeln!(out, "- command: `{}`", meta.command);
    let _ = writeln!(out, "- date: {}; commit {}", meta.date, meta.commit);
    let _ = writeln!(out, "- machine: {}", meta.machine);
    let _ = writeln!(
        out,
        "- checkpoints: `{}` (DiT turbo: {}; VAE: {}; text encoder: {}), bf16 on disk, loaded as f32",
        meta.checkpoints.display(),
        model(Stage::Dit),
        model(Stage::Vae),
        model(Stage::Text)
    );
    let _ = writeln!(out, "- versions: {}", versions.join(", "));
    let _ = writeln!(
        out,
        "- protocol: {THREADS} threads on both sides; one process per stage and side; each timed call once to warm up, then {} runs, \
         shown as min / median; a load is the best of {LOAD_PROCESSES} processes per side, taking turns, each with the files in the page cache and the process's memory touched and freed just before it started; the ratio compares minima \
         (<= 1.00: candle at least as fast); peak RSS is the process's high-water mark after that row's step \
         (VmHWM / ru_maxrss, mapped file pages included); \"CPU used by others\" is the share of the machine's CPU \
         other processes used during that step (/proc/stat), marked \"loaded\" above {NOISY_PCT:.0}%, \
         n/a for a step too short for /proc/stat's 10 ms ticks",
        meta.runs
    );
    let _ = writeln!(
        out,
        "- shapes: batch 1; DiT x (1, {DIT_FRAMES}, latent), context (1, {DIT_FRAMES}, in_channels - latent), encoder states \
         (1, {ENCODER_LEN}, hidden), t = r = {TIMESTEP}; VAE latents (1, channels, {VAE_FRAMES}); text ids (1, {TEXT_TOKENS}); \
         VAE encode: stereo 48 kHz tones of 10 and 60 s, {ENCODE_RUNS} runs; candle in windows of {ENCODE_CHUNK_FRAMES} frames \
         with {ENCODE_OVERLAP_FRAMES} frames of context per side, torch by upstream's `tiled_encode` (CPU: 15 s chunks, 2 s overlap)\n"
    );
    out.push_str(&table.markdown());
    let start: Vec<String> = results
        .iter()
        .map(|(stage, candle, torch)| {
            let side = |v: Option<&Value>| v.and_then(|v| v["rss_start_mib"].as_f64()).map_or_else(|| "-".into(), rss);
            format!("{} {} / {}", stage.name(), side(Some(candle)), side(torch.as_ref()))
        })
        .collect();
    let _ = writeln!(out, "\nRSS of each process before loading (runtime and libraries), candle / torch: {}.", start.join("; "));
    out
}
