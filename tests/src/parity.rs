//! Comparing our tensors with the fixtures made from upstream's PyTorch code
//! (`tests/parity/make_fixtures.py`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use backline_engine::checkpoint::tensor_index::TensorIndex;
use backline_engine::checkpoint::validate::ValidatingBackend;
use backline_engine::precision::Precision;

use crate::workspace_root;

/// The relative tolerance of the parity contract: max-abs error at most 1e-4 of the reference
/// tensor's max-abs value (f32).
pub const RELATIVE_TOLERANCE: f32 = 1e-4;

pub fn fixture_path(name: &str) -> PathBuf {
    workspace_root().join("tests/parity/fixtures").join(name)
}

/// All tensors of a fixture file, on the CPU.
pub fn load_fixture(name: &str) -> HashMap<String, Tensor> {
    let path = fixture_path(name);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e} (regenerate with tests/parity/make_fixtures.py)", path.display()))
}

/// A fixture file's tensors and a VarBuilder over its weights (stored under their checkpoint
/// names), loaded as checkpoint folders are.
pub fn load_fixture_weights(name: &str) -> (HashMap<String, Tensor>, VarBuilder<'static>) {
    (load_fixture(name), checkpoint_var_builder(&[name]))
}

/// A VarBuilder over fixture files' weights that loads them the way checkpoint folders are
/// loaded (`ValidatingBackend`: checked against the shapes the model asks for, converted to f32,
/// linear weights laid out for the GEMM kernel), so that parity covers the production path. A
/// name in a later file overrides the same name in an earlier one.
pub fn checkpoint_var_builder(names: &[&str]) -> VarBuilder<'static> {
    checkpoint_var_builder_at(names, Precision::F32)
}

/// [`checkpoint_var_builder`] with the Linear weights held at `precision`.
pub fn checkpoint_var_builder_at(names: &[&str], precision: Precision) -> VarBuilder<'static> {
    let files: Vec<PathBuf> = names.iter().map(|n| fixture_path(n)).collect();
    let index = TensorIndex::from_files(&files).unwrap_or_else(|e| panic!("fixture headers: {e}"));
    let (vb, _report) = ValidatingBackend::var_builder(index, true, DType::F32, precision, &Device::Cpu);
    vb
}

/// `‖got − want‖ / ‖want‖` over all elements.
pub fn relative_rms_error(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims(), "shape");
    let got = got.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = want.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff: f64 = got.iter().zip(&want).map(|(g, w)| (*g as f64 - *w as f64).powi(2)).sum();
    let norm: f64 = want.iter().map(|w| (*w as f64).powi(2)).sum();
    (diff / norm).sqrt()
}

/// (max-abs error, max-abs of the reference).
pub fn max_abs_error(got: &Tensor, want: &Tensor) -> (f32, f32) {
    assert_eq!(got.dims(), want.dims(), "shape");
    let got = got.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = want.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let err = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max);
    let scale = want.iter().map(|w| w.abs()).fold(0.0, f32::max);
    (err, scale)
}

/// Assert `got` equals the upstream `want` within the parity tolerance; returns the relative error.
pub fn assert_close(name: &str, got: &Tensor, want: &Tensor) -> f32 {
    let (err, scale) = max_abs_error(got, want);
    let relative = err / scale.max(f32::MIN_POSITIVE);
    assert!(
        relative <= RELATIVE_TOLERANCE,
        "{name}: max-abs error {err:e} is {relative:e} of the reference's max-abs {scale:e} (limit {RELATIVE_TOLERANCE:e})"
    );
    eprintln!("{name}: max-abs error {err:.3e}, relative {relative:.3e}");
    relative
}

/// The batch item of each reference clip, as the fixtures store it (`input.order`, f32).
pub fn fixture_clip_items(f: &HashMap<String, Tensor>) -> Vec<usize> {
    f["input.order"].to_vec1::<f32>().unwrap().iter().map(|&i| i as usize).collect()
}

/// The condition encoder's inputs as the fixtures store them, the caption states under
/// `input.{text}` (`text`, or the sampler fixture's `non_cover_text`) with their mask.
pub fn fixture_condition_inputs<'a>(
    f: &'a HashMap<String, Tensor>,
    text: &str,
    clip_item: &'a [usize],
) -> backline_engine::model::condition::ConditionInputs<'a> {
    backline_engine::model::condition::ConditionInputs {
        text: &f[&format!("input.{text}")],
        text_mask: &f[&format!("input.{text}_mask")],
        lyrics: &f["input.lyric"],
        lyric_mask: &f["input.lyric_mask"],
        reference_clips: &f["input.refs"],
        clip_item,
    }
}
