//! One prefill stored in a voice preset: its last hidden states and its per-layer KV cache.

use candle_core::{DType, Device, Tensor};

use crate::error::{PresetError, Result};

/// Dtypes a preset's tensors may have.
const SUPPORTED_DTYPES: [DType; 4] = [DType::BF16, DType::F16, DType::F32, DType::F64];

/// The four prefills a preset holds, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Lower (text) LM on the voice prompt.
    Lm,
    /// TTS LM on the voice prompt (text + speech).
    TtsLm,
    /// Lower LM on the one-token negative prompt.
    NegLm,
    /// TTS LM on the one-token negative prompt.
    NegTtsLm,
}

impl EntryKind {
    /// All entries, in the order of the file and of [`EntryKind::name`].
    pub const ALL: [EntryKind; 4] = [
        EntryKind::Lm,
        EntryKind::TtsLm,
        EntryKind::NegLm,
        EntryKind::NegTtsLm,
    ];

    /// The key of the entry in the `.pt` dict and the prefix of its flat tensor names.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Lm => "lm",
            EntryKind::TtsLm => "tts_lm",
            EntryKind::NegLm => "neg_lm",
            EntryKind::NegTtsLm => "neg_tts_lm",
        }
    }

    /// True for the TTS-LM caches (which have the TTS layer count), false for the lower LM.
    pub fn is_tts(self) -> bool {
        matches!(self, EntryKind::TtsLm | EntryKind::NegTtsLm)
    }

    /// Position in [`EntryKind::ALL`].
    pub(super) fn index(self) -> usize {
        match self {
            EntryKind::Lm => 0,
            EntryKind::TtsLm => 1,
            EntryKind::NegLm => 2,
            EntryKind::NegTtsLm => 3,
        }
    }

    /// Builds one value per entry, stopping at the first error.
    pub(super) fn try_map<T, E>(
        mut f: impl FnMut(EntryKind) -> std::result::Result<T, E>,
    ) -> std::result::Result<[T; 4], E> {
        Ok([
            f(EntryKind::Lm)?,
            f(EntryKind::TtsLm)?,
            f(EntryKind::NegLm)?,
            f(EntryKind::NegTtsLm)?,
        ])
    }
}

/// A validated prefill: `last_hidden_state` `[1, L, H]`, keys and values `[1, kv, L, hd]` per layer,
/// all contiguous and of one dtype.
#[derive(Debug, Clone)]
pub struct PresetEntry {
    last_hidden_state: Tensor,
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
}

impl PresetEntry {
    /// Checks the shapes and dtypes (the reason names the offending tensor) and makes every tensor
    /// contiguous.
    pub(super) fn new(
        last_hidden_state: Tensor,
        keys: Vec<Tensor>,
        values: Vec<Tensor>,
    ) -> std::result::Result<Self, String> {
        let len = match last_hidden_state.dims() {
            &[1, len, hidden] if len > 0 && hidden > 0 => len,
            other => {
                return Err(format!(
                    "last_hidden_state has shape {other:?}, expected [1, L, H] with L, H > 0"
                ))
            }
        };
        if keys.is_empty() || keys.len() != values.len() {
            return Err(format!(
                "{} key and {} value tensors (need the same positive count)",
                keys.len(),
                values.len()
            ));
        }
        let dtype = last_hidden_state.dtype();
        if !SUPPORTED_DTYPES.contains(&dtype) {
            return Err(format!(
                "last_hidden_state is {dtype:?}; presets hold bf16, f16, f32 or f64 tensors"
            ));
        }
        let expected = match keys.first().map(|k| k.dims()) {
            Some(&[1, kv, l, hd]) if kv > 0 && hd > 0 && l == len => [1, kv, len, hd],
            other => {
                return Err(format!(
                    "past_key_values/0/key has shape {other:?}, expected [1, kv, {len}, head_dim]"
                ))
            }
        };
        for (layer, (k, v)) in keys.iter().zip(&values).enumerate() {
            for (what, t) in [("key", k), ("value", v)] {
                if t.dims() != expected {
                    return Err(format!(
                        "past_key_values/{layer}/{what} has shape {:?}, expected {expected:?}",
                        t.dims()
                    ));
                }
                if t.dtype() != dtype {
                    return Err(format!(
                        "past_key_values/{layer}/{what} is {:?} but last_hidden_state is {dtype:?}",
                        t.dtype()
                    ));
                }
            }
        }
        let contiguous = |ts: Vec<Tensor>| -> std::result::Result<Vec<Tensor>, String> {
            ts.into_iter()
                .map(|t| t.contiguous().map_err(|e| e.to_string()))
                .collect()
        };
        Ok(Self {
            last_hidden_state: last_hidden_state.contiguous().map_err(|e| e.to_string())?,
            keys: contiguous(keys)?,
            values: contiguous(values)?,
        })
    }

    /// `[1, L, H]`.
    pub fn last_hidden_state(&self) -> &Tensor {
        &self.last_hidden_state
    }

    /// Per-layer keys (post-RoPE), each `[1, kv, L, hd]`.
    pub fn keys(&self) -> &[Tensor] {
        &self.keys
    }

    /// Per-layer values, each `[1, kv, L, hd]`.
    pub fn values(&self) -> &[Tensor] {
        &self.values
    }

    /// Cache length L (positions 0..L-1 are filled).
    pub fn seen_tokens(&self) -> usize {
        self.last_hidden_state.dims().get(1).copied().unwrap_or(0)
    }

    /// Number of cached layers.
    pub fn num_layers(&self) -> usize {
        self.keys.len()
    }

    /// Hidden size H.
    pub fn hidden_size(&self) -> usize {
        self.last_hidden_state.dims().get(2).copied().unwrap_or(0)
    }

    /// Shape `[1, kv, L, hd]` shared by every key and value tensor.
    pub fn kv_shape(&self) -> &[usize] {
        self.keys.first().map(|k| k.dims()).unwrap_or_default()
    }

    /// Number of KV heads.
    pub fn kv_heads(&self) -> usize {
        self.kv_shape().get(1).copied().unwrap_or(0)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.kv_shape().get(3).copied().unwrap_or(0)
    }

    /// Storage dtype of every tensor of the entry.
    pub fn dtype(&self) -> DType {
        self.last_hidden_state.dtype()
    }

    /// The cache as `(keys, values)`, one `[1, kv, L, hd]` tensor per layer (cheap clones).
    pub fn cache(&self) -> (Vec<Tensor>, Vec<Tensor>) {
        (self.keys.clone(), self.values.clone())
    }

    /// The last row of `last_hidden_state`, as `[H]`.
    pub fn last_hidden_row(&self) -> Result<Tensor> {
        let len = self.seen_tokens();
        Ok(self.last_hidden_state.get(0)?.get(len - 1)?)
    }

    /// Converts every tensor (the shapes stay valid; `dtype` must be a float type presets hold).
    pub fn to_dtype_device(&self, dtype: DType, device: &Device) -> Result<Self> {
        if !SUPPORTED_DTYPES.contains(&dtype) {
            return Err(PresetError::InvalidInput(format!(
                "voice presets cannot be converted to {dtype:?}"
            )));
        }
        let convert = |t: &Tensor| -> Result<Tensor> { Ok(t.to_device(device)?.to_dtype(dtype)?) };
        Ok(Self {
            last_hidden_state: convert(&self.last_hidden_state)?,
            keys: self.keys.iter().map(convert).collect::<Result<_>>()?,
            values: self.values.iter().map(convert).collect::<Result<_>>()?,
        })
    }
}
