//! Bars in: from a number of bars at a tempo, meter and sample rate, the exact length of the
//! take, the span the model is asked to generate, and the source and repaint window an audio
//! task gets. The plugin, the CLI and the server all plan with [`BarPlan`].
//!
//! The rule for short regions: the model is only useful from [`DURATION_MIN_S`] (10 s). A
//! region shorter than that is generated as the fewest whole passes of it that reach 10 s, and
//! every plan adds one more bar after the passes, so that conforming (which may drop up to a beat
//! at the start, or stretch) and closing a loop (which crossfades with what follows the last
//! bar) always have audio to take the cut from. An audio task's source is the region tiled the
//! same way: its passes and then its first bar again.
//!
//! The meter the model is told: its metas know 2, 3, 4 and 6 beats a bar (2/4, 3/4, 4/4, 6/8).
//! Other meters map to the nearest of those by [`model_time_signature`]; the grid, the cut and the
//! beat tracking keep the real meter.

use super::grid::{Grid, GridError, TimeSignature};
use super::AudioBuffer;
use crate::request::{BPM_MAX, BPM_MIN, DURATION_MAX_S, DURATION_MIN_S};

/// Why a region cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("0 bars: a take needs at least one bar")]
    NoBars,
    #[error("tempo {bpm} BPM is outside what the model makes ({BPM_MIN}-{BPM_MAX} BPM)")]
    Tempo { bpm: f64 },
    #[error("the host's time signature {numerator}/{denominator} is not a meter (the numerator must be 1 to 64 and the denominator a power of two)")]
    Meter { numerator: u32, denominator: u32 },
    #[error("{bars} bars at {bpm} BPM last {region_s:.1} s, and with the bar after them the model would have to make {span_s:.1} s; it makes at most {DURATION_MAX_S} s")]
    TooLong { bars: u32, bpm: f64, region_s: f64, span_s: f64 },
    #[error(transparent)]
    Grid(#[from] GridError),
}

/// What a front end knows when it plans a take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarSpec {
    pub bars: u32,
    /// The first bar of the region, counted from 0 (bar 1 in a DAW is 0 here).
    pub start_bar: u32,
    /// Quarter notes per minute.
    pub bpm: f64,
    /// As the host or the user gave it: (numerator, denominator).
    pub meter: (u32, u32),
    /// The rate of the take (the host's, or the file's).
    pub sample_rate: f64,
}

/// A planned take: what to ask the model for, and how long the result is cut to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarPlan {
    pub grid: Grid,
    pub start_bar: u32,
    pub bars: u32,
    /// Exactly `bars` bars at the grid's rate: the take's length in samples.
    pub take_frames: usize,
    /// Whole passes of the region in the generated span (1 when the region is 10 s or more).
    pub passes: u32,
}

impl BarPlan {
    pub fn new(spec: BarSpec) -> Result<Self, PlanError> {
        if spec.bars == 0 {
            return Err(PlanError::NoBars);
        }
        if !(spec.bpm.is_finite() && (BPM_MIN as f64..=BPM_MAX as f64).contains(&spec.bpm)) {
            return Err(PlanError::Tempo { bpm: spec.bpm });
        }
        let (numerator, denominator) = spec.meter;
        let meter = TimeSignature::new(numerator, denominator).map_err(|_| PlanError::Meter { numerator, denominator })?;
        let grid = Grid::new(spec.bpm, meter, spec.sample_rate)?;
        let region_s = grid.bars_to_seconds(spec.bars as f64);
        let passes = (DURATION_MIN_S / region_s - 1e-9).ceil().max(1.0) as u32;
        let plan = Self {
            grid,
            start_bar: spec.start_bar,
            bars: spec.bars,
            take_frames: grid.bars_to_samples(spec.bars) as usize,
            passes,
        };
        if plan.span_s() > DURATION_MAX_S {
            return Err(PlanError::TooLong { bars: spec.bars, bpm: spec.bpm, region_s, span_s: plan.span_s() });
        }
        Ok(plan)
    }

    /// The region's length in seconds.
    pub fn region_s(&self) -> f64 {
        self.grid.bars_to_seconds(self.bars as f64)
    }

    /// The generated span: the passes and one bar after them.
    pub fn span_s(&self) -> f64 {
        self.grid.bars_to_seconds((self.passes * self.bars + 1) as f64)
    }

    /// The duration to ask the model for: the span rounded up to a multiple of 0.2 s, a whole
    /// number of latent frames, so the engine's rounding never makes the audio shorter.
    pub fn request_duration_s(&self) -> f64 {
        (self.span_s() * 5.0 - 1e-9).ceil() / 5.0
    }

    /// Where the region starts in quarter notes from the song start.
    pub fn start_quarters(&self) -> f64 {
        self.start_bar as f64 * self.grid.meter().quarters_per_bar()
    }

    /// The request's `bpm`: the tempo rounded to a whole BPM, which is all the metas carry.
    pub fn metas_bpm(&self) -> u32 {
        self.grid.bpm().round() as u32
    }

    /// The request's `timesignature`, by [`model_time_signature`].
    pub fn metas_timesignature(&self) -> &'static str {
        model_time_signature(self.grid.meter())
    }

    /// The repaint window for a repaint of the region: its first pass, in seconds of the source.
    pub fn repaint_window_s(&self) -> (f64, f64) {
        (0.0, self.region_s())
    }

    /// The source an audio task gets: `region` (exactly the planned bars, at any rate) played
    /// `passes` times and then its first bar again. A region a little shorter or longer than the
    /// planned bars (a capture cut at the host's rate) is padded with silence or cut, per pass.
    pub fn tile_source(&self, region: &AudioBuffer) -> AudioBuffer {
        let rate = region.sample_rate as f64;
        let bars_at = |bars: u32| (self.grid.bars_to_seconds(bars as f64) * rate).round() as usize;
        let pass = bars_at(self.bars);
        let total = bars_at(self.passes * self.bars + 1);
        let channels = region
            .channels
            .iter()
            .map(|c| (0..total).map(|i| c.get(i % pass).copied().unwrap_or(0.0)).collect())
            .collect();
        AudioBuffer::new(region.sample_rate, channels)
    }
}

/// The metas' time signature for a meter. The model knows 2, 3, 4 and 6 beats a bar; the rule
/// for the rest:
/// 1. 2/4, 3/4, 4/4 and 6/8 are themselves ("2", "3", "4", "6"); so are 2/2 ("2") and 6/4 ("6").
/// 2. Other compound meters (9/8, 12/8, 9/16, ...: eighths or sixteenths in threes) count their
///    dotted beats: 9/8 is "3", 12/8 is "4".
/// 3. Anything else takes the known count nearest its numerator, the smaller on a tie:
///    5/4 is "4", 7/8 is "6", 5/8 is "4", 11/8 and 13/16 are "6", 1/4 is "2".
pub fn model_time_signature(meter: TimeSignature) -> &'static str {
    const KNOWN: [(u32, &str); 4] = [(2, "2"), (3, "3"), (4, "4"), (6, "6")];
    let n = meter.numerator;
    let compound = meter.denominator >= 8 && n % 3 == 0 && n > 6;
    let count = if compound { n / 3 } else { n };
    KNOWN
        .iter()
        .min_by_key(|(known, _)| (known.abs_diff(count), *known))
        .map(|&(_, name)| name)
        .expect("KNOWN is not empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bars: u32, bpm: f64, meter: (u32, u32)) -> BarSpec {
        BarSpec { bars, start_bar: 0, bpm, meter, sample_rate: 48_000.0 }
    }

    #[test]
    fn takes_are_exact_bars_at_any_meter_and_rate() {
        // (bars, bpm, meter, rate, samples worked out by hand)
        let cases = [
            (4, 120.0, (4, 4), 48_000.0, 384_000),
            (2, 90.0, (3, 4), 48_000.0, 192_000),
            (1, 90.0, (6, 8), 48_000.0, 96_000),
            (4, 93.0, (7, 8), 48_000.0, 433_548), // 14 quarters * 60/93 s = 9.0323 s
            (3, 100.0, (5, 4), 44_100.0, 396_900), // 15 quarters * 0.6 s = 9 s
            (2, 140.0, (12, 8), 96_000.0, 493_714), // 12 quarters * 60/140 s = 5.142857 s
        ];
        for (bars, bpm, meter, rate, want) in cases {
            let plan = BarPlan::new(BarSpec { sample_rate: rate, ..spec(bars, bpm, meter) }).unwrap();
            assert_eq!(plan.take_frames, want, "{bars} bars {bpm} {meter:?} {rate}");
        }
    }

    #[test]
    fn short_regions_are_generated_as_whole_passes_and_a_bar() {
        // 4 bars of 4/4 at 120: 8 s, two passes (16 s) and a bar (2 s), asked as 18 s.
        let plan = BarPlan::new(spec(4, 120.0, (4, 4))).unwrap();
        assert_eq!((plan.passes, plan.span_s(), plan.request_duration_s()), (2, 18.0, 18.0));
        // 8 bars at 120: 16 s already, one pass and a bar.
        let plan = BarPlan::new(spec(8, 120.0, (4, 4))).unwrap();
        assert_eq!((plan.passes, plan.span_s()), (1, 18.0));
        // 5 bars at 120: exactly 10 s is one pass, not two.
        assert_eq!(BarPlan::new(spec(5, 120.0, (4, 4))).unwrap().passes, 1);
        // 1 bar of 7/8 at 93 (2.258 s): five passes (11.29 s) and a bar; the request rounds up to
        // a multiple of 0.2 s.
        let plan = BarPlan::new(spec(1, 93.0, (7, 8))).unwrap();
        assert_eq!(plan.passes, 5);
        assert!((plan.span_s() - 6.0 * 3.5 * 60.0 / 93.0).abs() < 1e-9);
        assert!(plan.request_duration_s() >= plan.span_s() && plan.request_duration_s() < plan.span_s() + 0.2);
        assert!(((plan.request_duration_s() * 5.0).round() - plan.request_duration_s() * 5.0).abs() < 1e-9);
    }

    #[test]
    fn meters_the_model_does_not_know_map_by_the_documented_rule() {
        let name = |n, d| model_time_signature(TimeSignature::new(n, d).unwrap());
        let cases = [
            ((4, 4), "4"), ((3, 4), "3"), ((2, 4), "2"), ((6, 8), "6"), ((2, 2), "2"), ((6, 4), "6"),
            ((9, 8), "3"), ((12, 8), "4"), ((9, 16), "3"),
            ((5, 4), "4"), ((7, 8), "6"), ((5, 8), "4"), ((11, 8), "6"), ((13, 16), "6"), ((1, 4), "2"), ((3, 8), "3"),
        ];
        for ((n, d), want) in cases {
            assert_eq!(name(n, d), want, "{n}/{d}");
        }
        // The grid keeps the real meter.
        let plan = BarPlan::new(spec(4, 93.0, (7, 8))).unwrap();
        assert_eq!((plan.grid.meter().to_string(), plan.metas_timesignature()), ("7/8".to_string(), "6"));
    }

    #[test]
    fn the_source_is_the_region_tiled_with_its_first_bar_after() {
        // 2 bars of 4/4 at 120 at 1 kHz: 4000 samples a pass; 10 s needs 3 passes, then a bar.
        let plan = BarPlan::new(BarSpec { sample_rate: 1000.0, ..spec(2, 120.0, (4, 4)) }).unwrap();
        let region: Vec<f32> = (0..4000).map(|i| i as f32).collect();
        let tiled = plan.tile_source(&AudioBuffer::new(1000, vec![region.clone()]));
        assert_eq!(tiled.frames(), 3 * 4000 + 2000);
        assert_eq!(&tiled.channels[0][4000..8000], &region[..]);
        assert_eq!(&tiled.channels[0][12_000..], &region[..2000]);
        // A capture one sample short is padded per pass, so each pass stays on the grid.
        let short = plan.tile_source(&AudioBuffer::new(1000, vec![region[..3999].to_vec()]));
        assert_eq!((short.frames(), short.channels[0][3999], short.channels[0][4000]), (14_000, 0.0, 0.0));
    }

    #[test]
    fn bad_input_is_refused_in_words() {
        assert_eq!(BarPlan::new(spec(0, 120.0, (4, 4))), Err(PlanError::NoBars));
        for bpm in [29.9, 300.5, 0.0, f64::NAN, -120.0] {
            assert!(matches!(BarPlan::new(spec(4, bpm, (4, 4))), Err(PlanError::Tempo { .. })), "{bpm}");
        }
        let err = BarPlan::new(spec(4, 120.0, (0, 0))).unwrap_err();
        assert_eq!(err, PlanError::Meter { numerator: 0, denominator: 0 });
        assert!(err.to_string().contains("0/0"), "{err}");
        let err = BarPlan::new(spec(400, 60.0, (4, 4))).unwrap_err();
        assert!(err.to_string().contains("at most 600"), "{err}");
        assert!(matches!(BarPlan::new(BarSpec { sample_rate: 0.0, ..spec(4, 120.0, (4, 4)) }), Err(PlanError::Grid(_))));
    }
}
