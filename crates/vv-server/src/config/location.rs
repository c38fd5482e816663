//! Telling a Hugging Face repository id from a local path (model and tokenizer settings).

use std::path::{Path, PathBuf};

/// Where a model or tokenizer is loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceLocation {
    /// A Hugging Face repository id (`owner/name` or `name`).
    Hub(String),
    /// A local file or directory.
    Local(PathBuf),
}

impl ResourceLocation {
    /// An existing path is local; otherwise a valid repository id is a hub id and anything else
    /// (absolute, `./x`, `a/b/c`, `C:\x`, ...) is a local path.
    pub fn classify(value: &str) -> Self {
        let path = Path::new(value);
        if path.exists() || !is_hub_repo_id(value) {
            Self::Local(path.to_path_buf())
        } else {
            Self::Hub(value.to_string())
        }
    }
}

/// Hugging Face rules: one or two `/`-separated parts of ASCII letters, digits, `-`, `_`, `.`,
/// not starting or ending with `-` or `.`, without `--` or `..`, at most 96 characters each.
fn is_hub_repo_id(value: &str) -> bool {
    let parts: Vec<&str> = value.split('/').collect();
    parts.len() <= 2 && parts.iter().all(|p| is_hub_name(p))
}

fn is_hub_name(part: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let edge = |c: Option<char>| matches!(c, Some(c) if c != '-' && c != '.');
    !part.is_empty()
        && part.len() <= 96
        && part.chars().all(allowed)
        && edge(part.chars().next())
        && edge(part.chars().last())
        && !part.contains("--")
        && !part.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_hub_ids_and_paths() {
        for hub in [
            "microsoft/VibeVoice-Realtime-0.5B",
            "Qwen/Qwen2.5-0.5B",
            "gpt2",
        ] {
            assert_eq!(
                ResourceLocation::classify(hub),
                ResourceLocation::Hub(hub.into())
            );
        }
        for local in [
            "/no/such/model",
            "./model",
            "../m",
            "a/b/c",
            "C:\\models\\vv",
            "",
        ] {
            assert_eq!(
                ResourceLocation::classify(local),
                ResourceLocation::Local(local.into()),
                "{local:?}"
            );
        }
    }

    #[test]
    fn an_existing_directory_is_local_even_if_it_looks_like_an_id() {
        // Unit tests run in the crate directory, where "src" exists.
        assert_eq!(
            ResourceLocation::classify("src"),
            ResourceLocation::Local("src".into())
        );
    }
}
