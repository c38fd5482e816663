//! A golden fixture directory: `model/` (config.json + model.safetensors), `golden/*.safetensors`
//! (+ the voice preset), `tokenizer/tokenizer.json`. Everything about the model comes from the
//! fixture's own config.json, so fixtures of other tiny configurations work too.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::config::VibeVoiceConfig;
use crate::error::{ModelError, Result};
use crate::linear::Packing;
use crate::model::VibeVoiceModel;
use crate::parity::GoldenFile;
use crate::source::CheckpointFiles;
use vv_preset::{VoiceLibrary, VoicePreset};

/// An opened fixture directory.
#[derive(Debug, Clone)]
pub struct FixtureDir {
    root: PathBuf,
    files: CheckpointFiles,
    config: VibeVoiceConfig,
}

impl FixtureDir {
    /// Opens `root`, reading and validating `model/config.json`.
    pub fn open(root: &Path) -> Result<Self> {
        let model = root.join("model");
        let files = CheckpointFiles {
            config: model.join("config.json"),
            weights: model.join("model.safetensors"),
        };
        for f in [&files.config, &files.weights] {
            if !f.is_file() {
                return Err(ModelError::MissingFile(f.display().to_string()));
            }
        }
        let config = VibeVoiceConfig::from_file(&files.config)?;
        Ok(Self {
            root: root.to_path_buf(),
            files,
            config,
        })
    }

    /// The fixture model's configuration.
    pub fn config(&self) -> &VibeVoiceConfig {
        &self.config
    }

    /// The whole model on `device` in `dtype`, its weights stored as `packing` says.
    pub fn load_model(
        &self,
        device: &Device,
        dtype: DType,
        packing: Packing,
    ) -> Result<VibeVoiceModel> {
        VibeVoiceModel::load(&self.files, device, dtype, packing)
    }

    /// A var builder over the fixture weights (for component-level checks).
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        // SAFETY: read-only memory map of a fixture file nobody modifies while it is open.
        unsafe { VarBuilder::from_mmaped_safetensors(&[&self.files.weights], dtype, device) }
            .map_err(|e| ModelError::Tensor {
                name: self.files.weights.display().to_string(),
                reason: e.to_string(),
            })
    }

    fn golden_path(&self, name: &str) -> PathBuf {
        self.root.join("golden").join(format!("{name}.safetensors"))
    }

    /// Whether `golden/{name}.safetensors` exists.
    pub fn has_golden(&self, name: &str) -> bool {
        self.golden_path(name).is_file()
    }

    /// Loads `golden/{name}.safetensors`.
    pub fn golden(&self, name: &str) -> Result<GoldenFile> {
        GoldenFile::open(&self.golden_path(name))
    }

    /// The fixture's voice preset (`golden/voice_preset.pt`, else its safetensors form).
    pub fn preset(&self) -> Result<VoicePreset> {
        let pt = self.root.join("golden").join("voice_preset.pt");
        if pt.is_file() {
            return Ok(VoicePreset::load(&pt)?);
        }
        Ok(VoicePreset::load(&self.golden_path("voice_preset"))?)
    }

    /// The fixture's voice preset, then every preset of its `voices/` directory (sorted by
    /// name; none when it has no such directory).
    pub fn presets(&self) -> Result<Vec<VoicePreset>> {
        let mut presets = vec![self.preset()?];
        let dir = self.root.join("voices");
        if dir.is_dir() {
            let library = VoiceLibrary::scan(&dir)?;
            for name in library.names() {
                presets.push(VoicePreset::load(library.path(name)?)?);
            }
        }
        Ok(presets)
    }

    /// `tokenizer/tokenizer.json`.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.root.join("tokenizer").join("tokenizer.json")
    }
}
