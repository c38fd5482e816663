//! Reader for the official `.pt` voice presets: the `torch.save` zip container, its `data.pkl`
//! decoded by the data-only pickle interpreter, and tensors rebuilt stride-aware from the raw
//! storages under `<root>/data/`.
//!
//! A hostile file cannot make the reader allocate much more than its own size: archives whose
//! entries overlap (one entry's bytes reused as another's, the trick of zip bombs) are refused,
//! and the members read add up to at most the file's size (a cumulative budget; `torch.save`
//! stores its members uncompressed, so a real preset always fits).

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::rc::Rc;

use candle_core::{Device, Tensor};
use zip::ZipArchive;

use super::entry::{EntryKind, PresetEntry};
use super::pickle::{lookup, Global, Instance, Object, Pickle, Value};
use super::strided::StridedView;

/// The contents of a `.pt` preset.
pub(super) struct TorchPreset {
    /// The archive's root folder (arbitrary, e.g. `Wayne`).
    pub root: String,
    /// The four entries, in [`EntryKind::ALL`] order.
    pub entries: [PresetEntry; 4],
}

/// Why a `.pt` file was refused.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Not a usable preset.
    Invalid(String),
    /// Two archive entries share bytes.
    Overlap(String),
    /// The members add up to more bytes than the file holds.
    Budget(String),
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::Invalid(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Refusal::Invalid(reason.to_string())
    }
}

/// Decodes a whole `.pt` file held in memory.
pub(super) fn read(bytes: &[u8]) -> Result<TorchPreset, Refusal> {
    let mut archive = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable zip archive: {e}"))?;
    refuse_overlaps(&mut archive)?;
    let root = find_root(&archive)?;
    let mut budget = bytes.len();
    let byteorder = read_member(&mut archive, &format!("{root}/byteorder"), &mut budget)?;
    if byteorder.trim_ascii() != b"little" {
        return Err(format!(
            "byteorder is {:?}, only little-endian presets are supported",
            String::from_utf8_lossy(&byteorder)
        )
        .into());
    }
    let pkl = read_member(&mut archive, &format!("{root}/data.pkl"), &mut budget)?;
    let pickle = Pickle::parse(&pkl)?;
    let mut loader = TensorLoader {
        archive,
        root: root.clone(),
        pickle: &pickle,
        storages: HashMap::new(),
        read_budget: budget,
        budget: bytes.len(),
    };
    let entries = EntryKind::try_map(|kind| {
        loader.entry(kind).map_err(|e| match e {
            Refusal::Invalid(e) => Refusal::Invalid(format!("entry {}: {e}", kind.name())),
            other => other,
        })
    })?;
    tracing::debug!(root = %root, storages = loader.storages.len(), "read torch voice preset");
    Ok(TorchPreset { root, entries })
}

/// The unique top-level folder holding a `data.pkl`.
fn find_root<R: Read + std::io::Seek>(archive: &ZipArchive<R>) -> Result<String, String> {
    let mut roots = archive.file_names_raw().filter_map(|name| {
        let root = name.strip_suffix(b"/data.pkl")?;
        (!root.is_empty() && !root.contains(&b'/')).then_some(root)
    });
    let root = roots.next().ok_or("no <root>/data.pkl in the archive")?;
    if roots.next().is_some() {
        return Err("more than one <root>/data.pkl in the archive".into());
    }
    String::from_utf8(root.to_vec()).map_err(|_| "archive root folder is not UTF-8".into())
}

/// Refuses an archive in which two entries (local header and data) share bytes.
fn refuse_overlaps<R: Read + std::io::Seek>(archive: &mut ZipArchive<R>) -> Result<(), Refusal> {
    let mut spans = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let file = archive
            .by_index_raw(i)
            .map_err(|e| format!("archive entry {i}: {e}"))?;
        let start = file.header_start();
        let end = file
            .data_start()
            .unwrap_or(start)
            .saturating_add(file.compressed_size());
        spans.push((start, end, i));
    }
    spans.sort_unstable();
    match spans.windows(2).find(|w| w[1].0 < w[0].1) {
        Some(w) => Err(Refusal::Overlap(format!(
            "archive entries {} and {} overlap",
            w[0].2, w[1].2
        ))),
        None => Ok(()),
    }
}

/// Reads one archive member, charging its size to `budget` (bytes still allowed for members).
fn read_member<R: Read + std::io::Seek>(
    archive: &mut ZipArchive<R>,
    name: &str,
    budget: &mut usize,
) -> Result<Vec<u8>, Refusal> {
    let mut file = archive
        .by_name(name)
        .map_err(|e| format!("archive member {name}: {e}"))?;
    let size = usize::try_from(file.size()).unwrap_or(usize::MAX);
    if size > *budget {
        return Err(Refusal::Budget(format!(
            "archive member {name} claims {size} bytes: the members would add up to more than \
             the file holds"
        )));
    }
    let mut data = Vec::with_capacity(size);
    (&mut file)
        .take(*budget as u64)
        .read_to_end(&mut data)
        .map_err(|e| format!("archive member {name}: {e}"))?;
    *budget -= data.len();
    Ok(data)
}

/// Turns pickled tensor specs into candle tensors, reading each storage once.
struct TensorLoader<'p, R> {
    archive: ZipArchive<R>,
    root: String,
    pickle: &'p Pickle,
    storages: HashMap<Rc<str>, Vec<u8>>,
    /// Bytes still allowed for members read (all of them together fit the file).
    read_budget: usize,
    /// Bytes still allowed for rebuilt tensors: a preset's tensors never outgrow its file, so
    /// storages referenced over and over cannot blow up memory.
    budget: usize,
}

impl<R: Read + std::io::Seek> TensorLoader<'_, R> {
    fn entry(&mut self, kind: EntryKind) -> Result<PresetEntry, Refusal> {
        let pickle = self.pickle;
        let Some(Object::Dict(top)) = pickle.object(pickle.root()) else {
            return Err("the pickle's top level is not a dict".into());
        };
        let output = lookup(top, kind.name()).ok_or("missing")?;
        let output = instance(
            pickle,
            output,
            Global::ModelOutput,
            "BaseModelOutputWithPast",
        )?;
        let hidden = field(pickle, output, "last_hidden_state", 0)?;
        let hidden = self
            .tensor(hidden)
            .map_err(|e| prefix("last_hidden_state", e))?;
        let cache = field(pickle, output, "past_key_values", 1)?;
        let cache = instance(pickle, cache, Global::DynamicCache, "DynamicCache")?;
        let state = match cache.state.as_ref().and_then(|s| pickle.object(s)) {
            Some(Object::Dict(items)) => items,
            _ => return Err("DynamicCache has no state dict".into()),
        };
        let seen = match lookup(state, "_seen_tokens") {
            Some(Value::Int(n)) => *n,
            _ => {
                return Err("DynamicCache._seen_tokens is missing or not an integer".into());
            }
        };
        let keys = self.tensor_list(state, "key_cache")?;
        let values = self.tensor_list(state, "value_cache")?;
        let entry = PresetEntry::new(hidden, keys, values)?;
        if usize::try_from(seen).ok() != Some(entry.seen_tokens()) {
            return Err(format!(
                "_seen_tokens {seen} differs from the cache length {}",
                entry.seen_tokens()
            )
            .into());
        }
        Ok(entry)
    }

    fn tensor_list(
        &mut self,
        state: &[(Value, Value)],
        name: &str,
    ) -> Result<Vec<Tensor>, Refusal> {
        let pickle = self.pickle;
        let Some(Object::List(items)) = lookup(state, name).and_then(|v| pickle.object(v)) else {
            return Err(format!("DynamicCache.{name} is missing or not a list").into());
        };
        items
            .iter()
            .enumerate()
            .map(|(layer, t)| {
                self.tensor(t)
                    .map_err(|e| prefix(&format!("{name}[{layer}]"), e))
            })
            .collect()
    }

    fn tensor(&mut self, value: &Value) -> Result<Tensor, Refusal> {
        let pickle = self.pickle;
        let Some(Object::Tensor(spec)) = pickle.object(value) else {
            return Err("not a tensor".into());
        };
        let Some(Object::Storage(storage)) = pickle.get(spec.storage) else {
            return Err("tensor without a storage".into());
        };
        let view = StridedView {
            offset: spec.offset,
            size: &spec.size,
            stride: &spec.stride,
        };
        let elem = storage.dtype.size();
        let bytes = view
            .numel()?
            .checked_mul(elem)
            .filter(|&n| n <= self.budget)
            .ok_or("tensors add up to more bytes than the file holds")?;
        self.budget -= bytes;
        let data = self.storage_bytes(&storage.key, storage.numel, elem)?;
        let flat = view.gather(data, elem)?;
        Tensor::from_raw_buffer(&flat, storage.dtype.dtype(), &spec.size, &Device::Cpu)
            .map_err(|e| Refusal::Invalid(e.to_string()))
    }

    fn storage_bytes(
        &mut self,
        key: &Rc<str>,
        numel: usize,
        elem: usize,
    ) -> Result<&[u8], Refusal> {
        if !self.storages.contains_key(key) {
            let name = format!("{}/data/{key}", self.root);
            let data = read_member(&mut self.archive, &name, &mut self.read_budget)?;
            if numel.checked_mul(elem) != Some(data.len()) {
                return Err(Refusal::Invalid(format!(
                    "storage {key} holds {} bytes, the pickle declares {numel} elements of {elem} bytes",
                    data.len()
                )));
            }
            self.storages.insert(key.clone(), data);
        }
        self.storages
            .get(key)
            .map(Vec::as_slice)
            .ok_or_else(|| Refusal::Invalid(format!("storage {key} vanished")))
    }
}

/// `e` with `what` before its reason (a refusal of the whole file stays as it is).
fn prefix(what: &str, e: Refusal) -> Refusal {
    match e {
        Refusal::Invalid(e) => Refusal::Invalid(format!("{what}: {e}")),
        other => other,
    }
}

/// The object `value` refers to, if it is an instance of `class`.
fn instance<'p>(
    pickle: &'p Pickle,
    value: &Value,
    class: Global,
    what: &str,
) -> Result<&'p Instance, String> {
    match pickle.object(value) {
        Some(Object::Instance(inst)) if inst.class == class => Ok(inst),
        _ => Err(format!("expected a {what}")),
    }
}

/// A field of a model output: its `__setitem__` items, then its `__dict__` state, then the
/// positional constructor argument.
fn field<'p>(
    pickle: &'p Pickle,
    inst: &'p Instance,
    name: &str,
    position: usize,
) -> Result<&'p Value, String> {
    let state = match inst.state.as_ref().and_then(|s| pickle.object(s)) {
        Some(Object::Dict(items)) => Some(items),
        _ => None,
    };
    let positional = match pickle.object(&inst.args) {
        Some(Object::Tuple(args)) => args.get(position),
        _ => None,
    };
    lookup(&inst.items, name)
        .or_else(|| state.and_then(|items| lookup(items, name)))
        .or(positional)
        .ok_or_else(|| format!("{name} is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32 (IEEE) of `data`.
    fn crc32(data: &[u8]) -> u32 {
        !data.iter().fold(!0u32, |mut crc, &b| {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
            crc
        })
    }

    /// A stored member's local header and data.
    fn local(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend(crc32(data).to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(name.as_bytes());
        out.extend(data);
        out
    }

    /// A zip of `body` with a central directory naming `(name, size, offset)` entries.
    fn archive(body: Vec<u8>, entries: &[(&str, usize, usize)]) -> Vec<u8> {
        let mut out = body;
        let cd_start = out.len();
        for (name, size, offset) in entries {
            let crc = u32::from_le_bytes(out[offset + 14..offset + 18].try_into().unwrap());
            out.extend(0x0201_4b50u32.to_le_bytes());
            out.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend(crc.to_le_bytes());
            out.extend((*size as u32).to_le_bytes());
            out.extend((*size as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend([0; 8]);
            out.extend(0u32.to_le_bytes());
            out.extend((*offset as u32).to_le_bytes());
            out.extend(name.as_bytes());
        }
        let cd_len = out.len() - cd_start;
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0; 4]);
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((cd_len as u32).to_le_bytes());
        out.extend((cd_start as u32).to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    #[test]
    fn overlapping_entries_are_refused_with_their_own_code() {
        // The storage's entry lies inside the data of `data.pkl`: its bytes count twice.
        let inner = local("t/data/0", &[7; 64]);
        let outer = local("t/data.pkl", &inner);
        let inner_at = outer.len() - inner.len();
        let (outer_len, inner_len) = (inner.len(), 64);
        let bytes = archive(
            outer,
            &[
                ("t/data.pkl", outer_len, 0),
                ("t/data/0", inner_len, inner_at),
            ],
        );
        let err = crate::VoicePreset::from_bytes(&bytes, "bomb.pt").unwrap_err();
        assert_eq!(err.code(), "overlapping_zip_entries", "{err}");
        // The same members side by side are not refused for overlap.
        let (a, b) = (local("t/data.pkl", b"x"), local("t/data/0", &[7; 64]));
        let at = a.len();
        let bytes = archive(
            [a, b].concat(),
            &[("t/data.pkl", 1, 0), ("t/data/0", 64, at)],
        );
        let err = crate::VoicePreset::from_bytes(&bytes, "ok.pt").unwrap_err();
        assert_eq!(err.code(), "invalid_voice_preset", "{err}");
    }

    #[test]
    fn members_read_are_charged_to_one_budget() {
        let (a, b) = (local("t/a", &[1; 100]), local("t/b", &[2; 100]));
        let at = a.len();
        let bytes = archive([a, b].concat(), &[("t/a", 100, 0), ("t/b", 100, at)]);
        let mut zip = ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
        let mut budget = 150;
        assert_eq!(
            read_member(&mut zip, "t/a", &mut budget).unwrap().len(),
            100
        );
        assert_eq!(budget, 50);
        let refused = read_member(&mut zip, "t/b", &mut budget).unwrap_err();
        assert!(matches!(refused, Refusal::Budget(_)), "{refused:?}");
    }
}
