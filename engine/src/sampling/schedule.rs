//! Timestep schedules. Every schedule here lists the timesteps the model is evaluated at,
//! starting near 1 (pure noise), followed by the terminal 0: `n` steps take `n + 1` values.
//!
//! Turbo and base compute their schedules differently, and the last bits matter for parity:
//! turbo builds its list in double precision and rounds once to f32
//! (`modeling_acestep_v15_turbo.py` `generate_audio`); base warps a float32 `torch.linspace`
//! in float32 arithmetic (`modeling_acestep_v15_base.py`).

use crate::task::TURBO_MAX_STEPS;

/// The turbo model's default number of steps, as a count of schedule entries.
pub const TURBO_STEPS: usize = crate::task::TURBO_STEPS as usize;

/// The union of turbo's fixed tables for shifts 1, 2 and 3 (upstream `VALID_TIMESTEPS`):
/// custom turbo timesteps snap to the nearest of these, the values turbo was distilled on.
pub const TURBO_VALID_TIMESTEPS: [f64; 20] = [
    1.0,
    0.9545454545454546,
    0.9333333333333333,
    0.9,
    0.875,
    0.8571428571428571,
    0.8333333333333334,
    0.7692307692307693,
    0.75,
    0.6666666666666666,
    0.6428571428571429,
    0.625,
    0.5454545454545454,
    0.5,
    0.4,
    0.375,
    0.3,
    0.25,
    0.2222222222222222,
    0.125,
];

/// `s·t / (1 + (s − 1)·t)`: spends more of the steps near t = 1, where the structure forms.
fn warp(t: f64, shift: f64) -> f64 {
    if shift == 1.0 {
        t
    } else {
        shift * t / (1.0 + (shift - 1.0) * t)
    }
}

/// Turbo's schedule for `steps` steps (at most [`TURBO_MAX_STEPS`]): `1 − i/steps` warped by
/// `shift`, computed in double precision. At 8 steps and shifts 1, 2, 3 this is bit-equal to
/// turbo's fixed tables.
pub fn turbo_schedule(steps: usize, shift: f64) -> Vec<f32> {
    let steps = steps.clamp(1, TURBO_MAX_STEPS as usize);
    let mut t: Vec<f32> = (0..steps).map(|i| warp(1.0 - i as f64 / steps as f64, shift) as f32).collect();
    t.push(0.0);
    t
}

/// Turbo with a caller's timesteps: trailing zeros dropped, at most [`TURBO_MAX_STEPS`] kept,
/// each value snapped to the nearest of [`TURBO_VALID_TIMESTEPS`] (ties go to the larger).
pub fn turbo_custom_schedule(timesteps: &[f64]) -> Vec<f32> {
    let nonzero = timesteps.iter().rposition(|&t| t != 0.0).map_or(0, |i| i + 1);
    let mut t: Vec<f32> = timesteps[..nonzero]
        .iter()
        .take(TURBO_MAX_STEPS as usize)
        .map(|&t| {
            let nearest = TURBO_VALID_TIMESTEPS
                .iter()
                .copied()
                .reduce(|best, v| if (v - t).abs() < (best - t).abs() { v } else { best })
                .expect("the table is not empty");
            nearest as f32
        })
        .collect();
    t.push(0.0);
    t
}

/// The base/SFT schedule: `torch.linspace(1, 0, steps + 1)` in float32, then warped by `shift`
/// in float32 arithmetic, as upstream does it.
pub fn base_schedule(steps: usize, shift: f64) -> Vec<f32> {
    let steps = steps.max(1);
    let shift32 = shift as f32;
    linspace_f32(1.0, 0.0, steps + 1)
        .into_iter()
        .map(|t| if shift == 1.0 { t } else { shift32 * t / (1.0 + (shift32 - 1.0) * t) })
        .collect()
}

/// A base/SFT schedule given by the caller: used as given (`n + 1` values make `n` steps).
pub fn base_custom_schedule(timesteps: &[f64]) -> Vec<f32> {
    timesteps.iter().map(|&t| t as f32).collect()
}

/// `torch.linspace` on the CPU in float32: the first half counts up from `start`, the second
/// half counts down from `end`, so both ends are exact. torch's build contracts `start + step·i`
/// into one fused multiply-add, so this does too.
pub(crate) fn linspace_f32(start: f32, end: f32, count: usize) -> Vec<f32> {
    if count == 1 {
        return vec![start];
    }
    let step = (end - start) / (count - 1) as f32;
    let halfway = count / 2;
    (0..count)
        .map(|i| if i < halfway { step.mul_add(i as f32, start) } else { (-step).mul_add((count - i - 1) as f32, end) })
        .collect()
}

/// Where a cover with `cover_noise_strength` starts: the index of the schedule value nearest to
/// `1 − strength` (the first such value on a tie), searched over every value but the terminal 0.
pub fn cover_start_index(schedule: &[f32], cover_noise_strength: f64) -> usize {
    let level = 1.0 - cover_noise_strength;
    let candidates = &schedule[..schedule.len().saturating_sub(1).max(1)];
    let mut best = 0;
    for (i, &t) in candidates.iter().enumerate() {
        if (t as f64 - level).abs() < (candidates[best] as f64 - level).abs() {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbo_eight_steps_equal_the_fixed_tables() {
        let tables: [(f64, [f64; 8]); 3] = [
            (1.0, [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]),
            (2.0, [1.0, 0.9333333333333333, 0.8571428571428571, 0.7692307692307693, 0.6666666666666666,
                   0.5454545454545454, 0.4, 0.2222222222222222]),
            (3.0, [1.0, 0.9545454545454546, 0.9, 0.8333333333333334, 0.75, 0.6428571428571429, 0.5, 0.3]),
        ];
        for (shift, table) in tables {
            let got = turbo_schedule(TURBO_STEPS, shift);
            assert_eq!(got[..8], table.map(|t| t as f32), "shift {shift}");
            assert_eq!(got[8], 0.0);
        }
    }

    #[test]
    fn turbo_custom_timesteps_snap_to_the_distilled_values() {
        assert_eq!(turbo_custom_schedule(&[0.99, 0.61, 0.31, 0.0, 0.0]), vec![1.0, 0.625, 0.3, 0.0]);
        let long: Vec<f64> = (0..30).map(|i| 1.0 - i as f64 / 30.0).collect();
        assert_eq!(turbo_custom_schedule(&long).len(), TURBO_MAX_STEPS as usize + 1);
    }

    #[test]
    fn base_schedule_keeps_both_ends_exact() {
        let t = base_schedule(50, 3.0);
        assert_eq!(t.len(), 51);
        assert_eq!((t[0], t[50]), (1.0, 0.0));
        assert!(t.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(base_schedule(4, 1.0), vec![1.0, 0.75, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn cover_start_is_the_nearest_step_to_the_noise_level() {
        let t = turbo_schedule(8, 3.0);
        // 1 − 0.3 = 0.7 lies nearest 0.75 (index 4), not 0.643.
        assert_eq!(cover_start_index(&t, 0.3), 4);
        assert_eq!(cover_start_index(&t, 0.0), 0);
        // Full strength aims at 0, which is never a start: the last real step is.
        assert_eq!(cover_start_index(&t, 1.0), 7);
    }
}
