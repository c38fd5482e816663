//! WebSocket close codes of protocol v1.

/// Why the server closes a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: normal closure.
    Normal,
    /// 1001: the server is shutting down (draining).
    ShuttingDown,
    /// 1007: a text message was not valid UTF-8.
    InvalidPayload,
    /// 1008: authentication failed. API keys are checked before the upgrade (HTTP 401), so
    /// the server never sends it; it is listed so that clients share one table.
    Auth,
    /// 1009: a message exceeded `max_message_bytes`.
    MessageTooBig,
    /// 1011: internal error (e.g. the synthesis engine stopped).
    Internal,
    /// 1013: overloaded, try again later. The server refuses new sessions before the upgrade
    /// (HTTP 503 with `Retry-After`) and single contexts with a non-fatal `overloaded` error,
    /// so it never sends it; listed for clients.
    Overloaded,
    /// 4400: protocol violation (e.g. a binary message from the client).
    ProtocolViolation,
    /// 4408: the session was idle for longer than `session_idle_timeout_secs`.
    IdleTimeout,
}

impl CloseCode {
    /// The numeric code sent in the close frame.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::ShuttingDown => 1001,
            CloseCode::InvalidPayload => 1007,
            CloseCode::Auth => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::Overloaded => 1013,
            CloseCode::ProtocolViolation => 4400,
            CloseCode::IdleTimeout => 4408,
        }
    }

    /// A short reason for the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal closure",
            CloseCode::ShuttingDown => "server shutting down",
            CloseCode::InvalidPayload => "invalid UTF-8",
            CloseCode::Auth => "authentication failed",
            CloseCode::MessageTooBig => "message too big",
            CloseCode::Internal => "internal error",
            CloseCode::Overloaded => "overloaded",
            CloseCode::ProtocolViolation => "protocol violation",
            CloseCode::IdleTimeout => "idle timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_protocol_table() {
        let all = [
            (CloseCode::Normal, 1000),
            (CloseCode::ShuttingDown, 1001),
            (CloseCode::InvalidPayload, 1007),
            (CloseCode::Auth, 1008),
            (CloseCode::MessageTooBig, 1009),
            (CloseCode::Internal, 1011),
            (CloseCode::Overloaded, 1013),
            (CloseCode::ProtocolViolation, 4400),
            (CloseCode::IdleTimeout, 4408),
        ];
        for (close, code) in all {
            assert_eq!(close.code(), code);
            assert!(close.reason().len() <= 123, "{close:?}");
        }
    }
}
