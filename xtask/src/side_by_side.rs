//! `cargo xtask bench-cpp --acestep-cpp DIR [--checkpoints DIR] [--python PATH]
//! [--durations 30,10] [--precisions bf16,q8] [--dit-only]`: Backline against acestep.cpp, whole process,
//! on the same request with the same threads. See `docs/benchmarks.md`.
//!
//! - acestep.cpp comes from a checkout the user fetched (with its `ggml` submodule), given by
//!   path and never part of this repository. It is built there (`build/`, its CPU build with
//!   BLAS) unless built already, and the synthetic set (`--checkpoints`, default
//!   `target/synth-full`) is converted with its own `convert.py` (into `target/bench/gguf/`),
//!   then quantized to Q8_0 with its own `quantize` (DiT and text encoder; the VAE stays BF16,
//!   as its `quantize.sh` does).
//! - Each run is one process: `backline generate` (release build) or acestep.cpp's
//!   `ace-synth`, text2music on turbo, 8 steps, batch 1, no language model, 2 threads. The
//!   child's resident memory is sampled every 20 ms; its log lines, time-stamped as they come,
//!   mark where each model's phase begins, so each phase (text encoder, DiT, VAE) gets its peak.
//!   Stage seconds are each side's own figures (Backline's recipe, acestep.cpp's log).
//! - Then the DiT alone at each precision (f32, bf16, q8, q4) on the same seeded inputs: a turbo
//!   run of 8 steps at 750 frames (30 s) with an encoder length of 400. Its fastest forward gives
//!   the achieved GFLOP/s, against the f32 GEMM peak measured on this machine (candle's matmul
//!   at the DiT's MLP shape); its first velocity and final latents, against f32's, the error
//!   each precision brings. `--dit-only` runs just this part.
//!
//! The table goes to stdout and `target/bench/side-by-side.md`, every figure to
//! `target/bench/side-by-side.json`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use backline_engine::checkpoint::{DitFolder, LoadAs, TURBO_FOLDER};
use backline_engine::model::config::AceStepConfig;
use backline_engine::precision::Precision;
use backline_engine::sampling::{turbo_schedule, InferMethod, Prediction, RunInputs, SamplerConfig, SamplerKind, SeededNoise, Start};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

const THREADS: usize = 2;
const STEPS: usize = 8;
const SEED: u32 = 1;
const CAPTION: &str = "warm synth pop";
const LYRICS: &str = "[Instrumental]";
/// The DiT forward measured for GFLOP/s: 30 s of latents, and an encoder length of 400.
const FORWARD_FRAMES: usize = 750;
const ENCODER_LEN: usize = 400;
/// Resident memory is read this often.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

struct Options {
    cpp: PathBuf,
    checkpoints: PathBuf,
    python: String,
    durations: Vec<u32>,
    precisions: Vec<Precision>,
    dit_only: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let root = crate::bench::workspace_root();
    let mut options = Options {
        cpp: PathBuf::new(),
        checkpoints: root.join("target/synth-full"),
        python: "python3".into(),
        durations: vec![30, 10],
        precisions: vec![Precision::Bf16, Precision::Q8],
        dit_only: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--acestep-cpp" => options.cpp = PathBuf::from(value()?),
            "--checkpoints" => options.checkpoints = PathBuf::from(value()?),
            "--dit-only" => options.dit_only = true,
            "--python" => options.python = value()?.clone(),
            "--durations" => options.durations = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--precisions" => {
                options.precisions = value()?
                    .split(',')
                    .map(|p| Precision::parse(p).filter(|p| matches!(p, Precision::Bf16 | Precision::Q8)).with_context(|| format!("--precisions takes bf16 and q8, not {p}")))
                    .collect::<Result<_>>()?
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if !options.dit_only {
        ensure!(!options.cpp.as_os_str().is_empty(), "--acestep-cpp DIR is required: a built checkout of acestep.cpp");
        ensure!(options.cpp.join("CMakeLists.txt").is_file(), "{} is not an acestep.cpp checkout", options.cpp.display());
    }
    ensure!(options.checkpoints.join(TURBO_FOLDER).is_dir(), "no {TURBO_FOLDER} in {}: `cargo xtask synth-checkpoint DIR --full`", options.checkpoints.display());
    Ok(options)
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let root = crate::bench::workspace_root();
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let mut runs = Vec::new();
    if !options.dit_only {
        // Built here so that the runs are of the sources as they are, not of an older build.
        let status = Command::new("cargo")
            .args(["build", "--release", "--package", "backline-engine", "--features", "backline-engine/cli"])
            .current_dir(&root)
            .status()
            .context("running cargo build")?;
        ensure!(status.success(), "building the CLI failed ({status})");
        let backline = root.join("target/release/backline");
        let cpp = Cpp::prepare(&options, &out.join("gguf"))?;
        for &duration in &options.durations {
            for &precision in &options.precisions {
                let request = Request { duration, precision };
                let work = out.join(format!("side-by-side/{}-{duration}s", precision.name()));
                std::fs::create_dir_all(&work)?;
                runs.push(run_backline(&backline, &options.checkpoints, &request, &work)?);
                runs.push(cpp.run(&request, &work)?);
            }
        }
    }
    let products = products()?;
    let dit = options.checkpoints.join(TURBO_FOLDER);
    let inputs = TrajectoryInputs::new(&DitFolder::open(&dit)?.config)?;
    // The quantized formats both ways where the CPU can multiply in integers.
    let mut ways = vec![(Precision::F32, false), (Precision::Bf16, false)];
    for precision in [Precision::Q8, Precision::Q4] {
        if backline_engine::kernels::int8::cpu_supports() {
            ways.push((precision, true));
        }
        ways.push((precision, false));
    }
    let forwards = ways.iter().map(|&(p, in_integers)| dit_trajectory(&dit, p, in_integers, &inputs)).collect::<Result<Vec<_>>>()?;
    backline_engine::kernels::int8::allow(true);

    let table = markdown(&runs, &products, &quality(&forwards)?);
    println!("{table}");
    let name = if options.dit_only { "side-by-side-dit" } else { "side-by-side" };
    std::fs::write(out.join(format!("{name}.md")), &table)?;
    let raw = json!({
        "machine": crate::bench::machine_description(),
        "threads": THREADS,
        "runs": runs.iter().map(Run::to_json).collect::<Vec<_>>(),
        "gemm_peak_gflops": products.f32_gemm,
        "q8_widened_gflops": products.q8_widened,
        "q8_int8_gflops": products.q8_int8,
        "q4_int8_gflops": products.q4_int8,
        "candle_q8_0_gflops": products.candle_q8_0,
        "dit_forward": quality(&forwards)?.iter().map(|(f, v, l)| json!({
            "precision": f.precision.name(), "product": f.product(), "seconds": f.seconds, "gflop": f.gflop,
            "velocity_relative_error": v, "latents_relative_error": l,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(out.join(format!("{name}.json")), serde_json::to_string_pretty(&raw)?)?;
    Ok(())
}

/// What both sides are asked for.
struct Request {
    duration: u32,
    precision: Precision,
}

/// One model's part of a run: its own compute seconds and the peak while it was resident.
#[derive(Debug, Clone, Default)]
struct Phase {
    seconds: f64,
    peak_mib: f64,
}

struct Run {
    side: &'static str,
    duration: u32,
    precision: Precision,
    wall_s: f64,
    peak_mib: f64,
    load_s: f64,
    text: Phase,
    dit: Phase,
    vae: Phase,
}

impl Run {
    fn to_json(&self) -> Value {
        let phase = |p: &Phase| json!({"seconds": p.seconds, "peak_rss_mib": p.peak_mib});
        json!({
            "side": self.side, "duration_s": self.duration, "precision": self.precision.name(),
            "wall_s": self.wall_s, "peak_rss_mib": self.peak_mib, "load_s": self.load_s,
            "text_encoder": phase(&self.text), "dit": phase(&self.dit), "vae": phase(&self.vae),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Watching a child process

/// A finished child: its log lines with the second they came, its resident memory over time.
struct Watched {
    wall_s: f64,
    lines: Vec<(f64, String)>,
    /// (second, MiB).
    rss: Vec<(f64, f64)>,
    /// The kernel's high-water mark, last read just before the child ended.
    peak_mib: f64,
}

impl Watched {
    /// The second of the first line containing `marker`.
    fn when(&self, marker: &str) -> Result<f64> {
        self.lines
            .iter()
            .find(|(_, l)| l.contains(marker))
            .map(|(t, _)| *t)
            .with_context(|| format!("no log line contains {marker:?}"))
    }

    /// The highest resident memory sampled in `[from, to)`.
    fn peak_between(&self, from: f64, to: f64) -> f64 {
        self.rss.iter().filter(|(t, _)| (from..to).contains(t)).map(|(_, m)| *m).fold(0.0, f64::max)
    }

    fn log(&self) -> String {
        self.lines.iter().map(|(t, l)| format!("{t:8.3} {l}\n")).collect()
    }
}

fn watch(mut cmd: Command, log: &Path) -> Result<Watched> {
    eprintln!("+ {cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).env("RAYON_NUM_THREADS", THREADS.to_string());
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let (tx, rx) = mpsc::channel();
    let readers: Vec<_> = [child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>), child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>)]
        .into_iter()
        .flatten()
        .map(|pipe| {
            let tx = tx.clone();
            thread::spawn(move || {
                // Progress bars end lines with `\r`: split on both.
                let mut reader = BufReader::new(pipe);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
                    for part in String::from_utf8_lossy(&line).split('\r') {
                        let part = part.trim_end();
                        if !part.is_empty() {
                            let _ = tx.send((started.elapsed().as_secs_f64(), part.to_string()));
                        }
                    }
                    line.clear();
                }
            })
        })
        .collect();
    drop(tx);
    let status_path = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut rss = Vec::new();
    let mut peak_kib = 0.0f64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
            if let Some(kib) = field("VmRSS:") {
                rss.push((started.elapsed().as_secs_f64(), kib / 1024.0));
            }
            peak_kib = peak_kib.max(field("VmHWM:").unwrap_or(0.0));
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        thread::sleep(SAMPLE_EVERY);
    };
    let wall_s = started.elapsed().as_secs_f64();
    for reader in readers {
        let _ = reader.join();
    }
    let mut lines: Vec<(f64, String)> = rx.into_iter().collect();
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    let watched = Watched { wall_s, lines, rss, peak_mib: peak_kib / 1024.0 };
    std::fs::write(log, watched.log())?;
    ensure!(status.success(), "{cmd:?} failed ({status}); its log is {}", log.display());
    Ok(watched)
}

// ---------------------------------------------------------------------------------------------
// Backline

fn run_backline(backline: &Path, checkpoints: &Path, request: &Request, work: &Path) -> Result<Run> {
    let mut cmd = Command::new(backline);
    cmd.arg("generate")
        .arg("--checkpoints")
        .arg(checkpoints)
        .args(["--precision", request.precision.name(), "--caption", CAPTION, "--lyrics", LYRICS])
        .args(["--duration", &request.duration.to_string(), "--seed", &SEED.to_string(), "--batch-size", "1"])
        .args(["--inference-steps", &STEPS.to_string(), "--format", "wav", "--name", "backline", "--overwrite", "--out"])
        .arg(work);
    let watched = watch(cmd, &work.join("backline.log"))?;
    let recipe: Value = serde_json::from_str(&std::fs::read_to_string(work.join("backline-1.json"))?)?;
    let cost = |key: &str| recipe["time_costs"][key].as_f64().with_context(|| format!("no {key} in the recipe"));
    // Each model's phase runs from its load to the next model's (`Residency::PerStage`).
    let text_start = watched.when("loading Qwen3-Embedding")?;
    let dit_start = watched.when(&format!("loading {TURBO_FOLDER}"))?;
    let vae_start = watched.when("loading vae")?;
    Ok(Run {
        side: "Backline",
        duration: request.duration,
        precision: request.precision,
        wall_s: watched.wall_s,
        peak_mib: watched.peak_mib,
        load_s: cost("model_load_time_cost")?,
        text: Phase { seconds: cost("dit_text_encoder_time_cost")?, peak_mib: watched.peak_between(text_start, dit_start) },
        dit: Phase {
            seconds: cost("dit_encoder_time_cost")? + cost("dit_diffusion_time_cost")?,
            peak_mib: watched.peak_between(dit_start, vae_start),
        },
        vae: Phase { seconds: cost("dit_vae_decode_time_cost")?, peak_mib: watched.peak_between(vae_start, f64::INFINITY) },
    })
}

// ---------------------------------------------------------------------------------------------
// acestep.cpp

/// A built acestep.cpp checkout and the synthetic set in its GGUF files.
struct Cpp {
    ace_synth: PathBuf,
    /// One folder of GGUF files per precision: ace-synth takes the first text encoder it finds,
    /// so each set is a folder of its own (links to the files in `gguf/`).
    sets: Vec<(Precision, PathBuf)>,
}

impl Cpp {
    /// Converts the synthetic set with acestep.cpp's `convert.py` and quantizes it with its
    /// `quantize` (unless done already), into `gguf/`.
    fn prepare(options: &Options, gguf: &Path) -> Result<Self> {
        let build = options.cpp.join("build");
        let ace_synth = build.join("ace-synth");
        let quantize = build.join("quantize");
        ensure!(
            ace_synth.is_file() && quantize.is_file(),
            "no {} or {}: build acestep.cpp first (its README: `./buildcpu.sh`; docs/benchmarks.md has the commands)",
            ace_synth.display(),
            quantize.display()
        );
        let converted = gguf.join("converted");
        std::fs::create_dir_all(&converted)?;
        let bf16 = |name: &str| converted.join(format!("{name}-BF16.gguf"));
        let q8 = |name: &str| converted.join(format!("{name}-Q8_0.gguf"));
        const TEXT: &str = backline_engine::checkpoint::TEXT_ENCODER_FOLDER;
        if ![TURBO_FOLDER, TEXT, "vae"].iter().all(|n| bf16(n).is_file()) {
            // convert.py reads `checkpoints/` beside itself and writes `models/` there; pointed
            // at links to the turbo, text encoder and VAE folders instead, it leaves the checkout
            // as it was.
            let inputs = gguf.join("checkpoints");
            std::fs::create_dir_all(&inputs)?;
            for folder in [TURBO_FOLDER, TEXT, "vae"] {
                let link = inputs.join(folder);
                if !link.exists() {
                    std::os::unix::fs::symlink(options.checkpoints.join(folder).canonicalize()?, &link)?;
                }
            }
            let script = format!(
                "import sys; sys.path.insert(0, {cpp:?}); import convert; convert.CHECKPOINT_DIR = {inputs:?}; \
                 convert.OUTPUT_DIR = {out:?}; convert.main()",
                cpp = options.cpp.display().to_string(),
                inputs = inputs.display().to_string(),
                out = converted.display().to_string(),
            );
            let status = Command::new(&options.python).args(["-c", &script]).status().context("running convert.py")?;
            ensure!(status.success(), "acestep.cpp's convert.py failed ({status}); it needs `pip install gguf numpy` in {}", options.python);
        }
        // Its quantize.sh: the DiT and the text encoder to Q8_0, the VAE stays BF16.
        for name in [TURBO_FOLDER, TEXT] {
            if !q8(name).is_file() {
                let status = Command::new(&quantize).arg(bf16(name)).arg(q8(name)).arg("Q8_0").status()?;
                ensure!(status.success(), "quantize {name} failed ({status})");
            }
        }
        let mut sets = Vec::new();
        for &precision in &options.precisions {
            let set = gguf.join(precision.name());
            std::fs::create_dir_all(&set)?;
            let file = |name: &str| if precision == Precision::Q8 && name != "vae" { q8(name) } else { bf16(name) };
            for name in [TURBO_FOLDER, TEXT, "vae"] {
                let target = file(name);
                let link = set.join(target.file_name().context("a GGUF file name")?);
                if !link.exists() {
                    std::os::unix::fs::symlink(&target, &link)?;
                }
            }
            sets.push((precision, set));
        }
        Ok(Self { ace_synth, sets })
    }

    fn run(&self, request: &Request, work: &Path) -> Result<Run> {
        let set = &self.sets.iter().find(|(p, _)| *p == request.precision).context("no GGUF set for this precision")?.1;
        let dit = if request.precision == Precision::Q8 { "Q8_0" } else { "BF16" };
        // Its DiT-only route (`examples/dit-only.json`): no language model, no audio codes.
        let body = json!({
            "task_type": "text2music",
            "synth_model": format!("{TURBO_FOLDER}-{dit}.gguf"),
            "vae": "vae-BF16.gguf",
            "caption": CAPTION,
            "lyrics": LYRICS,
            "duration": request.duration,
            "seed": SEED,
            "synth_batch_size": 1,
            "inference_steps": STEPS,
            "guidance_scale": 1.0,
            "shift": 3.0,
            "output_format": "wav16",
        });
        let path = work.join("acestep-cpp.json");
        std::fs::write(&path, serde_json::to_string_pretty(&body)?)?;
        let mut cmd = Command::new(&self.ace_synth);
        cmd.arg("--models").arg(set).arg("--request").arg(&path);
        // It runs on hardware_concurrency() / 2 threads and has no flag for it; the run's
        // `(CPU threads: N)` line says what it used (see docs/benchmarks.md).
        cmd.env("ACESTEP_N_THREADS", THREADS.to_string());
        let watched = watch(cmd, &work.join("acestep-cpp.log"))?;
        let millis = |marker: &str, after: &str| -> Result<f64> {
            let line = &watched.lines.iter().find(|(_, l)| l.contains(marker)).with_context(|| format!("no {marker:?} line"))?.1;
            let tail = &line[line.find(after).with_context(|| format!("no {after:?} in {line:?}"))? + after.len()..];
            let number: String = tail.trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            Ok(number.parse::<f64>().with_context(|| format!("no milliseconds in {line:?}"))? / 1e3)
        };
        let loads: f64 = watched
            .lines
            .iter()
            .filter(|(_, l)| l.contains("[Store] Load "))
            .filter_map(|(_, l)| l.rsplit(':').next()?.trim().trim_end_matches("ms").trim().parse::<f64>().ok())
            .sum::<f64>()
            / 1e3;
        let threads = watched.lines.iter().find_map(|(_, l)| {
            let tail = &l[l.find("CPU threads: ")? + "CPU threads: ".len()..];
            tail.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<usize>().ok()
        });
        ensure!(threads == Some(THREADS), "acestep.cpp ran on {threads:?} threads, not {THREADS}: see docs/benchmarks.md for the override");
        let text_start = watched.when("[Load] TextEncoder")?;
        let dit_start = watched.when("[Load] CondEncoder")?;
        let vae_start = watched.when("[Load] VAE")?;
        // The text encoder's forward is not timed by ace-synth: it runs between its load and
        // its unload.
        let text_s = watched.when("[Store] Unload TextEnc")? - watched.when("[Store] Load TextEnc")?;
        Ok(Run {
            side: "acestep.cpp",
            duration: request.duration,
            precision: request.precision,
            wall_s: watched.wall_s,
            peak_mib: watched.peak_mib,
            load_s: loads,
            text: Phase { seconds: text_s, peak_mib: watched.peak_between(text_start, dit_start) },
            dit: Phase {
                seconds: cond_encode_seconds(&watched)? + millis("[DiT-Generate] Total:", "Total:")?,
                peak_mib: watched.peak_between(dit_start, vae_start),
            },
            vae: Phase { seconds: millis("[VAE-Decode", "Decode:")?, peak_mib: watched.peak_between(vae_start, f64::INFINITY) },
        })
    }
}

/// The condition encoder's milliseconds, the last figure of its `[Encode-Text Batch0] 64+19
/// tokens -> enc_S=84, 343.1 ms` line, in seconds.
fn cond_encode_seconds(watched: &Watched) -> Result<f64> {
    let line = &watched.lines.iter().find(|(_, l)| l.contains("[Encode-Text")).context("no [Encode-Text line")?.1;
    let figure = line.rsplit(',').next().context("no figure")?.trim().trim_end_matches("ms").trim();
    Ok(figure.parse::<f64>().with_context(|| format!("no milliseconds in {line:?}"))? / 1e3)
}

// ---------------------------------------------------------------------------------------------
// GFLOP/s

/// The DiT's MLP up-projection: T = 375 tokens of 2048 into 6144.
const PRODUCT: (usize, usize, usize) = (FORWARD_FRAMES / 2, 2048, 6144);

/// GFLOP/s of one product at [`PRODUCT`]'s shape, the best of five after a warm-up.
fn gflops(mut product: impl FnMut() -> Result<()>) -> Result<f64> {
    let (m, k, n) = PRODUCT;
    product()?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        product()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(2.0 * (m * k * n) as f64 / best / 1e9)
}

/// The products at [`PRODUCT`]'s shape: candle's f32 matmul (the machine's GEMM peak for these
/// figures); Backline's 8-bit product widened (decode, then the same GEMM) and in integers, and
/// its 4-bit one in integers (where the CPU has AVX-512 VNNI); and candle's quantized matmul on
/// Q8_0 weights (int8 dot products against activations quantized to Q8_0, with a second,
/// repacked copy of the weights on AVX-512 VNNI).
struct Products {
    f32_gemm: f64,
    q8_widened: f64,
    q8_int8: Option<f64>,
    q4_int8: Option<f64>,
    candle_q8_0: f64,
}

fn products() -> Result<Products> {
    use backline_engine::kernels::packed::{PackedFormat, PackedMatrix};
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::Module;
    let (m, k, n) = PRODUCT;
    let x = Tensor::randn(0f32, 1., (m, k), &Device::Cpu)?;
    let w = Tensor::randn(0f32, 0.02, (k, n), &Device::Cpu)?;
    let f32_gemm = gflops(|| Ok(drop(x.matmul(&w)?)))?;
    let values = w.flatten_all()?.to_vec1::<f32>()?;
    let q8 = PackedMatrix::encode(PackedFormat::Q8, &values, k, n)?;
    let q4 = PackedMatrix::encode(PackedFormat::Q4, &values, k, n)?;
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let q8_widened = gflops(|| Ok(drop(q8.matmul_widened(&xs, m))))?;
    let (q8_int8, q4_int8) = if backline_engine::kernels::int8::available() {
        (Some(gflops(|| Ok(drop(q8.matmul_int8(&xs, m))))?), Some(gflops(|| Ok(drop(q4.matmul_int8(&xs, m))))?))
    } else {
        (None, None)
    };
    // candle takes the weight as (out, in).
    let quantized = QMatMul::from_qtensor(QTensor::quantize(&w.t()?.contiguous()?, GgmlDType::Q8_0)?)?;
    let candle_q8_0 = gflops(|| Ok(drop(quantized.forward(&x)?)))?;
    Ok(Products { f32_gemm, q8_widened, q8_int8, q4_int8, candle_q8_0 })
}

/// Fixed inputs for the DiT at every precision: latents noise, context and condition states.
struct TrajectoryInputs {
    noise: Tensor,
    context: Tensor,
    states: Tensor,
}

impl TrajectoryInputs {
    fn new(cfg: &AceStepConfig) -> Result<Self> {
        let dev = Device::Cpu;
        let latent = cfg.audio_acoustic_hidden_dim;
        Ok(Self {
            noise: SeededNoise::new(&[SEED]).draw(FORWARD_FRAMES, latent, &dev)?,
            // Seeded too, so that every run of the benchmark measures the same errors.
            context: SeededNoise::new(&[SEED + 1]).draw(FORWARD_FRAMES, cfg.in_channels - latent, &dev)?,
            states: SeededNoise::new(&[SEED + 2]).draw(ENCODER_LEN, cfg.hidden_size, &dev)?,
        })
    }
}

/// The DiT at one precision: its fastest forward, the first step's velocity and the final
/// latents of a turbo run.
struct Trajectory {
    precision: Precision,
    /// Whether the quantized weights were multiplied in integers (else widened to f32).
    in_integers: bool,
    seconds: f64,
    gflop: f64,
    velocity: Tensor,
    latents: Tensor,
}

impl Trajectory {
    /// How the Linear products ran.
    fn product(&self) -> &'static str {
        match (self.precision, self.in_integers) {
            (Precision::F32, _) => "f32",
            (_, false) => "widened to f32",
            (_, true) => "int8 dot products",
        }
    }
}

/// The turbo sampler's 8 steps (shift 3, ODE) on the DiT loaded at `precision`, from `inputs`,
/// quantized weights multiplied in integers when `in_integers`.
fn dit_trajectory(dir: &Path, precision: Precision, in_integers: bool, inputs: &TrajectoryInputs) -> Result<Trajectory> {
    eprintln!("DiT trajectory at {precision} (in integers: {in_integers})");
    backline_engine::kernels::int8::allow(in_integers);
    let model = DitFolder::open(dir)?.load(&LoadAs { dtype: DType::F32, precision, device: Device::Cpu })?.model;
    let kv = model.condition_kv(&inputs.states)?;
    let config = SamplerConfig {
        kind: SamplerKind::Turbo,
        timesteps: turbo_schedule(STEPS, 3.0),
        method: InferMethod::Ode,
        guidance: None,
        audio_cover_strength: 1.0,
    };
    let mut fresh = SeededNoise::new(&[SEED]);
    let run = RunInputs { noise: inputs.noise.clone(), start: Start::Noise, repaint: None, fresh_noise: &mut fresh };
    let (mut fastest, mut first) = (f64::INFINITY, None);
    let latents = config.run(
        run,
        |step| {
            let t = Tensor::full(step.t, 1, &Device::Cpu)?;
            let started = Instant::now();
            let v = model.decoder.forward(step.x, &t, &t, &inputs.context, &kv)?;
            fastest = fastest.min(started.elapsed().as_secs_f64());
            first.get_or_insert_with(|| v.clone());
            Ok(Prediction { cond: v, uncond: None })
        },
        |_| Ok(()),
    )?;
    let velocity = first.context("the sampler ran no step")?;
    Ok(Trajectory { precision, in_integers, seconds: fastest, gflop: dit_forward_gflop(&model.config, FORWARD_FRAMES, ENCODER_LEN), velocity, latents })
}

/// `‖got − want‖ / ‖want‖`.
fn relative_error(got: &Tensor, want: &Tensor) -> Result<f64> {
    let diff = (got - want)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    let norm = want.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    Ok((diff / norm).sqrt())
}

/// Each trajectory with its velocity's and final latents' errors against f32's.
fn quality(forwards: &[Trajectory]) -> Result<Vec<(&Trajectory, f64, f64)>> {
    let reference = forwards.iter().find(|f| f.precision == Precision::F32).context("no f32 trajectory")?;
    forwards
        .iter()
        .map(|f| Ok((f, relative_error(&f.velocity, &reference.velocity)?, relative_error(&f.latents, &reference.latents)?)))
        .collect()
}

/// The multiply-adds of one decoder forward, times two: every Linear on each of the `frames /
/// patch` tokens (self-attention q, k, v, o; cross-attention q, o, its k and v being computed
/// once per job; the gated MLP), the attention products (self-attention counted over every
/// token, sliding layers included), the patch embedding in and out.
fn dit_forward_gflop(cfg: &AceStepConfig, frames: usize, encoder_len: usize) -> f64 {
    let tokens = (frames / cfg.patch_size) as f64;
    let (h, i) = (cfg.hidden_size as f64, cfg.intermediate_size as f64);
    let q = (cfg.num_attention_heads * cfg.head_dim()) as f64;
    let kv = (cfg.num_key_value_heads * cfg.head_dim()) as f64;
    let per_token_layer = 2.0 * h * q + 2.0 * h * kv + 2.0 * h * q + 3.0 * h * i;
    let attention_layer = 2.0 * tokens * tokens * q + 2.0 * tokens * encoder_len as f64 * q;
    let patches = (cfg.in_channels * cfg.patch_size) as f64 * h + h * (cfg.audio_acoustic_hidden_dim * cfg.patch_size) as f64;
    let macs = cfg.num_hidden_layers as f64 * (tokens * per_token_layer + attention_layer) + tokens * patches;
    2.0 * macs / 1e9
}

// ---------------------------------------------------------------------------------------------
// The table

fn markdown(runs: &[Run], products: &Products, forwards: &[(&Trajectory, f64, f64)]) -> String {
    let gemm = products.f32_gemm;
    let gib = |mib: f64| format!("{:.2}", mib / 1024.0);
    let mut t = String::new();
    t.push_str(&format!(
        "Text2music, turbo, {STEPS} steps, batch 1, no LM, {THREADS} threads; whole process. Each phase is one model's: \
         its own seconds (loading apart) and the peak resident memory from its load to the next model's.\n\n"
    ));
    t.push_str("| request | engine | weights | total s | peak GiB | loads s | text encoder s / GiB | DiT s / GiB | VAE decode s / GiB |\n");
    t.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for r in runs {
        t.push_str(&format!(
            "| {} s | {} | {} | {:.1} | {} | {:.1} | {:.1} / {} | {:.1} / {} | {:.1} / {} |\n",
            r.duration,
            r.side,
            r.precision.name(),
            r.wall_s,
            gib(r.peak_mib),
            r.load_s,
            r.text.seconds,
            gib(r.text.peak_mib),
            r.dit.seconds,
            gib(r.dit.peak_mib),
            r.vae.seconds,
            gib(r.vae.peak_mib),
        ));
    }
    let (m, k, n) = PRODUCT;
    let int8 = |rate: Option<f64>| rate.map_or("not run (no AVX-512 VNNI)".to_string(), |r| format!("{r:.1}"));
    t.push_str(&format!(
        "\nOne product of {m}x{k} by {k}x{n} (the DiT's MLP up-projection), GFLOP/s: f32 GEMM (candle) {gemm:.1}, the \
         machine's peak for these figures; Backline's 8-bit product widened {:.1}, in integers {}; its 4-bit product in \
         integers {}; candle's quantized matmul on Q8_0 {:.1}.\n\n",
        products.q8_widened,
        int8(products.q8_int8),
        int8(products.q4_int8),
        products.candle_q8_0
    ));
    t.push_str(&format!(
        "DiT forward at 750 frames (30 s), encoder length 400, fastest of a turbo run's {STEPS} steps; errors against f32 \
         on the same inputs: the first step's velocity and the run's final latents (`‖x − ref‖ / ‖ref‖`).\n\n"
    ));
    t.push_str("| weights | products | forward s | GFLOP | GFLOP/s | share of the GEMM peak | velocity error | final latents error |\n|---|---|---|---|---|---|---|---|\n");
    for (f, velocity, latents) in forwards {
        let rate = f.gflop / f.seconds;
        t.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {rate:.1} | {:.0} % | {velocity:.2e} | {latents:.2e} |\n",
            f.precision.name(),
            f.product(),
            f.seconds,
            f.gflop,
            100.0 * rate / gemm
        ));
    }
    t
}
