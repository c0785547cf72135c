//! The audio thread's half of capture: while the transport plays, the chosen input is cut into
//! fixed [`CaptureBlock`]s, each stamped with where it sits on the host timeline, and pushed to the
//! capture thread (`capture_store.rs` keeps the bars). Nothing here allocates: the block being
//! filled is a field. When the ring is full, a real-time render drops the block and counts it
//! rather than wait; an offline render (a bounce, with no deadline) waits for room.

use std::time::{Duration, Instant};

use rtrb::{Producer, PushError};

use crate::transport::TransportSnapshot;

/// Frames per capture block: small enough that a block is ~5 ms, large enough that the ring does
/// not hold thousands of headers.
pub const CAPTURE_BLOCK_FRAMES: usize = 256;

/// Where a block's first frame sits on the host timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockStamp {
    /// Host song position in samples and in quarter notes.
    pub pos_samples: i64,
    pub pos_quarters: f64,
    /// The bar the first frame is in: its number (0-based) and where it starts, in quarters.
    pub bar_number: i64,
    pub bar_start_quarters: f64,
    pub quarters_per_bar: f64,
    /// The tempo as samples per quarter note at the host rate.
    pub samples_per_quarter: f64,
    pub sample_rate: f32,
    /// Bumped at every discontinuity (stop, jump, loop wrap, tempo change): frames of one pass
    /// are contiguous, so a bar is only ever made of frames from one pass.
    pub pass: u32,
}

/// Stereo frames of the input, stamped. `Copy` so it moves through the ring by value.
#[derive(Clone, Copy)]
pub struct CaptureBlock {
    pub stamp: BlockStamp,
    pub frames: usize,
    pub left: [f32; CAPTURE_BLOCK_FRAMES],
    pub right: [f32; CAPTURE_BLOCK_FRAMES],
}

impl CaptureBlock {
    fn empty(stamp: BlockStamp) -> Self {
        Self { stamp, frames: 0, left: [0.0; CAPTURE_BLOCK_FRAMES], right: [0.0; CAPTURE_BLOCK_FRAMES] }
    }
}

/// What the writer does when the capture thread is a whole ring behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Real-time: lose the block (a hole the store marks) rather than block the audio thread.
    Drop,
    /// Offline render: the host runs faster than real time and has no deadline, so wait for
    /// room and capture the pass whole. Bounded, so a stalled capture thread cannot hang a bounce.
    Wait,
}

/// The longest an offline render waits for room before it drops a block after all.
const OFFLINE_WAIT_LIMIT: Duration = Duration::from_secs(2);

/// Audio thread: fills blocks and pushes them to the capture thread.
pub struct CaptureWriter {
    ring: Producer<CaptureBlock>,
    when_full: WhenFull,
    /// An offline wait ran out (the capture thread is stalled): drop, not wait, until the ring
    /// takes a block again, so a bounce never crawls at one block per wait.
    gave_up_waiting: bool,
    pending: Option<CaptureBlock>,
    pass: u32,
    /// The last block's stamp with the position where the next one must start to continue.
    last: Option<BlockStamp>,
    /// Blocks lost because the capture thread fell behind (shown in the editor).
    dropped: u64,
}

impl CaptureWriter {
    pub fn new(ring: Producer<CaptureBlock>, when_full: WhenFull) -> Self {
        Self { ring, when_full, gave_up_waiting: false, pending: None, pass: 0, last: None, dropped: 0 }
    }

    pub fn dropped_blocks(&self) -> u64 {
        self.dropped
    }

    /// Records one host block of `left`/`right` (equal lengths) at `transport`. A stopped
    /// transport, or one without a position, records nothing and ends the pass.
    pub fn record(&mut self, transport: &TransportSnapshot, left: &[f32], right: &[f32]) {
        let Some(mut stamp) = Self::stamp(transport, self.pass) else {
            self.flush();
            return;
        };
        // Frames of one pass are contiguous at one tempo, meter and rate.
        if let Some(last) = self.last {
            let continues = last.pos_samples == stamp.pos_samples
                && last.samples_per_quarter == stamp.samples_per_quarter
                && last.quarters_per_bar == stamp.quarters_per_bar
                && last.sample_rate == stamp.sample_rate;
            if !continues {
                self.flush();
                stamp.pass = self.pass;
            }
        }
        self.last = Some(BlockStamp { pos_samples: stamp.pos_samples + left.len() as i64, ..stamp });
        let mut done = 0;
        while done < left.len() {
            // The pass may have moved on mid-block (a full ring drops a block).
            let pass = self.pass;
            let block = self.pending.get_or_insert_with(|| {
                CaptureBlock::empty(BlockStamp { pass, ..Self::advanced(stamp, done) })
            });
            let take = (CAPTURE_BLOCK_FRAMES - block.frames).min(left.len() - done);
            let at = block.frames;
            block.left[at..at + take].copy_from_slice(&left[done..done + take]);
            block.right[at..at + take].copy_from_slice(&right[done..done + take]);
            block.frames += take;
            done += take;
            if block.frames == CAPTURE_BLOCK_FRAMES {
                self.push_pending();
            }
        }
    }

    /// Ends the pass: pushes a partly filled block and starts counting a new pass.
    pub fn flush(&mut self) {
        self.last = None;
        if self.pending.is_some() {
            self.push_pending();
        }
        if self.pending.is_none() {
            self.pass = self.pass.wrapping_add(1);
        }
    }

    fn push_pending(&mut self) {
        let Some(mut block) = self.pending.take() else { return };
        let mut waiting_since = None;
        loop {
            match self.ring.push(block) {
                Ok(()) => {
                    self.gave_up_waiting = false;
                    return;
                }
                Err(PushError::Full(back)) if self.when_full == WhenFull::Wait && !self.gave_up_waiting => {
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= OFFLINE_WAIT_LIMIT {
                        self.gave_up_waiting = true;
                        break;
                    }
                    block = back;
                    std::thread::sleep(Duration::from_micros(250));
                }
                Err(PushError::Full(_)) => break,
            }
        }
        self.dropped += 1;
        // A lost block is a hole: the frames after it start a new pass.
        self.pass = self.pass.wrapping_add(1);
    }

    fn stamp(t: &TransportSnapshot, pass: u32) -> Option<BlockStamp> {
        if !t.playing {
            return None;
        }
        let (pos_samples, pos_quarters) = (t.pos_samples?, t.pos_quarters?);
        let grid = t.grid();
        Some(BlockStamp {
            pos_samples,
            pos_quarters,
            bar_number: t.bar_number? as i64,
            bar_start_quarters: t.bar_start_quarters?,
            quarters_per_bar: grid.meter().quarters_per_bar(),
            samples_per_quarter: grid.samples_per_quarter(),
            sample_rate: t.sample_rate,
            pass,
        })
    }

    /// The stamp of the frame `frames` after `stamp`'s, moving to later bars as needed.
    fn advanced(stamp: BlockStamp, frames: usize) -> BlockStamp {
        let mut s = stamp;
        s.pos_samples += frames as i64;
        s.pos_quarters += frames as f64 / s.samples_per_quarter;
        while s.pos_quarters >= s.bar_start_quarters + s.quarters_per_bar - 1e-9 {
            s.bar_start_quarters += s.quarters_per_bar;
            s.bar_number += 1;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backline_engine::audio::grid::TimeSignature;

    pub fn playing_at(quarters: f64, bpm: f64, sample_rate: f32) -> TransportSnapshot {
        let spq = sample_rate as f64 * 60.0 / bpm;
        TransportSnapshot {
            playing: true,
            bpm,
            tempo_from_host: true,
            meter: TimeSignature::FOUR_FOUR,
            meter_from_host: true,
            sample_rate,
            pos_samples: Some((quarters * spq).round() as i64),
            pos_quarters: Some(quarters),
            bar_start_quarters: Some((quarters / 4.0).floor() * 4.0),
            bar_number: Some((quarters / 4.0).floor() as i32),
            loop_quarters: None,
            block_counter: 0,
        }
    }

    fn drain(ring: &mut rtrb::Consumer<CaptureBlock>) -> Vec<CaptureBlock> {
        std::iter::from_fn(|| ring.pop().ok()).collect()
    }

    #[test]
    fn contiguous_host_blocks_become_full_stamped_blocks() {
        let (tx, mut rx) = rtrb::RingBuffer::new(64);
        let mut writer = CaptureWriter::new(tx, WhenFull::Drop);
        let spq = 24_000.0; // 120 BPM at 48 kHz
        let ramp: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        for k in 0..10 {
            let t = playing_at(k as f64 * 100.0 / spq, 120.0, 48_000.0);
            writer.record(&t, &ramp[k * 100..k * 100 + 100], &ramp[k * 100..k * 100 + 100]);
        }
        let blocks = drain(&mut rx);
        assert_eq!(blocks.len(), 3, "1000 frames make three full blocks and a pending one");
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(b.frames, CAPTURE_BLOCK_FRAMES);
            assert_eq!(b.stamp.pos_samples, (i * CAPTURE_BLOCK_FRAMES) as i64);
            assert_eq!(b.left[0], (i * CAPTURE_BLOCK_FRAMES) as f32);
            assert_eq!(b.stamp.pass, blocks[0].stamp.pass);
        }
        // Stopping pushes the rest and ends the pass.
        let mut stopped = playing_at(0.0, 120.0, 48_000.0);
        stopped.playing = false;
        writer.record(&stopped, &ramp[..10], &ramp[..10]);
        let rest = drain(&mut rx);
        assert_eq!((rest.len(), rest[0].frames), (1, 1000 - 3 * CAPTURE_BLOCK_FRAMES));
        let t = playing_at(0.0, 120.0, 48_000.0);
        writer.record(&t, &ramp[..300], &ramp[..300]);
        assert_ne!(drain(&mut rx)[0].stamp.pass, blocks[0].stamp.pass, "a new pass after a stop");
    }

    #[test]
    fn a_jump_flushes_and_starts_a_new_pass() {
        let (tx, mut rx) = rtrb::RingBuffer::new(64);
        let mut writer = CaptureWriter::new(tx, WhenFull::Drop);
        let x = [0.5f32; 100];
        writer.record(&playing_at(0.0, 120.0, 48_000.0), &x, &x);
        writer.record(&playing_at(8.0, 120.0, 48_000.0), &x, &x); // loop or locate
        writer.flush();
        let blocks = drain(&mut rx);
        assert_eq!(blocks.len(), 2);
        assert_ne!(blocks[0].stamp.pass, blocks[1].stamp.pass);
        assert_eq!((blocks[1].stamp.bar_number, blocks[1].stamp.pos_samples), (2, 192_000));
    }

    #[test]
    fn a_block_that_starts_past_a_bar_line_carries_the_next_bar() {
        let (tx, mut rx) = rtrb::RingBuffer::new(64);
        let mut writer = CaptureWriter::new(tx, WhenFull::Drop);
        // Starts 10 frames before bar 2 (quarter 4 = sample 96000); 300 frames: the second
        // block (frame 256 on) begins in bar 2.
        let t = playing_at((96_000.0 - 10.0) / 24_000.0, 120.0, 48_000.0);
        let x = [0.1f32; 300];
        writer.record(&t, &x, &x);
        writer.flush();
        let blocks = drain(&mut rx);
        assert_eq!((blocks[0].stamp.bar_number, blocks[1].stamp.bar_number), (0, 1));
        assert_eq!(blocks[1].stamp.bar_start_quarters, 4.0);
    }

    #[test]
    fn a_full_ring_drops_and_counts_instead_of_waiting() {
        let (tx, _rx) = rtrb::RingBuffer::new(2);
        let mut writer = CaptureWriter::new(tx, WhenFull::Drop);
        let x = [0.0f32; CAPTURE_BLOCK_FRAMES];
        for k in 0..5 {
            let t = playing_at(k as f64 * CAPTURE_BLOCK_FRAMES as f64 / 24_000.0, 120.0, 48_000.0);
            writer.record(&t, &x, &x);
        }
        assert_eq!(writer.dropped_blocks(), 3);
    }

    /// A bounce runs faster than real time: the writer waits for the capture thread and loses
    /// nothing, however far ahead of it the host is.
    #[test]
    fn an_offline_render_waits_for_room_and_loses_nothing() {
        let (tx, mut rx) = rtrb::RingBuffer::new(2);
        let mut writer = CaptureWriter::new(tx, WhenFull::Wait);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 40 {
                std::thread::sleep(std::time::Duration::from_millis(1));
                got.extend(drain(&mut rx).iter().map(|b| b.left[0]));
            }
            got
        });
        for k in 0..40 {
            let t = playing_at(k as f64 * CAPTURE_BLOCK_FRAMES as f64 / 24_000.0, 120.0, 48_000.0);
            let x = [k as f32; CAPTURE_BLOCK_FRAMES];
            writer.record(&t, &x, &x);
        }
        assert_eq!(writer.dropped_blocks(), 0);
        assert_eq!(reader.join().unwrap(), (0..40).map(|k| k as f32).collect::<Vec<_>>(), "every block, in order");
    }

    /// Nobody drains the ring (the capture thread is stalled): the first full push waits out
    /// its limit, the blocks after it drop at once, and a push that fits again resumes waiting.
    #[test]
    fn an_offline_render_stops_waiting_on_a_stalled_capture_thread() {
        let (tx, mut rx) = rtrb::RingBuffer::new(1);
        let mut writer = CaptureWriter::new(tx, WhenFull::Wait);
        let x = [0.0f32; CAPTURE_BLOCK_FRAMES];
        let at = |k: usize| playing_at(k as f64 * CAPTURE_BLOCK_FRAMES as f64 / 24_000.0, 120.0, 48_000.0);
        writer.record(&at(0), &x, &x);
        let started = std::time::Instant::now();
        for k in 1..20 {
            writer.record(&at(k), &x, &x);
        }
        let waited = started.elapsed();
        assert_eq!(writer.dropped_blocks(), 19);
        assert!(waited >= OFFLINE_WAIT_LIMIT, "the first full push waited ({waited:?})");
        assert!(waited < 5 * OFFLINE_WAIT_LIMIT, "the rest did not wait again ({waited:?})");
        drain(&mut rx);
        writer.record(&at(20), &x, &x);
        assert!(!writer.gave_up_waiting, "room again: an offline render waits again");
    }
}
