//! The DiT's prompts are byte-exact with the strings upstream's request path builds. The
//! fixture is the `prompts` stage of `tests/parity/make_fixtures.py` (`prompts.json`). It records
//! each case's inputs and upstream's instruction, metas, caption prompt, non-cover caption prompt
//! and lyric prompt.

use std::collections::BTreeSet;

use backline_engine::model::text_encoder::{CAPTION_MAX_TOKENS, LYRIC_MAX_TOKENS};
use backline_engine::prompt::PromptInputs;
use backline_engine::request::GenerationRequest;
use backline_engine::task::TaskType;
use backline_tests::parity::fixture_path;
use serde_json::Value;

/// Upstream's audio rate: for the audio tasks, the duration is the source's samples / 48 000.
const SAMPLE_RATE: f64 = 48_000.0;

fn cases() -> Vec<Value> {
    let path = fixture_path("prompts.json");
    let json = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (make it with make_fixtures.py --stage prompts)", path.display()));
    serde_json::from_str::<Value>(&json).unwrap().as_array().expect("a list of cases").clone()
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// A case's inputs as our request fields, and the duration its metas state: a source's length
/// replaces the requested duration, as it does upstream.
fn inputs(case: &Value) -> (GenerationRequest, Option<f64>) {
    let i = &case["inputs"];
    let duration = match i["source_samples"].as_u64() {
        Some(samples) => Some(samples as f64 / SAMPLE_RATE),
        None => i["duration"].as_f64(),
    };
    let request = GenerationRequest {
        task_type: serde_json::from_value::<TaskType>(i["task_type"].clone()).expect("a known task"),
        instruction: string(&i["instruction"]),
        track_name: string(&i["track_name"]),
        track_classes: i["track_classes"].as_array().unwrap().iter().map(|c| string(c).unwrap()).collect(),
        caption: string(&i["caption"]).unwrap(),
        lyrics: string(&i["lyrics"]).unwrap(),
        instrumental: i["instrumental"].as_bool().unwrap(),
        vocal_language: string(&i["vocal_language"]),
        bpm: i["bpm"].as_u64().map(|b| u32::try_from(b).unwrap()),
        keyscale: string(&i["keyscale"]),
        timesignature: string(&i["timesignature"]),
        ..Default::default()
    };
    (request, duration)
}

/// Where two strings first differ, with some context on both sides, so that a mismatch deep
/// inside a long prompt reads at a glance.
fn difference(got: &str, want: &str) -> String {
    let at = got
        .char_indices()
        .zip(want.chars())
        .find(|((_, g), w)| g != w)
        .map_or(got.len().min(want.len()), |((i, _), _)| i);
    let before: String = got[..at].chars().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
    let after = |s: &str| s[at..].chars().take(40).collect::<String>();
    format!(
        "first difference at byte {at}, after {before:?}\n      got: {:?}\n     want: {:?}\n\
         \x20 got all: {got:?}\n want all: {want:?}",
        after(got),
        after(want)
    )
}

#[test]
fn prompts_match_upstream_byte_for_byte() {
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let (request, duration) = inputs(case);
        let inputs = PromptInputs::new(&request).with_duration(duration);
        let built = [
            ("instruction", inputs.instruction()),
            ("metas", inputs.metas()),
            ("caption_prompt", inputs.caption_prompt()),
            ("non_cover_caption_prompt", inputs.non_cover_caption_prompt()),
            ("lyric_prompt", inputs.lyric_prompt()),
        ];
        for (field, got) in built {
            let want = case[field].as_str().unwrap_or_else(|| panic!("{name}: no {field}"));
            if got != want {
                failures.push(format!("[{name}] {field}: {}", difference(&got, want)));
            }
        }
    }
    let (n, total) = (failures.len(), cases.len());
    assert!(failures.is_empty(), "{n} of {total} cases differ from upstream:\n{}", failures.join("\n\n"));
    eprintln!("{} prompt cases byte-exact", cases.len());
}

#[test]
fn fixture_covers_every_task_and_our_token_limits() {
    let cases = cases();
    let tasks: BTreeSet<&str> = cases.iter().map(|c| c["inputs"]["task_type"].as_str().unwrap()).collect();
    let all: BTreeSet<&str> = TaskType::ALL.iter().map(TaskType::as_str).collect();
    assert_eq!(tasks, all);
    for case in &cases {
        assert_eq!(case["caption_max_length"].as_u64(), Some(CAPTION_MAX_TOKENS as u64), "{}", case["name"]);
        assert_eq!(case["lyric_max_length"].as_u64(), Some(LYRIC_MAX_TOKENS as u64), "{}", case["name"]);
    }
}
