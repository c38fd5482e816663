//! The Qwen2.5 tokenizer (`tokenizer.json`) with special-token strings neutralised.

use std::path::Path;

use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, Tokenizer};

use crate::error::{ModelError, Result};

/// Tokenizer wrapper: no special tokens added, special-token strings in user text removed.
pub struct TextTokenizer {
    inner: Tokenizer,
    specials: Vec<String>,
}

impl TextTokenizer {
    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(ModelError::MissingFile(path.display().to_string()));
        }
        let inner = Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        let mut specials: Vec<String> = inner
            .get_added_tokens_decoder()
            .values()
            .filter(|t| t.special)
            .map(|t| t.content.clone())
            .filter(|s| !s.is_empty())
            .collect();
        specials.sort();
        Ok(Self { inner, specials })
    }

    /// Id of a token string (e.g. `<|image_pad|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Removes every special-token string (e.g. `<|endoftext|>`) from user text, repeatedly,
    /// so that no user text can inject control tokens.
    pub fn strip_specials(&self, text: &str) -> String {
        let mut s = text.to_string();
        loop {
            let before = s.len();
            for sp in &self.specials {
                if s.contains(sp.as_str()) {
                    s = s.replace(sp.as_str(), "");
                }
            }
            if s.len() == before {
                return s;
            }
        }
    }

    /// Length of the longest suffix of `text` that is a proper prefix of a special-token string
    /// (such a suffix may still grow into a special token when more text arrives).
    pub fn partial_special_suffix(&self, text: &str) -> usize {
        let mut best = 0;
        for sp in &self.specials {
            for (k, _) in sp.char_indices().skip(1) {
                if k > best && text.ends_with(&sp[..k]) {
                    best = k;
                }
            }
        }
        best
    }

    /// Token ids of already-normalised text (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of token ids (the fuzz check compares what incremental and whole tokenization
    /// spell).
    pub(crate) fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// Byte offsets where the normaliser + pre-tokenizer split `text` into pre-tokens
    /// (the start of each pre-token). Tokens never cross these boundaries.
    pub fn pre_token_starts(&self, text: &str) -> Result<Vec<usize>> {
        let err = |e: tokenizers::Error| ModelError::Tokenizer(e.to_string());
        let mut pts = PreTokenizedString::from(text);
        if let Some(n) = self.inner.get_normalizer() {
            pts.normalize(|s| tokenizers::Normalizer::normalize(n, s))
                .map_err(err)?;
        }
        if let Some(p) = self.inner.get_pre_tokenizer() {
            p.pre_tokenize(&mut pts).map_err(err)?;
        }
        Ok(pts
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(_, (start, _), _)| start)
            .collect())
    }
}
