//! vv-server's integration tests, one module per area, in one test binary (one link of the
//! server instead of one per file): real servers on 127.0.0.1 with the tiny fixture model,
//! driven over HTTP and WebSocket, and the configuration loading. Tests that need a process
//! to themselves (a global tracing subscriber, resident-memory measurements) are binaries of
//! their own (`observability.rs`, `memory_release.rs`).

mod common;
mod support;
mod ws_client;

mod cartesia_ws;
mod config_docs;
mod config_loading;
mod config_quantize;
mod device_selection;
mod elevenlabs_ws;
mod fuzz_corpus;
mod hostile_network;
mod http_demo;
mod http_security;
mod http_server;
mod http_speech;
mod properties_config;
mod supervision;
mod ws_bad_input;
mod ws_first_audio_hold;
mod ws_protocol;
mod ws_session_channels;
mod ws_speed;
mod ws_timestamps;
