//! Synthetic checkpoint folders in the published layout, with random weights deterministic from a
//! seed: a tiny set (small widths, few layers, the VAE's real strides) for tests and the demo, and
//! a full-size set (the published shapes) for load, memory and speed work.
//!
//! Tensor names and shapes are not listed here: each model's own constructor is run against a
//! recording VarBuilder backend, so the files hold exactly what the loaders ask for. Values come
//! from a per-tensor generator seeded by the tensor's name, so they do not depend on the order in
//! which the constructors ask.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result as CandleResult, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use serde_json::{json, Value};

use super::{torch_pt, CheckpointError, BASE_FOLDER, LM_FOLDERS, TEXT_ENCODER_FOLDER, TURBO_FOLDER, VAE_FOLDER};
use crate::model::causal_lm::CausalLm;
use crate::model::acestep::AceStepModel;
use crate::model::config::AceStepConfig;
use crate::model::text_encoder::{self, TextEncoder};
use crate::model::vae::{Vae, VaeConfig};

/// One tensor a constructor asked for.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// The constructor's init hint; `Const(1)` marks norm weights.
    pub init: Init,
}

/// Records every `get` and hands out zero-stride zeros, so even full-size models cost nothing.
struct RecordingBackend {
    seen: Arc<Mutex<BTreeMap<String, TensorSpec>>>,
}

impl SimpleBackend for RecordingBackend {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, device: &Device) -> CandleResult<Tensor> {
        let spec = TensorSpec { name: name.to_string(), shape: shape.dims().to_vec(), init };
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_string()).or_insert(spec);
        Tensor::zeros((), dtype, device)?.broadcast_as(shape)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> CandleResult<Tensor> {
        candle_core::bail!("the recording backend needs a shape for `{name}`")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// The tensors `construct` asks for, sorted by name.
pub fn record_tensors<T>(construct: impl FnOnce(VarBuilder<'static>) -> CandleResult<T>) -> CandleResult<Vec<TensorSpec>> {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let vb = VarBuilder::from_backend(Box::new(RecordingBackend { seen: seen.clone() }), DType::F32, Device::Cpu);
    construct(vb)?;
    let specs = seen.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
    Ok(specs)
}

/// SplitMix64: small, fast and good enough for synthetic weights.
struct Rng(u64);

impl Rng {
    fn for_tensor(seed: u64, name: &str) -> Self {
        // FNV-1a of the name, mixed with the seed.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        Self(hash ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Two standard normal samples (Box-Muller).
    fn normal_pair(&mut self) -> (f32, f32) {
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let a = std::f64::consts::TAU * v;
        ((r * a.cos()) as f32, (r * a.sin()) as f32)
    }
}

/// How a synthetic tensor's values are drawn: `mean + std · N(0, 1)`.
pub type ValueRule = fn(&TensorSpec) -> (f32, f32);

/// Default values: norm weights near 1, matrices scaled by 1/sqrt(fan-in), small vectors.
pub fn default_values(spec: &TensorSpec) -> (f32, f32) {
    match spec.init {
        Init::Const(c) if c != 0.0 => (c as f32, 0.05),
        _ if spec.shape.len() >= 2 => {
            let fan_in: usize = spec.shape[1..].iter().product();
            (0.0, 1.0 / (fan_in.max(1) as f32).sqrt())
        }
        _ => (0.0, 0.02),
    }
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "BF16",
        DType::F16 => "F16",
        _ => "F32",
    }
}

/// Write a safetensors file tensor by tensor (never holding more than one in memory).
pub fn write_safetensors(path: &Path, specs: &[TensorSpec], dtype: DType, seed: u64, values: ValueRule) -> Result<u64, CheckpointError> {
    let io = |e: std::io::Error| CheckpointError::io(path, e);
    let element = dtype.size_in_bytes() as u64;
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({ "format": "pt", "backline_synthetic_seed": seed.to_string() }));
    let mut offset = 0u64;
    for spec in specs {
        let bytes = spec.shape.iter().product::<usize>() as u64 * element;
        header.insert(
            spec.name.clone(),
            json!({ "dtype": dtype_name(dtype), "shape": spec.shape, "data_offsets": [offset, offset + bytes] }),
        );
        offset += bytes;
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).expect("a JSON map serialises");
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }

    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).map_err(io)?);
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    let mut buffer = Vec::new();
    for spec in specs {
        let count: usize = spec.shape.iter().product();
        let (mean, std) = values(spec);
        let mut rng = Rng::for_tensor(seed, &spec.name);
        buffer.clear();
        for _ in 0..count.div_ceil(2) {
            let (a, b) = rng.normal_pair();
            buffer.push(mean + std * a);
            buffer.push(mean + std * b);
        }
        buffer.truncate(count);
        match dtype {
            DType::BF16 => buffer.iter().try_for_each(|v| out.write_all(&half::bf16::from_f32(*v).to_le_bytes())),
            DType::F16 => buffer.iter().try_for_each(|v| out.write_all(&half::f16::from_f32(*v).to_le_bytes())),
            _ => buffer.iter().try_for_each(|v| out.write_all(&v.to_le_bytes())),
        }
        .map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(8 + header.len() as u64 + offset)
}

fn write_json(path: &Path, value: &Value) -> Result<(), CheckpointError> {
    let text = serde_json::to_string_pretty(value).expect("JSON serialises");
    std::fs::write(path, text + "\n").map_err(|e| CheckpointError::io(path, e))
}

fn create_dir(dir: &Path) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| CheckpointError::io(dir, e))
}

/// Size of the synthetic set a caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthSize {
    /// Small widths and few layers: a few MB, for tests and the demo.
    Tiny,
    /// The published shapes (2B DiT, full VAE and text encoder).
    Full,
}

/// A DiT `config.json` with every field upstream's `AceStepConfig` writes.
pub fn dit_config_json(size: SynthSize, turbo: bool) -> Value {
    let (hidden, intermediate, layers, heads, kv_heads, head_dim, window, text_dim, lyric, timbre, pooler) = match size {
        SynthSize::Tiny => (64, 128, 2, 4, 2, 16, 16, 32, 2, 1, 1),
        SynthSize::Full => (2048, 6144, 24, 16, 8, 128, 128, 1024, 8, 4, 2),
    };
    let layer_types: Vec<&str> =
        (0..layers).map(|i| if i % 2 == 0 { "sliding_attention" } else { "full_attention" }).collect();
    let mut config = json!({
        "architectures": ["AceStepConditionGenerationModel"],
        "model_type": "acestep",
        "model_version": if turbo { "turbo" } else { "base" },
        "is_turbo": turbo,
        "torch_dtype": if size == SynthSize::Full { "bfloat16" } else { "float32" },
        "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
        "hidden_act": "silu", "max_position_embeddings": 32768, "initializer_range": 0.02,
        "rms_norm_eps": 1e-6, "use_cache": true, "tie_word_embeddings": true, "rope_theta": 1000000,
        "rope_scaling": null, "attention_bias": false, "use_sliding_window": true,
        "sliding_window": window, "layer_types": layer_types, "attention_dropout": 0.0,
    });
    let rest = json!({
        "vocab_size": 64003, "fsq_dim": hidden, "fsq_input_levels": [8, 8, 8, 5, 5, 5],
        "fsq_input_num_quantizers": 1, "num_lyric_encoder_hidden_layers": lyric,
        "audio_acoustic_hidden_dim": 64, "pool_window_size": 5, "text_hidden_dim": text_dim,
        "in_channels": 192, "data_proportion": 0.5, "timestep_mu": -0.4, "timestep_sigma": 1.0,
        "timbre_hidden_dim": 64, "num_timbre_encoder_hidden_layers": timbre, "timbre_fix_frame": 750,
        "patch_size": 2, "num_attention_pooler_hidden_layers": pooler,
        "num_audio_decoder_hidden_layers": layers, "lyric_alignment_layers_config": null,
    });
    if let (Some(config), Value::Object(rest)) = (config.as_object_mut(), rest) {
        config.extend(rest);
    }
    config
}

/// The folder ACE-Step publishes the XL turbo DiT in (`model_downloader.py`).
pub const XL_TURBO_FOLDER: &str = "acestep-v15-xl-turbo";

/// An XL DiT `config.json`: the 2B config with the XL decoder (published: hidden 2560, MLP 9728,
/// 32 layers, 32 query / 8 KV heads of 128) and the `encoder_*` keys keeping the condition
/// encoder, tokenizer and detokenizer at the 2B widths (2048, 6144, 16 / 8 heads). The tiny
/// variant keeps the same relations: a decoder wider than the encoder, and query heads whose
/// total width differs from the hidden size.
pub fn xl_dit_config_json(size: SynthSize, turbo: bool) -> Value {
    let mut config = dit_config_json(size, turbo);
    let encoder = config.clone();
    let (hidden, intermediate, layers, heads, kv_heads) = match size {
        SynthSize::Tiny => (80, 192, 3, 8, 2),
        SynthSize::Full => (2560, 9728, 32, 32, 8),
    };
    let layer_types: Vec<&str> =
        (0..layers).map(|i| if i % 2 == 0 { "sliding_attention" } else { "full_attention" }).collect();
    let xl = json!({
        "model_version": if turbo { "xl_turbo" } else { "xl_base" },
        "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "layer_types": layer_types,
        "num_audio_decoder_hidden_layers": layers,
        "encoder_hidden_size": encoder["hidden_size"], "encoder_intermediate_size": encoder["intermediate_size"],
        "encoder_num_attention_heads": encoder["num_attention_heads"],
        "encoder_num_key_value_heads": encoder["num_key_value_heads"],
    });
    if let (Some(config), Value::Object(xl)) = (config.as_object_mut(), xl) {
        config.extend(xl);
    }
    config
}

/// Write one DiT folder: config.json, model.safetensors and silence_latent.pt.
pub fn write_dit_folder(dir: &Path, config: &Value, dtype: DType, seed: u64, silence_frames: usize) -> Result<u64, CheckpointError> {
    create_dir(dir)?;
    let cfg: AceStepConfig = serde_json::from_value(config.clone())
        .map_err(|e| CheckpointError::Model { folder: dir.into(), message: format!("synthetic config: {e}") })?;
    let specs = record_tensors(|vb| AceStepModel::new(&cfg, vb))
        .map_err(|e| CheckpointError::Model { folder: dir.into(), message: e.to_string() })?;
    write_json(&dir.join("config.json"), config)?;
    let bytes = write_safetensors(&dir.join("model.safetensors"), &specs, dtype, seed, default_values)?;

    // Published statistics of the real silence latent: mean about -0.21, std about 0.96.
    let mut rng = Rng::for_tensor(seed, "silence_latent");
    let channels = cfg.audio_acoustic_hidden_dim;
    let values: Vec<f32> = (0..channels * silence_frames).map(|_| -0.21 + 0.96 * rng.normal_pair().0).collect();
    let silence = Tensor::from_vec(values, (1, channels, silence_frames), &Device::Cpu)
        .map_err(|e| CheckpointError::Model { folder: dir.into(), message: e.to_string() })?;
    torch_pt::write_tensor(&dir.join("silence_latent.pt"), &silence)?;
    Ok(bytes)
}

/// Values for the VAE: weight-norm gains below 1 and Snake's log-scale α, β near 0 keep the
/// activations of a random Oobleck stack from growing block after block.
pub fn vae_values(spec: &TensorSpec) -> (f32, f32) {
    if spec.name.ends_with("weight_g") {
        (0.5, 0.05)
    } else if spec.name.ends_with("alpha") || spec.name.ends_with("beta") {
        (0.0, 0.05)
    } else {
        default_values(spec)
    }
}

/// The VAE's `config.json` as diffusers writes it: the published one, or the tiny variant with
/// the real strides, the 64 latent channels the DiT needs and narrow decoder.
pub fn vae_config_json(size: SynthSize) -> Value {
    let (multiples, decoder_channels) = match size {
        SynthSize::Tiny => (json!([1, 1, 1, 1, 1]), 16),
        SynthSize::Full => (json!([1, 2, 4, 8, 16]), 128),
    };
    json!({
        "_class_name": "AutoencoderOobleck",
        "_diffusers_version": "0.34.0",
        "audio_channels": 2,
        "channel_multiples": multiples,
        "decoder_channels": decoder_channels,
        "decoder_input_channels": 64,
        "downsampling_ratios": [2, 4, 4, 6, 10],
        "encoder_hidden_size": 128,
        "sampling_rate": 48000,
    })
}

/// Write the `vae/` folder: config.json and diffusion_pytorch_model.safetensors.
pub fn write_vae_folder(dir: &Path, config: &Value, dtype: DType, seed: u64) -> Result<u64, CheckpointError> {
    create_dir(dir)?;
    let model_error = |e: String| CheckpointError::Model { folder: dir.into(), message: e };
    let cfg: VaeConfig = serde_json::from_value(config.clone()).map_err(|e| model_error(format!("synthetic config: {e}")))?;
    let specs = record_tensors(|vb| Vae::new(&cfg, vb)).map_err(|e| model_error(e.to_string()))?;
    write_json(&dir.join("config.json"), config)?;
    write_safetensors(&dir.join("diffusion_pytorch_model.safetensors"), &specs, dtype, seed, vae_values)
}

/// A small byte-level BPE tokenizer in Qwen's format (its split regex, `<|endoftext|>`,
/// `<|im_start|>`, `<|im_end|>` and the post-processor appending `<|endoftext|>`), trained by the
/// Python `tokenizers` library on a small corpus (`tests/parity/make_fixtures.py`); 643 tokens.
pub const TINY_TOKENIZER_JSON: &str = include_str!("../../../tests/parity/fixtures/tokenizer.json");

/// The text encoder's `config.json` as transformers writes a `Qwen3Config`: Qwen3-Embedding-0.6B's
/// sizes, or a tiny model as wide as the tiny DiT's text input.
pub fn text_encoder_config_json(size: SynthSize) -> Value {
    let (vocab, hidden, intermediate, layers, heads, kv_heads, head_dim) = match size {
        SynthSize::Tiny => (1024, 32, 64, 2, 4, 2, 8),
        SynthSize::Full => (151_669, 1024, 3072, 28, 16, 8, 128),
    };
    let dims = Qwen3Dims { vocab, hidden, intermediate, layers, heads, kv_heads, head_dim };
    qwen3_config_json("Qwen3Model", dims, 32768, size == SynthSize::Full)
}

/// The sizes that tell Qwen3 models apart.
#[derive(Debug, Clone, Copy)]
struct Qwen3Dims {
    vocab: usize,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// A `config.json` as transformers writes a `Qwen3Config` (tied embeddings, no sliding window).
fn qwen3_config_json(architecture: &str, d: Qwen3Dims, max_positions: usize, bf16: bool) -> Value {
    json!({
        "architectures": [architecture],
        "model_type": "qwen3",
        "vocab_size": d.vocab, "hidden_size": d.hidden, "intermediate_size": d.intermediate,
        "num_hidden_layers": d.layers, "num_attention_heads": d.heads, "num_key_value_heads": d.kv_heads,
        "head_dim": d.head_dim, "hidden_act": "silu", "max_position_embeddings": max_positions,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000, "tie_word_embeddings": true,
        "attention_bias": false, "attention_dropout": 0.0, "use_sliding_window": false,
        "sliding_window": null, "max_window_layers": d.layers, "use_cache": true,
        "torch_dtype": if bf16 { "bfloat16" } else { "float32" },
    })
}

/// The tokenizer's vocabulary and merges as the published Qwen3 folder also ships them
/// (`vocab.json`, `merges.txt`), for tools that read those instead of `tokenizer.json`.
fn write_bpe_files(dir: &Path) -> Result<(), CheckpointError> {
    let tokenizer: Value = serde_json::from_str(TINY_TOKENIZER_JSON).expect("the bundled tokenizer is JSON");
    let model = &tokenizer["model"];
    write_json(&dir.join("vocab.json"), &model["vocab"])?;
    let mut merges = String::from("#version: 0.2\n");
    for pair in model["merges"].as_array().into_iter().flatten() {
        // A pair, or (the older format) one string of both.
        let parts: Vec<&str> = match pair.as_str() {
            Some(both) => vec![both],
            None => pair.as_array().into_iter().flatten().filter_map(Value::as_str).collect(),
        };
        merges.push_str(&parts.join(" "));
        merges.push('\n');
    }
    let path = dir.join("merges.txt");
    std::fs::write(&path, merges).map_err(|e| CheckpointError::io(&path, e))
}

/// Write the text encoder folder: config.json, model.safetensors, tokenizer.json, and the
/// vocabulary and merges beside it.
pub fn write_text_encoder_folder(dir: &Path, config: &Value, dtype: DType, seed: u64) -> Result<u64, CheckpointError> {
    create_dir(dir)?;
    let model_error = |e: String| CheckpointError::Model { folder: dir.into(), message: e };
    let cfg = text_encoder::config_from_json(&config.to_string()).map_err(|e| model_error(format!("synthetic config: {e}")))?;
    let specs = record_tensors(|vb| TextEncoder::new(&cfg, vb)).map_err(|e| model_error(e.to_string()))?;
    write_json(&dir.join("config.json"), config)?;
    std::fs::write(dir.join("tokenizer.json"), TINY_TOKENIZER_JSON).map_err(|e| CheckpointError::io(&dir.join("tokenizer.json"), e))?;
    write_bpe_files(dir)?;
    write_safetensors(&dir.join("model.safetensors"), &specs, dtype, seed, default_values)
}

/// Which published 5 Hz LM a synthetic LM folder has the shapes of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmSize {
    /// Tiny widths with the real vocabulary (the tiny set's `acestep-5Hz-lm-0.6B`).
    Tiny,
    Lm0_6B,
    Lm1_7B,
    Lm4B,
}

impl LmSize {
    pub fn folder(self) -> &'static str {
        match self {
            LmSize::Tiny | LmSize::Lm0_6B => LM_FOLDERS[0],
            LmSize::Lm1_7B => LM_FOLDERS[1],
            LmSize::Lm4B => LM_FOLDERS[2],
        }
    }
}

/// The published vocabulary: Qwen3's 151,643 BPE tokens, its 26 special tokens (151643 to
/// 151668), then `<|audio_code_0|>` to `<|audio_code_65534|>`.
pub const LM_VOCAB: usize = 217_204;
const LM_FIRST_SPECIAL: usize = 151_643;
const LM_FIRST_CODE: usize = 151_669;
/// Qwen3's special tokens in id order from 151643.
const QWEN3_SPECIALS: [&str; 26] = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
];

/// The LM's `config.json` as transformers writes a `Qwen3Config` for `Qwen3ForCausalLM`.
pub fn lm_config_json(size: LmSize) -> Value {
    let (hidden, intermediate, layers, heads, kv_heads, head_dim) = match size {
        LmSize::Tiny => (16, 32, 2, 4, 2, 8),
        LmSize::Lm0_6B => (1024, 3072, 28, 16, 8, 128),
        LmSize::Lm1_7B => (2048, 6144, 28, 16, 8, 128),
        LmSize::Lm4B => (2560, 9728, 36, 32, 8, 128),
    };
    let dims = Qwen3Dims { vocab: LM_VOCAB, hidden, intermediate, layers, heads, kv_heads, head_dim };
    let mut config = qwen3_config_json("Qwen3ForCausalLM", dims, 40960, size != LmSize::Tiny);
    let ids = json!({ "bos_token_id": LM_FIRST_SPECIAL, "eos_token_id": LM_FIRST_SPECIAL + 2, "pad_token_id": LM_FIRST_SPECIAL });
    config.as_object_mut().expect("an object").extend(ids.as_object().expect("an object").clone());
    config
}

/// A tokenizer with the published LM's vocabulary layout: the tiny byte-level BPE's 640 tokens,
/// unreachable filler up to 151642 (no merge produces them), Qwen3's special tokens and the
/// 65,535 audio-code tokens at their published ids, as added tokens so prompt text holding them
/// encodes to one id each. No post-processor adds tokens, as in Qwen3's own `tokenizer.json`.
pub fn lm_tokenizer_json() -> Value {
    let mut tokenizer: Value = serde_json::from_str(TINY_TOKENIZER_JSON).expect("the bundled tokenizer is JSON");
    let vocab = tokenizer["model"]["vocab"].as_object_mut().expect("a BPE vocabulary");
    vocab.retain(|_, id| id.as_u64().is_some_and(|id| (id as usize) < LM_FIRST_SPECIAL));
    let bpe = vocab.len();
    for id in bpe..LM_FIRST_SPECIAL {
        vocab.insert(format!("<|filler_{id}|>"), json!(id));
    }
    let mut added = Vec::with_capacity(LM_VOCAB - LM_FIRST_SPECIAL);
    let specials = QWEN3_SPECIALS.iter().map(|t| (t.to_string(), !t.contains("think")));
    let codes = (0..LM_VOCAB - LM_FIRST_CODE).map(|c| (format!("<|audio_code_{c}|>"), false));
    for (offset, (content, special)) in specials.chain(codes).enumerate() {
        let id = LM_FIRST_SPECIAL + offset;
        vocab.insert(content.clone(), json!(id));
        added.push(json!({
            "id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": special,
        }));
    }
    tokenizer["added_tokens"] = Value::Array(added);
    tokenizer["post_processor"] = json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false });
    tokenizer
}

/// What transformers' `AutoTokenizer` reads beside `tokenizer.json`: the class, EOS and padding,
/// and a chat template that renders system, user and assistant turns as Qwen3's does
/// (`<|im_start|>{role}\n{content}<|im_end|>\n`, then `<|im_start|>assistant\n` as the
/// generation prompt) for the messages upstream's LM prompts hold.
pub fn lm_tokenizer_config_json() -> Value {
    json!({
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": null,
        "add_bos_token": false,
        "add_prefix_space": false,
        "errors": "replace",
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": false,
        "split_special_tokens": false,
        "chat_template": "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
    })
}

/// Values for the LM: the default rule, but embeddings (the tied head) at unit scale so the tiny
/// model's next-token distributions are peaked, as a trained LM's are, not near uniform.
fn lm_values(spec: &TensorSpec) -> (f32, f32) {
    if spec.name.ends_with("embed_tokens.weight") {
        (0.0, 1.0)
    } else {
        default_values(spec)
    }
}

/// Write a 5 Hz LM folder: config.json, model.safetensors, tokenizer.json, tokenizer_config.json.
pub fn write_lm_folder(dir: &Path, size: LmSize, seed: u64) -> Result<u64, CheckpointError> {
    create_dir(dir)?;
    let config = lm_config_json(size);
    let model_error = |e: String| CheckpointError::Model { folder: dir.into(), message: e };
    let cfg = text_encoder::config_from_json(&config.to_string()).map_err(|e| model_error(format!("synthetic config: {e}")))?;
    let specs = record_tensors(|vb| CausalLm::new(&cfg, vb)).map_err(|e| model_error(e.to_string()))?;
    write_json(&dir.join("config.json"), &config)?;
    // Compact: the vocabulary makes it large, and every load parses it.
    let tokenizer_path = dir.join("tokenizer.json");
    std::fs::write(&tokenizer_path, lm_tokenizer_json().to_string()).map_err(|e| CheckpointError::io(&tokenizer_path, e))?;
    write_json(&dir.join("tokenizer_config.json"), &lm_tokenizer_config_json())?;
    let dtype = if size == LmSize::Tiny { DType::F32 } else { DType::BF16 };
    write_safetensors(&dir.join("model.safetensors"), &specs, dtype, seed, lm_values)
}

/// What a synthetic set wrote.
#[derive(Debug, Clone)]
pub struct SynthReport {
    pub folders: Vec<(PathBuf, u64)>,
}

/// Frames of silence latent a synthetic DiT folder holds: the published file's 600 s at 25 Hz,
/// or 60 s in the tiny set.
fn silence_frames(size: SynthSize) -> usize {
    match size {
        SynthSize::Tiny => 1500,
        SynthSize::Full => 15000,
    }
}

/// Write a synthetic checkpoint set under `root` in the published folder layout.
pub fn write_set(root: &Path, size: SynthSize, seed: u64) -> Result<SynthReport, CheckpointError> {
    let silence_frames = silence_frames(size);
    let dtype = match size {
        SynthSize::Tiny => DType::F32,
        SynthSize::Full => DType::BF16,
    };
    let mut folders = Vec::new();
    for (name, turbo, folder_seed) in [(TURBO_FOLDER, true, seed), (BASE_FOLDER, false, seed + 1)] {
        let dir = root.join(name);
        let bytes = write_dit_folder(&dir, &dit_config_json(size, turbo), dtype, folder_seed, silence_frames)?;
        folders.push((dir, bytes));
    }
    // The published VAE file is 16-bit; the tiny one is too, which also exercises that path.
    let vae_dir = root.join(VAE_FOLDER);
    let bytes = write_vae_folder(&vae_dir, &vae_config_json(size), DType::BF16, seed + 2)?;
    folders.push((vae_dir, bytes));
    let text_dir = root.join(TEXT_ENCODER_FOLDER);
    let bytes = write_text_encoder_folder(&text_dir, &text_encoder_config_json(size), dtype, seed + 3)?;
    folders.push((text_dir, bytes));
    if size == SynthSize::Tiny {
        let lm_dir = root.join(LmSize::Tiny.folder());
        let bytes = write_lm_folder(&lm_dir, LmSize::Tiny, seed + 5)?;
        folders.push((lm_dir, bytes));
    }
    Ok(SynthReport { folders })
}

/// Write the XL turbo DiT folder under `root` (`acestep-v15-xl-turbo/`), stored in f32 as the
/// published XL weights are (about 20 GB at full size).
pub fn write_xl_turbo(root: &Path, size: SynthSize, seed: u64) -> Result<(PathBuf, u64), CheckpointError> {
    let dir = root.join(XL_TURBO_FOLDER);
    let bytes = write_dit_folder(&dir, &xl_dit_config_json(size, true), DType::F32, seed, silence_frames(size))?;
    Ok((dir, bytes))
}
