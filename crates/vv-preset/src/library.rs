//! A directory of voice presets addressed by name, loaded lazily and cached.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::VoicePreset;
use crate::error::{PresetError, Result};

/// Longest accepted voice name.
const MAX_NAME_LEN: usize = 128;

/// True for names made only of `[A-Za-z0-9._-]`, not starting with `.`, without `..`, and at
/// most 128 bytes long. Such a name can never leave the library directory.
pub fn is_valid_voice_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Voice names (file stems) mapped to preset files of one directory, with a per-name cache.
#[derive(Debug)]
pub struct VoiceLibrary {
    dir: PathBuf,
    files: BTreeMap<String, PathBuf>,
    cache: Mutex<HashMap<String, Arc<VoicePreset>>>,
}

impl VoiceLibrary {
    /// Lists the `.pt` and `.safetensors` files of `dir` (not recursive). When both exist for a
    /// stem the safetensors file wins; files whose stem is not a valid name are skipped.
    pub fn scan(dir: &Path) -> Result<Self> {
        let io_err = |source| PresetError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
        for item in std::fs::read_dir(dir).map_err(io_err)? {
            let path = item.map_err(io_err)?.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            if !matches!(ext, "pt" | "safetensors") || !path.is_file() {
                continue;
            }
            if !is_valid_voice_name(stem) {
                tracing::warn!(file = %path.display(), "skipping voice preset with an invalid name");
                continue;
            }
            let keep_existing = files
                .get(stem)
                .is_some_and(|p| p.extension().is_some_and(|e| e == "safetensors"));
            if !keep_existing {
                files.insert(stem.to_string(), path);
            }
        }
        tracing::info!(dir = %dir.display(), voices = files.len(), "scanned voice presets");
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The scanned directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Voice names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Number of voices.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when the directory holds no presets.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The file backing `name`; `UnknownVoice` for invalid or absent names.
    pub fn path(&self, name: &str) -> Result<&Path> {
        if !is_valid_voice_name(name) {
            return Err(PresetError::UnknownVoice(name.to_string()));
        }
        self.files
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| PresetError::UnknownVoice(name.to_string()))
    }

    /// The preset for `name`, loaded on first use and shared afterwards.
    pub fn get(&self, name: &str) -> Result<Arc<VoicePreset>> {
        let path = self.path(name)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(preset) = cache.get(name) {
            return Ok(preset.clone());
        }
        let preset = Arc::new(VoicePreset::load(path)?);
        tracing::info!(voice = name, file = %path.display(), "loaded voice preset");
        cache.insert(name.to_string(), preset.clone());
        Ok(preset)
    }
}
