//! API keys that are never shown in clear by `Debug` or `Serialize`.

use serde::{Serialize, Serializer};
use std::fmt;

/// What is shown in place of each key.
pub const REDACTED: &str = "<redacted>";

/// The accepted API keys; empty means authentication is off.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys(Vec<String>);

impl ApiKeys {
    /// Keys from a list; surrounding whitespace is trimmed and empty entries are dropped.
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self(
            keys.into_iter()
                .map(|k| k.as_ref().trim().to_string())
                .filter(|k| !k.is_empty())
                .collect(),
        )
    }

    /// Keys from a comma-separated list (the form of `TTS_API_KEYS` and `--api-keys`).
    pub fn from_comma_list(list: &str) -> Self {
        Self::new(list.split(','))
    }

    /// True when no key is configured (authentication off).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of configured keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when `candidate` is one of the keys; each comparison takes the same time whatever
    /// the position of the first differing byte.
    pub fn accepts(&self, candidate: &str) -> bool {
        self.0
            .iter()
            .fold(false, |found, key| found | constant_time_eq(key, candidate))
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let diff = a
        .iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y));
    diff == 0
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|_| REDACTED))
            .finish()
    }
}

impl Serialize for ApiKeys {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|_| REDACTED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comma_lists_and_drops_blanks() {
        let keys = ApiKeys::from_comma_list(" alpha, ,beta,");
        assert_eq!(keys.len(), 2);
        assert!(keys.accepts("alpha") && keys.accepts("beta"));
        assert!(!keys.accepts("alph") && !keys.accepts("alphaa") && !keys.accepts(""));
    }

    #[test]
    fn debug_and_serialize_redact() {
        let keys = ApiKeys::new(["s3cret"]);
        let debug = format!("{keys:?}");
        let json = serde_json::to_string(&keys).unwrap();
        assert!(
            !debug.contains("s3cret") && debug.contains(REDACTED),
            "{debug}"
        );
        assert_eq!(json, format!("[\"{REDACTED}\"]"));
    }
}
