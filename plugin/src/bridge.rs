//! The wait-free queues between the audio thread and the session, made in pairs: [`new`] returns
//! the session's ends and the audio thread's ends of every queue at once.
//!
//! - commands, session -> audio: which take plays in which slot, placements, auditions;
//! - retired takes, audio -> session: the audio thread never frees a take's samples, it hands
//!   them back here to be dropped on the session's thread;
//! - capture blocks, audio -> capture thread (see `capture.rs`).

use std::sync::Arc;

use rtrb::{Consumer, Producer, RingBuffer};

use crate::capture::CaptureBlock;
use crate::playback::{Placement, TakeAudio};

/// Playback slots. Slot 1 is what the take list's A/B switch sets; each slot also plays on its
/// own stereo output bus.
pub const TAKE_SLOTS: usize = 4;
/// Commands the session may queue before the audio thread takes them (it takes all per block).
pub const COMMAND_CAPACITY: usize = 64;
/// Takes in flight back to the session. Far more than one block can retire (one per command
/// and one per slot), and the session drains it every few milliseconds.
pub const RETIRED_CAPACITY: usize = 256;
/// Capture blocks in flight to the capture thread: 1024 × 256 frames, 5.4 s at 48 kHz.
pub const CAPTURE_CAPACITY: usize = 1024;

/// What the session tells the audio thread.
pub enum ToAudio {
    /// Play `take` (or nothing) in `slot`, at `placement`.
    SetTake { slot: usize, take: Option<Arc<TakeAudio>>, placement: Placement },
    /// Move a slot's take or change its gain.
    SetPlacement { slot: usize, placement: Placement },
    /// Play a slot's take from its start whatever the transport does (or stop doing so).
    Audition { slot: usize, on: bool },
}

/// The session's ends.
pub struct SessionEnds {
    pub commands: Producer<ToAudio>,
    pub retired: Consumer<Arc<TakeAudio>>,
    pub capture: Consumer<CaptureBlock>,
}

/// The audio thread's ends.
pub struct AudioEnds {
    pub commands: Consumer<ToAudio>,
    pub retired: Producer<Arc<TakeAudio>>,
    pub capture: Producer<CaptureBlock>,
}

/// A fresh set of queues (one per activation: the audio thread's ends live in its processor).
pub fn new() -> (SessionEnds, AudioEnds) {
    let (command_tx, command_rx) = RingBuffer::new(COMMAND_CAPACITY);
    let (retired_tx, retired_rx) = RingBuffer::new(RETIRED_CAPACITY);
    let (capture_tx, capture_rx) = RingBuffer::new(CAPTURE_CAPACITY);
    (
        SessionEnds { commands: command_tx, retired: retired_rx, capture: capture_rx },
        AudioEnds { commands: command_rx, retired: retired_tx, capture: capture_tx },
    )
}
