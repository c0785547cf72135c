//! ACE-Step 1.5 XL against upstream's `xl_turbo` code (fixture stage `xl`): a tiny XL model whose
//! decoder (80 wide, 8 query heads of 16) is wider than its condition encoder, tokenizer and
//! detokenizer (64 wide), as XL's 2560-wide decoder sits over the 2B encoder's 2048. The packed
//! condition (timbre read through XL's summary token), the context latents with a cover item,
//! one velocity and the 8-step turbo result must match within 1e-4 of their scale.

use std::collections::HashMap;

use backline_engine::model::acestep::{AceStepModel, Condition, SourceInputs};
use backline_engine::model::condition::ConditionEncoder;
use backline_engine::model::config::AceStepConfig;
use backline_engine::sampling::{turbo_schedule, InferMethod, Prediction, RunInputs, SamplerConfig, SamplerKind, SeededNoise, Start, TURBO_STEPS};
use backline_tests::parity::{
    assert_close, checkpoint_var_builder, fixture_clip_items, fixture_condition_inputs, fixture_path, load_fixture, max_abs_error,
};
use candle_core::Tensor;

type Tensors = HashMap<String, Tensor>;

fn xl_config() -> AceStepConfig {
    let json = std::fs::read_to_string(fixture_path("xl_config.json")).expect("fixture xl_config.json");
    AceStepConfig::from_json(&json).expect("upstream's XL config.json parses")
}

fn condition(model: &AceStepModel, f: &Tensors) -> Condition {
    let clip_item = fixture_clip_items(f);
    let is_cover: Vec<bool> = f["input.is_covers"].to_vec1::<f32>().unwrap().iter().map(|&c| c != 0.0).collect();
    let inputs = fixture_condition_inputs(f, "text", &clip_item);
    let source = SourceInputs {
        latents: &f["input.src"],
        chunk_mask: &f["input.chunk_masks"],
        is_cover: &is_cover,
        silence: &f["input.silence"],
    };
    model.prepare_condition(&inputs, &source).unwrap()
}

#[test]
fn xl_config_reads_the_encoder_widths() {
    let cfg = xl_config();
    assert!(cfg.is_xl());
    assert_eq!((cfg.hidden_size, cfg.condition_width()), (80, 64));
    let encoder = cfg.encoder_config();
    assert_eq!((encoder.hidden_size, encoder.intermediate_size, encoder.num_attention_heads, encoder.num_key_value_heads), (64, 128, 4, 2));
    assert_eq!(encoder.head_dim(), 16);
}

#[test]
fn xl_condition_context_velocity_and_turbo_result_match_upstream() {
    let f = load_fixture("xl.safetensors");
    let model = AceStepModel::new(&xl_config(), checkpoint_var_builder(&["xl.safetensors"])).expect("XL weights load");
    let condition = condition(&model, &f);
    assert_close("XL packed condition states", &condition.states, &f["out.states"]);
    assert_close("XL context latents (item 1 a cover)", &condition.context, &f["out.context"]);

    let t = &f["input.t"];
    let kv = model.condition_kv(&condition.states).unwrap();
    let vt = model.decoder.forward(&f["input.xt"], t, t, &condition.context, &kv).unwrap();
    assert_close("XL DiT velocity (t = 0.7)", &vt, &f["out.vt"]);

    let batch = condition.context.dim(0).unwrap();
    let sampler = SamplerConfig {
        kind: SamplerKind::Turbo,
        timesteps: turbo_schedule(TURBO_STEPS, 3.0),
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
                let t = Tensor::full(step.t, batch, step.x.device())?;
                Ok(Prediction { cond: model.decoder.forward(step.x, &t, &t, &condition.context, &kv)?, uncond: None })
            },
            |_| Ok(()),
        )
        .unwrap();
    assert_close("XL turbo target latents", &target, &f["out.target"]);
}

/// The one place XL's encoder differs from the 2B code: the timbre is read through the summary
/// token. Reading it at the clip's first frame instead (the 2B rule) must miss upstream's states.
#[test]
fn the_2b_timbre_rule_does_not_reproduce_xl() {
    let f = load_fixture("xl.safetensors");
    let vb = checkpoint_var_builder(&["xl.safetensors"]);
    let encoder = ConditionEncoder::new(&xl_config().encoder_config(), false, vb.pp("encoder")).unwrap();
    let clip_item = fixture_clip_items(&f);
    let inputs = fixture_condition_inputs(&f, "text", &clip_item);
    let (states, _) = encoder.forward(&inputs).unwrap();
    let (err, scale) = max_abs_error(&states, &f["out.states"]);
    assert!(err > 1e-2 * scale, "the first-frame timbre matched XL's summary token ({err:e} of {scale:e})");
}
