//! Classifier-free guidance for the base and SFT models: APG (the default) and ADG, as upstream's
//! `acestep/models/common/apg_guidance.py` computes them.
//!
//! Both work on `[batch, frames, channels]` velocities. They run on the host in plain loops so
//! every intermediate has upstream's precision (some steps are float64 there): the tensors are
//! small next to a DiT forward, even at 10 minutes of audio.

use candle_core::{DType, Result, Tensor};

/// Which guidance rule combines the conditional and unconditional velocities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuidanceMethod {
    /// Adaptive projected guidance: momentum on the difference, a norm clamp, and only the part
    /// orthogonal to the conditional velocity is added.
    Apg,
    /// Angle-based dynamic guidance: rotates the conditional clean estimate away from the
    /// unconditional one by a clipped angle.
    Adg,
}

/// CFG settings: the scale, the rule, and the timesteps it applies at (inclusive interval).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guidance {
    pub scale: f64,
    pub method: GuidanceMethod,
    pub interval: (f64, f64),
}

impl Guidance {
    /// Whether the step at `t` is guided (upstream compares the float32 timestep with the
    /// interval's ends).
    pub fn applies_at(&self, t: f32) -> bool {
        let t = t as f64;
        t >= self.interval.0 && t <= self.interval.1
    }
}

/// APG's momentum (−0.75), its norm clamp (2.5) and the running state one sampling run keeps.
pub struct Apg {
    scale: f64,
    running: Option<Vec<f32>>,
}

const APG_MOMENTUM: f32 = -0.75;
const APG_NORM_THRESHOLD: f32 = 2.5;

/// Shape of a velocity: (batch, frames, channels).
fn dims3(t: &Tensor) -> Result<(usize, usize, usize)> {
    t.dims3()
}

fn host_values(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

impl Apg {
    pub fn new(scale: f64) -> Self {
        Self { scale, running: None }
    }

    /// One guided velocity. Norms and the projection run along the time axis, per (item,
    /// channel), as upstream calls it with `dims=[1]`.
    pub fn guide(&mut self, cond: &Tensor, uncond: &Tensor) -> Result<Tensor> {
        let (batch, frames, channels) = dims3(cond)?;
        let c = host_values(cond)?;
        let u = host_values(uncond)?;
        let mut diff: Vec<f32> = c.iter().zip(&u).map(|(c, u)| c - u).collect();
        // Momentum: m ← d + (−0.75)·m_prev; the first step has no history.
        if let Some(prev) = &self.running {
            for (d, p) in diff.iter_mut().zip(prev) {
                *d += APG_MOMENTUM * p;
            }
        }
        self.running = Some(diff.clone());

        let mut out = c.clone();
        let at = |b: usize, f: usize, ch: usize| (b * frames + f) * channels + ch;
        for b in 0..batch {
            for ch in 0..channels {
                // Clamp the difference's norm over time to 2.5 (float32, like upstream).
                let norm = (0..frames).map(|f| diff[at(b, f, ch)].powi(2)).sum::<f32>().sqrt();
                let clamp = (APG_NORM_THRESHOLD / norm).min(1.0);
                // Remove the part parallel to the conditional velocity, in float64.
                let c_norm = (0..frames).map(|f| (c[at(b, f, ch)] as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
                let dot: f64 =
                    (0..frames).map(|f| (diff[at(b, f, ch)] * clamp) as f64 * (c[at(b, f, ch)] as f64 / c_norm)).sum();
                for f in 0..frames {
                    let i = at(b, f, ch);
                    let d = (diff[i] * clamp) as f64;
                    let orthogonal = (d - dot * (c[i] as f64 / c_norm)) as f32;
                    out[i] = c[i] + (self.scale - 1.0) as f32 * orthogonal;
                }
            }
        }
        Tensor::from_vec(out, (batch, frames, channels), cond.device())?.to_dtype(cond.dtype())
    }
}

/// ADG's angle clip: upstream writes π/6 as `3.14 / 6`, and parity keeps that value.
#[allow(clippy::approx_constant)]
const ADG_ANGLE_CLIP: f64 = 3.14 / 6.0;

/// One ADG-guided velocity at timestep `sigma` for the latents `x` the model was given.
pub fn adg(x: &Tensor, cond: &Tensor, uncond: &Tensor, sigma: f32, scale: f64) -> Result<Tensor> {
    let (batch, frames, channels) = dims3(cond)?;
    let (xs, c, u) = (host_values(x)?, host_values(cond)?, host_values(uncond)?);
    let weight = if scale - 1.0 > 0.0 { scale - 1.0 } else { 0.0 } + 1e-3;
    let mut out = vec![0f32; xs.len()];
    for row in 0..batch * frames {
        let span = row * channels..(row + 1) * channels;
        // Clean estimates x̂ = x − σ·v under each condition (float32).
        let hat_c: Vec<f32> = span.clone().map(|i| xs[i] - sigma * c[i]).collect();
        let hat_u: Vec<f32> = span.clone().map(|i| xs[i] - sigma * u[i]).collect();
        let diff: Vec<f32> = hat_c.iter().zip(&hat_u).map(|(a, b)| a - b).collect();

        // The angle between them (float64), scaled by the weight and clipped.
        let norm_c = hat_c.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        let norm_u = hat_u.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        let cos = hat_c.iter().zip(&hat_u).map(|(&a, &b)| (a as f64 / norm_c) * (b as f64 / norm_u)).sum::<f64>();
        let theta = cos.clamp(-1.0 + 1e-6, 1.0 - 1e-6).acos();
        let theta_new = (weight * theta).clamp(-ADG_ANGLE_CLIP, ADG_ANGLE_CLIP);

        // The difference's component perpendicular to the unconditional estimate (float32).
        let dot = diff.iter().zip(&hat_u).map(|(a, b)| a * b).sum::<f32>();
        let norm_sq = hat_u.iter().map(|v| v * v).sum::<f32>();
        let along = dot / (norm_sq + 1e-8);
        for (k, i) in span.enumerate() {
            let perp = diff[k] - along * hat_u[k];
            let rotated = if theta.sin() > 1e-3 {
                perp as f64 * theta_new.sin() / theta.sin()
            } else {
                (perp * weight as f32) as f64
            };
            let new = theta_new.cos() * hat_c[k] as f64 + rotated;
            out[i] = ((xs[i] as f64 - new) / sigma as f64) as f32;
        }
    }
    Tensor::from_vec(out, (batch, frames, channels), cond.device())?.to_dtype(cond.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn tensor(values: Vec<f32>, shape: (usize, usize, usize)) -> Tensor {
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn apg_adds_nothing_parallel_to_the_conditional_velocity() {
        // A difference that is a multiple of v_c has no orthogonal part: APG returns v_c.
        let cond = tensor(vec![1.0, 2.0, -1.0, 0.5], (1, 4, 1));
        let uncond = tensor(vec![0.5, 1.0, -0.5, 0.25], (1, 4, 1));
        let out = Apg::new(7.0).guide(&cond, &uncond).unwrap();
        let got = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip([1.0, 2.0, -1.0, 0.5]) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn apg_momentum_carries_the_last_difference() {
        let cond = tensor(vec![1.0, 0.0], (1, 2, 1));
        let uncond = tensor(vec![0.0, 0.0], (1, 2, 1));
        let mut apg = Apg::new(2.0);
        apg.guide(&cond, &uncond).unwrap();
        // Second step: v_c = (0, 1), d = (0, 0) + (−0.75)·(1, 0) = (−0.75, 0), orthogonal to v_c.
        let cond2 = tensor(vec![0.0, 1.0], (1, 2, 1));
        let out = apg.guide(&cond2, &tensor(vec![0.0, 1.0], (1, 2, 1))).unwrap();
        assert_eq!(out.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![-0.75, 1.0]);
    }

    #[test]
    fn apg_clamps_the_difference_norm_over_time_to_two_and_a_half() {
        // v_c = 0 has no direction to project out; d = (3, 4) has norm 5 and is halved.
        let cond = tensor(vec![0.0, 0.0], (1, 2, 1));
        let uncond = tensor(vec![-3.0, -4.0], (1, 2, 1));
        let out = Apg::new(2.0).guide(&cond, &uncond).unwrap();
        assert_eq!(out.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![1.5, 2.0]);
    }

    #[test]
    fn adg_with_equal_predictions_returns_them() {
        let x = tensor(vec![0.3, -0.2, 0.9, 0.1], (1, 2, 2));
        let v = tensor(vec![1.0, 0.5, -0.5, 2.0], (1, 2, 2));
        let out = adg(&x, &v, &v, 0.8, 5.0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (g, w) in out.iter().zip([1.0, 0.5, -0.5, 2.0]) {
            assert!((g - w).abs() < 1e-3, "{out:?}");
        }
    }
}
