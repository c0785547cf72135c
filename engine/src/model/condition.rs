//! Condition encoder pieces (upstream `AceStepConditionEncoder` and its parts in
//! `acestep/models/turbo/modeling_acestep_v15_turbo.py`).
//!
//! So far: the lyric encoder. Lyric token embeddings from the Qwen3 text model's embedding table,
//! (B, L, text_hidden_dim), are projected to the model width and run through bidirectional
//! encoder layers with a key padding mask: (B, L, text_hidden_dim) -> (B, L, hidden_size).

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, RmsNorm, VarBuilder};

use super::config::AceStepConfig;
use super::nn::{rms_norm, EncoderLayer, EncoderMasks, RotaryEmbedding};

/// `AceStepLyricEncoder` (checkpoint prefix `encoder.lyric_encoder`).
#[derive(Debug, Clone)]
pub struct LyricEncoder {
    embed_tokens: Linear,
    layers: Vec<EncoderLayer>,
    norm: RmsNorm,
    rope: RotaryEmbedding,
    cfg: AceStepConfig,
}

impl LyricEncoder {
    pub fn new(cfg: &AceStepConfig, vb: VarBuilder) -> Result<Self> {
        // Upstream builds `num_lyric_encoder_hidden_layers` layers but runs only the first
        // `num_hidden_layers` of them; the extra ones are loaded and never used.
        let layers = (0..cfg.num_lyric_encoder_hidden_layers)
            .map(|i| EncoderLayer::new(cfg, i, vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens: linear(cfg.text_hidden_dim, cfg.hidden_size, vb.pp("embed_tokens"))?,
            layers,
            norm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?,
            rope: RotaryEmbedding::for_config(cfg, vb.device())?,
            cfg: cfg.clone(),
        })
    }

    /// `embeds` (B, L, text_hidden_dim), `mask` (B, L) with 1 for real tokens, 0 for padding.
    pub fn forward(&self, embeds: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.forward_traced(embeds, mask, &mut Vec::new())
    }

    /// As `forward`, also pushing each layer's output onto `trace` (for stage-by-stage checks).
    pub fn forward_traced(&self, embeds: &Tensor, mask: &Tensor, trace: &mut Vec<Tensor>) -> Result<Tensor> {
        let (b, l, _) = embeds.dims3()?;
        let masks = EncoderMasks::new(&self.cfg, b, l, Some(mask), embeds.device())?;
        let mut x = self.embed_tokens.forward(embeds)?;
        for layer in self.layers.iter().take(self.cfg.num_hidden_layers) {
            x = layer.forward(&x, &self.rope, masks.for_layer(layer.layer_type))?;
            trace.push(x.clone());
        }
        self.norm.forward(&x)
    }
}
