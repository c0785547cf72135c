//! Time-stretching and pitch-shifting, offline, with Signalsmith Stretch (through `ssstretch`).
//!
//! [`warp`] moves each point of the input to where a [`TimeMap`] says, keeping the pitch (or
//! shifting it by a number of semitones): the conform uses it to put found beats on the host's
//! grid, the key correction to transpose. The stretcher is streaming; run offline, its latency is
//! taken out as its README describes: the first `inputLatency` samples go in through `seek`, the
//! input runs `inputLatency` ahead of the processing point (silence after its end), and the first
//! `outputLatency` samples out, pre-roll, are dropped, with `flush` giving the last ones.

use ssstretch::Stretch;

use super::AudioBuffer;

/// Input frames handed to the stretcher per call: the map's slope is applied per chunk.
const CHUNK: usize = 512;

/// A monotone map from input frames to output frames, through the given points and straight
/// between them; beyond the last point (or before the first) it goes on at the nearest segment's
/// slope.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeMap {
    points: Vec<(f64, f64)>,
}

impl TimeMap {
    /// `points` as (input frame, output frame): at least two, both coordinates increasing.
    /// Points that would make the map go backwards are dropped.
    pub fn new(points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let mut kept: Vec<(f64, f64)> = Vec::new();
        for (x, y) in points {
            if kept.last().is_none_or(|&(px, py)| x > px && y > py) {
                kept.push((x, y));
            }
        }
        if kept.len() == 1 {
            let (x, y) = kept[0];
            kept.push((x + 1.0, y + 1.0));
        }
        assert!(kept.len() >= 2, "a time map needs points");
        Self { points: kept }
    }

    /// The same speed throughout: input frame `x` goes to `x * ratio`.
    pub fn constant(ratio: f64) -> Self {
        Self::new([(0.0, 0.0), (1.0, ratio)])
    }

    /// The output frame of input frame `x`.
    pub fn at(&self, x: f64) -> f64 {
        let p = &self.points;
        let i = p.partition_point(|&(px, _)| px <= x).clamp(1, p.len() - 1);
        let ((x0, y0), (x1, y1)) = (p[i - 1], p[i]);
        y0 + (x - x0) * (y1 - y0) / (x1 - x0)
    }
}

/// `audio` with each input frame `x` moved to output frame `map.at(x)` and its pitch moved by
/// `semitones` (0: unchanged). The result is `out_frames` long: cut, or padded with silence.
pub fn warp(audio: &AudioBuffer, map: &TimeMap, semitones: f32, out_frames: usize) -> AudioBuffer {
    let channel_count = audio.channels.len();
    let input_frames = audio.frames();
    let mut stretch = Stretch::with_seed(0);
    stretch.preset_default(channel_count as i32, audio.sample_rate as f32);
    if semitones != 0.0 {
        stretch.set_transpose_semitones(semitones, None);
    }
    let input_latency = stretch.input_latency() as usize;
    let output_latency = stretch.output_latency() as usize;
    // The input from `start`, `len` frames, silence past the end.
    let input = |start: usize, len: usize| -> Vec<Vec<f32>> {
        audio
            .channels
            .iter()
            .map(|c| (start..start + len).map(|i| c.get(i).copied().unwrap_or(0.0)).collect())
            .collect()
    };
    let speed_at = |x: f64| (map.at(x + 1.0) - map.at(x)).max(1e-3);
    stretch.seek_vec(&input(0, input_latency), input_latency as i32, 1.0 / speed_at(0.0));

    let total_out = map.at(input_frames as f64).round().max(0.0) as usize;
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(total_out + output_latency); channel_count];
    let mut block: Vec<Vec<f32>> = vec![Vec::new(); channel_count];
    let mut done_out = 0usize;
    let mut at = 0usize;
    while at < input_frames {
        let len = CHUNK.min(input_frames - at);
        let out_end = map.at((at + len) as f64).round().max(done_out as f64) as usize;
        stretch.process_vec(&input(at + input_latency, len), len as i32, &mut block, (out_end - done_out) as i32);
        for (o, b) in out.iter_mut().zip(&block) {
            o.extend_from_slice(b);
        }
        done_out = out_end;
        at += len;
    }
    stretch.flush_vec(&mut block, output_latency as i32);
    for (o, b) in out.iter_mut().zip(&block) {
        o.extend_from_slice(b);
    }
    let channels = out
        .into_iter()
        .map(|mut c| {
            c.drain(..output_latency.min(c.len()));
            c.resize(out_frames, 0.0);
            c
        })
        .collect();
    AudioBuffer::new(audio.sample_rate, channels)
}

/// `audio` moved by `semitones`, same length and timing.
pub fn pitch_shift(audio: &AudioBuffer, semitones: f32) -> AudioBuffer {
    warp(audio, &TimeMap::constant(1.0), semitones, audio.frames())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: u32 = 48_000;

    /// Short decaying 2 kHz bursts at the given times.
    fn clicks(times_s: &[f64], seconds: f64) -> AudioBuffer {
        let mut out = vec![0.0f32; (seconds * SR as f64) as usize];
        for &t in times_s {
            let start = (t * SR as f64) as usize;
            for i in 0..480 {
                let x = i as f64 / SR as f64;
                out[start + i] += ((-x / 0.002).exp() * (std::f64::consts::TAU * 2000.0 * x).sin()) as f32;
            }
        }
        AudioBuffer::new(SR, vec![out.clone(), out])
    }

    /// Onsets: where the energy in 1 ms windows jumps past a tenth of the peak, at least 100 ms
    /// after the last one (the stretcher smears a click's start a little).
    fn onsets(audio: &AudioBuffer) -> Vec<f64> {
        let c = &audio.channels[0];
        let win = (SR / 1000) as usize;
        let energy: Vec<f32> = c.chunks(win).map(|w| w.iter().map(|v| v * v).sum()).collect();
        let peak = energy.iter().copied().fold(0.0, f32::max);
        let mut found: Vec<f64> = Vec::new();
        for (i, &e) in energy.iter().enumerate() {
            let t = i as f64 / 1000.0;
            if e > 0.1 * peak && found.last().is_none_or(|&last| t - last > 0.1) {
                found.push(t);
            }
        }
        found
    }

    #[test]
    fn time_maps_interpolate_and_extend() {
        let map = TimeMap::new([(0.0, 0.0), (100.0, 110.0), (200.0, 200.0)]);
        assert_eq!([map.at(50.0), map.at(100.0), map.at(150.0), map.at(300.0), map.at(-10.0)], [55.0, 110.0, 155.0, 290.0, -11.0]);
        // Backwards points are dropped.
        assert_eq!(TimeMap::new([(0.0, 0.0), (10.0, 5.0), (5.0, 20.0)]).at(20.0), 10.0);
    }

    #[test]
    fn a_stretch_moves_each_onset_where_the_map_says_and_keeps_the_length() {
        let times = [0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25];
        let audio = clicks(&times, 4.0);
        // 3% slower: every onset 3% later.
        let map = TimeMap::constant(1.03);
        let out = warp(&audio, &map, 0.0, (4.0 * 1.03 * SR as f64) as usize);
        assert_eq!(out.frames(), (4.0 * 1.03 * SR as f64) as usize);
        let found = onsets(&out);
        assert_eq!(found.len(), times.len(), "{found:?}");
        for (&t, &f) in times.iter().zip(&found) {
            assert!((f - t * 1.03).abs() < 0.002, "onset at {t} s should be at {} s, is at {f} s", t * 1.03);
        }
        // A map that pulls the third onset earlier by 20 ms and leaves the rest of the grid.
        let sr = SR as f64;
        let map = TimeMap::new([(0.0, 0.0), (1.0 * sr, 1.0 * sr), (1.25 * sr, 1.23 * sr), (1.5 * sr, 1.5 * sr), (4.0 * sr, 4.0 * sr)]);
        let found = onsets(&warp(&audio, &map, 0.0, audio.frames()));
        let want = [0.25, 0.75, 1.23, 1.75, 2.25, 2.75, 3.25];
        for (&w, &f) in want.iter().zip(&found) {
            assert!((f - w).abs() < 0.002, "want {w} s, found {f} s ({found:?})");
        }
    }

    #[test]
    fn a_pitch_shift_moves_a_tone_and_keeps_its_timing() {
        let frames = 2 * SR as usize;
        let tone: Vec<f32> = (0..frames).map(|i| (std::f64::consts::TAU * 440.0 * i as f64 / SR as f64).sin() as f32 * 0.5).collect();
        let out = pitch_shift(&AudioBuffer::new(SR, vec![tone]), 3.0);
        assert_eq!(out.frames(), frames);
        // Count zero crossings over the steady middle second.
        let mid = &out.channels[0][SR as usize / 2..3 * SR as usize / 2];
        let crossings = mid.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count() as f64 / 2.0;
        let want = 440.0 * 2f64.powf(3.0 / 12.0);
        assert!((crossings - want).abs() < 3.0, "{crossings} Hz, want {want:.1} Hz");
    }
}
