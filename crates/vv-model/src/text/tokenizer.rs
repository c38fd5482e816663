//! The Qwen2.5 tokenizer (`tokenizer.json`) with special-token strings neutralised.

use std::path::Path;

use tokenizers::{
    Model, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, Tokenizer,
};

use crate::error::{ModelError, Result};

/// Tokenizer wrapper: no special tokens added, special-token strings in user text removed.
pub struct TextTokenizer {
    inner: Tokenizer,
    specials: Vec<String>,
    /// The added tokens that are not special (Qwen2.5's `<tool_call>`, `<|fim_prefix|>`...):
    /// user text keeps them, and whole-text encoding gives each its own id.
    added: Vec<String>,
}

/// A pre-token: where it starts in the text (bytes) and its form after the normaliser and the
/// pre-tokenizer (what the model tokenizes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreToken {
    pub start: usize,
    pub normalized: String,
}

impl TextTokenizer {
    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(ModelError::MissingFile(path.display().to_string()));
        }
        let inner = Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self::new(inner))
    }

    /// Wraps a loaded tokenizer.
    pub(crate) fn new(inner: Tokenizer) -> Self {
        let contents = |special: bool| {
            let mut found: Vec<String> = inner
                .get_added_tokens_decoder()
                .values()
                .filter(|t| t.special == special)
                .map(|t| t.content.clone())
                .filter(|s| !s.is_empty())
                .collect();
            found.sort();
            found
        };
        let (specials, added) = (contents(true), contents(false));
        Self {
            inner,
            specials,
            added,
        }
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

    /// Length of the longest suffix of `text` that is a proper prefix of an added token's string,
    /// special or not (such a suffix may still grow into one when more text arrives).
    pub fn partial_added_suffix(&self, text: &str) -> usize {
        let mut best = 0;
        for sp in self.specials.iter().chain(&self.added) {
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

    /// The earliest start of a non-special added token's string in `text` that ends after
    /// `cut` (so that cutting at `cut` would split it or leave it to grow), if any.
    pub fn added_token_across(&self, text: &str, cut: usize) -> Option<usize> {
        self.added
            .iter()
            .flat_map(|a| text.match_indices(a.as_str()))
            .filter(|&(start, a)| start < cut && start + a.len() > cut)
            .map(|(start, _)| start)
            .min()
    }

    /// Whether `text` holds a non-special added token's string (whole-text encoding gives it
    /// its own id, which the model alone cannot).
    pub fn has_added_token(&self, text: &str) -> bool {
        self.added.iter().any(|a| text.contains(a.as_str()))
    }

    /// Token ids of pre-tokens ([`Self::pre_tokens`]) of text with no added token's string in it,
    /// through the model alone: the ids [`Self::encode`] gives their text, without its
    /// added-token split, second normalisation and pre-tokenization, and offset bookkeeping.
    pub fn encode_pre_tokens(&self, pre_tokens: &[PreToken]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for p in pre_tokens {
            let tokens = self
                .inner
                .get_model()
                .tokenize(&p.normalized)
                .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
            ids.extend(tokens.into_iter().map(|t| t.id));
        }
        Ok(ids)
    }

    /// Byte offsets where the normaliser + pre-tokenizer split `text` into pre-tokens
    /// (the start of each pre-token). Tokens never cross these boundaries.
    pub fn pre_token_starts(&self, text: &str) -> Result<Vec<usize>> {
        Ok(self
            .pre_tokens(text)?
            .into_iter()
            .map(|p| p.start)
            .collect())
    }

    /// The pre-tokens of `text` (normaliser, then pre-tokenizer), in order.
    pub fn pre_tokens(&self, text: &str) -> Result<Vec<PreToken>> {
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
            .map(|(normalized, (start, _), _)| PreToken {
                start,
                normalized: normalized.to_string(),
            })
            .collect())
    }
}
