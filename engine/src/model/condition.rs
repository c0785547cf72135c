//! Condition encoder pieces (upstream `AceStepConditionEncoder` and its parts in
//! `acestep/models/turbo/modeling_acestep_v15_turbo.py`).
//!
//! Inputs, all (B, L, C) with (B, L) masks of 1 (real) and 0 (padding):
//! - text: the Qwen3 text encoder's last hidden states, (B, Lt, text_hidden_dim), projected;
//! - lyrics: token embeddings from the Qwen3 embedding table, (B, Ll, text_hidden_dim), through
//!   the lyric encoder (bidirectional layers with a key padding mask);
//! - reference audio: N packed clips of VAE latents, (N, T, timbre_hidden_dim), with the batch
//!   item of each clip; the timbre encoder keeps one vector per clip (row 0).
//!
//! Output: one sequence per item, (B, Ll + max clips + Lt, hidden_size), valid tokens first
//! (lyrics, timbre, text), with its mask: the DiT's cross-attention states.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::{linear_b, Linear};

use super::config::AceStepConfig;
use super::nn::EncoderStack;

/// `AceStepLyricEncoder` (checkpoint prefix `encoder.lyric_encoder`).
#[derive(Debug, Clone)]
pub struct LyricEncoder {
    stack: EncoderStack,
}

impl LyricEncoder {
    pub fn new(cfg: &AceStepConfig, vb: VarBuilder) -> Result<Self> {
        let stack = EncoderStack::new(cfg, cfg.text_hidden_dim, cfg.num_lyric_encoder_hidden_layers, vb)?
            .limit_layers(cfg.num_hidden_layers);
        Ok(Self { stack })
    }

    /// `embeds` (B, L, text_hidden_dim), `mask` (B, L) with 1 for real tokens, 0 for padding.
    pub fn forward(&self, embeds: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.forward_traced(embeds, mask, &mut Vec::new())
    }

    /// As `forward`, also pushing each layer's output onto `trace` (for stage-by-stage checks).
    pub fn forward_traced(&self, embeds: &Tensor, mask: &Tensor, trace: &mut Vec<Tensor>) -> Result<Tensor> {
        self.stack.forward_traced(embeds, Some(mask), trace)
    }
}

/// `AceStepTimbreEncoder` (checkpoint prefix `encoder.timbre_encoder`).
#[derive(Debug, Clone)]
pub struct TimbreEncoder {
    stack: EncoderStack,
    /// XL's learned summary token (1, 1, hidden), read in front of each clip; `None` for the 2B
    /// models, whose forward leaves it out.
    summary_token: Option<Tensor>,
}

impl TimbreEncoder {
    /// `summarize`: whether the forward reads the stored `special_token` (XL) or, as the 2B
    /// models do, keeps the output at the clip's first frame. 2B checkpoints store the token too;
    /// it is checked for presence so a checkpoint missing it is reported, then dropped.
    pub fn new(cfg: &AceStepConfig, summarize: bool, vb: VarBuilder) -> Result<Self> {
        let special_token = vb.get((1, 1, cfg.hidden_size), "special_token")?;
        let stack = EncoderStack::new(cfg, cfg.timbre_hidden_dim, cfg.num_timbre_encoder_hidden_layers, vb)?
            .limit_layers(cfg.num_hidden_layers);
        Ok(Self { stack, summary_token: summarize.then_some(special_token) })
    }

    /// `clips` (N, T, timbre_hidden_dim); `clip_item[n]` is the batch item clip n belongs to.
    /// Returns (B, max clips per item, hidden) with clips in their packed order, zeros where an
    /// item has fewer clips, and the (B, max clips) mask. B is the largest item index + 1.
    pub fn forward(&self, clips: &Tensor, clip_item: &[usize]) -> Result<(Tensor, Tensor)> {
        let n = clips.dim(0)?;
        if clip_item.len() != n {
            candle_core::bail!("{} reference clips but {} item indices", n, clip_item.len());
        }
        // Clips are not padded: the masks only limit the sliding layers' reach.
        let embedded = self.stack.embed(clips)?;
        let per_clip = match &self.summary_token {
            Some(token) => self.stack.summarize(&embedded, token)?,
            None => self.stack.encode_traced(&embedded, None, &mut Vec::new())?.narrow(1, 0, 1)?.squeeze(1)?,
        };
        unpack_clips(&per_clip.contiguous()?, clip_item)
    }
}

/// Group per-clip vectors (N, D) by batch item: (B, max count, D) plus a (B, max count) mask.
fn unpack_clips(per_clip: &Tensor, clip_item: &[usize]) -> Result<(Tensor, Tensor)> {
    let (_, d) = per_clip.dims2()?;
    let batch = clip_item.iter().max().map_or(0, |m| m + 1);
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); batch];
    for (clip, &item) in clip_item.iter().enumerate() {
        groups[item].push(clip as u32);
    }
    let max_count = groups.iter().map(Vec::len).max().unwrap_or(0);
    let device = per_clip.device();
    let mut rows = Vec::with_capacity(batch);
    let mut mask = Vec::with_capacity(batch * max_count);
    for group in &groups {
        let mut row = per_clip.index_select(&Tensor::new(group.as_slice(), device)?, 0)?;
        if group.len() < max_count {
            let pad = Tensor::zeros((max_count - group.len(), d), per_clip.dtype(), device)?;
            row = Tensor::cat(&[&row, &pad], 0)?;
        }
        rows.push(row);
        mask.extend((0..max_count).map(|i| if i < group.len() { 1f32 } else { 0.0 }));
    }
    Ok((Tensor::stack(&rows, 0)?, Tensor::from_vec(mask, (batch, max_count), device)?))
}

/// Concatenate two masked sequences and move each item's valid tokens to the front, keeping
/// their order (upstream `pack_sequences`): (B, L1, D) + (B, L2, D) -> (B, L1 + L2, D), and the
/// new mask (1 for the first `valid` positions of each item).
pub fn pack_sequences(a: &Tensor, b: &Tensor, mask_a: &Tensor, mask_b: &Tensor) -> Result<(Tensor, Tensor)> {
    let states = Tensor::cat(&[a, b], 1)?;
    let masks: Vec<Vec<f32>> = Tensor::cat(&[mask_a, mask_b], 1)?.to_dtype(DType::F32)?.to_vec2()?;
    let (batch, len, _) = states.dims3()?;
    let device = states.device();
    let mut rows = Vec::with_capacity(batch);
    let mut new_mask = Vec::with_capacity(batch * len);
    for (item, mask) in masks.iter().enumerate() {
        let valid = (0..len as u32).filter(|&i| mask[i as usize] != 0.0);
        let padding = (0..len as u32).filter(|&i| mask[i as usize] == 0.0);
        let order: Vec<u32> = valid.chain(padding).collect();
        rows.push(states.get(item)?.index_select(&Tensor::new(order.as_slice(), device)?, 0)?);
        let count = mask.iter().filter(|m| **m != 0.0).count();
        new_mask.extend((0..len).map(|i| if i < count { 1f32 } else { 0.0 }));
    }
    Ok((Tensor::stack(&rows, 0)?, Tensor::from_vec(new_mask, (batch, len), device)?))
}

/// `AceStepConditionEncoder` (checkpoint prefix `encoder`).
#[derive(Debug, Clone)]
pub struct ConditionEncoder {
    text_projector: Linear,
    lyric_encoder: LyricEncoder,
    timbre_encoder: TimbreEncoder,
}

/// What the condition encoder reads for one batch. Masks are (B, L) of 1 and 0.
pub struct ConditionInputs<'a> {
    pub text: &'a Tensor,
    pub text_mask: &'a Tensor,
    pub lyrics: &'a Tensor,
    pub lyric_mask: &'a Tensor,
    pub reference_clips: &'a Tensor,
    pub clip_item: &'a [usize],
}

impl ConditionEncoder {
    /// `cfg` at the encoder's width ([`AceStepConfig::encoder_config`]); `xl_timbre` as
    /// [`TimbreEncoder::new`]'s `summarize`.
    pub fn new(cfg: &AceStepConfig, xl_timbre: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            text_projector: linear_b(cfg.text_hidden_dim, cfg.hidden_size, false, vb.pp("text_projector"))?,
            lyric_encoder: LyricEncoder::new(cfg, vb.pp("lyric_encoder"))?,
            timbre_encoder: TimbreEncoder::new(cfg, xl_timbre, vb.pp("timbre_encoder"))?,
        })
    }

    pub fn timbre_encoder(&self) -> &TimbreEncoder {
        &self.timbre_encoder
    }

    /// The packed cross-attention states (B, L, hidden) and their mask (B, L).
    pub fn forward(&self, inputs: &ConditionInputs) -> Result<(Tensor, Tensor)> {
        let text = self.text_projector.forward(inputs.text)?;
        let lyrics = self.lyric_encoder.forward(inputs.lyrics, inputs.lyric_mask)?;
        let (timbre, timbre_mask) = self.timbre_encoder.forward(inputs.reference_clips, inputs.clip_item)?;
        let lyric_mask = inputs.lyric_mask.to_dtype(DType::F32)?;
        let (states, mask) = pack_sequences(&lyrics, &timbre, &lyric_mask, &timbre_mask)?;
        pack_sequences(&states, &text, &mask, &inputs.text_mask.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn packing_moves_valid_tokens_first_in_order() {
        let dev = Device::Cpu;
        // Item 0: a = [1, 2(pad)], b = [3]; item 1: a = [4(pad), 5(pad)], b = [6].
        let a = Tensor::new(&[[[1f32], [2.]], [[4.], [5.]]], &dev).unwrap();
        let b = Tensor::new(&[[[3f32]], [[6.]]], &dev).unwrap();
        let ma = Tensor::new(&[[1f32, 0.], [0., 0.]], &dev).unwrap();
        let mb = Tensor::new(&[[1f32], [1.]], &dev).unwrap();
        let (s, m) = pack_sequences(&a, &b, &ma, &mb).unwrap();
        assert_eq!(s.squeeze(2).unwrap().to_vec2::<f32>().unwrap(), [[1., 3., 2.], [6., 4., 5.]]);
        assert_eq!(m.to_vec2::<f32>().unwrap(), [[1., 1., 0.], [1., 0., 0.]]);
    }

    #[test]
    fn clips_are_grouped_by_item_in_order() {
        let dev = Device::Cpu;
        let per_clip = Tensor::new(&[[10f32], [20.], [30.]], &dev).unwrap();
        let (g, m) = unpack_clips(&per_clip, &[1, 0, 1]).unwrap();
        assert_eq!(g.squeeze(2).unwrap().to_vec2::<f32>().unwrap(), [[20., 0.], [10., 30.]]);
        assert_eq!(m.to_vec2::<f32>().unwrap(), [[1., 0.], [1., 1.]]);
    }
}
