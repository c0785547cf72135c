//! Stage-by-stage parity with upstream ACE-Step 1.5 on tiny random weights. The fixtures come
//! from upstream's own PyTorch modules (`tests/parity/make_fixtures.py`, see
//! `tests/parity/fixtures/README.md`); our candle code loads the same weights and must reproduce
//! every saved intermediate within 1e-4 of its scale.

use backline_engine::model::acestep::{AceStepModel, Condition, SourceInputs};
use backline_engine::model::condition::LyricEncoder;
use backline_engine::sampling::{turbo_schedule, InferMethod, Prediction, RunInputs, SamplerConfig, SamplerKind, SeededNoise, Start, TURBO_STEPS};
use backline_engine::model::config::AceStepConfig;
use backline_engine::kernels::attention::bidirectional_mask;
use backline_engine::model::nn::RotaryEmbedding;
use backline_tests::parity::{
    assert_close, checkpoint_var_builder, fixture_clip_items, fixture_condition_inputs, fixture_path, load_fixture, load_fixture_weights,
};
use candle_core::Device;

fn tiny_config() -> AceStepConfig {
    let json = std::fs::read_to_string(fixture_path("config.json")).expect("fixture config.json");
    AceStepConfig::from_json(&json).expect("upstream's config.json parses")
}

#[test]
fn rotary_tables_match_upstream() {
    let cfg = tiny_config();
    let f = load_fixture("lyric_encoder.safetensors");
    let rope = RotaryEmbedding::for_config(&cfg, &Device::Cpu).unwrap();
    let want_cos = &f["out.rope_cos"]; // (L, head_dim): upstream repeats the half table
    let len = want_cos.dim(0).unwrap();
    let (cos, sin) = rope.tables(len).unwrap();
    let half = cfg.head_dim() / 2;
    assert_close("rope cos", &cos, &want_cos.narrow(1, 0, half).unwrap());
    assert_close("rope cos (second half)", &cos, &want_cos.narrow(1, half, half).unwrap());
    assert_close("rope sin", &sin, &f["out.rope_sin"].narrow(1, 0, half).unwrap());
}

#[test]
fn attention_masks_match_upstream_exactly() {
    let cfg = tiny_config();
    let f = load_fixture("lyric_encoder.safetensors");
    let padding = &f["input.mask"];
    let (batch, len) = padding.dims2().unwrap();
    let full = bidirectional_mask(batch, len, None, Some(padding), &Device::Cpu).unwrap();
    let sliding = bidirectional_mask(batch, len, cfg.sliding_window(), Some(padding), &Device::Cpu).unwrap();
    for (name, got, want) in [("full", full, &f["out.full_mask"]), ("sliding", sliding, &f["out.sliding_mask"])] {
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, want, "{name} mask");
    }
}

#[test]
fn lyric_encoder_matches_upstream_layer_by_layer() {
    let cfg = tiny_config();
    let (f, vb) = load_fixture_weights("lyric_encoder.safetensors");
    let encoder = LyricEncoder::new(&cfg, vb.pp("encoder.lyric_encoder")).expect("weights load");
    let mut trace = Vec::new();
    let out = encoder.forward_traced(&f["input.embeds"], &f["input.mask"], &mut trace).unwrap();
    assert_eq!(trace.len(), cfg.num_hidden_layers.min(cfg.num_lyric_encoder_hidden_layers));
    for (i, layer) in trace.iter().enumerate() {
        assert_close(&format!("lyric layer {i} ({:?})", cfg.layer_type(i)), layer, &f[&format!("out.layer{i}")]);
    }
    assert_close("lyric encoder output", &out, &f["out.final"]);
}

#[test]
fn condition_encoder_matches_upstream() {
    use backline_engine::model::condition::ConditionEncoder;
    let cfg = tiny_config();
    let (f, vb) = load_fixture_weights("condition_encoder.safetensors");
    let encoder = ConditionEncoder::new(&cfg, false, vb.pp("encoder")).expect("weights load");
    let clip_item = fixture_clip_items(&f);

    let (timbre, timbre_mask) = encoder.timbre_encoder().forward(&f["input.refs"], &clip_item).unwrap();
    assert_close("timbre per item", &timbre, &f["out.timbre"]);
    assert_eq!(timbre_mask.to_vec2::<f32>().unwrap(), f["out.timbre_mask"].to_vec2::<f32>().unwrap());

    let inputs = fixture_condition_inputs(&f, "text", &clip_item);
    let (states, mask) = encoder.forward(&inputs).unwrap();
    assert_eq!(mask.to_vec2::<f32>().unwrap(), f["out.mask"].to_vec2::<f32>().unwrap(), "packed mask");
    assert_close("packed condition states", &states, &f["out.states"]);
}

/// The turbo checkpoint's condition, context latents and inputs as the DiT fixture stores them.
fn dit_fixture() -> (AceStepConfig, std::collections::HashMap<String, candle_core::Tensor>, AceStepModel, Condition) {
    let cfg = tiny_config();
    let (f, vb) = load_fixture_weights("dit.safetensors");
    let model = AceStepModel::new(&cfg, vb).expect("weights load");
    let clip_item = fixture_clip_items(&f);
    let inputs = fixture_condition_inputs(&f, "text", &clip_item);
    let source = SourceInputs {
        latents: &f["input.src"],
        chunk_mask: &f["input.chunk_masks"],
        is_cover: &[false, false],
        silence: &f["input.silence"],
    };
    let condition = model.prepare_condition(&inputs, &source).unwrap();
    (cfg, f, model, condition)
}

#[test]
fn dit_forward_matches_upstream_with_condition_and_null_condition() {
    let (_cfg, f, model, condition) = dit_fixture();
    assert_close("packed condition states", &condition.states, &f["out.states"]);
    assert_close("context latents", &condition.context, &f["out.context"]);

    let t = &f["input.t"];
    let kv = model.condition_kv(&condition.states).unwrap();
    let vt = model.decoder.forward(&f["input.xt"], t, t, &condition.context, &kv).unwrap();
    assert_close("DiT velocity (t = 0.7)", &vt, &f["out.vt"]);

    let null_kv = model.condition_kv(&model.null_condition(&condition.states).unwrap()).unwrap();
    let vt_null = model.decoder.forward(&f["input.xt"], t, t, &condition.context, &null_kv).unwrap();
    assert_close("DiT velocity, null condition", &vt_null, &f["out.vt_null"]);
}

#[test]
fn turbo_trajectory_matches_upstream_step_by_step() {
    let (_cfg, f, model, condition) = dit_fixture();
    let schedule = turbo_schedule(TURBO_STEPS, 3.0);
    assert_eq!(schedule[..TURBO_STEPS], f["out.timesteps"].to_vec1::<f32>().unwrap(), "turbo shift-3 timesteps");

    let kv = model.condition_kv(&condition.states).unwrap();
    let batch = condition.context.dim(0).unwrap();
    let sampler = SamplerConfig {
        kind: SamplerKind::Turbo,
        timesteps: schedule,
        method: InferMethod::Ode,
        guidance: None,
        audio_cover_strength: 1.0,
    };
    let mut unused = SeededNoise::new(&[0; 2]);
    let inputs = RunInputs { noise: f["input.noise"].clone(), start: Start::Noise, repaint: None, fresh_noise: &mut unused };
    let target = sampler
        .run(
            inputs,
            |step| {
                let t = candle_core::Tensor::full(step.t, batch, step.x.device())?;
                Ok(Prediction { cond: model.decoder.forward(step.x, &t, &t, &condition.context, &kv)?, uncond: None })
            },
            |step| {
                assert_close(&format!("step {} input", step.index), step.xt, &f[&format!("out.step{}.xt", step.index)]);
                assert_close(&format!("step {} velocity", step.index), step.velocity, &f[&format!("out.step{}.vt", step.index)]);
                Ok(())
            },
        )
        .unwrap();
    assert_close("turbo target latents", &target, &f["out.target"]);
}

#[test]
fn audio_tokenizer_codes_equal_upstream_exactly_and_hints_match() {
    use backline_engine::model::tokenizer::{AudioDetokenizer, AudioTokenizer};
    let cfg = tiny_config();
    let (f, vb) = load_fixture_weights("tokenizer.safetensors");
    let tokenizer = AudioTokenizer::new(&cfg, vb.pp("tokenizer")).expect("tokenizer weights");
    let detokenizer = AudioDetokenizer::new(&cfg, vb.pp("detokenizer")).expect("detokenizer weights");

    let (quantized, indices) = tokenizer.tokenize(&f["input.latents"], &f["input.silence"]).unwrap();
    let want: Vec<Vec<u32>> = f["out.indices"].to_vec2::<i64>().unwrap().iter().map(|r| r.iter().map(|&i| i as u32).collect()).collect();
    assert_eq!(indices.to_vec2::<u32>().unwrap(), want, "FSQ code indices");
    assert_close("quantized states", &quantized, &f["out.quantized"]);

    let from_indices = tokenizer.quantizer().output_from_indices(&indices).unwrap();
    assert_close("states from code indices", &from_indices, &f["out.from_indices"]);
    assert_close("detokenized 25 Hz hints", &detokenizer.forward(&quantized).unwrap(), &f["out.hints"]);
}

/// The DiT fixture's model with the tokenizer fixture's tokenizer and detokenizer weights, and
/// the tokenizer fixture.
fn model_with_fixture_tokenizer() -> (AceStepModel, std::collections::HashMap<String, candle_core::Tensor>) {
    let cfg = tiny_config();
    // The tokenizer fixture's tokenizer and detokenizer weights override the DiT fixture's.
    let vb = checkpoint_var_builder(&["dit.safetensors", "tokenizer.safetensors"]);
    (AceStepModel::new(&cfg, vb).unwrap(), load_fixture("tokenizer.safetensors"))
}

#[test]
fn cover_context_uses_the_fsq_round_trip_of_the_source() {
    let (model, f) = model_with_fixture_tokenizer();
    let source = SourceInputs {
        latents: &f["input.latents"],
        chunk_mask: &f["input.chunk_masks"],
        is_cover: &[false, true],
        silence: &f["input.silence"],
    };
    assert_close("cover context latents", &model.context_latents(&source).unwrap(), &f["out.context"]);
}

#[test]
fn audio_code_text_decodes_to_upstreams_hints() {
    use backline_engine::model::fsq::{format_audio_codes, parse_audio_codes};
    let (model, f) = model_with_fixture_tokenizer();
    let codes: Vec<u32> = f["out.indices"].get(1).unwrap().to_vec1::<i64>().unwrap().iter().map(|&i| i as u32).collect();
    let text = format_audio_codes(&codes);
    let hints = model.hints_from_codes(&parse_audio_codes(&text)).unwrap();
    assert_close("hints from <|audio_code_N|> text", &hints, &f["out.hints"].narrow(0, 1, 1).unwrap());
    assert!(model.hints_from_codes(&[64_000]).is_err(), "a code outside the codebook is an error");
}

#[test]
fn silence_latent_written_by_torch_save_reads_exactly() {
    use backline_engine::checkpoint::torch_pt;
    let got = torch_pt::read_tensor(&fixture_path("silence_latent.pt"), &Device::Cpu).expect("torch.save file reads");
    let want = &load_fixture("silence_latent.safetensors")["out.silence_latent"];
    assert_eq!(got.dims(), want.dims());
    assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
}
