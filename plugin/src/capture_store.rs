//! The capture thread's bar-indexed store of what the transport played through the input.
//!
//! Every bar is made of frames from one pass of the transport (see [`BlockStamp::pass`]): a bar
//! is *complete* when one pass played it from its downbeat to its end. A pass that covers only
//! part of a bar (a stop, a locate, a loop wrap, a lost block) leaves it *partial* and never
//! pastes frames from two passes together; an earlier complete recording of the bar stays until
//! a new pass completes it. Positions come from the host stamps, so a tempo change between bars
//! simply gives bars of different lengths in samples.
//!
//! The store holds at most `limit_s` seconds; the bars completed longest ago go first.

use std::collections::BTreeMap;

use backline_engine::audio::AudioBuffer;

use crate::capture::{BlockStamp, CaptureBlock};

/// How much audio the store keeps by default: ten minutes.
pub const DEFAULT_CAPTURE_LIMIT_S: f64 = 600.0;
/// The least it may keep: a few bars at any tempo a song uses.
pub const MIN_CAPTURE_LIMIT_S: f64 = 10.0;
/// Points of the waveform overview drawn per bar.
pub const OVERVIEW_POINTS: usize = 32;

/// One recording of one bar.
#[derive(Debug, Clone)]
struct Take {
    pass: u32,
    /// Frames the bar lasts at the tempo it was recorded at.
    expected: usize,
    /// Frames recorded, from the downbeat when `from_downbeat`.
    left: Vec<f32>,
    right: Vec<f32>,
    from_downbeat: bool,
    sample_rate: f32,
    start_quarters: f64,
    /// Host position of the downbeat, in samples.
    start_sample: i64,
}

impl Take {
    fn is_complete(&self) -> bool {
        self.from_downbeat && self.left.len() >= self.expected
    }
}

#[derive(Debug, Clone, Default)]
struct Bar {
    complete: Option<Take>,
    recording: Option<Take>,
    /// When `complete` was last replaced (store-wide counter), for eviction.
    completed_at: u64,
}

/// What the editor draws for one bar.
#[derive(Debug, Clone, PartialEq)]
pub struct BarSummary {
    /// 0-based bar number on the host timeline.
    pub number: i64,
    pub complete: bool,
    /// Peak per slice of the bar (empty when nothing complete is stored).
    pub overview: Vec<f32>,
}

/// Why a region cannot be used as a source.
#[derive(Debug, Clone, PartialEq)]
pub enum RegionError {
    Missing { bar: i64 },
    Partial { bar: i64 },
    MixedRates { bar: i64 },
}

impl std::fmt::Display for RegionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { bar } => write!(f, "bar {} was never captured: play it through once with the transport running", bar + 1),
            Self::Partial { bar } => write!(f, "bar {} was only partly captured (the transport stopped or jumped inside it): play it through once", bar + 1),
            Self::MixedRates { bar } => write!(f, "bar {} was captured at another sample rate: capture it again", bar + 1),
        }
    }
}

/// Captured bars, ready to be a job's source.
#[derive(Debug, Clone)]
pub struct CapturedRegion {
    pub audio: AudioBuffer,
    /// Where the first bar's downbeat is, in quarters and host samples.
    pub start_quarters: f64,
    pub start_sample: i64,
}

/// Capture thread (behind the session's lock): the bars captured so far.
#[derive(Debug)]
pub struct CaptureStore {
    bars: BTreeMap<i64, Bar>,
    limit_s: f64,
    clock: u64,
    /// Bars dropped to stay under the limit since the last `take_evicted` call.
    evicted: u64,
    /// The bar grid of the pass being recorded.
    pass: Option<PassGrid>,
    /// The bar the last block went into.
    writing: Option<i64>,
}

/// Where the bars of one pass fall, in host samples. One pass has one tempo and meter (the
/// writer starts a new pass when either changes), so its bar lines are fixed by its first stamp;
/// they are rounded from exact positions, so they never drift from the host's.
#[derive(Debug, Clone)]
struct PassGrid {
    pass: u32,
    first_bar: i64,
    first_bar_quarters: f64,
    quarters_per_bar: f64,
    /// The first bar's downbeat in host samples, exact (not rounded).
    first_bar_sample: f64,
    bar_frames: f64,
}

impl PassGrid {
    fn new(stamp: &BlockStamp) -> Self {
        let into_bar = (stamp.pos_quarters - stamp.bar_start_quarters) * stamp.samples_per_quarter;
        Self {
            pass: stamp.pass,
            first_bar: stamp.bar_number,
            first_bar_quarters: stamp.bar_start_quarters,
            quarters_per_bar: stamp.quarters_per_bar,
            first_bar_sample: stamp.pos_samples as f64 - into_bar,
            bar_frames: stamp.quarters_per_bar * stamp.samples_per_quarter,
        }
    }

    fn bar_start_sample(&self, index: i64) -> i64 {
        (self.first_bar_sample + index as f64 * self.bar_frames).round() as i64
    }

    /// The bar (counted from the pass's first) that holds host sample `position`.
    fn bar_index(&self, position: i64) -> i64 {
        let mut index = ((position as f64 - self.first_bar_sample) / self.bar_frames).floor() as i64;
        while self.bar_start_sample(index) > position {
            index -= 1;
        }
        while self.bar_start_sample(index + 1) <= position {
            index += 1;
        }
        index
    }
}

/// A run of frames inside one bar.
struct PlacedRun {
    bar: i64,
    start_quarters: f64,
    start_sample: i64,
    offset: usize,
    expected: usize,
}

impl CaptureStore {
    pub fn new(limit_s: f64) -> Self {
        Self { bars: BTreeMap::new(), limit_s, clock: 0, evicted: 0, pass: None, writing: None }
    }

    pub fn clear(&mut self) {
        self.bars.clear();
        self.pass = None;
    }

    pub fn limit_s(&self) -> f64 {
        self.limit_s
    }

    /// A new limit, applied now: a lower one drops the oldest bars at once.
    pub fn set_limit_s(&mut self, limit_s: f64) {
        self.limit_s = limit_s;
        self.enforce_limit();
    }

    /// Adds a block's frames to the bars they fall in.
    pub fn add(&mut self, block: &CaptureBlock) {
        let stamp = block.stamp;
        if self.pass.as_ref().is_none_or(|grid| grid.pass != stamp.pass) {
            self.pass = Some(PassGrid::new(&stamp));
        }
        let grid = self.pass.clone().expect("set above");
        let mut done = 0;
        while done < block.frames {
            let position = stamp.pos_samples + done as i64;
            let index = grid.bar_index(position);
            let bar_start = grid.bar_start_sample(index);
            let expected = (grid.bar_start_sample(index + 1) - bar_start) as usize;
            let offset = (position - bar_start) as usize;
            let run = (expected - offset).min(block.frames - done);
            let placed = PlacedRun {
                bar: grid.first_bar + index,
                start_quarters: grid.first_bar_quarters + index as f64 * grid.quarters_per_bar,
                start_sample: bar_start,
                offset,
                expected,
            };
            self.write(&stamp, &placed, &block.left[done..done + run], &block.right[done..done + run]);
            done += run;
        }
        self.enforce_limit();
    }

    fn write(&mut self, stamp: &BlockStamp, at: &PlacedRun, left: &[f32], right: &[f32]) {
        self.writing = Some(at.bar);
        let bar = self.bars.entry(at.bar).or_default();
        let continues = bar.recording.as_ref().is_some_and(|take| {
            take.pass == stamp.pass && take.left.len() == at.offset && take.sample_rate == stamp.sample_rate
        });
        if !continues {
            // Mid-bar entry: the frames before `offset` are not ours; the zeros only keep the
            // length honest, and such a recording never counts as complete.
            bar.recording = Some(Take {
                pass: stamp.pass,
                expected: at.expected,
                left: vec![0.0; at.offset],
                right: vec![0.0; at.offset],
                from_downbeat: at.offset == 0,
                sample_rate: stamp.sample_rate,
                start_quarters: at.start_quarters,
                start_sample: at.start_sample,
            });
        }
        let take = bar.recording.as_mut().expect("set above");
        take.left.extend_from_slice(left);
        take.right.extend_from_slice(right);
        if take.is_complete() {
            bar.complete = bar.recording.take();
            self.clock += 1;
            bar.completed_at = self.clock;
        }
    }

    fn stored_frames_and_rate(&self) -> (f64, usize) {
        let mut seconds = 0.0;
        let mut frames = 0;
        for bar in self.bars.values() {
            for take in bar.complete.iter().chain(&bar.recording) {
                seconds += take.left.len() as f64 / take.sample_rate as f64;
                frames += take.left.len();
            }
        }
        (seconds, frames)
    }

    /// Seconds of audio held (complete and partial bars).
    pub fn seconds(&self) -> f64 {
        self.stored_frames_and_rate().0
    }

    /// Bytes of audio held.
    pub fn bytes(&self) -> usize {
        self.stored_frames_and_rate().1 * 2 * std::mem::size_of::<f32>()
    }

    /// Bars dropped to stay under the limit since the last call.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    fn enforce_limit(&mut self) {
        while self.seconds() > self.limit_s {
            // Partial recordings that are not being written go first, then the oldest complete bar.
            // The bar being written stays.
            let oldest = self
                .bars
                .iter()
                .filter(|(number, _)| Some(**number) != self.writing)
                .min_by_key(|(_, bar)| (bar.complete.is_some(), bar.completed_at))
                .map(|(number, _)| *number);
            let Some(number) = oldest else { break };
            self.bars.remove(&number);
            self.evicted += 1;
        }
    }

    /// The complete bars `first .. first + count` joined, at the rate they were captured at.
    pub fn region(&self, first: i64, count: u32) -> Result<CapturedRegion, RegionError> {
        let mut left = Vec::new();
        let mut right = Vec::new();
        let mut start: Option<(f64, i64, f32)> = None;
        for bar in first..first + count as i64 {
            let entry = self.bars.get(&bar);
            let Some(take) = entry.and_then(|b| b.complete.as_ref()) else {
                return Err(if entry.is_some_and(|b| b.recording.is_some()) {
                    RegionError::Partial { bar }
                } else {
                    RegionError::Missing { bar }
                });
            };
            let rate = *start.get_or_insert((take.start_quarters, take.start_sample, take.sample_rate));
            if rate.2 != take.sample_rate {
                return Err(RegionError::MixedRates { bar });
            }
            left.extend_from_slice(&take.left[..take.expected]);
            right.extend_from_slice(&take.right[..take.expected]);
        }
        let (start_quarters, start_sample, rate) = start.unwrap_or((0.0, 0, 48_000.0));
        Ok(CapturedRegion {
            audio: AudioBuffer::new(rate.round() as u32, vec![left, right]),
            start_quarters,
            start_sample,
        })
    }

    /// Every bar held, in order, for the editor's strip.
    pub fn summary(&self) -> Vec<BarSummary> {
        self.bars
            .iter()
            .map(|(&number, bar)| BarSummary {
                number,
                complete: bar.complete.is_some(),
                overview: bar.complete.as_ref().map(overview).unwrap_or_default(),
            })
            .collect()
    }
}

fn overview(take: &Take) -> Vec<f32> {
    let slice = take.expected.div_ceil(OVERVIEW_POINTS).max(1);
    take.left[..take.expected]
        .chunks(slice)
        .zip(take.right[..take.expected].chunks(slice))
        .map(|(l, r)| l.iter().chain(r).fold(0.0f32, |m, x| m.max(x.abs())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureWriter, WhenFull, CAPTURE_BLOCK_FRAMES};
    use crate::transport::TransportSnapshot;
    use backline_engine::audio::grid::TimeSignature;

    /// A host playing `blocks` blocks of `block` frames from `quarters` at `bpm` in `meter`; the
    /// input's sample at host position p is `p` itself (so every captured frame names its origin).
    fn play(store: &mut CaptureStore, pass_writer: &mut CaptureWriter, rx: &mut rtrb::Consumer<CaptureBlock>, bpm: f64, meter: (u32, u32), quarters: f64, frames: usize, block: usize) {
        let meter = TimeSignature::new(meter.0, meter.1).unwrap();
        let spq = 48_000.0 * 60.0 / bpm;
        let qpb = meter.quarters_per_bar();
        let start_sample = (quarters * spq).round() as i64;
        let mut done = 0;
        while done < frames {
            let n = block.min(frames - done);
            let pos = start_sample + done as i64;
            let q = pos as f64 / spq;
            let bar = (q / qpb + 1e-9).floor();
            let t = TransportSnapshot {
                playing: true,
                bpm,
                tempo_from_host: true,
                meter,
                meter_from_host: true,
                sample_rate: 48_000.0,
                pos_samples: Some(pos),
                pos_quarters: Some(q),
                bar_start_quarters: Some(bar * qpb),
                bar_number: Some(bar as i32),
                loop_quarters: None,
                block_counter: 0,
            };
            let x: Vec<f32> = (0..n).map(|i| (pos + i as i64) as f32).collect();
            pass_writer.record(&t, &x, &x);
            while let Ok(b) = rx.pop() {
                store.add(&b);
            }
            done += n;
        }
    }

    fn stop(store: &mut CaptureStore, writer: &mut CaptureWriter, rx: &mut rtrb::Consumer<CaptureBlock>) {
        writer.flush();
        while let Ok(b) = rx.pop() {
            store.add(&b);
        }
    }

    fn setup() -> (CaptureStore, CaptureWriter, rtrb::Consumer<CaptureBlock>) {
        let (tx, rx) = rtrb::RingBuffer::new(4096);
        (CaptureStore::new(DEFAULT_CAPTURE_LIMIT_S), CaptureWriter::new(tx, WhenFull::Drop), rx)
    }

    #[test]
    fn bars_are_exactly_the_host_samples_of_each_bar() {
        for (bpm, meter, block) in [(120.0, (4, 4), 480), (93.0, (7, 8), 64), (93.0, (4, 4), 1000)] {
            let (mut store, mut w, mut rx) = setup();
            let spq = 48_000.0 * 60.0 / bpm;
            let qpb = TimeSignature::new(meter.0, meter.1).unwrap().quarters_per_bar();
            let bar_frames = (qpb * spq).round() as usize;
            play(&mut store, &mut w, &mut rx, bpm, meter, 0.0, bar_frames * 5 + 17, block);
            stop(&mut store, &mut w, &mut rx);
            let region = store.region(1, 3).unwrap();
            let exact = qpb * spq;
            let expected = ((4.0 * exact).round() - exact.round()) as usize;
            assert_eq!(region.audio.frames(), expected, "{bpm} {meter:?}");
            let first = (qpb * spq).round();
            assert_eq!(region.audio.channels[0][0], first as f32, "starts on bar 2's downbeat");
            assert_eq!(region.start_quarters, qpb);
            for (i, x) in region.audio.channels[1].iter().enumerate() {
                // The bars join without a gap or an overlap: host samples, in order.
                assert_eq!(*x, first as f32 + i as f32, "frame {i}");
            }
            assert!(matches!(store.region(5, 1), Err(RegionError::Partial { bar: 5 })));
        }
    }

    #[test]
    fn a_jump_leaves_the_bar_partial_and_never_splices_two_passes() {
        let (mut store, mut w, mut rx) = setup();
        let bar = 96_000; // 4/4 at 120
        play(&mut store, &mut w, &mut rx, 120.0, (4, 4), 0.0, bar + bar / 2, 256);
        stop(&mut store, &mut w, &mut rx);
        // Locate into the middle of bar 2 and play on: bar 2 is still partial.
        play(&mut store, &mut w, &mut rx, 120.0, (4, 4), 5.0, bar, 256);
        stop(&mut store, &mut w, &mut rx);
        assert!(matches!(store.region(1, 1), Err(RegionError::Partial { bar: 1 })));
        assert!(store.region(0, 1).is_ok());
        assert_eq!(store.region(7, 1).unwrap_err(), RegionError::Missing { bar: 7 });
        let summary = store.summary();
        assert_eq!(summary.iter().map(|b| (b.number, b.complete)).collect::<Vec<_>>(), [(0, true), (1, false), (2, false)]);
        assert_eq!(summary[0].overview.len(), OVERVIEW_POINTS);
    }

    #[test]
    fn a_loop_rerecords_a_bar_only_when_a_pass_completes_it() {
        let (mut store, mut w, mut rx) = setup();
        let bar = 96_000;
        play(&mut store, &mut w, &mut rx, 120.0, (4, 4), 0.0, 2 * bar, 512);
        stop(&mut store, &mut w, &mut rx);
        let first = store.region(0, 2).unwrap().audio;
        // A second pass over bar 1 that stops half way: bar 1 keeps the first pass.
        play(&mut store, &mut w, &mut rx, 120.0, (4, 4), 0.0, bar / 2, 512);
        stop(&mut store, &mut w, &mut rx);
        assert_eq!(store.region(0, 2).unwrap().audio, first);
    }

    #[test]
    fn a_tempo_change_between_bars_gives_each_bar_its_own_length() {
        let (mut store, mut w, mut rx) = setup();
        play(&mut store, &mut w, &mut rx, 120.0, (4, 4), 0.0, 96_000, 480);
        // At bar 2 the host switches to 60 BPM; its positions keep counting quarters.
        let meter = TimeSignature::FOUR_FOUR;
        for k in 0..(192_000 / 480) {
            let pos = 96_000 + k * 480;
            let q = 4.0 + (k * 480) as f64 / 48_000.0;
            let t = TransportSnapshot {
                playing: true, bpm: 60.0, tempo_from_host: true, meter, meter_from_host: true,
                sample_rate: 48_000.0, pos_samples: Some(pos as i64), pos_quarters: Some(q),
                bar_start_quarters: Some(4.0), bar_number: Some(1), loop_quarters: None, block_counter: 0,
            };
            let x = vec![0.25f32; 480];
            w.record(&t, &x, &x);
            while let Ok(b) = rx.pop() {
                store.add(&b);
            }
        }
        stop(&mut store, &mut w, &mut rx);
        assert_eq!(store.region(0, 1).unwrap().audio.frames(), 96_000);
        assert_eq!(store.region(1, 1).unwrap().audio.frames(), 192_000);
        assert_eq!(store.region(0, 2).unwrap().audio.frames(), 288_000);
    }

    #[test]
    fn the_limit_drops_the_oldest_bars() {
        let (tx, mut rx) = rtrb::RingBuffer::new(4096);
        let mut store = CaptureStore::new(5.0);
        let mut w = CaptureWriter::new(tx, WhenFull::Drop);
        play(&mut store, &mut w, &mut rx, 120.0, (4, 4), 0.0, 96_000 * 4, CAPTURE_BLOCK_FRAMES);
        stop(&mut store, &mut w, &mut rx);
        assert!(store.seconds() <= 5.0);
        assert!(store.take_evicted() >= 2);
        assert!(store.region(0, 1).is_err(), "the first bar went first");
        assert!(store.region(2, 2).is_ok(), "the last two bars stay");
        assert_eq!(store.bytes(), 2 * 96_000 * 2 * 4);
    }
}
