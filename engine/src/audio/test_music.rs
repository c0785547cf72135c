//! Synthetic music with known answers, for the grid's tests: clicks, drums and bass lines at a
//! given tempo, meter, phase and swing, the same on every machine.

use super::grid::TimeSignature;
use super::AudioBuffer;

pub const SR: u32 = 48_000;

/// A deterministic noise source (an LCG), so test signals are the same on every machine.
pub struct Noise(pub u64);

impl Noise {
    pub fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// The sounds the test music is made of.
#[derive(Clone, Copy)]
pub enum Voice {
    Click,
    Kick,
    Snare,
    Hat,
    Bass(f32),
}

/// Mix `events` (onset seconds, voice, gain) into `seconds` of stereo audio.
pub fn render(events: &[(f64, Voice, f32)], seconds: f64) -> AudioBuffer {
    let len = (seconds * SR as f64) as usize;
    let mut out = vec![0.0f32; len];
    let mut noise = Noise(7);
    for &(at, voice, gain) in events {
        let start = (at * SR as f64).round() as usize;
        let (length_s, decay_s) = match voice {
            Voice::Click => (0.02, 0.003),
            Voice::Kick => (0.3, 0.08),
            Voice::Snare => (0.2, 0.05),
            Voice::Hat => (0.05, 0.01),
            Voice::Bass(_) => (0.4, 0.15),
        };
        let mut last = 0.0f32;
        for i in 0..(length_s * SR as f64) as usize {
            let Some(slot) = out.get_mut(start + i) else { break };
            let t = i as f32 / SR as f32;
            let attack = (t / 0.002).min(1.0);
            let envelope = attack * (-t / decay_s as f32).exp();
            let tau = std::f32::consts::TAU;
            let sample = match voice {
                Voice::Click => (tau * 2000.0 * t).sin(),
                Voice::Kick => (tau * (50.0 * t + 60.0 * (1.0 - (-t / 0.03).exp()) * 0.03)).sin(),
                Voice::Snare => 0.7 * noise.next() + 0.3 * (tau * 190.0 * t).sin(),
                Voice::Hat => {
                    let n = noise.next();
                    let high = n - last;
                    last = n;
                    high
                }
                Voice::Bass(f) => (tau * f * t).sin() + 0.3 * (tau * 2.0 * f * t).sin(),
            };
            *slot += gain * envelope * sample;
        }
    }
    AudioBuffer::new(SR, vec![out.clone(), out])
}

/// Beat times from `start` for `seconds` at `bpm` quarters per minute, one per meter beat,
/// with each beat's position in its bar.
pub fn beat_times(bpm: f64, meter: TimeSignature, start: f64, seconds: f64) -> Vec<(f64, u32)> {
    let beat = 60.0 / bpm * meter.quarters_per_beat();
    (0..).map(|k| (start + k as f64 * beat, k % meter.numerator)).take_while(|&(t, _)| t < seconds - 0.05).collect()
}

/// Kick, snare and hats: 4/4 backbeat with eighth hats, a 3/4 waltz, and 7/8 as 2+2+3.
pub fn drums(bpm: f64, m: TimeSignature, start: f64, seconds: f64, swing: f64) -> Vec<(f64, Voice, f32)> {
    let beat = 60.0 / bpm * m.quarters_per_beat();
    let mut events = Vec::new();
    for (t, pos) in beat_times(bpm, m, start, seconds) {
        let voice = match (m.numerator, pos) {
            (4, 0 | 2) | (3, 0) | (7, 0 | 2 | 4) => Voice::Kick,
            (4, _) | (3, _) => Voice::Snare,
            _ => Voice::Hat,
        };
        events.push((t, voice, 0.8));
        if m.denominator == 4 {
            // Off-beat hats, pushed late by `swing` of the beat (0 = straight eighths).
            events.push((t + beat * (0.5 + swing), Voice::Hat, 0.3));
            events.push((t, Voice::Hat, 0.3));
        }
    }
    events
}

