//! What a take turned out to be beside what was asked: the measured tempo, beat phase and drift
//! against the request's tempo and meter, and the measured key against the request's key. Each
//! take's recipe carries it, so the CLI, the plugin and a server all report the same figures.

use super::beats::{track_beats, BeatTrack};
use super::grid::TimeSignature;
use super::key::{estimate_key, Key};
use super::AudioBuffer;

/// The tempo side of [`TakeAnalysis`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TempoReport {
    /// Quarter notes per minute, as asked.
    pub requested_bpm: f64,
    /// The meter the beats were looked for in ("4/4", "6/8").
    pub meter: String,
    /// What the beat tracker measured, when it found a beat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<BeatTrack>,
    /// Why it found none ("no beat found: ...").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The key side of [`TakeAnalysis`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyReport {
    /// The request's key as written, if it named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    /// The estimated key ("F# minor").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<String>,
    /// The estimate's lead over the next key (near 0: unclear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// Whether the estimate is the requested key (same tonic pitch class and mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A take measured against its request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TakeAnalysis {
    /// Present when the request named a tempo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tempo: Option<TempoReport>,
    pub key: KeyReport,
}

/// The meter a request's `timesignature` stands for: "2", "3" and "4" are x/4, "6" is 6/8 (the
/// model's metas write compound time by its numerator), a full "n/d" is itself; unset is 4/4.
pub fn meter_of(timesignature: Option<&str>) -> TimeSignature {
    let parsed = match timesignature.map(str::trim) {
        Some("6") => TimeSignature::new(6, 8).ok(),
        Some(text) => match text.split_once('/') {
            Some((n, d)) => n.parse().ok().zip(d.parse().ok()).and_then(|(n, d)| TimeSignature::new(n, d).ok()),
            None => text.parse().ok().and_then(|n| TimeSignature::new(n, 4).ok()),
        },
        None => None,
    };
    parsed.unwrap_or(TimeSignature::FOUR_FOUR)
}

/// Measure `audio` against the request's tempo (quarter notes per minute), time signature and key.
pub fn analyze_take(audio: &AudioBuffer, bpm: Option<f64>, timesignature: Option<&str>, keyscale: Option<&str>) -> TakeAnalysis {
    let tempo = bpm.map(|requested_bpm| {
        let meter = meter_of(timesignature);
        let (measured, problem) = match track_beats(audio, requested_bpm, meter) {
            Ok(track) => (Some(track), None),
            Err(e) => (None, Some(e.to_string())),
        };
        TempoReport { requested_bpm, meter: meter.to_string(), measured, problem }
    });
    let requested = keyscale.map(str::to_string);
    let key = match estimate_key(audio) {
        Ok(found) => KeyReport {
            matches: keyscale.and_then(Key::parse).map(|asked| asked == found.key),
            requested,
            measured: Some(found.key.to_string()),
            margin: Some(found.margin),
            problem: None,
        },
        Err(e) => KeyReport { requested, measured: None, margin: None, matches: None, problem: Some(e.to_string()) },
    };
    TakeAnalysis { tempo, key }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::beats::TempoRelation;

    #[test]
    fn meters_as_requests_write_them() {
        let m = |s: Option<&str>| meter_of(s).to_string();
        assert_eq!([m(Some("4")), m(Some("3")), m(Some("2")), m(Some("6"))], ["4/4", "3/4", "2/4", "6/8"]);
        assert_eq!([m(Some("6/8")), m(Some("7/8")), m(Some("3/4")), m(None), m(Some("0/0"))], ["6/8", "7/8", "3/4", "4/4", "4/4"]);
    }

    /// Plucked A-minor arpeggio notes on every beat at 100 BPM for 12 s.
    fn arpeggio() -> AudioBuffer {
        let sr = 48_000usize;
        let mut out = vec![0.0f32; 12 * sr];
        let notes = [57, 60, 64, 69, 64, 60, 57, 52];
        for (k, start) in (0..).map(|k| (k, 0.1 + k as f64 * 0.6)).take_while(|&(_, t)| t < 11.5) {
            let hz = 440.0 * 2f64.powf((notes[k % notes.len()] - 69) as f64 / 12.0);
            let first = (start * sr as f64) as usize;
            for i in 0..(0.6 * sr as f64) as usize {
                let t = i as f64 / sr as f64;
                let v = (t / 0.003).min(1.0) * (-t / 0.2).exp() * (std::f64::consts::TAU * hz * t).sin();
                out[first + i] += 0.5 * v as f32;
            }
        }
        AudioBuffer::new(sr as u32, vec![out.clone(), out])
    }

    #[test]
    fn a_take_is_measured_against_its_request() {
        let report = analyze_take(&arpeggio(), Some(100.0), Some("4"), Some("A minor"));
        let tempo = report.tempo.unwrap();
        let measured = tempo.measured.unwrap();
        assert_eq!(measured.relation, TempoRelation::OnTempo);
        assert!((measured.bpm - 100.0).abs() < 0.5, "{}", measured.bpm);
        assert_eq!((report.key.measured.as_deref(), report.key.matches), (Some("A minor"), Some(true)));

        let json = serde_json::to_value(analyze_take(&arpeggio(), None, None, Some("C major"))).unwrap();
        assert!(json.get("tempo").is_none(), "no tempo asked, none reported: {json}");
        assert_eq!(json["key"]["matches"], false);
    }

    #[test]
    fn silence_is_reported_not_an_error() {
        let report = analyze_take(&AudioBuffer::silence(48_000, 2, 48_000 * 10), Some(120.0), None, None);
        assert!(report.tempo.unwrap().problem.unwrap().starts_with("no beat found"));
        assert!(report.key.problem.unwrap().starts_with("no key found"));
    }
}
