//! The whole ACE-Step 1.5 DiT checkpoint (upstream `AceStepConditionGenerationModel`): the
//! condition encoder (`encoder.*`), the diffusion transformer (`decoder.*`) and the null
//! condition for classifier-free guidance (`null_condition_emb`).

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;

use super::condition::{ConditionEncoder, ConditionInputs};
use super::config::AceStepConfig;
use super::dit::{ConditionKv, DiT};

#[derive(Debug, Clone)]
pub struct AceStepModel {
    pub config: AceStepConfig,
    pub encoder: ConditionEncoder,
    pub decoder: DiT,
    /// (1, 1, hidden): what replaces every condition position on the unconditional CFG branch.
    null_condition_emb: Tensor,
}

/// What one request's diffusion reads besides the noisy latents.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The packed encoder states (B, L, hidden) and their mask (B, L).
    pub states: Tensor,
    pub mask: Tensor,
    /// `[source latents, chunk mask]` (B, T, 2A).
    pub context: Tensor,
}

impl AceStepModel {
    /// `vb` at the checkpoint's root (tensor names `encoder.*`, `decoder.*`, ...).
    pub fn new(cfg: &AceStepConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            config: cfg.clone(),
            encoder: ConditionEncoder::new(cfg, vb.pp("encoder"))?,
            decoder: DiT::new(cfg, vb.pp("decoder"))?,
            null_condition_emb: vb.get((1, 1, cfg.hidden_size), "null_condition_emb")?,
        })
    }

    /// Encode the condition and assemble the context latents from the source latents (B, T, A)
    /// and the chunk mask (B, T, A), which is 1 where the model generates and 0 where it keeps
    /// the source.
    pub fn prepare_condition(&self, inputs: &ConditionInputs, src_latents: &Tensor, chunk_mask: &Tensor) -> Result<Condition> {
        let (states, mask) = self.encoder.forward(inputs)?;
        let context = Tensor::cat(&[src_latents, &chunk_mask.to_dtype(src_latents.dtype())?], D::Minus1)?;
        Ok(Condition { states, mask, context })
    }

    /// The unconditional branch's encoder states: the null embedding at every position of
    /// `states` (upstream `null_condition_emb.expand_as(encoder_hidden_states)`).
    pub fn null_condition(&self, states: &Tensor) -> Result<Tensor> {
        self.null_condition_emb.to_dtype(states.dtype())?.broadcast_as(states.shape())?.contiguous()
    }

    /// The decoder's cross-attention keys and values for `states`, computed once per request.
    pub fn condition_kv(&self, states: &Tensor) -> Result<ConditionKv> {
        self.decoder.condition_kv(states)
    }
}
