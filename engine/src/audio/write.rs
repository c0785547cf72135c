//! Writing an [`AudioBuffer`] to WAV (hound) or FLAC (flacenc), safely.
//!
//! A write never destroys what is on disk by accident: unless `overwrite` is set, an existing
//! file is an [`AudioError::AlreadyExists`]. The audio goes to a temporary file in the same folder,
//! which is renamed into place only once it is complete, so a failed or interrupted write leaves
//! neither a half-written file nor a damaged original.
//!
//! Integer formats (16/24-bit PCM, FLAC) clamp to [-1, 1] and round to the nearest step, with
//! full scale 2^(bits-1) (the convention symphonia decodes with, so a round trip is exact to
//! within half a step). +1.0 maps to the largest code, one step below full scale. NaN becomes 0.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flacenc::component::BitRepr;
use flacenc::error::Verify;

use super::{AudioBuffer, AudioError};

/// File formats [`write_audio`] can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutputFormat {
    /// WAV, 32-bit IEEE float: lossless for the engine's `f32` audio, so the default.
    #[default]
    WavF32,
    /// WAV, 16-bit integer PCM (CD quality, smallest WAV).
    WavPcm16,
    /// WAV, 24-bit integer PCM.
    WavPcm24,
    /// FLAC, 24-bit (lossless compression of 24-bit PCM).
    Flac24,
}

impl OutputFormat {
    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::WavF32 | Self::WavPcm16 | Self::WavPcm24 => "wav",
            Self::Flac24 => "flac",
        }
    }

    /// A short description for messages.
    pub fn description(self) -> &'static str {
        match self {
            Self::WavF32 => "32-bit float WAV",
            Self::WavPcm16 => "16-bit WAV",
            Self::WavPcm24 => "24-bit WAV",
            Self::Flac24 => "24-bit FLAC",
        }
    }

    /// The default format for a path's extension: `.wav` is float WAV, `.flac` is FLAC.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "wav" | "wave" => Some(Self::WavF32),
            "flac" => Some(Self::Flac24),
            _ => None,
        }
    }
}

/// Writes `buf` to `path` in `format`. With `overwrite == false` an existing file is left alone
/// and [`AudioError::AlreadyExists`] is returned.
pub fn write_audio(path: &Path, buf: &AudioBuffer, format: OutputFormat, overwrite: bool) -> Result<(), AudioError> {
    buf.validate()?;
    // Checked early to fail fast; `persist` checks again without a race.
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(AudioError::AlreadyExists { path: path.into() });
    }
    // FLAC is encoded in memory first, so an encoder error never creates a file.
    let flac = match format {
        OutputFormat::Flac24 => Some(encode_flac(path, buf)?),
        _ => None,
    };

    let (temp, file) = TempFile::create(path)?;
    let written = {
        let mut out = BufWriter::new(file);
        match &flac {
            Some(bytes) => out.write_all(bytes).map_err(|e| write_error(path, e)),
            None => write_wav(path, &mut out, buf, format),
        }
        .and_then(|()| out.into_inner().map_err(|e| write_error(path, e.into_error())))
        .and_then(|file| file.sync_all().map_err(|e| write_error(path, e)))
    };
    written?;
    temp.persist(overwrite)
}

/// Converts one sample to a `bits`-bit integer code: clamp to [-1, 1], scale by 2^(bits-1),
/// round, and keep +1.0 inside the range. NaN gives 0.
pub fn to_pcm(sample: f32, bits: u32) -> i32 {
    if sample.is_nan() {
        return 0;
    }
    let full_scale = (1i64 << (bits - 1)) as f64;
    let code = (sample.clamp(-1.0, 1.0) as f64 * full_scale).round();
    code.min(full_scale - 1.0) as i32
}

fn write_wav<W: Write + io::Seek>(
    path: &Path,
    out: &mut W,
    buf: &AudioBuffer,
    format: OutputFormat,
) -> Result<(), AudioError> {
    let (bits_per_sample, sample_format) = match format {
        OutputFormat::WavF32 => (32, hound::SampleFormat::Float),
        OutputFormat::WavPcm16 => (16, hound::SampleFormat::Int),
        OutputFormat::WavPcm24 => (24, hound::SampleFormat::Int),
        OutputFormat::Flac24 => unreachable!("FLAC is not written through hound"),
    };
    let spec = hound::WavSpec {
        channels: u16::try_from(buf.num_channels()).map_err(|_| encode_error(path, format, "too many channels"))?,
        sample_rate: buf.sample_rate,
        bits_per_sample,
        sample_format,
    };
    let hound_error = |e: hound::Error| match e {
        hound::Error::IoError(e) => write_error(path, e),
        other => encode_error(path, format, other.to_string()),
    };
    let mut writer = hound::WavWriter::new(out, spec).map_err(hound_error)?;
    for frame in 0..buf.frames() {
        for channel in &buf.channels {
            let sample = channel[frame];
            match format {
                OutputFormat::WavF32 => writer.write_sample(sample),
                _ => writer.write_sample(to_pcm(sample, bits_per_sample.into())),
            }
            .map_err(hound_error)?;
        }
    }
    writer.finalize().map_err(hound_error)
}

/// Encodes the whole buffer as a 24-bit FLAC stream in memory.
fn encode_flac(path: &Path, buf: &AudioBuffer) -> Result<Vec<u8>, AudioError> {
    const BITS: usize = 24;
    let format = OutputFormat::Flac24;
    let interleaved: Vec<i32> = (0..buf.frames())
        .flat_map(|frame| buf.channels.iter().map(move |channel| to_pcm(channel[frame], BITS as u32)))
        .collect();
    let mut config = flacenc::config::Encoder::default();
    // flacenc 0.5 picks the fixed-predictor order from an entropy estimate that ignores its
    // 4-bit Rice parameter limit (at most 14), and then keeps that subframe even when verbatim
    // would be smaller: loud, noisy 24-bit audio came out at over twice the size of raw PCM.
    // Counting the real bits makes it fall back to verbatim in that case.
    config.subframe_coding.fixed.order_sel = flacenc::config::OrderSel::BitCount;
    let config = config.into_verified().map_err(|(_, e)| encode_error(path, format, e.to_string()))?;
    let source =
        flacenc::source::MemSource::from_samples(&interleaved, buf.num_channels(), BITS, buf.sample_rate as usize);
    let mut stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| encode_error(path, format, e.to_string()))?;
    // flacenc counts the short last block in STREAMINFO's minimum block size, which makes the
    // stream look variable-blocksize; strict readers (symphonia) then reject every frame header.
    // The spec excludes the last block from the minimum, so a fixed-blocksize stream has min = max.
    stream
        .stream_info_mut()
        .set_block_sizes(config.block_size, config.block_size)
        .map_err(|e| encode_error(path, format, e.to_string()))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).map_err(|e| encode_error(path, format, e.to_string()))?;
    Ok(sink.into_inner())
}

fn write_error(path: &Path, source: io::Error) -> AudioError {
    AudioError::Write { path: path.into(), source }
}

fn encode_error(path: &Path, format: OutputFormat, reason: impl Into<String>) -> AudioError {
    AudioError::Encode { path: path.into(), format: format.description(), reason: reason.into() }
}

/// A temporary file next to the destination, removed on drop unless persisted.
struct TempFile {
    temp: PathBuf,
    dest: PathBuf,
}

impl TempFile {
    /// Creates a fresh, hidden, uniquely named file in the destination's folder (same folder, so
    /// the final rename stays on one filesystem and is atomic).
    fn create(dest: &Path) -> Result<(Self, File), AudioError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = dest.file_name().ok_or_else(|| {
            write_error(dest, io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"))
        })?;
        let unique = format!(
            ".{}.{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let temp = dest.with_file_name(unique);
        let file = OpenOptions::new().write(true).create_new(true).open(&temp).map_err(|e| write_error(dest, e))?;
        Ok((Self { temp, dest: dest.into() }, file))
    }

    /// Moves the finished file into place. Without `overwrite`, a hard link is made instead of a
    /// rename because creating a link fails if the name exists, so a file that appeared since the
    /// early check is still not replaced.
    fn persist(self, overwrite: bool) -> Result<(), AudioError> {
        if overwrite {
            return fs::rename(&self.temp, &self.dest).map_err(|e| write_error(&self.dest, e));
        }
        match fs::hard_link(&self.temp, &self.dest) {
            Ok(()) => Ok(()), // the temporary name is removed on drop
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(AudioError::AlreadyExists { path: self.dest.clone() })
            }
            // Filesystems without hard links: check-then-rename, racy only against other writers.
            Err(_) if fs::symlink_metadata(&self.dest).is_ok() => {
                Err(AudioError::AlreadyExists { path: self.dest.clone() })
            }
            Err(_) => fs::rename(&self.temp, &self.dest).map_err(|e| write_error(&self.dest, e)),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Already renamed away (NotFound) or a failed write: either way nothing to report.
        let _ = fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm_codes_clamp_and_round() {
        assert_eq!(to_pcm(0.0, 16), 0);
        assert_eq!(to_pcm(0.5, 16), 16_384);
        assert_eq!(to_pcm(-1.0, 16), -32_768);
        assert_eq!(to_pcm(1.0, 16), 32_767);
        assert_eq!(to_pcm(3.0, 16), 32_767);
        assert_eq!(to_pcm(-3.0, 24), -8_388_608);
        assert_eq!(to_pcm(1.6 / 32_768.0, 16), 2); // 1.6 rounds to 2
        assert_eq!(to_pcm(-1.4 / 32_768.0, 16), -1);
        assert_eq!(to_pcm(f32::NAN, 24), 0);
        assert_eq!(to_pcm(f32::INFINITY, 24), 8_388_607);
    }

    #[test]
    fn formats_from_paths() {
        assert_eq!(OutputFormat::from_path(Path::new("a/take.WAV")), Some(OutputFormat::WavF32));
        assert_eq!(OutputFormat::from_path(Path::new("take.flac")), Some(OutputFormat::Flac24));
        assert_eq!(OutputFormat::from_path(Path::new("take.mp3")), None);
        assert_eq!(OutputFormat::Flac24.extension(), "flac");
    }
}
