//! Source alignment: a cover, repaint, layer or stem put back on its source sample for sample.
//!
//! The model's result can come back a little early or late against the source it was given (a
//! latent frame is 40 ms). [`estimate_lag`] finds the lag by cross-correlating the two (with the
//! phase transform, so a result that only shares the source's timing, not its sound, still gives
//! a sharp peak), over the first [`ANALYSIS_S`] and within [`MAX_LAG_S`]; [`remove_lag`] shifts
//! the result by it.

use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

use super::AudioBuffer;

/// The longest lag looked for, either way.
pub const MAX_LAG_S: f64 = 0.1;
/// How much of the start is compared: enough bars for a clear peak, short enough for one FFT.
pub const ANALYSIS_S: f64 = 20.0;
/// A correlation peak this many times the typical correlation in the search range is a lag;
/// below it, the two share no timing to go by and nothing is moved.
pub const MIN_PEAK_RATIO: f64 = 6.0;

/// The lag found between a source and a result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Alignment {
    /// Samples the result is late against the source (negative: early).
    pub lag_frames: i64,
    pub lag_ms: f64,
    /// The peak over the median correlation in the search range.
    pub peak_ratio: f64,
    /// Whether the result was moved (the peak was clear).
    pub applied: bool,
}

/// How late `result` is against `source` (both at the same rate), or `None` when either is
/// silent or shorter than the search range.
pub fn estimate_lag(source: &AudioBuffer, result: &AudioBuffer) -> Option<Alignment> {
    let rate = source.sample_rate as f64;
    let max_lag = (MAX_LAG_S * rate).round() as usize;
    let len = source.frames().min(result.frames()).min((ANALYSIS_S * rate) as usize);
    if len <= 4 * max_lag || source.sample_rate != result.sample_rate {
        return None;
    }
    let size = (len + max_lag).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(size);
    let inverse = planner.plan_fft_inverse(size);
    let spectrum_of = |audio: &AudioBuffer| -> Vec<Complex<f64>> {
        let mut input = forward.make_input_vec();
        for (slot, v) in input.iter_mut().zip(audio.mono().iter().take(len)) {
            *slot = *v as f64;
        }
        let mut out = forward.make_output_vec();
        forward.process(&mut input, &mut out).expect("buffers from the plan");
        out
    };
    let (s, r) = (spectrum_of(source), spectrum_of(result));
    let mut cross: Vec<Complex<f64>> = s
        .iter()
        .zip(&r)
        .map(|(a, b)| {
            let c = a.conj() * b;
            let m = c.norm();
            if m > 1e-12 { c / m } else { Complex::new(0.0, 0.0) }
        })
        .collect();
    // A real signal's spectrum has real DC and Nyquist bins.
    cross[0].im = 0.0;
    if let Some(last) = cross.last_mut() {
        last.im = 0.0;
    }
    let mut correlation = inverse.make_output_vec();
    inverse.process(&mut cross, &mut correlation).expect("buffers from the plan");
    // Lag k (result late by k) sits at index k, an early result at size - k.
    let at = |lag: i64| correlation[lag.rem_euclid(size as i64) as usize];
    let lags = -(max_lag as i64)..=max_lag as i64;
    let (lag, peak) = lags.clone().map(|k| (k, at(k))).max_by(|a, b| a.1.total_cmp(&b.1))?;
    let mut magnitudes: Vec<f64> = lags.map(|k| at(k).abs()).collect();
    magnitudes.sort_by(f64::total_cmp);
    let typical = magnitudes[magnitudes.len() / 2];
    if peak <= 0.0 || typical <= 0.0 {
        return None;
    }
    let peak_ratio = peak / typical;
    Some(Alignment { lag_frames: lag, lag_ms: lag as f64 / rate * 1e3, peak_ratio, applied: peak_ratio >= MIN_PEAK_RATIO })
}

/// `result` moved `lag` samples earlier (later when negative), same length: what moves out is
/// dropped, what opens up is silence.
pub fn remove_lag(result: &AudioBuffer, lag: i64) -> AudioBuffer {
    let n = result.frames() as i64;
    let channels = result
        .channels
        .iter()
        .map(|c| (0..n).map(|i| usize::try_from(i + lag).ok().and_then(|j| c.get(j)).copied().unwrap_or(0.0)).collect())
        .collect();
    AudioBuffer::new(result.sample_rate, channels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::grid::TimeSignature;
    use crate::audio::test_music::{beat_times, drums, render, Noise, Voice, SR};

    fn delayed(audio: &AudioBuffer, lag: i64) -> AudioBuffer {
        remove_lag(audio, -lag)
    }

    /// 93 BPM in 7/8, as a captured source: drums.
    fn source() -> AudioBuffer {
        render(&drums(93.0, TimeSignature::new(7, 8).unwrap(), 0.0, 12.0, 0.0), 12.0)
    }

    #[test]
    fn a_cover_that_comes_back_late_or_early_is_put_back() {
        let src = source();
        for lag in [0i64, 37, 1234, -480, 4321] {
            // The "cover": the source quieter, with a noise bed, moved by `lag`.
            let mut noise = Noise(5);
            let mut cover = delayed(&src, lag);
            for c in &mut cover.channels {
                for v in c.iter_mut() {
                    *v = 0.5 * *v + 0.05 * noise.next();
                }
            }
            let found = estimate_lag(&src, &cover).unwrap();
            assert!(found.applied, "{found:?}");
            assert_eq!(found.lag_frames, lag);
            let back = remove_lag(&cover, found.lag_frames);
            let error = (found.lag_frames - lag).abs() as f64 / SR as f64;
            assert!(error < 0.001 && back.frames() == cover.frames());
        }
    }

    #[test]
    fn a_layer_sharing_only_the_timing_is_aligned_within_a_millisecond() {
        // The source: drums. The "layer": a bass line on the same beats, 23 ms late.
        let src = source();
        let m = TimeSignature::new(7, 8).unwrap();
        let events: Vec<_> = beat_times(93.0, m, 0.023, 12.0).into_iter().map(|(t, _)| (t, Voice::Bass(55.0), 0.6)).collect();
        let layer = render(&events, 12.0);
        let found = estimate_lag(&src, &layer).unwrap();
        assert!(found.applied, "{found:?}");
        assert!((found.lag_ms - 23.0).abs() < 1.0, "{found:?}");
    }

    #[test]
    fn unrelated_audio_is_left_where_it_is() {
        let mut noise = Noise(9);
        let other: Vec<f32> = (0..12 * SR as usize).map(|_| 0.3 * noise.next()).collect();
        let found = estimate_lag(&source(), &AudioBuffer::new(SR, vec![other])).unwrap();
        assert!(!found.applied, "{found:?}");
        assert_eq!(estimate_lag(&source(), &AudioBuffer::silence(SR, 2, 12 * SR as usize)), None);
    }
}
