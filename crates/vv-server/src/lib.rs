//! vv-server: the HTTP/WebSocket service and its configuration.

pub mod config;
