//! Incremental tokenization: text arrives in chunks, ids come out as soon as they are final.
//!
//! Tokens never cross pre-token boundaries, and the pre-tokenizer's regex restarted at a
//! boundary matches exactly as it does in the whole text. So the text is cut at a pre-token
//! boundary that appending text cannot move: the last two pre-tokens (a partial word and the
//! whitespace or punctuation run that may still merge with it) are held back, as is any suffix
//! that could still grow into a special-token string. On `finish` the held-back text gets the
//! reference's end normalisation (`strip()` + `"\n"`), so the ids equal those of the whole text.

use crate::error::Result;
use crate::text::normalize::normalize_chars;
use crate::text::tokenizer::TextTokenizer;

/// Pre-tokens held back at the end of the pending text.
const HELD_PRE_TOKENS: usize = 2;

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
        let starts = tok.pre_token_starts(&self.pending)?;
        if starts.len() <= HELD_PRE_TOKENS {
            return Ok(Vec::new());
        }
        let mut cut = starts[starts.len() - HELD_PRE_TOKENS];
        let solid_end = self.pending.len() - tok.partial_special_suffix(&self.pending);
        cut = cut.min(solid_end);
        let cut = starts
            .iter()
            .copied()
            .filter(|&s| s <= cut)
            .max()
            .unwrap_or(0);
        // Commit only text that is certainly followed by more non-whitespace text: trailing
        // whitespace is stripped at the end, and a partial special token may still vanish.
        if cut == 0 || self.pending[cut..solid_end].trim().is_empty() {
            return Ok(Vec::new());
        }
        let ids = tok.encode(&self.pending[..cut])?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::normalize_text;
    use proptest::prelude::*;

    fn tiny() -> TextTokenizer {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/vibevoice-tiny/tokenizer/tokenizer.json"
        );
        TextTokenizer::from_file(std::path::Path::new(p)).unwrap()
    }

    fn whole(tok: &TextTokenizer, text: &str) -> Vec<u32> {
        let stripped = tok.strip_specials(&normalize_chars(text));
        if stripped.trim().is_empty() {
            return Vec::new();
        }
        tok.encode(&normalize_text(&stripped)).unwrap()
    }

    fn streamed(tok: &TextTokenizer, chunks: &[String]) -> Vec<u32> {
        let mut inc = IncrementalTokenizer::new();
        let mut ids = Vec::new();
        for c in chunks {
            ids.extend(inc.push(tok, c).unwrap());
        }
        ids.extend(inc.finish(tok).unwrap());
        ids
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
    }
}
