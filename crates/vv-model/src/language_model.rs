//! The two halves of the split Qwen2 backbone: the lower text LM and the upper TTS LM.
//!
//! Both constructors take the checkpoint's `model` scope (`root_vb.pp("model")`): the lower LM
//! reads `language_model.*`, the TTS LM reads `tts_language_model.*` and `tts_input_types.weight`.
//! The TTS LM never loads `tts_language_model.embed_tokens.weight` (unused by the reference).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::VibeVoiceConfig;
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::linear::Packing;
use crate::qwen2::{split_rows, tensor, Qwen2Stack};

/// Lower LM (`model.language_model`): token embedding + `lower_layers()` layers, no final norm.
/// Sees text tokens only; its output is the raw residual stream.
#[derive(Debug, Clone)]
pub struct TextLm {
    /// `[vocab_size, hidden_size]`: the compute dtype, or bf16 when packed (see
    /// [`Packing`]; rows are cast to the compute dtype on lookup).
    embed_tokens: Tensor,
    stack: Qwen2Stack,
}

impl TextLm {
    /// Loads `language_model.embed_tokens.weight` and `language_model.layers.*` under `vb`
    /// (the checkpoint's `model` scope), the embedding table and projections stored as
    /// `packing` says.
    pub fn new(cfg: &VibeVoiceConfig, vb: VarBuilder, packing: Packing) -> Result<Self> {
        let d = &cfg.decoder_config;
        let vb = vb.pp("language_model");
        let embed_tokens = packing.table(tensor(
            &vb.pp("embed_tokens"),
            (d.vocab_size, d.hidden_size),
            "weight",
        )?)?;
        let stack = Qwen2Stack::new(d, cfg.lower_layers(), false, vb, packing)?;
        Ok(Self {
            embed_tokens,
            stack,
        })
    }

    /// The decoder layers.
    pub fn stack(&self) -> &Qwen2Stack {
        &self.stack
    }

    /// An empty cache for one text stream.
    pub fn new_cache(&self) -> KvCache {
        self.stack.new_cache()
    }

    /// Embedding rows `[n, hidden]` of `ids`; ids outside the vocabulary are rejected.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        self.check_ids(ids)?;
        self.embed_ids(&Tensor::new(ids, self.embed_tokens.device())?)
    }

    /// Rejects ids outside the vocabulary.
    pub(crate) fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab = self.embed_tokens.dim(0)?;
        match ids.iter().find(|&&id| id as usize >= vocab) {
            Some(bad) => Err(ModelError::InvalidInput(format!(
                "token id {bad} outside the vocabulary of {vocab}"
            ))),
            None => Ok(()),
        }
    }

    /// Embedding rows of checked ids already on the device (a u32 tensor `[n]`).
    pub(crate) fn embed_ids(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self
            .embed_tokens
            .index_select(ids, 0)?
            .to_dtype(self.stack.dtype())?)
    }

    /// Runs `ids` of one stream at positions `cache.len()..`; returns `h_text` `[n, hidden]`.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        self.stack
            .forward_packed(&self.embed(ids)?, &[ids.len()], &mut [cache])
    }

    /// Several text streams together (one embedding gather, one matmul per weight).
    pub fn forward_batch(
        &self,
        ids: &[&[u32]],
        caches: &mut [&mut KvCache],
    ) -> Result<Vec<Tensor>> {
        let rows: Vec<usize> = ids.iter().map(|s| s.len()).collect();
        let all: Vec<u32> = ids.concat();
        let out = self
            .stack
            .forward_packed(&self.embed(&all)?, &rows, caches)?;
        split_rows(&out, &rows)
    }
}

/// Which `tts_input_types` row a TTS-LM input gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Connector output of a speech latent: type row 0.
    Speech,
    /// Lower-LM output of a text token: type row 1.
    Text,
}

impl InputKind {
    /// Row of `tts_input_types.weight`.
    pub fn type_row(self) -> usize {
        match self {
            InputKind::Speech => 0,
            InputKind::Text => 1,
        }
    }
}

/// One stream's new rows for the TTS LM, before the type embedding is added.
#[derive(Debug, Clone, Copy)]
pub struct TtsInput<'a> {
    /// Text or speech rows.
    pub kind: InputKind,
    /// `[n, hidden]`: lower-LM output (text) or connector output (speech).
    pub embeds: &'a Tensor,
}

impl<'a> TtsInput<'a> {
    /// Text rows (lower-LM output).
    pub fn text(embeds: &'a Tensor) -> Self {
        Self {
            kind: InputKind::Text,
            embeds,
        }
    }

    /// Speech rows (connector output).
    pub fn speech(embeds: &'a Tensor) -> Self {
        Self {
            kind: InputKind::Speech,
            embeds,
        }
    }
}

/// Upper TTS LM (`model.tts_language_model`): `tts_backbone_num_hidden_layers` layers plus the
/// final norm, fed with type-embedded text or speech rows. One instance serves the positive and
/// the negative stream of any number of utterances, each with its own cache.
#[derive(Debug, Clone)]
pub struct TtsLm {
    stack: Qwen2Stack,
    /// `tts_input_types.weight`, `[2, hidden]`.
    input_types: Tensor,
}

impl TtsLm {
    /// Loads `tts_language_model.layers.*`, `tts_language_model.norm.weight` and
    /// `tts_input_types.weight` under `vb` (the checkpoint's `model` scope), the projections
    /// stored as `packing` says.
    pub fn new(cfg: &VibeVoiceConfig, vb: VarBuilder, packing: Packing) -> Result<Self> {
        let d = &cfg.decoder_config;
        let stack = Qwen2Stack::new(
            d,
            cfg.tts_backbone_num_hidden_layers,
            true,
            vb.pp("tts_language_model"),
            packing,
        )?;
        let input_types = tensor(&vb.pp("tts_input_types"), (2, d.hidden_size), "weight")?;
        Ok(Self { stack, input_types })
    }

    /// The decoder layers and final norm.
    pub fn stack(&self) -> &Qwen2Stack {
        &self.stack
    }

    /// An empty cache for one TTS stream.
    pub fn new_cache(&self) -> KvCache {
        self.stack.new_cache()
    }

    /// Activation dtype (inputs of another dtype are cast to it).
    pub fn dtype(&self) -> DType {
        self.stack.dtype()
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        self.stack.device()
    }

    /// The layer input `embeds + tts_input_types[kind]`, `[n, hidden]`, in the LM's dtype.
    pub fn input_embeds(&self, input: &TtsInput) -> Result<Tensor> {
        let row = self.input_types.narrow(0, input.kind.type_row(), 1)?;
        let embeds = input.embeds.to_dtype(self.stack.dtype())?;
        Ok(embeds.broadcast_add(&row)?)
    }

    /// One stream; returns the normed hidden states `[n, hidden]` (consumers use the last row).
    pub fn forward(&self, input: TtsInput, cache: &mut KvCache) -> Result<Tensor> {
        let x = self.input_embeds(&input)?;
        let n = x.dim(0)?;
        self.stack.forward_packed(&x, &[n], &mut [cache])
    }

    /// Several streams in one pass (e.g. the positive and negative streams of a speech frame):
    /// every weight is read once for all rows; attention uses each stream's own cache.
    pub fn forward_batch(
        &self,
        inputs: &[TtsInput],
        caches: &mut [&mut KvCache],
    ) -> Result<Vec<Tensor>> {
        let xs = inputs
            .iter()
            .map(|input| self.input_embeds(input))
            .collect::<Result<Vec<_>>>()?;
        self.stack.forward_batch(&xs, caches)
    }
}
