//! A finished item as the file the client asked for: `wav` (16-bit PCM), `wav32` (32-bit
//! float), `flac` (24-bit) or `mp3` (128 kbit/s at 48 kHz, upstream's `GenerationConfig`
//! default). Opus and AAC are refused when the task is submitted, not here.

use std::io::Write;
use std::path::{Path, PathBuf};

use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, InterleavedPcm, Quality};

use crate::audio::{write_audio, AudioBuffer, OutputFormat};
use crate::request::AudioFormat;

/// The formats this server writes; the others are refused naming these.
pub const SERVED_FORMATS: [AudioFormat; 4] = [AudioFormat::Mp3, AudioFormat::Wav, AudioFormat::Wav32, AudioFormat::Flac];

/// The file's extension (wav32 is a `.wav`).
pub fn extension(format: AudioFormat) -> &'static str {
    match format {
        AudioFormat::Wav | AudioFormat::Wav32 => "wav",
        other => other.as_str(),
    }
}

/// The MIME type `/v1/audio` and the chat form's data URLs give the file.
pub fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("wav") => "audio/wav",
        Some("flac") => "audio/flac",
        _ => "audio/mpeg",
    }
}

/// Writes item `index` of task `id` into `dir`; returns its path.
pub fn write_item(dir: &Path, id: &str, index: usize, audio: &AudioBuffer, format: AudioFormat) -> Result<PathBuf, String> {
    let path = dir.join(format!("{id}-{}.{}", index + 1, extension(format)));
    let pcm = match format {
        AudioFormat::Wav => Some(OutputFormat::WavPcm16),
        AudioFormat::Wav32 => Some(OutputFormat::WavF32),
        AudioFormat::Flac => Some(OutputFormat::Flac24),
        AudioFormat::Mp3 => None,
        AudioFormat::Opus | AudioFormat::Aac => return Err(format!("{} files are not written by this server", format.as_str())),
    };
    match pcm {
        Some(pcm) => write_audio(&path, audio, pcm, false).map_err(|e| format!("writing {}: {e}", path.display()))?,
        None => {
            let bytes = encode_mp3(audio)?;
            // Whole or not at all: a poll never sees half a file.
            let partial = path.with_extension("mp3.part");
            std::fs::File::create(&partial)
                .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
    }
    Ok(path)
}

/// MP3 at 128 kbit/s, joint stereo (a mono item is written on both sides).
pub fn encode_mp3(audio: &AudioBuffer) -> Result<Vec<u8>, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("MP3 encoder: {what}: {e}");
    if audio.num_channels() == 0 {
        return Err("MP3 encoder: the item has no channels".into());
    }
    let channels = 2;
    let mut builder = Builder::new().ok_or("MP3 encoder: LAME could not start")?;
    builder.set_num_channels(channels as u8).map_err(|e| fail("channels", &e))?;
    builder.set_sample_rate(audio.sample_rate).map_err(|e| fail("sample rate", &e))?;
    builder.set_brate(Bitrate::Kbps128).map_err(|e| fail("bitrate", &e))?;
    builder.set_quality(Quality::Good).map_err(|e| fail("quality", &e))?;
    let mut encoder = builder.build().map_err(|e| fail("start", &e))?;
    let frames = audio.frames();
    let mut interleaved = Vec::with_capacity(frames * channels);
    for i in 0..frames {
        for ch in 0..channels {
            interleaved.push(audio.channels[ch.min(audio.num_channels() - 1)][i].clamp(-1.0, 1.0));
        }
    }
    let mut out = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(frames));
    let written = encoder.encode(InterleavedPcm(&interleaved), out.spare_capacity_mut()).map_err(|e| fail("encode", &e))?;
    // SAFETY: the encoder initialised `written` bytes of the spare capacity.
    unsafe { out.set_len(out.len() + written) };
    out.reserve(7200);
    let flushed = encoder.flush::<FlushNoGap>(out.spare_capacity_mut()).map_err(|e| fail("flush", &e))?;
    // SAFETY: as above, for the flushed bytes.
    unsafe { out.set_len(out.len() + flushed) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::read_audio;

    #[test]
    fn an_mp3_decodes_back_to_the_same_length_and_tone() {
        let rate = 48_000;
        let tone: Vec<f32> = (0..rate * 2).map(|i| 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin()).collect();
        let audio = AudioBuffer::new(rate as u32, vec![tone.clone(), tone]);
        let dir = std::env::temp_dir().join(format!("backline-mp3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = write_item(&dir, "t", 0, &audio, AudioFormat::Mp3).unwrap();
        assert_eq!(path.file_name().unwrap(), "t-1.mp3");
        let back = read_audio(&path).unwrap();
        assert_eq!((back.sample_rate, back.num_channels()), (48_000, 2));
        // LAME adds its encoder delay and pads the last frame: within two MP3 frames.
        assert!(back.frames().abs_diff(audio.frames()) <= 2 * 1152, "{} frames", back.frames());
        let rms = (back.channels[0].iter().map(|x| x * x).sum::<f32>() / back.frames() as f32).sqrt();
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.03, "rms {rms}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn opus_is_refused_by_name() {
        let audio = AudioBuffer::new(48_000, vec![vec![0.0; 10]; 2]);
        let err = write_item(Path::new("/nonexistent"), "t", 0, &audio, AudioFormat::Opus).unwrap_err();
        assert!(err.contains("opus"), "{err}");
    }
}
