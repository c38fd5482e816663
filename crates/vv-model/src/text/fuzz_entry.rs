//! Fuzzing entry point (doc-hidden, not part of the API): incremental versus whole tokenization
//! of one input, the check of the `fuzz/` target `tokenize_chunks`, of its corpus replay test and
//! of the incremental tokenizer's property tests.

use tokenizers::NormalizedString;

use crate::text::incremental::{IncrementalTokenizer, MAX_HELD_BYTES};
use crate::text::normalize::{normalize_chars, normalize_text};
use crate::text::tokenizer::TextTokenizer;

/// Byte that separates chunks in a fuzz input (0xFF never occurs in UTF-8).
pub const CHUNK_SEPARATOR: u8 = 0xFF;

/// The text chunks of a fuzz input: split at [`CHUNK_SEPARATOR`], each part read as UTF-8
/// (invalid sequences replaced, as a transport that decodes lossily would).
pub fn chunks_of(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == CHUNK_SEPARATOR)
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

/// Tokenizes `data` ([`chunks_of`]) incrementally and whole: see [`incremental_matches_whole`].
pub fn tokenize_chunks(tok: &TextTokenizer, data: &[u8]) {
    incremental_matches_whole(tok, &chunks_of(data));
}

/// The incremental tokenizer's contract for `chunks`: the held-back text stays bounded after
/// every push; a text whose every pre-token fits [`MAX_HELD_BYTES`] gets exactly the whole
/// text's ids; any text gets ids that spell the whole text (bar trailing whitespace and Unicode
/// composition across a cut). Panics when it is broken.
pub fn incremental_matches_whole(tok: &TextTokenizer, chunks: &[String]) {
    let text = chunks.concat();
    let ids = streamed(tok, chunks);
    let expected = whole(tok, &text);
    if longest_pre_token(tok, &text) <= MAX_HELD_BYTES {
        assert_eq!(ids, expected, "chunks {chunks:?}");
    } else {
        assert_eq!(
            spelling(tok, &ids),
            spelling(tok, &expected),
            "chunks {chunks:?}"
        );
    }
}

/// The ids of the whole text, tokenized at once the way the reference does.
pub fn whole(tok: &TextTokenizer, text: &str) -> Vec<u32> {
    let stripped = tok.strip_specials(&normalize_chars(text));
    if stripped.trim().is_empty() {
        return Vec::new();
    }
    tok.encode(&normalize_text(&stripped))
        .expect("whole text encodes")
}

/// The ids of `chunks` pushed one by one and finished, checking after each push that the
/// held-back text stays bounded.
pub fn streamed(tok: &TextTokenizer, chunks: &[String]) -> Vec<u32> {
    let mut inc = IncrementalTokenizer::new();
    let mut ids = Vec::new();
    for c in chunks {
        ids.extend(inc.push(tok, c).expect("push encodes"));
        assert!(
            inc.pending_text().len() <= 6 * MAX_HELD_BYTES,
            "{} bytes held back",
            inc.pending_text().len()
        );
    }
    ids.extend(inc.finish(tok).expect("finish encodes"));
    ids
}

/// The longest pre-token of the text as the tokenizer sees it before the final strip.
pub fn longest_pre_token(tok: &TextTokenizer, text: &str) -> usize {
    let text = tok.strip_specials(&normalize_chars(text));
    let starts = tok.pre_token_starts(&text).expect("pre-tokenizes");
    let ends = starts.iter().skip(1).copied().chain([text.len()]);
    starts
        .iter()
        .zip(ends)
        .map(|(s, e)| e - s)
        .max()
        .unwrap_or(0)
}

/// The spelling of ids, NFC-composed (the tokenizer's NFC may compose across a cut of a long
/// pre-token) and with trailing whitespace dropped.
pub fn spelling(tok: &TextTokenizer, ids: &[u32]) -> String {
    let mut text = NormalizedString::from(tok.decode(ids).expect("ids decode"));
    text.nfc();
    text.get().trim_end().to_string()
}
