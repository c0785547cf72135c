//! Getting the published weights: which repository and folder each model comes from
//! ([`registry`]), fetching a folder from the hub resumably with every file's size and hash
//! checked ([`download`]), and validating it once there, as `backline models` does.

pub mod download;
pub mod registry;

use std::path::Path;

use crate::checkpoint::{CheckpointError, DitFolder, TextEncoderFolder, VaeFolder};
pub use download::{DownloadError, DownloadProgress, DownloadReport, Hub};
pub use registry::{HubModel, ModelRole};

/// Check a downloaded folder as the loaders will read it: every tensor present and shaped as its
/// config implies.
pub fn validate(role: ModelRole, dir: &Path) -> Result<(), CheckpointError> {
    match role {
        ModelRole::Dit => DitFolder::open(dir)?.validate(),
        ModelRole::Vae => VaeFolder::open(dir)?.validate(),
        ModelRole::TextEncoder => TextEncoderFolder::open(dir)?.validate(),
        ModelRole::Lm => crate::checkpoint::LmFolder::open(dir)?.validate(),
    }
}
