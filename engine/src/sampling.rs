//! Flow-matching samplers. The model predicts the velocity `v = noise - x0`; `x_t = t·noise +
//! (1 - t)·x0`, integrated from t = 1 (pure noise) towards 0.
//!
//! Schedules follow upstream `generate_audio`: `n` evenly spaced timesteps `1 - i/n` warped by the
//! shift `s·t / (1 + (s - 1)·t)`. Turbo's fixed tables for shifts 1, 2 and 3 are exactly this
//! warp at n = 8.

use candle_core::{Result, Tensor};

/// The turbo model's default number of steps.
pub const TURBO_STEPS: usize = 8;

/// `steps` timesteps from 1 down (0 excluded), warped by `shift`, as the f32 values the model sees.
pub fn shifted_schedule(steps: usize, shift: f64) -> Vec<f32> {
    (0..steps)
        .map(|i| {
            let t = 1.0 - i as f64 / steps as f64;
            let t = if shift == 1.0 { t } else { shift * t / (1.0 + (shift - 1.0) * t) };
            t as f32
        })
        .collect()
}

/// What the sampler reports after each model evaluation.
pub struct Step<'a> {
    pub index: usize,
    pub count: usize,
    pub t: f32,
    /// The latents the model was given at this step and the velocity it predicted.
    pub xt: &'a Tensor,
    pub velocity: &'a Tensor,
}

/// Euler integration of the flow ODE from `noise` over `schedule`; the last step jumps straight
/// to the clean estimate `x0 = x_t - v·t`. `velocity(x, t)` evaluates the model; `on_step` sees
/// every step and may stop the run by returning an error (cancellation).
pub fn euler_ode(
    noise: Tensor,
    schedule: &[f32],
    mut velocity: impl FnMut(&Tensor, f32) -> Result<Tensor>,
    mut on_step: impl FnMut(Step) -> Result<()>,
) -> Result<Tensor> {
    let mut xt = noise;
    for (index, &t) in schedule.iter().enumerate() {
        let v = velocity(&xt, t)?;
        on_step(Step { index, count: schedule.len(), t, xt: &xt, velocity: &v })?;
        xt = match schedule.get(index + 1) {
            // Upstream takes dt between the f32 timesteps in double precision.
            Some(&next) => (&xt - (&v * (t as f64 - next as f64) as f32 as f64)?)?,
            None => (&xt - (&v * t as f64)?)?,
        };
    }
    Ok(xt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_three_matches_turbos_fixed_table() {
        // Upstream's SHIFT_TIMESTEPS[3.0].
        let table = [1.0, 0.9545454545454546, 0.9, 0.8333333333333334, 0.75, 0.6428571428571429, 0.5, 0.3];
        let got = shifted_schedule(TURBO_STEPS, 3.0);
        assert_eq!(got, table.map(|t: f64| t as f32));
        assert_eq!(shifted_schedule(8, 1.0)[7], 0.125);
    }

    #[test]
    fn euler_recovers_a_straight_flow_exactly() {
        // With the true velocity of a straight path the sampler must land on x0.
        let dev = candle_core::Device::Cpu;
        let x0 = Tensor::new(&[0.5f32, -2.0, 3.0], &dev).unwrap();
        let noise = Tensor::new(&[1.0f32, 1.0, -1.0], &dev).unwrap();
        let v = (&noise - &x0).unwrap();
        let mut seen = Vec::new();
        let out = euler_ode(noise, &shifted_schedule(4, 3.0), |_, _| Ok(v.clone()), |s| {
            seen.push(s.index);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [0, 1, 2, 3]);
        let err: f32 = (out - x0).unwrap().abs().unwrap().max(0).unwrap().to_scalar().unwrap();
        assert!(err < 1e-6, "{err}");
    }
}
