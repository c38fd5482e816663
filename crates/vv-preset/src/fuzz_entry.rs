//! Fuzzing entry point (doc-hidden, not part of the API): the check that the `fuzz/` targets
//! `preset_pt` and `preset_safetensors` and the corpus replay test run on one input.

use crate::{EntryKind, PresetError, VoicePreset};

/// Decodes `data` as a preset file (`.pt` zip or flat safetensors, told apart by content).
/// Panics (the fuzzer's finding) when decoding panics, fails with an error a damaged file
/// should not get, or when a decoded preset does not survive the flat safetensors round trip
/// bit for bit.
pub fn preset_bytes(data: &[u8]) {
    let preset = match VoicePreset::from_bytes(data, "fuzz") {
        Ok(preset) => preset,
        Err(
            PresetError::Invalid { .. }
            | PresetError::OverlappingEntries { .. }
            | PresetError::AllocationBudget { .. },
        ) => return,
        Err(other) => panic!("unexpected error kind for a damaged file: {other:?}"),
    };
    let flat = preset.to_flat_bytes().expect("a decoded preset encodes");
    let again = VoicePreset::from_bytes(&flat, "fuzz.safetensors").expect("its flat form decodes");
    assert_eq!(again.source(), preset.source());
    assert_eq!(again.source_sha256(), preset.source_sha256());
    for kind in EntryKind::ALL {
        let (a, b) = (preset.entry(kind), again.entry(kind));
        let tensors = |e: &crate::PresetEntry| {
            std::iter::once(e.last_hidden_state().clone())
                .chain(e.keys().iter().cloned())
                .chain(e.values().iter().cloned())
                .collect::<Vec<_>>()
        };
        let (ta, tb) = (tensors(a), tensors(b));
        assert_eq!(ta.len(), tb.len(), "{}: tensor count", kind.name());
        for (x, y) in ta.iter().zip(&tb) {
            assert_eq!(x.dims(), y.dims(), "{}: shape", kind.name());
            assert_eq!(x.dtype(), y.dtype(), "{}: dtype", kind.name());
            assert_eq!(
                crate::flat::le_bytes(x),
                crate::flat::le_bytes(y),
                "{}: values",
                kind.name()
            );
        }
    }
}
