//! Checkpoint folders: the synthetic tiny set loads, and every kind of bad folder is a clear error
//! naming what is wrong and where.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use backline_engine::checkpoint::synth::{self, SynthSize};
use backline_engine::checkpoint::{torch_pt, CheckpointError, DitFolder, LoadAs, TURBO_FOLDER};
use backline_engine::precision::Precision;
use candle_core::{DType, Device, Tensor};

/// A fresh directory under the target dir, removed first if it exists.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("checkpoint-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny_turbo(name: &str) -> PathBuf {
    let dir = scratch(name).join(TURBO_FOLDER);
    synth::write_dit_folder(&dir, &synth::dit_config_json(SynthSize::Tiny, true), DType::F32, 7, 100).unwrap();
    dir
}

fn weights(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn save_weights(dir: &Path, tensors: &HashMap<String, Tensor>) {
    candle_core::safetensors::save(tensors, dir.join("model.safetensors")).unwrap();
}

#[test]
fn tiny_dit_folder_loads_and_runs() {
    let dir = tiny_turbo("loads");
    let folder = DitFolder::open(&dir).unwrap();
    assert!(folder.is_turbo());
    assert_eq!(folder.weights.tensors.len(), 138, "the tiny model has upstream's 138 tensors");
    folder.validate().unwrap();
    let loaded = folder.load(&LoadAs::cpu(Precision::F32)).unwrap();
    assert_eq!(loaded.silence_latent.dims(), [1, 100, 64]);

    // One DiT forward on the loaded weights gives finite velocities.
    let model = &loaded.model;
    let (b, t) = (1, 10);
    let x = Tensor::randn(0f32, 1., (b, t, 64), &Device::Cpu).unwrap();
    let context = Tensor::randn(0f32, 1., (b, t, 128), &Device::Cpu).unwrap();
    let states = Tensor::randn(0f32, 1., (b, 6, 64), &Device::Cpu).unwrap();
    let kv = model.condition_kv(&states).unwrap();
    let time = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
    let v = model.decoder.forward(&x, &time, &time, &context, &kv).unwrap();
    let v: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0));
}

#[test]
fn synthetic_weights_are_deterministic_from_the_seed() {
    let a = tiny_turbo("seed-a");
    let b = tiny_turbo("seed-b");
    let read = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(read(&a), read(&b));
    let c = scratch("seed-c").join(TURBO_FOLDER);
    synth::write_dit_folder(&c, &synth::dit_config_json(SynthSize::Tiny, true), DType::F32, 8, 100).unwrap();
    assert_ne!(read(&a), read(&c));
}

#[test]
fn bf16_and_f32_files_load_to_the_same_model() {
    let f32_dir = tiny_turbo("f32");
    let bf16_dir = scratch("bf16").join(TURBO_FOLDER);
    synth::write_dit_folder(&bf16_dir, &synth::dit_config_json(SynthSize::Tiny, true), DType::BF16, 7, 100).unwrap();
    let a = weights(&f32_dir);
    let b = weights(&bf16_dir);
    assert_eq!(b["decoder.norm_out.weight"].dtype(), DType::BF16);
    let loaded = DitFolder::open(&bf16_dir).unwrap().load(&LoadAs::cpu(Precision::F32)).unwrap();
    drop(loaded);
    for (name, want) in &a {
        let got = b[name].to_dtype(DType::F32).unwrap();
        let diff: f32 = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
        let scale: f32 = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
        assert!(diff <= scale / 128.0, "{name}: bf16 differs from f32 by {diff} (scale {scale})");
    }
}

#[test]
fn a_missing_tensor_is_named_with_its_file() {
    let dir = tiny_turbo("missing");
    let mut w = weights(&dir);
    w.remove("decoder.layers.1.cross_attn.k_norm.weight");
    save_weights(&dir, &w);
    let err = DitFolder::open(&dir).unwrap().validate().unwrap_err();
    assert!(matches!(err, CheckpointError::MissingTensor { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("decoder.layers.1.cross_attn.k_norm.weight") && text.contains("model.safetensors"), "{text}");
}

#[test]
fn a_misshaped_tensor_is_named_with_both_shapes() {
    let dir = tiny_turbo("shape");
    let mut w = weights(&dir);
    w.insert("decoder.proj_out.1.bias".into(), Tensor::zeros(63, DType::F32, &Device::Cpu).unwrap());
    save_weights(&dir, &w);
    let err = DitFolder::open(&dir).unwrap().load(&LoadAs::cpu(Precision::F32)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CheckpointError::WrongShape { .. }), "{text}");
    assert!(text.contains("decoder.proj_out.1.bias") && text.contains("[63]") && text.contains("[64]"), "{text}");
}

#[test]
fn an_integer_tensor_is_a_type_error() {
    let dir = tiny_turbo("dtype");
    let mut w = weights(&dir);
    w.insert("null_condition_emb".into(), Tensor::zeros((1, 1, 64), DType::I64, &Device::Cpu).unwrap());
    save_weights(&dir, &w);
    let err = DitFolder::open(&dir).unwrap().validate().unwrap_err();
    assert!(matches!(err, CheckpointError::WrongType { .. }), "{err}");
    assert!(err.to_string().contains("null_condition_emb") && err.to_string().contains("I64"), "{err}");
}

#[test]
fn a_truncated_weight_file_is_reported_before_loading() {
    let dir = tiny_turbo("truncated");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    for keep in [bytes.len() - 1000, 5000, 100, 3] {
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let err = DitFolder::open(&dir).unwrap_err();
        assert!(matches!(err, CheckpointError::Malformed { .. }), "{keep} bytes: {err}");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
}

#[test]
fn a_folder_of_another_model_is_refused_by_its_config() {
    let dir = scratch("wrong-model");
    std::fs::write(dir.join("config.json"), r#"{"_class_name": "AutoencoderOobleck", "encoder_hidden_size": 128}"#).unwrap();
    let err = DitFolder::open(&dir).unwrap_err();
    assert!(matches!(err, CheckpointError::WrongModel { .. }), "{err}");
    assert!(err.to_string().contains("not an ACE-Step 1.5 DiT config"), "{err}");

    let empty = scratch("empty");
    let err = DitFolder::open(&empty).unwrap_err();
    assert!(matches!(err, CheckpointError::MissingFile { .. }), "{err}");
}

#[test]
fn a_missing_or_corrupt_silence_latent_is_an_error() {
    let dir = tiny_turbo("silence");
    std::fs::write(dir.join("silence_latent.pt"), b"not a zip").unwrap();
    let err = DitFolder::open(&dir).unwrap().validate().unwrap_err();
    assert!(err.to_string().contains("silence_latent.pt"), "{err}");
    std::fs::remove_file(dir.join("silence_latent.pt")).unwrap();
    assert!(matches!(DitFolder::open(&dir).unwrap_err(), CheckpointError::MissingFile { .. }));
}

#[test]
fn torch_tensor_files_round_trip() {
    let dir = scratch("pt");
    let path = dir.join("silence_latent.pt");
    let t = Tensor::arange(0f32, 24., &Device::Cpu).unwrap().reshape((1, 4, 6)).unwrap();
    torch_pt::write_tensor(&path, &t).unwrap();
    let back = torch_pt::read_tensor(&path, &Device::Cpu).unwrap();
    assert_eq!(back.dims(), [1, 4, 6]);
    assert_eq!(back.flatten_all().unwrap().to_vec1::<f32>().unwrap(), (0..24).map(|i| i as f32).collect::<Vec<_>>());
}

/// A bf16 text encoder (as published) keeps its embedding table at that width in memory; the rows
/// it gathers for a prompt are the stored rows widened exactly, and the forward runs in f32.
#[test]
fn a_bf16_embedding_table_gives_the_stored_rows_in_f32() {
    use backline_engine::checkpoint::TextEncoderFolder;
    let dir = scratch("bf16-text-encoder");
    synth::write_text_encoder_folder(&dir, &synth::text_encoder_config_json(SynthSize::Tiny), DType::BF16, 5).unwrap();
    let folder = TextEncoderFolder::open(&dir).unwrap();
    let (encoder, tokenizer) = folder.load(&LoadAs::cpu(Precision::F32)).unwrap();
    let ids = tokenizer.encode("[verse]\nneon rain on the window", 64).unwrap();
    let ids = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();

    let table = &candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()["embed_tokens.weight"];
    assert_eq!(table.dtype(), DType::BF16);
    let rows = encoder.embed(&ids).unwrap();
    assert_eq!(rows.dtype(), DType::F32);
    let want = table.to_dtype(DType::F32).unwrap().index_select(&ids.squeeze(0).unwrap(), 0).unwrap();
    assert_eq!(rows.squeeze(0).unwrap().to_vec2::<f32>().unwrap(), want.to_vec2::<f32>().unwrap());
    assert_eq!(encoder.encode(&ids).unwrap().dtype(), DType::F32);
}

#[test]
fn the_tiny_set_writes_every_folder_and_each_loads() {
    use backline_engine::checkpoint::{TextEncoderFolder, VaeFolder, BASE_FOLDER, TEXT_ENCODER_FOLDER, VAE_FOLDER};
    let root = scratch("tiny-set");
    let report = synth::write_set(&root, SynthSize::Tiny, 1).unwrap();
    let total: u64 = report.folders.iter().map(|(_, bytes)| bytes).sum();
    // The 5 Hz LM has the published 217,204-token vocabulary, so its embedding is most of it.
    assert!(total < 32 << 20, "the tiny set stays small: {total} bytes");
    let lm = backline_engine::checkpoint::LmFolder::open(&root.join(backline_engine::checkpoint::LM_FOLDERS[0])).unwrap();
    lm.validate().unwrap();
    assert!(backline_engine::checkpoint::LmFolder::open(&root.join(TEXT_ENCODER_FOLDER)).is_err(), "the text encoder is not an LM");

    let base = DitFolder::open(&root.join(BASE_FOLDER)).unwrap();
    assert!(!base.is_turbo());
    base.validate().unwrap();

    let vae_folder = VaeFolder::open(&root.join(VAE_FOLDER)).unwrap();
    assert_eq!(vae_folder.config.hop_length(), 1920, "the tiny VAE keeps the real strides");
    let vae = vae_folder.load(&LoadAs::cpu(Precision::F32)).unwrap();
    let latents = Tensor::randn(0f32, 1., (1, 64, 4), &Device::Cpu).unwrap();
    let audio = vae.decode(&latents).unwrap();
    assert_eq!(audio.dims(), [1, 2, 4 * 1920]);
    let peak: f32 = audio.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
    assert!(peak.is_finite() && peak > 0.0, "decoded peak {peak}");
    let posterior = vae.encode(&audio).unwrap();
    assert_eq!(posterior.mean.dims(), [1, 64, 4]);

    let text_folder = TextEncoderFolder::open(&root.join(TEXT_ENCODER_FOLDER)).unwrap();
    let (text_encoder, tokenizer) = text_folder.load(&LoadAs::cpu(Precision::F32)).unwrap();
    let ids = tokenizer.encode("lo-fi hip hop, dusty drums", 256).unwrap();
    assert_eq!(ids.last(), Some(&tokenizer.pad_id()), "prompts end with <|endoftext|>");
    let ids = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let hidden = text_encoder.encode(&ids).unwrap();
    assert_eq!(hidden.dim(2).unwrap(), base.config.text_hidden_dim, "the text encoder feeds the DiT's text projector");

    // Each kind of folder refuses the others.
    assert!(matches!(TextEncoderFolder::open(&root.join(VAE_FOLDER)), Err(CheckpointError::WrongModel { .. })));
    assert!(matches!(TextEncoderFolder::open(&root.join(TURBO_FOLDER)), Err(CheckpointError::WrongModel { .. })));
    assert!(matches!(DitFolder::open(&root.join(TEXT_ENCODER_FOLDER)), Err(CheckpointError::WrongModel { .. })));
    assert!(matches!(VaeFolder::open(&root.join(TURBO_FOLDER)), Err(CheckpointError::WrongModel { .. })));
    assert!(matches!(DitFolder::open(&root.join(VAE_FOLDER)), Err(CheckpointError::WrongModel { .. })));
}

/// The tiled VAE encode equals one pass: 4.8 s of audio (plus a partial hop, which one pass
/// drops as its last frame) in windows of 40 frames with 8 frames of context, through the tiny
/// VAE's real strides. Each tile is announced, and a stop in the callback stops it.
#[test]
fn tiled_vae_encode_equals_one_pass() {
    use backline_engine::checkpoint::VaeFolder;
    let dir = scratch("vae-tiles").join("vae");
    synth::write_vae_folder(&dir, &synth::vae_config_json(SynthSize::Tiny), DType::F32, 3).unwrap();
    let vae = VaeFolder::open(&dir).unwrap().load(&LoadAs::cpu(Precision::F32)).unwrap();
    let hop = vae.config().hop_length();
    let samples = 120 * hop + 777;
    let audio: Vec<f32> = (0..2 * samples).map(|i| (i as f32 * 0.0137).sin() * 0.5 + (i as f32 * 0.31).cos() * 0.1).collect();
    let audio = Tensor::from_vec(audio, (1, 2, samples), &Device::Cpu).unwrap();

    let whole = vae.encode(&audio).unwrap();
    let mut seen = Vec::new();
    let tiled = vae
        .encode_tiles(&audio, 40, 8, |tile, count| {
            seen.push((tile, count));
            Ok(())
        })
        .unwrap();
    assert_eq!(whole.mean.dims(), [1, vae.config().latent_channels(), 120]);
    assert_eq!(tiled.mean.dims(), whole.mean.dims());
    assert_eq!(seen, (0..5).map(|t| (t, 5)).collect::<Vec<_>>(), "120 frames in cores of 24");
    for (what, a, b) in [("mean", &tiled.mean, &whole.mean), ("std", &tiled.std, &whole.std)] {
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let error = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(error <= 1e-5 * scale, "{what}: max error {error} of {scale}");
    }

    // Too little context leaks the window edges into the cores: the overlap is what makes it exact.
    let leaky = vae.encode_tiles(&audio, 40, 1, |_, _| Ok(())).unwrap();
    let error = (&leaky.mean - &whole.mean).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(error > 1e-4, "one frame of context is not enough: {error}");

    let stopped = vae.encode_tiles(&audio, 40, 8, |tile, _| if tile == 2 { candle_core::bail!("stop") } else { Ok(()) });
    assert!(stopped.is_err());
    assert!(vae.encode_tiles(&audio, 16, 8, |_, _| Ok(())).is_err(), "a chunk of twice the overlap has no core");
}

/// rms(got - want) / rms(want).
fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(g, w)| ((g - w) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|w| (*w as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn each_precision_runs_bf16_weights_within_its_error_and_memory() {
    let dir = scratch("precision").join(TURBO_FOLDER);
    synth::write_dit_folder(&dir, &synth::dit_config_json(SynthSize::Tiny, true), DType::BF16, 7, 100).unwrap();
    let folder = DitFolder::open(&dir).unwrap();
    let (b, t) = (1, 10);
    let x = Tensor::randn(0f32, 1., (b, t, 64), &Device::Cpu).unwrap();
    let context = Tensor::randn(0f32, 1., (b, t, 128), &Device::Cpu).unwrap();
    let states = Tensor::randn(0f32, 1., (b, 6, 64), &Device::Cpu).unwrap();
    let time = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
    let velocity = |precision: Precision| -> (Vec<f32>, u64) {
        let how = LoadAs::cpu(precision);
        let model = folder.load(&how).unwrap().model;
        let kv = model.condition_kv(&states).unwrap();
        let v = model.decoder.forward(&x, &time, &time, &context, &kv).unwrap();
        (v.flatten_all().unwrap().to_vec1().unwrap(), folder.footprint().unwrap().bytes(&how))
    };
    let (want, f32_bytes) = velocity(Precision::F32);
    // bf16 is the file's own values: the same velocity up to the order of the sums.
    for (precision, max_error, max_share) in [(Precision::Bf16, 1e-5, 0.55), (Precision::Q8, 0.03, 0.35), (Precision::Q4, 0.3, 0.25)] {
        let (got, bytes) = velocity(precision);
        let error = relative_error(&got, &want);
        assert!(error <= max_error, "{precision}: velocity differs from f32 by {error:.2e}");
        let share = bytes as f64 / f32_bytes as f64;
        assert!(share <= max_share, "{precision}: {bytes} bytes resident, {share:.2} of f32's {f32_bytes}");
        if precision != Precision::Bf16 {
            assert!(error > 1e-6, "{precision}: quantized weights cannot give f32's velocity exactly");
        }
    }
}

/// One DiT velocity of `model` for a (1, 10)-frame input and 6 condition states of `width`.
fn one_velocity(model: &backline_engine::model::acestep::AceStepModel, width: usize) -> Vec<f32> {
    let (b, t, latent) = (1, 10, model.config.audio_acoustic_hidden_dim);
    let x = Tensor::randn(0f32, 1., (b, t, latent), &Device::Cpu).unwrap();
    let context = Tensor::randn(0f32, 1., (b, t, 2 * latent), &Device::Cpu).unwrap();
    let states = Tensor::randn(0f32, 1., (b, 6, width), &Device::Cpu).unwrap();
    let kv = model.condition_kv(&states).unwrap();
    let time = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
    let v = model.decoder.forward(&x, &time, &time, &context, &kv).unwrap();
    assert_eq!(v.dims(), [b, t, latent]);
    v.flatten_all().unwrap().to_vec1().unwrap()
}

fn tiny_xl(name: &str) -> PathBuf {
    synth::write_xl_turbo(&scratch(name), SynthSize::Tiny, 9).unwrap().0
}

#[test]
fn tiny_xl_folder_loads_and_runs() {
    let dir = tiny_xl("xl-loads");
    let folder = DitFolder::open(&dir).unwrap();
    assert!(folder.config.is_xl());
    assert_eq!(folder.model_kind(), backline_engine::task::ModelKind::Turbo);
    // The 2B tiny model's 138 tensors and the third decoder layer's 19.
    assert_eq!(folder.weights.tensors.len(), 138 + 19);
    assert_eq!(weights(&dir)["decoder.condition_embedder.weight"].dims(), [80, 64], "condition width 64 into the 80-wide decoder");
    folder.validate().unwrap();
    let model = folder.load(&LoadAs::cpu(Precision::F32)).unwrap().model;
    let v = one_velocity(&model, folder.config.condition_width());
    assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0));
}

#[test]
fn an_xl_folder_with_a_2b_shaped_tensor_is_named() {
    let dir = tiny_xl("xl-shape");
    let mut w = weights(&dir);
    // A condition projection as the 2B model has it: square at the decoder width.
    w.insert("decoder.condition_embedder.weight".into(), Tensor::zeros((80, 80), DType::F32, &Device::Cpu).unwrap());
    save_weights(&dir, &w);
    let err = DitFolder::open(&dir).unwrap().validate().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CheckpointError::WrongShape { .. }), "{text}");
    assert!(text.contains("decoder.condition_embedder.weight") && text.contains("[80, 80]") && text.contains("[80, 64]"), "{text}");

    let dir = tiny_xl("xl-missing");
    let mut w = weights(&dir);
    w.remove("encoder.timbre_encoder.special_token");
    save_weights(&dir, &w);
    let err = DitFolder::open(&dir).unwrap().validate().unwrap_err();
    assert!(matches!(err, CheckpointError::MissingTensor { .. }) && err.to_string().contains("encoder.timbre_encoder.special_token"), "{err}");
}

/// The XL turbo DiT at its published shapes, written once by `cargo xtask synth-checkpoint
/// target/synth-xl --xl` (about 16 GB, f32 as published; not in CI): it validates, its file is the
/// published size, and it loads as q8 and runs one forward. `BACKLINE_XL_DIR` overrides the folder.
/// Run by hand as `docs/benchmarks.md` (section "XL at the published shapes") says.
#[test]
#[ignore = "needs the 20 GB folder from `cargo xtask synth-checkpoint target/synth-xl --xl`; run by hand as docs/benchmarks.md (XL at the published shapes) says"]
fn published_xl_shapes_load_and_run() {
    let dir = std::env::var_os("BACKLINE_XL_DIR").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/synth-xl").join(synth::XL_TURBO_FOLDER)
    });
    let folder = DitFolder::open(&dir).unwrap_or_else(|e| panic!("{e}: run `cargo xtask synth-checkpoint target/synth-xl --xl`"));
    assert!(folder.config.is_xl());
    assert_eq!((folder.config.hidden_size, folder.config.condition_width(), folder.config.num_hidden_layers), (2560, 2048, 32));
    folder.validate().unwrap();
    // The published XL files hold about 19.9 GB of f32 (model-spec.md section 1.3).
    let params = folder.weights.parameter_count() as f64;
    eprintln!("XL parameters: {params:.4e} ({:.2} GB as f32)", params * 4.0 / 1e9);
    assert!((params * 4.0 / 19.9e9 - 1.0).abs() < 0.02, "{params} parameters is not the published XL's size");

    for precision in Precision::ALL {
        let bytes = folder.footprint().unwrap().bytes(&LoadAs::cpu(precision));
        eprintln!("XL weights resident at {precision}: {:.2} GB", bytes as f64 / 1e9);
    }
    let started = std::time::Instant::now();
    let how = LoadAs::cpu(Precision::Q8);
    let model = folder.load(&how).unwrap().model;
    eprintln!("XL loaded as q8 in {:.1} s, {:.2} GB resident weights", started.elapsed().as_secs_f64(), folder.footprint().unwrap().bytes(&how) as f64 / 1e9);
    let started = std::time::Instant::now();
    let v = one_velocity(&model, folder.config.condition_width());
    eprintln!("one XL forward of 10 frames in {:.2} s", started.elapsed().as_secs_f64());
    assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0));
}
