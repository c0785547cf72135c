//! Flow-matching samplers. The model predicts the velocity `v = noise − x0`; `x_t = t·noise +
//! (1 − t)·x0`, integrated from t = 1 (pure noise) towards 0 (`model-spec.md` section 3).
//!
//! One loop serves turbo and base/SFT. It covers the Euler ODE and SDE updates, CFG with APG or
//! ADG inside an interval, and the cover controls (`cover_noise_strength` start point,
//! `audio_cover_strength` switch). Repaint adds its step injection and edge blend. Where turbo's
//! and base's loops differ upstream, [`SamplerKind`] keeps each one's behaviour.

pub mod guidance;
pub mod noise;
pub mod repaint;
pub mod schedule;

use candle_core::{Result, Tensor};

pub use guidance::{Guidance, GuidanceMethod};
pub use noise::SeededNoise;
pub use repaint::{RepaintGuide, RepaintMode, RepaintSettings};
pub use schedule::{base_schedule, turbo_schedule, TURBO_STEPS};

/// How the latents move from one timestep to the next: the request's `infer_method`
/// (`api/http/release_task_models.py:91`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InferMethod {
    /// Euler steps along the predicted velocity: deterministic.
    #[default]
    Ode,
    /// Jump to the clean estimate, then re-noise it to the next timestep with fresh noise.
    Sde,
}

/// Whose loop to follow where turbo's and base's differ upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// The last step jumps to x0 and ends the loop before any repaint injection; SDE re-noises
    /// to the next scheduled timestep.
    Turbo,
    /// Every step, the last included, is followed by the repaint injection while it lasts; SDE
    /// re-noises to `1 − (k + 1)/n`, ignoring the shift (upstream's quirk, kept for parity).
    Base,
}

/// Everything that shapes one sampling run but the model.
pub struct SamplerConfig {
    pub kind: SamplerKind,
    /// The timesteps, ending with the terminal 0 (`n + 1` values for `n` steps).
    pub timesteps: Vec<f32>,
    pub method: InferMethod,
    /// CFG, or `None` for a single conditional evaluation per step (turbo).
    pub guidance: Option<Guidance>,
    /// The share of the steps that use the cover condition before switching to text2music's.
    pub audio_cover_strength: f64,
}

/// Where the run starts: pure noise, or (cover) the source latents noised to a later timestep.
pub enum Start<'a> {
    Noise,
    /// `cover_noise_strength` ∈ (0, 1]: start at the scheduled timestep nearest `1 − strength`
    /// from `t·noise + (1 − t)·source`, with the raw VAE latents of the source.
    Source { latents: &'a Tensor, cover_noise_strength: f64 },
}

/// One run's starting material.
pub struct RunInputs<'a> {
    /// The initial noise `[batch, frames, 64]` (repaint injects the source noised with it).
    pub noise: Tensor,
    pub start: Start<'a>,
    pub repaint: Option<&'a RepaintGuide>,
    /// Where SDE steps draw their fresh noise: the generators that drew `noise`, continued.
    pub fresh_noise: &'a mut SeededNoise,
}

/// What the model is asked for at one step.
pub struct StepInput<'a> {
    pub index: usize,
    pub count: usize,
    pub t: f32,
    pub x: &'a Tensor,
    /// Whether this step uses the cover condition (before the `audio_cover_strength` switch).
    pub cover: bool,
    /// Whether this step needs the unconditional prediction too (CFG on and inside its interval).
    pub guided: bool,
}

/// The model's answer: the conditional velocity and, when asked for, the unconditional one.
pub struct Prediction {
    pub cond: Tensor,
    pub uncond: Option<Tensor>,
}

/// What the sampler reports after each step.
pub struct Step<'a> {
    pub index: usize,
    pub count: usize,
    pub t: f32,
    /// The latents the model was given at this step and the (guided) velocity applied.
    pub xt: &'a Tensor,
    pub velocity: &'a Tensor,
}

impl SamplerConfig {
    /// Number of steps before a cover start truncates the schedule.
    pub fn steps(&self) -> usize {
        self.timesteps.len().saturating_sub(1)
    }

    /// Runs the sampler. `model` evaluates the DiT; `on_step` sees every step and may stop the
    /// run by returning an error (cancellation). Returns the clean latents `[batch, frames, 64]`.
    pub fn run(
        &self,
        inputs: RunInputs,
        mut model: impl FnMut(StepInput) -> Result<Prediction>,
        mut on_step: impl FnMut(Step) -> Result<()>,
    ) -> Result<Tensor> {
        let RunInputs { noise: initial_noise, start, repaint, fresh_noise } = inputs;
        let (_, frames, channels) = initial_noise.dims3()?;
        let (mut xt, timesteps) = match start {
            Start::Source { latents, cover_noise_strength } if cover_noise_strength > 0.0 => {
                let first = schedule::cover_start_index(&self.timesteps, cover_noise_strength);
                let t = self.timesteps[first] as f64;
                let x = ((&initial_noise * t)? + (latents * (1.0 - t))?)?;
                (x, &self.timesteps[first..])
            }
            _ => (initial_noise.clone(), &self.timesteps[..]),
        };
        let count = timesteps.len() - 1;
        let cover_steps = (count as f64 * self.audio_cover_strength) as usize;
        let injection_steps = repaint.map_or(0, |r| r.injection_steps(count));
        let mut apg = self.guidance.filter(|g| g.method == GuidanceMethod::Apg).map(|g| guidance::Apg::new(g.scale));

        for index in 0..count {
            let (t, t_next) = (timesteps[index], timesteps[index + 1]);
            let guided = self.guidance.is_some_and(|g| g.applies_at(t));
            let prediction = model(StepInput { index, count, t, x: &xt, cover: index < cover_steps, guided })?;
            let velocity = match (self.guidance, prediction.uncond) {
                (Some(g), Some(uncond)) if guided => match g.method {
                    GuidanceMethod::Apg => apg.as_mut().expect("APG state exists").guide(&prediction.cond, &uncond)?,
                    GuidanceMethod::Adg => guidance::adg(&xt, &prediction.cond, &uncond, t, g.scale)?,
                },
                (Some(_), None) if guided => candle_core::bail!("guided step {index} got no unconditional prediction"),
                _ => prediction.cond,
            };
            on_step(Step { index, count, t, xt: &xt, velocity: &velocity })?;

            let last = index + 1 == count;
            xt = if last {
                // Straight to the clean estimate (the same as an Euler step to t = 0).
                (&xt - (&velocity * t as f64)?)?
            } else {
                match self.method {
                    // Upstream takes dt between the float32 timesteps in double precision.
                    InferMethod::Ode => (&xt - (&velocity * (t as f64 - t_next as f64) as f32 as f64)?)?,
                    InferMethod::Sde => {
                        let clean = (&xt - (&velocity * t as f64)?)?;
                        let renoise_to = match self.kind {
                            SamplerKind::Turbo => t_next as f64,
                            SamplerKind::Base => 1.0 - (index + 1) as f64 / count as f64,
                        };
                        let fresh = fresh_noise.draw(frames, channels, xt.device())?;
                        ((fresh * renoise_to)? + (clean * (1.0 - renoise_to))?)?
                    }
                }
            };
            let t_after = if last { 0.0 } else { self.renoised_timestep(index, count, t_next) };
            let injects = index < injection_steps && !(last && self.kind == SamplerKind::Turbo);
            if let (Some(r), true) = (repaint, injects) {
                xt = r.inject(&xt, &initial_noise, t_after)?;
            }
        }
        match repaint {
            Some(r) if r.crossfade_frames > 0 => r.blend_edges(&xt),
            _ => Ok(xt),
        }
    }

    /// The timestep the latents are at after step `index`: the next scheduled one, except base's
    /// SDE, which re-noises to the unshifted `1 − (k + 1)/n`.
    fn renoised_timestep(&self, index: usize, count: usize, t_next: f32) -> f32 {
        match (self.method, self.kind) {
            (InferMethod::Sde, SamplerKind::Base) => (1.0 - (index + 1) as f64 / count as f64) as f32,
            _ => t_next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn straight_flow_run(method: InferMethod, kind: SamplerKind) -> (Tensor, Tensor) {
        // With the true velocity of a straight path every sampler must land on x0.
        let x0 = Tensor::new(&[[[0.5f32; 16], [-2.0; 16]]], &Device::Cpu).unwrap();
        let config = SamplerConfig {
            kind,
            timesteps: base_schedule(4, 3.0),
            method,
            guidance: None,
            audio_cover_strength: 1.0,
        };
        let mut fresh_noise = SeededNoise::new(&[3]);
        let noise = fresh_noise.draw(2, 16, &Device::Cpu).unwrap();
        let inputs = RunInputs { noise, start: Start::Noise, repaint: None, fresh_noise: &mut fresh_noise };
        let out = config
            .run(inputs, |s| Ok(Prediction { cond: (s.x - &x0)?.affine(1.0 / s.t as f64, 0.0)?, uncond: None }), |_| Ok(()))
            .unwrap();
        (out, x0)
    }

    #[test]
    fn ode_and_sde_recover_a_straight_flow() {
        for method in [InferMethod::Ode, InferMethod::Sde] {
            for kind in [SamplerKind::Turbo, SamplerKind::Base] {
                let (out, x0) = straight_flow_run(method, kind);
                let err: f32 = (out - x0).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
                assert!(err < 1e-5, "{method:?} {kind:?}: {err}");
            }
        }
    }

    #[test]
    fn cancelling_in_on_step_stops_the_run() {
        let config = SamplerConfig {
            kind: SamplerKind::Turbo,
            timesteps: turbo_schedule(8, 3.0),
            method: InferMethod::Ode,
            guidance: None,
            audio_cover_strength: 1.0,
        };
        let mut calls = 0;
        let mut fresh_noise = SeededNoise::new(&[1]);
        let noise = fresh_noise.draw(4, 16, &Device::Cpu).unwrap();
        let result = config.run(
            RunInputs { noise, start: Start::Noise, repaint: None, fresh_noise: &mut fresh_noise },
            |s| {
                calls += 1;
                Ok(Prediction { cond: s.x.zeros_like()?, uncond: None })
            },
            |s| if s.index == 2 { candle_core::bail!("cancelled") } else { Ok(()) },
        );
        assert!(result.is_err());
        assert_eq!(calls, 3);
    }
}
