//! The Origin allow-list of WebSocket upgrades and CORS (`allowed_origins`): exact origins
//! (`scheme://host[:port]`, compared without regard to letter case), `*` for any origin and
//! `null` for the opaque origin of sandboxed frames and local files. Same-origin requests and
//! requests without an `Origin` header are always allowed (see `crate::origin`).

use serde::Serialize;

use super::error::ValueProblem;

/// Entry that allows every origin.
pub const ANY_ORIGIN: &str = "*";

/// Origins allowed besides the server's own; empty means the server's own only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// The list of `entries` (blank ones dropped), or the problem with the first bad one.
    pub fn parse<I, S>(entries: I) -> Result<Self, ValueProblem>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut origins = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            match normalize(entry) {
                Some(origin) => origins.push(origin),
                None => {
                    return Err(ValueProblem::Unparsable {
                        expected: "origins like https://app.example.com or http://localhost:3000, \
                                   `*` or `null`"
                            .to_string(),
                        input: entry.to_string(),
                        reason: Some("an origin is a scheme and a host, with no path".to_string()),
                    })
                }
            }
        }
        Ok(Self(origins))
    }

    /// Whether `origin` (an `Origin` header's value) is on the list.
    pub fn contains(&self, origin: &str) -> bool {
        let Some(origin) = normalize(origin) else {
            return false;
        };
        self.0.iter().any(|o| o == ANY_ORIGIN || *o == origin)
    }
}

/// The origin in lower case without a trailing slash; `None` when it is not one.
fn normalize(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if origin == ANY_ORIGIN || origin == "null" {
        return Some(origin);
    }
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let authority_ok = !authority.is_empty()
        && !authority
            .chars()
            .any(|c| c.is_whitespace() || "/?#@\\".contains(c));
    (scheme_ok && authority_ok).then_some(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_normalizes_and_matches() {
        let list = AllowedOrigins::parse([" https://App.Example.com/ ", "", "null"]).unwrap();
        assert!(list.contains("https://app.example.com"));
        assert!(list.contains("HTTPS://APP.EXAMPLE.COM"));
        assert!(list.contains("null"));
        assert!(!list.contains("http://app.example.com"));
        assert!(!list.contains("https://app.example.com.evil.test"));
        assert!(!AllowedOrigins::default().contains("https://app.example.com"));
        assert!(AllowedOrigins::parse(["*"])
            .unwrap()
            .contains("http://x.test:1"));
        for bad in [
            "example.com",
            "https://a.test/path",
            "https://",
            "1http://a",
            "ht tp://a",
        ] {
            assert!(AllowedOrigins::parse([bad]).is_err(), "{bad}");
        }
    }
}
