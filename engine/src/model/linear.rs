//! The networks' `Linear` layer: `x · Wᵀ + b`, with `W` either a plain tensor (computed by candle
//! in its own dtype, as `candle_nn::Linear` does) or a [`PackedMatrix`] on the CPU (bf16 or
//! quantized, multiplied in f32 or in integers: `kernels::packed`).
//!
//! Which one a layer gets is the checkpoint loader's choice (`checkpoint::validate`, from the
//! requested [`crate::precision::Precision`]); the model code is the same for both.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::cpu_f32::CpuF32;
use crate::kernels::packed::PackedMatrix;

#[derive(Debug, Clone)]
enum Weight {
    /// (out, in), any dtype and device.
    Dense(Tensor),
    /// (in, out) packed, multiplied in f32 on the CPU.
    Packed(PackedMatrix),
}

#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

/// The initialisation hint `candle_nn::linear` passes for a weight, which the checkpoint loader
/// reads as "this is a Linear weight" (`checkpoint::validate::is_linear_weight`).
const WEIGHT_HINT: candle_nn::Init = candle_nn::init::DEFAULT_KAIMING_NORMAL;

/// A Linear layer `in_dim -> out_dim` with a bias.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    linear_b(in_dim, out_dim, true, vb)
}

/// A Linear layer `in_dim -> out_dim`, with a bias when `bias`.
pub fn linear_b(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let stored = vb.get_with_hints((out_dim, in_dim), "weight", WEIGHT_HINT)?;
    let bias = if bias { Some(vb.get_with_hints(out_dim, "bias", candle_nn::Init::Const(0.0))?) } else { None };
    Linear::from_loaded(stored, bias, in_dim, out_dim)
}

impl Linear {
    /// A dense layer from an (out, in) weight.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight: Weight::Dense(weight), bias }
    }

    /// A layer from a weight as the checkpoint loader returns it: (out, in) for a dense layer, or
    /// a packed matrix's bytes (`kernels::packed`: a U8 tensor, which no dense layer has).
    pub fn from_loaded(weight: Tensor, bias: Option<Tensor>, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(match weight.dtype() {
            DType::U8 => Self { weight: Weight::Packed(PackedMatrix::from_tensor(weight, in_dim, out_dim)?), bias },
            _ => Self::new(weight, bias),
        })
    }

    /// The dtype inputs must have.
    pub fn input_dtype(&self) -> DType {
        match &self.weight {
            Weight::Dense(w) => w.dtype(),
            Weight::Packed(_) => DType::F32,
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let Some((&k, lead)) = dims.split_last() else { candle_core::bail!("Linear input must have a feature axis") };
        let rows: usize = lead.iter().product();
        let out = match &self.weight {
            Weight::Dense(w) => {
                // One 2-D product instead of a broadcast batched one (candle_nn::Linear does the same).
                let x2 = if x.is_contiguous() { x.reshape((rows, k))? } else { x.contiguous()?.reshape((rows, k))? };
                x2.matmul(&w.t()?)?
            }
            Weight::Packed(w) => {
                let x = x.to_dtype(DType::F32)?.contiguous()?;
                let values = CpuF32::of(&x).ok_or_else(|| candle_core::Error::Msg("a packed Linear runs on the CPU".into()))?;
                let (_, n) = w.dims();
                Tensor::from_vec(w.matmul(values.values(), rows), (rows, n), x.device())?
            }
        };
        let mut shape = lead.to_vec();
        shape.push(out.dim(1)?);
        let out = out.reshape(shape)?;
        match &self.bias {
            Some(b) => out.broadcast_add(b),
            None => Ok(out),
        }
    }
}
