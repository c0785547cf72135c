//! The ACE-Step 1.5 networks in candle, sized entirely from the checkpoints' `config.json`.
//!
//! - `config`: the DiT checkpoint's `config.json`.
//! - `nn`: shared blocks (RMSNorm, RoPE, GQA attention with q/k norms, SwiGLU MLP, encoder layer).
//! - `condition`: the condition encoder (lyric encoder so far).

pub mod condition;
pub mod config;
pub mod nn;
