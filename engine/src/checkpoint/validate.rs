//! A VarBuilder backend that checks every tensor a model constructor asks for against the
//! checkpoint's headers before it is loaded: present, the shape the config implies, a float type.
//! The first problem is kept as a [`CheckpointError`] naming the tensor and its file; the
//! constructor sees a candle error and stops.
//!
//! With no weights behind it (`shapes_only`), it hands out zero-stride zero tensors, so a whole
//! checkpoint can be validated without reading or allocating its weights.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use super::tensor_index::TensorIndex;
use super::{widen, CheckpointError};

const FLOAT_TYPES: [&str; 3] = ["F32", "BF16", "F16"];

/// What the validation saw: the first problem and every tensor name the model asked for.
#[derive(Debug, Default)]
pub struct ValidationReport {
    pub first_error: Option<CheckpointError>,
    pub requested: BTreeSet<String>,
}

pub struct ValidatingBackend {
    index: TensorIndex,
    weights: Option<MmapedSafetensors>,
    report: Arc<Mutex<ValidationReport>>,
}

impl ValidatingBackend {
    /// A VarBuilder over `index`, loading from the files when `load` is set, and the shared report.
    pub fn var_builder(
        index: TensorIndex,
        load: bool,
        dtype: DType,
        device: &Device,
    ) -> std::result::Result<(VarBuilder<'static>, Arc<Mutex<ValidationReport>>), CheckpointError> {
        let weights = if load {
            // Safety: the files are memory-mapped read-only; like every mmap loader we rely on
            // them not being truncated while loaded (their headers were just checked).
            let mmap = unsafe { MmapedSafetensors::multi(&index.files) }
                .map_err(|e| CheckpointError::Malformed { file: index.files[0].clone(), why: e.to_string() })?;
            Some(mmap)
        } else {
            None
        };
        let report = Arc::new(Mutex::new(ValidationReport::default()));
        let backend = Self { index, weights, report: report.clone() };
        Ok((VarBuilder::from_backend(Box::new(backend), dtype, device.clone()), report))
    }

    fn fail(&self, error: CheckpointError) -> candle_core::Error {
        let message = error.to_string();
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        report.first_error.get_or_insert(error);
        candle_core::Error::Msg(message)
    }
}

/// Whether a request is a `Linear` layer's weight: a matrix asked for with the Kaiming-normal
/// hint, which `candle_nn::linear` (and so every `Linear` in our models) passes for its weight and
/// nothing else 2-D does (embedding tables pass a normal hint, convolution weights are 3-D).
fn is_linear_weight(shape: &Shape, init: &Init) -> bool {
    use candle_nn::init::{FanInOut, NormalOrUniform};
    shape.rank() == 2 && matches!(init, Init::Kaiming { dist: NormalOrUniform::Normal, fan: FanInOut::FanIn, .. })
}

/// Whether a request is an embedding table: a matrix asked for with the standard-normal hint that
/// `candle_nn::embedding` (and our text encoder) passes for it.
fn is_embedding_table(shape: &Shape, init: &Init) -> bool {
    shape.rank() == 2 && matches!(init, Init::Randn { mean, stdev } if *mean == 0.0 && *stdev == 1.0)
}

impl SimpleBackend for ValidatingBackend {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, device: &Device) -> Result<Tensor> {
        self.report.lock().unwrap_or_else(|p| p.into_inner()).requested.insert(name.to_string());
        let Some(entry) = self.index.get(name) else {
            return Err(self.fail(CheckpointError::MissingTensor { name: name.to_string(), files: self.index.describe_files() }));
        };
        if entry.shape != shape.dims() {
            return Err(self.fail(CheckpointError::WrongShape {
                name: name.to_string(),
                file: entry.file.clone(),
                found: entry.shape.clone(),
                expected: shape.dims().to_vec(),
            }));
        }
        if !FLOAT_TYPES.contains(&entry.dtype.as_str()) {
            return Err(self.fail(CheckpointError::WrongType {
                name: name.to_string(),
                file: entry.file.clone(),
                found: entry.dtype.clone(),
            }));
        }
        match &self.weights {
            // f32 on the CPU: a Linear weight (out, in) is kept as a transposed view of a
            // contiguous (in, out) buffer. Same values at the same indices; `Linear`'s `w.t()` is
            // then contiguous, the layout the GEMM kernel reads without re-packing (`widen`).
            Some(weights) if dtype == DType::F32 && device.is_cpu() && is_linear_weight(&shape, &init) => {
                let (rows, cols) = shape.dims2()?;
                let values = widen::widen_transposed(weights.get(name)?.data(), &entry.dtype, rows, cols)?;
                Tensor::from_vec(values, (cols, rows), device)?.t()
            }
            // An embedding table asked for in f32 on the CPU stays at its stored 16-bit width:
            // a forward reads a few hundred of its rows, so widening all of it (600 MB for the
            // text encoder) would cost load time and memory for nothing. The model widens the
            // rows it gathers, which is exact.
            Some(weights) if dtype == DType::F32 && device.is_cpu() && is_embedding_table(&shape, &init) && entry.dtype != "F32" => {
                widen::copy_16bit(weights.get(name)?.data(), &entry.dtype, shape.dims(), device)
            }
            Some(weights) if dtype == DType::F32 && entry.dtype != "F32" => {
                let values = widen::widen_to_f32(weights.get(name)?.data(), &entry.dtype)?;
                Tensor::from_vec(values, shape, device)
            }
            Some(weights) => weights.load(name, device)?.to_dtype(dtype),
            None => Tensor::zeros((), dtype, device)?.broadcast_as(shape),
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let Some(entry) = self.index.get(name) else {
            return Err(self.fail(CheckpointError::MissingTensor { name: name.to_string(), files: self.index.describe_files() }));
        };
        self.get(entry.shape.clone().into(), name, Init::Const(0.0), dtype, device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.index.get(name).is_some()
    }
}
