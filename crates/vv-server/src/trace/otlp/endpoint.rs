//! The OTLP/HTTP endpoint: `http://host[:port][/base]`; spans go to `<base>/v1/traces` (a URL
//! that already ends in `/v1/traces` is taken as is). Plain HTTP only: put a collector (or a
//! TLS-terminating proxy) next to the service.

use std::fmt;

use axum::http::Uri;

/// Where the spans are POSTed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    authority: String,
    path: String,
}

/// The path of the traces service.
const TRACES_PATH: &str = "/v1/traces";

impl Endpoint {
    /// Parses `http://host[:port][/base]`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|e| format!("`{url}` is not a URL ({e})"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "`{url}` must start with http:// (TLS is not supported)"
            ));
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{url}` names no host"))?;
        if uri.query().is_some() {
            return Err(format!("`{url}` must not have a query"));
        }
        let port = uri.port_u16().unwrap_or(80);
        let base = uri.path().trim_end_matches('/');
        let path = if base.ends_with(TRACES_PATH) {
            base.to_string()
        } else {
            format!("{base}{TRACES_PATH}")
        };
        Ok(Self {
            authority: format!("{host}:{port}"),
            path,
        })
    }

    /// `host:port`, to connect to and for the `Host` header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The request path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_ports() {
        let e = Endpoint::parse("http://collector:4318").unwrap();
        assert_eq!((e.authority(), e.path()), ("collector:4318", "/v1/traces"));
        let e = Endpoint::parse("http://10.0.0.1/otel/").unwrap();
        assert_eq!(
            (e.authority(), e.path()),
            ("10.0.0.1:80", "/otel/v1/traces")
        );
        let e = Endpoint::parse("http://c:1/v1/traces").unwrap();
        assert_eq!(e.path(), "/v1/traces");
        assert_eq!(e.to_string(), "http://c:1/v1/traces");
        for bad in [
            "https://c:4318",
            "collector:4318",
            "http://",
            "not a url",
            "http://c/?a=1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
