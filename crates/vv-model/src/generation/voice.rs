//! A voice preset prepared for one model: caches on their LM's device and dtype, ready to be
//! cloned for each utterance (the reference mutates preset caches in place; we never do).

use candle_core::Tensor;

use crate::error::Result;
use crate::kv_cache::KvCache;
use crate::model::VibeVoiceModel;
use crate::placement::{Component, Place};
use vv_preset::{PresetEntry, VoicePreset};

/// Preset caches and conditions in the model's device/dtype.
#[derive(Debug)]
pub struct PreparedVoice {
    pub(crate) lm: KvCache,
    pub(crate) tts_pos: KvCache,
    pub(crate) tts_neg: KvCache,
    /// `tts_lm.last_hidden_state[-1]`, `[1, H]`: the positive condition if the text is empty.
    pub(crate) pos_condition: Tensor,
    /// `neg_tts_lm.last_hidden_state[-1]`, `[1, H]`: the negative condition of frame 0.
    pub(crate) neg_condition: Tensor,
}

fn cache(entry: &PresetEntry, place: &Place) -> Result<KvCache> {
    let (keys, values) = entry.cache();
    KvCache::from_layers(keys, values)?.to(place.dtype, &place.device)
}

fn last_row(entry: &PresetEntry, place: &Place) -> Result<Tensor> {
    let h = entry.last_hidden_row()?;
    let hidden = h.elem_count();
    place.put(&h.reshape((1, hidden))?)
}

impl PreparedVoice {
    /// Validates `preset` against the model and moves its caches to the model's device.
    pub fn new(model: &VibeVoiceModel, preset: &VoicePreset) -> Result<Self> {
        preset.validate(&model.config().preset_shape())?;
        let (text, tts) = (
            model.place(Component::TextLm),
            model.place(Component::TtsLm),
        );
        Ok(Self {
            lm: cache(preset.lm(), text)?,
            tts_pos: cache(preset.tts_lm(), tts)?,
            tts_neg: cache(preset.neg_tts_lm(), tts)?,
            pos_condition: last_row(preset.tts_lm(), tts)?,
            neg_condition: last_row(preset.neg_tts_lm(), tts)?,
        })
    }

    /// Positions held by the positive TTS-LM cache (the prompt length Tp).
    pub fn prompt_positions(&self) -> usize {
        self.tts_pos.len()
    }
}
