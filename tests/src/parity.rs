//! Comparing our tensors with the fixtures made from upstream's PyTorch code
//! (`tests/parity/make_fixtures.py`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

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

/// A fixture file's tensors and a VarBuilder over them (its weights are stored under their
/// checkpoint names).
pub fn load_fixture_weights(name: &str) -> (HashMap<String, Tensor>, VarBuilder<'static>) {
    let tensors = load_fixture(name);
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    (tensors, vb)
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
