//! Audio I/O end to end: files written and read back, sample-rate and channel conversion against
//! analytic sines, normalisation figures, the committed MP3/Ogg fixtures, and every kind of bad
//! input giving its own clear error.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use backline_engine::audio::{
    decode_bytes, read_audio, resample, resampled_len, to_model_format, write_audio, AudioBuffer, AudioError,
    OutputFormat, MODEL_SAMPLE_RATE,
};

/// A fresh directory under the target dir, removed first if it exists.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audio-io-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Deterministic noise in [-1, 1) (a 64-bit LCG), so round trips see every kind of value.
fn noise(seed: u64, frames: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..frames)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f64 / (1u64 << 23) as f64 - 1.0) as f32
        })
        .collect()
}

fn sine(rate: u32, freq_hz: f64, amplitude: f64, frames: usize) -> Vec<f32> {
    (0..frames).map(|n| (amplitude * (2.0 * PI * freq_hz * n as f64 / rate as f64).sin()) as f32).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Power of `freq_hz` in `x` (Goertzel), normalised by the length.
fn goertzel(x: &[f32], rate: u32, freq_hz: f64) -> f64 {
    let w = 2.0 * PI * freq_hz / rate as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = v as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64).powi(2)
}

/// Files in `dir` other than `keep`: a write must leave no temporary file behind.
fn stray_files(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !keep.contains(&name.as_str()))
        .collect()
}

// --- Round trips -------------------------------------------------------------------------------

#[test]
fn wav_float_round_trip_is_exact() {
    let dir = scratch("wav-float");
    let path = dir.join("take.wav");
    // Float WAV keeps values outside [-1, 1] too: nothing is clamped before normalisation.
    let mut left = noise(1, 10_000);
    left[17] = 1.75;
    let buf = AudioBuffer::new(44_100, vec![left, noise(2, 10_000)]);
    write_audio(&path, &buf, OutputFormat::WavF32, false).unwrap();
    assert_eq!(read_audio(&path).unwrap(), buf);
    assert_eq!(stray_files(&dir, &["take.wav"]), Vec::<String>::new());
}

#[test]
fn wav_pcm_round_trips_within_half_a_step() {
    let dir = scratch("wav-pcm");
    for (format, bits) in [(OutputFormat::WavPcm16, 16), (OutputFormat::WavPcm24, 24)] {
        let path = dir.join(format!("take{bits}.wav"));
        let buf = AudioBuffer::new(48_000, vec![noise(3, 5_000), noise(4, 5_000)]);
        write_audio(&path, &buf, format, false).unwrap();
        let back = read_audio(&path).unwrap();
        assert_eq!((back.sample_rate, back.num_channels(), back.frames()), (48_000, 2, 5_000));
        let step = 1.0 / (1u32 << (bits - 1)) as f32;
        for (a, b) in buf.channels.iter().zip(&back.channels) {
            let err = max_abs_diff(a, b);
            assert!(err <= 0.5 * step * 1.001, "{bits}-bit: error {err} > half a step {}", 0.5 * step);
        }
    }
}

#[test]
fn pcm_clamps_out_of_range_samples() {
    let dir = scratch("wav-clamp");
    let path = dir.join("loud.wav");
    let buf = AudioBuffer::new(8_000, vec![vec![2.0, -2.0, 1.0, -1.0, 0.0]]);
    write_audio(&path, &buf, OutputFormat::WavPcm16, false).unwrap();
    let back = read_audio(&path).unwrap();
    assert_eq!(back.channels[0], vec![32_767.0 / 32_768.0, -1.0, 32_767.0 / 32_768.0, -1.0, 0.0]);
}

#[test]
fn flac_round_trip_within_24_bit_quantisation() {
    let dir = scratch("flac");
    let path = dir.join("take.flac");
    // Longer than one 4096-frame FLAC block, with a sine so the predictor has real work.
    let tone = sine(48_000, 440.0, 0.8, 20_000);
    let left: Vec<f32> = tone.iter().zip(noise(5, 20_000)).map(|(s, n)| s + 0.1 * n).collect();
    let buf = AudioBuffer::new(48_000, vec![left, noise(6, 20_000)]);
    write_audio(&path, &buf, OutputFormat::Flac24, false).unwrap();
    let back = read_audio(&path).unwrap();
    assert_eq!((back.sample_rate, back.num_channels(), back.frames()), (48_000, 2, 20_000));
    let half_step = 0.5 / (1u32 << 23) as f32;
    for (a, b) in buf.channels.iter().zip(&back.channels) {
        let err = max_abs_diff(a, b);
        assert!(err <= half_step * 1.001, "error {err} > half a 24-bit step {half_step}");
    }
}

#[test]
fn flac_is_never_much_bigger_than_pcm() {
    let dir = scratch("flac-size");
    let frames = 20_000;
    let raw_24_bit = (frames * 3) as u64;
    // A tone compresses well.
    let tone = dir.join("tone.flac");
    write_audio(&tone, &AudioBuffer::new(48_000, vec![sine(48_000, 440.0, 0.8, frames)]), OutputFormat::Flac24, false)
        .unwrap();
    let size = std::fs::metadata(&tone).unwrap().len();
    assert!(size < raw_24_bit / 2, "tone: {size} bytes for {raw_24_bit} bytes of PCM");
    // Loud noise cannot be compressed, but must not grow either (flacenc's default settings made
    // this 2.7 times the PCM size; see `encode_flac`).
    let hiss = dir.join("hiss.flac");
    let noise_01: Vec<f32> = noise(5, frames).iter().map(|x| 0.1 * x).collect();
    write_audio(&hiss, &AudioBuffer::new(48_000, vec![noise_01]), OutputFormat::Flac24, false).unwrap();
    let size = std::fs::metadata(&hiss).unwrap().len();
    assert!(size < raw_24_bit + raw_24_bit / 50, "hiss: {size} bytes for {raw_24_bit} bytes of PCM");
}

#[test]
fn flac_mono_at_22050_round_trips() {
    let dir = scratch("flac-mono");
    let path = dir.join("mono.flac");
    let buf = AudioBuffer::new(22_050, vec![sine(22_050, 1_000.0, 0.5, 3_000)]);
    write_audio(&path, &buf, OutputFormat::Flac24, false).unwrap();
    let back = read_audio(&path).unwrap();
    assert_eq!((back.sample_rate, back.num_channels(), back.frames()), (22_050, 1, 3_000));
    assert!(max_abs_diff(&buf.channels[0], &back.channels[0]) <= 0.5 / (1u32 << 23) as f32 * 1.001);
}

// --- Channels and rates ------------------------------------------------------------------------

#[test]
fn mono_file_becomes_stereo_at_48k() {
    let dir = scratch("mono");
    let path = dir.join("mono.wav");
    let mono = sine(48_000, 440.0, 0.5, 4_800);
    write_audio(&path, &AudioBuffer::new(48_000, vec![mono.clone()]), OutputFormat::WavF32, false).unwrap();
    let model = to_model_format(&read_audio(&path).unwrap()).unwrap();
    assert_eq!(model.sample_rate, MODEL_SAMPLE_RATE);
    assert_eq!(model.channels, vec![mono.clone(), mono]);
}

#[test]
fn more_than_two_channels_keep_the_first_two() {
    let dir = scratch("quad");
    let path = dir.join("quad.wav");
    let channels: Vec<Vec<f32>> = (0..4).map(|c| vec![0.1 * (c + 1) as f32; 960]).collect();
    write_audio(&path, &AudioBuffer::new(48_000, channels.clone()), OutputFormat::WavPcm24, false).unwrap();
    let read = read_audio(&path).unwrap();
    assert_eq!(read.num_channels(), 4);
    let model = to_model_format(&read).unwrap();
    assert_eq!(model.num_channels(), 2);
    for (got, want) in model.channels.iter().zip(&channels[..2]) {
        assert!(max_abs_diff(got, want) < 1e-6);
    }
}

/// Resamples a sine and compares it with the same sine generated at the new rate: the length must
/// be exact, and away from the edges (where the clip starts and stops abruptly) the waveform
/// must match, which a frequency or delay error would break. The delay is also measured directly
/// from the phase.
fn check_sine_resampling(from: u32, to: u32, freq_hz: f64) {
    let frames_in = from as usize; // one second
    let input = AudioBuffer::new(from, vec![sine(from, freq_hz, 0.5, frames_in)]);
    let out = resample(&input, to).unwrap();
    assert_eq!(out.sample_rate, to);
    assert_eq!(out.frames(), resampled_len(frames_in, from, to));
    assert_eq!(out.frames(), (frames_in as f64 * to as f64 / from as f64).round() as usize);

    let expected = sine(to, freq_hz, 0.5, out.frames());
    let edge = (to / 20) as usize; // 50 ms
    let (got, want) = (&out.channels[0][edge..out.frames() - edge], &expected[edge..out.frames() - edge]);
    let err = max_abs_diff(got, want);
    // Measured: about 2e-6 (f32 FFTs); a delay of 0.01 frame at 1 kHz alone would be 7e-4.
    assert!(err < 5e-5, "{from} -> {to} Hz, {freq_hz} Hz sine: max error {err}");

    // Phase of the output relative to the analytic sine, as a delay in output frames.
    let w = 2.0 * PI * freq_hz / to as f64;
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &v) in got.iter().enumerate() {
        let n = (i + edge) as f64;
        re += v as f64 * (w * n).sin();
        im += v as f64 * (w * n).cos();
    }
    let delay_frames = -im.atan2(re) / w;
    assert!(delay_frames.abs() < 1e-3, "{from} -> {to} Hz: output is delayed by {delay_frames} frames");
}

#[test]
fn resample_44100_to_48000_keeps_length_frequency_and_timing() {
    check_sine_resampling(44_100, 48_000, 1_000.0);
    check_sine_resampling(44_100, 48_000, 7_350.0);
}

#[test]
fn resample_22050_to_48000_keeps_length_frequency_and_timing() {
    check_sine_resampling(22_050, 48_000, 440.0);
    check_sine_resampling(22_050, 48_000, 5_000.0);
}

#[test]
fn resample_48000_to_44100_keeps_length_frequency_and_timing() {
    check_sine_resampling(48_000, 44_100, 1_000.0);
    check_sine_resampling(48_000, 44_100, 15_000.0);
}

#[test]
fn resampled_click_stays_in_place() {
    // A click at 0.25 s must come out at 0.25 s at the new rate.
    let mut click = vec![0.0f32; 22_050];
    click[5_512] = 1.0; // 0.249977 s
    let out = resample(&AudioBuffer::new(22_050, vec![click]), 48_000).unwrap();
    let (peak_at, _) = out.channels[0]
        .iter()
        .enumerate()
        .fold((0, 0.0f32), |best, (i, &v)| if v.abs() > best.1 { (i, v.abs()) } else { best });
    let expected = 5_512.0 * 48_000.0 / 22_050.0; // 11998.9
    assert!((peak_at as f64 - expected).abs() <= 1.0, "click at {peak_at}, expected {expected}");
}

#[test]
fn model_format_resamples_and_duplicates_mono() {
    let input = AudioBuffer::new(44_100, vec![sine(44_100, 440.0, 0.5, 44_100)]);
    let model = to_model_format(&input).unwrap();
    assert_eq!((model.sample_rate, model.num_channels(), model.frames()), (48_000, 2, 48_000));
    assert_eq!(model.channels[0], model.channels[1]);
}

// --- Normalisation -----------------------------------------------------------------------------

#[test]
fn normalisation_figures() {
    // A decoded clip that clips: capped to 1, then -1 dBFS.
    let mut loud = AudioBuffer::new(48_000, vec![sine(48_000, 440.0, 2.0, 4_800), sine(48_000, 220.0, 1.0, 4_800)]);
    loud.cap_peak();
    assert!((loud.peak() - 1.0).abs() < 1e-6);
    loud.normalize_output();
    assert!((loud.peak() - 0.891_251).abs() < 1e-6, "peak {}", loud.peak());

    let mut quiet = AudioBuffer::new(48_000, vec![sine(48_000, 440.0, 0.01, 4_800)]);
    quiet.normalize_output();
    assert!((quiet.peak() - 0.891_251).abs() < 1e-6, "peak {}", quiet.peak());

    let mut silence = AudioBuffer::silence(48_000, 2, 4_800);
    silence.normalize_output();
    assert_eq!(silence, AudioBuffer::silence(48_000, 2, 4_800));
}

// --- Overwriting -------------------------------------------------------------------------------

#[test]
fn refuses_to_overwrite_and_leaves_the_file_intact() {
    let dir = scratch("overwrite");
    let path = dir.join("take.wav");
    let first = AudioBuffer::new(48_000, vec![noise(7, 1_000), noise(8, 1_000)]);
    let second = AudioBuffer::new(48_000, vec![noise(9, 2_000), noise(10, 2_000)]);
    write_audio(&path, &first, OutputFormat::WavF32, false).unwrap();
    let bytes_before = std::fs::read(&path).unwrap();

    for format in [OutputFormat::WavF32, OutputFormat::WavPcm16, OutputFormat::Flac24] {
        let err = write_audio(&path, &second, format, false).unwrap_err();
        assert!(matches!(err, AudioError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("take.wav"), "{err}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes_before);
    assert_eq!(read_audio(&path).unwrap(), first);

    write_audio(&path, &second, OutputFormat::WavF32, true).unwrap();
    assert_eq!(read_audio(&path).unwrap(), second);
    assert_eq!(stray_files(&dir, &["take.wav"]), Vec::<String>::new());
}

#[test]
fn failed_write_keeps_the_old_file_and_leaves_no_temporary() {
    let dir = scratch("failed-write");
    let path = dir.join("take.flac");
    let good = AudioBuffer::new(48_000, vec![noise(11, 1_000)]);
    write_audio(&path, &good, OutputFormat::Flac24, false).unwrap();
    let bytes_before = std::fs::read(&path).unwrap();

    // FLAC allows at most 8 channels: the encoder refuses, even with overwrite allowed.
    let too_wide = AudioBuffer::new(48_000, vec![vec![0.0; 100]; 9]);
    let err = write_audio(&path, &too_wide, OutputFormat::Flac24, true).unwrap_err();
    assert!(matches!(err, AudioError::Encode { .. }), "{err}");
    // A ragged buffer is refused before anything is written.
    let ragged = AudioBuffer::new(48_000, vec![vec![0.0; 10], vec![0.0; 11]]);
    let err = write_audio(&path, &ragged, OutputFormat::WavF32, true).unwrap_err();
    assert!(matches!(err, AudioError::InvalidBuffer { .. }), "{err}");

    assert_eq!(std::fs::read(&path).unwrap(), bytes_before);
    assert_eq!(stray_files(&dir, &["take.flac"]), Vec::<String>::new());

    let err = write_audio(&dir.join("no-such-folder/take.wav"), &good, OutputFormat::WavF32, false).unwrap_err();
    assert!(matches!(err, AudioError::Write { .. }), "{err}");
}

// --- Bad inputs --------------------------------------------------------------------------------

#[test]
fn missing_file_is_an_open_error_naming_it() {
    let path = scratch("missing").join("nowhere.wav");
    let err = read_audio(&path).unwrap_err();
    match &err {
        AudioError::Open { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected Open, got {other:?}"),
    }
    assert!(err.to_string().contains("nowhere.wav"), "{err}");
}

#[test]
fn zero_byte_file_is_empty() {
    let path = scratch("empty").join("empty.wav");
    std::fs::write(&path, b"").unwrap();
    let err = read_audio(&path).unwrap_err();
    assert!(matches!(err, AudioError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("empty.wav"), "{err}");
}

#[test]
fn wav_with_no_frames_is_empty() {
    let dir = scratch("no-frames");
    let path = dir.join("zero.wav");
    write_audio(&path, &AudioBuffer::silence(48_000, 2, 0), OutputFormat::WavPcm16, false).unwrap();
    let err = read_audio(&path).unwrap_err();
    assert!(matches!(err, AudioError::Empty { .. }), "{err}");
}

#[test]
fn garbage_is_unsupported() {
    let path = scratch("garbage").join("notes.mp3");
    std::fs::write(&path, "these are my lyrics, not audio\n".repeat(200)).unwrap();
    let err = read_audio(&path).unwrap_err();
    assert!(matches!(err, AudioError::UnsupportedFormat { .. }), "{err}");
    assert!(err.to_string().contains("notes.mp3"), "{err}");
}

#[test]
fn truncated_files() {
    let dir = scratch("truncated");
    let whole = dir.join("whole.wav");
    let buf = AudioBuffer::new(48_000, vec![noise(12, 4_800), noise(13, 4_800)]);
    write_audio(&whole, &buf, OutputFormat::WavPcm16, false).unwrap();
    let bytes = std::fs::read(&whole).unwrap();

    // Cut inside the header: corrupt.
    let header_cut = dir.join("header-cut.wav");
    std::fs::write(&header_cut, &bytes[..30]).unwrap();
    let err = read_audio(&header_cut).unwrap_err();
    assert!(matches!(err, AudioError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("header-cut.wav"), "{err}");

    // Cut in the middle of the audio: what is there decodes, the rest is the end of the stream.
    let data_cut = dir.join("data-cut.wav");
    std::fs::write(&data_cut, &bytes[..bytes.len() / 2]).unwrap();
    let partial = read_audio(&data_cut).unwrap();
    assert!(partial.frames() > 1_000 && partial.frames() < 4_800, "{} frames", partial.frames());
    let back = read_audio(&whole).unwrap();
    assert_eq!(partial.channels[0][..], back.channels[0][..partial.frames()]);

    // A FLAC cut after a few blocks decodes the whole blocks; one cut inside its first block
    // holds no audio at all, which is corrupt rather than empty.
    let long = AudioBuffer::new(48_000, vec![sine(48_000, 440.0, 0.5, 20_000)]);
    let flac = dir.join("whole.flac");
    write_audio(&flac, &long, OutputFormat::Flac24, false).unwrap();
    let flac_bytes = std::fs::read(&flac).unwrap();
    let flac_cut = dir.join("cut.flac");
    std::fs::write(&flac_cut, &flac_bytes[..flac_bytes.len() * 2 / 3]).unwrap();
    let partial = read_audio(&flac_cut).unwrap();
    assert!(partial.frames() >= 4_096 && partial.frames() < 20_000, "{} frames", partial.frames());
    std::fs::write(&flac_cut, &flac_bytes[..200]).unwrap();
    let err = read_audio(&flac_cut).unwrap_err();
    assert!(matches!(err, AudioError::Corrupt { .. }), "{err}");

    // A truncated MP3 decodes what it holds.
    let mp3 = std::fs::read(fixture("sine440_mono_22050.mp3")).unwrap();
    let partial = decode_bytes(&mp3[..mp3.len() / 2], Some("mp3")).unwrap();
    assert!(partial.frames() > 0 && partial.frames() < 22_050, "{} frames", partial.frames());
}

// --- Committed MP3 and Ogg Vorbis fixtures (tests/data/README.md) ------------------------------

/// The fixtures are 1 s of a 440 Hz sine at amplitude 0.5, mono, 22.05 kHz.
fn check_sine_fixture(name: &str) {
    let buf = read_audio(&fixture(name)).unwrap();
    assert_eq!(buf.sample_rate, 22_050, "{name}");
    assert_eq!(buf.num_channels(), 1, "{name}");
    // Exact: symphonia trims the encoder delay and padding using the LAME header (MP3) and the
    // granule positions (Ogg), so a source clip's timing survives.
    assert_eq!(buf.frames(), 22_050, "{name}");
    assert!((buf.peak() - 0.5).abs() < 0.05, "{name}: peak {}", buf.peak());

    let x = &buf.channels[0];
    let at_440 = goertzel(x, 22_050, 440.0);
    for other in [220.0, 330.0, 400.0, 480.0, 550.0, 880.0, 1_320.0] {
        let p = goertzel(x, 22_050, other);
        assert!(at_440 > 1_000.0 * p, "{name}: power at {other} Hz is {p}, at 440 Hz {at_440}");
    }
    // Amplitude 0.5 → Goertzel power (A/2)^2 = 0.0625.
    assert!((at_440 - 0.0625).abs() < 0.01, "{name}: power at 440 Hz {at_440}");

    // The same bytes from memory decode identically.
    let bytes = std::fs::read(fixture(name)).unwrap();
    let ext = Path::new(name).extension().unwrap().to_str();
    assert_eq!(decode_bytes(&bytes, ext).unwrap(), buf);
    assert_eq!(decode_bytes(&bytes, None).unwrap(), buf, "{name}: found from content alone");

    // And to the model's format: 48 kHz stereo, 1 s.
    let model = to_model_format(&buf).unwrap();
    assert_eq!((model.sample_rate, model.num_channels()), (48_000, 2));
    assert_eq!(model.frames(), resampled_len(buf.frames(), 22_050, 48_000));
    assert!(goertzel(&model.channels[0], 48_000, 440.0) > 1_000.0 * goertzel(&model.channels[0], 48_000, 880.0));
}

#[test]
fn mp3_fixture_decodes() {
    check_sine_fixture("sine440_mono_22050.mp3");
}

#[test]
fn ogg_vorbis_fixture_decodes() {
    check_sine_fixture("sine440_mono_22050.ogg");
}


/// An ID3v2.3 tag holding one private frame of binary data (like embedded cover art), which is
/// full of bytes that look like MP3 frame syncs.
fn id3v2_tag(payload_len: usize) -> Vec<u8> {
    // ID3 sizes are "syncsafe": 7 bits per byte, so the size itself never looks like a sync.
    let syncsafe = |n: usize| [21, 14, 7, 0].map(|shift| (n >> shift) as u8 & 0x7f);
    let mut payload: Vec<u8> = b"backline-test\0".to_vec();
    let junk = noise(99, payload_len).into_iter().map(|x| (x.to_bits() >> 9) as u8);
    payload.extend(junk.enumerate().map(|(i, byte)| if i % 7 == 0 { 0xff } else { byte }));
    let mut frame = b"PRIV".to_vec();
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&payload);
    let mut tag = b"ID3\x03\x00\x00".to_vec();
    tag.extend_from_slice(&syncsafe(frame.len()));
    tag.extend_from_slice(&frame);
    tag
}

#[test]
fn mp3_with_an_id3v2_tag_decodes_the_same() {
    let mp3 = std::fs::read(fixture("sine440_mono_22050.mp3")).unwrap();
    let plain = decode_bytes(&mp3, Some("mp3")).unwrap();
    // 1.5 MB: bigger than symphonia's 1 MB probe window, so the tag must be parsed and skipped.
    let mut tagged = id3v2_tag(1_500_000);
    tagged.extend_from_slice(&mp3);
    assert_eq!(decode_bytes(&tagged, Some("mp3")).unwrap(), plain);
    assert_eq!(decode_bytes(&tagged, None).unwrap(), plain);
}
