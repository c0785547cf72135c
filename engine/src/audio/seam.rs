//! Loops that loop: closing a take so its end runs into its start, and measuring the wrap.
//!
//! [`close_loop`] keeps the first `frames` samples and, over its first [`LOOP_FADE_S`], fades
//! in the take's start against what the model made after its last bar (equal power), so playing
//! the last sample and then the first is what the model played there. With a model at hand,
//! [`SeamRepaint`] goes further: the loop is rotated so its wrap sits mid-pass, tiled as a source,
//! the model repaints a window across the wrap, and the result is rotated back, so the music
//! itself runs through the wrap, not a crossfade of two versions. [`seam_report`] measures a
//! loop at its wrap the way it measures every other point inside it: the spectral flux into the
//! window just after the point (broadband when the waveform jumps) and the level step across it,
//! each against its median over the whole loop.

use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

use super::bar_plan::BarPlan;
use super::{hann, AudioBuffer};

/// The crossfade that closes a loop: long enough to hide a waveform jump, short enough that two
/// slightly different downbeats do not smear.
pub const LOOP_FADE_S: f64 = 0.05;

/// A wrap counts as seamless when its flux is at most this many times the loop's median flux...
pub const SEAM_FLUX_BOUND: f64 = 3.0;
/// ...and its level step at most this many dB above the median step.
pub const SEAM_LEVEL_BOUND_DB: f64 = 3.0;

/// The flux window (512 samples at 48 kHz): short, so a jump's broadband burst stands out from
/// what surrounds it.
const WINDOW_S: f64 = 0.0107;
/// Without a beat, points are compared this far apart, and levels over this long either side.
const HOP_S: f64 = 0.1;


/// How a loop's wrap compares with the rest of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeamReport {
    /// Flux across the wrap over the median flux inside the loop (1: like any other point).
    pub flux_ratio: f64,
    /// The level step across the wrap, and the median step inside, in dB.
    pub level_step_db: f64,
    pub median_level_step_db: f64,
    /// Within [`SEAM_FLUX_BOUND`] and [`SEAM_LEVEL_BOUND_DB`].
    pub seamless: bool,
}

/// The first `frames` of `span`, its start crossfaded with what follows `frames` in `span` over
/// [`LOOP_FADE_S`] (less if `span` has less after `frames`; with nothing after, no crossfade).
pub fn close_loop(span: &AudioBuffer, frames: usize) -> AudioBuffer {
    let wanted = (LOOP_FADE_S * span.sample_rate as f64).round() as usize;
    let fade = wanted.min(span.frames().saturating_sub(frames)).min(frames);
    let channels = span
        .channels
        .iter()
        .map(|c| {
            let mut out: Vec<f32> = c.iter().take(frames).copied().collect();
            out.resize(frames, 0.0);
            for (i, slot) in out.iter_mut().enumerate().take(fade) {
                let angle = (i as f64 + 0.5) / fade as f64 * std::f64::consts::FRAC_PI_2;
                *slot = (*slot as f64 * angle.sin() + c[frames + i] as f64 * angle.cos()) as f32;
            }
            out
        })
        .collect();
    AudioBuffer::new(span.sample_rate, channels)
}

/// Measure `take` as a loop: its last sample followed by its first. The wrap is compared with
/// the points a beat apart inside the loop when `beat_frames` is given (a loop of whole bars: each
/// is a beat line, as the wrap is), else with points every [`HOP_S`]. `None` for a loop shorter
/// than four of those, or silent.
pub fn seam_report(take: &AudioBuffer, beat_frames: Option<f64>) -> Option<SeamReport> {
    let mono = take.mono();
    let n = mono.len();
    let rate = take.sample_rate as f64;
    let window = ((WINDOW_S * rate).round() as usize).next_power_of_two();
    let spacing = beat_frames.filter(|&b| b >= window as f64).unwrap_or(HOP_S * rate);
    let level_span = spacing.round() as isize;
    let peak = mono.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if (n as f64) < 4.0 * spacing || peak < 1e-6 {
        return None;
    }
    let at = |i: isize| mono[i.rem_euclid(n as isize) as usize];
    let mut fft = RealFftPlanner::<f32>::new();
    let fft = fft.plan_fft_forward(window);
    let taper = hann(window);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    // Levels are floored 60 dB under the peak, so a gap between two hits is not an endless step.
    let floor_db = 20.0 * (peak as f64).log10() - 60.0;
    // The compressed magnitude spectrum (Hann) of `window` samples from `start`.
    let mut spectrum_at = |start: isize| -> Vec<f32> {
        for (k, slot) in input.iter_mut().enumerate() {
            *slot = at(start + k as isize) * taper[k];
        }
        fft.process(&mut input, &mut spectrum).expect("buffers from the plan");
        spectrum.iter().map(|c| (1.0 + 100.0 * c.norm()).ln()).collect()
    };
    // The RMS level in dB of `level_span` samples from `start`, floored.
    let level_at = |start: isize| -> f64 {
        let energy: f64 = (start..start + level_span).map(|i| (at(i) as f64).powi(2)).sum();
        (10.0 * (energy / level_span as f64 + 1e-20).log10()).max(floor_db)
    };
    let half = window as isize / 2;
    // At a point p: the flux into the window centred on p (a jump at p sits in its middle) from
    // the window before it, and the level step between the spans either side of p.
    let mut at_point = |p: isize| -> (f64, f64) {
        let before = spectrum_at(p - 2 * half);
        let centred = spectrum_at(p - half);
        let flux = centred.iter().zip(&before).map(|(a, b)| (a - b).max(0.0) as f64).sum::<f64>() / centred.len() as f64;
        (flux, (level_at(p) - level_at(p - level_span)).abs())
    };
    let (wrap_flux, wrap_step) = at_point(0);
    let points: Vec<isize> =
        (1..).map(|k| (k as f64 * spacing).round() as isize).take_while(|&p| p + level_span <= n as isize).collect();
    let (mut fluxes, mut steps): (Vec<f64>, Vec<f64>) = points.into_iter().map(&mut at_point).unzip();
    let median_flux = median(&mut fluxes);
    let median_level_step_db = median(&mut steps);
    let flux_ratio = wrap_flux / median_flux.max(1e-9);
    Some(SeamReport {
        flux_ratio,
        level_step_db: wrap_step,
        median_level_step_db,
        seamless: flux_ratio <= SEAM_FLUX_BOUND && wrap_step <= median_level_step_db + SEAM_LEVEL_BOUND_DB,
    })
}

/// How a loop take's wrap was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeamFix {
    /// Equal-power crossfade into what the model played after the last bar.
    Crossfade,
    /// The model repainted a window across the wrap (and the crossfade closed the rotation):
    /// what a front end with the model at hand does.
    #[default]
    Repaint,
}

/// A closed loop set up for the model to repaint across its wrap: `source` is the loop rotated by
/// `rotation` samples (its wrap now mid-pass) and tiled as the plan tiles a source; the repaint
/// window covers the wrap, a bar wide (half the loop at most).
#[derive(Debug, Clone, PartialEq)]
pub struct SeamRepaint {
    pub source: AudioBuffer,
    pub window_s: (f64, f64),
    rotation: usize,
    frames: usize,
}

impl SeamRepaint {
    /// `closed` is a loop of exactly the plan's bars at the plan's rate.
    pub fn new(plan: &BarPlan, closed: &AudioBuffer) -> Self {
        let frames = closed.frames();
        let rate = closed.sample_rate as f64;
        // Half the loop, on a bar line when there are two bars or more.
        let rotation = if plan.bars >= 2 {
            plan.grid.bar_start_sample((plan.bars / 2) as i64) as usize
        } else {
            frames / 2
        };
        let source = plan.tile_source(&rotate(closed, rotation));
        let wrap_s = (frames - rotation) as f64 / rate;
        let half = (plan.grid.bars_to_seconds(1.0) / 2.0).min(frames as f64 / rate / 4.0);
        Self { source, window_s: (wrap_s - half, wrap_s + half), rotation, frames }
    }

    /// The repainted span (the model's result for `source`, at the same rate) back as the loop:
    /// its first pass closed into what followed it, rotated back.
    pub fn finish(&self, repainted: &AudioBuffer) -> AudioBuffer {
        let closed = close_loop(repainted, self.frames);
        rotate(&closed, self.frames - self.rotation)
    }
}

/// `audio` rotated left by `by` samples: sample `by` comes first, sample 0 follows the last.
pub fn rotate(audio: &AudioBuffer, by: usize) -> AudioBuffer {
    let channels = audio
        .channels
        .iter()
        .map(|c| {
            let by = if c.is_empty() { 0 } else { by % c.len() };
            c[by..].iter().chain(&c[..by]).copied().collect()
        })
        .collect();
    AudioBuffer::new(audio.sample_rate, channels)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::grid::TimeSignature;
    use crate::audio::test_music::{drums, render, Noise, SR};

    /// A chord of three sines whose periods do not divide the loop, over quiet noise.
    fn pad(seconds: f64) -> AudioBuffer {
        let mut noise = Noise(11);
        let samples: Vec<f32> = (0..(seconds * SR as f64) as usize)
            .map(|i| {
                let t = i as f64 / SR as f64;
                let tone: f64 = [220.0, 277.2, 329.6].iter().map(|f| (std::f64::consts::TAU * f * t).sin()).sum();
                (0.2 * tone) as f32 + 0.002 * noise.next()
            })
            .collect();
        AudioBuffer::new(SR, vec![samples.clone(), samples])
    }

    /// Drums at 120 in 4/4 from 0 s over the pad.
    fn drums_over_pad(seconds: f64) -> AudioBuffer {
        let mut out = render(&drums(120.0, TimeSignature::FOUR_FOUR, 0.0, seconds, 0.0), seconds);
        for (c, p) in out.channels.iter_mut().zip(pad(seconds).channels) {
            for (v, q) in c.iter_mut().zip(p) {
                *v += 0.5 * q;
            }
        }
        out
    }

    #[test]
    fn a_cut_that_jumps_is_caught_and_the_crossfade_closes_it() {
        // 4 s loop out of 5 s of a pad: the cut lands mid-cycle of every partial.
        let frames = 4 * SR as usize + 1234;
        let span = pad(5.0);
        let cut = crate::audio::conform::cut(&span, 0, frames);
        let raw = seam_report(&cut, None).unwrap();
        assert!(!raw.seamless && raw.flux_ratio > 2.0 * SEAM_FLUX_BOUND, "{raw:?}");
        let closed = close_loop(&span, frames);
        assert_eq!(closed.frames(), frames);
        let report = seam_report(&closed, None).unwrap();
        assert!(report.seamless && report.flux_ratio < 1.5, "{report:?}");
        // The last sample runs into the first as the span ran on past the cut.
        let c = &closed.channels[0];
        assert!((c[0] - span.channels[0][frames]).abs() < 0.02, "{} vs {}", c[0], span.channels[0][frames]);
    }

    #[test]
    fn a_level_jump_at_the_wrap_is_caught() {
        // Drums over a pad whose last bar is 12 dB louder than the rest, cut without a tail.
        let mut take = drums_over_pad(8.0);
        for c in &mut take.channels {
            for v in &mut c[6 * SR as usize..] {
                *v *= 4.0;
            }
        }
        let report = seam_report(&take, Some(SR as f64 / 2.0)).unwrap();
        assert!(!report.seamless && report.level_step_db > report.median_level_step_db + 6.0, "{report:?}");
    }

    #[test]
    fn a_loop_made_of_whole_bars_of_steady_drums_is_seamless() {
        // 2 bars at 120 with the bar after them: the wrap is a downbeat like the others.
        let span = drums_over_pad(6.0);
        let report = seam_report(&close_loop(&span, 4 * SR as usize), Some(SR as f64 / 2.0)).unwrap();
        assert!(report.seamless, "{report:?}");
    }

    #[test]
    fn a_seam_repaint_puts_the_wrap_mid_window_and_rotates_back() {
        use crate::audio::bar_plan::{BarPlan, BarSpec};
        // 2 bars of 4/4 at 120 at 1 kHz: 4000 samples, rotated by one bar.
        let plan = BarPlan::new(BarSpec { bars: 2, start_bar: 0, bpm: 120.0, meter: (4, 4), sample_rate: 1000.0 }).unwrap();
        let ramp: Vec<f32> = (0..4000).map(|i| i as f32).collect();
        let closed = AudioBuffer::new(1000, vec![ramp.clone()]);
        let job = SeamRepaint::new(&plan, &closed);
        // Tiled like any source: three passes and a bar; the wrap (sample 0) now at 2 s.
        assert_eq!(job.source.frames(), 14_000);
        assert_eq!((job.source.channels[0][0], job.source.channels[0][1999], job.source.channels[0][2000]), (2000.0, 3999.0, 0.0));
        assert_eq!(job.window_s, (1.0, 3.0));
        // A model that changes nothing gives the loop back, closed where the rotation joined.
        let back = job.finish(&job.source);
        assert_eq!(back.frames(), 4000);
        assert_eq!(&back.channels[0][..2000], &ramp[..2000]);
        assert_eq!(&back.channels[0][2050..], &ramp[2050..], "untouched outside the closing fade");
    }

    #[test]
    fn short_or_silent_loops_have_no_report() {
        assert_eq!(seam_report(&AudioBuffer::silence(SR, 2, 4 * SR as usize), None), None);
        assert_eq!(seam_report(&pad(0.1), None), None);
    }
}
