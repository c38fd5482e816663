//! API keys that are never shown in clear by `Debug` or `Serialize`. Only their SHA-256
//! digests are kept; a presented key is hashed and compared with every digest in constant
//! time, so neither the position of a difference nor the key's length shows in the timing.

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// What is shown in place of each key.
pub const REDACTED: &str = "<redacted>";

/// The SHA-256 digest of a key.
type KeyDigest = [u8; 32];

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// The accepted API keys (as digests); empty means authentication is off.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys(Vec<KeyDigest>);

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
                .map(|k| digest(&k))
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

    /// True when `candidate` is one of the keys. The candidate is hashed once and its digest
    /// compared with every key's in constant time: the work is the same whatever the keys'
    /// lengths and wherever the first difference lies.
    pub fn accepts(&self, candidate: &str) -> bool {
        let candidate = digest(candidate);
        let found = self.0.iter().fold(subtle::Choice::from(0), |found, key| {
            found | key.ct_eq(&candidate)
        });
        found.into()
    }
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
    fn only_fixed_length_digests_are_kept() {
        let long = "k".repeat(10_000);
        let keys = ApiKeys::new(["a", long.as_str()]);
        assert!(keys.0.iter().all(|d| d.len() == 32));
        assert_eq!(keys.0[0], digest("a"));
        assert!(keys.accepts(&long) && !keys.accepts(&long[1..]));
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
