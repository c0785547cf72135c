//! [`GenerationRequest::validate`]: every value against ACE-Step's limits and names, one error per
//! problem, naming the field, the value and what is allowed.

use super::limits::*;
use super::{invalid, GenerationRequest, RequestError, Seed};
use crate::task::{is_valid_keyscale, TaskType, TRACK_NAMES};

impl GenerationRequest {
    /// Check every value against ACE-Step's limits and names. This runs without the model or
    /// the source audio; [`GenerationRequest::resolve`] and [`ResolvedRequest::source_span`]
    /// check what needs them.
    pub fn validate(&self) -> Result<(), RequestError> {
        self.validate_for_inputs(self.src_audio.as_deref().is_some_and(|s| !s.trim().is_empty()))
    }

    /// [`GenerationRequest::validate`] for a job whose source audio may come from elsewhere
    /// than `src_audio` (samples in memory): `has_source` says whether it has one.
    pub fn validate_for_inputs(&self, has_source: bool) -> Result<(), RequestError> {
        let task = self.task_type;
        if task == TaskType::Text2Music {
            if let Some(d) = self.duration {
                if !(DURATION_MIN_S..=DURATION_MAX_S).contains(&d) {
                    let allowed = format!("{DURATION_MIN_S} to {DURATION_MAX_S} seconds (or -1 for the default)");
                    return Err(invalid("duration", format!("{d} is outside {allowed}")));
                }
            }
        }
        if let Some(bpm) = self.bpm {
            if !(BPM_MIN..=BPM_MAX).contains(&bpm) {
                return Err(invalid("bpm", format!("{bpm} is outside {BPM_MIN} to {BPM_MAX}")));
            }
        }
        if let Some(key) = &self.keyscale {
            if !is_valid_keyscale(key) {
                let hint = keyscale_suggestion(key).map_or(String::new(), |k| format!(" (did you mean \"{k}\"?)"));
                return Err(invalid(
                    "keyscale",
                    format!(
                        "\"{key}\" is not a known key{hint}: write a note A to G, optionally followed by # or b \
                         (or ♯ ♭), a space, then major or minor, e.g. \"F# minor\""
                    ),
                ));
            }
        }
        if let Some(ts) = &self.timesignature {
            if !TIME_SIGNATURES.contains(&ts.as_str()) {
                return Err(invalid("timesignature", format!("\"{ts}\" is not one of {}", TIME_SIGNATURES.join(", "))));
            }
        }
        if let Some(lang) = &self.vocal_language {
            if !VOCAL_LANGUAGES.contains(&lang.as_str()) {
                return Err(invalid(
                    "vocal_language",
                    format!("\"{lang}\" is not a known language code; use one of {}", VOCAL_LANGUAGES.join(", ")),
                ));
            }
        }
        self.validate_source_and_tracks(has_source)?;
        self.validate_sampling()?;
        self.validate_lm()?;
        self.validate_seeds()
    }

    /// The 5 Hz LM's fields: codes that parse and sampling settings in range.
    fn validate_lm(&self) -> Result<(), RequestError> {
        for (field, value, range) in [
            ("lm_temperature", self.lm_temperature, 0.0..=2.0),
            ("lm_cfg_scale", self.lm_cfg_scale, 0.0..=10.0),
            ("lm_top_p", self.lm_top_p, 0.0..=1.0),
            ("lm_repetition_penalty", self.lm_repetition_penalty, 0.1..=10.0),
        ] {
            if !range.contains(&value) {
                return Err(invalid(field, format!("{value} is outside {} to {}", range.start(), range.end())));
            }
        }
        if self.task_type != TaskType::Text2Music {
            if self.audio_code_string.is_some() {
                return Err(invalid("audio_code_string", format!("audio codes are a text2music input; {} reads its source audio", self.task_type)));
            }
            return Ok(()); // thinking: upstream skips the LM for the audio tasks
        }
        if let Some(text) = &self.audio_code_string {
            if crate::model::fsq::parse_audio_codes(text).is_empty() {
                return Err(invalid("audio_code_string", "no <|audio_code_N|> codes in it"));
            }
            return Ok(()); // the codes are the plan: the LM does not run
        }
        Ok(())
    }

    fn validate_source_and_tracks(&self, has_source: bool) -> Result<(), RequestError> {
        let task = self.task_type;
        if task.needs_source_audio() && !has_source {
            return Err(invalid("src_audio", format!("task `{task}` needs source audio, and none was given")));
        }
        if matches!(task, TaskType::Repaint | TaskType::Lego) {
            let start = self.repainting_start;
            if !start.is_finite() {
                return Err(invalid("repainting_start", format!("{start} is not a number of seconds")));
            }
            if let Some(end) = self.repainting_end {
                if !end.is_finite() || end <= 0.0 {
                    return Err(invalid(
                        "repainting_end",
                        format!("{end} must be after the source's start (0 s), or -1 for the source's end"),
                    ));
                }
                if end <= start {
                    return Err(invalid(
                        "repainting_end",
                        format!("the window {start} s to {end} s is empty: the end must come after the start"),
                    ));
                }
                if end - start > DURATION_MAX_S {
                    return Err(invalid(
                        "repainting_end",
                        format!("the window {start} s to {end} s is longer than {DURATION_MAX_S} s"),
                    ));
                }
            }
            if -start > DURATION_MAX_S - DURATION_MIN_S {
                return Err(invalid(
                    "repainting_start",
                    format!("{start} s out-paints more than the {DURATION_MAX_S} s the model can make"),
                ));
            }
        }
        for (field, value) in [
            ("audio_cover_strength", self.audio_cover_strength),
            ("cover_noise_strength", self.cover_noise_strength),
            ("repaint_strength", self.repaint_strength),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(field, format!("{value} is outside 0 to 1")));
            }
        }
        if let Some(name) = &self.track_name {
            check_track("track_name", name)?;
            if task == TaskType::Complete {
                return Err(invalid("track_name", "complete reads `track_classes`, not `track_name`"));
            }
        }
        for class in &self.track_classes {
            check_track("track_classes", class)?;
        }
        if matches!(task, TaskType::Lego | TaskType::Extract) && !self.track_classes.is_empty() {
            return Err(invalid("track_classes", format!("{task} reads `track_name`, not `track_classes`")));
        }
        Ok(())
    }

    fn validate_sampling(&self) -> Result<(), RequestError> {
        if let Some(steps) = self.inference_steps {
            if !(1..=BASE_MAX_STEPS).contains(&steps) {
                return Err(invalid("inference_steps", format!("{steps} is outside 1 to {BASE_MAX_STEPS}")));
            }
        }
        let (lo, hi) = SHIFT_RANGE;
        if let Some(shift) = self.shift.filter(|s| !(lo..=hi).contains(s)) {
            return Err(invalid("shift", format!("{shift} is outside {lo} to {hi}")));
        }
        let (lo, hi) = GUIDANCE_RANGE;
        if let Some(g) = self.guidance_scale.filter(|g| !(lo..=hi).contains(g)) {
            return Err(invalid("guidance_scale", format!("{g} is outside {lo} to {hi}")));
        }
        let (start, end) = (self.cfg_interval_start, self.cfg_interval_end);
        for (field, value) in [("cfg_interval_start", start), ("cfg_interval_end", end)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(field, format!("{value} is outside 0 to 1")));
            }
        }
        if start > end {
            return Err(invalid("cfg_interval_end", format!("{end} is before cfg_interval_start ({start})")));
        }
        if let Some(ts) = &self.timesteps {
            if ts.is_empty() {
                return Err(invalid("timesteps", "the list is empty; leave it out to use inference_steps"));
            }
            if let Some(t) = ts.iter().find(|t| !(0.0..=1.0).contains(*t)) {
                return Err(invalid("timesteps", format!("{t} is outside 0 to 1")));
            }
            if ts[0] == 0.0 {
                return Err(invalid("timesteps", "the schedule must start above 0 (1 is pure noise)"));
            }
            // Strictly decreasing; only trailing zeros may repeat.
            if let Some(pair) = ts.windows(2).find(|p| p[1] >= p[0] && !(p[0] == 0.0 && p[1] == 0.0)) {
                return Err(invalid("timesteps", format!("{} then {}: values must decrease", pair[0], pair[1])));
            }
        }
        Ok(())
    }

    fn validate_seeds(&self) -> Result<(), RequestError> {
        if let Some(n) = self.batch_size {
            if !(1..=MAX_BATCH_SIZE).contains(&n) {
                return Err(invalid("batch_size", format!("{n} is outside 1 to {MAX_BATCH_SIZE}")));
            }
        }
        let Some(seed) = &self.seed else { return Ok(()) };
        let values = match seed {
            Seed::One(s) => std::slice::from_ref(s),
            Seed::PerItem(list) => list.as_slice(),
        };
        if values.is_empty() {
            return Err(invalid("seed", "the list is empty; leave `seed` out to draw every seed"));
        }
        if let Some(s) = values.iter().find(|&&s| s != -1 && !(0..=MAX_SEED).contains(&s)) {
            return Err(invalid("seed", format!("{s} is outside 0 to {MAX_SEED} (or -1 to draw one)")));
        }
        if let Seed::PerItem(list) = seed {
            let batch = self.batch_size.unwrap_or(list.len() as u32);
            if list.len() > batch as usize {
                return Err(invalid("seed", format!("{} seeds were given for a batch of {batch}", list.len())));
            }
        }
        if self.use_random_seed == Some(true) && values.iter().any(|&s| s != -1) {
            return Err(invalid("seed", "a seed is given and use_random_seed is true; send only one of them"));
        }
        Ok(())
    }
}

fn check_track(field: &str, name: &str) -> Result<(), RequestError> {
    if TRACK_NAMES.contains(&name.to_lowercase().as_str()) {
        Ok(())
    } else {
        Err(invalid(field, format!("\"{name}\" is not a known track; use one of {}", TRACK_NAMES.join(", "))))
    }
}

/// The spelling `key` was probably meant to have: "c Major" -> "C major".
fn keyscale_suggestion(key: &str) -> Option<String> {
    let mut words = key.split_whitespace();
    let (tonic, mode) = (words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    let mut chars = tonic.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    let fixed = format!("{letter}{} {}", chars.as_str(), mode.to_lowercase());
    is_valid_keyscale(&fixed).then_some(fixed)
}

#[cfg(test)]
mod validation {
    use crate::request::tests::*;

    fn check(request: GenerationRequest) -> Result<(), String> {
        request.validate().map_err(field_of)
    }

    #[test]
    fn duration() {
        let t2m = |d| GenerationRequest { duration: Some(d), ..Default::default() };
        assert_eq!(check(t2m(10.0)), Ok(()));
        assert_eq!(check(t2m(600.0)), Ok(()));
        assert_eq!(check(t2m(9.9)), Err("duration".into()));
        assert_eq!(check(t2m(600.5)), Err("duration".into()));
        assert_eq!(check(t2m(f64::NAN)), Err("duration".into()));
        let err = t2m(5.0).validate().unwrap_err().to_string();
        assert_eq!(err, "`duration`: 5 is outside 10 to 600 seconds (or -1 for the default)");
        // The audio tasks take the source's length and do not read it.
        assert_eq!(check(GenerationRequest { duration: Some(5.0), ..repaint() }), Ok(()));
    }

    #[test]
    fn bpm() {
        let with = |bpm| GenerationRequest { bpm: Some(bpm), ..Default::default() };
        assert_eq!(check(with(30)), Ok(()));
        assert_eq!(check(with(300)), Ok(()));
        assert_eq!(with(29).validate().unwrap_err().to_string(), "`bpm`: 29 is outside 30 to 300");
        assert_eq!(check(with(301)), Err("bpm".into()));
    }

    #[test]
    fn keyscale() {
        let with = |k: &str| GenerationRequest { keyscale: Some(k.into()), ..Default::default() };
        assert_eq!(check(with("Eb major")), Ok(()));
        assert_eq!(check(with("G♯ minor")), Ok(()));
        let err = with("c Major").validate().unwrap_err().to_string();
        assert!(err.starts_with("`keyscale`: \"c Major\" is not a known key (did you mean \"C major\"?)"), "{err}");
        assert_eq!(check(with("Am")), Err("keyscale".into()));
    }

    #[test]
    fn time_signature() {
        let with = |t: &str| GenerationRequest { timesignature: Some(t.into()), ..Default::default() };
        for ok in ["2", "3", "4", "6", "4/4", "6/8"] {
            assert_eq!(check(with(ok)), Ok(()), "{ok}");
        }
        let err = with("5/4").validate().unwrap_err().to_string();
        assert_eq!(err, "`timesignature`: \"5/4\" is not one of 2, 3, 4, 6, 2/4, 3/4, 4/4, 6/8");
    }

    #[test]
    fn vocal_language() {
        let with = |l: &str| GenerationRequest { vocal_language: Some(l.into()), ..Default::default() };
        assert_eq!(check(with("yue")), Ok(()));
        assert_eq!(check(with("unknown")), Ok(()));
        assert_eq!(check(with("english")), Err("vocal_language".into()));
    }

    #[test]
    fn batch_size() {
        let with = |n| GenerationRequest { batch_size: Some(n), ..Default::default() };
        assert_eq!(check(with(1)), Ok(()));
        assert_eq!(check(with(8)), Ok(()));
        assert_eq!(check(with(0)), Err("batch_size".into()));
        assert_eq!(with(9).validate().unwrap_err().to_string(), "`batch_size`: 9 is outside 1 to 8");
    }

    #[test]
    fn seeds() {
        let with = |seed, batch| GenerationRequest { seed: Some(seed), batch_size: batch, ..Default::default() };
        assert_eq!(check(with(Seed::One(0), None)), Ok(()));
        assert_eq!(check(with(Seed::One(MAX_SEED), None)), Ok(()));
        assert_eq!(check(with(Seed::One(-1), None)), Ok(()));
        assert_eq!(check(with(Seed::One(-2), None)), Err("seed".into()));
        assert_eq!(check(with(Seed::One(MAX_SEED + 1), None)), Err("seed".into()));
        assert_eq!(check(with(Seed::PerItem(vec![]), None)), Err("seed".into()));
        assert_eq!(check(with(Seed::PerItem(vec![1, 2, 3]), Some(3))), Ok(()));
        let err = with(Seed::PerItem(vec![1, 2, 3]), Some(2)).validate().unwrap_err().to_string();
        assert_eq!(err, "`seed`: 3 seeds were given for a batch of 2");
        let random =
            |seed| GenerationRequest { seed: Some(seed), use_random_seed: Some(true), ..Default::default() };
        assert_eq!(check(random(Seed::One(-1))), Ok(()));
        assert_eq!(check(random(Seed::One(5))), Err("seed".into()));
    }

    #[test]
    fn tasks_that_need_a_source() {
        for task in TaskType::ALL {
            let bare = GenerationRequest { task_type: task, ..Default::default() };
            let with_source = GenerationRequest { src_audio: Some("in.wav".into()), ..bare.clone() };
            assert_eq!(check(with_source), Ok(()), "{task}");
            let want = if task.needs_source_audio() { Err("src_audio".to_string()) } else { Ok(()) };
            assert_eq!(check(bare), want, "{task}");
        }
        assert_eq!(check(GenerationRequest { src_audio: Some(" ".into()), ..repaint() }), Err("src_audio".into()));
        let err = GenerationRequest { src_audio: None, ..repaint() }.validate().unwrap_err().to_string();
        assert_eq!(err, "`src_audio`: task `repaint` needs source audio, and none was given");
    }

    #[test]
    fn repaint_window() {
        let window = |start, end| GenerationRequest { repainting_start: start, repainting_end: end, ..repaint() };
        assert_eq!(check(window(0.0, None)), Ok(()));
        assert_eq!(check(window(-5.0, Some(3.0))), Ok(()), "out-paint before the source");
        assert_eq!(check(window(20.0, Some(40.0))), Ok(()), "may reach past the source's end");
        assert_eq!(check(window(8.0, Some(8.0))), Err("repainting_end".into()));
        assert_eq!(check(window(8.0, Some(4.0))), Err("repainting_end".into()));
        assert_eq!(check(window(-8.0, Some(-2.0))), Err("repainting_end".into()), "entirely before the source");
        assert_eq!(check(window(0.0, Some(601.0))), Err("repainting_end".into()));
        assert_eq!(check(window(-595.0, None)), Err("repainting_start".into()));
        let err = window(8.0, Some(4.0)).validate().unwrap_err().to_string();
        assert_eq!(err, "`repainting_end`: the window 8 s to 4 s is empty: the end must come after the start");
        // Tasks without a window do not read it.
        assert_eq!(check(GenerationRequest { task_type: TaskType::Cover, ..window(8.0, Some(4.0)) }), Ok(()));
    }

    #[test]
    fn cover_strengths() {
        let with = |a, n| GenerationRequest { audio_cover_strength: a, cover_noise_strength: n, ..repaint() };
        assert_eq!(check(with(0.0, 1.0)), Ok(()));
        assert_eq!(check(with(1.2, 0.0)), Err("audio_cover_strength".into()));
        assert_eq!(check(with(1.0, -0.1)), Err("cover_noise_strength".into()));
    }

    #[test]
    fn repaint_strength() {
        let with = |s| GenerationRequest { repaint_strength: s, ..repaint() };
        assert_eq!(check(with(0.0)), Ok(()));
        assert_eq!(check(with(1.0)), Ok(()));
        assert_eq!(check(with(-0.1)), Err("repaint_strength".into()));
        assert_eq!(check(with(f64::NAN)), Err("repaint_strength".into()));
        assert_eq!(check(with(f64::INFINITY)), Err("repaint_strength".into()));
        assert_eq!(with(1.5).validate().unwrap_err().to_string(), "`repaint_strength`: 1.5 is outside 0 to 1");
        let parsed = parse(json!({"repaint_strength": "2"})).unwrap();
        assert_eq!(check(parsed), Err("repaint_strength".into()));
    }

    #[test]
    fn tracks() {
        let lego = |name: &str| GenerationRequest {
            task_type: TaskType::Lego,
            track_name: Some(name.into()),
            ..repaint()
        };
        assert_eq!(check(lego("backing_vocals")), Ok(()));
        assert_eq!(check(lego("Guitar")), Ok(()), "any case");
        let err = lego("kazoo").validate().unwrap_err().to_string();
        assert!(
            err.starts_with("`track_name`: \"kazoo\" is not a known track; use one of woodwinds, brass"),
            "{err}"
        );
        let complete = |classes: &[&str]| GenerationRequest {
            task_type: TaskType::Complete,
            track_classes: classes.iter().map(|c| c.to_string()).collect(),
            ..repaint()
        };
        assert_eq!(check(complete(&["drums", "bass"])), Ok(()));
        assert_eq!(check(complete(&["drums", "cowbell"])), Err("track_classes".into()));
        let misplaced = GenerationRequest { track_name: Some("drums".into()), ..complete(&[]) };
        assert_eq!(check(misplaced), Err("track_name".into()));
        let misplaced = GenerationRequest { track_classes: vec!["drums".into()], ..lego("bass") };
        assert_eq!(check(misplaced), Err("track_classes".into()));
    }

    #[test]
    fn sampler_settings() {
        let ok = GenerationRequest {
            inference_steps: Some(200),
            shift: Some(5.0),
            guidance_scale: Some(15.0),
            ..Default::default()
        };
        assert_eq!(check(ok.clone()), Ok(()));
        assert_eq!(
            check(GenerationRequest { inference_steps: Some(0), ..ok.clone() }),
            Err("inference_steps".into())
        );
        assert_eq!(
            check(GenerationRequest { inference_steps: Some(201), ..ok.clone() }),
            Err("inference_steps".into())
        );
        assert_eq!(check(GenerationRequest { shift: Some(0.5), ..ok.clone() }), Err("shift".into()));
        assert_eq!(
            check(GenerationRequest { guidance_scale: Some(20.0), ..ok.clone() }),
            Err("guidance_scale".into())
        );
        let interval =
            |start, end| GenerationRequest { cfg_interval_start: start, cfg_interval_end: end, ..ok.clone() };
        assert_eq!(check(interval(0.3, 0.3)), Ok(()));
        assert_eq!(check(interval(-0.1, 1.0)), Err("cfg_interval_start".into()));
        assert_eq!(check(interval(0.6, 0.4)), Err("cfg_interval_end".into()));
    }

    #[test]
    fn timesteps() {
        let with = |ts: &[f64]| GenerationRequest { timesteps: Some(ts.to_vec()), ..Default::default() };
        assert_eq!(check(with(&[0.97, 0.76, 0.5, 0.0, 0.0])), Ok(()));
        assert_eq!(check(with(&[])), Err("timesteps".into()));
        assert_eq!(check(with(&[1.2, 0.5])), Err("timesteps".into()));
        assert_eq!(check(with(&[0.0])), Err("timesteps".into()));
        assert_eq!(check(with(&[0.5, 0.7])), Err("timesteps".into()));
        assert_eq!(check(with(&[0.5, 0.0, 0.3])), Err("timesteps".into()));
    }
}

