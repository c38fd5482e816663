//! Incremental tokenization: text arrives in chunks, ids come out as soon as they are final.
//!
//! Tokens never cross pre-token boundaries, and the pre-tokenizer's regex restarted at a
//! boundary matches exactly as it does in the whole text. So the text is cut at a pre-token
//! boundary that appending text cannot move: the last two pre-tokens (a partial word and the
//! whitespace or punctuation run that may still merge with it) are held back, as is any suffix
//! that could still grow into an added token's string (special or not), and a cut never splits a
//! non-special added token (whole, it is one id). On `finish` the held-back text gets the
//! reference's end normalisation (`strip()` + `"\n"`), so the ids equal those of the whole text.
//! The pre-tokens found for the cut go to the tokenizer's model directly (the encoder would
//! split and pre-tokenize them again), unless the text cut off holds an added token's string.
//!
//! The held-back text is bounded, so a push costs in proportion to its chunk, not to the text
//! received so far: a pre-token longer than [`MAX_HELD_BYTES`] (a long unbroken word, run of
//! punctuation or of whitespace) is cut into pieces of at most that many bytes, each tokenized on
//! its own as soon as it is complete. For a text with no such pre-token the ids equal those of
//! the whole text whatever the chunking; with one, they differ only in how that pre-token is
//! split into tokens (the text they decode to is the same, bar trailing whitespace).

use crate::error::Result;
use crate::text::normalize::normalize_chars;
use crate::text::tokenizer::TextTokenizer;

/// Pre-tokens held back at the end of the pending text.
const HELD_PRE_TOKENS: usize = 2;

/// Longest pre-token held back whole; a longer one is cut into pieces of at most this many bytes.
pub const MAX_HELD_BYTES: usize = 256;

/// Streaming tokenizer state of one utterance.
#[derive(Debug, Default, Clone)]
pub struct IncrementalTokenizer {
    pending: String,
    emitted: bool,
    finished: bool,
}

impl IncrementalTokenizer {
    /// A fresh state (nothing received yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `finish` was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Text received but not yet turned into ids.
    pub fn pending_text(&self) -> &str {
        &self.pending
    }

    /// Appends a chunk of user text and returns the ids that became final.
    pub fn push(&mut self, tok: &TextTokenizer, chunk: &str) -> Result<Vec<u32>> {
        if self.finished {
            return Ok(Vec::new());
        }
        self.pending.push_str(&normalize_chars(chunk));
        self.pending = tok.strip_specials(&self.pending);
        if !self.emitted {
            self.pending = self.pending.trim_start().to_string();
        }
        let pre_tokens = tok.pre_tokens(&self.pending)?;
        let starts: Vec<usize> = pre_tokens.iter().map(|p| p.start).collect();
        let solid_end = self.pending.len() - tok.partial_added_suffix(&self.pending);
        let pieces = long_pre_token_cuts(&self.pending, &starts, solid_end);
        let mut cut =
            safe_cut(&self.pending, &starts, solid_end).max(pieces.last().map_or(0, |&p| p));
        // A cut must not split an added token's string (whole, it is one id): cut before it.
        while let Some(start) = tok.added_token_across(&self.pending, cut) {
            cut = safe_cut(&self.pending, &starts, start);
        }
        if cut == 0 {
            return Ok(Vec::new());
        }
        let ids = if pieces.is_empty() && !tok.has_added_token(&self.pending[..cut]) {
            // The common case: the pre-tokens before the cut through the model alone.
            let done = pre_tokens.partition_point(|p| p.start < cut);
            tok.encode_pre_tokens(&pre_tokens[..done])?
        } else {
            let mut ids = Vec::new();
            let mut from = 0;
            for to in pieces.into_iter().filter(|&p| p < cut).chain([cut]) {
                ids.extend(tok.encode(&self.pending[from..to])?);
                from = to;
            }
            ids
        };
        self.pending.drain(..cut);
        self.emitted = true;
        Ok(ids)
    }

    /// Ends the input: the held-back text is stripped, gets `"\n"` and is tokenized.
    /// Returns the remaining ids (for an utterance with no text at all: no ids).
    /// Leading whitespace is trimmed only before the first id (after it, a leading space
    /// belongs to the next word), so this is the reference's `strip()` of the whole text.
    pub fn finish(&mut self, tok: &TextTokenizer) -> Result<Vec<u32>> {
        if self.finished {
            return Ok(Vec::new());
        }
        self.finished = true;
        let stripped = tok.strip_specials(&self.pending);
        let mut rest = if self.emitted {
            stripped.trim_end()
        } else {
            stripped.trim()
        }
        .to_string();
        self.pending.clear();
        if rest.is_empty() && !self.emitted {
            return Ok(Vec::new());
        }
        rest.push('\n');
        tok.encode(&rest)
    }
}

/// Where `text` (pre-tokens starting at `starts`) can be cut without changing its ids: before
/// the last [`HELD_PRE_TOKENS`] pre-tokens and any partial special token (from `solid_end`), and
/// only when non-whitespace text follows (trailing whitespace is stripped at the end). 0: nowhere.
fn safe_cut(text: &str, starts: &[usize], solid_end: usize) -> usize {
    if starts.len() <= HELD_PRE_TOKENS {
        return 0;
    }
    let cut = starts[starts.len() - HELD_PRE_TOKENS].min(solid_end);
    let cut = starts
        .iter()
        .copied()
        .filter(|&s| s <= cut)
        .max()
        .unwrap_or(0);
    if cut == 0 || text[cut..solid_end].trim().is_empty() {
        return 0;
    }
    cut
}

/// The cuts, in order, that split every pre-token longer than [`MAX_HELD_BYTES`] into pieces of
/// at most that many bytes (at character boundaries, counted from the pre-token's start), up to
/// `solid_end`; the last piece of each is left whole.
fn long_pre_token_cuts(text: &str, starts: &[usize], solid_end: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts
            .get(i + 1)
            .copied()
            .unwrap_or(text.len())
            .min(solid_end);
        let mut at = start;
        while end > at && end - at > MAX_HELD_BYTES {
            let mut next = at + MAX_HELD_BYTES;
            while !text.is_char_boundary(next) {
                next -= 1;
            }
            cuts.push(next);
            at = next;
        }
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::fuzz_entry::{incremental_matches_whole, spelling, streamed, whole};
    use proptest::prelude::*;

    /// The tiny fixture's `tokenizer.json`.
    const TINY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/vibevoice-tiny/tokenizer/tokenizer.json"
    );

    fn tiny() -> TextTokenizer {
        TextTokenizer::from_file(std::path::Path::new(TINY)).unwrap()
    }

    #[test]
    fn fixture_example_matches_the_readme() {
        let tok = tiny();
        assert_eq!(
            tok.encode("Tiny voice!\n").unwrap(),
            vec![53, 258, 90, 401, 332, 2, 200]
        );
        let chunks: Vec<String> = ["Ti", "ny vo", "ice", "!"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(streamed(&tok, &chunks), vec![53, 258, 90, 401, 332, 2, 200]);
    }

    #[test]
    fn special_token_strings_are_neutralised_even_when_split() {
        let tok = tiny();
        let chunks: Vec<String> = ["Hi <|endof", "text|> there"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ids = streamed(&tok, &chunks);
        assert!(!ids.contains(&0) && !ids.contains(&1), "{ids:?}");
        assert_eq!(ids, whole(&tok, "Hi  there"));
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "hello",
            "world",
            " ",
            "  ",
            "\n",
            "\n\n",
            ",",
            ".",
            "!",
            "?",
            "'s",
            "'",
            "don't",
            "123",
            "4",
            "é",
            "e\u{301}",
            "naïve",
            "’",
            "“quoted”",
            "-",
            "...",
            "\t",
            "<|endoftext|>",
            "a",
            "I",
            "Zoë",
            "日本",
            "😀",
        ]);
        prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
    }

    fn chunk(text: &str, cuts: &[usize]) -> Vec<String> {
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        let mut points: Vec<usize> = cuts
            .iter()
            .filter_map(|c| bounds.get(c % bounds.len().max(1)).copied())
            .collect();
        points.sort_unstable();
        points.dedup();
        let mut out = Vec::new();
        let mut last = 0;
        for p in points {
            out.push(text[last..p].to_string());
            last = p;
        }
        out.push(text[last..].to_string());
        out
    }

    /// The tiny tokenizer, loaded once for the property tests.
    fn shared() -> &'static TextTokenizer {
        static TOK: std::sync::OnceLock<TextTokenizer> = std::sync::OnceLock::new();
        TOK.get_or_init(tiny)
    }

    /// Texts with runs (letters, CJK, accented letters, spaces, newlines, punctuation, digits)
    /// around and beyond [`MAX_HELD_BYTES`], between ordinary words.
    fn long_text_strategy() -> impl Strategy<Value = String> {
        let run = (
            prop::sample::select(vec!["a", "é", "日", " ", "\n", "!", "7", "ab"]),
            1usize..400,
        )
            .prop_map(|(unit, n)| unit.repeat(n));
        let part = prop_oneof![3 => text_strategy(), 1 => run];
        prop::collection::vec(part, 0..6).prop_map(|v| v.concat())
    }

    #[test]
    fn a_long_word_sent_one_character_at_a_time_is_cut_and_stays_bounded() {
        let tok = tiny();
        let word = "x".repeat(10 * MAX_HELD_BYTES);
        let chunks: Vec<String> = word.chars().map(String::from).collect();
        let ids = streamed(&tok, &chunks);
        assert_eq!(spelling(&tok, &ids), word);
        // Cut into pieces of MAX_HELD_BYTES, each tokenized alone.
        let piece = tok.encode(&"x".repeat(MAX_HELD_BYTES)).unwrap();
        assert_eq!(ids[..piece.len()], piece[..]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Streamed text in any chunking yields exactly the ids of the whole text.
        #[test]
        fn any_chunking_gives_the_whole_text_ids(
            text in text_strategy(),
            cuts in prop::collection::vec(0usize..1000, 0..12),
        ) {
            let tok = tiny();
            let chunks = chunk(&text, &cuts);
            prop_assert_eq!(streamed(&tok, &chunks), whole(&tok, &text));
        }

        /// With a non-special added token (as Qwen2.5's `<tool_call>`): user text keeps it, and
        /// any chunking gives the whole text's ids, the added token's own id included.
        #[test]
        fn added_tokens_keep_their_id_in_any_chunking(
            parts in prop::collection::vec(
                prop_oneof![3 => text_strategy(), 1 => Just(TOOL_CALL.to_string()),
                    1 => Just("<tool".to_string()), 1 => Just("_call>".to_string())],
                0..6,
            ),
            cuts in prop::collection::vec(0usize..1000, 0..12),
        ) {
            let tok = with_added_token();
            let text = parts.concat();
            let chunks = chunk(&text, &cuts);
            let expected = whole(tok, &text);
            if text.contains(TOOL_CALL) {
                prop_assert!(expected.contains(&tok.token_id(TOOL_CALL).unwrap()));
            }
            prop_assert_eq!(streamed(tok, &chunks), expected);
        }
    }

    const TOOL_CALL: &str = "<tool_call>";

    /// The tiny tokenizer with [`TOOL_CALL`] added as a non-special token.
    fn with_added_token() -> &'static TextTokenizer {
        static TOK: std::sync::OnceLock<TextTokenizer> = std::sync::OnceLock::new();
        TOK.get_or_init(|| {
            let mut inner = tokenizers::Tokenizer::from_file(TINY).unwrap();
            inner
                .add_tokens([tokenizers::AddedToken::from(TOOL_CALL, false)])
                .unwrap();
            TextTokenizer::new(inner)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// With runs beyond the bound: the held-back text stays bounded on every push; a text
        /// whose every pre-token fits [`MAX_HELD_BYTES`] gets exactly the whole text's ids; any
        /// text gets ids that spell the whole text (bar trailing whitespace).
        #[test]
        fn incremental_equals_whole_within_the_bound(
            text in long_text_strategy(),
            cuts in prop::collection::vec(0usize..2000, 0..40),
        ) {
            incremental_matches_whole(shared(), &chunk(&text, &cuts));
        }
    }
}
