//! The diffusion transformer (upstream `AceStepDiTModel`, checkpoint prefix `decoder`): predicts
//! the flow velocity of the noisy latents given the timestep, the context latents (source latents
//! and chunk mask) and the condition encoder's states.
//!
//! Per call: the timestep embeddings of `t` and `t - r` (sinusoid, cos first, t scaled by 1000) are
//! summed; `[context, x]` (B, T, in_channels) is padded to a multiple of `patch_size` and
//! patchified; each layer applies AdaLN-modulated self-attention (RoPE, sliding or full),
//! un-gated cross-attention to the condition, and an AdaLN-modulated MLP; the output norm is
//! modulated too, then unpatchified and cropped back to T.
//!
//! The patch convolutions have kernel = stride = `patch_size`, so both are plain matrix products
//! on reshaped frames (the weights are rearranged once at load). Upstream builds no padding masks
//! for the DiT: self-attention is masked only by the sliding window and cross-attention sees every
//! condition position, padding included; this does the same.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{RmsNorm, VarBuilder};

use super::linear::{linear, Linear};

use super::config::{AceStepConfig, LayerType};
use crate::kernels::attention::Mask;
use super::nn::{rms_norm, Attention, Mlp, RotaryEmbedding};

/// Width of the sinusoidal timestep features (hard-coded upstream).
const TIMESTEP_FEATURES: usize = 256;
/// Timesteps in [0, 1] are scaled by this before the sinusoid.
const TIMESTEP_SCALE: f64 = 1000.0;
const MAX_PERIOD: f64 = 10000.0;

/// Sinusoidal features of timesteps `t` (B,): (B, dim), `[cos(t·s·f_i), sin(t·s·f_i)]` with
/// `f_i = max_period^(-i / (dim/2))`, computed in f32.
pub fn timestep_features(t: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(MAX_PERIOD.ln() as f32) * i as f32 / half as f32).exp())
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let t = (t.to_dtype(DType::F32)? * TIMESTEP_SCALE)?.unsqueeze(1)?;
    let args = t.broadcast_mul(&freqs)?;
    Tensor::cat(&[args.cos()?, args.sin()?], D::Minus1)
}

/// `TimestepEmbedding`: sinusoid -> linear -> SiLU -> linear (the embedding `temb`), and
/// SiLU -> linear to six modulation vectors per layer (`timestep_proj`).
#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
    time_proj: Linear,
}

impl TimestepEmbedding {
    pub fn new(hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: linear(TIMESTEP_FEATURES, hidden, vb.pp("linear_1"))?,
            linear_2: linear(hidden, hidden, vb.pp("linear_2"))?,
            time_proj: linear(hidden, 6 * hidden, vb.pp("time_proj"))?,
        })
    }

    /// `t` (B,) -> (temb (B, H), modulation (B, 6, H)).
    pub fn forward(&self, t: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        let features = timestep_features(t, TIMESTEP_FEATURES)?.to_dtype(dtype)?;
        let temb = candle_nn::ops::silu(&self.linear_1.forward(&features)?)?;
        let temb = self.linear_2.forward(&temb)?;
        let modulation = self.time_proj.forward(&candle_nn::ops::silu(&temb)?)?;
        let (b, h) = temb.dims2()?;
        Ok((temb, modulation.reshape((b, 6, h))?))
    }
}

/// `norm(x) * (1 + scale) + shift`, with `scale`/`shift` (B, 1, H).
fn modulate(norm: &RmsNorm, x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    norm.forward(x)?.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

/// `AceStepDiTLayer`.
#[derive(Debug, Clone)]
pub struct DitLayer {
    scale_shift_table: Tensor,
    self_attn_norm: RmsNorm,
    self_attn: Attention,
    cross_attn_norm: RmsNorm,
    cross_attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
    layer_type: LayerType,
}

impl DitLayer {
    pub fn new(cfg: &AceStepConfig, index: usize, vb: VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            scale_shift_table: vb.get((1, 6, h), "scale_shift_table")?,
            self_attn_norm: rms_norm(h, eps, vb.pp("self_attn_norm"))?,
            self_attn: Attention::new(&cfg.into(), vb.pp("self_attn"))?,
            cross_attn_norm: rms_norm(h, eps, vb.pp("cross_attn_norm"))?,
            cross_attn: Attention::new(&cfg.into(), vb.pp("cross_attn"))?,
            mlp_norm: rms_norm(h, eps, vb.pp("mlp_norm"))?,
            mlp: Mlp::new(&cfg.into(), vb.pp("mlp"))?,
            layer_type: cfg.layer_type(index),
        })
    }

    /// `modulation` (B, 6, H): the timestep projection, added to this layer's table and split into
    /// shift/scale/gate for the attention and for the MLP.
    fn forward(
        &self,
        x: &Tensor,
        modulation: &Tensor,
        rope: &RotaryEmbedding,
        self_mask: Mask,
        condition_kv: &(Tensor, Tensor),
    ) -> Result<Tensor> {
        let m = self.scale_shift_table.broadcast_add(modulation)?;
        let row = |i: usize| m.narrow(1, i, 1);
        let (shift, scale, gate) = (row(0)?, row(1)?, row(2)?);
        let (mlp_shift, mlp_scale, mlp_gate) = (row(3)?, row(4)?, row(5)?);

        let attn = self.self_attn.forward_self(&modulate(&self.self_attn_norm, x, &shift, &scale)?, rope, self_mask)?;
        let x = (x + attn.broadcast_mul(&gate)?)?;
        let cross = self.cross_attn.forward_cross(&self.cross_attn_norm.forward(&x)?, condition_kv, Mask::None)?;
        let x = (x + cross)?;
        let mlp = self.mlp.forward(&modulate(&self.mlp_norm, &x, &mlp_shift, &mlp_scale)?)?;
        x + mlp.broadcast_mul(&mlp_gate)?
    }
}

/// The condition as every layer's cross-attention sees it: keys and values computed once per
/// request and reused at every diffusion step.
#[derive(Debug, Clone)]
pub struct ConditionKv {
    per_layer: Vec<(Tensor, Tensor)>,
}

impl ConditionKv {
    /// Two conditions as one batch, `self`'s rows first: a guided step runs the condition and
    /// the null condition in one forward of twice the rows, as upstream does.
    pub fn stack(&self, other: &ConditionKv) -> Result<ConditionKv> {
        let per_layer = self
            .per_layer
            .iter()
            .zip(&other.per_layer)
            .map(|((k, v), (k2, v2))| Ok((Tensor::cat(&[k, k2], 0)?, Tensor::cat(&[v, v2], 0)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(ConditionKv { per_layer })
    }
}

/// `AceStepDiTModel`.
#[derive(Debug, Clone)]
pub struct DiT {
    /// `proj_in` (Conv1d, kernel = stride = P) as a linear map of P concatenated frames.
    proj_in: Linear,
    time_embed: TimestepEmbedding,
    time_embed_r: TimestepEmbedding,
    condition_embedder: Linear,
    layers: Vec<DitLayer>,
    norm_out: RmsNorm,
    /// `proj_out` (ConvTranspose1d, kernel = stride = P) as a linear map to P output frames.
    proj_out: Linear,
    scale_shift_table: Tensor,
    rope: RotaryEmbedding,
    patch_size: usize,
    in_channels: usize,
    latent_channels: usize,
    sliding_window: Option<usize>,
}

impl DiT {
    pub fn new(cfg: &AceStepConfig, vb: VarBuilder) -> Result<Self> {
        let (h, p, cin, a) = (cfg.hidden_size, cfg.patch_size, cfg.in_channels, cfg.audio_acoustic_hidden_dim);

        // Conv1d weight (H, Cin, P): output frame j = sum over p of W[:, :, p] · x[P·j + p]. As a
        // linear map of the frames flattened (p, c): W permuted to (H, P, Cin).
        let w_in = vb.get((h, cin, p), "proj_in.1.weight")?;
        let proj_in = Linear::new(
            w_in.permute((0, 2, 1))?.reshape((h, p * cin))?,
            Some(vb.get(h, "proj_in.1.bias")?),
        );
        // ConvTranspose1d weight (H, A, P): output frame P·j + p = W[:, :, p]ᵀ · x[j] + b. As a
        // linear map producing P frames flattened (p, a): W permuted to (P, A, H), bias repeated.
        let w_out = vb.get((h, a, p), "proj_out.1.weight")?;
        let b_out = vb.get(a, "proj_out.1.bias")?;
        let proj_out = Linear::new(
            w_out.permute((2, 1, 0))?.reshape((p * a, h))?,
            Some(b_out.unsqueeze(0)?.repeat((p, 1))?.flatten_all()?),
        );

        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DitLayer::new(cfg, i, vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            proj_in,
            time_embed: TimestepEmbedding::new(h, vb.pp("time_embed"))?,
            time_embed_r: TimestepEmbedding::new(h, vb.pp("time_embed_r"))?,
            condition_embedder: linear(cfg.condition_width(), h, vb.pp("condition_embedder"))?,
            layers,
            norm_out: rms_norm(h, cfg.rms_norm_eps, vb.pp("norm_out"))?,
            proj_out,
            scale_shift_table: vb.get((1, 2, h), "scale_shift_table")?,
            rope: RotaryEmbedding::for_config(cfg, vb.device())?,
            patch_size: p,
            in_channels: cin,
            latent_channels: a,
            sliding_window: cfg.sliding_window(),
        })
    }

    /// Embed the condition encoder's states (B, L, H) and compute every layer's cross-attention
    /// keys and values.
    pub fn condition_kv(&self, encoder_states: &Tensor) -> Result<ConditionKv> {
        let states = self.condition_embedder.forward(encoder_states)?;
        let per_layer = self
            .layers
            .iter()
            .map(|layer| layer.cross_attn.cross_kv(&states))
            .collect::<Result<Vec<_>>>()?;
        Ok(ConditionKv { per_layer })
    }

    /// The velocity for noisy latents `x` (B, T, A) at timesteps `t` and `r` (B,), with
    /// `context` (B, T, in_channels - A) and the condition's keys and values.
    pub fn forward(&self, x: &Tensor, t: &Tensor, r: &Tensor, context: &Tensor, condition: &ConditionKv) -> Result<Tensor> {
        let (b, frames, _) = x.dims3()?;
        let dtype = x.dtype();
        let (temb_t, mod_t) = self.time_embed.forward(t, dtype)?;
        let (temb_r, mod_r) = self.time_embed_r.forward(&(t - r)?, dtype)?;
        let temb = (temb_t + temb_r)?;
        let modulation = (mod_t + mod_r)?;

        let x_in = Tensor::cat(&[context, x], D::Minus1)?;
        if x_in.dim(2)? != self.in_channels {
            candle_core::bail!(
                "DiT input has {} channels (context {} + latents {}), the checkpoint expects {}",
                x_in.dim(2)?,
                context.dim(2)?,
                x.dim(2)?,
                self.in_channels
            );
        }
        let padded = frames.div_ceil(self.patch_size) * self.patch_size;
        let x_in = if padded > frames { x_in.pad_with_zeros(1, 0, padded - frames)? } else { x_in };
        let patches = padded / self.patch_size;
        let mut h = self.proj_in.forward(&x_in.reshape((b, patches, self.patch_size * self.in_channels))?)?;

        for (layer, kv) in self.layers.iter().zip(&condition.per_layer) {
            let mask = match (layer.layer_type, self.sliding_window) {
                (LayerType::SlidingAttention, Some(window)) => Mask::Window(window),
                _ => Mask::None,
            };
            h = layer.forward(&h, &modulation, &self.rope, mask, kv)?;
        }

        let table = self.scale_shift_table.broadcast_add(&temb.unsqueeze(1)?)?;
        let (shift, scale) = (table.narrow(1, 0, 1)?, table.narrow(1, 1, 1)?);
        let h = modulate(&self.norm_out, &h, &shift, &scale)?;
        let out = self.proj_out.forward(&h)?.reshape((b, padded, self.latent_channels))?;
        out.narrow(1, 0, frames)
    }
}
