//! [`Processor`]: everything the audio thread touches, built in `activate` and owned by
//! `process` alone. It reads the transport, records the capture input, plays the take slots and
//! mixes them with the input and the guide click. It never allocates, locks, blocks or frees a
//! take: scratch buffers are sized in `activate`, takes arrive and leave through `bridge.rs`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use nice_plug::prelude::*;
use rtrb::{Consumer, Producer};

use crate::bridge::{AudioEnds, ToAudio, TAKE_SLOTS};
use crate::capture::{CaptureWriter, WhenFull};
use crate::click::GuideClick;
use crate::params::{BacklineParams, CaptureSource, MixMode};
use crate::playback::{TakeAudio, Voice};
use crate::transport::TransportSnapshot;
use crate::AudioShared;

/// One slot's scratch: the voice renders here, then it goes to its bus and into the mix.
struct SlotScratch {
    left: Vec<f32>,
    right: Vec<f32>,
}

pub struct Processor {
    params: Arc<BacklineParams>,
    shared: Arc<AudioShared>,
    sample_rate: f32,
    click: GuideClick,
    capture: CaptureWriter,
    voices: [Voice; TAKE_SLOTS],
    commands: Consumer<ToAudio>,
    retired: Producer<Arc<TakeAudio>>,
    slots: [SlotScratch; TAKE_SLOTS],
    /// The takes' sum and their presence (0..1 per frame), for the mix modes.
    mix_left: Vec<f32>,
    mix_right: Vec<f32>,
    presence: Vec<f32>,
    blocks_processed: u64,
    /// The Generate parameter in the last block, to see it turn on.
    generate_was_on: bool,
    /// Takes that found the retired queue full; they wait here rather than be freed here.
    held: [Option<Arc<TakeAudio>>; 2 * TAKE_SLOTS],
}

impl Processor {
    /// Main thread (`activate`): allocates everything `process` will use.
    pub fn new(
        params: Arc<BacklineParams>,
        shared: Arc<AudioShared>,
        sample_rate: f32,
        max_block: usize,
        process_mode: ProcessMode,
        ends: AudioEnds,
    ) -> Self {
        let scratch = || SlotScratch { left: vec![0.0; max_block], right: vec![0.0; max_block] };
        let AudioEnds { commands, retired, capture } = ends;
        let generate_was_on = params.generate.value();
        Self {
            params,
            shared,
            sample_rate,
            click: GuideClick::new(sample_rate),
            capture: CaptureWriter::new(capture, match process_mode {
                ProcessMode::Offline => WhenFull::Wait,
                ProcessMode::Realtime | ProcessMode::Buffered => WhenFull::Drop,
            }),
            voices: Default::default(),
            commands,
            retired,
            slots: std::array::from_fn(|_| scratch()),
            mix_left: vec![0.0; max_block],
            mix_right: vec![0.0; max_block],
            presence: vec![0.0; max_block],
            blocks_processed: 0,
            generate_was_on,
            held: Default::default(),
        }
    }

    pub fn reset(&mut self) {
        self.click.reset();
        self.capture.flush();
    }

    /// Hands a take back to the session; holds it if the queue is full.
    fn retire(&mut self, take: Option<Arc<TakeAudio>>) {
        let Some(take) = take else { return };
        if let Err(rtrb::PushError::Full(take)) = self.retired.push(take) {
            if let Some(free) = self.held.iter_mut().find(|h| h.is_none()) {
                *free = Some(take);
            } else {
                // Unreachable in practice (256 in flight); leaking beats freeing here.
                std::mem::forget(take);
            }
        }
    }

    fn apply_commands(&mut self) {
        // Held takes go first, so the queue never starves them.
        for i in 0..self.held.len() {
            if let Some(take) = self.held[i].take() {
                if let Err(rtrb::PushError::Full(take)) = self.retired.push(take) {
                    self.held[i] = Some(take);
                    return;
                }
            }
        }
        // Each command may retire one take: take one only while there is room for it.
        while self.retired.slots() > 0 {
            let Ok(command) = self.commands.pop() else { break };
            match command {
                ToAudio::SetTake { slot, take, placement } => {
                    if let Some(voice) = self.voices.get_mut(slot) {
                        let old = voice.set_take(take, placement);
                        self.retire(old);
                    } else {
                        self.retire(take);
                    }
                }
                ToAudio::SetPlacement { slot, placement } => {
                    if let Some(voice) = self.voices.get_mut(slot) {
                        voice.set_placement(placement);
                    }
                }
                ToAudio::Audition { slot, on } => {
                    if let Some(voice) = self.voices.get_mut(slot) {
                        voice.audition(on);
                    }
                }
            }
        }
    }

    pub fn process(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        transport: &Transport,
        editor_open: bool,
    ) {
        let snapshot = TransportSnapshot::from_host(transport, self.sample_rate, self.blocks_processed);
        self.blocks_processed = self.blocks_processed.wrapping_add(1);
        self.shared.transport.publish(&snapshot);
        let len = buffer.samples();

        // Capture what the chosen input played, before anything is mixed into it.
        {
            let source = match self.params.capture_source.value() {
                CaptureSource::Main => Some(buffer.as_slice_immutable()),
                CaptureSource::Sidechain => aux.inputs.first().map(|b| b.as_slice_immutable()),
            };
            match source {
                Some([left, right, ..]) => self.capture.record(&snapshot, left, right),
                Some([mono]) => self.capture.record(&snapshot, mono, mono),
                _ => self.capture.flush(),
            }
            self.shared.capture_dropped_blocks.store(self.capture.dropped_blocks(), Ordering::Relaxed);
        }

        // After the capture: every block recorded up to this press is in the ring before the
        // request is counted (Release), so the session sees them all when it takes the request.
        let generate = self.params.generate.value();
        if generate && !self.generate_was_on {
            self.shared.generate_transport.publish(&snapshot);
            self.shared.generate_requests.fetch_add(1, Ordering::Release);
        }
        self.generate_was_on = generate;


        if editor_open {
            self.shared.main_in_peak.store(peak(buffer.as_slice_immutable()), Ordering::Relaxed);
            let sidechain = aux.inputs.first().map_or(0.0, |b| peak(b.as_slice_immutable()));
            self.shared.sidechain_in_peak.store(sidechain, Ordering::Relaxed);
        }

        self.apply_commands();

        // The takes: each slot renders alone (for its bus), then into the mix.
        let (mix_l, mix_r, presence) = (&mut self.mix_left[..len], &mut self.mix_right[..len], &mut self.presence[..len]);
        mix_l.fill(0.0);
        mix_r.fill(0.0);
        presence.fill(0.0);
        let take_level = self.params.take_level.value();
        let mut retired: [Option<Arc<TakeAudio>>; TAKE_SLOTS] = Default::default();
        for (k, (voice, scratch)) in self.voices.iter_mut().zip(&mut self.slots).enumerate() {
            let (l, r) = (&mut scratch.left[..len], &mut scratch.right[..len]);
            if voice.is_idle() {
                // An empty slot only silences its bus.
                if let Some([bus_l, bus_r, ..]) = aux.outputs.get_mut(k).map(|b| b.as_slice()) {
                    bus_l[..len].fill(0.0);
                    bus_r[..len].fill(0.0);
                }
                continue;
            }
            l.fill(0.0);
            r.fill(0.0);
            retired[k] = voice.render(&snapshot, l, r, presence);
            for i in 0..len {
                l[i] *= take_level;
                r[i] *= take_level;
                mix_l[i] += l[i];
                mix_r[i] += r[i];
            }
            if let Some(bus) = aux.outputs.get_mut(k) {
                let channels = bus.as_slice();
                if let [bus_l, bus_r, ..] = channels {
                    bus_l[..len].copy_from_slice(l);
                    bus_r[..len].copy_from_slice(r);
                }
            }
        }
        for take in retired {
            self.retire(take);
        }
        self.shared.auditioning.store(self.voices[0].is_auditioning(), Ordering::Relaxed);

        if self.params.bypass.value() {
            // The host's buffer already holds the main input: leave it untouched.
            return;
        }
        let mode = self.params.mix.value();
        self.click.start_block(&snapshot, self.params.click.value(), len);
        for (i, mut frame) in buffer.iter_samples().enumerate() {
            let gain = self.params.gain.smoothed.next();
            let click = self.click.next_sample(i);
            let takes = [self.mix_left[i], self.mix_right[i]];
            let keep_input = match mode {
                MixMode::Add => 1.0,
                MixMode::Replace => 1.0 - self.presence[i],
                MixMode::TakesOnly => 0.0,
            };
            for (ch, sample) in frame.iter_mut().enumerate() {
                let take = takes[ch.min(1)];
                *sample = (*sample * keep_input + take + click) * gain;
            }
        }
    }
}

fn peak(channels: &[&mut [f32]]) -> f32 {
    channels.iter().flat_map(|c| c.iter()).fold(0.0f32, |m, s| m.max(s.abs()))
}
