//! Decoding WAV, FLAC, MP3 and Ogg Vorbis into an [`AudioBuffer`] with symphonia.
//!
//! The whole first audio track is decoded at its own rate and channel count; converting to what
//! the model wants is [`super::to_model_format`]'s job. Damage is handled the way a player would:
//! a packet that fails to decode is skipped, and a stream that ends early (`UnexpectedEof`) ends
//! the decode with what was read. Only a file that yields no audio at all is an error.

use std::fs::File;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use super::{AudioBuffer, AudioError};

/// Reads and decodes a whole audio file. The format is found from the content, with the file
/// extension as a hint.
pub fn read_audio(path: &Path) -> Result<AudioBuffer, AudioError> {
    let file = File::open(path).map_err(|source| AudioError::Open { path: path.into(), source })?;
    let len = file.metadata().map_err(|source| AudioError::Open { path: path.into(), source })?.len();
    if len == 0 {
        return Err(AudioError::Empty { path: path.into() });
    }
    let extension = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(file), extension, path.to_path_buf())
}

/// Decodes a whole audio file held in memory (an upload to the REST server, say).
/// `extension_hint` is the file extension without the dot (`"mp3"`), if known.
pub fn decode_bytes(bytes: &[u8], extension_hint: Option<&str>) -> Result<AudioBuffer, AudioError> {
    // Errors need something to name; in-memory data has no path, so use a label.
    let label = PathBuf::from(match extension_hint {
        Some(ext) => format!("<in-memory {ext}>"),
        None => "<in-memory audio>".to_owned(),
    });
    if bytes.is_empty() {
        return Err(AudioError::Empty { path: label });
    }
    decode_source(Box::new(Cursor::new(bytes)), extension_hint, label)
}

/// Probes the container, picks the default audio track and decodes it to the end.
fn decode_source<'s>(
    source: Box<dyn MediaSource + 's>,
    extension: Option<&str>,
    path: PathBuf,
) -> Result<AudioBuffer, AudioError> {
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let stream = MediaSourceStream::new(source, Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(&hint, stream, FormatOptions::default(), MetadataOptions::default())
        .map_err(|e| open_error(e, &path))?;

    let no_track = || AudioError::NoAudioTrack { path: path.clone() };
    let track = format.default_track(TrackType::Audio).ok_or_else(no_track)?;
    let (track_id, declared_frames) = (track.id, track.num_frames);
    let params = track.codec_params.as_ref().and_then(|p| p.audio()).ok_or_else(no_track)?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| open_error(e, &path))?;

    let mut out = Decoded::default();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A truncated file: keep what was decoded up to the cut.
            Err(SymphoniaError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                out.truncated = true;
                break;
            }
            // A chained Ogg stream starts a new track list; the first stream is the song.
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(stream_error(e, &path)),
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(decoded) => {
                let rate = decoded.spec().rate();
                decoded.copy_to_vecs_planar(&mut out.scratch);
                out.append(rate, &path)?;
            }
            // A malformed or short packet: skip it, as a player would, and keep going.
            Err(SymphoniaError::DecodeError(msg)) => out.skipped(msg.to_owned()),
            Err(SymphoniaError::IoError(e)) => out.skipped(e.to_string()),
            Err(SymphoniaError::ResetRequired) => decoder.reset(),
            Err(e) => return Err(stream_error(e, &path)),
        }
    }
    out.finish(path, declared_frames.unwrap_or(0))
}

/// Accumulates decoded packets into one planar buffer, and what went wrong on the way.
#[derive(Default)]
struct Decoded {
    buffer: Option<AudioBuffer>,
    /// The packet just decoded, planar; reused between packets.
    scratch: Vec<Vec<f32>>,
    /// Packets that failed to decode and were skipped, and the last reason.
    skipped_packets: usize,
    last_skip_reason: String,
    /// The stream ended in the middle of a packet.
    truncated: bool,
}

impl Decoded {
    fn append(&mut self, rate: u32, path: &Path) -> Result<(), AudioError> {
        let buffer = self.buffer.get_or_insert_with(|| AudioBuffer::silence(rate, self.scratch.len(), 0));
        // Formats can in principle change layout mid-stream; nothing Backline reads should, and
        // splicing two layouts into one buffer would be wrong, so say so.
        if buffer.sample_rate != rate || buffer.num_channels() != self.scratch.len() {
            return Err(AudioError::Corrupt {
                path: path.into(),
                reason: format!(
                    "the stream changes from {} channels at {} Hz to {} channels at {rate} Hz",
                    buffer.num_channels(),
                    buffer.sample_rate,
                    self.scratch.len()
                ),
            });
        }
        for (dst, src) in buffer.channels.iter_mut().zip(&self.scratch) {
            dst.extend_from_slice(src);
        }
        Ok(())
    }

    fn skipped(&mut self, reason: String) {
        self.skipped_packets += 1;
        self.last_skip_reason = reason;
    }

    /// The decoded audio, or why there is none: damage (a cut, a header promising frames, bad
    /// packets) is `Corrupt`; a stream that really holds nothing is `Empty`.
    fn finish(self, path: PathBuf, declared_frames: u64) -> Result<AudioBuffer, AudioError> {
        if let Some(buffer) = self.buffer.filter(|b| !b.is_empty()) {
            return Ok(buffer);
        }
        let reason = if self.skipped_packets > 0 {
            format!("none of its {} packets could be decoded ({})", self.skipped_packets, self.last_skip_reason)
        } else if declared_frames > 0 {
            format!("its header declares {declared_frames} frames, but it ends before the first complete one")
        } else if self.truncated {
            "it ends before the first complete packet of audio".to_owned()
        } else {
            return Err(AudioError::Empty { path });
        };
        Err(AudioError::Corrupt { path, reason })
    }
}

/// Maps an error from probing or from building the decoder (before any audio was read).
fn open_error(err: SymphoniaError, path: &Path) -> AudioError {
    let path = path.to_path_buf();
    match err {
        SymphoniaError::Unsupported(what) => AudioError::UnsupportedFormat { path, reason: what.to_owned() },
        SymphoniaError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            AudioError::Corrupt { path, reason: "the file ends inside its header".into() }
        }
        SymphoniaError::IoError(source) => AudioError::Open { path, source },
        other => AudioError::Corrupt { path, reason: other.to_string() },
    }
}

/// Maps an error that stops the demuxer in the middle of the stream.
fn stream_error(err: SymphoniaError, path: &Path) -> AudioError {
    let path = path.to_path_buf();
    match err {
        SymphoniaError::Unsupported(what) => AudioError::UnsupportedFormat { path, reason: what.to_owned() },
        other => AudioError::Corrupt { path, reason: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 16-bit PCM WAV file, written by hand so this test does not depend on the writer.
    fn wav_bytes(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let data_len = (samples.len() * 2) as u32;
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes()); // PCM
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
        b.extend_from_slice(&(channels * 2).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            b.extend_from_slice(&s.to_le_bytes());
        }
        b
    }

    #[test]
    fn decodes_interleaved_pcm_to_planar() {
        let bytes = wav_bytes(8_000, 2, &[16_384, -16_384, 0, 32_767, -32_768, 8_192]);
        let buf = decode_bytes(&bytes, Some("wav")).unwrap();
        assert_eq!(buf.sample_rate, 8_000);
        assert_eq!(buf.channels, vec![vec![0.5, 0.0, -1.0], vec![-0.5, 32_767.0 / 32_768.0, 0.25]]);
    }

    #[test]
    fn header_only_wav_is_empty() {
        let err = decode_bytes(&wav_bytes(8_000, 1, &[]), Some("wav")).unwrap_err();
        assert!(matches!(err, AudioError::Empty { .. }), "{err}");
    }

    #[test]
    fn empty_and_garbage_bytes_are_errors() {
        assert!(matches!(decode_bytes(&[], None), Err(AudioError::Empty { .. })));
        // Plain text: no byte can look like a WAV, FLAC, Ogg or MP3 sync marker.
        let garbage = "this is not audio, just words. ".repeat(100).into_bytes();
        let err = decode_bytes(&garbage, None).unwrap_err();
        assert!(matches!(err, AudioError::UnsupportedFormat { .. }), "{err}");
        assert!(err.to_string().contains("<in-memory audio>"), "{err}");
    }
}
