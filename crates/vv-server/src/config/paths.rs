//! Checks of the local paths named by settings (done while loading, before any model work).

use super::error::ValueProblem;
use super::location::ResourceLocation;
use std::path::{Path, PathBuf};

/// A model: a Hugging Face id, or an existing directory.
pub(crate) fn model(value: String) -> Result<String, ValueProblem> {
    if let ResourceLocation::Local(path) = ResourceLocation::classify(&value) {
        directory("model directory", &path)?;
    }
    Ok(value)
}

/// A tokenizer: a Hugging Face id, an existing `tokenizer.json`, or a directory holding one.
pub(crate) fn tokenizer(value: String) -> Result<String, ValueProblem> {
    let ResourceLocation::Local(path) = ResourceLocation::classify(&value) else {
        return Ok(value);
    };
    if !path.exists() {
        return Err(ValueProblem::PathNotFound {
            what: "tokenizer",
            path,
        });
    }
    if path.is_file() || path.join("tokenizer.json").is_file() {
        Ok(value)
    } else {
        Err(ValueProblem::WrongPathKind {
            what: "tokenizer",
            path,
            expected: "a tokenizer.json file or a directory containing one",
        })
    }
}

/// A directory that must exist (voice presets).
pub(crate) fn existing_directory(
    what: &'static str,
    path: Option<PathBuf>,
) -> Result<Option<PathBuf>, ValueProblem> {
    if let Some(p) = &path {
        directory(what, p)?;
    }
    Ok(path)
}

/// A directory that may be created later, but must not be something else (cache).
pub(crate) fn creatable_directory(
    what: &'static str,
    path: Option<PathBuf>,
) -> Result<Option<PathBuf>, ValueProblem> {
    match &path {
        Some(p) if p.exists() && !p.is_dir() => Err(not_a_directory(what, p)),
        _ => Ok(path),
    }
}

fn directory(what: &'static str, path: &Path) -> Result<(), ValueProblem> {
    if !path.exists() {
        Err(ValueProblem::PathNotFound {
            what,
            path: path.to_path_buf(),
        })
    } else if !path.is_dir() {
        Err(not_a_directory(what, path))
    } else {
        Ok(())
    }
}

fn not_a_directory(what: &'static str, path: &Path) -> ValueProblem {
    ValueProblem::WrongPathKind {
        what,
        path: path.to_path_buf(),
        expected: "a directory",
    }
}
