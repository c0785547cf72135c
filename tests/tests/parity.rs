//! Stage-by-stage parity with upstream ACE-Step 1.5 on tiny random weights. The fixtures come
//! from upstream's own PyTorch modules (`tests/parity/make_fixtures.py`, see
//! `tests/parity/fixtures/README.md`); our candle code loads the same weights and must reproduce
//! every saved intermediate within 1e-4 of its scale.

use backline_engine::model::acestep::{AceStepModel, Condition};
use backline_engine::model::condition::{ConditionInputs, LyricEncoder};
use backline_engine::sampling::{euler_ode, shifted_schedule, TURBO_STEPS};
use backline_engine::model::config::AceStepConfig;
use backline_engine::model::nn::{bidirectional_mask, RotaryEmbedding};
use backline_tests::parity::{assert_close, fixture_path, load_fixture, load_fixture_weights};
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
    let encoder = ConditionEncoder::new(&cfg, vb.pp("encoder")).expect("weights load");
    let clip_item: Vec<usize> = f["input.order"].to_vec1::<f32>().unwrap().iter().map(|&i| i as usize).collect();

    let (timbre, timbre_mask) = encoder.timbre_encoder().forward(&f["input.refs"], &clip_item).unwrap();
    assert_close("timbre per item", &timbre, &f["out.timbre"]);
    assert_eq!(timbre_mask.to_vec2::<f32>().unwrap(), f["out.timbre_mask"].to_vec2::<f32>().unwrap());

    let inputs = ConditionInputs {
        text: &f["input.text"],
        text_mask: &f["input.text_mask"],
        lyrics: &f["input.lyric"],
        lyric_mask: &f["input.lyric_mask"],
        reference_clips: &f["input.refs"],
        clip_item: &clip_item,
    };
    let (states, mask) = encoder.forward(&inputs).unwrap();
    assert_eq!(mask.to_vec2::<f32>().unwrap(), f["out.mask"].to_vec2::<f32>().unwrap(), "packed mask");
    assert_close("packed condition states", &states, &f["out.states"]);
}

/// The turbo checkpoint's condition, context latents and inputs as the DiT fixture stores them.
fn dit_fixture() -> (AceStepConfig, std::collections::HashMap<String, candle_core::Tensor>, AceStepModel, Condition) {
    let cfg = tiny_config();
    let (f, vb) = load_fixture_weights("dit.safetensors");
    let model = AceStepModel::new(&cfg, vb).expect("weights load");
    let clip_item: Vec<usize> = f["input.order"].to_vec1::<f32>().unwrap().iter().map(|&i| i as usize).collect();
    let inputs = ConditionInputs {
        text: &f["input.text"],
        text_mask: &f["input.text_mask"],
        lyrics: &f["input.lyric"],
        lyric_mask: &f["input.lyric_mask"],
        reference_clips: &f["input.refs"],
        clip_item: &clip_item,
    };
    let condition = model.prepare_condition(&inputs, &f["input.src"], &f["input.chunk_masks"]).unwrap();
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
    let schedule = shifted_schedule(TURBO_STEPS, 3.0);
    assert_eq!(schedule, f["out.timesteps"].to_vec1::<f32>().unwrap(), "turbo shift-3 timesteps");

    let kv = model.condition_kv(&condition.states).unwrap();
    let batch = condition.context.dim(0).unwrap();
    let target = euler_ode(
        f["input.noise"].clone(),
        &schedule,
        |x, t| {
            let t = candle_core::Tensor::full(t, batch, x.device())?;
            model.decoder.forward(x, &t, &t, &condition.context, &kv)
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
