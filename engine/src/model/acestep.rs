//! The whole ACE-Step 1.5 DiT checkpoint (upstream `AceStepConditionGenerationModel`): the
//! condition encoder (`encoder.*`), the diffusion transformer (`decoder.*`), the audio tokenizer
//! and detokenizer (`tokenizer.*`, `detokenizer.*`) and the null condition for classifier-free
//! guidance (`null_condition_emb`).

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;

use super::condition::{ConditionEncoder, ConditionInputs};
use super::config::AceStepConfig;
use super::dit::{ConditionKv, DiT};
use super::tokenizer::{AudioDetokenizer, AudioTokenizer};

#[derive(Debug, Clone)]
pub struct AceStepModel {
    pub config: AceStepConfig,
    pub encoder: ConditionEncoder,
    pub decoder: DiT,
    pub tokenizer: AudioTokenizer,
    pub detokenizer: AudioDetokenizer,
    /// (1, 1, condition width): what replaces every condition position on the unconditional CFG
    /// branch.
    null_condition_emb: Tensor,
}

/// What one request's diffusion reads besides the noisy latents.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The packed encoder states (B, L, condition width) and their mask (B, L).
    pub states: Tensor,
    pub mask: Tensor,
    /// `[source latents, chunk mask]` (B, T, 2A).
    pub context: Tensor,
}

/// The source side of a request: what the context latents are built from.
pub struct SourceInputs<'a> {
    /// Source latents (B, T, A): the captured audio's VAE latents, or silence.
    pub latents: &'a Tensor,
    /// (B, T, A): 1 where the model generates, 0 where it keeps the source.
    pub chunk_mask: &'a Tensor,
    /// Per item: a cover, whose source is replaced by its own FSQ round trip (the 25 Hz hints).
    pub is_cover: &'a [bool],
    /// The checkpoint's silence latent (1, S, A), which pads the last tokenizer window.
    pub silence: &'a Tensor,
}

impl AceStepModel {
    /// `vb` at the checkpoint's root (tensor names `encoder.*`, `decoder.*`, ...).
    pub fn new(cfg: &AceStepConfig, vb: VarBuilder) -> Result<Self> {
        // Everything but the decoder runs at the condition width (narrower than the decoder in XL).
        let encoder_cfg = cfg.encoder_config();
        Ok(Self {
            config: cfg.clone(),
            encoder: ConditionEncoder::new(&encoder_cfg, cfg.is_xl(), vb.pp("encoder"))?,
            decoder: DiT::new(cfg, vb.pp("decoder"))?,
            tokenizer: AudioTokenizer::new(&encoder_cfg, vb.pp("tokenizer"))?,
            detokenizer: AudioDetokenizer::new(&encoder_cfg, vb.pp("detokenizer"))?,
            null_condition_emb: vb.get((1, 1, encoder_cfg.hidden_size), "null_condition_emb")?,
        })
    }

    /// Encode the condition and assemble the context latents.
    pub fn prepare_condition(&self, inputs: &ConditionInputs, source: &SourceInputs) -> Result<Condition> {
        let (states, mask) = self.encoder.forward(inputs)?;
        let context = self.context_latents(source)?;
        Ok(Condition { states, mask, context })
    }

    /// `[source, chunk mask]` (B, T, 2A), where a cover item's source is its 25 Hz hints.
    pub fn context_latents(&self, source: &SourceInputs) -> Result<Tensor> {
        let src = source.latents;
        let (batch, frames, _) = src.dims3()?;
        if source.is_cover.len() != batch {
            candle_core::bail!("{} cover flags for a batch of {batch}", source.is_cover.len());
        }
        let src = if source.is_cover.iter().any(|&c| c) {
            let hints = self.lm_hints(src, source.silence)?;
            let rows = (0..batch)
                .map(|i| if source.is_cover[i] { hints.get(i) } else { src.get(i) })
                .collect::<Result<Vec<_>>>()?;
            Tensor::stack(&rows, 0)?
        } else {
            src.clone()
        };
        debug_assert_eq!(src.dim(1)?, frames);
        Tensor::cat(&[&src, &source.chunk_mask.to_dtype(src.dtype())?], D::Minus1)
    }

    /// The FSQ round trip of latents (B, T, A): tokenize (padding with silence), detokenize, crop
    /// back to T frames.
    pub fn lm_hints(&self, latents: &Tensor, silence: &Tensor) -> Result<Tensor> {
        let (quantized, _) = self.tokenizer.tokenize(latents, silence)?;
        self.detokenizer.forward(&quantized)?.narrow(1, 0, latents.dim(1)?)
    }

    /// The 25 Hz hints (1, N·W, A) of N audio codes (e.g. parsed from `<|audio_code_N|>` text).
    pub fn hints_from_codes(&self, codes: &[u32]) -> Result<Tensor> {
        let indices = Tensor::from_slice(codes, (1, codes.len()), self.null_condition_emb.device())?;
        let quantized = self.tokenizer.quantizer().output_from_indices(&indices)?;
        self.detokenizer.forward(&quantized)
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
