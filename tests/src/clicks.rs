//! Reading the guide click back out of rendered audio.
//!
//! With silent input and the click on, Backline outputs a burst at every beat of the meter. Each
//! burst starts at its peak (`gain * 0.5` on downbeats, `gain * 0.25` on other beats), so the
//! onset sample and the accent can be read exactly and compared with the beats the host sent.

use backline_engine::audio::grid::{Grid, TimeSignature};

/// Click peak values, as in `plugin/src/click.rs`.
pub const ACCENT_AMPLITUDE: f32 = 0.5;
pub const BEAT_AMPLITUDE: f32 = 0.25;
/// A beat line this close after a sample clicks on it (`SNAP_SAMPLES` in `click.rs`).
pub const SNAP_SAMPLES: f64 = 1e-3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Onset {
    pub sample: usize,
    pub accent: bool,
    pub amplitude: f32,
}

/// Onsets in `signal`, rendered with output gain `gain` (linear): a sample of at least half a
/// beat click's peak after at least 100 samples (about 2 ms) below a tenth of that.
pub fn find_onsets(signal: &[f32], gain: f32) -> Vec<Onset> {
    let threshold = gain * BEAT_AMPLITUDE * 0.5;
    let accent_cut = gain * (ACCENT_AMPLITUDE + BEAT_AMPLITUDE) / 2.0;
    let quiet = threshold * 0.1;
    let mut onsets = Vec::new();
    let mut quiet_run = usize::MAX / 2; // the signal start counts as quiet
    for (i, &s) in signal.iter().enumerate() {
        if s.abs() >= threshold && quiet_run >= 100 {
            onsets.push(Onset { sample: i, accent: s.abs() >= accent_cut, amplitude: s });
        }
        quiet_run = if s.abs() < quiet { quiet_run + 1 } else { 0 };
    }
    onsets
}

/// The beats a correct plugin clicks in a render that starts at song position `start_quarters`
/// and lasts `len` samples, with bar lines at multiples of the bar length from song position 0:
/// `(sample offset into the render, is a downbeat)`.
pub fn expected_beats(
    bpm: f64,
    meter: TimeSignature,
    sample_rate: f64,
    start_quarters: f64,
    len: usize,
) -> Vec<(usize, bool)> {
    let grid = Grid::new(bpm, meter, sample_rate).expect("valid test grid");
    let spq = grid.samples_per_quarter();
    let beat = meter.quarters_per_beat();
    let first = (start_quarters / beat - 1e-9).ceil() as i64;
    (first..)
        .map(|k| {
            let offset = (k as f64 * beat - start_quarters) * spq;
            ((offset - SNAP_SAMPLES).ceil().max(0.0) as usize, k.rem_euclid(meter.numerator as i64) == 0)
        })
        .take_while(|(sample, _)| *sample < len)
        .collect()
}

/// Assert that `onsets` are exactly `expected`, allowing `tolerance` samples of placement error
/// (0 for hosts that pass positions exactly; 1 where a host rounds them).
pub fn assert_beats(onsets: &[Onset], expected: &[(usize, bool)], tolerance: usize, context: &str) {
    let got: Vec<(usize, bool)> = onsets.iter().map(|o| (o.sample, o.accent)).collect();
    let matches = got.len() == expected.len()
        && got.iter().zip(expected).all(|(g, e)| g.0.abs_diff(e.0) <= tolerance && g.1 == e.1);
    assert!(
        matches,
        "{context}: clicks do not match the host's beats\n  got      {got:?}\n  expected {expected:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_beats_in_seven_eight_from_a_pickup() {
        let meter = TimeSignature::new(7, 8).unwrap();
        // 140 BPM: an eighth is 10285.714 samples. Start at 3.25 quarters (half an eighth before
        // bar 2's downbeat at 3.5).
        let beats = expected_beats(140.0, meter, 48_000.0, 3.25, 30_000);
        assert_eq!(beats, vec![(5143, true), (15429, false), (25715, false)]);
    }

    #[test]
    fn finds_onsets_and_accents() {
        let mut signal = vec![0.0f32; 10_000];
        signal[100] = 0.5;
        signal[101] = 0.3;
        signal[5000] = 0.25;
        signal[5001] = 0.2;
        let got = find_onsets(&signal, 1.0);
        assert_eq!(got.iter().map(|o| (o.sample, o.accent)).collect::<Vec<_>>(), [(100, true), (5000, false)]);
    }
}
