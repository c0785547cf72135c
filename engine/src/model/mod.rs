//! The ACE-Step 1.5 networks in candle, sized entirely from the checkpoints' `config.json`. The
//! CPU kernels they call live below them, in `crate::kernels`.
//!
//! - `config`: the DiT checkpoint's `config.json`.
//! - `linear`: the Linear layer, dense or with packed weights (`crate::precision`).
//! - `nn`: shared blocks (RMSNorm, RoPE, GQA attention with q/k norms, SwiGLU MLP, encoder layer).
//! - `condition`: the condition encoder (text projection, lyric and timbre encoders, packing).
//! - `dit`: the diffusion transformer.
//! - `fsq`: the finite scalar quantizer of the 5 Hz audio codes, and their `<|audio_code_N|>` text.
//! - `tokenizer`: the audio tokenizer (attention pooler + FSQ) and detokenizer.
//! - `acestep`: the whole DiT checkpoint (encoder, decoder, tokenizers, null condition).
//! - `vae`: the VAE (diffusers' `AutoencoderOobleck`): stereo audio to latents and back.
//! - `causal_lm`: the 5 Hz LM's network (Qwen3 causal LM with a key/value cache; `crate::lm` runs it).
//! - `text_encoder`: Qwen3-Embedding-0.6B (caption hidden states, lyric embeddings) and the prompt
//!   tokenizer.

pub mod acestep;
pub mod causal_lm;
pub mod condition;
pub mod config;
pub mod dit;
pub mod fsq;
pub mod linear;
pub mod nn;
pub mod text_encoder;
pub mod tokenizer;
pub mod vae;
