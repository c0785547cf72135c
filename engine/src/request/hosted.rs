//! The request shapes of the hosted ACE-Step endpoints (fal.ai's `ace-step` text-to-audio,
//! `audio-inpaint` and `audio-outpaint`), read into ACE-Step 1.5's fields: `tags` is the
//! caption; an inpaint window (`start_time`, `end_time`, each measured from the source's start or,
//! with `*_relative_to: "end"`, back from its end) is a repaint window; `extend_before_duration`
//! and `extend_after_duration` out-paint the source, a repaint window reaching past its ends;
//! `variance` (how far the new part may differ, 0 to 1) is `repaint_strength`;
//! `number_of_steps` is `inference_steps`. They need the source's length, so they are read once
//! the source is known: by the server once the upload is decoded, by the CLI's `--start-time`,
//! `--end-time` and `--extend-before`/`--extend-after` flags once the file is read. Errors name
//! the field.

use serde_json::{json, Map, Value};

/// fal's inpaint defaults: from the start to 30 s.
const INPAINT_DEFAULT_END_S: f64 = 30.0;

const INPAINT_KEYS: [&str; 4] = ["start_time", "end_time", "start_time_relative_to", "end_time_relative_to"];
const OUTPAINT_KEYS: [&str; 2] = ["extend_before_duration", "extend_after_duration"];

/// Rewrites the hosted fields of `fields` as ACE-Step's; `source_s` is the uploaded source's
/// length, when there is one.
pub fn read_hosted_fields(fields: &mut Map<String, Value>, source_s: Option<f64>) -> Result<(), String> {
    rename(fields, "tags", &["prompt", "caption"])?;
    rename(fields, "number_of_steps", &["inference_steps", "inferenceSteps"])?;
    rename(fields, "variance", &["repaint_strength", "repaintStrength"])?;
    let inpaint = INPAINT_KEYS.iter().any(|k| fields.contains_key(*k));
    let outpaint = OUTPAINT_KEYS.iter().any(|k| fields.contains_key(*k));
    if !inpaint && !outpaint {
        return Ok(());
    }
    if inpaint && outpaint {
        return Err("`extend_before_duration`/`extend_after_duration` (out-paint) and `start_time`/`end_time` (in-paint) cannot be mixed: send one kind".into());
    }
    let Some(source_s) = source_s else {
        let field = if inpaint { "start_time" } else { "extend_after_duration" };
        return Err(format!("`{field}` needs the source audio (`src_audio`)"));
    };
    for key in ["repainting_start", "repainting_end"] {
        if fields.contains_key(key) {
            return Err(format!("`{key}` and the hosted window fields both set the window; send one"));
        }
    }
    let (start, end) = if inpaint {
        let start = seconds(fields, "start_time", 0.0)?;
        let end = seconds(fields, "end_time", INPAINT_DEFAULT_END_S)?;
        let start = anchored(start, relative_to(fields, "start_time_relative_to")?, source_s);
        let end = anchored(end, relative_to(fields, "end_time_relative_to")?, source_s).min(source_s);
        (start, end)
    } else {
        let before = seconds(fields, "extend_before_duration", 0.0)?;
        let after = seconds(fields, "extend_after_duration", 0.0)?;
        if before == 0.0 && after == 0.0 {
            return Err("`extend_before_duration` and `extend_after_duration` are both 0: nothing to out-paint".into());
        }
        (-before, source_s + after)
    };
    for key in INPAINT_KEYS.iter().chain(&OUTPAINT_KEYS) {
        fields.remove(*key);
    }
    fields.entry("task_type").or_insert(json!("repaint"));
    fields.insert("repainting_start".into(), json!(start));
    fields.insert("repainting_end".into(), json!(end));
    Ok(())
}

/// Moves `from` to the first of `to` unless one of `to` is already given.
fn rename(fields: &mut Map<String, Value>, from: &str, to: &[&str]) -> Result<(), String> {
    let Some(value) = fields.remove(from) else { return Ok(()) };
    if let Some(given) = to.iter().find(|k| fields.contains_key(**k)) {
        return Err(format!("`{from}` and `{given}` both set the same field; send one"));
    }
    fields.insert(to[0].into(), value);
    Ok(())
}

/// A non-negative number of seconds (JSON or text), or `default` when absent.
fn seconds(fields: &Map<String, Value>, key: &str, default: f64) -> Result<f64, String> {
    let value = match fields.get(key) {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match value {
        Some(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("`{key}` must be a number of seconds, 0 or more")),
    }
}

/// Whether a time counts from the source's start (false) or back from its end (true).
fn relative_to(fields: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match fields.get(key).and_then(Value::as_str) {
        None | Some("start") => Ok(false),
        Some("end") => Ok(true),
        Some(other) => Err(format!("`{key}` = \"{other}\": use \"start\" or \"end\"")),
    }
}

fn anchored(t: f64, from_end: bool, source_s: f64) -> f64 {
    if from_end {
        source_s - t
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: Value, source_s: Option<f64>) -> Result<Map<String, Value>, String> {
        let mut fields = value.as_object().unwrap().clone();
        read_hosted_fields(&mut fields, source_s).map(|()| fields)
    }

    #[test]
    fn tags_are_the_caption_and_steps_and_variance_their_fields() {
        let f = read(json!({"tags": "lofi, rain", "number_of_steps": 27, "variance": 0.3}), None).unwrap();
        assert_eq!((f["prompt"].as_str(), f["inference_steps"].as_i64(), f["repaint_strength"].as_f64()), (Some("lofi, rain"), Some(27), Some(0.3)));
        assert!(read(json!({"tags": "a", "caption": "b"}), None).unwrap_err().contains("`tags` and `caption`"));
    }

    #[test]
    fn an_inpaint_window_may_count_back_from_the_end() {
        let f = read(json!({"start_time": 10, "start_time_relative_to": "end", "end_time": 2, "end_time_relative_to": "end"}), Some(60.0)).unwrap();
        assert_eq!((f["task_type"].as_str(), f["repainting_start"].as_f64(), f["repainting_end"].as_f64()), (Some("repaint"), Some(50.0), Some(58.0)));
        let f = read(json!({"start_time": "5"}), Some(20.0)).unwrap();
        assert_eq!((f["repainting_start"].as_f64(), f["repainting_end"].as_f64()), (Some(5.0), Some(20.0)), "the default end is cut to the source");
        assert!(read(json!({"start_time": 5, "start_time_relative_to": "middle"}), Some(20.0)).unwrap_err().contains("start_time_relative_to"));
        assert!(read(json!({"start_time": -1}), Some(20.0)).unwrap_err().contains("start_time"));
        assert!(read(json!({"start_time": 1}), None).unwrap_err().contains("src_audio"));
    }

    #[test]
    fn an_outpaint_extends_the_window_past_the_source() {
        let f = read(json!({"extend_before_duration": 4, "extend_after_duration": 30}), Some(20.0)).unwrap();
        assert_eq!((f["repainting_start"].as_f64(), f["repainting_end"].as_f64()), (Some(-4.0), Some(50.0)));
        assert!(read(json!({"extend_after_duration": 0}), Some(20.0)).unwrap_err().contains("nothing to out-paint"));
        assert!(read(json!({"extend_after_duration": 5, "start_time": 1}), Some(20.0)).unwrap_err().contains("cannot be mixed"));
    }
}
