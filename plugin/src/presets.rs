//! The presets in `presets/`, built into the plugin: a name, a region length in bars, and a
//! partial request in ACE-Step's REST form. Applying one fills the draft's fields it sets.

use backline_engine::request::GenerationRequest;
use serde::Deserialize;

use crate::state::SessionState;

/// Every preset file, in the order the editor lists them.
const FILES: [(&str, &str); 5] = [
    ("drum-loop.json", include_str!("../../presets/drum-loop.json")),
    ("bass-layer.json", include_str!("../../presets/bass-layer.json")),
    ("cover-lofi.json", include_str!("../../presets/cover-lofi.json")),
    ("repaint-fill.json", include_str!("../../presets/repaint-fill.json")),
    ("extract-vocals.json", include_str!("../../presets/extract-vocals.json")),
];

#[derive(Debug, Clone)]
pub struct Preset {
    pub name: String,
    pub bars: u32,
    pub request: GenerationRequest,
    /// Which draft fields the request sets (a field left out keeps the user's value).
    sets: Vec<String>,
}

#[derive(Deserialize)]
struct PresetFile {
    name: String,
    bars: u32,
    request: serde_json::Value,
}

fn parse(file: &str, text: &str) -> Result<Preset, String> {
    let raw: PresetFile = serde_json::from_str(text).map_err(|e| format!("preset {file}: {e}"))?;
    let sets = raw.request.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    let request = GenerationRequest::from_value(raw.request).map_err(|e| format!("preset {file}: {e}"))?;
    Ok(Preset { name: raw.name, bars: raw.bars.max(1), request, sets })
}

/// The built-in presets (a broken file is left out; the unit test keeps that from shipping).
pub fn all() -> Vec<Preset> {
    FILES.iter().filter_map(|(file, text)| parse(file, text).ok()).collect()
}

impl Preset {
    /// Fills the draft from the preset: task, region length, and every field the preset sets.
    pub fn apply(&self, draft: &mut SessionState) {
        let r = &self.request;
        let sets = |key: &str| self.sets.iter().any(|k| k == key);
        draft.task = r.task_type;
        draft.length_bars = self.bars;
        if sets("caption") || sets("prompt") {
            draft.caption = r.caption.clone();
        }
        if sets("lyrics") {
            draft.lyrics = r.lyrics.clone();
        }
        if sets("instrumental") {
            draft.instrumental = r.instrumental;
        }
        if let Some(key) = &r.keyscale {
            draft.keyscale = key.clone();
        }
        if let Some(track) = r.track_name.clone().or_else(|| r.track_classes.first().cloned()) {
            draft.track_name = track;
        }
        if let Some(steps) = r.inference_steps {
            draft.steps = steps;
        }
        if sets("audio_cover_strength") {
            draft.strength = r.audio_cover_strength;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture_store::CapturedRegion;
    use crate::draft::job_request;
    use backline_engine::audio::grid::{Grid, TimeSignature};
    use backline_engine::audio::AudioBuffer;
    use backline_engine::task::TaskType;

    #[test]
    fn every_preset_parses_and_runs_through_the_draft_mapping() {
        let presets = all();
        assert_eq!(presets.len(), FILES.len(), "a preset file does not parse: {:?}", FILES.iter().map(|(f, t)| parse(f, t).err()).collect::<Vec<_>>());
        let grid = Grid::new(96.0, TimeSignature::FOUR_FOUR, 48_000.0).unwrap();
        for preset in &presets {
            let mut draft = SessionState { caption: "kept unless the preset sets it".into(), ..Default::default() };
            preset.apply(&mut draft);
            assert_eq!((draft.task, draft.length_bars), (preset.request.task_type, preset.bars), "{}", preset.name);
            let frames = (grid.bars_to_seconds(preset.bars as f64) * 48_000.0) as usize;
            let capture = CapturedRegion { audio: AudioBuffer::new(48_000, vec![vec![0.1; frames]; 2]), start_quarters: 0.0, start_sample: 0 };
            let (job, plan) = job_request(&draft, &grid, Some(&capture)).unwrap_or_else(|e| panic!("{}: {e}", preset.name));
            assert_eq!(job.request.task_type, preset.request.task_type);
            assert_eq!(plan.bars.bars, preset.bars);
        }
        let bass = presets.iter().find(|p| p.request.task_type == TaskType::Lego).unwrap();
        let mut draft = SessionState::default();
        bass.apply(&mut draft);
        assert_eq!(draft.track_name, "bass");
        let extract = presets.iter().find(|p| p.request.task_type == TaskType::Extract).unwrap();
        let mut draft = SessionState { caption: "mine".into(), ..Default::default() };
        extract.apply(&mut draft);
        assert_eq!((draft.caption.as_str(), draft.track_name.as_str()), ("mine", "vocals"), "unset fields stay");
    }
}
