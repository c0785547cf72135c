//! Audio inputs on their way to the VAE (already read, converted to 48 kHz stereo and checked by
//! the pre-flight): padded for out-painting, cut into the reference clip the timbre encoder
//! takes, and encoded once per distinct audio (a cache keyed by the samples' hash, so repeated
//! edits of one capture skip the encoder).

use std::collections::VecDeque;

use candle_core::Tensor;

use crate::audio::{AudioBuffer, MODEL_SAMPLE_RATE};

/// Seconds of reference audio the timbre encoder sees: three 10-second segments.
pub const REFERENCE_SECONDS: usize = 30;
const REFERENCE_SEGMENTS: usize = 3;

/// `audio` with `left` and `right` samples of silence around it (out-painting). The VAE then
/// encodes `samples / 1920` whole frames and drops a partial last one, as upstream's does.
pub fn pad(audio: &AudioBuffer, left: usize, right: usize) -> AudioBuffer {
    let total = left + audio.frames() + right;
    let channels = audio
        .channels
        .iter()
        .map(|c| {
            let mut padded = vec![0f32; total];
            padded[left..left + c.len()].copy_from_slice(c);
            padded
        })
        .collect();
    AudioBuffer::new(audio.sample_rate, channels)
}

/// The 30-second clip the timbre encoder takes from a reference. Upstream repeats a short
/// reference to 30 s, then takes a 10-second segment at a random place in each third; Backline
/// takes each third's middle 10 seconds instead, so a reference always gives the same timbre.
pub fn reference_clip(audio: &AudioBuffer) -> AudioBuffer {
    let rate = MODEL_SAMPLE_RATE as usize;
    let (target, segment) = (REFERENCE_SECONDS * rate, REFERENCE_SECONDS / REFERENCE_SEGMENTS * rate);
    let frames = audio.frames();
    let repeats = target.div_ceil(frames.max(1)).max(1);
    let channels = audio
        .channels
        .iter()
        .map(|c| {
            let long: Vec<f32> = c.iter().copied().cycle().take(frames * repeats).collect();
            let third = long.len() / REFERENCE_SEGMENTS;
            let mut clip = Vec::with_capacity(target);
            for k in 0..REFERENCE_SEGMENTS {
                let room = if k + 1 == REFERENCE_SEGMENTS { long.len() - 2 * third } else { third };
                let start = k * third + room.saturating_sub(segment) / 2;
                clip.extend_from_slice(&long[start..(start + segment).min(long.len())]);
            }
            clip
        })
        .collect();
    AudioBuffer::new(audio.sample_rate, channels)
}

/// Encoded latents of recent inputs, keyed by the hash of the audio the VAE saw. Small: a
/// source latent of 4 minutes is 6000×64 floats, 1.5 MB.
pub struct LatentCache {
    entries: VecDeque<(String, Tensor)>,
    capacity: usize,
}

impl LatentCache {
    pub fn new(capacity: usize) -> Self {
        Self { entries: VecDeque::with_capacity(capacity), capacity }
    }

    pub fn get(&self, key: &str) -> Option<Tensor> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, t)| t.clone())
    }

    pub fn insert(&mut self, key: String, latents: Tensor) {
        if self.get(&key).is_some() {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((key, latents));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(frames: usize) -> AudioBuffer {
        let c: Vec<f32> = (0..frames).map(|i| i as f32 / frames as f32).collect();
        AudioBuffer::new(MODEL_SAMPLE_RATE, vec![c.clone(), c])
    }

    #[test]
    fn padding_adds_silence_on_both_sides() {
        let padded = pad(&ramp(5000), 100, 50);
        assert_eq!(padded.frames(), 5150);
        assert_eq!(padded.channels[0][99], 0.0);
        assert_eq!(padded.channels[0][100], 0.0); // the ramp's first sample is 0
        assert_eq!(padded.channels[0][101], 1.0 / 5000.0);
        assert!(padded.channels[0][5100..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn reference_clip_takes_the_middle_of_each_third() {
        let rate = MODEL_SAMPLE_RATE as usize;
        let clip = reference_clip(&ramp(60 * rate));
        assert_eq!(clip.frames(), 30 * rate);
        // Thirds of 20 s; each segment starts 5 s into its third.
        let at = |s: usize| (s * rate) as f32 / (60 * rate) as f32;
        assert_eq!(clip.channels[0][0], at(5));
        assert_eq!(clip.channels[0][10 * rate], at(25));
        assert_eq!(clip.channels[0][20 * rate], at(45));
        // A short reference repeats up to 30 s.
        assert_eq!(reference_clip(&ramp(7 * rate)).frames(), 30 * rate);
    }

    #[test]
    fn latent_cache_keeps_the_most_recent() {
        let mut cache = LatentCache::new(2);
        let t = Tensor::zeros(1, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        for key in ["a", "b", "c"] {
            cache.insert(key.into(), t.clone());
        }
        assert!(cache.get("a").is_none() && cache.get("b").is_some() && cache.get("c").is_some());
    }
}
