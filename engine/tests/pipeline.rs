//! Every task end to end on the tiny synthetic checkpoint set: request in, 48 kHz stereo audio and
//! a recipe out. Plus what a user notices around it: the same recipe gives the same audio, repaint
//! keeps the source outside its window, a repeated edit reuses the encoded source, bad inputs are
//! clear errors, and cancel and panic recovery through the job engine.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use backline_engine::audio::{write_audio, AudioBuffer, OutputFormat, MODEL_SAMPLE_RATE};
use backline_engine::backend::{Backend, JobRequest, LocalBackend, LocalSettings};
use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::checkpoint::{BASE_FOLDER, TURBO_FOLDER};
use backline_engine::error::{InputError, JobError};
use backline_engine::job::JobEvent;
use backline_engine::pipeline::Generation;
use backline_engine::request::{GenerationRequest, ModelKind};
use backline_engine::store::ModelStore;
use serde_json::json;

fn scratch() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("pipeline-tests")
}

/// The tiny set, written once per test run.
fn checkpoints() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch().join("checkpoints");
        let _ = std::fs::remove_dir_all(&dir);
        synth::write_set(&dir, SynthSize::Tiny, 11).expect("tiny set");
        dir
    })
}

/// One backend for the tests, with a store of its own that holds both tiny DiTs (loading is the
/// slow part).
fn backend() -> &'static LocalBackend {
    static BACKEND: OnceLock<LocalBackend> = OnceLock::new();
    BACKEND.get_or_init(|| LocalBackend::with_store(LocalSettings::cpu(checkpoints()), ModelStore::new(1 << 30)).unwrap())
}

/// Runs `request` (one item unless it says otherwise) on `model` through the backend.
fn run(model: &'static str, mut request: serde_json::Value) -> Result<Generation, JobError> {
    if request.get("batch_size").is_none() {
        request["batch_size"] = json!(1);
    }
    request["model"] = json!(model);
    let request = GenerationRequest::from_value(request).expect("valid request");
    backend().submit(JobRequest::new(request)).wait()
}

/// A 12-second source at 44.1 kHz mono (so it is resampled and duplicated): a chord with a
/// slow tremolo, written once.
fn source_wav() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let rate = 44_100;
        let samples: Vec<f32> = (0..12 * rate)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let chord: f32 = [220.0f32, 277.2, 329.6].iter().map(|f| (std::f32::consts::TAU * f * t).sin()).sum();
                0.2 * chord * (1.0 + 0.5 * (std::f32::consts::TAU * 0.5 * t).sin())
            })
            .collect();
        let dir = scratch();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("source.wav");
        write_audio(&path, &AudioBuffer::new(rate as u32, vec![samples]), OutputFormat::WavF32, true).unwrap();
        path
    })
}

fn assert_model_audio(audio: &[AudioBuffer], items: usize, seconds: f64) {
    assert_eq!(audio.len(), items);
    let samples = (seconds * 25.0).floor() as usize * 1920;
    for a in audio {
        assert_eq!((a.sample_rate, a.channels.len(), a.frames()), (MODEL_SAMPLE_RATE, 2, samples));
        assert!(a.channels.iter().flatten().all(|v| v.is_finite()));
        // Upstream's output level: peak-normalised to −1 dBFS.
        assert!((a.peak() - 0.891_251).abs() < 1e-4, "peak {}", a.peak());
    }
}

#[test]
fn text2music_makes_a_batch_with_its_seeds_and_the_recipe_reproduces_it() {
    let out = run(TURBO_FOLDER, json!({"caption": "warm lo-fi piano", "duration": 10.0, "batch_size": 2, "seed": 5, "bpm": 90}))
        .unwrap();
    assert_model_audio(&out.audio, 2, 10.0);
    assert_eq!(out.recipe.seeds(), vec![5, 6]);
    assert_ne!(out.audio[0], out.audio[1], "each item has its own noise");
    let folders: Vec<&str> = out.recipe.models.iter().map(|m| m.folder.as_str()).collect();
    assert_eq!(folders, [TURBO_FOLDER, "vae", "Qwen3-Embedding-0.6B"]);
    assert!(out.recipe.models.iter().all(|m| m.fingerprint.len() == 64 && m.bytes > 0));

    assert!(out.recipe.time_costs["dit_diffusion_time_cost"] > 0.0, "{:?}", out.recipe.time_costs);
    assert!(out.recipe.time_costs["dit_total_time_cost"] >= out.recipe.time_costs["dit_vae_decode_time_cost"]);

    // The recipe, serialised and submitted again, gives the same audio bit for bit.
    let again = run(TURBO_FOLDER, serde_json::to_value(&out.recipe.request).unwrap()).unwrap();
    assert_eq!(again.audio, out.audio);
    assert_eq!(again.recipe.request, out.recipe.request);
    assert_eq!(again.recipe.models, out.recipe.models);
}

#[test]
fn cover_with_noise_start_and_switch_runs_and_records_its_source() {
    let src = source_wav().to_str().unwrap();
    let out = run(
        TURBO_FOLDER,
        json!({"task_type": "cover", "src_audio": src, "caption": "jazz", "audio_cover_strength": 0.5,
               "cover_noise_strength": 0.3, "seed": 1}),
    )
    .unwrap();
    assert_model_audio(&out.audio, 1, 12.0);
    let source = out.recipe.source.as_ref().expect("source recorded");
    assert_eq!(source.path, src);
    assert_eq!(source.audio_sha256.len(), 64);
    // The switch to text2music's condition changes the result.
    let full = run(TURBO_FOLDER, json!({"task_type": "cover", "src_audio": src, "caption": "jazz", "seed": 1})).unwrap();
    assert_ne!(full.audio, out.audio);
}

/// `got ≈ gain·want` on `range`, for one gain: repaint keeps the source there (the output level
/// normalisation scales everything).
fn assert_scaled_copy(got: &[f32], want: &[f32], range: std::ops::Range<usize>) {
    let dot: f64 = range.clone().map(|i| got[i] as f64 * want[i] as f64).sum();
    let norm: f64 = range.clone().map(|i| (want[i] as f64).powi(2)).sum();
    let gain = dot / norm;
    let err = range.clone().map(|i| (got[i] as f64 - gain * want[i] as f64).abs()).fold(0.0, f64::max);
    assert!(gain > 0.1 && err < 1e-4, "gain {gain}, max error {err}");
}

#[test]
fn repaint_regenerates_the_window_and_keeps_the_source_elsewhere() {
    let src = source_wav().to_str().unwrap();
    let request = json!({"task_type": "repaint", "src_audio": src, "repainting_start": 4.0, "repainting_end": 8.0,
                         "caption": "drum break", "seed": 3});
    let out = run(TURBO_FOLDER, request.clone()).unwrap();
    assert_model_audio(&out.audio, 1, 12.0);
    let source = backline_engine::audio::to_model_format(&backline_engine::audio::read_audio(Path::new(src)).unwrap()).unwrap();
    let rate = MODEL_SAMPLE_RATE as usize;
    let (got, want) = (&out.audio[0].channels[0], &source.channels[0]);
    // Balanced: a 25 ms splice crossfade outside each edge; beyond it, the source.
    assert_scaled_copy(got, want, 0..4 * rate - rate / 10);
    assert_scaled_copy(got, want, 8 * rate + rate / 10..12 * rate);
    let inside_err = (5 * rate..7 * rate).map(|i| (got[i] - want[i]).abs()).fold(0f32, f32::max);
    assert!(inside_err > 0.05, "the window is regenerated");

    // A second edit of the same capture reuses its encoded latents: no encode tiles run.
    let mut again = request.clone();
    again["repaint_mode"] = json!("conservative");
    again["model"] = json!(TURBO_FOLDER);
    let handle = backend().submit(JobRequest::new(GenerationRequest::from_value(again).unwrap()));
    let mut stage = String::new();
    let mut encode_steps = 0;
    for event in handle.events().iter() {
        match event {
            JobEvent::Stage { name } => stage = name,
            JobEvent::Step { .. } if stage == "encode" => encode_steps += 1,
            JobEvent::Done(_) => break,
            JobEvent::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    assert_eq!(encode_steps, 0, "the cached latents were used");
}

#[test]
fn repaint_outpaints_before_the_source() {
    let src = source_wav().to_str().unwrap();
    let out = run(
        TURBO_FOLDER,
        json!({"task_type": "repaint", "src_audio": src, "repainting_start": -3.0, "repainting_end": 2.0, "seed": 9}),
    )
    .unwrap();
    // Three seconds of new audio before the source's twelve.
    assert_model_audio(&out.audio, 1, 15.0);
}

#[test]
fn lego_extract_and_complete_run_on_the_base_model() {
    let src = source_wav().to_str().unwrap();
    let requests = [
        json!({"task_type": "lego", "src_audio": src, "track_name": "guitar", "repainting_start": 2.0, "repainting_end": 10.0}),
        json!({"task_type": "extract", "src_audio": src, "track_name": "vocals"}),
        json!({"task_type": "complete", "src_audio": src, "track_classes": ["drums", "bass"]}),
    ];
    for mut request in requests {
        // Few steps keep the CFG runs quick.
        request["inference_steps"] = json!(3);
        request["seed"] = json!(4);
        let out = run(BASE_FOLDER, request.clone()).unwrap_or_else(|e| panic!("{request}: {e}"));
        assert_model_audio(&out.audio, 1, 12.0);
        assert_eq!(out.recipe.model_kind, ModelKind::Base);
        assert_eq!(out.recipe.request.guidance_scale, Some(7.0), "base samples with APG guidance");
        if request["task_type"] == "lego" {
            // Like repaint, lego keeps the source outside its window.
            let source = backline_engine::audio::to_model_format(&backline_engine::audio::read_audio(Path::new(src)).unwrap()).unwrap();
            let rate = MODEL_SAMPLE_RATE as usize;
            let (got, want) = (&out.audio[0].channels[1], &source.channels[1]);
            assert_scaled_copy(got, want, 0..2 * rate - rate / 10);
            assert_scaled_copy(got, want, 10 * rate + rate / 10..12 * rate);
        }
    }
}

#[test]
fn base_text2music_with_adg_and_sde_runs() {
    let out =
        run(BASE_FOLDER, json!({"caption": "ambient", "duration": 10.0, "inference_steps": 3, "use_adg": true, "seed": 2}))
            .unwrap();
    assert_model_audio(&out.audio, 1, 10.0);
    let sde = run(BASE_FOLDER, json!({"caption": "ambient", "duration": 10.0, "inference_steps": 3, "infer_method": "sde", "seed": 2}))
        .unwrap();
    let again = run(BASE_FOLDER, json!({"caption": "ambient", "duration": 10.0, "inference_steps": 3, "infer_method": "sde", "seed": 2}))
        .unwrap();
    assert_eq!(sde.audio, again.audio, "SDE noise comes from the seed too");
}

#[test]
fn reference_audio_steers_the_timbre() {
    let src = source_wav().to_str().unwrap();
    let base = json!({"caption": "synth pop", "duration": 10.0, "seed": 8});
    let plain = run(TURBO_FOLDER, base.clone()).unwrap();
    let mut with_ref = base;
    with_ref["reference_audio"] = json!(src);
    let referenced = run(TURBO_FOLDER, with_ref).unwrap();
    assert!(referenced.recipe.reference.is_some());
    assert_ne!(plain.audio, referenced.audio);
}

#[test]
fn lego_on_turbo_says_to_load_the_base_model() {
    let src = source_wav().to_str().unwrap();
    let err = run(TURBO_FOLDER, json!({"task_type": "lego", "src_audio": src, "track_name": "bass"})).unwrap_err();
    assert!(matches!(err, JobError::Request(_)), "{err:?}");
    assert!(err.to_string().contains("needs the base model"), "{err}");
}

#[test]
fn bad_sources_are_typed_errors_naming_the_file() {
    let dir = scratch().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let silent = dir.join("silent.wav");
    write_audio(&silent, &AudioBuffer::silence(48_000, 2, 48_000 * 12), OutputFormat::WavPcm16, true).unwrap();
    let err = run(TURBO_FOLDER, json!({"task_type": "cover", "src_audio": silent})).unwrap_err();
    assert!(matches!(err, JobError::Input(InputError::Silent { .. })), "{err:?}");
    assert!(err.to_string().contains("silent.wav"), "{err}");

    let missing = dir.join("missing.wav");
    let err = run(TURBO_FOLDER, json!({"task_type": "cover", "src_audio": missing})).unwrap_err();
    assert!(matches!(err, JobError::Input(InputError::Unreadable { .. })), "{err:?}");
    assert!(err.to_string().contains("missing.wav"), "{err}");

    let short = dir.join("short.wav");
    write_audio(&short, &AudioBuffer::new(48_000, vec![vec![0.5; 48_000]; 2]), OutputFormat::WavF32, true).unwrap();
    let err = run(TURBO_FOLDER, json!({"task_type": "cover", "src_audio": short})).unwrap_err();
    assert!(matches!(err, JobError::Input(InputError::Length { .. })), "{err:?}");
    assert!(err.to_string().contains("10"), "too short for the model: {err}");
}

#[test]
fn a_job_cancels_within_a_step_and_the_engine_survives_a_failed_job() {
    let request = |steps: u32| {
        let request = json!({"caption": "x", "duration": 10.0, "inference_steps": steps, "seed": 1, "batch_size": 1,
                             "model": BASE_FOLDER});
        JobRequest::new(GenerationRequest::from_value(request).unwrap())
    };

    // Cancel on the second step's report: the job ends before a third model call.
    let job = backend().submit(request(50));
    let mut steps = Vec::new();
    loop {
        match job.events().recv_timeout(Duration::from_secs(120)).expect("events keep coming") {
            JobEvent::Step { index, .. } => {
                steps.push(index);
                if index == 1 {
                    job.cancel();
                }
            }
            JobEvent::Cancelled => break,
            JobEvent::Done(_) => panic!("ran to the end despite the cancel"),
            JobEvent::Failed(e) => panic!("failed: {e}"),
            _ => {}
        }
    }
    assert!(steps.len() <= 3, "stopped within a step of the cancel: {steps:?}");

    // A failing job (a missing source) is reported, and the engine serves the next one.
    let bad = GenerationRequest::from_value(json!({"task_type": "cover", "src_audio": "/nonexistent.wav"})).unwrap();
    match backend().submit(JobRequest::new(bad)).wait() {
        Err(e @ JobError::Input(_)) => assert!(e.to_string().contains("nonexistent.wav"), "{e}"),
        other => panic!("expected an input error, got {:?}", other.map(|_| ())),
    }
    let done = backend().submit(request(2)).wait().expect("the engine keeps serving");
    assert_model_audio(&done.audio, 1, 10.0);
}
