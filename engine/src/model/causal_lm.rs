//! The 5 Hz LM's network (`acestep-5Hz-lm-{0.6B,1.7B,4B}`): transformers' `Qwen3ForCausalLM`.
//! Token embeddings, pre-norm decoder layers with causal grouped-query attention (the same layers
//! as the text encoder's, `nn::Attention` and `nn::Mlp`), the final RMSNorm and a language-model
//! head, tied to the embeddings in every published size.
//!
//! It decodes with a key/value cache ([`LmCache`]) allocated once per generation: the prompt runs
//! as one forward, then each new token as a forward of one position. Several rows (the two rows of
//! classifier-free guidance) run in one batch. Rows of different lengths are left-padded, as
//! upstream pads them (`padding_side='left'`): padding keys are hidden from every query, and
//! positions count from the first column, padding included, as transformers numbers them when a
//! caller passes an attention mask but no position ids (RoPE depends only on the distance between
//! a query and a key, so the shift does not change what a row computes).

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Init, RmsNorm, VarBuilder};
use candle_transformers::models::qwen3::Config;

use super::linear::{linear_b, Linear};
use super::nn::{rms_norm, Attention, KvCache, LayerDims, Mlp, RotaryEmbedding};
use super::text_encoder::qwen3_layer_dims;
use crate::kernels::attention::{Mask, MASKED};

/// How the embedding table is asked for: `candle_nn::embedding`'s hint, which the checkpoint
/// loader may keep at its stored width.
const EMBEDDING_HINT: Init = Init::Randn { mean: 0.0, stdev: 1.0 };

/// One decoder layer: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn new(dims: &LayerDims, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(dims, vb.pp("self_attn"))?,
            mlp: Mlp::new(dims, vb.pp("mlp"))?,
            input_layernorm: rms_norm(dims.hidden_size, dims.rms_norm_eps, vb.pp("input_layernorm"))?,
            post_attention_layernorm: rms_norm(dims.hidden_size, dims.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
        })
    }

    fn forward(&self, x: &Tensor, rope: &RotaryEmbedding, cache: &mut KvCache, mask: Mask) -> Result<Tensor> {
        let attn = self.self_attn.forward_cached(&self.input_layernorm.forward(x)?, rope, cache, mask)?;
        let x = (x + attn)?;
        let mlp = self.mlp.forward(&self.post_attention_layernorm.forward(&x)?)?;
        x + mlp
    }
}

/// The decoding state of one generation: every layer's keys and values, and which columns of
/// each row are padding.
#[derive(Debug)]
pub struct LmCache {
    layers: Vec<KvCache>,
    /// Per row, the left padding of its prompt (columns `0..pad` hide from every query).
    padding: Vec<usize>,
    device: Device,
}

impl LmCache {
    /// Tokens each row holds, padding included.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, KvCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens each row can hold.
    pub fn capacity(&self) -> usize {
        self.layers.first().map_or(0, KvCache::capacity)
    }

    pub fn rows(&self) -> usize {
        self.padding.len()
    }

    /// The additive mask for `new` tokens appended after `len()` cached ones: causal among the
    /// new tokens, and blind to each row's padding. `Mask::None` where nothing is hidden.
    fn mask(&self, new: usize) -> Result<Option<Tensor>> {
        let past = self.len();
        let keys = past + new;
        if new == 1 && self.padding.iter().all(|&p| p == 0) {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(self.rows() * new * keys);
        for &pad in &self.padding {
            for i in 0..new {
                values.extend((0..keys).map(|j| if j >= pad && j <= past + i { 0.0 } else { MASKED }));
            }
        }
        Tensor::from_vec(values, (self.rows(), 1, new, keys), &self.device).map(Some)
    }
}

/// `Qwen3ForCausalLM`: checkpoint names `model.embed_tokens.weight`, `model.layers.N.*`,
/// `model.norm.weight`, and `lm_head.weight` unless the embeddings are tied.
#[derive(Debug, Clone)]
pub struct CausalLm {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: RotaryEmbedding,
    dtype: DType,
    device: Device,
    vocab_size: usize,
    max_positions: usize,
}

impl CausalLm {
    /// `vb` at the checkpoint root.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let dims = qwen3_layer_dims(cfg, "5 Hz LM")?;
        let body = vb.pp("model");
        let table = body.get_with_hints((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight", EMBEDDING_HINT)?;
        // Tied: the head multiplies by the same table, asked for again as a Linear weight so the
        // loader stores it as it stores every matrix a product runs on.
        let lm_head = if cfg.tie_word_embeddings {
            linear_b(cfg.hidden_size, cfg.vocab_size, false, body.pp("embed_tokens"))?
        } else {
            linear_b(cfg.hidden_size, cfg.vocab_size, false, vb.pp("lm_head"))?
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(&dims, body.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens: Embedding::new(table, cfg.hidden_size),
            layers,
            norm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, body.pp("norm"))?,
            lm_head,
            rope: RotaryEmbedding::new(cfg.head_dim, cfg.rope_theta, cfg.max_position_embeddings, vb.device())?,
            dtype: vb.dtype(),
            device: vb.device().clone(),
            vocab_size: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The longest row (prompt, padding and generated tokens) the model's positions cover.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A cache for `rows` rows of up to `capacity` tokens each, reused across the steps of one
    /// generation.
    pub fn new_cache(&self, rows: usize, capacity: usize) -> Result<LmCache> {
        if capacity > self.max_positions {
            candle_core::bail!("5 Hz LM: {capacity} tokens are more than its {} positions", self.max_positions);
        }
        let layers = self
            .layers
            .iter()
            .map(|l| l.self_attn.new_cache(rows, capacity, self.dtype, &self.device))
            .collect::<Result<Vec<_>>>()?;
        Ok(LmCache { layers, padding: vec![0; rows], device: self.device.clone() })
    }

    /// Run the prompts (one per row, left-padded to the longest) into an empty `cache`; the
    /// next-token logits (rows, vocab) in f32.
    pub fn prefill(&self, prompts: &[Vec<u32>], pad_id: u32, cache: &mut LmCache) -> Result<Tensor> {
        if prompts.len() != cache.rows() {
            candle_core::bail!("5 Hz LM: {} prompts for a cache of {} rows", prompts.len(), cache.rows());
        }
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 {
            candle_core::bail!("5 Hz LM: an empty prompt");
        }
        for layer in &mut cache.layers {
            layer.clear();
        }
        cache.padding = prompts.iter().map(|p| width - p.len()).collect();
        let mut ids = Vec::with_capacity(prompts.len() * width);
        for prompt in prompts {
            ids.extend(std::iter::repeat_n(pad_id, width - prompt.len()).chain(prompt.iter().copied()));
        }
        let ids = Tensor::from_vec(ids, (prompts.len(), width), &self.device)?;
        self.forward(&ids, cache)
    }

    /// Append one token per row; the next-token logits (rows, vocab) in f32.
    pub fn step(&self, tokens: &[u32], cache: &mut LmCache) -> Result<Tensor> {
        if tokens.len() != cache.rows() {
            candle_core::bail!("5 Hz LM: {} tokens for a cache of {} rows", tokens.len(), cache.rows());
        }
        let ids = Tensor::from_slice(tokens, (tokens.len(), 1), &self.device)?;
        self.forward(&ids, cache)
    }

    fn forward(&self, ids: &Tensor, cache: &mut LmCache) -> Result<Tensor> {
        let (_, new) = ids.dims2()?;
        if cache.len() + new > cache.capacity() {
            candle_core::bail!("5 Hz LM: {} tokens are past the generation's room for {}", cache.len() + new, cache.capacity());
        }
        let mask = cache.mask(new)?;
        let mask = match &mask {
            Some(m) => Mask::Additive(m),
            None => Mask::None,
        };
        let mut x = self.embed_tokens.forward(ids)?.to_dtype(self.dtype)?;
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward(&x, &self.rope, kv, mask)?;
        }
        // Only the last position's logits are needed; every row ends at the same column.
        let last = x.narrow(1, new - 1, 1)?;
        let hidden = self.norm.forward(&last)?;
        let hidden = hidden.to_dtype(self.lm_head.input_dtype())?;
        self.lm_head.forward(&hidden)?.squeeze(1)?.to_dtype(DType::F32)?.contiguous()
    }
}
