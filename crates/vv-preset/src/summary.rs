//! What `vibevoice-rt voices inspect` shows about a preset, and `.pt` → flat conversion.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::{PresetEntry, PresetFormat, VoicePreset};
use crate::error::Result;

/// Shapes and lengths of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntrySummary {
    /// `lm`, `tts_lm`, `neg_lm` or `neg_tts_lm`.
    pub name: &'static str,
    /// Cache length L.
    pub seen_tokens: usize,
    /// Number of cached layers.
    pub num_layers: usize,
    /// Storage dtype (`bf16`, `f32`, ...).
    pub dtype: &'static str,
    /// `[1, L, H]`.
    pub last_hidden_state: Vec<usize>,
    /// `[1, kv, L, hd]`, the shape of every key and every value tensor.
    pub key_value: Vec<usize>,
}

/// Everything `voices inspect` reports about a preset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresetSummary {
    /// Container the preset was read from.
    pub format: PresetFormat,
    /// The `.pt` archive's root folder; `null` for safetensors.
    pub zip_root: Option<String>,
    /// The `.pt` file the preset came from, when known.
    pub source: Option<String>,
    /// SHA-256 of that `.pt` file, when known.
    pub source_sha256: Option<String>,
    /// The four entries in file order.
    pub entries: Vec<EntrySummary>,
}

impl EntrySummary {
    fn of(name: &'static str, entry: &PresetEntry) -> Self {
        Self {
            name,
            seen_tokens: entry.seen_tokens(),
            num_layers: entry.num_layers(),
            dtype: entry.dtype().as_str(),
            last_hidden_state: entry.last_hidden_state().dims().to_vec(),
            key_value: entry.kv_shape().to_vec(),
        }
    }
}

impl VoicePreset {
    /// The summary of this preset.
    pub fn summary(&self) -> PresetSummary {
        PresetSummary {
            format: self.format(),
            zip_root: self.zip_root().map(str::to_string),
            source: self.source().map(str::to_string),
            source_sha256: self.source_sha256().map(str::to_string),
            entries: self
                .entries()
                .map(|(kind, entry)| EntrySummary::of(kind.name(), entry))
                .collect(),
        }
    }
}

impl PresetSummary {
    /// A human-readable report: a header and one table row per entry.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        // Writing to a String cannot fail.
        let _ = writeln!(out, "format:   {}", self.format.as_str());
        let _ = writeln!(out, "zip root: {}", or_dash(&self.zip_root));
        let _ = writeln!(out, "source:   {}", or_dash(&self.source));
        let _ = writeln!(out, "sha256:   {}", or_dash(&self.source_sha256));
        let _ = writeln!(
            out,
            "\n{:<11} {:>6} {:>6}  {:<5}  {:<18}  key/value",
            "entry", "tokens", "layers", "dtype", "last_hidden_state"
        );
        for e in &self.entries {
            let hidden = format!("{:?}", e.last_hidden_state);
            let _ = writeln!(
                out,
                "{:<11} {:>6} {:>6}  {:<5}  {hidden:<18}  {:?}",
                e.name, e.seen_tokens, e.num_layers, e.dtype, e.key_value,
            );
        }
        out
    }
}

/// Converts a preset (usually a `.pt`) to the flat safetensors form at `output`, reads the
/// written file back, and returns the summary of what was written.
pub fn convert(input: &Path, output: &Path) -> Result<PresetSummary> {
    let preset = VoicePreset::load(input)?;
    preset.save_flat(output)?;
    let written = VoicePreset::load(output)?;
    tracing::info!(
        input = %input.display(),
        output = %output.display(),
        "converted voice preset"
    );
    Ok(written.summary())
}
