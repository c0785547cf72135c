//! Shared transformer blocks of ACE-Step 1.5's networks: RMSNorm, rotary embedding, grouped-query
//! attention with per-head q/k RMSNorm, the SwiGLU MLP, and the pre-norm encoder layer used by the
//! lyric encoder, timbre encoder, attention pooler and detokenizer.
//!
//! Mirrors upstream `acestep/models/turbo/modeling_acestep_v15_turbo.py` (`AceStepAttention`,
//! `AceStepEncoderLayer`, `create_4d_mask`) and the Qwen3 pieces it imports from transformers
//! (`Qwen3RMSNorm`, `Qwen3MLP`, `Qwen3RotaryEmbedding`, half-split `rotate_half` RoPE).
//!
//! Masks are additive (0 keeps, `f32::MIN` drops), exactly as upstream builds them, so a row whose
//! keys are all padding averages over them instead of producing NaN.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{RmsNorm, VarBuilder};

use super::linear::{linear, linear_b, Linear};

use crate::kernels::attention::{attention, attention_over_prefix, bidirectional_mask, Mask};
use super::config::{AceStepConfig, LayerType};
use crate::kernels::cpu_f32::{zip_map, CpuF32};


pub fn rms_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<RmsNorm> {
    candle_nn::rms_norm(size, eps, vb)
}

/// Cos/sin tables for rotary position embedding, shared by every layer of a stack.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    /// (max_positions, head_dim / 2)
    cos: Tensor,
    sin: Tensor,
}

impl RotaryEmbedding {
    pub fn new(head_dim: usize, theta: f64, max_positions: usize, device: &Device) -> Result<Self> {
        // inv_freq[i] = theta^(-2i / head_dim), computed in f32 like upstream.
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / (theta as f32).powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, head_dim / 2), device)?;
        let positions = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let freqs = positions.broadcast_mul(&inv_freq)?; // (P, D/2)
        Ok(Self { cos: freqs.cos()?, sin: freqs.sin()? })
    }

    pub fn for_config(cfg: &AceStepConfig, device: &Device) -> Result<Self> {
        Self::new(cfg.head_dim(), cfg.rope_theta, cfg.max_position_embeddings, device)
    }

    /// The tables for positions `0..len`: (len, head_dim / 2) each.
    pub fn tables(&self, len: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.cos.narrow(0, 0, len)?, self.sin.narrow(0, 0, len)?))
    }

    /// Rotate `x` of shape (B, H, L, D), positions 0..L.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        self.apply_at(x, 0)
    }

    /// Rotate `x` (B, heads, L, D) as positions `offset..offset + L`: the new tokens of a
    /// decoder that has `offset` tokens cached.
    pub fn apply_at(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, _, len, _) = x.dims4()?;
        if offset + len > self.cos.dim(0)? {
            candle_core::bail!("rotary embedding: position {} is past the table's {}", offset + len, self.cos.dim(0)?);
        }
        let cos = self.cos.narrow(0, offset, len)?;
        let sin = self.sin.narrow(0, offset, len)?;
        let cos = cos.to_dtype(x.dtype())?;
        let sin = sin.to_dtype(x.dtype())?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }
}

/// The sizes one transformer layer is built from. ACE-Step's stacks and the Qwen3 text encoder
/// share the layer (same tensor names, same pre-norm structure), but not the config type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerDims {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub attention_bias: bool,
    pub rms_norm_eps: f64,
}

impl From<&AceStepConfig> for LayerDims {
    fn from(cfg: &AceStepConfig) -> Self {
        Self {
            hidden_size: cfg.hidden_size,
            intermediate_size: cfg.intermediate_size,
            num_attention_heads: cfg.num_attention_heads,
            num_key_value_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim(),
            attention_bias: cfg.attention_bias,
            rms_norm_eps: cfg.rms_norm_eps,
        }
    }
}

/// Grouped-query attention with RMSNorm on each query and key head (`AceStepAttention`).
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    scaling: f64,
}

impl Attention {
    pub fn new(cfg: &LayerDims, vb: VarBuilder) -> Result<Self> {
        let (hidden, heads, kv_heads, head_dim) =
            (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        if heads % kv_heads != 0 {
            candle_core::bail!(
                "num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv_heads})"
            );
        }
        let bias = cfg.attention_bias;
        Ok(Self {
            q_proj: linear_b(hidden, heads * head_dim, bias, vb.pp("q_proj"))?,
            k_proj: linear_b(hidden, kv_heads * head_dim, bias, vb.pp("k_proj"))?,
            v_proj: linear_b(hidden, kv_heads * head_dim, bias, vb.pp("v_proj"))?,
            o_proj: linear_b(heads * head_dim, hidden, bias, vb.pp("o_proj"))?,
            q_norm: rms_norm(head_dim, cfg.rms_norm_eps, vb.pp("q_norm"))?,
            k_norm: rms_norm(head_dim, cfg.rms_norm_eps, vb.pp("k_norm"))?,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            scaling: (head_dim as f64).powf(-0.5),
        })
    }

    /// Project to heads and RMS-normalise each head: (B, L, H) -> (B, heads, L, D).
    fn heads(&self, x: &Tensor, proj: &Linear, norm: Option<&RmsNorm>, heads: usize) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let h = proj.forward(x)?.reshape((b, l, heads, self.head_dim))?;
        let h = match norm {
            Some(norm) => norm.forward(&h)?,
            None => h,
        };
        h.transpose(1, 2)?.contiguous() // (B, L, heads, D) -> (B, heads, L, D)
    }

    /// Self-attention over `x` (B, L, hidden) with rotary positions, each query seeing the keys
    /// `mask` allows.
    pub fn forward_self(&self, x: &Tensor, rope: &RotaryEmbedding, mask: Mask) -> Result<Tensor> {
        let q = rope.apply(&self.heads(x, &self.q_proj, Some(&self.q_norm), self.num_heads)?)?;
        let k = rope.apply(&self.heads(x, &self.k_proj, Some(&self.k_norm), self.num_kv_heads)?)?;
        let v = self.heads(x, &self.v_proj, None, self.num_kv_heads)?;
        self.o_proj.forward(&attention(&q, &k, &v, self.scaling, mask)?)
    }

    /// Keys and values of the encoder states for cross-attention (no RoPE). Computed once per
    /// request and reused at every diffusion step.
    /// Causal self-attention of new tokens `x` (B, L, hidden) over everything in `cache` and
    /// themselves; their keys and values are appended to `cache`. `mask` hides padding keys
    /// (and, for several new tokens, later ones).
    pub fn forward_cached(&self, x: &Tensor, rope: &RotaryEmbedding, cache: &mut KvCache, mask: Mask) -> Result<Tensor> {
        let offset = cache.len();
        let q = rope.apply_at(&self.heads(x, &self.q_proj, Some(&self.q_norm), self.num_heads)?, offset)?;
        let k = rope.apply_at(&self.heads(x, &self.k_proj, Some(&self.k_norm), self.num_kv_heads)?, offset)?;
        let v = self.heads(x, &self.v_proj, None, self.num_kv_heads)?;
        cache.append(&k, &v)?;
        let out = attention_over_prefix(&q, cache.keys(), cache.values(), cache.len(), self.scaling, mask)?;
        self.o_proj.forward(&out)
    }

    /// An empty cache for this layer: `batch` rows of up to `capacity` tokens.
    pub fn new_cache(&self, batch: usize, capacity: usize, dtype: DType, device: &Device) -> Result<KvCache> {
        KvCache::new(batch, self.num_kv_heads, capacity, self.head_dim, dtype, device)
    }

    pub fn cross_kv(&self, encoder_states: &Tensor) -> Result<(Tensor, Tensor)> {
        let k = self.heads(encoder_states, &self.k_proj, Some(&self.k_norm), self.num_kv_heads)?;
        let v = self.heads(encoder_states, &self.v_proj, None, self.num_kv_heads)?;
        Ok((k, v))
    }

    /// Cross-attention from `x` to precomputed encoder keys and values.
    pub fn forward_cross(&self, x: &Tensor, kv: &(Tensor, Tensor), mask: Mask) -> Result<Tensor> {
        let q = self.heads(x, &self.q_proj, Some(&self.q_norm), self.num_heads)?;
        self.o_proj.forward(&attention(&q, &kv.0, &kv.1, self.scaling, mask)?)
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))` (`Qwen3MLP`, no biases).
/// One attention layer's keys and values for the tokens decoded so far, in storage allocated
/// once for the whole generation (B, KV heads, capacity, D): a step writes its new rows in place
/// and attention reads the filled prefix where it lies.
#[derive(Debug)]
pub struct KvCache {
    keys: Tensor,
    values: Tensor,
    len: usize,
}

impl KvCache {
    pub fn new(batch: usize, kv_heads: usize, capacity: usize, head_dim: usize, dtype: DType, device: &Device) -> Result<Self> {
        let shape = (batch, kv_heads, capacity, head_dim);
        Ok(Self { keys: Tensor::zeros(shape, dtype, device)?, values: Tensor::zeros(shape, dtype, device)?, len: 0 })
    }

    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens the storage holds.
    pub fn capacity(&self) -> usize {
        self.keys.dims()[2]
    }

    /// Forget every token (a new request), keeping the storage.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Append new keys and values (B, KV, L, D).
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let new = k.dim(2)?;
        if self.len + new > self.capacity() {
            candle_core::bail!("key/value cache: {} tokens do not fit in {}", self.len + new, self.capacity());
        }
        self.keys.slice_set(&k.to_dtype(self.keys.dtype())?.contiguous()?, 2, self.len)?;
        self.values.slice_set(&v.to_dtype(self.values.dtype())?.contiguous()?, 2, self.len)?;
        self.len += new;
        Ok(())
    }

    /// The whole key storage (B, KV, capacity, D); rows `len()..` are stale.
    pub fn keys(&self) -> &Tensor {
        &self.keys
    }

    pub fn values(&self) -> &Tensor {
        &self.values
    }
}

#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub fn new(cfg: &LayerDims, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: linear_b(h, i, false, vb.pp("gate_proj"))?,
            up_proj: linear_b(h, i, false, vb.pp("up_proj"))?,
            down_proj: linear_b(i, h, false, vb.pp("down_proj"))?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down_proj.forward(&silu_mul(&self.gate_proj.forward(x)?, &self.up_proj.forward(x)?)?)
    }
}

/// `silu(gate) * up`: on the CPU in f32, one pass on every core instead of two single-threaded
/// ops and a temporary.
fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.dtype() == DType::F32 && gate.dims() == up.dims() {
        if let (Some(g), Some(u)) = (CpuF32::of(gate), CpuF32::of(up)) {
            let out = zip_map(g.values(), u.values(), |g, u| g / (1.0 + (-g).exp()) * u);
            return Tensor::from_vec(out, gate.shape(), gate.device());
        }
    }
    candle_nn::ops::silu(gate)? * up
}

/// Pre-norm transformer layer (`AceStepEncoderLayer`, and Qwen3's decoder layer with a causal
/// mask):
/// `x + attn(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pub layer_type: LayerType,
}

impl EncoderLayer {
    pub fn new(cfg: &LayerDims, layer_type: LayerType, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            input_layernorm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            post_attention_layernorm: rms_norm(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            layer_type,
        })
    }

    pub fn forward(&self, x: &Tensor, rope: &RotaryEmbedding, mask: Mask) -> Result<Tensor> {
        let attn = self.self_attn.forward_self(&self.input_layernorm.forward(x)?, rope, mask)?;
        let x = (x + attn)?;
        let mlp = self.mlp.forward(&self.post_attention_layernorm.forward(&x)?)?;
        x + mlp
    }
}

/// The masks of one encoder stack: full layers and sliding layers each get their own.
pub struct EncoderMasks {
    pub full: Option<Tensor>,
    pub sliding: Option<Tensor>,
}

impl EncoderMasks {
    /// Masks for a (B, L) batch with an optional key padding mask (1 = real, 0 = padding). With
    /// sliding switched off, upstream gives sliding layers no mask at all.
    pub fn new(cfg: &AceStepConfig, batch: usize, len: usize, key_padding: Option<&Tensor>, device: &Device) -> Result<Self> {
        let full = bidirectional_mask(batch, len, None, key_padding, device)?;
        let sliding = match cfg.sliding_window() {
            Some(window) => Some(bidirectional_mask(batch, len, Some(window), key_padding, device)?),
            None => None,
        };
        Ok(Self { full: Some(full), sliding })
    }

    pub fn for_layer(&self, layer_type: LayerType) -> Option<&Tensor> {
        match layer_type {
            LayerType::FullAttention => self.full.as_ref(),
            LayerType::SlidingAttention => self.sliding.as_ref(),
        }
    }
}

/// Input projection, encoder layers, final norm: the shape shared by the lyric encoder, the
/// timbre encoder, the attention pooler and the detokenizer (checkpoint names `embed_tokens`,
/// `layers.N`, `norm`).
#[derive(Debug, Clone)]
pub struct EncoderStack {
    embed_tokens: Linear,
    layers: Vec<EncoderLayer>,
    /// How many of the stored layers run (upstream's lyric and timbre encoders run only the first
    /// `num_hidden_layers`; the pooler and detokenizer run all of theirs).
    layers_run: usize,
    norm: RmsNorm,
    rope: RotaryEmbedding,
    cfg: AceStepConfig,
}

impl EncoderStack {
    /// `input_dim` is the width of what enters `embed_tokens`; `num_layers` the layers stored.
    pub fn new(cfg: &AceStepConfig, input_dim: usize, num_layers: usize, vb: VarBuilder) -> Result<Self> {
        let layers = (0..num_layers)
            .map(|i| EncoderLayer::new(&cfg.into(), cfg.layer_type(i), vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens: linear(input_dim, cfg.hidden_size, vb.pp("embed_tokens"))?,
            layers,
            layers_run: num_layers,
            norm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?,
            rope: RotaryEmbedding::for_config(cfg, vb.device())?,
            cfg: cfg.clone(),
        })
    }

    /// Run at most `count` of the stored layers (any beyond are loaded but never used).
    pub fn limit_layers(mut self, count: usize) -> Self {
        self.layers_run = self.layers_run.min(count);
        self
    }

    /// The input projection alone: (B, L, input_dim) -> (B, L, hidden).
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        self.embed_tokens.forward(x)
    }

    /// The layers and the final norm over already embedded tokens (B, L, hidden), with an optional
    /// (B, L) key padding mask; pushes each layer's output onto `trace`.
    pub fn encode_traced(&self, x: &Tensor, key_padding: Option<&Tensor>, trace: &mut Vec<Tensor>) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let masks = EncoderMasks::new(&self.cfg, b, l, key_padding, x.device())?;
        let mut x = x.clone();
        for layer in &self.layers[..self.layers_run] {
            let mask = masks.for_layer(layer.layer_type).map(|m| m.to_dtype(x.dtype())).transpose()?;
            x = layer.forward(&x, &self.rope, mask.as_ref().map_or(Mask::None, Mask::Additive))?;
            trace.push(x.clone());
        }
        self.norm.forward(&x)
    }

    /// One summary per sequence: `token` (1, 1, hidden) is put in front of the embedded tokens
    /// (B, L, hidden), the layers run over the L + 1 positions with no padding mask, and the
    /// normed output at the token's position is kept: (B, hidden).
    pub fn summarize(&self, embedded: &Tensor, token: &Tensor) -> Result<Tensor> {
        let (b, _, h) = embedded.dims3()?;
        let x = Tensor::cat(&[&token.to_dtype(embedded.dtype())?.broadcast_as((b, 1, h))?, embedded], 1)?;
        self.encode_traced(&x, None, &mut Vec::new())?.narrow(1, 0, 1)?.squeeze(1)
    }

    /// `embed` then `encode_traced`.
    pub fn forward_traced(&self, x: &Tensor, key_padding: Option<&Tensor>, trace: &mut Vec<Tensor>) -> Result<Tensor> {
        self.encode_traced(&self.embed(x)?, key_padding, trace)
    }
}
