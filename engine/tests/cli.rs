//! The `backline` binary end to end on the tiny synthetic checkpoint set: what it writes, that it
//! equals upstream's own `generate_music` (fixture stage `e2e`), and that every kind of bad input
//! is a clear error that leaves existing files alone.
#![cfg(feature = "cli")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use backline_engine::audio::{read_audio, write_audio, AudioBuffer, OutputFormat};
use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::checkpoint::{BASE_FOLDER, TURBO_FOLDER};
use backline_engine::pipeline::recipe::{hex, samples_sha256, Recipe};
use backline_engine::request::Seed;
use backline_engine::task::TaskType;

/// A fresh folder under the system temp dir, unique per test and per run.
fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("backline-cli-{name}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tiny synthetic set under `dir/checkpoints`.
fn tiny_set(dir: &Path) -> PathBuf {
    let checkpoints = dir.join("checkpoints");
    synth::write_set(&checkpoints, SynthSize::Tiny, 0).unwrap();
    checkpoints
}

/// Run `backline` in `cwd` with `BACKLINE_CHECKPOINTS` unset.
fn backline(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backline"))
        .args(args)
        .current_dir(cwd)
        .env_remove("BACKLINE_CHECKPOINTS")
        .output()
        .expect("the backline binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Assert the run failed and its error mentions each of `needles`.
fn assert_fails_with(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected a failure, got success; stderr:\n{err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A stereo 440 Hz tone at 48 kHz (silent when `amplitude` is 0).
fn tone(path: &Path, seconds: f64, amplitude: f32) {
    let frames = (seconds * 48_000.0) as usize;
    let wave: Vec<f32> =
        (0..frames).map(|i| amplitude * (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin()).collect();
    write_audio(path, &AudioBuffer::new(48_000, vec![wave.clone(), wave]), OutputFormat::WavPcm16, false).unwrap();
}

#[test]
fn demo_writes_a_flac_and_its_recipe() {
    let dir = scratch("demo");
    let out_dir = dir.join("out");
    let out = backline(&dir, &["demo", "--out", s(&out_dir), "--checkpoints", s(&dir.join("checkpoints"))]);
    assert!(out.status.success(), "demo failed:\n{}", stderr(&out));
    assert!(stderr(&out).contains("noise-like"), "the demo says its weights are random:\n{}", stderr(&out));

    let flac = out_dir.join("backline-demo-42.flac");
    let json = out_dir.join("backline-demo-42.json");
    assert!(
        stdout(&out).contains(s(&flac)) && stdout(&out).contains(s(&json)),
        "prints what it wrote:\n{}",
        stdout(&out)
    );
    let audio = read_audio(&flac).unwrap();
    assert_eq!((audio.sample_rate, audio.num_channels()), (48_000, 2));
    assert!((audio.duration_s() - 10.0).abs() < 0.1, "10 s, got {}", audio.duration_s());
    let recipe: Recipe = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(recipe.seeds(), [42]);
    assert_eq!(recipe.request.seed, Some(Seed::PerItem(vec![42])));
    assert_eq!(recipe.model_kind, backline_engine::request::ModelKind::Turbo);

    // A second demo into a folder of the user's keeps the first one's files.
    let before = fs::read(&flac).unwrap();
    let again = backline(&dir, &["demo", "--out", s(&out_dir), "--checkpoints", s(&dir.join("checkpoints"))]);
    assert_fails_with(&again, &["already exists", s(&flac)]);
    assert_eq!(fs::read(&flac).unwrap(), before);

    // In its own default folder (relative to the current one) the demo replaces its output.
    for _ in 0..2 {
        let default = backline(&dir, &["demo"]);
        assert!(default.status.success(), "default demo failed:\n{}", stderr(&default));
    }
    assert!(dir.join("target/backline-demo/out/backline-demo-42.flac").is_file());
    assert!(dir.join("target/backline-demo/checkpoints").join(TURBO_FOLDER).is_dir());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generate_never_replaces_a_file_without_overwrite() {
    let dir = scratch("overwrite");
    let checkpoints = tiny_set(&dir);
    let out_dir = dir.join("takes");
    fs::create_dir_all(&out_dir).unwrap();
    let taken = out_dir.join("take-42.flac");
    fs::write(&taken, b"an earlier take").unwrap();

    let args = ["generate", "--checkpoints", s(&checkpoints), "--out", s(&out_dir), "--name", "take"];
    let flags = ["--caption", "piano", "--duration", "10", "--seed", "42", "--batch-size", "1"];
    let out = backline(&dir, &[&args[..], &flags[..]].concat());
    assert_fails_with(&out, &["already exists", s(&taken), "--overwrite"]);
    assert!(!stderr(&out).contains("loading"), "refused before loading the models:\n{}", stderr(&out));
    assert_eq!(fs::read(&taken).unwrap(), b"an earlier take");
    assert!(!out_dir.join("take-42.json").exists(), "nothing else was written");

    // A recipe in the way stops the run too.
    fs::write(out_dir.join("take-7.json"), b"{}").unwrap();
    let out = backline(&dir, &[&args[..], &["--seed", "7", "--batch-size", "1", "--duration", "10"]].concat());
    assert_fails_with(&out, &["take-7.json", "already exists"]);
    assert_eq!(fs::read(out_dir.join("take-7.json")).unwrap(), b"{}");

    let out = backline(&dir, &[&args[..], &flags[..], &["--overwrite"]].concat());
    assert!(out.status.success(), "--overwrite failed:\n{}", stderr(&out));
    assert_eq!(read_audio(&taken).unwrap().sample_rate, 48_000);
    let recipe: Recipe = serde_json::from_str(&fs::read_to_string(out_dir.join("take-42.json")).unwrap()).unwrap();
    assert_eq!(recipe.seeds(), [42]);
    assert_eq!(recipe.request.caption, "piano");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_request_values_get_the_engines_message() {
    let dir = scratch("values");
    let checkpoints = tiny_set(&dir);
    let generate =
        |flags: &[&str]| backline(&dir, &[&["generate", "--checkpoints", s(&checkpoints)][..], flags].concat());

    assert_fails_with(&generate(&["--task-type", "remix"]), &["`task_type`", "\"remix\" is not one of", "text2music"]);
    assert_fails_with(&generate(&["--bpm", "5"]), &["`bpm`: 5 is outside 30 to 300"]);
    assert_fails_with(&generate(&["--key", "H major"]), &["`keyscale`"]);
    assert_fails_with(&generate(&["--precision", "q3"]), &["unknown precision `q3`", "f32, bf16, q8, q4"]);

    // A request file with a field the engine does not know.
    let request = dir.join("request.json");
    fs::write(&request, r#"{"caption": "piano", "bmp": 120}"#).unwrap();
    assert_fails_with(&generate(&["--request", s(&request)]), &["unknown field `bmp`", "did you mean `bpm`"]);

    // Unknown flags are clap's usage errors (exit status 2).
    let out = generate(&["--bpmm", "120"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Nothing reached the default output folder, the current one.
    let audio =
        fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "flac"));
    assert_eq!(audio.count(), 0);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_request_file_and_flags_combine() {
    let dir = scratch("request-file");
    let checkpoints = tiny_set(&dir);
    let request = dir.join("request.json");
    // Upstream's alias `prompt` for caption; the flag replaces it.
    fs::write(&request, r#"{"prompt": "old caption", "audio_duration": 10, "seed": 5, "batch_size": 1}"#).unwrap();
    let out_dir = dir.join("out");
    let args = ["generate", "--checkpoints", s(&checkpoints), "--request", s(&request), "--caption", "new caption"];
    let more = ["--bpm", "120", "--key", "C major", "--out", s(&out_dir), "--format", "wav16"];
    let out = backline(&dir, &[&args[..], &more[..]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let recipe_path = out_dir.join("backline-text2music-5.json");
    let recipe: Recipe = serde_json::from_str(&fs::read_to_string(&recipe_path).unwrap()).unwrap();
    assert_eq!(recipe.request.caption, "new caption");
    // The take measured against what was asked (random weights: whatever it found, or why not).
    let analysis = recipe.analysis.expect("the recipe reports the take's tempo and key");
    let tempo = analysis.tempo.expect("a tempo was asked for");
    assert_eq!((tempo.requested_bpm, tempo.meter.as_str()), (120.0, "4/4"));
    assert!(tempo.measured.is_some() != tempo.problem.is_some(), "{tempo:?}");
    assert_eq!(analysis.key.requested.as_deref(), Some("C major"));
    assert!(analysis.key.measured.is_some() != analysis.key.problem.is_some(), "{:?}", analysis.key);
    assert!(out_dir.join("backline-text2music-5.wav").is_file());

    // A recipe is a request too: it makes the same take again.
    let again = dir.join("again");
    let out = backline(
        &dir,
        &["generate", "--checkpoints", s(&checkpoints), "--request", s(&recipe_path), "--out", s(&again)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let first = read_audio(&out_dir.join("backline-text2music-5.wav")).unwrap();
    let second = read_audio(&again.join("backline-text2music-5.wav")).unwrap();
    assert_eq!(first.channels, second.channels, "same recipe, same audio");
    fs::remove_dir_all(&dir).unwrap();
}

/// A recipe's grid report, read as JSON (the figures the user sees).
fn grid_report(recipe_path: &Path) -> (Recipe, serde_json::Value) {
    let text = fs::read_to_string(recipe_path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    (serde_json::from_str(&text).unwrap(), json["grid"].clone())
}

#[test]
fn a_loop_take_is_exactly_its_bars_with_a_seamless_wrap() {
    let dir = scratch("bars-loop");
    let checkpoints = tiny_set(&dir);
    let out_dir = dir.join("out");
    let args = ["generate", "--checkpoints", s(&checkpoints), "--caption", "odd-meter loop", "--seed", "3"];
    let grid = ["--bars", "2", "--bpm", "93.5", "--timesignature", "7/8", "--loop", "--batch-size", "1"];
    let out = backline(&dir, &[&args[..], &grid[..], &["--out", s(&out_dir), "--format", "wav"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let audio = read_audio(&out_dir.join("backline-text2music-3.wav")).unwrap();
    // 2 bars of 7/8 at 93.5: 7 quarters * 60/93.5 s * 48 kHz = 215614.97 samples.
    assert_eq!(audio.frames(), 215_615);
    let (recipe, report) = grid_report(&out_dir.join("backline-text2music-3.json"));
    // The model was asked for whole passes and a bar (3 passes of 4.49 s and a bar: 15.72 s,
    // asked as 15.8 s), at 94 BPM in the meter it knows nearest 7/8.
    assert_eq!((recipe.request.bpm, recipe.request.timesignature.as_deref()), (Some(94), Some("6")));
    assert_eq!(recipe.request.duration, Some(15.8));
    assert_eq!((report["meter"].as_str(), report["metas_timesignature"].as_str()), (Some("7/8"), Some("6")));
    assert_eq!((report["frames"].as_u64(), report["options"]["loop"].as_bool()), (Some(215_615), Some(true)));
    // Random weights make noise-like audio: no beat to conform to, said so; the wrap is still
    // measured and within the documented bound.
    assert!(report["correction"]["note"].as_str().is_some_and(|n| n.starts_with("no beat found")), "{report}");
    let seam = &report["seam"];
    let flux = seam["flux_ratio"].as_f64().unwrap();
    assert!(flux <= backline_engine::audio::seam::SEAM_FLUX_BOUND && seam["seamless"] == true, "{seam}");
    // The model repainted a bar across the wrap (the default with a model at hand).
    assert_eq!(report["seam_fix"], "repaint", "{report}");
    assert!(stderr(&out).contains("repainting the loop's wrap"), "{}", stderr(&out));
    let analysis = recipe.analysis.unwrap();
    assert_eq!(analysis.tempo.unwrap().meter, "7/8", "measured against the real meter");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_audio_task_in_bars_takes_its_region_and_comes_back_aligned() {
    let dir = scratch("bars-cover");
    let checkpoints = tiny_set(&dir);
    let source = dir.join("source.wav");
    tone(&source, 20.0, 0.5);
    let out_dir = dir.join("out");
    let args = ["generate", "--checkpoints", s(&checkpoints), "--task-type", "cover", "--src-audio", s(&source)];
    let grid = ["--bars", "4", "--bpm", "120", "--start-bar", "3", "--conform", "trim", "--seed", "4", "--batch-size", "1"];
    let out = backline(&dir, &[&args[..], &grid[..], &["--out", s(&out_dir), "--format", "wav"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let audio = read_audio(&out_dir.join("backline-cover-4.wav")).unwrap();
    assert_eq!(audio.frames(), 8 * 48_000, "4 bars at 120");
    let (recipe, report) = grid_report(&out_dir.join("backline-cover-4.json"));
    // The job's source was bars 3-6 of the file, tiled to two passes and a bar.
    let source = serde_json::to_value(&recipe.source).unwrap().to_string();
    assert!(source.contains("bars 3-6"), "{source}");
    assert!(report["alignment"].is_object(), "the result was compared with its source: {report}");
    assert_eq!(report["options"]["conform"], "trim");

    // Bad grids are refused before any work, naming the flag.
    let bad = |extra: &[&str]| backline(&dir, &[&args[..], extra].concat());
    assert_fails_with(&bad(&["--bars", "0", "--bpm", "120"]), &["--bars 0", "0 bars"]);
    assert_fails_with(&bad(&["--bars", "4", "--bpm", "500"]), &["30-300"]);
    assert_fails_with(&bad(&["--bars", "4", "--bpm", "120", "--timesignature", "0/0"]), &["0/0"]);
    assert_fails_with(&bad(&["--bars", "4"]), &["--bars needs --bpm"]);
    assert_fails_with(&bad(&["--bars", "4", "--bpm", "120", "--start-bar", "40"]), &["--start-bar 40", "20.0 s long"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lego_needs_the_base_model_and_says_where_to_get_it() {
    let dir = scratch("lego");
    let checkpoints = tiny_set(&dir);
    let source = dir.join("source.wav");
    tone(&source, 12.0, 0.5);
    let lego = |model: &[&str]| {
        let mut args = vec!["generate", "--checkpoints", s(&checkpoints), "--task-type", "lego", "--src-audio", s(&source)];
        args.extend(["--track-name", "drums"]);
        args.extend(model);
        backline(&dir, &args)
    };
    assert_fails_with(&lego(&["--model", TURBO_FOLDER]), &["needs the base model", BASE_FOLDER]);
    // Without the base folder, the message names the folder to download.
    fs::remove_dir_all(checkpoints.join(BASE_FOLDER)).unwrap();
    assert_fails_with(&lego(&[]), &[BASE_FOLDER, "download"]);
    fs::remove_dir_all(&dir).unwrap();
}

/// Ctrl-C during the diffusion ends the run within a step, with an error and no files.
#[cfg(unix)]
#[test]
fn ctrl_c_cancels_the_job_and_writes_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = scratch("ctrl-c");
    let checkpoints = tiny_set(&dir);
    let out_dir = dir.join("takes");
    // The longest turbo run: 600 s at 20 steps, many seconds even on the tiny set.
    let mut child = Command::new(env!("CARGO_BIN_EXE_backline"))
        .args(["generate", "--checkpoints", s(&checkpoints), "--duration", "600", "--inference-steps", "20"])
        .args(["--batch-size", "1", "--out", s(&out_dir)])
        .current_dir(&dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("diffusion") {
            // SAFETY: sending SIGINT to our own child process.
            assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
            break;
        }
    }
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    let stderr = seen.join("\n");
    assert!(!status.success(), "the run must fail once cancelled:\n{stderr}");
    assert!(stderr.contains("cancelled") && stderr.contains("nothing was written"), "{stderr}");
    let written: Vec<_> = fs::read_dir(&out_dir).map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
    assert!(written.is_empty(), "no partial or temporary file: {written:?}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_source_audio_is_refused_naming_the_file() {
    let dir = scratch("source");
    let checkpoints = tiny_set(&dir);
    let cover = |source: &Path| {
        backline(
            &dir,
            &["generate", "--checkpoints", s(&checkpoints), "--task-type", "cover", "--src-audio", s(source)],
        )
    };

    let missing = dir.join("no-such-take.wav");
    assert_fails_with(&cover(&missing), &["no-such-take.wav"]);

    let empty = dir.join("empty.wav");
    fs::write(&empty, b"").unwrap();
    assert_fails_with(&cover(&empty), &["empty.wav"]);

    let silent = dir.join("silent.wav");
    tone(&silent, 12.0, 0.0);
    assert_fails_with(&cover(&silent), &["silent.wav", "silent"]);

    let short = dir.join("short.wav");
    tone(&short, 2.0, 0.5);
    assert_fails_with(&cover(&short), &["--src-audio", "short.wav", "10 to 600"]);
    fs::remove_dir_all(&dir).unwrap();
}

/// Cut a folder's weight file in half.
fn truncate(file: &Path) {
    let len = fs::metadata(file).unwrap().len();
    fs::OpenOptions::new().write(true).open(file).unwrap().set_len(len / 2).unwrap();
}

#[test]
fn check_validates_one_folder() {
    let dir = scratch("check");
    let checkpoints = tiny_set(&dir);
    for (folder, kind) in [
        (TURBO_FOLDER, "DiT (turbo)"),
        (BASE_FOLDER, "DiT (base)"),
        ("vae", "VAE"),
        ("Qwen3-Embedding-0.6B", "text encoder"),
    ] {
        let out = backline(&dir, &["check", s(&checkpoints.join(folder))]);
        assert!(out.status.success(), "{folder}: {}", stderr(&out));
        assert!(stdout(&out).contains(kind) && stdout(&out).contains("OK"), "{folder}: {}", stdout(&out));
    }

    let weights = checkpoints.join(TURBO_FOLDER).join("model.safetensors");
    truncate(&weights);
    assert_fails_with(&backline(&dir, &["check", s(&checkpoints.join(TURBO_FOLDER))]), &[s(&weights), "truncated"]);

    let out = backline(&dir, &["check", s(&dir)]);
    assert_fails_with(&out, &["not a model's folder"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn models_lists_and_validates_the_set() {
    let dir = scratch("models");
    let checkpoints = tiny_set(&dir);
    fs::create_dir_all(checkpoints.join("notes")).unwrap();
    // The folder comes from the environment when no flag gives it.
    let out = Command::new(env!("CARGO_BIN_EXE_backline"))
        .arg("models")
        .current_dir(&dir)
        .env("BACKLINE_CHECKPOINTS", &checkpoints)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    for line in [
        [TURBO_FOLDER, "DiT (turbo)", "OK"],
        [BASE_FOLDER, "DiT (base)", "OK"],
        ["vae", "VAE", "OK"],
        ["Qwen3-Embedding-0.6B", "text encoder", "OK"],
        ["acestep-5Hz-lm-0.6B", "5 Hz LM", "OK"],
        ["notes", "-", "skipped"],
    ] {
        assert!(listing.lines().any(|l| line.iter().all(|part| l.contains(part))), "no line with {line:?}:\n{listing}");
    }

    let weights = checkpoints.join(BASE_FOLDER).join("model.safetensors");
    truncate(&weights);
    fs::remove_dir_all(checkpoints.join("vae")).unwrap();
    let out = backline(&dir, &["models", "--checkpoints", s(&checkpoints)]);
    assert!(!out.status.success());
    let listing = stdout(&out);
    assert!(
        listing.lines().any(|l| l.contains(BASE_FOLDER) && l.contains("FAILED") && l.contains(s(&weights))),
        "{listing}"
    );
    assert!(listing.lines().any(|l| l.contains("vae") && l.contains("MISSING")), "{listing}");
    assert!(listing.lines().any(|l| l.contains(TURBO_FOLDER) && l.contains("OK")), "{listing}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quantized_weights_generate_close_to_full_precision() {
    let dir = scratch("precision");
    let checkpoints = tiny_set(&dir);
    let take = |precision: &str| {
        let args = ["generate", "--checkpoints", s(&checkpoints), "--out", s(&dir), "--name", precision, "--precision", precision];
        let out = backline(&dir, &[&args[..], &["--caption", "piano", "--duration", "10", "--seed", "3", "--batch-size", "1", "--format", "wav"]].concat());
        assert!(out.status.success(), "--precision {precision} failed:\n{}", stderr(&out));
        let recipe: Recipe = serde_json::from_str(&fs::read_to_string(dir.join(format!("{precision}-3.json"))).unwrap()).unwrap();
        assert_eq!(recipe.precision.name(), precision, "the recipe says how the weights were held");
        read_audio(&dir.join(format!("{precision}-3.wav"))).unwrap().channels.concat()
    };
    let full = take("f32");
    for precision in ["q8", "q4"] {
        let got = take(precision);
        assert_eq!(got.len(), full.len(), "{precision}: same length");
        assert!(got.iter().all(|v| v.is_finite()), "{precision}: finite samples");
        assert_ne!(got, full, "{precision}: quantized weights change the samples");
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// The e2e fixture's source clip, as `e2e_source` in `tests/parity/make_fixtures.py` builds it:
/// sawtooth chords in integer arithmetic over 2^15, the same floats bit for bit.
fn e2e_source(seconds: i64) -> AudioBuffer {
    let channel = |periods: [i64; 3]| -> Vec<f32> {
        let saw = |n: i64, p: i64| (n % p) * 2 * 3000 / p - 3000;
        (0..seconds * 48_000).map(|n| periods.iter().map(|&p| saw(n, p)).sum::<i64>() as f32 / 32768.0).collect()
    };
    AudioBuffer::new(48_000, vec![channel([218, 175, 146]), channel([220, 173, 147])])
}

/// The CLI's float WAV for text2music, cover at strength 0.5 and a repaint against upstream's
/// top-level `acestep.inference.generate_music` on the same tiny set (LM and DCW off, one item,
/// seed 7): within 1e-4 of the result's largest sample. The fixture keeps every 5th sample.
#[test]
fn whole_generations_equal_upstreams_generate_music() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/parity/fixtures");
    let meta: serde_json::Value = serde_json::from_str(&fs::read_to_string(fixtures.join("e2e.json")).unwrap()).unwrap();
    let want = candle_core::safetensors::load(fixtures.join("e2e.safetensors"), &candle_core::Device::Cpu).unwrap();
    let dir = scratch("e2e");
    let checkpoints = tiny_set(&dir);
    for (file, sha256) in meta["checkpoint_sha256"].as_object().unwrap() {
        let bytes = fs::read(checkpoints.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let ours = hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        assert_eq!(&ours, sha256, "{file} is not the file the fixture was made from: remake stage e2e");
    }
    let source = e2e_source(meta["source_seconds"].as_i64().unwrap());
    let source_sha256 = meta["source_sha256"].as_str().unwrap();
    assert_eq!(samples_sha256(source.channels.iter().map(Vec::as_slice)), source_sha256, "the source clip");
    write_audio(&dir.join("source.wav"), &source, OutputFormat::WavF32, false).unwrap();
    let stride = meta["stride"].as_u64().unwrap() as usize;
    let mut misses = Vec::new();

    for (name, case) in meta["cases"].as_object().unwrap() {
        let request = dir.join(format!("{name}.json"));
        fs::write(&request, case["request"].to_string()).unwrap();
        let args = ["generate", "--checkpoints", s(&checkpoints), "--request", s(&request), "--precision", "f32"];
        let out = backline(&dir, &[&args[..], &["--batch-size", "1", "--format", "wav", "--name", name]].concat());
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let recipe: Recipe = serde_json::from_str(&fs::read_to_string(dir.join(format!("{name}-7.json"))).unwrap()).unwrap();
        if let Some(source) = &recipe.source {
            // Upstream drew the VAE posterior's noise from this hash's seed.
            assert_eq!(source.audio_sha256, source_sha256, "{name}: the samples the VAE encoded");
        }
        let got = read_audio(&dir.join(format!("{name}-7.wav"))).unwrap();
        assert_eq!(got.frames() as u64, case["samples"].as_u64().unwrap(), "{name}: length");
        let want = want[&format!("out.{name}")].to_vec2::<f32>().unwrap();
        let (mut worst, mut scale) = (0f32, 0f32);
        for (ours, theirs) in got.channels.iter().zip(&want) {
            assert_eq!(ours.iter().step_by(stride).count(), theirs.len(), "{name}: stored samples");
            for (a, b) in ours.iter().step_by(stride).zip(theirs) {
                worst = worst.max((a - b).abs());
                scale = scale.max(b.abs());
            }
        }
        eprintln!("{name}: max |ours - upstream's| {worst:.3e} of {scale:.3e}");
        assert!(scale > 1e-3, "{name}: upstream's result is silent");
        if worst > 1e-4 * scale {
            misses.push(format!("{name}: {:.3e} relative to upstream's generate_music", worst / scale));
        }
    }
    assert!(misses.is_empty(), "{misses:#?}");
    fs::remove_dir_all(&dir).unwrap();
}

/// The hosted endpoints' windows as flags: `--extend-after-duration` out-paints a 12 s source to
/// 16 s, `--start-time 4 --start-time-relative-to end` repaints its last 4 s, `--tags` is the
/// caption; mixing the two kinds, or a window without a source, is refused naming the flags.
#[test]
fn hosted_window_flags_repaint_and_outpaint_the_source() {
    let dir = scratch("hosted");
    let checkpoints = tiny_set(&dir);
    let source = dir.join("verse.wav");
    tone(&source, 12.0, 0.5);
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec!["generate", "--checkpoints", s(&checkpoints), "--src-audio", s(&source), "--tags", "brighter"];
        args.extend_from_slice(&["--inference-steps", "2", "--batch-size", "1", "--seed", "1", "--format", "wav", "--name", name]);
        args.extend_from_slice(extra);
        backline(&dir, &args)
    };
    let out = run("outpaint", &["--extend-after-duration", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let audio = read_audio(&dir.join("outpaint-1.wav")).unwrap();
    assert!((audio.duration_s() - 16.0).abs() < 0.01, "{} s", audio.duration_s());
    let recipe: Recipe = serde_json::from_str(&fs::read_to_string(dir.join("outpaint-1.json")).unwrap()).unwrap();
    assert_eq!((recipe.request.task_type, recipe.request.caption.as_str()), (TaskType::Repaint, "brighter"));
    assert_eq!((recipe.request.repainting_start, recipe.request.repainting_end), (0.0, Some(16.0)));

    let out = run("inpaint", &["--start-time", "4", "--start-time-relative-to", "end"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let recipe: Recipe = serde_json::from_str(&fs::read_to_string(dir.join("inpaint-1.json")).unwrap()).unwrap();
    assert_eq!((recipe.request.repainting_start, recipe.request.repainting_end), (8.0, Some(12.0)));

    assert_fails_with(&run("mixed", &["--start-time", "1", "--extend-after-duration", "2"]), &["--extend-after-duration", "--start-time"]);
    let no_source = backline(&dir, &["generate", "--checkpoints", s(&checkpoints), "--caption", "x", "--extend-after-duration", "2"]);
    assert_fails_with(&no_source, &["--src-audio"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn thinking_renders_the_lms_codes_and_the_recipe_keeps_them() {
    let dir = scratch("thinking");
    let checkpoints = tiny_set(&dir);
    let run = |name: &str, extra: &[&str]| {
        let args = ["generate", "--checkpoints", s(&checkpoints), "--out", s(&dir), "--name", name, "--format", "wav"];
        let metas = ["--caption", "lofi keys", "--bpm", "90", "--key", "A minor", "--time-signature", "4", "--duration", "10"];
        backline(&dir, &[&args[..], &metas[..], &["--seed", "3", "--batch-size", "1"], extra].concat())
    };
    let out = run("planned", &["--thinking"]);
    assert!(out.status.success(), "--thinking failed:\n{}", stderr(&out));
    let recipe: Recipe = serde_json::from_str(&fs::read_to_string(dir.join("planned-3.json")).unwrap()).unwrap();
    assert!(recipe.request.thinking, "the recipe keeps what was asked");
    let lm = recipe.lm.as_ref().expect("and what the LM chose");
    assert_eq!(lm.model.folder, "acestep-5Hz-lm-0.6B");
    assert_eq!(lm.chain_of_thought, "<think>\nbpm: 90\nduration: 10\nkeyscale: A minor\ntimesignature: 4\n</think>", "every meta given: no thought");
    assert_eq!(lm.audio_codes.len(), 1);
    let codes = &lm.audio_codes[0];
    assert_eq!(codes.matches("<|audio_code_").count(), 50, "10 s is 50 codes: {codes}");
    assert!(recipe.time_costs.contains_key("lm_phase2_time_cost"));
    let planned = read_audio(&dir.join("planned-3.wav")).unwrap();

    // The same seed plans the same codes; the codes given back render the same audio.
    let out = run("replayed", &["--audio-codes", codes]);
    assert!(out.status.success(), "--audio-codes failed:\n{}", stderr(&out));
    assert_eq!(read_audio(&dir.join("replayed-3.wav")).unwrap().channels, planned.channels, "the LM's codes are what the DiT rendered");
    let plain = run("plain", &[]);
    assert!(plain.status.success());
    assert_ne!(read_audio(&dir.join("plain-3.wav")).unwrap().channels, planned.channels, "the codes change the take");

    // With metas left open, the chain of thought plans them and the take follows its choices.
    let args = ["generate", "--checkpoints", s(&checkpoints), "--out", s(&dir), "--name", "open", "--format", "wav"];
    // The tiny LM's own caption is noise to the token limit: it plans the metas only here.
    let open = ["--caption", "x", "--bpm", "100", "--seed", "4", "--batch-size", "1", "--thinking", "--use-cot-caption=false"];
    let out = backline(&dir, &[&args[..], &open[..]].concat());
    assert!(out.status.success(), "--thinking with open metas failed:\n{}", stderr(&out));
    let recipe: Recipe = serde_json::from_str(&fs::read_to_string(dir.join("open-4.json")).unwrap()).unwrap();
    assert_eq!((recipe.request.keyscale.as_deref(), recipe.request.duration), (None, None), "the recipe keeps what was asked");
    let plan = backline_engine::lm::plan::Plan::parse(&recipe.lm.as_ref().unwrap().chain_of_thought);
    assert_eq!(plan.bpm.as_ref().and_then(|b| b.as_int()), Some(100), "the given bpm is written as given");
    let key = plan.keyscale.expect("the LM chose a key");
    assert!(backline_engine::task::is_valid_keyscale(&key), "{key}");
    let seconds = plan.duration.and_then(|d| d.as_int()).expect("the LM chose a length");
    assert!(recipe.time_costs.contains_key("lm_phase1_time_cost"));
    let take = read_audio(&dir.join("open-4.wav")).unwrap();
    assert_eq!(take.channels[0].len(), seconds as usize * 48_000, "the take is as long as the LM planned");

    // A set without an LM is a clear error.
    fs::remove_dir_all(checkpoints.join("acestep-5Hz-lm-0.6B")).unwrap();
    assert_fails_with(&run("orphan", &["--thinking"]), &["thinking", "acestep-5Hz-lm-"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_lms_description_modes_answer_and_sample_mode_writes_the_request() {
    let dir = scratch("describe");
    let checkpoints = tiny_set(&dir);
    let describe = |extra: &[&str]| backline(&dir, &[&["describe", "--checkpoints", s(&checkpoints), "--seed", "22"][..], extra].concat());
    let out = describe(&["sample", "a rainy night in Tokyo", "--instrumental", "--language", "ja"]);
    assert!(out.status.success(), "describe sample failed:\n{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(answer["model"], "acestep-5Hz-lm-0.6B");
    assert!((30..=300).contains(&answer["bpm"].as_i64().expect("a bpm")), "{answer}");
    // The tiny LM's caption is noise to its token limit, so it writes no lyrics: an instrumental
    // piece gets upstream's placeholder.
    assert_eq!(answer["lyrics"], "[Instrumental]", "{answer}");
    assert_fails_with(&describe(&["understand", "--audio-codes", " "]), &["audio codes"]);

    // Sample mode in a generation: the LM writes the request, the recipe keeps both.
    let args = ["generate", "--checkpoints", s(&checkpoints), "--out", s(&dir), "--name", "sampled", "--format", "wav"];
    let out = backline(&dir, &[&args[..], &["--sample-query", "a rainy night", "--seed", "5", "--batch-size", "1", "--inference-steps", "2"]].concat());
    assert!(out.status.success(), "--sample-query failed:\n{}", stderr(&out));
    let recipe: Recipe = serde_json::from_str(&fs::read_to_string(dir.join("sampled-5.json")).unwrap()).unwrap();
    assert_eq!(recipe.request.sample_query.as_deref(), Some("a rainy night"), "the recipe keeps what was asked");
    let rewritten = recipe.rewritten.as_ref().expect("and what the LM wrote");
    assert_eq!(rewritten.modes, ["sample"]);
    assert_eq!(rewritten.model.folder, "acestep-5Hz-lm-0.6B");
    assert!(!rewritten.caption.is_empty());
    assert_eq!(recipe.metas_used().bpm, rewritten.bpm, "the job ran with the LM's bpm");
    assert!(recipe.time_costs.contains_key("lm_sample_time_cost"));
    fs::remove_dir_all(&dir).unwrap();
}
