//! A VarBuilder backend that checks every tensor a model constructor asks for against the
//! checkpoint's headers before it is loaded: present, the shape the config implies, a float type.
//! The first problem is kept as a [`CheckpointError`] naming the tensor and its file; the
//! constructor sees a candle error and stops.
//!
//! With no weights behind it (`load` false), it hands out zero-stride zero tensors, so a whole
//! checkpoint can be validated without reading or allocating its weights.
//!
//! Loading reads each tensor's bytes from the file and converts them: to the requested dtype,
//! and on the CPU in f32 each Linear weight to the layout and width the [`Precision`] asks for
//! (`model::linear`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use super::footprint::Footprint;
use super::tensor_index::TensorIndex;
use super::{widen, CheckpointError};
use crate::kernels::packed::{PackedFormat, PackedMatrix};
use crate::precision::Precision;

const FLOAT_TYPES: [&str; 3] = ["F32", "BF16", "F16"];

/// What the validation saw: the first problem and every tensor name the model asked for.
#[derive(Debug, Default)]
pub struct ValidationReport {
    pub first_error: Option<CheckpointError>,
    pub requested: BTreeSet<String>,
    /// What the requested tensors take once loaded, for any way of loading them.
    pub footprint: Footprint,
}

pub struct ValidatingBackend {
    index: TensorIndex,
    load: bool,
    precision: Precision,
    report: Arc<Mutex<ValidationReport>>,
    /// Buffers reused from tensor to tensor: the stored bytes, and a Linear weight widened
    /// before it is packed. Fresh buffers per tensor would fault in their pages each time and
    /// leave the allocator holding freed memory between the weights that stay.
    scratch: Mutex<(Vec<u8>, Vec<f32>)>,
}

impl ValidatingBackend {
    /// A VarBuilder over `index`, loading from the files when `load` is set (Linear weights held
    /// as `precision` says), and the shared report.
    pub fn var_builder(
        index: TensorIndex,
        load: bool,
        dtype: DType,
        precision: Precision,
        device: &Device,
    ) -> (VarBuilder<'static>, Arc<Mutex<ValidationReport>>) {
        let report = Arc::new(Mutex::new(ValidationReport::default()));
        let backend = Self { index, load, precision, report: report.clone(), scratch: Mutex::default() };
        (VarBuilder::from_backend(Box::new(backend), dtype, device.clone()), report)
    }

    /// `convert` of a tensor's stored bytes and the f32 scratch; a read error is kept in the
    /// report.
    fn with_bytes<T>(&self, entry: &super::tensor_index::TensorEntry, convert: impl FnOnce(&[u8], &mut Vec<f32>) -> Result<T>) -> Result<T> {
        let mut scratch = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let (bytes, values) = &mut *scratch;
        entry.read_into(bytes).map_err(|e| self.fail(e))?;
        convert(bytes, values)
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
        let cpu_f32 = dtype == DType::F32 && device.is_cpu();
        let stored = entry.dtype.as_str();
        let linear = cpu_f32 && is_linear_weight(&shape, &init);
        let table = cpu_f32 && is_embedding_table(&shape, &init) && stored != "F32";
        {
            // Counted as the CPU in f32 would keep it; `Footprint::bytes` prices other loads.
            let footprint = &mut self.report.lock().unwrap_or_else(|p| p.into_inner()).footprint;
            match shape.dims() {
                &[out_dim, in_dim] if is_linear_weight(&shape, &init) => footprint.add_linear(stored, in_dim, out_dim),
                _ if is_embedding_table(&shape, &init) && stored != "F32" => footprint.add_table(shape.elem_count()),
                _ => footprint.add_other(shape.elem_count()),
            }
        }
        if !self.load {
            return Tensor::zeros((), dtype, device)?.broadcast_as(shape);
        }
        if linear {
            // (out, in) stored; held as (in, out), the layout the GEMM reads without re-packing
            // (`widen`): dense f32 as a transposed view of it, or bf16 rows (`model::linear`).
            // The quantized formats take the stored rows as they are: blocks of inputs.
            let (out_dim, in_dim) = shape.dims2()?;
            return self.with_bytes(entry, |bytes, values| match self.precision.linear_format(stored, in_dim, out_dim) {
                None => Tensor::from_vec(widen::widen_transposed(bytes, stored, out_dim, in_dim)?, (in_dim, out_dim), device)?.t(),
                Some(PackedFormat::Bf16) => {
                    widen::widen_transposed_into(bytes, stored, out_dim, in_dim, values)?;
                    Ok(PackedMatrix::encode(PackedFormat::Bf16, values, in_dim, out_dim)?.tensor().clone())
                }
                Some(format) => {
                    widen::widen_into(bytes, stored, values)?;
                    Ok(PackedMatrix::quantize_out_in(format, values, in_dim, out_dim)?.tensor().clone())
                }
            });
        }
        if table {
            // An embedding table stays at its stored 16-bit width: a forward reads a few hundred
            // of its rows, so widening all of it (600 MB for the text encoder) would cost load
            // time and memory for nothing. The model widens the rows it gathers, which is exact.
            return self.with_bytes(entry, |bytes, _| widen::copy_16bit(bytes, stored, shape.dims(), device));
        }
        if cpu_f32 {
            return self.with_bytes(entry, |bytes, _| Tensor::from_vec(widen::widen_to_f32(bytes, stored)?, shape, device));
        }
        let stored_dtype = match stored {
            "F32" => DType::F32,
            "BF16" => DType::BF16,
            _ => DType::F16,
        };
        self.with_bytes(entry, |bytes, _| Tensor::from_raw_buffer(bytes, stored_dtype, shape.dims(), device)?.to_dtype(dtype))
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
