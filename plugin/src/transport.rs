//! The host transport, read once per block and published lock-free to the GUI (and later the
//! engine side).
//!
//! [`TransportSnapshot::from_host`] turns what the host sent into one normalised value: a missing
//! or unusable tempo falls back to 120 BPM and a missing meter to 4/4, and the snapshot says so,
//! so the editor can tell the user instead of pretending. [`SharedTransport`] is a sequence lock
//! over plain atomics: the audio thread writes without waiting, readers retry on a torn read.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use backline_engine::audio::grid::{Grid, MusicalPosition, TimeSignature};
use nice_plug::prelude::Transport;

/// Tempo used when the host sends none (or nonsense).
pub const FALLBACK_BPM: f64 = 120.0;

/// Everything Backline keeps of the host transport for one block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransportSnapshot {
    pub playing: bool,
    /// The tempo in quarter notes per minute; [`FALLBACK_BPM`] when `tempo_from_host` is false.
    pub bpm: f64,
    pub tempo_from_host: bool,
    /// The meter; 4/4 when `meter_from_host` is false.
    pub meter: TimeSignature,
    pub meter_from_host: bool,
    pub sample_rate: f32,
    /// Song position at the start of the block, in samples and in quarter notes.
    pub pos_samples: Option<i64>,
    pub pos_quarters: Option<f64>,
    /// Start of the current bar in quarter notes, and its number (0-based).
    pub bar_start_quarters: Option<f64>,
    pub bar_number: Option<i32>,
    /// Active loop (cycle) range in quarter notes, end exclusive.
    pub loop_quarters: Option<(f64, f64)>,
    /// Blocks processed since activation; lets a reader see that audio is flowing.
    pub block_counter: u64,
}

impl Default for TransportSnapshot {
    fn default() -> Self {
        Self {
            playing: false,
            bpm: FALLBACK_BPM,
            tempo_from_host: false,
            meter: TimeSignature::FOUR_FOUR,
            meter_from_host: false,
            sample_rate: 48_000.0,
            pos_samples: None,
            pos_quarters: None,
            bar_start_quarters: None,
            bar_number: None,
            loop_quarters: None,
            block_counter: 0,
        }
    }
}

impl TransportSnapshot {
    /// Normalise the host's transport. Never fails: every unusable field falls back.
    pub fn from_host(t: &Transport, sample_rate: f32, block_counter: u64) -> Self {
        let tempo = t.tempo.filter(|bpm| bpm.is_finite() && (1.0..=1000.0).contains(bpm));
        let meter = match (t.time_sig_numerator, t.time_sig_denominator) {
            (Some(n), Some(d)) if n > 0 && d > 0 => TimeSignature::new(n as u32, d as u32).ok(),
            _ => None,
        };
        let bpm = tempo.unwrap_or(FALLBACK_BPM);
        let meter_or_default = meter.unwrap_or_default();
        let finite = |x: f64| x.is_finite().then_some(x);
        // nice-plug derives beats from seconds (and the reverse) with the host's tempo; we use
        // our fallback tempo when the host has none, so a position in seconds still yields a bar.
        let pos_quarters = t
            .pos_beats()
            .or_else(|| t.pos_seconds().map(|s| s * bpm / 60.0))
            .and_then(finite);
        let pos_samples = t.pos_samples().or_else(|| {
            pos_quarters.map(|q| (q * 60.0 / bpm * sample_rate as f64).round() as i64)
        });
        // The host's bar line wins: after a meter change only the host knows where bars fall.
        // VST3 hosts send the bar start without a bar number (nice-plug leaves it unset), so the
        // number is then estimated from the bar start at the current meter.
        let bar_len = meter_or_default.quarters_per_bar();
        let (bar_start_quarters, bar_number) =
            match (t.bar_start_pos_beats.and_then(finite), t.bar_number, pos_quarters) {
                (Some(start), Some(n), _) => (Some(start), Some(n)),
                (Some(start), None, _) => (Some(start), Some((start / bar_len + 1e-9).floor() as i32)),
                (None, _, Some(q)) => {
                    let bar = (q / bar_len + 1e-9).floor();
                    (Some(bar * bar_len), Some(bar as i32))
                }
                (None, _, None) => (None, None),
            };
        let loop_quarters = t
            .loop_range_beats()
            .filter(|(a, b)| a.is_finite() && b.is_finite() && b > a);
        Self {
            playing: t.playing,
            bpm,
            tempo_from_host: tempo.is_some(),
            meter: meter_or_default,
            meter_from_host: meter.is_some(),
            sample_rate,
            pos_samples,
            pos_quarters,
            bar_start_quarters,
            bar_number,
            loop_quarters,
            block_counter,
        }
    }

    /// The grid at this block's tempo, meter and sample rate.
    pub fn grid(&self) -> Grid {
        // Both values were validated in `from_host` (or are the defaults); a sample rate a host
        // could never send falls back to 48 kHz rather than failing on the audio thread.
        Grid::new(self.bpm, self.meter, self.sample_rate as f64)
            .or_else(|_| Grid::new(self.bpm, self.meter, 48_000.0))
            .expect("validated tempo and meter always make a grid")
    }

    /// Bar and beat at the start of the block, anchored at the host's bar line.
    pub fn position(&self) -> Option<MusicalPosition> {
        let q = self.pos_quarters?;
        let grid = self.grid();
        Some(match (self.bar_start_quarters, self.bar_number) {
            (Some(start), Some(bar)) => grid.position_from_bar_start(q, start, bar as i64),
            _ => grid.position(q),
        })
    }
}

// Snapshot <-> words. Options become a flag bit plus a value word.
const WORDS: usize = 13;
const HAS_POS_SAMPLES: u64 = 1 << 0;
const HAS_POS_QUARTERS: u64 = 1 << 1;
const HAS_BAR: u64 = 1 << 2;
const HAS_LOOP: u64 = 1 << 3;
const PLAYING: u64 = 1 << 4;
const TEMPO_FROM_HOST: u64 = 1 << 5;
const METER_FROM_HOST: u64 = 1 << 6;

fn to_words(s: &TransportSnapshot) -> [u64; WORDS] {
    let mut flags = 0;
    let mut set = |bit, on: bool| {
        if on {
            flags |= bit
        }
    };
    set(HAS_POS_SAMPLES, s.pos_samples.is_some());
    set(HAS_POS_QUARTERS, s.pos_quarters.is_some());
    set(HAS_BAR, s.bar_start_quarters.is_some() && s.bar_number.is_some());
    set(HAS_LOOP, s.loop_quarters.is_some());
    set(PLAYING, s.playing);
    set(TEMPO_FROM_HOST, s.tempo_from_host);
    set(METER_FROM_HOST, s.meter_from_host);
    let (loop_start, loop_end) = s.loop_quarters.unwrap_or_default();
    [
        flags,
        s.bpm.to_bits(),
        s.meter.numerator as u64,
        s.meter.denominator as u64,
        (s.sample_rate as f64).to_bits(),
        s.pos_samples.unwrap_or_default() as u64,
        s.pos_quarters.unwrap_or_default().to_bits(),
        s.bar_start_quarters.unwrap_or_default().to_bits(),
        s.bar_number.unwrap_or_default() as i64 as u64,
        loop_start.to_bits(),
        loop_end.to_bits(),
        s.block_counter,
        0,
    ]
}

fn from_words(w: &[u64; WORDS]) -> TransportSnapshot {
    let flags = w[0];
    let has = |bit| flags & bit != 0;
    let meter = TimeSignature::new(w[2] as u32, w[3] as u32).unwrap_or_default();
    TransportSnapshot {
        playing: has(PLAYING),
        bpm: f64::from_bits(w[1]),
        tempo_from_host: has(TEMPO_FROM_HOST),
        meter,
        meter_from_host: has(METER_FROM_HOST),
        sample_rate: f64::from_bits(w[4]) as f32,
        pos_samples: has(HAS_POS_SAMPLES).then_some(w[5] as i64),
        pos_quarters: has(HAS_POS_QUARTERS).then(|| f64::from_bits(w[6])),
        bar_start_quarters: has(HAS_BAR).then(|| f64::from_bits(w[7])),
        bar_number: has(HAS_BAR).then_some(w[8] as i64 as i32),
        loop_quarters: has(HAS_LOOP).then(|| (f64::from_bits(w[9]), f64::from_bits(w[10]))),
        block_counter: w[11],
    }
}

/// The latest [`TransportSnapshot`], written by the audio thread, read by anyone.
///
/// A sequence lock: the writer makes the sequence odd, stores the words, makes it even again.
/// A reader that sees an odd or changed sequence reads again. Writing never waits.
pub struct SharedTransport {
    sequence: AtomicU64,
    words: [AtomicU64; WORDS],
}

impl Default for SharedTransport {
    fn default() -> Self {
        let shared = Self { sequence: AtomicU64::new(0), words: Default::default() };
        shared.publish(&TransportSnapshot::default());
        shared
    }
}

impl SharedTransport {
    /// Audio thread: store a snapshot. Wait-free, no allocation. Only one thread may publish.
    pub fn publish(&self, snapshot: &TransportSnapshot) {
        let words = to_words(snapshot);
        self.sequence.fetch_add(1, Ordering::Relaxed);
        // Orders the odd sequence before the word stores (a reader seeing new words sees odd).
        fence(Ordering::Release);
        for (slot, value) in self.words.iter().zip(words) {
            slot.store(value, Ordering::Relaxed);
        }
        self.sequence.fetch_add(1, Ordering::Release);
    }

    /// Any thread: the latest complete snapshot.
    pub fn read(&self) -> TransportSnapshot {
        loop {
            let before = self.sequence.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut words = [0u64; WORDS];
            for (value, slot) in words.iter_mut().zip(&self.words) {
                *value = slot.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) == before {
                return from_words(&words);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(tempo: Option<f64>, sig: Option<(i32, i32)>, beats: Option<f64>) -> Transport {
        let mut t = Transport::new(48_000.0);
        t.playing = true;
        t.tempo = tempo;
        t.time_sig_numerator = sig.map(|s| s.0);
        t.time_sig_denominator = sig.map(|s| s.1);
        t.pos_beats = beats;
        t
    }

    mod from_host {
        use super::*;

        #[test]
        fn reads_tempo_meter_and_position() {
            let s = TransportSnapshot::from_host(&host(Some(90.0), Some((6, 8)), Some(7.5)), 48_000.0, 3);
            assert!(s.tempo_from_host && s.meter_from_host && s.playing);
            assert_eq!((s.bpm, s.meter.to_string()), (90.0, "6/8".to_string()));
            // 7.5 quarters at 90 BPM = 5 s = 240000 samples; bar 3 (0-based 2) starts at 6.
            assert_eq!(s.pos_samples, Some(240_000));
            assert_eq!((s.bar_start_quarters, s.bar_number), (Some(6.0), Some(2)));
            assert_eq!(s.position().unwrap().to_string(), "3.4");
        }

        #[test]
        fn host_bar_start_wins_even_without_a_bar_number() {
            // One bar of 4/4, then 3/4: the host says the current bar started at quarter 7.
            // Counting 3/4 bars from 0 would put the bar line at 6.
            let mut t = host(Some(120.0), Some((3, 4)), Some(8.5));
            t.bar_start_pos_beats = Some(7.0);
            let s = TransportSnapshot::from_host(&t, 48_000.0, 0);
            assert_eq!(s.bar_start_quarters, Some(7.0));
            let p = s.position().unwrap();
            assert_eq!((p.beat, p.beat_fraction), (1, 0.5));
            t.bar_number = Some(2);
            let s = TransportSnapshot::from_host(&t, 48_000.0, 0);
            assert_eq!((s.bar_start_quarters, s.bar_number), (Some(7.0), Some(2)));
        }

        #[test]
        fn no_tempo_falls_back_and_says_so() {
            for tempo in [None, Some(0.0), Some(-5.0), Some(f64::NAN), Some(1e9)] {
                let s = TransportSnapshot::from_host(&host(tempo, Some((4, 4)), Some(4.0)), 48_000.0, 0);
                assert!(!s.tempo_from_host, "{tempo:?}");
                assert_eq!(s.bpm, FALLBACK_BPM);
                assert_eq!(s.position().unwrap().to_string(), "2.1");
            }
        }

        #[test]
        fn bad_meter_falls_back_to_four_four() {
            for sig in [None, Some((0, 4)), Some((4, 0)), Some((4, 3)), Some((-3, 4))] {
                let s = TransportSnapshot::from_host(&host(Some(120.0), sig, Some(0.0)), 48_000.0, 0);
                assert!(!s.meter_from_host, "{sig:?}");
                assert_eq!(s.meter, TimeSignature::FOUR_FOUR);
            }
        }

        #[test]
        fn stopped_host_with_no_position_has_no_bar() {
            let mut t = Transport::new(44_100.0);
            t.playing = false;
            let s = TransportSnapshot::from_host(&t, 44_100.0, 0);
            assert!(!s.playing);
            assert_eq!((s.pos_quarters, s.bar_number, s.position()), (None, None, None));
        }

        #[test]
        fn reads_the_loop_range_in_any_unit_the_host_gives() {
            let mut t = host(Some(120.0), Some((4, 4)), Some(9.0));
            t.loop_range_beats = Some((8.0, 24.0));
            let s = TransportSnapshot::from_host(&t, 48_000.0, 0);
            assert_eq!(s.loop_quarters, Some((8.0, 24.0)));
            // Seconds only (4 s .. 12 s at 120 BPM = quarters 8 .. 24).
            t.loop_range_beats = None;
            t.loop_range_seconds = Some((4.0, 12.0));
            assert_eq!(TransportSnapshot::from_host(&t, 48_000.0, 0).loop_quarters, Some((8.0, 24.0)));
            // An empty or backwards range is no loop.
            t.loop_range_seconds = Some((12.0, 12.0));
            assert_eq!(TransportSnapshot::from_host(&t, 48_000.0, 0).loop_quarters, None);
        }

        #[test]
        fn seconds_only_host_gets_a_position_from_the_fallback_tempo() {
            let mut t = Transport::new(48_000.0);
            t.pos_seconds = Some(4.0); // 8 quarters at 120
            let s = TransportSnapshot::from_host(&t, 48_000.0, 0);
            assert_eq!(s.pos_quarters, Some(8.0));
            assert_eq!(s.position().unwrap().to_string(), "3.1");
        }
    }

    mod shared {
        use super::*;
        use std::sync::Arc;

        #[test]
        fn round_trips_every_field() {
            let shared = SharedTransport::default();
            assert_eq!(shared.read(), TransportSnapshot::default());
            let s = TransportSnapshot {
                playing: true,
                bpm: 97.25,
                tempo_from_host: true,
                meter: TimeSignature::new(7, 8).unwrap(),
                meter_from_host: true,
                sample_rate: 44_100.0,
                pos_samples: Some(-12),
                pos_quarters: Some(-0.01),
                bar_start_quarters: Some(-3.5),
                bar_number: Some(-1),
                loop_quarters: Some((8.0, 24.0)),
                block_counter: u64::MAX - 1,
            };
            shared.publish(&s);
            assert_eq!(shared.read(), s);
        }

        #[test]
        fn readers_never_see_a_torn_snapshot() {
            // The writer publishes snapshots whose fields all derive from one counter; a reader
            // checks that every field it sees belongs to the same counter.
            let shared = Arc::new(SharedTransport::default());
            let make = |i: u64| TransportSnapshot {
                bpm: 60.0 + (i % 500) as f64,
                pos_samples: Some(i as i64),
                pos_quarters: Some(i as f64),
                block_counter: i,
                ..TransportSnapshot::default()
            };
            let writer = {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    for i in 1..200_000u64 {
                        shared.publish(&make(i));
                    }
                })
            };
            let mut last = 0;
            while !writer.is_finished() {
                let s = shared.read();
                let i = s.block_counter;
                if i != 0 {
                    assert_eq!(s, make(i), "torn read");
                }
                assert!(i >= last, "went backwards");
                last = i;
            }
            writer.join().unwrap();
        }
    }
}
