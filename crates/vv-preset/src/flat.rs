//! The flat safetensors form of a voice preset (`vibevoice-voice-preset-flat-v1`):
//! `{entry}/last_hidden_state` and `{entry}/past_key_values/{layer}/{key,value}`, row-major, in
//! the preset's own dtype, with `format`, `{entry}.seen_tokens` and `{entry}.num_layers` metadata.

use std::collections::{BTreeMap, HashMap};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor, WithDType};
use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;

use super::entry::{EntryKind, PresetEntry};

/// Value of the `format` metadata key.
pub const FLAT_FORMAT: &str = "vibevoice-voice-preset-flat-v1";

/// The contents of a flat preset file.
pub(super) struct FlatPreset {
    /// The four entries, in [`EntryKind::ALL`] order.
    pub entries: [PresetEntry; 4],
    /// The file's metadata (always holds `format`).
    pub metadata: HashMap<String, String>,
}

/// Where one tensor of the flat naming belongs.
enum Slot {
    Hidden,
    Key(usize),
    Value(usize),
}

/// The tensors of one entry collected while scanning the file.
#[derive(Default)]
struct EntryTensors {
    hidden: Option<Tensor>,
    layers: BTreeMap<usize, (Option<Tensor>, Option<Tensor>)>,
}

/// Decodes a flat preset held in memory.
pub(super) fn read(bytes: &[u8]) -> Result<FlatPreset, String> {
    let file =
        SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    match metadata.get("format") {
        Some(f) if f == FLAT_FORMAT => {}
        other => {
            return Err(format!(
                "metadata format is {other:?}, expected {FLAT_FORMAT:?}"
            ))
        }
    }
    let mut groups: [EntryTensors; 4] = Default::default();
    for (name, view) in file.tensors() {
        let (kind, slot) = parse_name(&name)?;
        let tensor = view
            .load(&Device::Cpu)
            .map_err(|e| format!("tensor {name}: {e}"))?;
        let group = groups
            .get_mut(kind.index())
            .ok_or_else(|| format!("tensor {name}: no entry slot"))?;
        match slot {
            Slot::Hidden => group.hidden = Some(tensor),
            Slot::Key(layer) => group.layers.entry(layer).or_default().0 = Some(tensor),
            Slot::Value(layer) => group.layers.entry(layer).or_default().1 = Some(tensor),
        }
    }
    let mut groups = groups.into_iter();
    let entries = EntryKind::try_map(|kind| {
        let group = groups.next().unwrap_or_default();
        build_entry(kind, group, &metadata).map_err(|e| format!("entry {}: {e}", kind.name()))
    })?;
    Ok(FlatPreset { entries, metadata })
}

/// Splits a tensor name of the flat naming into its entry and slot.
fn parse_name(name: &str) -> Result<(EntryKind, Slot), String> {
    let unknown = || format!("unexpected tensor name {name:?}");
    let (prefix, rest) = name.split_once('/').ok_or_else(unknown)?;
    let kind = EntryKind::ALL
        .into_iter()
        .find(|k| k.name() == prefix)
        .ok_or_else(unknown)?;
    if rest == "last_hidden_state" {
        return Ok((kind, Slot::Hidden));
    }
    let (layer, which) = rest
        .strip_prefix("past_key_values/")
        .and_then(|r| r.split_once('/'))
        .ok_or_else(unknown)?;
    let index = layer
        .parse::<usize>()
        .ok()
        .filter(|i| i.to_string() == layer)
        .ok_or_else(unknown)?;
    match which {
        "key" => Ok((kind, Slot::Key(index))),
        "value" => Ok((kind, Slot::Value(index))),
        _ => Err(unknown()),
    }
}

fn build_entry(
    kind: EntryKind,
    group: EntryTensors,
    metadata: &HashMap<String, String>,
) -> Result<PresetEntry, String> {
    let hidden = group.hidden.ok_or("last_hidden_state is missing")?;
    let mut keys = Vec::with_capacity(group.layers.len());
    let mut values = Vec::with_capacity(group.layers.len());
    for (expected, (layer, (key, value))) in group.layers.into_iter().enumerate() {
        if layer != expected {
            return Err(format!("past_key_values/{expected} is missing"));
        }
        keys.push(key.ok_or_else(|| format!("past_key_values/{layer}/key is missing"))?);
        values.push(value.ok_or_else(|| format!("past_key_values/{layer}/value is missing"))?);
    }
    let entry = PresetEntry::new(hidden, keys, values)?;
    for (suffix, actual) in [
        ("seen_tokens", entry.seen_tokens()),
        ("num_layers", entry.num_layers()),
    ] {
        let key = format!("{}.{suffix}", kind.name());
        if let Some(text) = metadata.get(&key) {
            if text.parse::<usize>().ok() != Some(actual) {
                return Err(format!(
                    "metadata {key} = {text:?} but the tensors say {actual}"
                ));
            }
        }
    }
    Ok(entry)
}

/// Encodes the entries with the given metadata (to which `format`, `{entry}.seen_tokens` and
/// `{entry}.num_layers` are added).
pub(super) fn encode(
    entries: &[PresetEntry; 4],
    mut metadata: HashMap<String, String>,
) -> Result<Vec<u8>, String> {
    metadata.insert("format".into(), FLAT_FORMAT.into());
    let mut named = Vec::new();
    for (kind, entry) in EntryKind::ALL.into_iter().zip(entries) {
        let name = kind.name();
        metadata.insert(
            format!("{name}.seen_tokens"),
            entry.seen_tokens().to_string(),
        );
        metadata.insert(format!("{name}.num_layers"), entry.num_layers().to_string());
        named.push((
            format!("{name}/last_hidden_state"),
            entry.last_hidden_state(),
        ));
        for (layer, (k, v)) in entry.keys().iter().zip(entry.values()).enumerate() {
            named.push((format!("{name}/past_key_values/{layer}/key"), k));
            named.push((format!("{name}/past_key_values/{layer}/value"), v));
        }
    }
    let encoded = named
        .into_iter()
        .map(|(name, t)| Ok((name, t.dtype(), t.dims().to_vec(), le_bytes(t)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let views = encoded
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new((*dtype).into(), shape.clone(), data)
                .map(|view| (name.as_str(), view))
                .map_err(|e| format!("tensor {name}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

/// The tensor's elements, row-major, little-endian.
pub(crate) fn le_bytes(t: &Tensor) -> Result<Vec<u8>, String> {
    fn encode<T: WithDType, const N: usize>(
        t: &Tensor,
        to_bytes: fn(T) -> [u8; N],
    ) -> candle_core::Result<Vec<u8>> {
        Ok(t.to_vec1::<T>()?.into_iter().flat_map(to_bytes).collect())
    }
    let flat = t
        .flatten_all()
        .and_then(|f| f.to_device(&Device::Cpu))
        .map_err(|e| e.to_string())?;
    match t.dtype() {
        DType::BF16 => encode(&flat, bf16::to_le_bytes),
        DType::F16 => encode(&flat, f16::to_le_bytes),
        DType::F32 => encode(&flat, f32::to_le_bytes),
        DType::F64 => encode(&flat, f64::to_le_bytes),
        other => return Err(format!("cannot store {other:?} tensors")),
    }
    .map_err(|e| e.to_string())
}
