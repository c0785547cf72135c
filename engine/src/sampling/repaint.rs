//! Repaint's guidance of the sampler towards the source outside the repainted window
//! (upstream `_repaint_step_injection`, `_repaint_boundary_blend`, `_resolve_repaint_config`).

use candle_core::{DType, Result, Tensor};

use super::schedule::linspace_f32;

/// How strongly repaint holds on to the source (upstream `repaint_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepaintMode {
    /// No injection and no crossfades: the model alone decides the edges.
    Aggressive,
    /// In between, set by `repaint_strength`.
    #[default]
    Balanced,
    /// Inject the source on every step and crossfade over a second of latents.
    Conservative,
}

/// What a repaint mode and strength turn into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepaintSettings {
    /// The share of steps after which the frames outside the window are reset to the noised source.
    pub injection_ratio: f64,
    /// Latent frames of linear crossfade outside each edge of the window after sampling.
    pub crossfade_frames: usize,
    /// Seconds of waveform crossfade outside each edge when splicing the decoded audio.
    pub splice_crossfade_s: f64,
}

impl RepaintMode {
    /// Upstream's table: aggressive (0, 0, 0), conservative (1, 25, 0.05), balanced with strength
    /// s: (1 − s, round(25·(1 − s)), 0.05·(1 − s)), rounding half to even like Python.
    pub fn settings(self, strength: f64) -> RepaintSettings {
        match self {
            RepaintMode::Aggressive => RepaintSettings { injection_ratio: 0.0, crossfade_frames: 0, splice_crossfade_s: 0.0 },
            RepaintMode::Conservative => {
                RepaintSettings { injection_ratio: 1.0, crossfade_frames: 25, splice_crossfade_s: 0.05 }
            }
            RepaintMode::Balanced => {
                let keep = 1.0 - strength.clamp(0.0, 1.0);
                RepaintSettings {
                    injection_ratio: keep,
                    crossfade_frames: (crate::timing::LATENT_FRAMES_PER_SECOND * keep).round_ties_even() as usize,
                    splice_crossfade_s: 0.05 * keep,
                }
            }
        }
    }
}

/// The sampler's view of a repaint: which frames are repainted and the source to hold elsewhere.
pub struct RepaintGuide {
    /// `[batch, frames]`, 1 inside the repainted window, 0 outside.
    pub mask: Tensor,
    /// `[batch, frames, channels]`, the clean VAE latents of the (padded) source.
    pub clean: Tensor,
    pub injection_ratio: f64,
    pub crossfade_frames: usize,
}

impl RepaintGuide {
    /// The steps (counted from the first) after which the injection happens:
    /// `round(ratio · steps)`, half to even.
    pub fn injection_steps(&self, steps: usize) -> usize {
        (self.injection_ratio * steps as f64).round_ties_even() as usize
    }

    /// Outside the window, replace the latents by the source noised to `t_next` with the run's
    /// initial noise: `t·noise + (1 − t)·clean`.
    pub fn inject(&self, x: &Tensor, noise: &Tensor, t_next: f32) -> Result<Tensor> {
        let t = t_next as f64;
        let noised = ((noise * t)? + (&self.clean * (1.0 - t))?)?;
        let inside = self.mask.unsqueeze(2)?.broadcast_as(x.shape())?.to_dtype(DType::U8)?;
        inside.where_cond(x, &noised)
    }

    /// After sampling: 1 inside the window, ramps over `crossfade_frames` outside each edge,
    /// 0 elsewhere; `m·x + (1 − m)·clean`.
    pub fn blend_edges(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, frames) = self.mask.dims2()?;
        let mask = self.mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let cf = self.crossfade_frames;
        let mut soft = Vec::with_capacity(batch * frames);
        for row in mask {
            let mut s = row.clone();
            let inside: Vec<usize> = (0..frames).filter(|&f| row[f] > 0.5).collect();
            if cf > 0 && !inside.is_empty() && inside.len() < frames {
                let (left, right) = (inside[0], inside[inside.len() - 1] + 1);
                // Ramps exclude both ends: torch.linspace(0, 1, n + 2)[1:-1] (float32).
                let start = left.saturating_sub(cf);
                let up = linspace_f32(0.0, 1.0, left - start + 2);
                s[start..left].copy_from_slice(&up[1..up.len() - 1]);
                let end = (right + cf).min(frames);
                let down = linspace_f32(1.0, 0.0, end - right + 2);
                s[right..end].copy_from_slice(&down[1..down.len() - 1]);
            }
            soft.extend(s);
        }
        let m = Tensor::from_vec(soft, (batch, frames, 1), x.device())?.to_dtype(x.dtype())?;
        let m = m.broadcast_as(x.shape())?;
        (m.mul(x)? + (1.0 - &m)?.mul(&self.clean)?)?.contiguous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_resolve_like_upstream() {
        let balanced = RepaintMode::Balanced.settings(0.5);
        // Python's round(12.5) is 12.
        assert_eq!((balanced.injection_ratio, balanced.crossfade_frames), (0.5, 12));
        assert!((balanced.splice_crossfade_s - 0.025).abs() < 1e-12);
        assert_eq!(RepaintMode::Conservative.settings(0.1).crossfade_frames, 25);
        assert_eq!(RepaintMode::Aggressive.settings(0.9).injection_ratio, 0.0);
    }
}
