//! The audio tokenizer and detokenizer: 25 Hz VAE latents <-> 5 Hz codes (upstream
//! `AceStepAudioTokenizer` with its `AttentionPooler`, and `AudioTokenDetokenizer`).
//!
//! Tokenize: latents are cut into windows of `pool_window_size` frames; each window is projected,
//! a learned summary token is put in front, a small bidirectional encoder runs over the window and
//! the summary token's output is quantized (FSQ). Detokenize: each quantized state is repeated
//! over a window, a learned per-position offset is added, the encoder runs over the window and the
//! result is projected back to latent channels: the "LM hints" a cover is conditioned on.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::linear::{linear, Linear};

use super::config::AceStepConfig;
use super::fsq::Fsq;
use super::nn::EncoderStack;

/// `AttentionPooler` (prefix `tokenizer.attention_pooler`).
#[derive(Debug, Clone)]
pub struct AttentionPooler {
    stack: EncoderStack,
    special_token: Tensor,
}

impl AttentionPooler {
    pub fn new(cfg: &AceStepConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            stack: EncoderStack::new(cfg, cfg.hidden_size, cfg.num_attention_pooler_hidden_layers, vb.clone())?,
            special_token: vb.get((1, 1, cfg.hidden_size), "special_token")?,
        })
    }

    /// (B, N, W, hidden) windows -> (B, N, hidden), one summary per window.
    pub fn forward(&self, windows: &Tensor) -> Result<Tensor> {
        let (b, n, w, h) = windows.dims4()?;
        let x = self.stack.embed(&windows.reshape((b * n, w, h))?)?;
        self.stack.summarize(&x, &self.special_token)?.reshape((b, n, h))
    }
}

/// `AceStepAudioTokenizer` (prefix `tokenizer`).
#[derive(Debug, Clone)]
pub struct AudioTokenizer {
    audio_acoustic_proj: Linear,
    attention_pooler: AttentionPooler,
    quantizer: Fsq,
    window: usize,
}

impl AudioTokenizer {
    pub fn new(cfg: &AceStepConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.fsq_dim != cfg.hidden_size {
            candle_core::bail!(
                "fsq_dim ({}) must equal hidden_size ({}): the pooler's output is what is quantized",
                cfg.fsq_dim,
                cfg.hidden_size
            );
        }
        Ok(Self {
            audio_acoustic_proj: linear(cfg.audio_acoustic_hidden_dim, cfg.hidden_size, vb.pp("audio_acoustic_proj"))?,
            attention_pooler: AttentionPooler::new(cfg, vb.pp("attention_pooler"))?,
            quantizer: Fsq::new(cfg.fsq_dim, &cfg.fsq_input_levels, vb.pp("quantizer"))?,
            window: cfg.pool_window_size,
        })
    }

    pub fn quantizer(&self) -> &Fsq {
        &self.quantizer
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Latents (B, T, A) with T a multiple of the window -> (quantized (B, T / W, hidden),
    /// code indices (B, T / W) u32).
    pub fn forward(&self, latents: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t, a) = latents.dims3()?;
        if t % self.window != 0 {
            candle_core::bail!("tokenizer input has {t} frames, not a multiple of the {}-frame window", self.window);
        }
        let windows = latents.reshape((b, t / self.window, self.window, a))?;
        let pooled = self.attention_pooler.forward(&self.audio_acoustic_proj.forward(&windows)?)?;
        self.quantizer.forward(&pooled)
    }

    /// Pad `latents` (B, T, A) at the end to a whole number of windows with the first frames of
    /// `silence` (1, S, A), as upstream `tokenize` does, and tokenize.
    pub fn tokenize(&self, latents: &Tensor, silence: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t, _) = latents.dims3()?;
        let pad = (self.window - t % self.window) % self.window;
        if pad == 0 {
            return self.forward(latents);
        }
        if silence.dim(1)? < pad {
            candle_core::bail!("the silence latent has {} frames, {pad} are needed for padding", silence.dim(1)?);
        }
        let fill = silence.narrow(0, 0, 1)?.narrow(1, 0, pad)?.repeat((b, 1, 1))?;
        self.forward(&Tensor::cat(&[latents, &fill.to_dtype(latents.dtype())?], 1)?)
    }
}

/// `AudioTokenDetokenizer` (prefix `detokenizer`).
#[derive(Debug, Clone)]
pub struct AudioDetokenizer {
    stack: EncoderStack,
    special_tokens: Tensor,
    proj_out: Linear,
    window: usize,
}

impl AudioDetokenizer {
    pub fn new(cfg: &AceStepConfig, vb: VarBuilder) -> Result<Self> {
        let (h, w) = (cfg.hidden_size, cfg.pool_window_size);
        Ok(Self {
            stack: EncoderStack::new(cfg, h, cfg.num_attention_pooler_hidden_layers, vb.clone())?,
            special_tokens: vb.get((1, w, h), "special_tokens")?,
            proj_out: linear(h, cfg.audio_acoustic_hidden_dim, vb.pp("proj_out"))?,
            window: w,
        })
    }

    /// Quantized states (B, N, hidden) -> 25 Hz hints (B, N·W, A).
    pub fn forward(&self, quantized: &Tensor) -> Result<Tensor> {
        let (b, n, h) = quantized.dims3()?;
        let x = self.stack.embed(quantized)?.unsqueeze(2)?.broadcast_as((b, n, self.window, h))?;
        let x = x.broadcast_add(&self.special_tokens.unsqueeze(0)?)?.reshape((b * n, self.window, h))?;
        let x = self.stack.encode_traced(&x, None, &mut Vec::new())?;
        let x = self.proj_out.forward(&x)?;
        x.reshape((b, n * self.window, x.dim(D::Minus1)?))
    }
}
