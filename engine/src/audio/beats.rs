//! Beat tracking: the tempo a take actually has, where its beats fall, and whether it came out in
//! half or double time against the tempo it was asked for (the grid contract of
//! `docs/architecture.md`; the model treats BPM as a hint).
//!
//! 1. Onset strength ([`onset_envelope`]): spectral flux of the log-magnitude spectrum, frames of
//!    about 21 ms every eighth of a frame (2.7 ms at 48 kHz), rectified after removing its local
//!    mean, so each note or hit is a peak where it starts.
//! 2. Pulse salience: for each tempo from [`MIN_BPM`] to [`MAX_BPM`] the envelope is folded at its
//!    period. A pulse is salient when its beats are strong *and* the points halfway between them
//!    are weak, so a subdivision of the real pulse or a multiple of it scores lower than the pulse.
//! 3. Octave: the salience is weighted by closeness to the requested pulse (one octave either
//!    side halves it at most by 40 %), so a take that follows the request is read at the request's
//!    octave, while a take that plainly moves at half or double speed is reported as such.
//! 4. Precise tempo and phase: from the first beat, each next beat is looked for as the
//!    envelope's peak within a quarter period of where it is expected, and a straight line through
//!    the beats found gives the period and the phase; how far the beats stray from that line is
//!    the drift.
//!
//! Tempos are in quarter notes per minute, as hosts report them. The pulse is the meter's beat (a
//! quarter in x/4, an eighth in x/8), so a 7/8 bass line moving in eighths is on tempo.

use realfft::RealFftPlanner;

use super::grid::TimeSignature;
use super::AudioBuffer;

/// The tempos a request may ask for, in quarter notes per minute.
pub const MIN_BPM: f64 = 30.0;
pub const MAX_BPM: f64 = 300.0;
/// The slowest and fastest pulse looked for, in beats per minute: half of the slowest request,
/// and the eighth-note pulse of 7/8 at 240 BPM.
const SLOWEST_PULSE: f64 = 15.0;
const FASTEST_PULSE: f64 = 480.0;

/// Why no beat could be measured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BeatError {
    #[error("no beat found: the audio is silent")]
    Silent,
    #[error("no beat found: {seconds:.1} s is too short to measure a tempo (at least {needed:.1} s at this tempo)")]
    TooShort { seconds: f64, needed: f64 },
    #[error("no beat found: nothing in the audio repeats at a steady tempo")]
    NoPulse,
    #[error("the requested tempo {bpm} BPM is outside {MIN_BPM}-{MAX_BPM} BPM")]
    RequestedTempo { bpm: f64 },
}

/// How the measured pulse relates to the requested one.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TempoRelation {
    /// Within [`SAME_TEMPO_TOLERANCE`] of the request.
    OnTempo,
    /// Half the requested tempo (within the same tolerance).
    HalfTime,
    /// Twice the requested tempo.
    DoubleTime,
    /// Something else: the ratio measured / requested.
    Other { ratio: f64 },
}

/// Ratios this close to 1, 1/2 or 2 count as that relation (4 %: a take 4 % off its tempo is a
/// take to stretch, not a different tempo).
pub const SAME_TEMPO_TOLERANCE: f64 = 0.04;

impl TempoRelation {
    pub fn of_ratio(ratio: f64) -> Self {
        let near = |target: f64| (ratio / target - 1.0).abs() <= SAME_TEMPO_TOLERANCE;
        if near(1.0) {
            Self::OnTempo
        } else if near(0.5) {
            Self::HalfTime
        } else if near(2.0) {
            Self::DoubleTime
        } else {
            Self::Other { ratio }
        }
    }
}

/// What the tracker measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BeatTrack {
    /// The measured tempo in quarter notes per minute (a half-time take reads half the request).
    pub bpm: f64,
    /// Seconds from the start of the audio to the first beat of the fitted grid (0 to one beat).
    pub phase_s: f64,
    pub relation: TempoRelation,
    /// The beats found, in seconds (not written into recipes: the figures above sum them up).
    #[serde(skip)]
    pub beats: Vec<f64>,
    /// The largest distance of a found beat from the fitted straight grid, in seconds: how much
    /// the tempo wanders.
    pub drift_s: f64,
}

/// Onset strength over time.
#[derive(Debug, Clone, PartialEq)]
pub struct OnsetEnvelope {
    pub values: Vec<f32>,
    /// Envelope values per second.
    pub rate: f64,
}

impl OnsetEnvelope {
    /// The time in seconds of envelope frame `frame` (fractional frames allowed).
    pub fn time_of(&self, frame: f64) -> f64 {
        frame / self.rate
    }
}

/// Below this peak the audio is silence.
const SILENCE_PEAK: f32 = 1e-4;
/// The spectrum is read in this many bands, spaced evenly in log frequency from
/// [`LOWEST_BAND_HZ`] up: per-bin flux would let broadband hats and noise outweigh a kick or a
/// bass note, which fill a few bins each.
const BANDS: usize = 36;
const LOWEST_BAND_HZ: f64 = 30.0;
const HIGHEST_BAND_HZ: f64 = 16_000.0;
/// The log compression of band levels: `ln(1 + COMPRESSION · level)`, level 1 for a full-scale
/// sine. Strong enough that quiet notes count, weak enough that accents still stand out.
const COMPRESSION: f32 = 100.0;
/// Seconds of the moving average taken off the flux.
const LOCAL_MEAN_S: f64 = 0.1;
/// An onset at envelope frame `f` sounds at `(f + ONSET_OFFSET_FRAMES) / rate`. The flux between
/// frames `f - 1` and `f` lies half a frame before frame `f`'s centre, and the log compression
/// shows a hit as soon as it enters the window; measured on clicks, kicks, snares, hats and bass
/// notes (`tests::onset_times_are_unbiased`). In frames, so it holds at every sample rate.
const ONSET_OFFSET_FRAMES: f64 = 1.75;

/// The onset-strength envelope of `audio` (all channels mixed).
pub fn onset_envelope(audio: &AudioBuffer) -> OnsetEnvelope {
    let sr = audio.sample_rate.max(1) as f64;
    let n = ((0.021 * sr).round() as usize).next_power_of_two().max(64);
    let hop = n / 8;
    let mono = audio.mono();
    // Centred frames: frame i covers samples around i·hop.
    let mut padded = vec![0.0f32; n / 2];
    padded.extend_from_slice(&mono);
    padded.extend(std::iter::repeat_n(0.0, n / 2));
    let frames = mono.len() / hop + 1;

    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
    let window = super::hann(n);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let band_of = band_map(spectrum.len(), sr / n as f64);
    let mut previous = vec![0.0f32; BANDS];
    let mut current = vec![0.0f32; BANDS];
    let mut energy = vec![0.0f32; BANDS];
    // A full-scale sine through the Hann window peaks at n/4 in its bin.
    let scale = COMPRESSION / (n as f32 / 4.0);
    let mut flux = Vec::with_capacity(frames);
    for frame in 0..frames {
        let start = frame * hop;
        for (i, x) in input.iter_mut().enumerate() {
            *x = padded.get(start + i).copied().unwrap_or(0.0) * window[i];
        }
        fft.process(&mut input, &mut spectrum).expect("buffers made by the same plan");
        energy.fill(0.0);
        for (bin, c) in spectrum.iter().enumerate() {
            if let Some(band) = band_of[bin] {
                energy[band] += c.norm_sqr();
            }
        }
        for (l, e) in current.iter_mut().zip(&energy) {
            *l = (1.0 + scale * e.sqrt()).ln();
        }
        let rise: f32 = if frame == 0 { 0.0 } else { current.iter().zip(&previous).map(|(c, p)| (c - p).max(0.0)).sum() };
        flux.push(rise);
        std::mem::swap(&mut current, &mut previous);
    }

    // Take off the local mean so sustained textures do not lift every frame; keep the peaks.
    let rate = sr / hop as f64;
    let half = ((LOCAL_MEAN_S * rate) as usize).max(1);
    let mut prefix = vec![0.0f64; flux.len() + 1];
    for (i, v) in flux.iter().enumerate() {
        prefix[i + 1] = prefix[i] + *v as f64;
    }
    let values = (0..flux.len())
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(flux.len()));
            let mean = (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
            (flux[i] as f64 - mean).max(0.0) as f32
        })
        .collect();
    OnsetEnvelope { values, rate }
}

/// Which band each FFT bin (of `bin_hz` each) falls in; `None` below the lowest band or above the
/// highest.
fn band_map(bins: usize, bin_hz: f64) -> Vec<Option<usize>> {
    let top = HIGHEST_BAND_HZ.min(bin_hz * (bins - 1) as f64);
    let octaves = (top / LOWEST_BAND_HZ).log2();
    (0..bins)
        .map(|bin| {
            let hz = bin as f64 * bin_hz;
            (hz >= LOWEST_BAND_HZ && hz <= top)
                .then(|| (((hz / LOWEST_BAND_HZ).log2() / octaves * BANDS as f64) as usize).min(BANDS - 1))
        })
        .collect()
}

/// Track the beats of `audio`, asked for at `requested_bpm` (quarter notes per minute) in `meter`.
pub fn track_beats(audio: &AudioBuffer, requested_bpm: f64, meter: TimeSignature) -> Result<BeatTrack, BeatError> {
    if !(requested_bpm.is_finite() && (MIN_BPM..=MAX_BPM).contains(&requested_bpm)) {
        return Err(BeatError::RequestedTempo { bpm: requested_bpm });
    }
    if audio.peak() < SILENCE_PEAK {
        return Err(BeatError::Silent);
    }
    let quarters_per_pulse = meter.quarters_per_beat();
    let requested_pulse = requested_bpm / quarters_per_pulse;
    // Four pulses at the requested tempo.
    let needed = 4.0 * 60.0 / requested_pulse;
    if audio.duration_s() < needed {
        return Err(BeatError::TooShort { seconds: audio.duration_s(), needed });
    }
    let env = onset_envelope(audio);
    let salience = Salience::new(&env);

    // The most salient pulse, weighted towards the requested one.
    let prior = |bpm: f64| (-0.5 * (bpm / requested_pulse).log2().powi(2)).exp();
    let period_of = |bpm: f64| 60.0 * env.rate / bpm;
    let (best_bpm, best) = bpm_grid(SLOWEST_PULSE, FASTEST_PULSE, 1.002)
        .into_iter()
        .map(|bpm| (bpm, salience.fold(period_of(bpm))))
        .max_by(|a, b| (a.1.contrast * prior(a.0)).total_cmp(&(b.1.contrast * prior(b.0))))
        .expect("the grid is not empty");
    if best.contrast <= 0.0 || best.contrast < 0.05 * salience.mean {
        return Err(BeatError::NoPulse);
    }
    // Finer around it, unweighted: the prior only picks the octave.
    let (pulse_bpm, fold) = bpm_grid(best_bpm / 1.004, best_bpm * 1.004, 1.0002)
        .into_iter()
        .map(|bpm| (bpm, salience.fold(period_of(bpm))))
        .max_by(|a, b| a.1.contrast.total_cmp(&b.1.contrast))
        .expect("the fine grid is not empty");

    let period = period_of(pulse_bpm);
    let beats = follow_beats(&env, period, fold.phase);
    if beats.len() < 4 {
        return Err(BeatError::NoPulse);
    }
    // Straight line through the beats: frame = phase + index · period.
    let (slope, intercept) = line_fit(&beats);
    if interval_spread(&beats, slope).is_none_or(|spread| spread > MAX_INTERVAL_SPREAD) {
        return Err(BeatError::NoPulse);
    }
    let drift = beats.iter().map(|&(k, f)| (f - (intercept + slope * k)).abs()).fold(0.0, f64::max);
    let measured_pulse = 60.0 * env.rate / slope;
    let to_seconds = |frame: f64| env.time_of(frame + ONSET_OFFSET_FRAMES);
    let period_s = slope / env.rate;
    Ok(BeatTrack {
        bpm: measured_pulse * quarters_per_pulse,
        phase_s: to_seconds(intercept).rem_euclid(period_s),
        relation: TempoRelation::of_ratio(measured_pulse / requested_pulse),
        beats: beats.iter().map(|&(_, f)| to_seconds(f)).collect(),
        drift_s: drift / env.rate,
    })
}

/// Tempos from `low` to `high`, each `step` times the last.
fn bpm_grid(low: f64, high: f64, step: f64) -> Vec<f64> {
    std::iter::successors(Some(low), |&b| Some(b * step)).take_while(|&b| b <= high).collect()
}

/// The envelope folded at one period.
struct Fold {
    /// The beat position minus the strongest off-beat position, at the best phase.
    contrast: f64,
    /// That phase, in envelope frames from the start.
    phase: f64,
}

struct Salience<'a> {
    env: &'a OnsetEnvelope,
    mean: f64,
}

impl<'a> Salience<'a> {
    fn new(env: &'a OnsetEnvelope) -> Self {
        let mean = env.values.iter().map(|&v| v as f64).sum::<f64>() / env.values.len().max(1) as f64;
        Self { env, mean }
    }

    /// Fold the envelope at `period` frames into bins of about one frame, smooth over ±2 bins,
    /// and find the phase where the beat most outweighs the off-beat.
    fn fold(&self, period: f64) -> Fold {
        let bins = period.round().max(2.0) as usize;
        let mut sum = vec![0.0f64; bins];
        let mut count = vec![0u32; bins];
        // Where each frame falls within the period, stepped rather than divided: this loop runs
        // for every frame at every tempo tried.
        let per_frame = bins as f64 / period;
        let mut position = 0.0;
        for &v in &self.env.values {
            let bin = ((position * per_frame) as usize).min(bins - 1);
            sum[bin] += v as f64;
            count[bin] += 1;
            position += 1.0;
            if position >= period {
                position -= period;
            }
        }
        let mean: Vec<f64> = sum.iter().zip(&count).map(|(s, &c)| if c == 0 { 0.0 } else { s / c as f64 }).collect();
        let smooth: Vec<f64> = (0..bins)
            .map(|b| (0..5).map(|d| mean[(b + bins + d - 2) % bins] * [1.0, 2.0, 3.0, 2.0, 1.0][d]).sum::<f64>() / 9.0)
            .collect();
        // The off-beats: half a period away (duple) and a third either side (triple). A
        // subdivision of the pulse lands on them; the pulse itself does not.
        let off = |b: usize| [bins / 2, bins / 3, 2 * bins / 3].iter().map(|&d| smooth[(b + d) % bins]).fold(0.0, f64::max);
        let (phase, contrast) = (0..bins)
            .map(|b| (b, smooth[b] - off(b)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least two bins");
        Fold { contrast, phase: phase as f64 * period / bins as f64 }
    }
}

/// From the first beat at `phase`, each next beat as the envelope's peak within a quarter period
/// of one period after the last beat found (or after where the last missing one was expected).
/// Returns `(beat index, frame)` pairs; beats whose peak is weak, or is only the window's edge,
/// are skipped.
fn follow_beats(env: &OnsetEnvelope, period: f64, phase: f64) -> Vec<(f64, f64)> {
    let values = &env.values;
    let strongest = values.iter().copied().fold(0.0f32, f32::max) as f64;
    let threshold = 0.1 * strongest;
    let reach = period / 4.0;
    let mut found = Vec::new();
    let mut expected = phase;
    let mut index = 0.0;
    while expected - reach < values.len() as f64 {
        let lo = (expected - reach).ceil().max(0.0) as usize;
        let hi = ((expected + reach).floor() as usize).min(values.len() - 1);
        let peak = (lo..=hi).max_by(|&a, &b| values[a].total_cmp(&values[b]));
        match peak {
            // A maximum at the window's edge is a slope into another event, not this beat.
            Some(p) if values[p] as f64 >= threshold && p > lo && p < hi => {
                let frame = p as f64 + parabolic_offset(values, p);
                found.push((index, frame));
                expected = frame + period;
            }
            _ => expected += period,
        }
        index += 1.0;
    }
    found
}

/// Successive beats of a steady pulse are a period apart to within a few percent even when the
/// tempo drifts or a beat is missing; peaks picked out of noise are not.
const MAX_INTERVAL_SPREAD: f64 = 0.03;

/// The median of `|interval - period| / period` over successive found beats, or `None` with fewer
/// than three such intervals.
fn interval_spread(beats: &[(f64, f64)], period: f64) -> Option<f64> {
    let mut spread: Vec<f64> = beats
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 == 1.0)
        .map(|w| ((w[1].1 - w[0].1) / period - 1.0).abs())
        .collect();
    if spread.len() < 3 {
        return None;
    }
    spread.sort_by(f64::total_cmp);
    Some(spread[spread.len() / 2])
}

/// Sub-frame position of the peak at `i` from a parabola through it and its neighbours.
fn parabolic_offset(values: &[f32], i: usize) -> f64 {
    if i == 0 || i + 1 >= values.len() {
        return 0.0;
    }
    let (a, b, c) = (values[i - 1] as f64, values[i] as f64, values[i + 1] as f64);
    let denominator = a - 2.0 * b + c;
    if denominator.abs() < 1e-12 {
        0.0
    } else {
        (0.5 * (a - c) / denominator).clamp(-0.5, 0.5)
    }
}

/// Least-squares `y = intercept + slope · x` through `(x, y)` points (at least two distinct x).
fn line_fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    (slope, my - slope * mx)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audio::test_music::{beat_times, drums, render, Noise, Voice, SR};

    fn meter(n: u32, d: u32) -> TimeSignature {
        TimeSignature::new(n, d).unwrap()
    }

    /// The phase error in seconds, modulo the beat.
    fn phase_error(track: &BeatTrack, start: f64, beat_s: f64) -> f64 {
        let d = (track.phase_s - start).rem_euclid(beat_s);
        d.min(beat_s - d)
    }

    /// The worst tempo error (fraction) and phase error (seconds) over a test's cases.
    #[derive(Default)]
    struct Worst(f64, f64);

    impl Worst {
        /// Track `audio` made at `bpm` with its first beat at `start`: on tempo within 0.5 %, the
        /// phase within 10 ms.
        fn check(&mut self, what: &str, audio: &AudioBuffer, bpm: f64, m: TimeSignature, start: f64) {
            let track = track_beats(audio, bpm, m).unwrap_or_else(|e| panic!("{what}: {e}"));
            let tempo_error = (track.bpm / bpm - 1.0).abs();
            let phase = phase_error(&track, start, 60.0 / bpm * m.quarters_per_beat());
            assert_eq!(track.relation, TempoRelation::OnTempo, "{what}: measured {:.2} BPM", track.bpm);
            assert!(tempo_error < 0.005, "{what}: {:.2} BPM measured, {:.3} % off", track.bpm, tempo_error * 100.0);
            assert!(phase < 0.010, "{what}: phase {:.1} ms off", phase * 1e3);
            self.0 = self.0.max(tempo_error);
            self.1 = self.1.max(phase);
        }

        fn report(&self, what: &str) {
            eprintln!("{what}: worst tempo error {:.3} %, worst phase error {:.2} ms", self.0 * 100.0, self.1 * 1e3);
        }
    }

    const TEMPOS: [f64; 6] = [60.0, 75.0, 93.0, 120.0, 140.0, 180.0];

    #[test]
    fn onset_times_are_unbiased() {
        // Clicks, then bass notes, every 0.5 s from 0.25 s: each found beat within 3 ms.
        for voice in [Voice::Click, Voice::Bass(55.0), Voice::Kick] {
            let events: Vec<_> = (0..16).map(|k| (0.25 + 0.5 * k as f64, voice, 0.8)).collect();
            let track = track_beats(&render(&events, 8.5), 120.0, TimeSignature::FOUR_FOUR).unwrap();
            for (beat, (at, ..)) in track.beats.iter().zip(&events) {
                assert!((beat - at).abs() < 0.003, "found {beat:.4} s for an onset at {at:.4} s");
            }
        }
    }

    #[test]
    fn host_sample_rates_give_the_same_answer() {
        let audio = render(&drums(128.0, meter(4, 4), 0.08, 12.0, 0.0), 12.0);
        let mut worst = Worst::default();
        for rate in [44_100, 88_200, 96_000] {
            let resampled = crate::audio::resample(&audio, rate).unwrap();
            worst.check(&format!("drums at {rate} Hz"), &resampled, 128.0, meter(4, 4), 0.08);
        }
        worst.report("44.1-96 kHz");
    }

    #[test]
    fn clicks_at_60_to_180_bpm_in_three_meters() {
        let mut worst = Worst::default();
        for bpm in TEMPOS {
            for m in [meter(4, 4), meter(3, 4), meter(7, 8)] {
                let start = 0.137;
                let events: Vec<_> = beat_times(bpm, m, start, 16.0)
                    .into_iter()
                    .map(|(t, pos)| (t, Voice::Click, if pos == 0 { 0.9 } else { 0.5 }))
                    .collect();
                worst.check(&format!("clicks {bpm} {m}"), &render(&events, 16.0), bpm, m, start);
            }
        }
        worst.report("clicks");
    }

    #[test]
    fn drum_patterns_at_60_to_180_bpm_in_three_meters() {
        let mut worst = Worst::default();
        for bpm in TEMPOS {
            for m in [meter(4, 4), meter(3, 4), meter(7, 8)] {
                let audio = render(&drums(bpm, m, 0.05, 16.0, 0.0), 16.0);
                worst.check(&format!("drums {bpm} {m}"), &audio, bpm, m, 0.05);
            }
        }
        worst.report("drums");
    }

    #[test]
    fn swung_drums_keep_their_tempo_and_phase() {
        let mut worst = Worst::default();
        for bpm in [90.0, 120.0] {
            let audio = render(&drums(bpm, meter(4, 4), 0.2, 16.0, 1.0 / 6.0), 16.0);
            worst.check(&format!("swung drums {bpm}"), &audio, bpm, meter(4, 4), 0.2);
        }
        worst.report("swung drums");
    }

    #[test]
    fn bass_lines_at_60_to_180_bpm() {
        let mut worst = Worst::default();
        let notes = [41.2, 41.2, 55.0, 49.0, 61.7, 55.0, 41.2, 73.4];
        for bpm in TEMPOS {
            for m in [meter(4, 4), meter(3, 4), meter(7, 8)] {
                let events: Vec<_> = beat_times(bpm, m, 0.3, 16.0)
                    .into_iter()
                    .enumerate()
                    .map(|(i, (t, pos))| (t, Voice::Bass(notes[i % notes.len()]), if pos == 0 { 0.9 } else { 0.6 }))
                    .collect();
                worst.check(&format!("bass {bpm} {m}"), &render(&events, 16.0), bpm, m, 0.3);
            }
        }
        worst.report("bass lines");
    }

    #[test]
    fn drifting_tempo_is_measured_on_average_and_reported() {
        // 120 BPM speeding up by 1 % over 16 s: the beat period shrinks linearly.
        let (bpm, seconds) = (120.0, 16.0);
        let mut events = Vec::new();
        let mut t = 0.1;
        let mut k = 0;
        while t < seconds - 0.05 {
            events.push((t, if k % 2 == 0 { Voice::Kick } else { Voice::Snare }, 0.8));
            let local = bpm * (1.0 + 0.01 * t / seconds);
            t += 60.0 / local;
            k += 1;
        }
        let track = track_beats(&render(&events, seconds), bpm, TimeSignature::FOUR_FOUR).unwrap();
        let average = 60.0 * (events.len() - 1) as f64 / (events.last().unwrap().0 - events[0].0);
        assert!((track.bpm / average - 1.0).abs() < 0.005, "{} BPM against {average}", track.bpm);
        assert_eq!(track.relation, TempoRelation::OnTempo);
        // A steady take stays within a couple of ms of its line; this one wanders by ~20 ms.
        assert!(track.drift_s > 0.01, "drift {:.1} ms", track.drift_s * 1e3);
        let steady = track_beats(&render(&drums(bpm, meter(4, 4), 0.1, seconds, 0.0), seconds), bpm, meter(4, 4)).unwrap();
        assert!(steady.drift_s < 0.003, "steady drift {:.1} ms", steady.drift_s * 1e3);
    }

    #[test]
    fn half_and_double_time_are_caught() {
        // Asked for 120, the take moves at 60 (kick, snare and bass on its quarters, nothing in
        // between): read as half time at 60.
        let events: Vec<_> = beat_times(60.0, meter(4, 4), 0.1, 16.0)
            .into_iter()
            .flat_map(|(t, pos)| [(t, if pos % 2 == 0 { Voice::Kick } else { Voice::Snare }, 0.8), (t, Voice::Bass(55.0), 0.5)])
            .collect();
        let track = track_beats(&render(&events, 16.0), 120.0, meter(4, 4)).unwrap();
        assert_eq!(track.relation, TempoRelation::HalfTime, "{} BPM", track.bpm);
        assert!((track.bpm / 60.0 - 1.0).abs() < 0.005, "{} BPM", track.bpm);
        // Asked for 70, the take moves at 140: four on the floor with a bass note on every beat.
        let events: Vec<_> = beat_times(140.0, meter(4, 4), 0.1, 16.0)
            .into_iter()
            .flat_map(|(t, _)| [(t, Voice::Kick, 0.8), (t, Voice::Bass(55.0), 0.5)])
            .collect();
        let track = track_beats(&render(&events, 16.0), 70.0, meter(4, 4)).unwrap();
        assert_eq!(track.relation, TempoRelation::DoubleTime, "{} BPM", track.bpm);
        assert!((track.bpm / 140.0 - 1.0).abs() < 0.005, "{} BPM", track.bpm);
    }

    #[test]
    fn silence_and_unusable_input_say_no_beat() {
        let silent = AudioBuffer::silence(SR, 2, 10 * SR as usize);
        assert_eq!(track_beats(&silent, 120.0, meter(4, 4)), Err(BeatError::Silent));
        let short = render(&[(0.0, Voice::Click, 0.8)], 1.0);
        assert!(matches!(track_beats(&short, 120.0, meter(4, 4)), Err(BeatError::TooShort { .. })));
        let mut source = Noise(3);
        let noise: Vec<f32> = (0..10 * SR as usize).map(|_| 0.3 * source.next()).collect();
        let noise = AudioBuffer::new(SR, vec![noise.clone(), noise]);
        assert_eq!(track_beats(&noise, 120.0, meter(4, 4)), Err(BeatError::NoPulse));
        let one_hit = render(&[(2.0, Voice::Kick, 0.8)], 10.0);
        assert_eq!(track_beats(&one_hit, 120.0, meter(4, 4)), Err(BeatError::NoPulse));
        for bpm in [0.0, 20.0, 400.0, f64::NAN] {
            assert!(matches!(track_beats(&one_hit, bpm, meter(4, 4)), Err(BeatError::RequestedTempo { .. })), "{bpm}");
        }
        let message = BeatError::Silent.to_string();
        assert!(message.starts_with("no beat found"), "{message}");
    }
}
