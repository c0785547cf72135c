//! The guide click: a short tone on every beat of the host's meter, accented on each downbeat.
//!
//! It lets a producer hear where Backline thinks the bars are (the grid that captures and takes
//! snap to), and it is how the host tests observe transport handling from outside: onsets land
//! on the exact sample of each beat, accents on bar starts.
//!
//! Each click starts at its full amplitude (a cosine burst), so its first sample marks the beat.

use std::f32::consts::TAU;

use backline_engine::audio::grid::Grid;

use crate::transport::TransportSnapshot;

/// Peak of the downbeat click (-6 dBFS) and of the other beats (-12 dBFS).
pub const ACCENT_AMPLITUDE: f32 = 0.5;
pub const BEAT_AMPLITUDE: f32 = 0.25;
const ACCENT_HZ: f32 = 1500.0;
const BEAT_HZ: f32 = 1000.0;
/// Exponential decay time constant and hard length of a click.
const DECAY_S: f32 = 0.004;
const LENGTH_S: f32 = 0.04;
/// A beat line this close after a sample (in samples) clicks on that sample: host positions are
/// rounded (CLAP's fixed-point beat time is exact to ~1e-5 samples at 48 kHz), and a line that
/// falls on a sample must not slip to the next one.
pub const SNAP_SAMPLES: f64 = 1e-3;

#[derive(Debug, Clone, Copy)]
struct Voice {
    age_samples: u32,
    accent: bool,
}

#[derive(Debug, Clone, Copy)]
struct Onset {
    sample: usize,
    accent: bool,
    line_quarters: f64,
}

/// Click generator. Lives on the audio thread; never allocates.
pub struct GuideClick {
    sample_rate: f32,
    length_samples: u32,
    voice: Option<Voice>,
    /// The beat line of the last click, so a line is never clicked twice in a row even when a
    /// host's block positions jitter by a rounding error.
    last_line_quarters: Option<f64>,
    /// This block's timing: start position and samples per quarter note; `None` = no clicks.
    block: Option<BlockTiming>,
    next_onset: Option<Onset>,
}

#[derive(Debug, Clone, Copy)]
struct BlockTiming {
    grid: Grid,
    start_quarters: f64,
    bar_start_quarters: f64,
    samples_per_quarter: f64,
    len: usize,
}

impl GuideClick {
    pub fn new(sample_rate: f32) -> Self {
        Self {
            sample_rate,
            length_samples: (LENGTH_S * sample_rate).ceil() as u32,
            voice: None,
            last_line_quarters: None,
            block: None,
            next_onset: None,
        }
    }

    /// Forget any ringing click and the last beat line (transport reset, re-activation).
    pub fn reset(&mut self) {
        self.voice = None;
        self.last_line_quarters = None;
        self.block = None;
        self.next_onset = None;
    }

    /// Plan the clicks of a block of `len` samples. Clicks sound only while the host plays and
    /// reports a position; a ringing click always finishes.
    pub fn start_block(&mut self, snapshot: &TransportSnapshot, enabled: bool, len: usize) {
        self.block = match (enabled && snapshot.playing, snapshot.pos_quarters) {
            (true, Some(start_quarters)) => {
                let grid = snapshot.grid();
                Some(BlockTiming {
                    grid,
                    start_quarters,
                    bar_start_quarters: snapshot.bar_start_quarters.unwrap_or(0.0),
                    samples_per_quarter: grid.samples_per_quarter(),
                    len,
                })
            }
            _ => None,
        };
        self.next_onset = self.find_onset(None);
    }

    /// The first beat line after `after` (or at/after the block start) that falls in the block.
    fn find_onset(&self, after: Option<f64>) -> Option<Onset> {
        let block = self.block.as_ref()?;
        let grid = &block.grid;
        // A line between the previous block's last sample and this block's first one belongs to
        // sample 0 here (the previous block rounded it up past its end), so search from just
        // under one sample before the block start.
        let one_sample = (1.0 - SNAP_SAMPLES) / block.samples_per_quarter;
        let search_from = after.map_or(block.start_quarters - one_sample, |q| q + 1e-7);
        let mut line = grid.next_beat(search_from, block.bar_start_quarters);
        if after.is_none() && self.last_line_quarters.is_some_and(|q| (q - line.quarters).abs() < 1e-6) {
            line = grid.next_beat(line.quarters + 1e-7, block.bar_start_quarters);
        }
        // First sample at or after the line.
        let offset = (line.quarters - block.start_quarters) * block.samples_per_quarter;
        let sample = (offset - SNAP_SAMPLES).ceil().max(0.0) as usize;
        (sample < block.len).then_some(Onset {
            sample,
            accent: line.beat_in_bar == 0,
            line_quarters: line.quarters,
        })
    }

    /// The click's value at sample `index` of the current block (call for 0, 1, 2, ... in order).
    pub fn next_sample(&mut self, index: usize) -> f32 {
        if let Some(onset) = self.next_onset {
            if onset.sample == index {
                self.voice = Some(Voice { age_samples: 0, accent: onset.accent });
                self.last_line_quarters = Some(onset.line_quarters);
                self.next_onset = self.find_onset(Some(onset.line_quarters));
            }
        }
        let Some(voice) = self.voice.as_mut() else { return 0.0 };
        let t = voice.age_samples as f32 / self.sample_rate;
        let (amplitude, hz) =
            if voice.accent { (ACCENT_AMPLITUDE, ACCENT_HZ) } else { (BEAT_AMPLITUDE, BEAT_HZ) };
        let value = amplitude * (-t / DECAY_S).exp() * (TAU * hz * t).cos();
        voice.age_samples += 1;
        if voice.age_samples >= self.length_samples {
            self.voice = None;
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backline_engine::audio::grid::TimeSignature;

    /// Run the click over `blocks` blocks of `block_len` as a host would (position at each block
    /// start) and return the onset samples with their accent flag.
    fn onsets(bpm: f64, meter: (u32, u32), block_len: usize, total: usize) -> Vec<(usize, bool)> {
        let sr = 48_000.0;
        let mut click = GuideClick::new(sr);
        let mut out = Vec::with_capacity(total);
        let mut pos = 0;
        while pos < total {
            let len = block_len.min(total - pos);
            let q = pos as f64 / (sr as f64 * 60.0 / bpm);
            let meter = TimeSignature::new(meter.0, meter.1).unwrap();
            let bar_len = meter.quarters_per_bar();
            let snapshot = TransportSnapshot {
                playing: true,
                bpm,
                tempo_from_host: true,
                meter,
                meter_from_host: true,
                sample_rate: sr,
                pos_quarters: Some(q),
                bar_start_quarters: Some((q / bar_len + 1e-9).floor() * bar_len),
                ..Default::default()
            };
            click.start_block(&snapshot, true, len);
            for i in 0..len {
                out.push(click.next_sample(i));
            }
            pos += len;
        }
        out.iter()
            .enumerate()
            .filter(|(_, v)| **v == ACCENT_AMPLITUDE || **v == BEAT_AMPLITUDE)
            .map(|(i, v)| (i, *v == ACCENT_AMPLITUDE))
            .collect()
    }

    #[test]
    fn clicks_land_on_each_beat_with_accented_downbeats() {
        // 120 BPM 4/4: a beat every 24000 samples, accent every 4th.
        let got = onsets(120.0, (4, 4), 480, 8 * 24_000);
        let want: Vec<_> = (0..8).map(|k| (k * 24_000, k % 4 == 0)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn eighth_note_meters_click_on_eighths() {
        // 90 BPM 6/8: an eighth every 16000 samples, accent every 6th.
        let got = onsets(90.0, (6, 8), 256, 13 * 16_000);
        let want: Vec<_> = (0..13).map(|k| (k * 16_000, k % 6 == 0)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn block_size_does_not_move_or_double_a_click() {
        // 140 BPM 7/8: eighths every 10285.71 samples, never on a block edge pattern.
        let reference = onsets(140.0, (7, 8), 8192, 200_000);
        for block in [1, 7, 64, 441, 1000, 4096] {
            assert_eq!(onsets(140.0, (7, 8), block, 200_000), reference, "block {block}");
        }
        let spb = 48_000.0 * 60.0 / 140.0 / 2.0;
        for (k, (sample, accent)) in reference.iter().enumerate() {
            assert_eq!(*sample, (k as f64 * spb - SNAP_SAMPLES).ceil() as usize);
            assert_eq!(*accent, k % 7 == 0);
        }
    }

    #[test]
    fn silent_when_stopped_or_disabled() {
        let mut click = GuideClick::new(48_000.0);
        let snapshot = TransportSnapshot { pos_quarters: Some(0.0), ..Default::default() };
        click.start_block(&snapshot, true, 1000); // not playing
        assert!((0..1000).all(|i| click.next_sample(i) == 0.0));
        let playing = TransportSnapshot { playing: true, ..snapshot };
        click.start_block(&playing, false, 1000); // disabled
        assert!((0..1000).all(|i| click.next_sample(i) == 0.0));
        click.start_block(&playing, true, 1000);
        assert_eq!(click.next_sample(0), ACCENT_AMPLITUDE);
    }
}
