//! The musical grid: bars and beats <-> quarter notes <-> samples, at one tempo and meter.
//!
//! Conventions, chosen to match what CLAP and VST3 hosts report:
//! - Tempo is in quarter notes per minute, whatever the meter (a 6/8 song at "90 BPM" has 90
//!   quarter notes, i.e. 180 eighth notes, per minute).
//! - Positions are in quarter notes from the start of the song (host "PPQ" / "beats").
//! - A *beat* is one unit of the meter's denominator: a quarter in 3/4, an eighth in 6/8 and 7/8.
//! - Bars and beats are counted from 0 in the API and shown from 1 (`bar 1 | beat 1`) to people.
//!
//! A `Grid` assumes one constant tempo and meter. Where the host reports the start of the current
//! bar, use [`Grid::position_from_bar_start`] so tempo or meter changes earlier in the song do not
//! shift the bar lines.

use std::fmt;

/// Errors from building a grid out of numbers a host or a user gave us.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GridError {
    #[error("tempo {bpm} BPM is not usable: it must be a finite number from 1 to 1000")]
    InvalidTempo { bpm: f64 },
    #[error(
        "time signature {numerator}/{denominator} is not usable: the numerator must be 1 to 64 \
         and the denominator a power of two from 1 to 64"
    )]
    InvalidTimeSignature { numerator: u32, denominator: u32 },
    #[error("sample rate {sample_rate} Hz is not usable: it must be a finite number from 1 Hz to 1 MHz")]
    InvalidSampleRate { sample_rate: f64 },
}

/// A meter such as 4/4, 3/4, 6/8 or 7/8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TimeSignature {
    pub numerator: u32,
    pub denominator: u32,
}

impl TimeSignature {
    pub const FOUR_FOUR: Self = Self { numerator: 4, denominator: 4 };

    pub fn new(numerator: u32, denominator: u32) -> Result<Self, GridError> {
        let numerator_ok = (1..=64).contains(&numerator);
        let denominator_ok = (1..=64).contains(&denominator) && denominator.is_power_of_two();
        if numerator_ok && denominator_ok {
            Ok(Self { numerator, denominator })
        } else {
            Err(GridError::InvalidTimeSignature { numerator, denominator })
        }
    }

    /// Length of one beat (one denominator unit) in quarter notes: 1 in x/4, 0.5 in x/8.
    pub fn quarters_per_beat(&self) -> f64 {
        4.0 / self.denominator as f64
    }

    /// Length of one bar in quarter notes: 4 in 4/4, 3 in 3/4 and 6/8, 3.5 in 7/8.
    pub fn quarters_per_bar(&self) -> f64 {
        self.numerator as f64 * self.quarters_per_beat()
    }
}

impl Default for TimeSignature {
    fn default() -> Self {
        Self::FOUR_FOUR
    }
}

impl fmt::Display for TimeSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

/// A point on the grid: bar and beat counted from 0, plus how far into the beat (0..1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MusicalPosition {
    pub bar: i64,
    pub beat: u32,
    pub beat_fraction: f64,
}

impl fmt::Display for MusicalPosition {
    /// Shown the way DAWs show it, counting from 1: `3.2` is the second beat of the third bar.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.bar + 1, self.beat + 1)
    }
}

/// A beat line on the grid, as found by [`Grid::next_beat`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeatLine {
    /// Position of the line in quarter notes from the song start.
    pub quarters: f64,
    /// Which beat of its bar this is (0 = the downbeat).
    pub beat_in_bar: u32,
}

/// One tempo, one meter, one sample rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    bpm: f64,
    meter: TimeSignature,
    sample_rate: f64,
}

impl Grid {
    pub fn new(bpm: f64, meter: TimeSignature, sample_rate: f64) -> Result<Self, GridError> {
        if !(bpm.is_finite() && (1.0..=1000.0).contains(&bpm)) {
            return Err(GridError::InvalidTempo { bpm });
        }
        if !(sample_rate.is_finite() && (1.0..=1_000_000.0).contains(&sample_rate)) {
            return Err(GridError::InvalidSampleRate { sample_rate });
        }
        Ok(Self { bpm, meter, sample_rate })
    }

    pub fn bpm(&self) -> f64 {
        self.bpm
    }

    pub fn meter(&self) -> TimeSignature {
        self.meter
    }

    pub fn sample_rate(&self) -> f64 {
        self.sample_rate
    }

    pub fn seconds_per_quarter(&self) -> f64 {
        60.0 / self.bpm
    }

    pub fn samples_per_quarter(&self) -> f64 {
        self.sample_rate * 60.0 / self.bpm
    }

    pub fn samples_per_beat(&self) -> f64 {
        self.samples_per_quarter() * self.meter.quarters_per_beat()
    }

    pub fn samples_per_bar(&self) -> f64 {
        self.samples_per_quarter() * self.meter.quarters_per_bar()
    }

    pub fn quarters_to_samples(&self, quarters: f64) -> f64 {
        quarters * self.samples_per_quarter()
    }

    pub fn samples_to_quarters(&self, samples: f64) -> f64 {
        samples / self.samples_per_quarter()
    }

    /// Duration of `bars` bars in seconds (exact, not rounded to samples).
    pub fn bars_to_seconds(&self, bars: f64) -> f64 {
        bars * self.meter.quarters_per_bar() * self.seconds_per_quarter()
    }

    /// Length of `bars` whole bars in samples, rounded to the nearest sample. This is the length a
    /// take of that many bars is cut to.
    pub fn bars_to_samples(&self, bars: u32) -> u64 {
        (bars as f64 * self.samples_per_bar()).round() as u64
    }

    /// The sample at which bar `bar` (0-based, from the song start) begins, rounded.
    pub fn bar_start_sample(&self, bar: i64) -> i64 {
        (bar as f64 * self.samples_per_bar()).round() as i64
    }

    /// The fewest whole bars that last at least `seconds` (at least one bar).
    pub fn bars_covering(&self, seconds: f64) -> u32 {
        let bar_s = self.bars_to_seconds(1.0);
        // The epsilon keeps an exact fit (8 bars of 2 s for 16 s) from rounding up to 9 bars.
        let bars = (seconds / bar_s - 1e-9).ceil();
        bars.clamp(1.0, u32::MAX as f64) as u32
    }

    /// Bar and beat at `quarters`, assuming this tempo and meter since the song start.
    pub fn position(&self, quarters: f64) -> MusicalPosition {
        let bar_len = self.meter.quarters_per_bar();
        let bar = (quarters / bar_len + 1e-9).floor();
        self.position_from_bar_start(quarters, bar * bar_len, bar as i64)
    }

    /// Bar and beat at `quarters`, given where the host says the current bar started and which
    /// bar number that is. The host's bar line wins over our own arithmetic.
    pub fn position_from_bar_start(
        &self,
        quarters: f64,
        bar_start_quarters: f64,
        bar: i64,
    ) -> MusicalPosition {
        let into_bar = (quarters - bar_start_quarters).max(0.0);
        let beats = into_bar / self.meter.quarters_per_beat();
        // Small epsilon: a position computed as 0.9999999999 of a beat is on the beat.
        let whole = (beats + 1e-9).floor();
        let beat = (whole as u32).min(self.meter.numerator - 1);
        MusicalPosition { bar, beat, beat_fraction: (beats - beat as f64).max(0.0) }
    }

    /// The first beat line at or after `quarters`, with bar lines anchored at
    /// `bar_start_quarters` (any bar line of the song; the host's current bar start is best).
    pub fn next_beat(&self, quarters: f64, bar_start_quarters: f64) -> BeatLine {
        let beat_len = self.meter.quarters_per_beat();
        // Beats are counted from the anchor; the epsilon keeps a line we are sitting on (up to
        // rounding) from being skipped.
        let k = ((quarters - bar_start_quarters) / beat_len - 1e-9).ceil() as i64;
        let numerator = self.meter.numerator as i64;
        BeatLine {
            quarters: bar_start_quarters + k as f64 * beat_len,
            beat_in_bar: k.rem_euclid(numerator) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(bpm: f64, n: u32, d: u32) -> Grid {
        Grid::new(bpm, TimeSignature::new(n, d).unwrap(), 48_000.0).unwrap()
    }

    mod time_signature {
        use super::*;

        #[test]
        fn bar_lengths_in_quarters() {
            // (meter, quarters per bar, quarters per beat) worked out by hand.
            let cases = [((4, 4), 4.0, 1.0), ((3, 4), 3.0, 1.0), ((6, 8), 3.0, 0.5), ((7, 8), 3.5, 0.5), ((5, 4), 5.0, 1.0), ((2, 2), 4.0, 2.0)];
            for ((n, d), bar, beat) in cases {
                let ts = TimeSignature::new(n, d).unwrap();
                assert_eq!(ts.quarters_per_bar(), bar, "{ts}");
                assert_eq!(ts.quarters_per_beat(), beat, "{ts}");
            }
        }

        #[test]
        fn rejects_meters_no_host_can_mean() {
            for (n, d) in [(0, 4), (4, 0), (4, 3), (4, 6), (65, 4), (4, 128)] {
                assert_eq!(
                    TimeSignature::new(n, d),
                    Err(GridError::InvalidTimeSignature { numerator: n, denominator: d })
                );
            }
        }
    }

    mod samples {
        use super::*;

        #[test]
        fn bar_lengths_at_48k() {
            // 120 BPM 4/4: a quarter is 0.5 s = 24000 samples, a bar 96000.
            assert_eq!(grid(120.0, 4, 4).bars_to_samples(1), 96_000);
            // 90 BPM 3/4: a quarter is 2/3 s = 32000 samples, a bar 96000.
            assert_eq!(grid(90.0, 3, 4).bars_to_samples(2), 192_000);
            // 90 BPM 6/8: an eighth is 16000 samples, six of them 96000.
            assert_eq!(grid(90.0, 6, 8).bars_to_samples(1), 96_000);
            assert_eq!(grid(90.0, 6, 8).samples_per_beat(), 16_000.0);
            // 140 BPM 7/8: 3.5 quarters * 60/140 s = 1.5 s = 72000 samples.
            assert_eq!(grid(140.0, 7, 8).bars_to_samples(1), 72_000);
            // 128 BPM 4/4, 4 bars: 16 * 60/128 s = 7.5 s = 360000 samples.
            assert_eq!(grid(128.0, 4, 4).bars_to_samples(4), 360_000);
        }

        #[test]
        fn non_integer_bars_round_to_nearest_sample() {
            // 133 BPM 4/4 at 44.1 kHz: 4 * 60/133 * 44100 = 79578.947... samples.
            let g = Grid::new(133.0, TimeSignature::FOUR_FOUR, 44_100.0).unwrap();
            assert_eq!(g.bars_to_samples(1), 79_579);
            assert_eq!(g.bars_to_samples(3), 238_737); // 238736.84 -> 238737
            assert_eq!(g.bar_start_sample(3), 238_737);
        }

        #[test]
        fn quarters_and_samples_round_trip_at_any_tempo_and_meter() {
            for bpm in [37.5, 60.0, 97.3, 120.0, 174.0, 300.0] {
                for (n, d) in [(4, 4), (3, 4), (6, 8), (7, 8)] {
                    let g = grid(bpm, n, d);
                    for q in [0.0, 0.25, 1.0, 3.5, 1234.567] {
                        let back = g.samples_to_quarters(g.quarters_to_samples(q));
                        assert!((back - q).abs() < 1e-9, "{bpm} {n}/{d} {q} -> {back}");
                    }
                }
            }
        }

        #[test]
        fn bars_covering_a_duration() {
            let g = grid(120.0, 4, 4); // 2 s bars
            assert_eq!(g.bars_covering(16.0), 8); // exact fit stays 8
            assert_eq!(g.bars_covering(16.01), 9);
            assert_eq!(g.bars_covering(10.0), 5);
            assert_eq!(g.bars_covering(0.0), 1);
            let g = grid(140.0, 7, 8); // 1.5 s bars
            assert_eq!(g.bars_covering(10.0), 7); // 10.5 s
        }

        #[test]
        fn rejects_unusable_numbers() {
            let ts = TimeSignature::FOUR_FOUR;
            for bpm in [0.0, -120.0, f64::NAN, f64::INFINITY, 5000.0] {
                assert!(matches!(Grid::new(bpm, ts, 48_000.0), Err(GridError::InvalidTempo { .. })), "{bpm}");
            }
            for sr in [0.0, -1.0, f64::NAN] {
                assert!(matches!(Grid::new(120.0, ts, sr), Err(GridError::InvalidSampleRate { .. })), "{sr}");
            }
        }
    }

    mod position {
        use super::*;

        #[test]
        fn bar_and_beat_in_common_meters() {
            // (meter, quarters, expected "bar.beat" counted from 1)
            let cases = [
                ((4, 4), 0.0, "1.1"),
                ((4, 4), 3.99, "1.4"),
                ((4, 4), 4.0, "2.1"),
                ((4, 4), 9.5, "3.2"),
                ((3, 4), 3.0, "2.1"),
                ((3, 4), 8.0, "3.3"),
                ((6, 8), 3.0, "2.1"),
                ((6, 8), 4.5, "2.4"), // 1.5 quarters into bar 2 = the 4th eighth
                ((7, 8), 3.5, "2.1"),
                ((7, 8), 6.5, "2.7"),
                ((7, 8), 7.0, "3.1"),
            ];
            for ((n, d), q, want) in cases {
                let got = grid(120.0, n, d).position(q).to_string();
                assert_eq!(got, want, "{n}/{d} at {q} quarters");
            }
        }

        #[test]
        fn a_position_a_hair_before_the_line_counts_as_on_it() {
            let g = grid(120.0, 7, 8);
            let p = g.position(7.0 - 1e-12);
            assert_eq!((p.bar, p.beat), (2, 0));
        }

        #[test]
        fn host_bar_start_wins_over_own_arithmetic() {
            // The song was in 4/4 for 3 bars (12 quarters), then changed to 3/4: the host says the
            // current bar (number 4, 0-based) started at quarter 15.
            let g = grid(100.0, 3, 4);
            let p = g.position_from_bar_start(16.5, 15.0, 4);
            assert_eq!((p.bar, p.beat), (4, 1));
            assert!((p.beat_fraction - 0.5).abs() < 1e-12);
        }
    }

    mod next_beat {
        use super::*;

        #[test]
        fn finds_beat_lines_and_downbeats() {
            let g = grid(120.0, 7, 8);
            // Sitting on the downbeat of bar 2 (3.5 quarters).
            assert_eq!(g.next_beat(3.5, 0.0), BeatLine { quarters: 3.5, beat_in_bar: 0 });
            // Just after it: the next eighth.
            assert_eq!(g.next_beat(3.5001, 0.0), BeatLine { quarters: 4.0, beat_in_bar: 1 });
            // Last eighth of bar 2 then the downbeat of bar 3.
            assert_eq!(g.next_beat(6.2, 0.0), BeatLine { quarters: 6.5, beat_in_bar: 6 });
            assert_eq!(g.next_beat(6.7, 0.0), BeatLine { quarters: 7.0, beat_in_bar: 0 });
        }

        #[test]
        fn anchored_at_the_hosts_bar_start() {
            let g = grid(120.0, 3, 4);
            // Bar lines at 1.5 + 3k (the song started with a pickup).
            assert_eq!(g.next_beat(4.2, 1.5), BeatLine { quarters: 4.5, beat_in_bar: 0 });
            assert_eq!(g.next_beat(0.2, 1.5), BeatLine { quarters: 0.5, beat_in_bar: 2 });
        }

        #[test]
        fn walking_the_lines_gives_every_beat_once() {
            for (n, d) in [(4, 4), (3, 4), (6, 8), (7, 8)] {
                let g = grid(97.0, n, d);
                let mut q = 0.0;
                let mut seen = Vec::new();
                for _ in 0..(3 * n) {
                    let line = g.next_beat(q, 0.0);
                    seen.push(line.beat_in_bar);
                    q = line.quarters + 1e-6;
                }
                let want: Vec<u32> = (0..3).flat_map(|_| 0..n).collect();
                assert_eq!(seen, want, "{n}/{d}");
            }
        }
    }
}
