//! Parity of the VAE with diffusers' `AutoencoderOobleck` on tiny random weights (the `vae`
//! stage of `tests/parity/make_fixtures.py`, see `tests/parity/fixtures/README.md`): the
//! posterior, a sample from saved noise and a decode must match within 1e-4 of their scale.

use std::collections::HashMap;

use backline_engine::model::vae::{Conv1d, ConvTranspose1d, Vae, VaeConfig};
use backline_tests::parity::{assert_close, fixture_path, load_fixture_weights, max_abs_error};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

fn tiny_config() -> VaeConfig {
    let json = std::fs::read_to_string(fixture_path("vae_config.json")).expect("fixture vae_config.json");
    VaeConfig::from_json(&json).expect("diffusers' config.json parses")
}

fn tiny_vae() -> (HashMap<String, Tensor>, Vae) {
    let (f, vb) = load_fixture_weights("vae.safetensors");
    let vae = Vae::new(&tiny_config(), vb).expect("weights load");
    (f, vae)
}

#[test]
fn config_reads_diffusers_json_and_the_hop_is_1920() {
    let cfg = tiny_config();
    assert_eq!(cfg.hop_length(), 1920);
    assert_eq!(cfg.sampling_rate, 48000);
    // The shipped `vae/config.json` (reference/model-spec.md §1.5).
    let shipped = r#"{"_class_name": "AutoencoderOobleck", "_diffusers_version": "0.34.0", "audio_channels": 2,
        "channel_multiples": [1,2,4,8,16], "decoder_channels": 128, "decoder_input_channels": 64,
        "downsampling_ratios": [2,4,4,6,10], "encoder_hidden_size": 128, "sampling_rate": 48000}"#;
    let cfg = VaeConfig::from_json(shipped).unwrap();
    assert_eq!((cfg.hop_length(), cfg.latent_channels()), (1920, 64));
}

#[test]
fn encode_matches_diffusers() {
    let (f, vae) = tiny_vae();
    let posterior = vae.encode(&f["input.audio"]).unwrap();
    assert_close("posterior mean", &posterior.mean, &f["out.mean"]);
    assert_close("posterior std", &posterior.std, &f["out.std"]);
    let sample = posterior.sample(&f["input.noise"]).unwrap();
    assert_close("posterior sample", &sample, &f["out.sample"]);
}

#[test]
fn decode_matches_diffusers() {
    let (f, vae) = tiny_vae();
    let audio = vae.decode(&f["input.latents"]).unwrap();
    assert_close("decoded audio", &audio, &f["out.decoded"]);
}

#[test]
fn tiled_decode_matches_untiled_when_the_overlap_covers_the_receptive_field() {
    let (f, vae) = tiny_vae();
    let latents = &f["input.latents"]; // 40 frames
    let whole = vae.decode(latents).unwrap();
    // The decoder sees about 8.3 latent frames either side, so 10 frames of overlap is exact.
    let tiled = vae.decode_tiled(latents, 30, 10).unwrap();
    assert_close("tiled (chunk 30, overlap 10) vs untiled", &tiled, &whole);
    assert_close("tiled (chunk 30, overlap 10) vs diffusers", &tiled, &f["out.decoded"]);
    // Below the receptive field the window edges leak into the kept cores: measured, not a bound.
    let short = vae.decode_tiled(latents, 16, 4).unwrap();
    assert_eq!(short.dims(), whole.dims());
    let (err, scale) = max_abs_error(&short, &whole);
    eprintln!("tiled (chunk 16, overlap 4) vs untiled: max-abs error {err:.3e}, relative {:.3e}", err / scale);
    // Shorter than a chunk: decoded in one piece.
    assert_close("tiled (chunk 64) vs untiled", &vae.decode_tiled(latents, 64, 4).unwrap(), &whole);
    assert!(vae.decode_tiled(latents, 8, 4).is_err(), "a chunk of twice the overlap has no core");
}

#[test]
fn a_misshaped_weight_is_an_error_naming_it() {
    let (mut f, _) = load_fixture_weights("vae.safetensors");
    let name = "decoder.block.2.conv_t1.weight_v";
    let good = f[name].clone();
    let (a, b, k) = good.dims3().unwrap();
    // The in/out swap that a transposed conv invites.
    f.insert(name.to_string(), good.reshape((b, a, k)).unwrap());
    let vb = VarBuilder::from_tensors(f.clone(), DType::F32, &Device::Cpu);
    let err = Vae::new(&tiny_config(), vb).unwrap_err().to_string();
    assert!(err.contains(name), "{err}");

    f.remove("encoder.block.0.res_unit1.snake2.beta");
    let vb = VarBuilder::from_tensors(f, DType::F32, &Device::Cpu);
    let err = Vae::new(&tiny_config(), vb).unwrap_err().to_string();
    assert!(err.contains("encoder.block.0.res_unit1.snake2.beta"), "{err}");
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    // A small LCG keeps this independent of candle's RNG.
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// The GEMM forms of the convolutions against candle's own kernels (correctness only).
#[test]
fn gemm_convolutions_match_candle() {
    // (in, out, kernel, stride, padding, input frames): the decoder's shapes, odd strides, and a
    // kernel that is not a multiple of the stride.
    let shapes = [
        (16, 8, 20, 10, 5, 7),
        (8, 16, 12, 6, 3, 5),
        (16, 8, 4, 2, 1, 33),
        (6, 5, 6, 3, 2, 9),
        (4, 3, 7, 3, 2, 6),
        (5, 4, 3, 1, 1, 10),
    ];
    for (i, &(inp, out, k, s, p, len)) in shapes.iter().enumerate() {
        let w = randn(&[inp, out, k], 10 + i as u64);
        let bias = randn(&[out], 20 + i as u64);
        let x = randn(&[2, inp, len], 30 + i as u64);
        let ours = ConvTranspose1d::new(w.clone(), Some(bias.clone()), s, p).unwrap().forward(&x).unwrap();
        let want = x.conv_transpose1d(&w, p, 0, s, 1, 1).unwrap();
        let want = want.broadcast_add(&bias.reshape((1, out, 1)).unwrap()).unwrap();
        assert_close(&format!("conv_transpose1d in {inp} out {out} k {k} s {s} p {p}"), &ours, &want);
    }
    // (in, out, kernel, stride, padding, dilation, input samples), including a long input that
    // spans several im2col blocks.
    let shapes = [
        (8, 8, 7, 1, 27, 9, 300),
        (8, 6, 1, 1, 0, 1, 50),
        (12, 4, 3, 1, 1, 1, 64),
        (6, 12, 12, 6, 3, 1, 60),
        (64, 32, 7, 1, 3, 1, 5000),
    ];
    for (i, &(inp, out, k, s, p, d, len)) in shapes.iter().enumerate() {
        let w = randn(&[out, inp, k], 40 + i as u64);
        let bias = randn(&[out], 50 + i as u64);
        let x = randn(&[2, inp, len], 60 + i as u64);
        let ours = Conv1d::new(w.clone(), Some(bias.clone()), s, p, d).unwrap().forward(&x).unwrap();
        let want = x.conv1d(&w, p, s, d, 1).unwrap();
        let want = want.broadcast_add(&bias.reshape((1, out, 1)).unwrap()).unwrap();
        assert_close(&format!("conv1d in {inp} out {out} k {k} s {s} p {p} d {d}"), &ours, &want);
    }
}
