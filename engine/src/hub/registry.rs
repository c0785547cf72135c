//! Which published repository and folder each model comes from (upstream
//! `acestep/model_downloader.py`: `MAIN_MODEL_REPO`, `MAIN_MODEL_COMPONENTS`, `SUBMODEL_REGISTRY`).
//!
//! The main repository `ACE-Step/Ace-Step1.5` holds several models as folders (`acestep-v15-turbo/`,
//! `vae/`, `Qwen3-Embedding-0.6B/`, and the 5 Hz LM); the other DiTs each have a repository of
//! their own whose root is the folder. Either way a model lands in `checkpoints/<name>/`.

use crate::checkpoint::{LM_FOLDERS, TEXT_ENCODER_FOLDER, VAE_FOLDER};

/// The repository of the default DiT, the VAE and the text encoder.
pub const MAIN_REPO: &str = "ACE-Step/Ace-Step1.5";

/// What a model's folder holds, which says how it is validated once downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRole {
    Dit,
    Vae,
    TextEncoder,
    /// A 5 Hz LM (`thinking`).
    Lm,
}

/// One downloadable model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubModel {
    /// The folder name under `checkpoints/`, and the name `--model` takes.
    pub name: &'static str,
    /// The hub repository, `owner/name`.
    pub repo: &'static str,
    /// The folder inside the repository, or `None` when the repository's root is the folder.
    pub folder_in_repo: Option<&'static str>,
    pub role: ModelRole,
    /// About how large the download is, for a user choosing (the hub's listing is what is checked).
    pub approx_bytes: u64,
}

const GB: u64 = 1_000_000_000;

const fn main_repo(name: &'static str, role: ModelRole, approx_bytes: u64) -> HubModel {
    HubModel { name, repo: MAIN_REPO, folder_in_repo: Some(name), role, approx_bytes }
}

const fn own_repo(name: &'static str, repo: &'static str, approx_bytes: u64) -> HubModel {
    HubModel { name, repo, folder_in_repo: None, role: ModelRole::Dit, approx_bytes }
}

/// Every model Backline can download, the three generation needs first.
pub const MODELS: [HubModel; 14] = [
    main_repo("acestep-v15-turbo", ModelRole::Dit, 4_800_000_000),
    main_repo(VAE_FOLDER, ModelRole::Vae, 340_000_000),
    main_repo(TEXT_ENCODER_FOLDER, ModelRole::TextEncoder, 1_200_000_000),
    own_repo("acestep-v15-base", "ACE-Step/acestep-v15-base", 4_800_000_000),
    own_repo("acestep-v15-sft", "ACE-Step/acestep-v15-sft", 4_800_000_000),
    own_repo("acestep-v15-turbo-shift1", "ACE-Step/acestep-v15-turbo-shift1", 4_800_000_000),
    own_repo("acestep-v15-turbo-shift3", "ACE-Step/acestep-v15-turbo-shift3", 4_800_000_000),
    own_repo("acestep-v15-turbo-continuous", "ACE-Step/acestep-v15-turbo-continuous", 4_800_000_000),
    own_repo("acestep-v15-xl-turbo", "ACE-Step/acestep-v15-xl-turbo", 20 * GB),
    own_repo("acestep-v15-xl-base", "ACE-Step/acestep-v15-xl-base", 20 * GB),
    own_repo("acestep-v15-xl-sft", "ACE-Step/acestep-v15-xl-sft", 20 * GB),
    // The 5 Hz LMs (bf16): upstream's default 1.7B in the main repository, the others alone.
    main_repo(LM_FOLDERS[1], ModelRole::Lm, 3_700_000_000),
    HubModel { name: LM_FOLDERS[0], repo: "ACE-Step/acestep-5Hz-lm-0.6B", folder_in_repo: None, role: ModelRole::Lm, approx_bytes: 1_300_000_000 },
    HubModel { name: LM_FOLDERS[2], repo: "ACE-Step/acestep-5Hz-lm-4B", folder_in_repo: None, role: ModelRole::Lm, approx_bytes: 8_400_000_000 },
];

/// What a plain `backline models download` fetches: everything a generation needs.
pub const ESSENTIAL: [&str; 3] = ["acestep-v15-turbo", VAE_FOLDER, TEXT_ENCODER_FOLDER];

/// The model called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static HubModel> {
    MODELS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

/// The names `--model` takes, for an error message.
pub fn names() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

impl HubModel {
    /// The model's path inside its folder for a repository path, or `None` for a file outside the
    /// model's folder or one that is the repository's own (`.gitattributes`).
    pub fn local_path<'a>(&self, repo_path: &'a str) -> Option<&'a str> {
        let inside = match self.folder_in_repo {
            Some(folder) => repo_path.strip_prefix(folder)?.strip_prefix('/')?,
            None => repo_path,
        };
        (!inside.is_empty() && inside != ".gitattributes").then_some(inside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths_map_into_the_models_folder() {
        let turbo = find("acestep-v15-turbo").unwrap();
        assert_eq!(turbo.local_path("acestep-v15-turbo/model.safetensors"), Some("model.safetensors"));
        assert_eq!(turbo.local_path("acestep-v15-turbo-x/model.safetensors"), None);
        assert_eq!(turbo.local_path("vae/config.json"), None);
        let base = find("ACESTEP-V15-BASE").unwrap();
        assert_eq!(base.local_path("model.safetensors"), Some("model.safetensors"));
        assert_eq!(base.local_path(".gitattributes"), None);
        assert!(ESSENTIAL.iter().all(|n| find(n).is_some()));
        let lm = find("acestep-5hz-lm-1.7b").unwrap();
        assert_eq!((lm.repo, lm.role), (MAIN_REPO, ModelRole::Lm));
        assert_eq!(lm.local_path("acestep-5Hz-lm-1.7B/tokenizer.json"), Some("tokenizer.json"));
        assert_eq!(find("acestep-5Hz-lm-0.6B").unwrap().local_path("model.safetensors"), Some("model.safetensors"));
    }
}
