//! Error codes of the report: those the client assigns itself, and those read from refused
//! HTTP requests and WebSocket upgrades (the error envelope) or from close frames.

/// The connection could not be opened (refused, unreachable, DNS, handshake failure).
pub const CONNECT_FAILED: &str = "connect_failed";
/// The connection broke without a close frame, or a send failed.
pub const CONNECTION_LOST: &str = "connection_lost";
/// Nothing was received for the idle timeout.
pub const TIMEOUT: &str = "timeout";
/// A text message that is not a JSON event, or a binary message with an invalid header.
pub const INVALID_MESSAGE: &str = "invalid_message_from_server";

/// The code of a non-2xx response: the JSON error envelope's `error.code` when present, else
/// `http_<status>`.
pub fn http_error(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .filter(|code| !code.is_empty())
        .unwrap_or_else(|| format!("http_{status}"))
}

/// The code of a close frame the server sent: `closed_<code>` (`closed_1005`, "no status",
/// for a close frame without a code).
pub fn closed(code: Option<u16>) -> String {
    format!("closed_{}", code.unwrap_or(1005))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_take_the_envelope_code_or_the_status() {
        let envelope = br#"{"error":{"message":"busy","type":"service_unavailable_error","code":"overloaded","param":null}}"#;
        assert_eq!(http_error(503, envelope), "overloaded");
        assert_eq!(http_error(502, b"Bad Gateway"), "http_502");
        assert_eq!(http_error(404, br#"{"error":{"code":null}}"#), "http_404");
        assert_eq!(http_error(500, b""), "http_500");
    }

    #[test]
    fn close_codes_name_the_code() {
        assert_eq!(closed(Some(1011)), "closed_1011");
        assert_eq!(closed(None), "closed_1005");
    }
}
