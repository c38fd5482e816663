//! The fuzz targets' seed corpora and crash regressions (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) replayed through the same checks the `fuzz/` AFL targets run,
//! without AFL: every file of every target must pass.

use std::path::{Path, PathBuf};

use vv_model::text::fuzz_entry::tokenize_chunks;
use vv_model::text::TextTokenizer;
use vv_server::fuzz_entry::{cartesia_request, elevenlabs_request, speech_request, ws_message};

const FUZZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz");

/// Runs `check` on every file of the target's corpus and regressions; returns how many.
fn replay(target: &str, check: impl Fn(&[u8])) -> usize {
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .map(|kind| Path::new(FUZZ).join(kind).join(target))
        .filter(|dir| dir.is_dir())
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        assert!(outcome.is_ok(), "{target}: {} fails", file.display());
    }
    files.len()
}

#[test]
fn preset_corpora_pass() {
    assert!(replay("preset_pt", vv_preset::fuzz_entry::preset_bytes) > 0);
    assert!(replay("preset_safetensors", vv_preset::fuzz_entry::preset_bytes) > 0);
}

#[test]
fn websocket_message_corpora_pass() {
    assert!(replay("ws_message", ws_message) > 0);
    assert!(replay("cartesia_request", cartesia_request) > 0);
    assert!(replay("elevenlabs_request", elevenlabs_request) > 0);
}

#[test]
fn speech_request_corpus_passes() {
    assert!(replay("speech_request", speech_request) > 0);
}

#[test]
fn tokenize_chunks_corpus_passes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/vibevoice-tiny/tokenizer/tokenizer.json");
    let tok = TextTokenizer::from_file(&path).unwrap();
    assert!(replay("tokenize_chunks", |data| tokenize_chunks(&tok, data)) > 0);
}
