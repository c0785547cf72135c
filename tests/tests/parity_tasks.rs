//! What each task feeds the DiT, against upstream's handler (fixture stage `task_inputs`:
//! `prepare_padding_info` and `_build_chunk_masks_and_src_latents`): out-painting padding, the
//! latent length, the repaint/lego window in frames, the context source, the chunk mask (explicit
//! and auto), the cover flag and the repaint mask, for every task and for windows inside, across
//! and beyond the source. All must be exactly equal.

use std::collections::HashMap;

use backline_engine::pipeline::task_inputs::{padding_samples, task_context, window_frames};
use backline_engine::request::{GenerationRequest, ModelKind};
use backline_engine::task::{ChunkMaskMode, TaskType};
use backline_tests::parity::{fixture_path, load_fixture};
use candle_core::{Tensor, D};
use serde_json::{json, Value};

const HOP: usize = 1920;
const RATE: f64 = 48_000.0;

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Exact equality, reporting the first difference rather than both tensors.
fn assert_same(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (got, want) = (values(got), values(want));
    if let Some(i) = got.iter().zip(&want).position(|(g, w)| g != w) {
        panic!("{what}: element {i} is {} here and {} upstream", got[i], want[i]);
    }
}

fn task(name: &str) -> TaskType {
    serde_json::from_value(json!(name)).unwrap()
}

#[test]
fn every_tasks_context_chunk_mask_and_window_equal_upstreams() {
    let f: HashMap<String, Tensor> = load_fixture("task_inputs.safetensors");
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture_path("task_inputs.json")).unwrap()).unwrap();
    assert_eq!(cases.len(), 11);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let task = task(case["task"].as_str().unwrap());
        let frames = case["frames"].as_u64().unwrap() as usize;

        // Padding and latent length, through the request as a user sends it.
        let window = match case["source_s"].as_f64() {
            None => {
                let request = GenerationRequest::from_value(json!({"duration": 10.0})).unwrap();
                let resolved = request.resolve(ModelKind::Base).unwrap();
                let samples = (resolved.duration_s.unwrap() * RATE) as usize;
                assert_eq!(samples, case["padded_samples"].as_u64().unwrap() as usize, "{name}: samples");
                None
            }
            Some(source_s) => {
                let mut body = json!({"task_type": task.as_str(), "src_audio": "/source.wav"});
                for key in ["repainting_start", "repainting_end"] {
                    if !case[key].is_null() {
                        body[key] = case[key].clone();
                    }
                }
                let resolved = GenerationRequest::from_value(body).unwrap().resolve(ModelKind::Base).unwrap();
                let span = resolved.source_span(source_s).unwrap();
                let (left, right) = padding_samples(&span);
                let total = left + (source_s * RATE) as usize + right;
                assert_eq!(total, case["padded_samples"].as_u64().unwrap() as usize, "{name}: padded samples");
                assert_eq!(total / HOP, frames, "{name}: latent frames");
                resolved.repaint.map(|w| {
                    let (start_s, end_s) = (w.start_s + span.left_pad_s, w.end_s.unwrap_or(source_s) + span.left_pad_s);
                    assert_eq!(start_s, case["adjusted_start"].as_f64().unwrap(), "{name}: window start");
                    assert_eq!(end_s, case["adjusted_end"].as_f64().unwrap(), "{name}: window end");
                    window_frames(start_s, end_s, frames)
                })
            }
        };
        let span = &case["span"];
        let want_window = (span[0] == "repainting").then(|| (span[1].as_u64().unwrap() as usize, span[2].as_u64().unwrap() as usize));
        assert_eq!(window, want_window, "{name}: window in frames");

        let latents = &f[&format!("{name}.latents")];
        let silence = f["input.silence"].narrow(1, 0, frames).unwrap();
        let context = task_context(task, latents, &silence, window, ChunkMaskMode::Explicit).unwrap();
        assert_same(&format!("{name}: context source"), &context.context_source, &f[&format!("{name}.src_latents")]);
        let chunk = |mask: &Tensor| mask.narrow(D::Minus1, 0, 1).unwrap().squeeze(D::Minus1).unwrap();
        assert_same(&format!("{name}: explicit chunk mask"), &chunk(&context.chunk_mask), &f[&format!("{name}.chunk_mask")]);
        let auto = task_context(task, latents, &silence, window, ChunkMaskMode::Auto).unwrap();
        assert_same(&format!("{name}: auto context source"), &auto.context_source, &f[&format!("{name}.src_latents")]);
        assert_same(&format!("{name}: auto chunk mask"), &chunk(&auto.chunk_mask), &f[&format!("{name}.chunk_mask_auto")]);
        assert_eq!(task == TaskType::Cover, case["is_cover"].as_bool().unwrap(), "{name}: cover flag");
        match (context.window_mask, f.get(&format!("{name}.repaint_mask"))) {
            (Some(got), Some(want)) => assert_same(&format!("{name}: repaint mask"), &got, want),
            (None, None) => {}
            (got, want) => panic!("{name}: repaint mask ours {:?}, upstream {:?}", got.is_some(), want.is_some()),
        }
    }
}
