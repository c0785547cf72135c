//! The samplers around the DiT against upstream's `generate_audio` (fixture stage `sampler`):
//! base with APG CFG, base with ADG inside a CFG interval plus a conservative repaint, turbo
//! repaint with step injection, turbo cover with `cover_noise_strength` and the switch to the
//! text2music condition. Every model call's input and output is compared, then the result.
//! Also base schedules (bit-exact) and the CPU `torch.randn` noise for a seed.

use std::collections::HashMap;

use backline_engine::model::acestep::{AceStepModel, Condition, SourceInputs};
use backline_engine::model::config::AceStepConfig;
use backline_engine::sampling::noise::Mt19937;
use backline_engine::sampling::{
    base_schedule, turbo_schedule, Guidance, GuidanceMethod, InferMethod, Prediction, RepaintGuide, RunInputs,
    SamplerConfig, SamplerKind, SeededNoise, Start,
};
use backline_engine::kernels::int8;
use backline_engine::precision::Precision;
use backline_tests::parity::{
    assert_close, checkpoint_var_builder, fixture_clip_items, fixture_condition_inputs, checkpoint_var_builder_at, fixture_path, load_fixture, max_abs_error,
    relative_rms_error,
};
use candle_core::{Device, Tensor};

type Tensors = HashMap<String, Tensor>;

fn tiny_config() -> AceStepConfig {
    let json = std::fs::read_to_string(fixture_path("config.json")).expect("fixture config.json");
    AceStepConfig::from_json(&json).expect("upstream's config.json parses")
}

/// The DiT fixture's weights (the sampler fixture reuses them) and the sampler fixture.
fn fixture() -> (AceStepModel, Tensors) {
    let vb = checkpoint_var_builder(&["dit.safetensors"]);
    (AceStepModel::new(&tiny_config(), vb).expect("weights load"), load_fixture("sampler.safetensors"))
}

/// The condition for a source, with the caption states `text` (`input.text` or the
/// non-cover `input.non_cover_text`).
fn condition(model: &AceStepModel, f: &Tensors, text: &str, src: &Tensor, chunk: &Tensor, cover: bool) -> Condition {
    let clip_item = fixture_clip_items(f);
    let inputs = fixture_condition_inputs(f, text, &clip_item);
    let source = SourceInputs { latents: src, chunk_mask: chunk, is_cover: &[cover, cover], silence: &f["input.silence"] };
    model.prepare_condition(&inputs, &source).unwrap()
}

/// Runs `run` of the fixture with our sampler: `conditions` are the cover-phase and the
/// after-switch conditions (the same unless the run switches).
fn check_run(
    run: &str,
    model: &AceStepModel,
    f: &Tensors,
    sampler: &SamplerConfig,
    conditions: (&Condition, &Condition),
    start: Start,
    repaint: Option<&RepaintGuide>,
) {
    let kv = [conditions.0, conditions.1].map(|c| model.condition_kv(&c.states).unwrap());
    // A guided step runs the condition and the null condition as one batch, as the pipeline
    // and upstream do.
    let with_null = [0, 1].map(|i| {
        let c = [conditions.0, conditions.1][i];
        kv[i].stack(&model.condition_kv(&model.null_condition(&c.states).unwrap()).unwrap()).unwrap()
    });
    let want_t = f[&format!("{run}.timesteps")].to_vec1::<f32>().unwrap();
    let mut unused = SeededNoise::new(&[0, 0]);
    let inputs = RunInputs { noise: f[&format!("{run}.noise")].clone(), start, repaint, fresh_noise: &mut unused };
    let guided = sampler.guidance.is_some();
    let target = sampler
        .run(
            inputs,
            |step| {
                assert_eq!(step.t, want_t[step.index], "{run} step {} timestep", step.index);
                let phase = if step.cover { 0 } else { 1 };
                let context = &conditions.0.context;
                let context = if step.cover { context } else { &conditions.1.context };
                let want_x = &f[&format!("{run}.call{}.x", step.index)];
                let want_v = &f[&format!("{run}.call{}.v", step.index)];
                let batch = step.x.dim(0)?;
                assert_close(&format!("{run} step {} input", step.index), step.x, &want_x.narrow(0, 0, batch)?);
                let (cond, uncond) = if guided {
                    // Upstream's call holds both rows: the condition's, then the null's.
                    let t = Tensor::full(step.t, 2 * batch, step.x.device())?;
                    let x = Tensor::cat(&[step.x, step.x], 0)?;
                    let v = model.decoder.forward(&x, &t, &t, &Tensor::cat(&[context, context], 0)?, &with_null[phase])?;
                    assert_close(&format!("{run} step {} velocity and null velocity", step.index), &v, want_v);
                    (v.narrow(0, 0, batch)?, Some(v.narrow(0, batch, batch)?))
                } else {
                    let t = Tensor::full(step.t, batch, step.x.device())?;
                    let cond = model.decoder.forward(step.x, &t, &t, context, &kv[phase])?;
                    assert_close(&format!("{run} step {} velocity", step.index), &cond, &want_v.narrow(0, 0, batch)?);
                    (cond, None)
                };
                Ok(Prediction { cond, uncond: if step.guided { uncond } else { None } })
            },
            |_| Ok(()),
        )
        .unwrap();
    assert_close(&format!("{run} target latents"), &target, &f[&format!("{run}.target")]);
}

fn ones(f: &Tensors) -> Tensor {
    f["input.src"].ones_like().unwrap()
}

/// The fixture's base run: 4 steps, shift 3, APG at scale 7 on every step.
fn base_apg_sampler() -> SamplerConfig {
    SamplerConfig {
        kind: SamplerKind::Base,
        timesteps: base_schedule(4, 3.0),
        method: InferMethod::Ode,
        guidance: Some(Guidance { scale: 7.0, method: GuidanceMethod::Apg, interval: (0.0, 1.0) }),
        audio_cover_strength: 1.0,
    }
}

#[test]
fn base_apg_trajectory_matches_upstream() {
    let (model, f) = fixture();
    let cond = condition(&model, &f, "text", &f["input.src"], &ones(&f), false);
    let sampler = base_apg_sampler();
    check_run("apg", &model, &f, &sampler, (&cond, &cond), Start::Noise, None);
}

/// The base APG run with the DiT's and condition encoder's Linear weights held at each
/// precision, against upstream's f32 run: the relative error of the first call's velocities
/// (condition and null condition) and of the final latents. The quantized formats run both ways
/// where the CPU has AVX-512 VNNI: in integers (8-bit activations too) and widened to f32.
/// Printed for `docs/benchmarks.md`.
#[test]
fn quantized_weights_stay_near_upstreams_velocity_and_latents() {
    let f = load_fixture("sampler.safetensors");
    let sampler = base_apg_sampler();
    let products: &[bool] = if int8::cpu_supports() { &[true, false] } else { &[false] };
    // (precision, largest velocity error, largest latents error)
    let cases = [(Precision::Bf16, 1e-5, 1e-5), (Precision::Q8, 0.02, 0.02), (Precision::Q4, 0.3, 0.3)];
    for (in_integers, (precision, max_velocity, max_latents)) in products.iter().flat_map(|&p| cases.map(|c| (p, c))) {
        int8::allow(in_integers);
        let how = if precision == Precision::Bf16 { "" } else if in_integers { " in integers" } else { " widened" };
        let vb = checkpoint_var_builder_at(&["dit.safetensors"], precision);
        let model = AceStepModel::new(&tiny_config(), vb).expect("weights load");
        let cond = condition(&model, &f, "text", &f["input.src"], &ones(&f), false);
        let kv = model.condition_kv(&cond.states).unwrap();
        let both = kv.stack(&model.condition_kv(&model.null_condition(&cond.states).unwrap()).unwrap()).unwrap();
        let mut first = None;
        let mut unused = SeededNoise::new(&[0, 0]);
        let inputs = RunInputs { noise: f["apg.noise"].clone(), start: Start::Noise, repaint: None, fresh_noise: &mut unused };
        let target = sampler
            .run(
                inputs,
                |step| {
                    let batch = step.x.dim(0)?;
                    let t = Tensor::full(step.t, 2 * batch, step.x.device())?;
                    let x = Tensor::cat(&[step.x, step.x], 0)?;
                    let v = model.decoder.forward(&x, &t, &t, &Tensor::cat(&[&cond.context, &cond.context], 0)?, &both)?;
                    first.get_or_insert_with(|| v.clone());
                    Ok(Prediction { cond: v.narrow(0, 0, batch)?, uncond: Some(v.narrow(0, batch, batch)?) })
                },
                |_| Ok(()),
            )
            .unwrap();
        let velocity = relative_rms_error(&first.unwrap(), &f["apg.call0.v"]);
        let latents = relative_rms_error(&target, &f["apg.target"]);
        eprintln!("{precision}{how}: velocity error {velocity:.2e}, final latents error {latents:.2e}");
        assert!(velocity <= max_velocity, "{precision}{how}: velocity differs from upstream's by {velocity:.2e}");
        assert!(latents <= max_latents, "{precision}{how}: final latents differ from upstream's by {latents:.2e}");
        if precision != Precision::Bf16 {
            assert!(velocity > 1e-6, "{precision}: quantized weights cannot give f32's velocity exactly");
        }
    }
    int8::allow(true);
}

fn repaint_guide(f: &Tensors, injection_ratio: f64, crossfade_frames: usize) -> RepaintGuide {
    RepaintGuide { mask: f["input.repaint_mask"].clone(), clean: f["input.src"].clone(), injection_ratio, crossfade_frames }
}

#[test]
fn base_adg_with_cfg_interval_and_conservative_repaint_matches_upstream() {
    let (model, f) = fixture();
    let cond = condition(&model, &f, "text", &f["input.repaint_src"], &f["input.chunk_masks"], false);
    let sampler = SamplerConfig {
        kind: SamplerKind::Base,
        timesteps: base_schedule(4, 3.0),
        method: InferMethod::Ode,
        // Timesteps 1 and 0.9 lie outside the interval: those steps are unguided.
        guidance: Some(Guidance { scale: 5.0, method: GuidanceMethod::Adg, interval: (0.0, 0.8) }),
        audio_cover_strength: 1.0,
    };
    let repaint = repaint_guide(&f, 1.0, 4);
    check_run("adg_repaint", &model, &f, &sampler, (&cond, &cond), Start::Noise, Some(&repaint));
}

#[test]
fn turbo_repaint_with_step_injection_matches_upstream() {
    let (model, f) = fixture();
    let cond = condition(&model, &f, "text", &f["input.repaint_src"], &f["input.chunk_masks"], false);
    let sampler = SamplerConfig {
        kind: SamplerKind::Turbo,
        timesteps: turbo_schedule(8, 3.0),
        method: InferMethod::Ode,
        guidance: None,
        audio_cover_strength: 1.0,
    };
    let repaint = repaint_guide(&f, 0.5, 3);
    check_run("turbo_repaint", &model, &f, &sampler, (&cond, &cond), Start::Noise, Some(&repaint));
}

#[test]
fn turbo_cover_with_noise_start_and_condition_switch_matches_upstream() {
    let (model, f) = fixture();
    let cover = condition(&model, &f, "text", &f["input.src"], &ones(&f), true);
    let frames = f["input.src"].dim(1).unwrap();
    let silence = f["input.silence"].narrow(1, 0, frames).unwrap().repeat((2, 1, 1)).unwrap();
    let text2music = condition(&model, &f, "non_cover_text", &silence, &ones(&f), false);
    let sampler = SamplerConfig {
        kind: SamplerKind::Turbo,
        timesteps: turbo_schedule(8, 3.0),
        method: InferMethod::Ode,
        guidance: None,
        audio_cover_strength: 0.5,
    };
    let start = Start::Source { latents: &f["input.src"], cover_noise_strength: 0.3 };
    check_run("turbo_cover", &model, &f, &sampler, (&cover, &text2music), start, None);
}

#[test]
fn base_schedules_are_bit_equal_to_upstream() {
    let (_, f) = fixture();
    for (steps, shift) in [(4, 3.0), (32, 3.0), (50, 3.0), (7, 2.5), (50, 1.0)] {
        let want = f[&format!("schedule.base.{steps}.{shift:?}")].to_vec1::<f32>().unwrap();
        assert_eq!(base_schedule(steps, shift), want, "{steps} steps, shift {shift}");
    }
}

#[test]
fn seeded_noise_reproduces_torch_cpu_randn() {
    let (_, f) = fixture();
    // Per-item generators, as upstream's prepare_noise with a seed list.
    let noise = SeededNoise::new(&[7, 1234]).draw(40, 64, &Device::Cpu).unwrap();
    let (err, _) = max_abs_error(&noise, &f["apg.noise"]);
    eprintln!("noise for seeds [7, 1234]: max-abs error {err:e}");
    assert!(err < 1e-5, "{err}");
    for (seed, key) in [(42u32, "randn.42"), (u32::MAX, "randn.4294967295")] {
        let want = f[key].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got = Mt19937::new(seed).normals(want.len());
        let err = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
        eprintln!("randn seed {seed} ({} values): max-abs error {err:e}", want.len());
        assert!(err < 1e-5, "seed {seed}: {err}");
    }
}
