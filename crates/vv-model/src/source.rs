//! Where the checkpoint and tokenizer come from: a local path, or a Hugging Face id fetched
//! through hf-hub into the standard cache (with a progress bar), reused offline when cached.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{ModelError, Result};

/// Default checkpoint id on the Hugging Face hub.
pub const DEFAULT_MODEL_ID: &str = "microsoft/VibeVoice-Realtime-0.5B";
/// Default tokenizer id (the model repository ships no tokenizer).
pub const DEFAULT_TOKENIZER_ID: &str = "Qwen/Qwen2.5-0.5B";

/// Resolved local files of a checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
}

/// Options for fetching from the hub.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Revision (branch, tag or commit); `main` when unset.
    pub revision: Option<String>,
    /// Cache directory; the standard `HF_HOME` cache when unset.
    pub cache_dir: Option<PathBuf>,
    /// Show a download progress bar.
    pub progress: bool,
}

/// True when `spec` names something on disk or is written like a path, not a hub id.
fn looks_local(spec: &str) -> bool {
    let p = Path::new(spec);
    p.exists()
        || spec.starts_with('.')
        || spec.starts_with('/')
        || spec.starts_with('~')
        || spec.contains('\\')
        || spec.split('/').count() > 2
}

/// Fetches (or finds in the cache) one file of a hub repository.
fn hub_file(id: &str, file: &str, opts: &HubOptions) -> Result<PathBuf> {
    let revision = opts.revision.clone().unwrap_or_else(|| "main".to_string());
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision);
    let cache = opts
        .cache_dir
        .clone()
        .map(Cache::new)
        .unwrap_or_else(Cache::from_env);
    if let Some(path) = cache.repo(repo.clone()).get(file) {
        tracing::debug!(id, file, path = %path.display(), "found in the Hugging Face cache");
        return Ok(path);
    }
    tracing::info!(id, file, "downloading from the Hugging Face hub");
    let api = ApiBuilder::from_cache(cache)
        .with_progress(opts.progress)
        .build()
        .map_err(|e| ModelError::Download(format!("{id}/{file}: {e}")))?;
    api.repo(repo)
        .get(file)
        .map_err(|e| ModelError::Download(format!("{id}/{file}: {e}")))
}

fn require_file(path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::MissingFile(path.display().to_string()))
    }
}

/// Resolves a checkpoint given as a local directory or a hub id.
pub fn resolve_checkpoint(spec: &str, opts: &HubOptions) -> Result<CheckpointFiles> {
    if looks_local(spec) {
        let dir = Path::new(spec);
        if !dir.is_dir() {
            return Err(ModelError::MissingFile(format!(
                "{spec} (expected a checkpoint directory with config.json and model.safetensors)"
            )));
        }
        return Ok(CheckpointFiles {
            config: require_file(dir.join("config.json"))?,
            weights: require_file(dir.join("model.safetensors"))?,
        });
    }
    Ok(CheckpointFiles {
        config: hub_file(spec, "config.json", opts)?,
        weights: hub_file(spec, "model.safetensors", opts)?,
    })
}

/// Resolves a tokenizer given as a `tokenizer.json` path, a directory holding one, or a hub id.
pub fn resolve_tokenizer(spec: &str, opts: &HubOptions) -> Result<PathBuf> {
    if looks_local(spec) {
        let p = Path::new(spec);
        return require_file(if p.is_dir() {
            p.join("tokenizer.json")
        } else {
            p.to_path_buf()
        });
    }
    hub_file(spec, "tokenizer.json", opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_directory_resolves_both_files() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/vibevoice-tiny/model"
        );
        let f = resolve_checkpoint(dir, &HubOptions::default()).unwrap();
        assert!(f.config.ends_with("config.json"));
        assert!(f.weights.ends_with("model.safetensors"));
    }

    #[test]
    fn missing_directory_is_named() {
        let err = resolve_checkpoint("./no/such/dir", &HubOptions::default()).unwrap_err();
        assert!(err.to_string().contains("./no/such/dir"), "{err}");
    }

    #[test]
    fn hub_ids_are_not_taken_for_paths() {
        assert!(!looks_local(DEFAULT_MODEL_ID));
        assert!(!looks_local(DEFAULT_TOKENIZER_ID));
        assert!(looks_local("./model"));
    }

    #[test]
    fn tokenizer_file_or_directory() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/vibevoice-tiny/tokenizer"
        );
        let opts = HubOptions::default();
        assert!(resolve_tokenizer(dir, &opts).unwrap().is_file());
        let file = format!("{dir}/tokenizer.json");
        assert!(resolve_tokenizer(&file, &opts).unwrap().is_file());
    }
}
