//! Audio-side helpers shared by the plugin and the engine.
//!
//! - [`grid`]: bars, beats and samples at a tempo and meter.
//! - [`beats`]: the tempo, beats and phase a take actually has, and half or double time.
//! - [`key`]: the key a take is in, of the 24 major and minor keys.
//! - [`analysis`]: a take's measured tempo, phase and key beside its request's, for its recipe.
//! - [`bar_plan`]: bars in: a region's exact length, the span the model makes, an audio task's
//!   source.
//! - [`conform`]: bars out: a generated span cut to the plan with its beats on the grid.
//! - [`stretch`]: time-stretch along a map, and pitch-shift (Signalsmith Stretch).
//! - [`seam`]: closing a loop (crossfade into what followed) and measuring its wrap.
//! - [`align`]: the lag of a result against its source, found and removed.
//! - [`take_shape`]: all of the above in order, from a generated span to the planned take.
//! - [`buffer`]: [`AudioBuffer`], planar `f32` audio, the currency of everything below.
//! - [`decode`]: WAV, FLAC, MP3 and Ogg Vorbis files (or bytes) to an [`AudioBuffer`].
//! - [`resample`]: to the model's 48 kHz stereo ([`to_model_format`]), or to any rate.
//! - [`normalize`]: upstream ACE-Step's output levels (peak cap, then −1 dBFS).
//! - [`write`]: WAV (float or PCM) and FLAC files, never overwriting by accident.
//! - [`error`]: [`AudioError`], shared by all of the above; every variant names the file.
//!
//! The usual path of a source clip is `read_audio` → `to_model_format` → VAE encode, and of a
//! result VAE decode → `normalize_output` → `resample` to the host rate or `write_audio`.

pub mod align;
pub mod analysis;
pub mod bar_plan;
pub mod beats;
pub mod buffer;
pub mod conform;
pub mod decode;
pub mod error;
pub mod grid;
pub mod key;
pub mod normalize;
pub mod resample;
pub mod seam;
pub mod stretch;
pub mod take_shape;
#[cfg(test)]
mod test_music;
pub mod write;

pub use buffer::AudioBuffer;
pub use decode::{decode_bytes, read_audio};
pub use error::AudioError;
pub use normalize::{cap_peak, normalize_output, normalize_peak, DEFAULT_PEAK_DBFS};
pub use resample::{resample, resampled_len, to_model_format, to_stereo, MODEL_CHANNELS, MODEL_SAMPLE_RATE};
pub use write::{write_audio, OutputFormat};

/// A periodic Hann window of `n` points, for the spectra of `beats` and `key`.
fn hann(n: usize) -> Vec<f32> {
    (0..n).map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / n as f32).cos()).collect()
}
