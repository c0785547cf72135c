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
//! The network is candle-transformers' `qwen3::Model`; the tokenizer is the checkpoint's
//! `tokenizer.json` through the `tokenizers` crate, whose `TemplateProcessing` post-processor
//! appends `<|endoftext|>` as transformers does.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Embedding, Init, VarBuilder};
use candle_transformers::models::qwen3::{Config, Model};
use tokenizers::{PostProcessor, Tokenizer, TruncationDirection};

/// Upstream's token limit for caption prompts (`conditioning_text.py`, `truncation=True`).
pub const CAPTION_MAX_TOKENS: usize = 256;
/// Upstream's token limit for lyric prompts.
pub const LYRIC_MAX_TOKENS: usize = 2048;

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

/// Qwen3-Embedding's transformer and its embedding table.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    /// Never run: each `encode` runs a clone, because `Model::forward` appends to a KV cache that
    /// only the crate itself can clear. Cloning copies no weights (tensors are shared).
    pristine: Model,
    /// The same table the model holds (shared, not a copy), for the lyric path.
    embed_tokens: Embedding,
    max_positions: usize,
}

impl TextEncoder {
    /// `vb` at the checkpoint root, whose names carry no `model.` prefix (`embed_tokens.weight`,
    /// `layers.N...`, `norm.weight`), as `Qwen3Model.save_pretrained` writes them.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let table = vb.get((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight")?;
        let backend = Qwen3Names { inner: vb.clone(), embed_tokens: table.clone() };
        let renamed = VarBuilder::from_backend(Box::new(backend), vb.dtype(), vb.device().clone());
        Ok(Self {
            pristine: Model::new(cfg, renamed)?,
            embed_tokens: Embedding::new(table, cfg.hidden_size),
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
        self.pristine.clone().forward(ids, 0)
    }

    /// Lyric path: token ids (B, L) u32 to their embeddings (B, L, hidden), no transformer layers.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        ids.dims2()?;
        self.embed_tokens.forward(ids)
    }
}

/// Serves candle's `model.`-prefixed qwen3 names from the un-prefixed checkpoint, handing out the
/// already loaded embedding table so the model and the lyric path share one copy (600 MB in f32).
struct Qwen3Names<'a> {
    inner: VarBuilder<'a>,
    embed_tokens: Tensor,
}

impl Qwen3Names<'_> {
    fn name(name: &str) -> &str {
        name.strip_prefix("model.").unwrap_or(name)
    }
}

impl SimpleBackend for Qwen3Names<'_> {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let name = Self::name(name);
        if name == "embed_tokens.weight" {
            if self.embed_tokens.shape() != &s {
                candle_core::bail!("shape mismatch for {name}: {:?}, expected {s:?}", self.embed_tokens.shape());
            }
            return self.embed_tokens.to_dtype(dtype)?.to_device(dev);
        }
        self.inner.get_with_hints_dtype(s, name, h, dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.inner.get_unchecked_dtype(Self::name(name), dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(Self::name(name))
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
