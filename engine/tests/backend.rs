//! The `Backend` contract on the tiny synthetic set, as a front end meets it: audio from a file
//! or from memory gives the same result, the request's `model` (or the task) picks the DiT, the
//! model store loads each model once, evicts under its budget and serves two backends, every bad
//! job is a typed error before any model loads, a callback gets the result on the worker, and
//! the 5 Hz LM plans on the worker and stops between tokens when cancelled.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::Duration;

use backline_engine::audio::{write_audio, AudioBuffer, OutputFormat};
use backline_engine::backend::{AudioInput, Backend, JobRequest, LocalBackend, LocalSettings};
use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::checkpoint::{
    DitFolder, LoadAs, TextEncoderFolder, VaeFolder, BASE_FOLDER, TEXT_ENCODER_FOLDER, TURBO_FOLDER, VAE_FOLDER,
};
use backline_engine::precision::Precision;
use backline_engine::error::{InputError, JobError};
use backline_engine::job::JobEvent;
use backline_engine::pipeline::Generation;
use backline_engine::request::{GenerationRequest, ModelKind, RequestError};
use backline_engine::store::{ModelStore, Residency};
use backline_engine::task::TaskType;
use serde_json::{json, Value};

fn scratch() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("backend-tests")
}

/// The tiny set (turbo and base), written once per run.
fn checkpoints() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch().join("checkpoints");
        let _ = std::fs::remove_dir_all(&dir);
        synth::write_set(&dir, SynthSize::Tiny, 5).expect("tiny set");
        dir
    })
}

/// A tiny set without the base model, as after downloading turbo only.
fn turbo_only() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch().join("turbo-only");
        let _ = std::fs::remove_dir_all(&dir);
        synth::write_set(&dir, SynthSize::Tiny, 5).expect("tiny set");
        std::fs::remove_dir_all(dir.join(BASE_FOLDER)).unwrap();
        dir
    })
}

/// A backend on a store of its own.
fn backend_on(root: &Path, budget_bytes: u64) -> LocalBackend {
    LocalBackend::with_store(LocalSettings::cpu(root), ModelStore::new(budget_bytes)).unwrap()
}

fn request(body: Value) -> GenerationRequest {
    GenerationRequest::from_value(body).expect("valid request")
}

/// A quick one-item request.
fn quick(body: Value) -> JobRequest {
    let mut body = body;
    for (key, value) in [("batch_size", json!(1)), ("seed", json!(3)), ("inference_steps", json!(2))] {
        if body.get(key).is_none() {
            body[key] = value;
        }
    }
    JobRequest::new(request(body))
}

/// 12 s at 44.1 kHz mono: a chord with a slow tremolo.
fn chord() -> AudioBuffer {
    let rate = 44_100;
    let samples = (0..12 * rate)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let chord: f32 = [220.0f32, 277.2, 329.6].iter().map(|f| (std::f32::consts::TAU * f * t).sin()).sum();
            0.2 * chord * (1.0 + 0.5 * (std::f32::consts::TAU * 0.5 * t).sin())
        })
        .collect();
    AudioBuffer::new(rate as u32, vec![samples])
}

fn dit_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

#[test]
fn a_source_from_a_file_and_the_same_samples_in_memory_give_identical_audio() {
    let backend = backend_on(checkpoints(), 1 << 30);
    let audio = chord();
    let path = scratch().join("chord.wav");
    std::fs::create_dir_all(scratch()).unwrap();
    write_audio(&path, &audio, OutputFormat::WavF32, true).unwrap();
    let body = json!({"task_type": "cover", "caption": "jazz", "audio_cover_strength": 0.5, "model": TURBO_FOLDER});

    let mut from_file = body.clone();
    from_file["src_audio"] = json!(path);
    let file = backend.submit(quick(from_file)).wait().unwrap();
    let memory = backend.submit(quick(body).with_source(AudioInput::samples("capture, bars 1-6", audio))).wait().unwrap();

    assert_eq!(file.audio, memory.audio, "bit-identical audio");
    let (file_source, memory_source) = (file.recipe.source.unwrap(), memory.recipe.source.unwrap());
    assert_eq!(file_source.audio_sha256, memory_source.audio_sha256);
    assert_eq!(file_source.latents_sha256, memory_source.latents_sha256);
    assert_eq!(memory_source.path, "capture, bars 1-6");
    assert_eq!(file.recipe.request.src_audio.as_deref(), path.to_str(), "a file source can be run again");
    assert_eq!(memory.recipe.request.src_audio, None);
}

#[test]
fn the_store_loads_each_model_once_and_evicts_under_a_small_budget() {
    let root = checkpoints();
    let (turbo, base) = (dit_dir(root, TURBO_FOLDER), dit_dir(root, BASE_FOLDER));
    let how = LoadAs::cpu(Precision::default());
    let bytes = |dir: &Path| ModelStore::dit_bytes(&DitFolder::open(dir).unwrap(), &how).unwrap();
    let text = TextEncoderFolder::open(&root.join(TEXT_ENCODER_FOLDER)).unwrap().footprint().unwrap();
    let shared = text.plus(&VaeFolder::open(&root.join(VAE_FOLDER)).unwrap().footprint().unwrap()).bytes(&how);
    // Room for the text encoder, the VAE and one tiny DiT, not two.
    let budget = shared + bytes(&turbo).max(bytes(&base));
    assert!(budget < shared + bytes(&turbo) + bytes(&base));
    let backend = backend_on(root, budget);
    let store = Arc::clone(backend.store());
    let run = |model: &str| {
        let mut events = Vec::new();
        let handle = backend.submit(quick(json!({"caption": "x", "duration": 10, "model": model})));
        for event in handle.events().iter() {
            if let JobEvent::Loading { what } = &event {
                events.push(what.clone());
            }
            match event {
                JobEvent::Done(_) => break,
                JobEvent::Failed(e) => panic!("{model}: {e}"),
                _ => {}
            }
        }
        events
    };

    assert_eq!(run(TURBO_FOLDER), [TEXT_ENCODER_FOLDER, TURBO_FOLDER, VAE_FOLDER], "each load is reported, in stage order");
    assert!(run(TURBO_FOLDER).is_empty(), "the second job loads nothing");
    assert_eq!(store.load_count(&turbo), 1);

    assert_eq!(run(BASE_FOLDER), [BASE_FOLDER], "the text encoder and VAE stay; only the DiT loads");
    let dits: Vec<_> = store.resident().into_iter().filter_map(|r| r.dit).collect();
    assert_eq!(dits, [ModelKind::Base], "turbo was evicted to make room");
    assert_eq!(run(TURBO_FOLDER), [TURBO_FOLDER]);
    let text_dir = root.join(TEXT_ENCODER_FOLDER);
    assert_eq!((store.load_count(&turbo), store.load_count(&base), store.load_count(&text_dir)), (2, 1, 1));

    // A budget that holds the DiT and the VAE but not the text encoder as well: the encoder is
    // freed after each job's prompts and loads again for the next.
    store.set_budget_bytes(budget - 1);
    assert_eq!(run(TURBO_FOLDER), Vec::<String>::new(), "turbo and the VAE are resident; the encoder goes after this job");
    assert!(!store.resident().iter().any(|r| r.dir == text_dir), "{:?}", store.resident());
    assert_eq!(run(TURBO_FOLDER), [TEXT_ENCODER_FOLDER]);
    assert_eq!(store.load_count(&text_dir), 2);
}

#[test]
fn two_backends_in_one_process_share_the_text_encoder_and_vae() {
    let root = checkpoints();
    let store = ModelStore::new(1 << 30);
    let a = LocalBackend::with_store(LocalSettings::cpu(root), Arc::clone(&store)).unwrap();
    let b = LocalBackend::with_store(LocalSettings::cpu(root), Arc::clone(&store)).unwrap();
    let body = json!({"caption": "x", "duration": 10, "model": TURBO_FOLDER});
    // Both at once, each on its own worker thread.
    let (ja, jb) = (a.submit(quick(body.clone())), b.submit(quick(body)));
    let (ra, rb) = (ja.wait().unwrap(), jb.wait().unwrap());
    assert_eq!(ra.audio, rb.audio);
    assert_eq!(store.load_count(&root.join(TEXT_ENCODER_FOLDER)), 1, "one text encoder for both");
    assert_eq!(store.load_count(&root.join(VAE_FOLDER)), 1, "one VAE for both");
    assert_eq!(store.load_count(&dit_dir(root, TURBO_FOLDER)), 1, "one turbo DiT for both");

    // Backends made without a store share the process's.
    let (p, q) = (LocalBackend::new(LocalSettings::cpu(root)).unwrap(), LocalBackend::new(LocalSettings::cpu(root)).unwrap());
    assert!(Arc::ptr_eq(p.store(), q.store()));
}

#[test]
fn per_stage_residency_keeps_nothing_and_changes_no_sample() {
    let root = checkpoints();
    let body = json!({"caption": "x", "duration": 10, "model": TURBO_FOLDER});
    let kept = backend_on(root, 1 << 30).submit(quick(body.clone())).wait().unwrap();

    let store = ModelStore::new(1 << 30);
    let settings = LocalSettings { residency: Residency::PerStage, ..LocalSettings::cpu(root) };
    let one_shot = LocalBackend::with_store(settings, Arc::clone(&store)).unwrap();
    let out = one_shot.submit(quick(body.clone())).wait().unwrap();
    assert_eq!(out.audio, kept.audio, "bit-identical audio");
    assert!(store.resident().is_empty(), "each model was freed after its stage: {:?}", store.resident());
    one_shot.submit(quick(body)).wait().unwrap();
    for dir in [TEXT_ENCODER_FOLDER, TURBO_FOLDER, VAE_FOLDER] {
        assert_eq!(store.load_count(&root.join(dir)), 2, "{dir} loads for each job");
    }
    assert!(out.recipe.time_costs["model_load_time_cost"] > 0.0, "{:?}", out.recipe.time_costs);
}

#[test]
fn the_task_picks_the_model_when_the_request_names_none() {
    let backend = backend_on(checkpoints(), 1 << 30);
    let source = AudioInput::samples("capture", chord());
    let lego = quick(json!({"task_type": "lego", "track_name": "drums", "repainting_start": 2, "repainting_end": 10}))
        .with_source(source.clone());
    let out = backend.submit(lego).wait().expect("lego runs on base by itself");
    assert_eq!(out.recipe.model_kind, ModelKind::Base);
    assert_eq!(out.recipe.request.model.as_deref(), Some(BASE_FOLDER));

    let loop_ = backend.submit(quick(json!({"caption": "x", "duration": 10}))).wait().unwrap();
    assert_eq!((loop_.recipe.model_kind, loop_.recipe.request.model.as_deref()), (ModelKind::Turbo, Some(TURBO_FOLDER)));
    // A kind's name picks its folder too.
    let named = backend.submit(quick(json!({"caption": "x", "duration": 10, "model": "base"}))).wait().unwrap();
    assert_eq!(named.recipe.model_kind, ModelKind::Base);
}

#[test]
fn bad_jobs_are_typed_errors_before_any_model_loads_and_the_engine_keeps_serving() {
    let backend = backend_on(checkpoints(), 1 << 30);
    let fails = |job: JobRequest| backend.submit(job).wait().map(|_| ()).unwrap_err();
    let capture = |audio: AudioBuffer| quick(json!({"task_type": "cover"})).with_source(AudioInput::samples("capture", audio));

    match fails(quick(json!({"caption": "x", "model": "acestep-v15-xl-turbo"}))) {
        JobError::Request(RequestError::UnknownModel { model, available }) => {
            assert_eq!(model, "acestep-v15-xl-turbo");
            assert_eq!(available, [BASE_FOLDER, TURBO_FOLDER]);
        }
        other => panic!("{other:?}"),
    }
    let turbo_lego = quick(json!({"task_type": "lego", "track_name": "bass", "model": TURBO_FOLDER}))
        .with_source(AudioInput::samples("capture", chord()));
    assert!(matches!(fails(turbo_lego), JobError::Request(RequestError::TaskNeedsBaseModel { task: TaskType::Lego, .. })));
    assert!(matches!(fails(capture(AudioBuffer::new(48_000, vec![vec![], vec![]]))), JobError::Input(InputError::Empty { .. })));
    let mut nan = chord();
    nan.channels[0][1000] = f32::NAN;
    assert!(matches!(fails(capture(nan)), JobError::Input(InputError::NotFinite { .. })));
    let no_rate = AudioBuffer::new(0, chord().channels);
    match fails(capture(no_rate)) {
        e @ JobError::Input(InputError::Malformed { .. }) => assert!(e.to_string().contains("0 Hz"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(fails(quick(json!({"task_type": "cover"}))), JobError::Request(RequestError::Invalid { .. })));
    assert!(backend.store().resident().is_empty(), "nothing loaded for a bad job");

    // Lego with no base folder names the folder to download.
    let turbo_only = backend_on(turbo_only(), 1 << 30);
    let lego = quick(json!({"task_type": "lego", "track_name": "bass"})).with_source(AudioInput::samples("capture", chord()));
    match turbo_only.submit(lego).wait().map(|_| ()).unwrap_err() {
        e @ JobError::Request(RequestError::ModelNotDownloaded { folder: BASE_FOLDER, .. }) => {
            assert!(e.to_string().contains("download"), "{e}")
        }
        other => panic!("{other:?}"),
    }

    // A budget smaller than one DiT.
    let tight = backend_on(checkpoints(), 1000);
    match tight.submit(quick(json!({"caption": "x"}))).wait().map(|_| ()).unwrap_err() {
        JobError::MemoryBudget { model, budget_bytes: 1000, needed_bytes } => {
            assert_eq!(model, TURBO_FOLDER);
            assert!(needed_bytes > 1000);
        }
        other => panic!("{other:?}"),
    }
    assert!(tight.store().resident().is_empty());

    // The engine serves the next job.
    backend.submit(quick(json!({"caption": "x", "duration": 10}))).wait().expect("a good job runs after bad ones");
}

#[test]
fn a_callback_gets_every_event_and_the_result_on_the_worker() {
    let backend = backend_on(checkpoints(), 1 << 30);
    let (tx, rx) = mpsc::channel();
    let control = backend.submit_with(
        quick(json!({"caption": "x", "duration": 10})),
        Box::new(move |event: JobEvent<Generation>| {
            let thread = thread::current().name().map(str::to_string);
            let _ = tx.send((thread, event.is_terminal(), matches!(event, JobEvent::Done(_))));
        }),
    );
    assert!(control.id().0 > 0);
    let mut events = Vec::new();
    loop {
        let event = rx.recv_timeout(Duration::from_secs(120)).expect("the callback keeps hearing events");
        let terminal = event.1;
        events.push(event);
        if terminal {
            break;
        }
    }
    assert!(events.len() > 3, "queued, started, loads, stages and steps: {}", events.len());
    let (thread, _, done) = events.last().unwrap();
    assert!(done, "the job finished");
    assert_eq!(thread.as_deref(), Some(backline_engine::job::THREAD_NAME), "the result is handled on the worker");
}

#[test]
fn models_say_what_the_folder_holds_and_what_is_loaded() {
    let backend = backend_on(checkpoints(), 1 << 30);
    let info = backend.models().unwrap();
    let names: Vec<&str> = info.dits.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, [BASE_FOLDER, TURBO_FOLDER]);
    let turbo = &info.dits[1];
    assert_eq!(turbo.kind, Some(ModelKind::Turbo));
    assert_eq!(turbo.tasks, [TaskType::Text2Music, TaskType::Repaint, TaskType::Cover]);
    assert_eq!(info.dits[0].tasks.len(), 6, "base runs every task");
    assert!(turbo.bytes > 0 && !turbo.loaded && info.shared_problem.is_none());
    assert_eq!(info.budget_bytes, 1 << 30);

    backend.submit(quick(json!({"caption": "x", "duration": 10}))).wait().unwrap();
    let info = backend.models().unwrap();
    assert!(info.dits[1].loaded && !info.dits[0].loaded);
    assert_eq!(info.resident.len(), 3, "turbo, the text encoder and the VAE");

    let missing = backend_on(&scratch().join("no-such-folder"), 1 << 30);
    let err = missing.models().unwrap_err();
    assert!(matches!(err, JobError::Checkpoint(_)) && err.to_string().contains("no-such-folder"), "{err}");
}

/// The 5 Hz LM through the contract: `thinking` writes the codes on the worker (their own
/// stage), sample mode writes the request first, a cancel stops the LM between tokens, and
/// `describe` answers on the caller's thread.
#[test]
fn the_lm_plans_on_the_worker_and_a_cancel_stops_it_between_tokens() {
    let backend = backend_on(checkpoints(), 1 << 30);
    let metas = json!({"caption": "lofi", "bpm": 90, "keyscale": "A minor", "timesignature": "4", "duration": 10, "thinking": true});
    let handle = backend.submit(quick(metas));
    let mut stages = Vec::new();
    let generation = loop {
        match handle.events().recv_timeout(Duration::from_secs(300)).expect("events") {
            JobEvent::Stage { name } => stages.push(name),
            JobEvent::Done(generation) => break generation,
            JobEvent::Failed(e) => panic!("{e}"),
            _ => {}
        }
    };
    let at = |name: &str| stages.iter().position(|s| s == name);
    assert!(at("lm").is_some() && at("lm") < at("text"), "the LM writes its codes before the DiT's stages: {stages:?}");
    let lm = generation.recipe.lm.expect("the LM's report");
    assert_eq!(lm.audio_codes[0].matches("<|audio_code_").count(), 50, "10 s of codes");

    // Sample mode: the tiny LM's caption is noise to its token limit, so the LM is still writing
    // when the cancel comes.
    let handle = backend.submit(quick(json!({"sample_query": "a sad waltz", "duration": 10})));
    let mut steps = 0;
    let result = loop {
        match handle.events().recv_timeout(Duration::from_secs(300)).expect("events") {
            JobEvent::Step { .. } => {
                steps += 1;
                if steps == 20 {
                    handle.cancel();
                }
            }
            JobEvent::Done(_) => break Ok(()),
            JobEvent::Failed(e) => break Err(e),
            JobEvent::Cancelled => break Err(JobError::Cancelled),
            _ => {}
        }
    };
    assert!(matches!(result, Err(JobError::Cancelled)), "{result:?}");
    assert!(backend.submit(quick(json!({"caption": "after", "duration": 10}))).wait().is_ok(), "the engine keeps serving");

    use backline_engine::backend::{DescribeMode, DescribeRequest};
    let asked = DescribeRequest {
        mode: DescribeMode::Understand { audio_codes: String::new() },
        sampling: backline_engine::lm::sample::Sampling::default(),
        seed: 1,
    };
    let refused = backend.describe(&asked, &std::sync::atomic::AtomicBool::new(false)).unwrap_err();
    assert!(refused.to_string().contains("needs audio codes"), "{refused}");
}
