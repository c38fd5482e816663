//! Reader for the official `.pt` voice presets: the `torch.save` zip container, its `data.pkl`
//! decoded by the data-only pickle interpreter, and tensors rebuilt stride-aware from the raw
//! storages under `<root>/data/`.

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

/// Decodes a whole `.pt` file held in memory.
pub(super) fn read(bytes: &[u8]) -> Result<TorchPreset, String> {
    let mut archive = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable zip archive: {e}"))?;
    let root = find_root(&archive)?;
    let byteorder = read_member(&mut archive, &format!("{root}/byteorder"), bytes.len())?;
    if byteorder.trim_ascii() != b"little" {
        return Err(format!(
            "byteorder is {:?}, only little-endian presets are supported",
            String::from_utf8_lossy(&byteorder)
        ));
    }
    let pkl = read_member(&mut archive, &format!("{root}/data.pkl"), bytes.len())?;
    let pickle = Pickle::parse(&pkl)?;
    let mut loader = TensorLoader {
        archive,
        root: root.clone(),
        pickle: &pickle,
        storages: HashMap::new(),
        file_len: bytes.len(),
        budget: bytes.len(),
    };
    let entries = EntryKind::try_map(|kind| {
        loader
            .entry(kind)
            .map_err(|e| format!("entry {}: {e}", kind.name()))
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

/// Reads one archive member, refusing anything larger than `limit` bytes.
fn read_member<R: Read + std::io::Seek>(
    archive: &mut ZipArchive<R>,
    name: &str,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut file = archive
        .by_name(name)
        .map_err(|e| format!("archive member {name}: {e}"))?;
    let size = usize::try_from(file.size()).unwrap_or(usize::MAX);
    if size > limit {
        return Err(format!(
            "archive member {name} claims {size} bytes, more than the file holds"
        ));
    }
    let mut data = Vec::with_capacity(size);
    (&mut file)
        .take(limit as u64)
        .read_to_end(&mut data)
        .map_err(|e| format!("archive member {name}: {e}"))?;
    Ok(data)
}

/// Turns pickled tensor specs into candle tensors, reading each storage once.
struct TensorLoader<'p, R> {
    archive: ZipArchive<R>,
    root: String,
    pickle: &'p Pickle,
    storages: HashMap<Rc<str>, Vec<u8>>,
    /// Size of the whole file: no member can be larger.
    file_len: usize,
    /// Bytes still allowed for rebuilt tensors: a preset's tensors never outgrow its file, so
    /// storages referenced over and over cannot blow up memory.
    budget: usize,
}

impl<R: Read + std::io::Seek> TensorLoader<'_, R> {
    fn entry(&mut self, kind: EntryKind) -> Result<PresetEntry, String> {
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
            .map_err(|e| format!("last_hidden_state: {e}"))?;
        let cache = field(pickle, output, "past_key_values", 1)?;
        let cache = instance(pickle, cache, Global::DynamicCache, "DynamicCache")?;
        let state = match cache.state.as_ref().and_then(|s| pickle.object(s)) {
            Some(Object::Dict(items)) => items,
            _ => return Err("DynamicCache has no state dict".into()),
        };
        let seen = match lookup(state, "_seen_tokens") {
            Some(Value::Int(n)) => *n,
            _ => return Err("DynamicCache._seen_tokens is missing or not an integer".into()),
        };
        let keys = self.tensor_list(state, "key_cache")?;
        let values = self.tensor_list(state, "value_cache")?;
        let entry = PresetEntry::new(hidden, keys, values)?;
        if usize::try_from(seen).ok() != Some(entry.seen_tokens()) {
            return Err(format!(
                "_seen_tokens {seen} differs from the cache length {}",
                entry.seen_tokens()
            ));
        }
        Ok(entry)
    }

    fn tensor_list(&mut self, state: &[(Value, Value)], name: &str) -> Result<Vec<Tensor>, String> {
        let pickle = self.pickle;
        let Some(Object::List(items)) = lookup(state, name).and_then(|v| pickle.object(v)) else {
            return Err(format!("DynamicCache.{name} is missing or not a list"));
        };
        items
            .iter()
            .enumerate()
            .map(|(layer, t)| self.tensor(t).map_err(|e| format!("{name}[{layer}]: {e}")))
            .collect()
    }

    fn tensor(&mut self, value: &Value) -> Result<Tensor, String> {
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
            .map_err(|e| e.to_string())
    }

    fn storage_bytes(&mut self, key: &Rc<str>, numel: usize, elem: usize) -> Result<&[u8], String> {
        if !self.storages.contains_key(key) {
            let name = format!("{}/data/{key}", self.root);
            let data = read_member(&mut self.archive, &name, self.file_len)?;
            if numel.checked_mul(elem) != Some(data.len()) {
                return Err(format!(
                    "storage {key} holds {} bytes, the pickle declares {numel} elements of {elem} bytes",
                    data.len()
                ));
            }
            self.storages.insert(key.clone(), data);
        }
        self.storages
            .get(key)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("storage {key} vanished"))
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
