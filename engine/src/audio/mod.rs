//! Audio-side helpers shared by the plugin and the engine.

pub mod grid;
