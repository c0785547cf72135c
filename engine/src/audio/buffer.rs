//! [`AudioBuffer`]: decoded audio as planar `f32`, the one format every other audio module takes.
//!
//! Planar (one `Vec` per channel) because the VAE wants `[channels, samples]` and the resampler
//! and the normaliser work channel by channel; interleaving happens only at the file boundary.

use super::AudioError;

/// Audio in memory: one `Vec<f32>` per channel, all the same length, nominally in [-1, 1].
///
/// The fields are public so callers can build and take apart buffers freely; functions that rely
/// on the channels having equal lengths check it first with [`AudioBuffer::validate`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AudioBuffer {
    /// Frames per second, in Hz.
    pub sample_rate: u32,
    /// One vector of samples per channel (left, right, ...).
    pub channels: Vec<Vec<f32>>,
}

impl AudioBuffer {
    pub fn new(sample_rate: u32, channels: Vec<Vec<f32>>) -> Self {
        Self { sample_rate, channels }
    }

    /// `num_channels` channels of `frames` zeros.
    pub fn silence(sample_rate: u32, num_channels: usize, frames: usize) -> Self {
        Self { sample_rate, channels: vec![vec![0.0; frames]; num_channels] }
    }

    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// Frames per channel (the length of the first channel; 0 without channels).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// True when there is not a single frame of audio.
    pub fn is_empty(&self) -> bool {
        self.frames() == 0
    }

    /// Length in seconds (0 when the sample rate is 0).
    pub fn duration_s(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.frames() as f64 / self.sample_rate as f64
    }

    /// All channels averaged into one (empty without channels).
    pub fn mono(&self) -> Vec<f32> {
        let channels = self.channels.len().max(1) as f32;
        (0..self.frames()).map(|i| self.channels.iter().map(|c| c[i]).sum::<f32>() / channels).collect()
    }

    /// Largest absolute sample over all channels (0 for an empty buffer). NaNs are ignored.
    pub fn peak(&self) -> f32 {
        peak_of(&self.channels)
    }

    /// Checks what the resampler and the writers rely on: a non-zero sample rate, at least one
    /// channel, and every channel the same length.
    pub fn validate(&self) -> Result<(), AudioError> {
        if self.sample_rate == 0 {
            return Err(AudioError::InvalidBuffer { reason: "the sample rate is 0 Hz".into() });
        }
        if self.channels.is_empty() {
            return Err(AudioError::InvalidBuffer { reason: "it has no channels".into() });
        }
        let frames = self.frames();
        if let Some((i, ch)) = self.channels.iter().enumerate().find(|(_, ch)| ch.len() != frames) {
            return Err(AudioError::InvalidBuffer {
                reason: format!(
                    "channel {i} has {} frames but channel 0 has {frames}; all channels must be \
                     the same length",
                    ch.len()
                ),
            });
        }
        Ok(())
    }
}

/// Largest absolute sample over all channels; NaNs are ignored (`f32::max` drops them).
pub(crate) fn peak_of(channels: &[Vec<f32>]) -> f32 {
    channels.iter().flatten().fold(0.0f32, |peak, &x| peak.max(x.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_duration_and_peak() {
        let buf = AudioBuffer::new(48_000, vec![vec![0.25; 24_000], vec![-0.75; 24_000]]);
        assert_eq!(buf.frames(), 24_000);
        assert_eq!(buf.num_channels(), 2);
        assert_eq!(buf.duration_s(), 0.5);
        assert_eq!(buf.peak(), 0.75);
        assert!(buf.validate().is_ok());
    }

    #[test]
    fn empty_buffer_has_zero_everything() {
        let buf = AudioBuffer::default();
        assert_eq!((buf.frames(), buf.duration_s(), buf.peak()), (0, 0.0, 0.0));
        assert!(buf.is_empty());
    }

    #[test]
    fn validate_names_the_problem() {
        let ragged = AudioBuffer::new(44_100, vec![vec![0.0; 10], vec![0.0; 9]]);
        let err = ragged.validate().unwrap_err().to_string();
        assert!(err.contains("channel 1 has 9 frames"), "{err}");
        assert!(AudioBuffer::new(0, vec![vec![0.0]]).validate().is_err());
        assert!(AudioBuffer::new(48_000, vec![]).validate().is_err());
    }
}
