//! The server to drive: parses the base URL (`http://host:port`, `ws://host:port`, with or
//! without a trailing slash or a path prefix) and builds the WebSocket URL and the HTTP path.

use hyper::Uri;

/// Port used when the URL names none.
const DEFAULT_PORT: u16 = 80;

/// A server's base address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    given: String,
    authority: String,
    prefix: String,
}

impl Target {
    /// Parses a base URL; the error says what is wrong (clap prints it, exit status 2).
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|e| format!("not a URL ({e}); expected http://host:port"))?;
        match uri.scheme_str() {
            None | Some("http" | "ws") => {}
            Some("https" | "wss") => {
                return Err("TLS is not supported; use http://host:port or ws://host:port".into())
            }
            Some(other) => {
                return Err(format!(
                    "unsupported scheme {other:?}; expected http://host:port or ws://host:port"
                ))
            }
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or("no host in the URL; expected http://host:port")?;
        if uri.query().is_some() {
            return Err("the URL takes no query; use --voice and --api-key".into());
        }
        // The authority is `host[:port]` (`Uri::port` would take an invalid port for none).
        let authority = uri.authority().map_or("", |a| a.as_str());
        let port = match authority.strip_prefix(host) {
            Some("") => DEFAULT_PORT,
            Some(rest) => rest
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid port in {authority:?}"))?,
            None => {
                return Err(format!(
                    "unsupported authority {authority:?}; expected host:port"
                ))
            }
        };
        Ok(Self {
            given: url.to_string(),
            authority: format!("{host}:{port}"),
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The URL as given on the command line.
    pub fn given(&self) -> &str {
        &self.given
    }

    /// `host:port`, to connect to and for the `Host` header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The protocol-v1 WebSocket URL, with `voice` and `api_key` as query parameters when set.
    pub fn ws_url(&self, voice: Option<&str>, api_key: Option<&str>) -> String {
        let query: Vec<String> = [("voice", voice), ("api_key", api_key)]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| format!("{name}={}", percent_encode(v))))
            .collect();
        let mut url = format!("ws://{}{}/v1/tts/stream", self.authority, self.prefix);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }

    /// The path of the OpenAI-compatible speech endpoint.
    pub fn speech_path(&self) -> String {
        format!("{}/v1/audio/speech", self.prefix)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_ws_urls_with_or_without_a_trailing_slash_name_the_same_server() {
        for url in [
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/",
            "ws://127.0.0.1:8000",
            "ws://127.0.0.1:8000/",
            "127.0.0.1:8000",
        ] {
            let t = Target::parse(url).unwrap();
            assert_eq!(t.authority(), "127.0.0.1:8000", "{url}");
            assert_eq!(t.ws_url(None, None), "ws://127.0.0.1:8000/v1/tts/stream");
            assert_eq!(t.speech_path(), "/v1/audio/speech");
            assert_eq!(t.given(), url);
        }
    }

    #[test]
    fn the_port_defaults_to_80_and_a_path_is_a_prefix() {
        let t = Target::parse("http://tts.example.com/api/").unwrap();
        assert_eq!(t.authority(), "tts.example.com:80");
        assert_eq!(t.speech_path(), "/api/v1/audio/speech");
        assert_eq!(
            t.ws_url(None, None),
            "ws://tts.example.com:80/api/v1/tts/stream"
        );
        let t = Target::parse("http://[::1]:9000").unwrap();
        assert_eq!(t.authority(), "[::1]:9000");
    }

    #[test]
    fn voice_and_api_key_go_into_the_query_encoded() {
        let t = Target::parse("http://h:1").unwrap();
        assert_eq!(
            t.ws_url(Some("en-Emma_woman"), None),
            "ws://h:1/v1/tts/stream?voice=en-Emma_woman"
        );
        assert_eq!(
            t.ws_url(Some("a b"), Some("k&=/+")),
            "ws://h:1/v1/tts/stream?voice=a%20b&api_key=k%26%3D%2F%2B"
        );
        assert_eq!(
            t.ws_url(None, Some("key")),
            "ws://h:1/v1/tts/stream?api_key=key"
        );
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (url, reason) in [
            ("https://h:1", "TLS"),
            ("wss://h:1", "TLS"),
            ("ftp://h:1", "unsupported scheme"),
            ("http://h:1/?voice=x", "no query"),
            ("http://", "not a URL"),
            ("http://h:port", "invalid port"),
            ("http://h:70000", "invalid port"),
            ("", "not a URL"),
            ("http://user@h:1", "unsupported authority"),
        ] {
            let error = Target::parse(url).unwrap_err();
            assert!(error.contains(reason), "{url}: {error}");
        }
    }
}
