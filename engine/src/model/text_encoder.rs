//! The text encoder, Qwen3-Embedding-0.6B (`checkpoints/Qwen3-Embedding-0.6B/`), and its prompt
//! tokenizer.
//!
//! Upstream loads it with transformers' `AutoModel` (`Qwen3Model`, no LM head) and `AutoTokenizer`
//! and uses it two ways (`core/generation/handler/conditioning_embed.py`):
//! - caption prompts: the full forward's last hidden state (after the final RMSNorm), run with no
//!   attention mask. The model is causal and batches are right-padded, so real tokens never see
//!   the padding;
//! - lyric prompts: the token-embedding lookup only.
//!
//! The network is built from the shared layers in `nn` (its config parsed as candle-transformers'
//! `qwen3::Config`); the tokenizer is the checkpoint's
//! `tokenizer.json` through the `tokenizers` crate, whose `TemplateProcessing` post-processor
//! appends `<|endoftext|>` as transformers does.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Activation, Embedding, Init, RmsNorm, VarBuilder};
use candle_transformers::models::qwen3::Config;

use super::config::LayerType;
use crate::kernels::attention::Mask;
use super::nn::{rms_norm, EncoderLayer, LayerDims, RotaryEmbedding};
use tokenizers::{PostProcessor, Tokenizer, TruncationDirection};

/// Upstream's token limit for caption prompts (`conditioning_text.py`, `truncation=True`).
pub const CAPTION_MAX_TOKENS: usize = 256;
/// Upstream's token limit for lyric prompts.
pub const LYRIC_MAX_TOKENS: usize = 2048;

/// How the embedding table is asked for: `candle_nn::embedding`'s hint.
const EMBEDDING_HINT: Init = Init::Randn { mean: 0.0, stdev: 1.0 };

/// The token that ends every prompt and pads batches (151643 in Qwen3's vocabulary).
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Parse the checkpoint's `config.json` (transformers' `Qwen3Config`). Keys candle requires but
/// a config may leave out get transformers' defaults, and transformers 5's
/// `rope_parameters.rope_theta` is read when there is no top-level `rope_theta`.
pub fn config_from_json(json: &str) -> std::result::Result<Config, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(json)?;
    if let Some(obj) = value.as_object_mut() {
        if !obj.contains_key("rope_theta") {
            if let Some(theta) = obj.get("rope_parameters").and_then(|p| p.get("rope_theta")).cloned() {
                obj.insert("rope_theta".into(), theta);
            }
        }
        let defaults = [
            ("attention_bias", serde_json::json!(false)),
            ("use_sliding_window", serde_json::json!(false)),
            ("max_window_layers", serde_json::json!(28)),
            ("tie_word_embeddings", serde_json::json!(false)),
            ("hidden_act", serde_json::json!("silu")),
            ("rms_norm_eps", serde_json::json!(1e-6)),
        ];
        for (key, default) in defaults {
            obj.entry(key).or_insert(default);
        }
    }
    serde_json::from_value(value)
}

/// The layer sizes of a Qwen3 config, refusing what the shared layers do not implement (another
/// activation, sliding windows; every published Qwen3 here has them off). `model` names it in
/// the error.
pub fn qwen3_layer_dims(cfg: &Config, model: &str) -> Result<LayerDims> {
    if cfg.hidden_act != Activation::Silu {
        candle_core::bail!("{model}: hidden_act {:?} is not Qwen3's silu", cfg.hidden_act);
    }
    if cfg.use_sliding_window {
        candle_core::bail!("{model}: sliding-window attention is not supported (the published Qwen3s have it off)");
    }
    Ok(LayerDims {
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        num_attention_heads: cfg.num_attention_heads,
        num_key_value_heads: cfg.num_key_value_heads,
        head_dim: cfg.head_dim,
        attention_bias: cfg.attention_bias,
        rms_norm_eps: cfg.rms_norm_eps,
    })
}

/// Qwen3-Embedding's transformer (`Qwen3Model`): token embeddings, pre-norm decoder layers with
/// causal self-attention, the final RMSNorm. Its layers are the same as the ACE-Step encoder
/// stacks' (`nn::EncoderLayer`, same tensor names), run with a causal mask (`attention::Mask::Causal`,
/// which the CPU kernel uses to skip the keys after each query).
#[derive(Debug, Clone)]
pub struct TextEncoder {
    /// Shared by the caption path and the lyric path. On the CPU the checkpoint loader keeps it
    /// at its stored width (bf16); gathered rows are widened to `dtype`.
    embed_tokens: Embedding,
    dtype: DType,
    layers: Vec<EncoderLayer>,
    norm: RmsNorm,
    rope: RotaryEmbedding,
    max_positions: usize,
}

impl TextEncoder {
    /// `vb` at the checkpoint root, whose names carry no `model.` prefix (`embed_tokens.weight`,
    /// `layers.N...`, `norm.weight`), as `Qwen3Model.save_pretrained` writes them.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let dims = qwen3_layer_dims(cfg, "text encoder")?;
        // The hint marks it an embedding table (as `candle_nn::embedding` does), which the
        // checkpoint loader may keep at its stored width.
        let table = vb.get_with_hints((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight", EMBEDDING_HINT)?;
        // With sliding windows off, every layer attends causally to the whole prompt.
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(&dims, LayerType::FullAttention, vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens: Embedding::new(table, cfg.hidden_size),
            dtype: vb.dtype(),
            layers,
            norm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?,
            rope: RotaryEmbedding::new(cfg.head_dim, cfg.rope_theta, cfg.max_position_embeddings, vb.device())?,
            max_positions: cfg.max_position_embeddings,
        })
    }

    /// Caption path: token ids (B, L) u32 to the last hidden state (B, L, hidden). Causal, with
    /// no padding mask, as upstream runs it: rows may be right-padded.
    pub fn encode(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, len) = ids.dims2()?;
        if len == 0 || len > self.max_positions {
            candle_core::bail!("text encoder: {len} tokens, expected 1 to {}", self.max_positions);
        }
        let mut x = self.embed(ids)?;
        for layer in &self.layers {
            x = layer.forward(&x, &self.rope, Mask::Causal)?;
        }
        self.norm.forward(&x)
    }

    /// Lyric path: token ids (B, L) u32 to their embeddings (B, L, hidden), no transformer layers.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        ids.dims2()?;
        self.embed_tokens.forward(ids)?.to_dtype(self.dtype)
    }
}

/// The checkpoint's `tokenizer.json`, used as transformers' fast tokenizer uses it with
/// `add_special_tokens=True, truncation=True, max_length=N`.
#[derive(Debug, Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    pad_id: u32,
    /// Tokens the post-processor adds to one sequence (1: the trailing `<|endoftext|>`).
    added: usize,
}

impl PromptTokenizer {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let failed = |what: String| candle_core::Error::msg(format!("prompt tokenizer {}: {what}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        let mut tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| failed(format!("not a tokenizer.json: {e}")))?;
        // Truncation and padding are ours to apply; settings saved in the file must not interfere.
        tokenizer.with_truncation(None).map_err(|e| failed(e.to_string()))?;
        tokenizer.with_padding(None);
        let pad_id = tokenizer
            .token_to_id(END_OF_TEXT)
            .ok_or_else(|| failed(format!("no {END_OF_TEXT} token, which pads batches")))?;
        let added = tokenizer.get_post_processor().map_or(0, |p| p.added_tokens(false));
        Ok(Self { tokenizer, pad_id, added })
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The id of `<|endoftext|>`, which right-pads batches.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// `text` to ids with the special tokens added, at most `max_len` of them: like transformers,
    /// the text is cut first so that the appended `<|endoftext|>` survives truncation.
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Vec<u32>> {
        if max_len < self.added {
            candle_core::bail!("prompt tokenizer: max_len {max_len} leaves no room for {} special tokens", self.added);
        }
        let mut encoding = self.tokenizer.encode_fast(text, false).map_err(candle_core::Error::msg)?;
        encoding.truncate(max_len - self.added, 0, TruncationDirection::Right);
        let encoding = self.tokenizer.post_process(encoding, None, true).map_err(candle_core::Error::msg)?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// Right-pad token sequences to the longest with `pad_id`, as upstream batches prompts: ids
/// (B, Lmax) u32 and a mask (B, Lmax) f32 of 1 for real tokens and 0 for padding.
pub fn pad_batch(sequences: &[Vec<u32>], pad_id: u32, device: &Device) -> Result<(Tensor, Tensor)> {
    let width = sequences.iter().map(Vec::len).max().unwrap_or(0);
    if width == 0 {
        candle_core::bail!("pad_batch: no tokens to batch");
    }
    let mut ids = Vec::with_capacity(sequences.len() * width);
    let mut mask = Vec::with_capacity(sequences.len() * width);
    for seq in sequences {
        ids.extend(seq.iter().copied().chain(std::iter::repeat_n(pad_id, width - seq.len())));
        mask.extend((0..width).map(|i| if i < seq.len() { 1f32 } else { 0. }));
    }
    let shape = (sequences.len(), width);
    Ok((Tensor::from_vec(ids, shape, device)?, Tensor::from_vec(mask, shape, device)?))
}

/// One token sequence cut or right-padded with `pad_id` to exactly `width`: ids (1, width) u32 and
/// a mask (1, width) f32 of 1 for kept tokens and 0 for padding. Upstream fits a cover's second,
/// non-cover caption to the cover caption's length this way, and encodes the padding too.
pub fn fit_to_width(mut sequence: Vec<u32>, width: usize, pad_id: u32, device: &Device) -> Result<(Tensor, Tensor)> {
    if width == 0 {
        candle_core::bail!("fit_to_width: no width to fit to");
    }
    let kept = sequence.len().min(width);
    sequence.resize(width, pad_id);
    let mask: Vec<f32> = (0..width).map(|i| if i < kept { 1. } else { 0. }).collect();
    Ok((Tensor::from_vec(sequence, (1, width), device)?, Tensor::from_vec(mask, (1, width), device)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_is_cut_or_padded_to_the_width_with_its_mask() {
        let dev = Device::Cpu;
        let (ids, mask) = fit_to_width(vec![5, 6, 7], 5, 0, &dev).unwrap();
        assert_eq!(ids.to_vec2::<u32>().unwrap(), [[5, 6, 7, 0, 0]]);
        assert_eq!(mask.to_vec2::<f32>().unwrap(), [[1., 1., 1., 0., 0.]]);
        let (ids, mask) = fit_to_width(vec![5, 6, 7], 2, 0, &dev).unwrap();
        assert_eq!(ids.to_vec2::<u32>().unwrap(), [[5, 6]]);
        assert_eq!(mask.to_vec2::<f32>().unwrap(), [[1., 1.]]);
        assert!(fit_to_width(vec![5], 0, 0, &dev).is_err());
    }
}
