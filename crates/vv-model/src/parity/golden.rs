//! A golden safetensors file of a fixture directory, with named-tensor access and metadata.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};

/// All tensors of one golden file, loaded on the CPU, plus its `__metadata__` map.
pub struct GoldenFile {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
}

impl GoldenFile {
    /// Loads `path` completely (golden files are small).
    pub fn open(path: &Path) -> Result<Self> {
        let fixture_err = |reason: String| ModelError::Fixture {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            return Err(ModelError::MissingFile(path.display().to_string()));
        }
        let bytes = std::fs::read(path).map_err(|e| ModelError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| fixture_err(e.to_string()))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| fixture_err(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata,
        })
    }

    /// The tensor called `name`, or an error naming the file and the tensor.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| ModelError::Fixture {
            path: self.path.display().to_string(),
            reason: format!("missing tensor {name}"),
        })
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The safetensors `__metadata__` map (JSON-encoded settings per key).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The file path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
