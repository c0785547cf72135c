//! Backline's engine: everything that is not the plugin.
//!
//! For now this holds the musical grid (bars, beats and samples at any tempo and meter), which the
//! plugin uses to read the host transport and which the engine uses to cut results to whole bars.
//! The ACE-Step networks, the job engine and the REST server grow here.

pub mod alloc;
pub mod audio;
pub mod checkpoint;
pub mod job;
pub mod task;
pub mod model;
pub mod pipeline;
pub mod prompt;
pub mod request;
pub mod sampling;
