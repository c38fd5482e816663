//! Voice presets: the prefilled caches of a voice prompt (lower LM, TTS LM and their negative
//! counterparts), read natively from the official `.pt` files (zip container, pickle, strided
//! tensor storage; no Python) or from the flat safetensors form, validated against a model's
//! shapes, converted, summarised and served from a directory.

mod entry;
pub mod error;
mod flat;
#[doc(hidden)]
pub mod fuzz_entry;
mod library;
mod pickle;
mod strided;
mod summary;
mod torch_zip;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

pub use crate::error::{PresetError, Result};

pub use entry::{EntryKind, PresetEntry};
pub use flat::FLAT_FORMAT;
pub use library::{is_valid_voice_name, VoiceLibrary};
pub use summary::{convert, EntrySummary, PresetSummary};

/// Largest preset file accepted (real presets are a few MiB).
pub const MAX_PRESET_FILE_BYTES: u64 = 1 << 30;

/// What a preset must match in the model it is used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    /// Layers of the lower (text) LM.
    pub lower_layers: usize,
    /// Layers of the TTS LM.
    pub tts_layers: usize,
    /// KV heads per layer.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
}

/// The container a preset was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresetFormat {
    /// A `torch.save` zip (`.pt`).
    TorchZip,
    /// The flat safetensors form ([`FLAT_FORMAT`]).
    FlatSafetensors,
}

impl PresetFormat {
    /// Stable snake_case label (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            PresetFormat::TorchZip => "torch_zip",
            PresetFormat::FlatSafetensors => "flat_safetensors",
        }
    }
}

/// A voice preset: four validated entries plus where they came from.
#[derive(Debug, Clone)]
pub struct VoicePreset {
    entries: [PresetEntry; 4],
    label: String,
    format: PresetFormat,
    zip_root: Option<String>,
    source: Option<String>,
    source_sha256: Option<String>,
}

impl VoicePreset {
    /// Reads a preset file, detecting `.pt` zip or flat safetensors by content.
    pub fn load(path: &Path) -> Result<Self> {
        let label = path.display().to_string();
        let io_err = |source| PresetError::Io {
            path: label.clone(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io_err)?.len();
        if len > MAX_PRESET_FILE_BYTES {
            return Err(preset_error(
                &label,
                format!("file has {len} bytes, more than the {MAX_PRESET_FILE_BYTES} accepted"),
            ));
        }
        let bytes = std::fs::read(path).map_err(io_err)?;
        let source = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| label.clone());
        Self::decode(&bytes, &label, &source)
    }

    /// Decodes a preset held in memory; `name` labels errors and is the `source` of a `.pt`.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        Self::decode(bytes, name, name)
    }

    fn decode(bytes: &[u8], label: &str, source: &str) -> Result<Self> {
        let fail = |reason: String| preset_error(label, reason);
        if bytes.starts_with(b"PK\x03\x04") {
            let pt = torch_zip::read(bytes).map_err(|refusal| {
                let path = label.to_string();
                match refusal {
                    torch_zip::Refusal::Invalid(reason) => fail(reason),
                    torch_zip::Refusal::Overlap(reason) => {
                        PresetError::OverlappingEntries { path, reason }
                    }
                    torch_zip::Refusal::Budget(reason) => {
                        PresetError::AllocationBudget { path, reason }
                    }
                }
            })?;
            Ok(Self {
                entries: pt.entries,
                label: label.to_string(),
                format: PresetFormat::TorchZip,
                zip_root: Some(pt.root),
                source: Some(source.to_string()),
                source_sha256: Some(sha256_hex(bytes)),
            })
        } else if looks_like_safetensors(bytes) {
            let mut flat = flat::read(bytes).map_err(fail)?;
            Ok(Self {
                entries: flat.entries,
                label: label.to_string(),
                format: PresetFormat::FlatSafetensors,
                zip_root: None,
                source: flat.metadata.remove("source"),
                source_sha256: flat.metadata.remove("source_sha256"),
            })
        } else {
            Err(fail(
                "neither a torch zip (.pt) nor a safetensors file".into(),
            ))
        }
    }

    /// Encodes the flat safetensors form (metadata: format, source, source_sha256, lengths).
    pub fn to_flat_bytes(&self) -> Result<Vec<u8>> {
        let metadata: HashMap<String, String> = [
            ("source", &self.source),
            ("source_sha256", &self.source_sha256),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect();
        flat::encode(&self.entries, metadata).map_err(|reason| preset_error(&self.label, reason))
    }

    /// Writes the flat safetensors form to `path`.
    pub fn save_flat(&self, path: &Path) -> Result<()> {
        let bytes = self.to_flat_bytes()?;
        std::fs::write(path, bytes).map_err(|source| PresetError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// One of the four entries.
    pub fn entry(&self, kind: EntryKind) -> &PresetEntry {
        match kind {
            EntryKind::Lm => &self.entries[0],
            EntryKind::TtsLm => &self.entries[1],
            EntryKind::NegLm => &self.entries[2],
            EntryKind::NegTtsLm => &self.entries[3],
        }
    }

    /// The entries with their kinds, in file order.
    pub fn entries(&self) -> impl Iterator<Item = (EntryKind, &PresetEntry)> {
        EntryKind::ALL.into_iter().zip(&self.entries)
    }

    /// Lower-LM prefill of the voice prompt (its length is Lp).
    pub fn lm(&self) -> &PresetEntry {
        self.entry(EntryKind::Lm)
    }

    /// TTS-LM prefill of the voice prompt (its length is Tp).
    pub fn tts_lm(&self) -> &PresetEntry {
        self.entry(EntryKind::TtsLm)
    }

    /// Lower-LM prefill of the negative prompt.
    pub fn neg_lm(&self) -> &PresetEntry {
        self.entry(EntryKind::NegLm)
    }

    /// TTS-LM prefill of the negative prompt.
    pub fn neg_tts_lm(&self) -> &PresetEntry {
        self.entry(EntryKind::NegTtsLm)
    }

    /// The file path or name the preset was read from (used in error messages).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The container the preset was read from.
    pub fn format(&self) -> PresetFormat {
        self.format
    }

    /// The `.pt` archive's root folder (e.g. `Wayne`); `None` for safetensors.
    pub fn zip_root(&self) -> Option<&str> {
        self.zip_root.as_deref()
    }

    /// The `.pt` file name this preset came from, when known.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// SHA-256 (hex) of the `.pt` file this preset came from, when known.
    pub fn source_sha256(&self) -> Option<&str> {
        self.source_sha256.as_deref()
    }

    /// Checks layer counts (lm: lower layers, tts_lm: TTS layers), KV heads, head_dim and hidden
    /// size against the model's `shape`; the error names the entry and the mismatch.
    pub fn validate(&self, shape: &ModelShape) -> Result<()> {
        for (kind, entry) in self.entries() {
            let layers = if kind.is_tts() {
                shape.tts_layers
            } else {
                shape.lower_layers
            };
            let checks = [
                ("layers", entry.num_layers(), layers),
                ("KV heads", entry.kv_heads(), shape.kv_heads),
                ("head_dim", entry.head_dim(), shape.head_dim),
                ("hidden size", entry.hidden_size(), shape.hidden_size),
            ];
            for (what, got, want) in checks {
                if got != want {
                    return Err(preset_error(
                        &self.label,
                        format!(
                            "entry {} has {what} {got}, the model expects {want}",
                            kind.name()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Last row of `tts_lm.last_hidden_state`, `[H]`: the positive condition of frame 0.
    pub fn positive_condition(&self) -> Result<Tensor> {
        self.tts_lm().last_hidden_row()
    }

    /// Last row of `neg_tts_lm.last_hidden_state`, `[H]`: the negative condition of frame 0.
    pub fn negative_condition(&self) -> Result<Tensor> {
        self.neg_tts_lm().last_hidden_row()
    }

    /// Positive lower-LM cache as `(keys, values)`, each `[1, kv, Lp, hd]` per layer.
    pub fn lm_cache(&self) -> (Vec<Tensor>, Vec<Tensor>) {
        self.lm().cache()
    }

    /// Positive TTS-LM cache as `(keys, values)`, each `[1, kv, Tp, hd]` per layer.
    pub fn tts_lm_cache(&self) -> (Vec<Tensor>, Vec<Tensor>) {
        self.tts_lm().cache()
    }

    /// Negative TTS-LM cache as `(keys, values)`, each `[1, kv, 1, hd]` per layer.
    pub fn neg_tts_lm_cache(&self) -> (Vec<Tensor>, Vec<Tensor>) {
        self.neg_tts_lm().cache()
    }

    /// A copy with every tensor converted to `dtype` on `device` (origin kept).
    pub fn to_dtype_device(&self, dtype: DType, device: &Device) -> Result<Self> {
        let entries = EntryKind::try_map(|kind| self.entry(kind).to_dtype_device(dtype, device))?;
        Ok(Self {
            entries,
            ..self.clone()
        })
    }
}

fn preset_error(label: &str, reason: String) -> PresetError {
    PresetError::Invalid {
        path: label.to_string(),
        reason,
    }
}

/// A safetensors file starts with a little-endian u64 header length and a JSON object.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return false;
    };
    let header_len = u64::from_le_bytes(*len);
    rest.first() == Some(&b'{') && header_len <= rest.len() as u64
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
