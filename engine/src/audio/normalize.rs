//! Output levels, as upstream ACE-Step sets them after the VAE decode (model-spec §3.9).
//!
//! Per item, upstream first divides by the peak if it exceeds 1 (`generate_music_decode.py`),
//! then peak-normalises to −1 dBFS (`audio_utils.py` `normalize_audio`: `x · 10^(dB/20) / peak`,
//! skipped when the peak is below 1e-6 so silence is not blown up into noise). Both steps work
//! in place, on an [`AudioBuffer`] or on planar channels, and apply one gain to all channels so
//! the stereo image is kept.

use super::buffer::peak_of;
use super::AudioBuffer;

/// Upstream's default target peak (`normalization_db = -1.0`).
pub const DEFAULT_PEAK_DBFS: f32 = -1.0;

/// Below this peak, audio counts as silence and is not normalised (`normalize_audio`'s 1e-6).
pub const SILENCE_PEAK: f32 = 1e-6;

/// If the peak exceeds 1, divides every sample by it, so the loudest sample is exactly ±1.
pub fn cap_peak(channels: &mut [Vec<f32>]) {
    let peak = peak_of(channels);
    if peak > 1.0 {
        scale(channels, 1.0 / peak);
    }
}

/// Scales so the peak is `target_dbfs` (for example −1.0 → 0.891251). Silence (peak < 1e-6) is
/// left untouched.
pub fn normalize_peak(channels: &mut [Vec<f32>], target_dbfs: f32) {
    let peak = peak_of(channels);
    if peak < SILENCE_PEAK {
        return;
    }
    // One gain for every sample, formed in f32 like the f32 tensors upstream works on.
    let target = 10f64.powf(target_dbfs as f64 / 20.0) as f32;
    scale(channels, target / peak);
}

/// Upstream's whole post-decode recipe: [`cap_peak`], then [`normalize_peak`] to
/// [`DEFAULT_PEAK_DBFS`].
pub fn normalize_output(channels: &mut [Vec<f32>]) {
    cap_peak(channels);
    normalize_peak(channels, DEFAULT_PEAK_DBFS);
}

fn scale(channels: &mut [Vec<f32>], gain: f32) {
    channels.iter_mut().flatten().for_each(|x| *x *= gain);
}

impl AudioBuffer {
    /// See [`cap_peak`].
    pub fn cap_peak(&mut self) {
        cap_peak(&mut self.channels);
    }

    /// See [`normalize_peak`].
    pub fn normalize_peak(&mut self, target_dbfs: f32) {
        normalize_peak(&mut self.channels, target_dbfs);
    }

    /// See [`normalize_output`].
    pub fn normalize_output(&mut self) {
        normalize_output(&mut self.channels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_divides_only_above_one() {
        let mut loud = vec![vec![2.0, -1.0], vec![0.5, -4.0]];
        cap_peak(&mut loud);
        assert_eq!(loud, vec![vec![0.5, -0.25], vec![0.125, -1.0]]);
        let mut quiet = vec![vec![0.3, -0.9]];
        cap_peak(&mut quiet);
        assert_eq!(quiet, vec![vec![0.3, -0.9]]);
    }

    #[test]
    fn minus_one_dbfs_peak() {
        let mut buf = AudioBuffer::new(48_000, vec![vec![0.1, -0.4], vec![0.2, 0.0]]);
        buf.normalize_peak(DEFAULT_PEAK_DBFS);
        assert!((buf.peak() - 0.891_251).abs() < 1e-6, "{}", buf.peak());
        // One gain for both channels: the ratios between samples are kept.
        assert!((buf.channels[0][0] / buf.channels[1][0] - 0.5).abs() < 1e-6);
        let mut zero_db = vec![vec![0.25, -0.5]];
        normalize_peak(&mut zero_db, 0.0);
        assert_eq!(zero_db, vec![vec![0.5, -1.0]]);
    }

    #[test]
    fn output_recipe_caps_then_normalises() {
        let mut loud = vec![vec![3.0, -1.5]];
        normalize_output(&mut loud);
        assert!((loud[0][0] - 0.891_251).abs() < 1e-6);
        assert!((loud[0][1] + 0.445_625_5).abs() < 1e-6);
    }

    #[test]
    fn silence_and_near_silence_are_untouched() {
        for level in [0.0f32, 5e-7] {
            let mut quiet = vec![vec![level, -level], vec![0.0, level]];
            let before = quiet.clone();
            normalize_output(&mut quiet);
            assert_eq!(quiet, before);
        }
        let mut empty: Vec<Vec<f32>> = vec![vec![], vec![]];
        normalize_output(&mut empty);
        assert_eq!(empty, vec![Vec::<f32>::new(), vec![]]);
    }
}
