//! Sample-rate and channel conversion: any decoded audio to the model's 48 kHz stereo, and back
//! to a host's rate.
//!
//! Resampling uses rubato's FFT resampler (`rubato::Fft`), a synchronous band-limited resampler
//! for a fixed ratio, which is what converting whole clips needs. Its start-up delay is trimmed
//! (rubato's `process_all_into_buffer` does this), so output sample `n` sits at time
//! `n / rate` like input sample `n` sits at `n / input_rate`, and the length is exactly
//! `round(frames * rate / input_rate)`.
//!
//! The channel rules follow upstream ACE-Step's loader (`io_audio.py`): mono is duplicated to
//! both channels, and anything with more than two channels keeps the first two (`audio[:2]`).

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use super::{AudioBuffer, AudioError};

/// The VAE's sample rate and channel count (`crate::timing`).
pub const MODEL_SAMPLE_RATE: u32 = crate::timing::SAMPLE_RATE;
pub const MODEL_CHANNELS: usize = crate::timing::CHANNELS;

/// Smallest FFT block on the input side. About 2k frames gives a long anti-aliasing filter with
/// a cutoff close to Nyquist; the delay this adds does not matter offline (it is trimmed).
const MIN_FFT_BLOCK_FRAMES: usize = 2048;

/// Converts audio to what the model takes: 48 kHz, exactly two channels.
/// Already 48 kHz stereo audio comes back as a plain copy.
pub fn to_model_format(buf: &AudioBuffer) -> Result<AudioBuffer, AudioError> {
    let stereo = to_stereo(buf)?;
    if stereo.sample_rate == MODEL_SAMPLE_RATE {
        return Ok(stereo);
    }
    resample(&stereo, MODEL_SAMPLE_RATE)
}

/// Makes exactly two channels: mono is duplicated, and beyond two only the first two are kept
/// (what upstream ACE-Step does, rather than a downmix).
pub fn to_stereo(buf: &AudioBuffer) -> Result<AudioBuffer, AudioError> {
    buf.validate()?;
    let channels = match buf.channels.as_slice() {
        [mono] => vec![mono.clone(), mono.clone()],
        [left, right, ..] => vec![left.clone(), right.clone()],
        [] => unreachable!("validate() rejects a buffer without channels"),
    };
    Ok(AudioBuffer::new(buf.sample_rate, channels))
}

/// Number of frames `frames` at `from_hz` becomes at `to_hz`: `round(frames * to_hz / from_hz)`,
/// with halves rounded up, in exact integer arithmetic.
pub fn resampled_len(frames: usize, from_hz: u32, to_hz: u32) -> usize {
    let (n, from, to) = (frames as u128, from_hz as u128, to_hz as u128);
    ((2 * n * to + from) / (2 * from)) as usize
}

/// Resamples every channel to `rate_hz`, returning exactly
/// [`resampled_len`]`(buf.frames(), buf.sample_rate, rate_hz)` frames, time-aligned with the
/// input. The same rate gives a copy.
pub fn resample(buf: &AudioBuffer, rate_hz: u32) -> Result<AudioBuffer, AudioError> {
    buf.validate()?;
    let from_hz = buf.sample_rate;
    let fail = |reason: String| AudioError::Resample { from_hz, to_hz: rate_hz, reason };
    if rate_hz == 0 {
        return Err(fail("the target rate must be above 0 Hz".into()));
    }
    if from_hz == rate_hz {
        return Ok(buf.clone());
    }
    let (num_channels, frames_in) = (buf.num_channels(), buf.frames());
    let frames_out = resampled_len(frames_in, from_hz, rate_hz);
    if frames_in == 0 {
        return Ok(AudioBuffer::silence(rate_hz, num_channels, 0));
    }

    let mut resampler = Fft::<f32>::new_custom(
        from_hz as usize,
        rate_hz as usize,
        fft_block_frames(from_hz, rate_hz),
        1,
        num_channels,
        WindowFunction::BlackmanHarris2,
        FixedSync::Input,
    )
    .map_err(|e| fail(e.to_string()))?;

    let input = SequentialSliceOfVecs::new(&buf.channels, num_channels, frames_in)
        .map_err(|e| fail(e.to_string()))?;
    // rubato needs room for its last whole chunk and the trimmed delay; cut to length after.
    let capacity = resampler.process_all_needed_output_len(frames_in);
    let mut channels = vec![vec![0.0f32; capacity]; num_channels];
    let mut output = SequentialSliceOfVecs::new_mut(&mut channels, num_channels, capacity)
        .map_err(|e| fail(e.to_string()))?;
    let (_, produced) = resampler
        .process_all_into_buffer(&input, &mut output, frames_in, None)
        .map_err(|e| fail(e.to_string()))?;
    // rubato gives ceil(frames * ratio) frames; round() is never more than that.
    debug_assert!(produced >= frames_out, "rubato produced {produced} < {frames_out} frames");
    for channel in &mut channels {
        channel.truncate(frames_out);
    }
    Ok(AudioBuffer::new(rate_hz, channels))
}

/// The FFT block (input frames) for one rate pair: a multiple of the smallest block
/// `from / gcd(from, to)` rubato allows, and an even multiple so that both the input and the
/// output block have even lengths. rubato's filter is centred on sample `block / 2` and it trims
/// `out_block / 2` frames of delay; with odd lengths that would be off by half a frame.
fn fft_block_frames(from_hz: u32, to_hz: u32) -> usize {
    let min_block = (from_hz / gcd(from_hz, to_hz)) as usize;
    let blocks = MIN_FFT_BLOCK_FRAMES.div_ceil(min_block).next_multiple_of(2);
    blocks * min_block
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f64, frames: usize) -> Vec<f32> {
        (0..frames)
            .map(|n| (2.0 * std::f64::consts::PI * freq * n as f64 / rate as f64).sin() as f32 * 0.5)
            .collect()
    }

    #[test]
    fn fft_blocks_are_even_on_both_sides() {
        for (from, to) in [(44_100, 48_000), (48_000, 44_100), (22_050, 48_000), (8_000, 48_000), (44_101, 48_000)] {
            let block_in = fft_block_frames(from, to);
            let block_out = block_in * to as usize / from as usize;
            assert!((block_in * to as usize).is_multiple_of(from as usize), "{from}->{to}: whole output block");
            assert!(block_in >= MIN_FFT_BLOCK_FRAMES, "{from}->{to}");
            assert!(block_in.is_multiple_of(2) && block_out.is_multiple_of(2), "{from}->{to}: odd block");
        }
        // 13 blocks of 160 in would be 13 * 147 = 1911 out, odd; so 14.
        assert_eq!(fft_block_frames(48_000, 44_100), 2_240);
    }

    #[test]
    fn resampled_len_rounds() {
        assert_eq!(resampled_len(44_100, 44_100, 48_000), 48_000);
        assert_eq!(resampled_len(1, 44_100, 48_000), 1); // 1.088
        assert_eq!(resampled_len(3, 48_000, 44_100), 3); // 2.756
        assert_eq!(resampled_len(147, 44_100, 48_000), 160);
        assert_eq!(resampled_len(1, 96_000, 48_000), 1); // 0.5 rounds up
        assert_eq!(resampled_len(0, 22_050, 48_000), 0);
    }

    #[test]
    fn mono_is_duplicated_and_extra_channels_dropped() {
        let mono = AudioBuffer::new(48_000, vec![vec![0.1, 0.2]]);
        assert_eq!(to_stereo(&mono).unwrap().channels, vec![vec![0.1, 0.2], vec![0.1, 0.2]]);
        let quad = AudioBuffer::new(48_000, vec![vec![1.0], vec![2.0], vec![3.0], vec![4.0]]);
        assert_eq!(to_stereo(&quad).unwrap().channels, vec![vec![1.0], vec![2.0]]);
    }

    #[test]
    fn model_format_is_a_copy_when_already_there() {
        let buf = AudioBuffer::new(48_000, vec![sine(48_000, 440.0, 100), sine(48_000, 660.0, 100)]);
        assert_eq!(to_model_format(&buf).unwrap(), buf);
    }

    #[test]
    fn lengths_are_exact_for_short_and_odd_inputs() {
        for (from, to) in [(44_100, 48_000), (22_050, 48_000), (48_000, 44_100), (8_000, 48_000), (44_101, 48_000)] {
            for frames in [0usize, 1, 7, 1000, 4099] {
                let buf = AudioBuffer::new(from, vec![vec![0.25; frames]]);
                let out = resample(&buf, to).unwrap();
                assert_eq!(out.sample_rate, to);
                assert_eq!(out.frames(), resampled_len(frames, from, to), "{from}->{to}, {frames} frames");
            }
        }
    }

    #[test]
    fn bad_rates_are_errors() {
        let buf = AudioBuffer::new(44_100, vec![vec![0.0; 10]]);
        assert!(matches!(resample(&buf, 0), Err(AudioError::Resample { .. })));
        let zero_rate = AudioBuffer::new(0, vec![vec![0.0; 10]]);
        assert!(matches!(resample(&zero_rate, 48_000), Err(AudioError::InvalidBuffer { .. })));
    }
}
