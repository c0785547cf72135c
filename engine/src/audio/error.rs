//! [`AudioError`]: everything that can go wrong reading, converting or writing audio.
//!
//! Each variant names the file (or, for in-memory data, a label such as `<in-memory mp3>`), so a
//! message shown to a person says which input was bad and why.

use std::io;
use std::path::PathBuf;

/// Errors from the audio I/O functions in [`crate::audio`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The file could not be opened or read (missing, permissions, a directory, ...).
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },

    /// No supported container was recognised, or the codec inside is not one we decode.
    #[error(
        "{} is not a supported audio file ({reason}); Backline reads WAV, FLAC, MP3 and Ogg Vorbis",
        path.display()
    )]
    UnsupportedFormat { path: PathBuf, reason: String },

    /// The container was recognised but holds no audio track.
    #[error("{} has no audio track", path.display())]
    NoAudioTrack { path: PathBuf },

    /// The stream is damaged: a truncated header, or no packet could be decoded.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// The file decoded to zero frames (or is a zero-byte file).
    #[error("{} holds no audio (zero frames)", path.display())]
    Empty { path: PathBuf },

    /// A write was asked not to overwrite, and the file is already there.
    #[error("{} already exists; not overwriting it", path.display())]
    AlreadyExists { path: PathBuf },

    /// Creating, writing or renaming the output file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },

    /// The encoder refused the audio (for example more channels than the format allows).
    #[error("cannot encode {} as {format}: {reason}", path.display())]
    Encode { path: PathBuf, format: &'static str, reason: String },

    /// An [`AudioBuffer`](super::AudioBuffer) that breaks its invariants was passed in.
    #[error("invalid audio buffer: {reason}")]
    InvalidBuffer { reason: String },

    /// The resampler could not be built or run for this pair of rates.
    #[error("cannot resample from {from_hz} Hz to {to_hz} Hz: {reason}")]
    Resample { from_hz: u32, to_hz: u32, reason: String },
}
