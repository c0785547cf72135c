//! Key estimation: which of the 24 major and minor keys a take is in, to report beside the key it
//! was asked for (the model treats the key, like the tempo, as a hint).
//!
//! A chromagram: each frame's spectrum from 55 Hz to 5 kHz folded onto the 12 pitch classes and
//! scaled to its own peak, so quiet passages count as much as loud ones, summed over the take.
//! It is correlated with the Krumhansl-Kessler probe-tone profiles turned to each of the 12
//! tonics; the best correlation names the key, and its lead over the runner-up says how clear it is.

use std::fmt;

use realfft::RealFftPlanner;

use super::AudioBuffer;

/// Krumhansl and Kessler's probe-tone ratings (1982), from the tonic up by semitones.
const MAJOR_PROFILE: [f64; 12] = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88];
const MINOR_PROFILE: [f64; 12] = [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17];

/// Pitch-class names from C, as the key field writes them.
const PITCH_CLASSES: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

const LOWEST_HZ: f64 = 55.0;
const HIGHEST_HZ: f64 = 5000.0;
/// Frames this long resolve semitones down to about 100 Hz at any sample rate.
const FRAME_S: f64 = 0.17;
/// Below this share of the spectrum's magnitude in range, the audio has no pitch to read.
const PITCHED_SHARE: f64 = 0.05;
/// Frames whose loudest pitch class is under this share of the loudest frame's are left out.
const QUIET_FRAME: f32 = 1e-3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Major,
    Minor,
}

/// A key: tonic pitch class (0 = C) and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Key {
    pub tonic: u8,
    pub mode: Mode,
}

impl Key {
    /// All 24 keys, C major first.
    pub fn all() -> impl Iterator<Item = Key> {
        (0..12u8).flat_map(|tonic| [Mode::Major, Mode::Minor].map(|mode| Key { tonic, mode }))
    }

    /// Read a key as the request's `keyscale` writes it ("F# minor", "Bb major", "E♭ minor").
    pub fn parse(keyscale: &str) -> Option<Key> {
        let (name, mode) = keyscale.trim().split_once(' ')?;
        let mode = match mode.trim() {
            "major" => Mode::Major,
            "minor" => Mode::Minor,
            _ => return None,
        };
        let mut chars = name.chars();
        let natural = match chars.next()? {
            'C' => 0,
            'D' => 2,
            'E' => 4,
            'F' => 5,
            'G' => 7,
            'A' => 9,
            'B' => 11,
            _ => return None,
        };
        let shift: i32 = match chars.as_str() {
            "" => 0,
            "#" | "♯" => 1,
            "b" | "♭" => -1,
            _ => return None,
        };
        Some(Key { tonic: (natural + shift).rem_euclid(12) as u8, mode })
    }

    /// Semitones to shift audio in this key so it lands in `target`'s tonic, the nearer way
    /// round (-5 to +6). Only meaningful between keys of the same mode.
    pub fn semitones_to(&self, target: &Key) -> i32 {
        let up = (target.tonic as i32 - self.tonic as i32).rem_euclid(12);
        if up > 6 {
            up - 12
        } else {
            up
        }
    }

    fn profile_correlation(&self, chroma: &[f64; 12]) -> f64 {
        let profile = match self.mode {
            Mode::Major => &MAJOR_PROFILE,
            Mode::Minor => &MINOR_PROFILE,
        };
        let turned: Vec<f64> = (0..12).map(|pc| profile[(pc + 12 - self.tonic as usize) % 12]).collect();
        pearson(chroma, &turned)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Major => "major",
            Mode::Minor => "minor",
        };
        write!(f, "{} {mode}", PITCH_CLASSES[self.tonic as usize])
    }
}

/// What [`estimate_key`] found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyEstimate {
    pub key: Key,
    /// The best key's correlation with its profile (-1 to 1).
    pub correlation: f64,
    /// Its lead over the second-best key: near 0 means the key is unclear.
    pub margin: f64,
    /// The summed chroma from C, scaled to a peak of 1.
    pub chroma: [f64; 12],
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("no key found: the audio is silent")]
    Silent,
    #[error("no key found: nothing between {LOWEST_HZ} Hz and {HIGHEST_HZ} Hz has a pitch")]
    NoPitch,
}

/// The 12 pitch-class energies of `audio` (all channels mixed), C first, scaled to a peak of 1.
pub fn chroma(audio: &AudioBuffer) -> Result<[f64; 12], KeyError> {
    if audio.peak() < 1e-4 {
        return Err(KeyError::Silent);
    }
    let sr = audio.sample_rate as f64;
    let n = ((FRAME_S * sr) as usize).next_power_of_two().max(256);
    let hop = n / 2;
    let mono = audio.mono();

    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
    let window = super::hann(n);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    // The pitch class of each bin in range: C4 is 261.63 Hz.
    let pitch_class: Vec<Option<usize>> = (0..spectrum.len())
        .map(|bin| {
            let hz = bin as f64 * sr / n as f64;
            (LOWEST_HZ..=HIGHEST_HZ).contains(&hz).then(|| (12.0 * (hz / 261.625_565).log2()).round().rem_euclid(12.0) as usize)
        })
        .collect();

    let mut frames: Vec<[f32; 12]> = Vec::new();
    let (mut in_range, mut everywhere) = (0.0f64, 0.0f64);
    let mut start = 0;
    while start < mono.len() {
        for (i, x) in input.iter_mut().enumerate() {
            *x = mono.get(start + i).copied().unwrap_or(0.0) * window[i];
        }
        fft.process(&mut input, &mut spectrum).expect("buffers made by the same plan");
        let mut frame = [0.0f32; 12];
        for (c, pc) in spectrum.iter().zip(&pitch_class) {
            let magnitude = c.norm();
            everywhere += magnitude as f64;
            if let Some(pc) = pc {
                frame[*pc] += magnitude;
                in_range += magnitude as f64;
            }
        }
        frames.push(frame);
        start += hop;
    }
    // Window leakage from a rumble or a whistle puts a trace in range; a pitch puts most of it.
    if in_range < PITCHED_SHARE * everywhere {
        return Err(KeyError::NoPitch);
    }
    let loudest = frames.iter().flat_map(|f| f.iter().copied()).fold(0.0f32, f32::max);
    let mut sum = [0.0f64; 12];
    for frame in &frames {
        let peak = frame.iter().copied().fold(0.0f32, f32::max);
        if peak > QUIET_FRAME * loudest {
            for (s, v) in sum.iter_mut().zip(frame) {
                *s += (*v / peak) as f64;
            }
        }
    }
    let top = sum.iter().copied().fold(0.0, f64::max);
    Ok(sum.map(|v| v / top))
}

/// The key of `audio`.
pub fn estimate_key(audio: &AudioBuffer) -> Result<KeyEstimate, KeyError> {
    let chroma = chroma(audio)?;
    let mut scored: Vec<(Key, f64)> = Key::all().map(|key| (key, key.profile_correlation(&chroma))).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (key, correlation) = scored[0];
    Ok(KeyEstimate { key, correlation, margin: correlation - scored[1].1, chroma })
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb): (f64, f64) = (a.iter().map(|x| (x - ma).powi(2)).sum(), b.iter().map(|y| (y - mb).powi(2)).sum());
    if va == 0.0 || vb == 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: u32 = 48_000;

    /// Notes (MIDI numbers) sounding from `start` for `seconds`, each a tone with two overtones and
    /// a soft attack, mixed into `out`.
    fn play(out: &mut [f32], notes: &[i32], start: f64, seconds: f64) {
        for &note in notes {
            let hz = 440.0 * 2f64.powf((note - 69) as f64 / 12.0);
            let first = (start * SR as f64) as usize;
            for i in 0..(seconds * SR as f64) as usize {
                let Some(slot) = out.get_mut(first + i) else { break };
                let t = i as f64 / SR as f64;
                let envelope = (t / 0.01).min(1.0) * (-t / 1.5).exp();
                let tone: f64 = [(1.0, 1.0), (2.0, 0.4), (3.0, 0.15)]
                    .iter()
                    .map(|(h, a)| a * (std::f64::consts::TAU * hz * h * t).sin())
                    .sum();
                *slot += (0.15 * envelope * tone) as f32;
            }
        }
    }

    fn stereo(mono: Vec<f32>) -> AudioBuffer {
        AudioBuffer::new(SR, vec![mono.clone(), mono])
    }

    /// I-IV-V-I in major, i-iv-V-i in minor (the V with its leading tone), a second each, as
    /// close-position triads over the root an octave down, tonic in octave 4.
    fn cadence(key: Key) -> AudioBuffer {
        let tonic = 60 + key.tonic as i32;
        let third = if key.mode == Mode::Major { 4 } else { 3 };
        let chords = [(0, third), (5, third), (7, 4), (0, third)];
        let mut out = vec![0.0f32; 4 * SR as usize + SR as usize / 2];
        for (i, (root, third)) in chords.iter().enumerate() {
            let r = tonic + root;
            play(&mut out, &[r - 12, r, r + third, r + 7], i as f64, 1.0);
        }
        stereo(out)
    }

    /// The major scale, or the harmonic minor, up and down from the tonic, then the tonic held.
    fn scale(key: Key) -> AudioBuffer {
        let steps: [i32; 8] = match key.mode {
            Mode::Major => [0, 2, 4, 5, 7, 9, 11, 12],
            Mode::Minor => [0, 2, 3, 5, 7, 8, 11, 12],
        };
        let tonic = 60 + key.tonic as i32;
        let walk: Vec<i32> = steps.iter().chain(steps.iter().rev().skip(1)).map(|s| tonic + s).collect();
        let mut out = vec![0.0f32; (walk.len() as f64 * 0.3 * SR as f64) as usize + 2 * SR as usize];
        for (i, note) in walk.iter().enumerate() {
            play(&mut out, &[*note], i as f64 * 0.3, 0.3);
        }
        play(&mut out, &[tonic, tonic - 12], walk.len() as f64 * 0.3, 1.5);
        stereo(out)
    }

    #[test]
    fn cadences_in_all_24_keys() {
        let mut least_margin = f64::MAX;
        for key in Key::all() {
            let found = estimate_key(&cadence(key)).unwrap();
            assert_eq!(found.key, key, "{key}: found {} (chroma {:?})", found.key, found.chroma);
            least_margin = least_margin.min(found.margin);
        }
        eprintln!("cadences: all 24 keys, least margin {least_margin:.3}");
    }

    #[test]
    fn scales_in_all_24_keys() {
        let mut least_margin = f64::MAX;
        for key in Key::all() {
            let found = estimate_key(&scale(key)).unwrap();
            assert_eq!(found.key, key, "{key}: found {} (chroma {:?})", found.key, found.chroma);
            least_margin = least_margin.min(found.margin);
        }
        eprintln!("scales: all 24 keys, least margin {least_margin:.3}");
    }

    #[test]
    fn the_key_does_not_depend_on_the_sample_rate() {
        let key = Key::parse("F# minor").unwrap();
        for rate in [44_100, 96_000] {
            let audio = crate::audio::resample(&cadence(key), rate).unwrap();
            assert_eq!(estimate_key(&audio).unwrap().key, key, "{rate} Hz");
        }
    }

    #[test]
    fn key_names_read_and_write_as_the_key_field_does() {
        for key in Key::all() {
            assert_eq!(Key::parse(&key.to_string()), Some(key));
            assert!(crate::task::is_valid_keyscale(&key.to_string()), "{key}");
        }
        assert_eq!(Key::parse("Bb major"), Key::parse("A# major"));
        assert_eq!(Key::parse("E♭ minor"), Some(Key { tonic: 3, mode: Mode::Minor }));
        assert_eq!(Key::parse("Cb major"), Some(Key { tonic: 11, mode: Mode::Major }));
        for bad in ["H major", "C dorian", "C", "", "C## major"] {
            assert_eq!(Key::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_nearest_way_round() {
        let key = |s: &str| Key::parse(s).unwrap();
        assert_eq!(key("C major").semitones_to(&key("D major")), 2);
        assert_eq!(key("C major").semitones_to(&key("A major")), -3);
        assert_eq!(key("B minor").semitones_to(&key("C minor")), 1);
        assert_eq!(key("C major").semitones_to(&key("F# major")), 6);
        assert_eq!(key("G major").semitones_to(&key("G major")), 0);
    }

    #[test]
    fn silence_and_unpitched_audio_say_no_key() {
        assert_eq!(estimate_key(&AudioBuffer::silence(SR, 2, SR as usize)), Err(KeyError::Silent));
        // A 30 Hz rumble is below the range.
        let rumble: Vec<f32> = (0..SR as usize).map(|i| 0.5 * (std::f32::consts::TAU * 30.0 * i as f32 / SR as f32).sin()).collect();
        assert_eq!(estimate_key(&stereo(rumble)), Err(KeyError::NoPitch));
    }
}
