//! Persisted plugin state beyond the host parameters: the request the user is drafting.
//!
//! The host saves parameters and this [`SessionState`] together in one nice-plug state blob; the
//! session is stored under [`SESSION_KEY`] as JSON with a `schema` number. Loading never fails:
//! [`SessionState::restore`] reads what it can, fills the rest with defaults, and leaves a
//! `load_notice` the editor shows when something was lost or migrated. All migrations live here.
//!
//! Threads: the GUI edits the draft, the engine worker adds takes, the session's service thread
//! reloads takes after a restore; all through [`SessionField`]'s lock, held only to copy or
//! write. The host's state calls (main thread) replace it. The audio thread never touches it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use backline_engine::audio::take_shape::TakeOptions;
use backline_engine::pipeline::recipe::Recipe;
use backline_engine::task::{is_valid_keyscale, TaskType, TRACK_NAMES};
use nice_plug::params::persist::PersistentField;
use nice_plug::prelude::PluginState;
use serde::{Deserialize, Serialize};

use crate::bridge::TAKE_SLOTS;

/// Key of the session in nice-plug's state blob (the `#[persist]` key in `params.rs`).
pub const SESSION_KEY: &str = "session";

/// The session schema this build writes. Bump it, and add a migration in `restore`, when a field
/// changes meaning; adding a field with a default needs no bump.
pub const SESSION_SCHEMA: u32 = 1;

/// Longest region a request may name, in bars (600 s, the model's limit, is 300 bars of 4/4 at
/// 120 BPM; 512 leaves room for fast tempi).
pub const MAX_BARS: u32 = 512;

/// The request the user is drafting in the editor, saved with the project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionState {
    pub schema: u32,
    pub task: TaskType,
    /// Text description of the music ("prompt" in ACE-Step's REST API).
    pub caption: String,
    pub lyrics: String,
    pub instrumental: bool,
    /// Key such as "F# minor"; empty means "let the model decide".
    pub keyscale: String,
    /// Generate: let the 5 Hz LM plan the bars first (ACE-Step's `thinking`): it writes audio
    /// codes from the caption, lyrics, key, tempo, meter and length, and the DiT renders them.
    pub plan_with_lm: bool,
    /// First bar of the region to generate or edit, counted from 0 (shown from 1).
    pub start_bar: u32,
    /// Length of the region in bars.
    pub length_bars: u32,
    /// The track lego adds, extract pulls out, complete adds (one of `task::TRACK_NAMES`).
    pub track_name: String,
    /// How much of the source's structure cover keeps, 0 to 1.
    pub strength: f64,
    /// DiT steps; 0 takes the model's default.
    pub steps: u32,
    /// The seed; -1 draws a new one for every job.
    pub seed: i64,
    /// The DiT folder to use; empty picks one that runs the task.
    pub model: String,
    /// How each take is shaped to its bars: conformed to the grid (off, trim, stretch), half or
    /// double time flagged or stretched, looped, key-corrected.
    pub take_options: TakeOptions,
    /// Where take files go; empty uses the machine's default take folder.
    pub take_folder: String,
    /// Every take made in this project, oldest first.
    pub takes: Vec<TakeRecord>,
    /// The take in each playback slot, by id. Slot 1 is the A/B choice; each slot also plays
    /// on its own output bus.
    pub slots: [Option<u64>; TAKE_SLOTS],
    /// The id the next take gets.
    pub next_take_id: u64,
    /// Set when loading lost or changed something; shown by the editor, never saved.
    #[serde(skip_serializing)]
    pub load_notice: Option<String>,
}

impl Default for SessionState {
    fn default() -> Self {
        Self {
            schema: SESSION_SCHEMA,
            task: TaskType::Text2Music,
            caption: String::new(),
            lyrics: String::new(),
            instrumental: true,
            keyscale: String::new(),
            plan_with_lm: false,
            start_bar: 0,
            length_bars: 4,
            track_name: "drums".into(),
            strength: 1.0,
            steps: 0,
            seed: -1,
            model: String::new(),
            take_options: TakeOptions::default(),
            take_folder: String::new(),
            takes: Vec::new(),
            slots: [None; TAKE_SLOTS],
            next_take_id: 1,
            load_notice: None,
        }
    }
}

impl SessionState {
    /// Read a saved session. Never fails: unreadable input gives the defaults plus a notice.
    pub fn restore(saved_json: &str) -> SessionState {
        let value: serde_json::Value = match serde_json::from_str(saved_json) {
            Ok(v) => v,
            Err(e) => return Self::defaults_because(&format!("it is not valid JSON ({e})")),
        };
        let schema = match value.get("schema") {
            None => 0,
            Some(s) => match s.as_u64() {
                Some(n) => n.min(u32::MAX as u64) as u32,
                None => return Self::defaults_because("its schema number is not a number"),
            },
        };
        let mut session: SessionState = match serde_json::from_value(value) {
            Ok(s) => s,
            Err(e) => return Self::defaults_because(&format!("a field has the wrong type ({e})")),
        };
        let mut notes = Vec::new();
        if schema > SESSION_SCHEMA {
            notes.push(format!(
                "The session was saved by a newer Backline (schema {schema}, this one reads \
                 {SESSION_SCHEMA}); settings it does not know were left out."
            ));
        }
        // Schema 0 (no `schema` field) is any blob written before versioning: its fields mean
        // what schema 1's do, so reading them with defaults for the rest is the whole migration.
        session.schema = SESSION_SCHEMA;
        notes.extend(session.sanitize());
        session.load_notice = (!notes.is_empty()).then(|| notes.join(" "));
        session
    }

    /// Clamp values into range. Returns a note for each value that had to change.
    pub fn sanitize(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.length_bars == 0 || self.length_bars > MAX_BARS {
            notes.push(format!(
                "Region length {} bars was out of range and is now {}.",
                self.length_bars,
                self.length_bars.clamp(1, MAX_BARS)
            ));
            self.length_bars = self.length_bars.clamp(1, MAX_BARS);
        }
        if self.start_bar > 100_000 {
            notes.push(format!("Start bar {} was out of range and is now 1.", self.start_bar + 1));
            self.start_bar = 0;
        }
        if !self.keyscale.is_empty() && !is_valid_keyscale(&self.keyscale) {
            notes.push(format!("Unknown key {:?} was cleared.", self.keyscale));
            self.keyscale.clear();
        }
        if !TRACK_NAMES.iter().any(|t| t.eq_ignore_ascii_case(&self.track_name)) {
            notes.push(format!("Unknown track {:?} is now drums.", self.track_name));
            self.track_name = "drums".into();
        }
        if !(0.0..=1.0).contains(&self.strength) {
            self.strength = if self.strength.is_nan() { 1.0 } else { self.strength.clamp(0.0, 1.0) };
            notes.push(format!("Strength was out of range and is now {}.", self.strength));
        }
        let before = self.takes.len();
        self.takes.retain(|t| t.placement.bpm.is_finite() && t.placement.bpm > 0.0 && t.bars > 0);
        if self.takes.len() != before {
            notes.push(format!("{} take(s) with an unreadable placement were left out.", before - self.takes.len()));
        }
        for slot in &mut self.slots {
            if slot.is_some_and(|id| !self.takes.iter().any(|t| t.id == id)) {
                *slot = None;
            }
        }
        let next = self.takes.iter().map(|t| t.id + 1).max().unwrap_or(1);
        self.next_take_id = self.next_take_id.max(next);
        notes
    }

    fn defaults_because(reason: &str) -> SessionState {
        SessionState {
            load_notice: Some(format!(
                "The saved session could not be read because {reason}; Backline started from \
                 defaults."
            )),
            ..SessionState::default()
        }
    }

    /// JSON that `Deserialize` turns back into exactly this value, notice included. Used only
    /// to hand a restored session from `filter_state` to the `#[persist]` field.
    fn to_handoff_json(&self) -> String {
        #[derive(Serialize)]
        struct Handoff<'a> {
            #[serde(flatten)]
            session: &'a SessionState,
            load_notice: &'a Option<String>,
        }
        serde_json::to_string(&Handoff { session: self, load_notice: &self.load_notice })
            .expect("a session of strings and numbers always serialises")
    }
}

/// One generated take as the project remembers it: its audio lives in `file`, checked against
/// `audio_sha256` when the project opens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeRecord {
    pub id: u64,
    pub name: String,
    pub file: String,
    /// SHA-256 of the file's bytes, as written.
    pub audio_sha256: String,
    pub placement: SavedPlacement,
    /// The first bar (0-based) and the bars it lasts.
    pub start_bar: u32,
    pub bars: u32,
    /// The meter it was made in, e.g. "7/8".
    pub meter: String,
    /// Everything that decided the audio: request, seeds, models, source hashes.
    pub recipe: Recipe,
}

/// Where a take sits on the timeline, independent of the sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SavedPlacement {
    pub start_quarters: f64,
    /// The host tempo the take was cut to.
    pub bpm: f64,
    pub gain: f32,
}

/// The `#[persist]` field: the session behind a lock, and a count of restores so the session's
/// service thread can reload take audio after the host loads a project.
#[derive(Debug, Default)]
pub struct SessionField {
    state: RwLock<SessionState>,
    restores: AtomicU64,
}

impl SessionField {
    /// A panic elsewhere while holding the lock must not lock the user out of their session.
    pub fn read(&self) -> RwLockReadGuard<'_, SessionState> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, SessionState> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many times the host has loaded a state into this field.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::Acquire)
    }
}

impl<'a> PersistentField<'a, SessionState> for SessionField {
    fn set(&self, new_value: SessionState) {
        *self.write() = new_value;
        self.restores.fetch_add(1, Ordering::Release);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&SessionState) -> R,
    {
        f(&self.read())
    }
}

/// Runs before nice-plug applies a saved state (`Plugin::filter_state`): replaces the saved
/// session with its restored, current-schema form, so the `#[persist]` field always receives
/// something it can read and the editor learns what happened.
pub fn filter_saved_state(state: &mut PluginState) {
    if let Some(saved) = state.fields.get(SESSION_KEY) {
        let restored = SessionState::restore(saved);
        state.fields.insert(SESSION_KEY.to_owned(), restored.to_handoff_json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn saved(session: &SessionState) -> String {
        serde_json::to_string(session).unwrap()
    }

    #[test]
    fn round_trips_without_a_notice() {
        let s = SessionState {
            task: TaskType::Repaint,
            caption: "dusty boom-bap drums, vinyl crackle".into(),
            lyrics: "[verse]\nla la".into(),
            instrumental: false,
            keyscale: "F# minor".into(),
            start_bar: 8,
            length_bars: 8,
            ..Default::default()
        };
        assert_eq!(SessionState::restore(&saved(&s)), s);
    }

    #[test]
    fn the_notice_is_never_saved() {
        let s = SessionState { load_notice: Some("x".into()), ..Default::default() };
        assert!(!saved(&s).contains("load_notice"));
    }

    #[test]
    fn corrupt_blobs_give_defaults_and_say_why() {
        for (blob, why) in [
            ("{\"task\": \"text2", "not valid JSON"),
            ("\u{0}\u{1}garbage", "not valid JSON"),
            ("{\"caption\": 42}", "wrong type"),
            ("{\"task\": \"remix\"}", "wrong type"),
            ("{\"schema\": \"one\"}", "schema number"),
            ("[1,2,3]", "wrong type"),
        ] {
            let s = SessionState::restore(blob);
            let notice = s.load_notice.clone().expect(blob);
            assert!(notice.contains(why), "{blob:?}: {notice}");
            assert!(notice.contains("defaults"));
            assert_eq!(SessionState { load_notice: None, ..s }, SessionState::default());
        }
    }

    #[test]
    fn a_pre_versioning_blob_loads_with_defaults_for_missing_fields() {
        let s = SessionState::restore("{\"caption\": \"lofi keys\", \"length_bars\": 2}");
        assert_eq!(s.caption, "lofi keys");
        assert_eq!(s.length_bars, 2);
        assert_eq!(s.schema, SESSION_SCHEMA);
        assert_eq!(s.task, TaskType::Text2Music);
        assert_eq!(s.load_notice, None);
    }

    #[test]
    fn a_newer_schema_loads_what_it_can_and_says_so() {
        let s = SessionState::restore("{\"schema\": 7, \"caption\": \"x\", \"stems\": [1]}");
        assert_eq!(s.caption, "x");
        assert!(s.load_notice.unwrap().contains("newer Backline (schema 7"));
    }

    #[test]
    fn out_of_range_values_are_clamped_with_a_note() {
        let s = SessionState::restore("{\"length_bars\": 0, \"keyscale\": \"H major\"}");
        assert_eq!(s.length_bars, 1);
        assert_eq!(s.keyscale, "");
        let notice = s.load_notice.unwrap();
        assert!(notice.contains("length") && notice.contains("H major"), "{notice}");
    }

    #[test]
    fn filter_state_hands_the_notice_to_the_persist_field() {
        let mut state = PluginState {
            version: "0.0.1".into(),
            params: BTreeMap::new(),
            fields: BTreeMap::from([(SESSION_KEY.to_owned(), "{broken".to_owned())]),
        };
        filter_saved_state(&mut state);
        let handed: SessionState = serde_json::from_str(&state.fields[SESSION_KEY]).unwrap();
        assert!(handed.load_notice.unwrap().contains("could not be read"));
    }

    #[test]
    fn filter_state_leaves_a_state_without_session_alone() {
        let mut state = PluginState {
            version: "0.0.1".into(),
            params: BTreeMap::new(),
            fields: BTreeMap::new(),
        };
        filter_saved_state(&mut state);
        assert!(state.fields.is_empty());
    }
}
