//! Takes played on the host timeline, sample-locked to the transport.
//!
//! A take is shared samples at the host rate ([`TakeAudio`]) plus a small `Copy` [`Placement`]:
//! where its first sample sits in quarter notes, and its tempo as samples per quarter. Each block,
//! a [`Voice`] turns the host's position into an offset into the take, so bar 9 of the song plays
//! bar 9 of the take at any block size, after locates and loop wraps. When the offset jumps (a
//! locate, a loop wrap, a stop, a new take) the old stream fades out and the new one fades in
//! over [`DECLICK_FRAMES`]. The audio thread never frees a take: a voice hands the ones it lets
//! go to its caller, who sends them off the audio thread.

use std::sync::Arc;

use crate::transport::TransportSnapshot;

/// Length of the crossfade at a discontinuity (1.3 ms at 48 kHz).
pub const DECLICK_FRAMES: u32 = 64;

/// A take's audio at the host's sample rate, stereo.
#[derive(Debug, PartialEq)]
pub struct TakeAudio {
    pub left: Vec<f32>,
    pub right: Vec<f32>,
    pub sample_rate: f32,
}

impl TakeAudio {
    pub fn frames(&self) -> usize {
        self.left.len()
    }
}

/// Where a take plays: small and `Copy`, so moving a take never touches its audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The song position of the take's first sample, in quarter notes.
    pub start_quarters: f64,
    /// The take's tempo, as samples per quarter note at the host rate.
    pub samples_per_quarter: f64,
    /// Linear gain.
    pub gain: f32,
}

impl Placement {
    /// The frame of the take that plays at song position `quarters`.
    pub fn offset_at(&self, quarters: f64) -> i64 {
        ((quarters - self.start_quarters) * self.samples_per_quarter).round() as i64
    }
}

/// A stream being faded: which take, from which frame, how far into the fade.
struct Fade {
    take: Arc<TakeAudio>,
    gain: f32,
    offset: i64,
    done: u32,
}

/// One playback slot. Audio thread only; never allocates or frees.
#[derive(Default)]
pub struct Voice {
    take: Option<Arc<TakeAudio>>,
    placement: Option<Placement>,
    /// The offset the next block starts at if nothing jumps; `None` while silent.
    next_offset: Option<i64>,
    /// Frames into the fade-in of the current stream (`DECLICK_FRAMES` = no fade).
    fade_in: u32,
    fade_out: Option<Fade>,
    /// Free-running offset while the user auditions the take.
    audition: Option<i64>,
}

impl Voice {
    /// Puts `take` (or nothing) in the slot. Returns the take that must be freed off the audio
    /// thread, if any: the one replaced, unless it is still fading out.
    #[must_use]
    pub fn set_take(&mut self, take: Option<Arc<TakeAudio>>, placement: Placement) -> Option<Arc<TakeAudio>> {
        // What is already playing, sent again (a re-activation): nothing changes, no fade.
        let same = match (&take, &self.take) {
            (Some(new), Some(playing)) => Arc::ptr_eq(new, playing),
            (None, None) => true,
            _ => false,
        };
        if same && self.placement == Some(placement) {
            return take;
        }
        let old = std::mem::replace(&mut self.take, take);
        let old_placement = std::mem::replace(&mut self.placement, Some(placement));
        let mut retired = None;
        // The old stream fades out from where it was (a new one fades in from its position).
        if let (Some(old), Some(p), Some(offset)) = (old, old_placement, self.next_offset) {
            retired = self.start_fade_out(old, p.gain, offset);
        }
        self.next_offset = None;
        self.audition = None;
        retired
    }

    /// Sets the placement of the current take (a move or a gain change), declicked.
    pub fn set_placement(&mut self, placement: Placement) {
        self.placement = Some(placement);
    }

    /// Starts (or stops) playing the take from its start regardless of the transport.
    pub fn audition(&mut self, on: bool) {
        self.audition = on.then_some(0);
    }

    /// Nothing to play and nothing fading: `render` would add nothing.
    pub fn is_idle(&self) -> bool {
        self.take.is_none() && self.fade_out.is_none()
    }

    pub fn is_auditioning(&self) -> bool {
        self.audition.is_some()
    }

    /// Starts fading `take` out from `offset`; returns whatever fade it displaces.
    fn start_fade_out(&mut self, take: Arc<TakeAudio>, gain: f32, offset: i64) -> Option<Arc<TakeAudio>> {
        let displaced = self.fade_out.take().map(|f| f.take);
        self.fade_out = Some(Fade { take, gain, offset, done: 0 });
        displaced
    }

    /// Adds this voice's block to `left`/`right` (equal lengths) and the take's presence
    /// (0..1 per frame) to `presence`. Returns a take to free off the audio thread, if one
    /// finished fading out.
    #[must_use]
    pub fn render(
        &mut self,
        transport: &TransportSnapshot,
        left: &mut [f32],
        right: &mut [f32],
        presence: &mut [f32],
    ) -> Option<Arc<TakeAudio>> {
        let len = left.len();
        let start = match (&self.take, self.placement) {
            (Some(take), Some(placement)) => match self.audition {
                Some(offset) if offset < take.frames() as i64 => Some(offset),
                Some(_) => {
                    self.audition = None;
                    None
                }
                None if transport.playing => transport.pos_quarters.map(|q| placement.offset_at(q)),
                None => None,
            },
            _ => None,
        };
        let mut retired = None;
        if start != self.next_offset {
            // A discontinuity. Fade the old stream out from where it would have gone on.
            if let (Some(take), Some(placement), Some(offset)) = (&self.take, self.placement, self.next_offset) {
                retired = self.start_fade_out(Arc::clone(take), placement.gain, offset);
            }
            // Fade the new one in, unless it starts at (or before) its first frame: a take's own
            // start is part of its sound.
            self.fade_in = match start {
                Some(offset) if offset > 0 => 0,
                _ => DECLICK_FRAMES,
            };
        }

        if let (Some(take), Some(placement), Some(offset)) = (&self.take, self.placement, start) {
            for i in 0..len {
                let frame = offset + i as i64;
                if frame < 0 || frame >= take.frames() as i64 {
                    continue;
                }
                let ramp = if self.fade_in < DECLICK_FRAMES {
                    self.fade_in += 1;
                    self.fade_in as f32 / DECLICK_FRAMES as f32
                } else {
                    1.0
                };
                let g = placement.gain * ramp;
                left[i] += take.left[frame as usize] * g;
                right[i] += take.right[frame as usize] * g;
                presence[i] = (presence[i] + ramp).min(1.0);
            }
        }

        if let Some(fade) = &mut self.fade_out {
            for i in 0..len {
                if fade.done >= DECLICK_FRAMES {
                    break;
                }
                let frame = fade.offset + i as i64;
                fade.done += 1;
                if frame < 0 || frame >= fade.take.frames() as i64 {
                    continue;
                }
                let ramp = 1.0 - fade.done as f32 / DECLICK_FRAMES as f32;
                left[i] += fade.take.left[frame as usize] * fade.gain * ramp;
                right[i] += fade.take.right[frame as usize] * fade.gain * ramp;
                presence[i] = (presence[i] + ramp).min(1.0);
            }
            fade.offset += len as i64;
            if fade.done >= DECLICK_FRAMES {
                let finished = self.fade_out.take().map(|f| f.take);
                // Only one can be handed back per block; the other waits a block in the fade slot.
                match retired {
                    None => retired = finished,
                    Some(_) => self.fade_out = finished.map(|take| Fade { take, gain: 0.0, offset: 0, done: DECLICK_FRAMES }),
                }
            }
        }

        self.next_offset = start.map(|s| s + len as i64);
        if let Some(audition) = &mut self.audition {
            *audition += len as i64;
        }
        retired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(frames: usize) -> Arc<TakeAudio> {
        Arc::new(TakeAudio {
            left: (0..frames).map(|i| 1.0 + i as f32).collect(),
            right: (0..frames).map(|i| -(1.0 + i as f32)).collect(),
            sample_rate: 48_000.0,
        })
    }

    fn at(quarters: f64, playing: bool) -> TransportSnapshot {
        TransportSnapshot { playing, pos_quarters: Some(quarters), ..TransportSnapshot::default() }
    }

    const SPQ: f64 = 24_000.0; // 120 BPM at 48 kHz

    /// Renders `total` frames in blocks of `block` from song position `from` (in samples).
    fn render(voice: &mut Voice, from: i64, total: usize, block: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut l, mut p) = (vec![0.0; total], vec![0.0; total]);
        let mut r = vec![0.0; total];
        let mut done = 0;
        while done < total {
            let n = block.min(total - done);
            let t = at((from + done as i64) as f64 / SPQ, true);
            let _ = voice.render(&t, &mut l[done..done + n], &mut r[done..done + n], &mut p[done..done + n]);
            done += n;
        }
        (l, p)
    }

    #[test]
    fn the_take_plays_at_its_bar_at_any_block_size() {
        for block in [1, 64, 480, 4096] {
            let mut voice = Voice::default();
            let placement = Placement { start_quarters: 4.0, samples_per_quarter: SPQ, gain: 0.5 };
            assert!(voice.set_take(Some(take(96_000)), placement).is_none());
            let (out, presence) = render(&mut voice, 90_000, 200_000, block);
            // Bar 2 starts at sample 96000: silence before, the take (at half gain) from there.
            assert!(out[..6_000].iter().all(|&x| x == 0.0), "block {block}");
            assert_eq!(out[6_000], 0.5, "block {block}: first frame exactly on the downbeat");
            assert_eq!(out[6_000 + 95_999], 0.5 * 96_000.0);
            assert!(out[6_000 + 96_000..].iter().all(|&x| x == 0.0), "ends after one bar");
            assert_eq!(presence[6_000], 1.0);
        }
    }

    #[test]
    fn a_locate_into_the_take_fades_in_and_a_jump_crossfades() {
        let mut voice = Voice::default();
        let placement = Placement { start_quarters: 0.0, samples_per_quarter: SPQ, gain: 1.0 };
        let _ = voice.set_take(Some(take(96_000)), placement);
        // Start playing in the middle: a fade-in from 0.
        let (out, _) = render(&mut voice, 10_000, 128, 128);
        assert!(out[0] < 10_001.0 / DECLICK_FRAMES as f32 + 1.0);
        assert_eq!(out[100], 10_101.0);
        // Loop back to 0 (the take's start): the old stream fades out over DECLICK_FRAMES while
        // the new one starts at full level.
        let (out, _) = render(&mut voice, 0, 128, 128);
        let old = 10_129.0 * (1.0 - 1.0 / DECLICK_FRAMES as f32);
        assert!((out[0] - (1.0 + old)).abs() < 1e-2, "{}", out[0]);
        assert_eq!(out[100], 101.0);
    }

    #[test]
    fn silent_while_stopped_unless_auditioned() {
        let mut voice = Voice::default();
        let placement = Placement { start_quarters: 0.0, samples_per_quarter: SPQ, gain: 1.0 };
        let _ = voice.set_take(Some(take(10_000)), placement);
        let (mut l, mut r, mut p) = (vec![0.0; 256], vec![0.0; 256], vec![0.0; 256]);
        let _ = voice.render(&at(0.0, false), &mut l, &mut r, &mut p);
        assert!(l.iter().all(|&x| x == 0.0));
        voice.audition(true);
        for _ in 0..5 {
            l.fill(0.0);
            let _ = voice.render(&at(0.0, false), &mut l, &mut r, &mut p);
        }
        assert_eq!(l[0], 1.0 + 4.0 * 256.0, "auditions run on from the take's start");
        assert!(voice.is_auditioning());
        voice.audition(false);
        l.fill(0.0);
        let _ = voice.render(&at(0.0, false), &mut l, &mut r, &mut p);
        assert!(l[DECLICK_FRAMES as usize..].iter().all(|&x| x == 0.0), "stopping the audition fades out");
    }

    #[test]
    fn a_replaced_take_fades_out_and_is_handed_back_not_freed() {
        let mut voice = Voice::default();
        let placement = Placement { start_quarters: 0.0, samples_per_quarter: SPQ, gain: 1.0 };
        let first = take(10_000);
        let _ = voice.set_take(Some(Arc::clone(&first)), placement);
        render(&mut voice, 0, 512, 512);
        assert!(voice.set_take(Some(take(10_000)), placement).is_none(), "still fading");
        let mut handed_back = None;
        for k in 0..4 {
            let (mut l, mut r, mut p) = (vec![0.0; 32], vec![0.0; 32], vec![0.0; 32]);
            let t = at((512 + 32 * k) as f64 / SPQ, true);
            if let Some(t) = voice.render(&t, &mut l, &mut r, &mut p) {
                handed_back = Some(t);
            }
        }
        let handed_back = handed_back.expect("the old take comes back after its fade");
        assert!(Arc::ptr_eq(&handed_back, &first));
        assert_eq!(Arc::strong_count(&first), 2, "the voice let go of it");
    }
}
