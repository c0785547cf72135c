//! `config.json` of an ACE-Step 1.5 DiT checkpoint folder (`acestep-v15-turbo/`,
//! `acestep-v15-base/`, ...), as upstream's `AceStepConfig` writes it
//! (`acestep/models/common/configuration_acestep_v15.py`). Field names are the JSON keys; keys the
//! engine does not read are ignored. Nothing here is hard-coded to the published 2B sizes, so
//! tiny test checkpoints run the same code.
//!
//! The XL (4B) DiTs add four `encoder_*` keys: their decoder is wider than their condition
//! encoder, audio tokenizer and detokenizer, which keep the 2B widths
//! (`models/xl_turbo/modeling_acestep_v15_xl_turbo.py`, `AceStepConditionGenerationModel`).

use serde::Deserialize;

/// Attention layout of one transformer layer (`layer_types` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    /// Attends to every position.
    FullAttention,
    /// Attends to positions within `sliding_window` on either side (bidirectional).
    SlidingAttention,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AceStepConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Per-head width; upstream falls back to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Per layer; upstream's default alternates sliding (even) and full (odd) layers.
    #[serde(default)]
    pub layer_types: Option<Vec<LayerType>>,
    pub max_position_embeddings: usize,
    /// Width of the Qwen3 text encoder's hidden states fed to the condition encoder.
    pub text_hidden_dim: usize,
    pub timbre_hidden_dim: usize,
    /// Latent channels of the VAE (64).
    pub audio_acoustic_hidden_dim: usize,
    /// Channels entering the DiT: noisy latents + context latents + chunk mask (192).
    pub in_channels: usize,
    pub patch_size: usize,
    pub pool_window_size: usize,
    pub fsq_dim: usize,
    pub fsq_input_levels: Vec<u32>,
    pub num_lyric_encoder_hidden_layers: usize,
    pub num_timbre_encoder_hidden_layers: usize,
    pub num_attention_pooler_hidden_layers: usize,
    /// Width of the condition encoder, audio tokenizer and detokenizer when it differs from the
    /// decoder's (XL: 2048 beside a 2560-wide decoder); the three below likewise.
    #[serde(default)]
    pub encoder_hidden_size: Option<usize>,
    #[serde(default)]
    pub encoder_intermediate_size: Option<usize>,
    #[serde(default)]
    pub encoder_num_attention_heads: Option<usize>,
    #[serde(default)]
    pub encoder_num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub is_turbo: bool,
    #[serde(default)]
    pub model_version: Option<String>,
}

impl AceStepConfig {
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The attention layout of layer `index` of any of the model's transformer stacks (upstream
    /// indexes the same `layer_types` list from each stack).
    pub fn layer_type(&self, index: usize) -> LayerType {
        match &self.layer_types {
            Some(types) => types.get(index).copied().unwrap_or(LayerType::FullAttention),
            None if index.is_multiple_of(2) => LayerType::SlidingAttention,
            None => LayerType::FullAttention,
        }
    }

    /// The config the condition encoder, the audio tokenizer and the detokenizer are built from:
    /// this one with the `encoder_*` widths in place of the decoder's, as upstream copies it.
    pub fn encoder_config(&self) -> AceStepConfig {
        AceStepConfig {
            hidden_size: self.condition_width(),
            intermediate_size: self.encoder_intermediate_size.unwrap_or(self.intermediate_size),
            num_attention_heads: self.encoder_num_attention_heads.unwrap_or(self.num_attention_heads),
            num_key_value_heads: self.encoder_num_key_value_heads.unwrap_or(self.num_key_value_heads),
            ..self.clone()
        }
    }

    /// Width of the condition states the decoder's `condition_embedder` takes in.
    pub fn condition_width(&self) -> usize {
        self.encoder_hidden_size.unwrap_or(self.hidden_size)
    }

    /// Whether this is an XL model: a decoder wider than its condition encoder. Besides the widths,
    /// XL's timbre encoder differs in one thing: it reads its learned `special_token` in front of
    /// the reference frames and keeps that position's output (the 2B code has the line commented
    /// out and keeps frame 0's).
    pub fn is_xl(&self) -> bool {
        self.condition_width() != self.hidden_size
    }

    /// The sliding window of a sliding layer, `None` when sliding is switched off. Upstream
    /// then gives sliding layers no mask at all, not even the padding mask.
    pub fn sliding_window(&self) -> Option<usize> {
        self.sliding_window.filter(|_| self.use_sliding_window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiny config written by upstream's own `AceStepConfig.to_json_file`.
    const UPSTREAM_TINY: &str = include_str!("../../../tests/parity/fixtures/config.json");

    #[test]
    fn reads_the_config_upstream_writes() {
        let cfg = AceStepConfig::from_json(UPSTREAM_TINY).unwrap();
        assert_eq!((cfg.hidden_size, cfg.head_dim(), cfg.num_key_value_heads), (64, 16, 2));
        assert_eq!(cfg.layer_type(0), LayerType::SlidingAttention);
        assert_eq!(cfg.layer_type(1), LayerType::FullAttention);
        assert_eq!(cfg.sliding_window(), Some(4));
        assert_eq!(cfg.fsq_input_levels, [8, 8, 8, 5, 5, 5]);
        // AceStepConfig's defaults: the turbo model flag off, version string "turbo".
        assert!(!cfg.is_turbo);
        assert_eq!(cfg.model_version.as_deref(), Some("turbo"));
    }

    #[test]
    fn derived_values_follow_upstream_defaults() {
        let mut value: serde_json::Value = serde_json::from_str(UPSTREAM_TINY).unwrap();
        let obj = value.as_object_mut().unwrap();
        obj.remove("head_dim");
        obj.remove("layer_types");
        obj.insert("use_sliding_window".into(), false.into());
        let cfg: AceStepConfig = serde_json::from_value(value).unwrap();
        assert_eq!(cfg.head_dim(), 64 / 4);
        assert_eq!(cfg.layer_type(2), LayerType::SlidingAttention);
        assert_eq!(cfg.layer_type(3), LayerType::FullAttention);
        assert_eq!(cfg.sliding_window(), None);
    }

    #[test]
    fn the_xl_keys_split_the_encoder_from_the_decoder() {
        // The XL widths as the published XL config.json states them.
        let mut value: serde_json::Value = serde_json::from_str(UPSTREAM_TINY).unwrap();
        let xl = serde_json::json!({
            "hidden_size": 2560, "intermediate_size": 9728, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128, "encoder_hidden_size": 2048, "encoder_intermediate_size": 6144,
            "encoder_num_attention_heads": 16, "encoder_num_key_value_heads": 8,
        });
        value.as_object_mut().unwrap().extend(xl.as_object().unwrap().clone());
        let cfg: AceStepConfig = serde_json::from_value(value).unwrap();
        assert!(cfg.is_xl());
        let encoder = cfg.encoder_config();
        assert_eq!((encoder.hidden_size, encoder.intermediate_size, encoder.num_attention_heads), (2048, 6144, 16));
        assert_eq!((encoder.num_key_value_heads, encoder.head_dim()), (8, 128));
        // A 2B config has none of the keys: the encoder is the decoder's width.
        let two_b = AceStepConfig::from_json(UPSTREAM_TINY).unwrap();
        assert!(!two_b.is_xl());
        assert_eq!(two_b.encoder_config(), two_b);
    }

    #[test]
    fn a_missing_size_is_an_error_naming_it() {
        let mut value: serde_json::Value = serde_json::from_str(UPSTREAM_TINY).unwrap();
        value.as_object_mut().unwrap().remove("hidden_size");
        let err = serde_json::from_value::<AceStepConfig>(value).unwrap_err().to_string();
        assert!(err.contains("hidden_size"), "{err}");
    }
}
