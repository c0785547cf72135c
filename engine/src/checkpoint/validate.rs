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
use super::CheckpointError;

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

/// Little-endian 16-bit floats to f32 on every core, written straight into fresh memory. The
/// published checkpoints are bf16 and the CPU runs f32. candle's `to_dtype` converts on one
/// thread after a zero-filled allocation; here the first touch of each destination page (the
/// page fault, which dominates on a VM) is spread over the cores together with the conversion.
/// bf16 -> f32 is exact (a 16-bit shift).
fn widen_to_f32(bytes: &[u8], stored: &str) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    use std::mem::MaybeUninit;
    let widen: fn([u8; 2]) -> f32 = match stored {
        "BF16" => |b| f32::from_bits((u16::from_le_bytes(b) as u32) << 16),
        "F16" => |b| half::f16::from_bits(u16::from_le_bytes(b)).to_f32(),
        other => candle_core::bail!("no f32 widening for {other}"),
    };
    const CHUNK: usize = 1 << 16;
    let len = bytes.len() / 2;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    crate::alloc::advise_huge_pages(out.as_mut_ptr().cast(), len * 4);
    out.spare_capacity_mut()[..len].par_chunks_mut(CHUNK).zip(bytes.par_chunks(2 * CHUNK)).for_each(
        |(out, bytes): (&mut [MaybeUninit<f32>], &[u8])| {
            for (value, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                value.write(widen([pair[0], pair[1]]));
            }
        },
    );
    // Safety: the loop above wrote every one of the `len` elements (chunks of `out` and of
    // `bytes` pair up one to one, two bytes per element).
    unsafe { out.set_len(len) };
    Ok(out)
}

impl SimpleBackend for ValidatingBackend {
    fn get(&self, shape: Shape, name: &str, _: Init, dtype: DType, device: &Device) -> Result<Tensor> {
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
            Some(weights) if dtype == DType::F32 && entry.dtype != "F32" => {
                let view = weights.get(name)?;
                let values = widen_to_f32(view.data(), &entry.dtype)?;
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
