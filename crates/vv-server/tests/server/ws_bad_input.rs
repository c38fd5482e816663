//! Bad input on the v1 WebSocket over a real server: every malformed, unknown or oversized
//! input gets its error event (or close code) and the server keeps serving; API keys guard
//! the upgrade.

use crate::common::{PromText, TestServer};
use crate::ws_client::{connect, connect_with_bearer, refused, Client};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use vv_server::config::ApiKeys;

const SPEECH: &str = "The server still speaks after all of that.";

/// Sends a raw text frame and returns the error it causes (must be non-fatal).
async fn error_for(c: &mut Client, message: &str) -> Value {
    c.send_raw(Message::Text(message.into())).await;
    let err = c.error().await;
    assert_eq!(err["fatal"], false, "{message}: {err}");
    let text = err["message"].as_str().unwrap();
    assert!(
        !text.contains("/work") && !text.contains("testdata"),
        "internals in {text}"
    );
    err
}

async fn still_speaks(c: &mut Client, id: &str) {
    let run = c.speak(id, SPEECH).await;
    assert_eq!(
        run.types().last().map(String::as_str),
        Some("context.done"),
        "{:?}",
        run.types()
    );
    assert!(!run.frames.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_non_fatal_errors() {
    let server = TestServer::ready(|s| s.limits.max_text_chars = 60).await;
    let mut c = connect(server.addr, "").await;
    let cases = [
        ("{not json", "invalid_json"),
        ("[1, 2, 3]", "invalid_json"),
        (r#"{"context_id": "a"}"#, "invalid_message"),
        (r#"{"type": "dance"}"#, "unknown_message_type"),
        (r#"{"type": "text", "text": "hi"}"#, "invalid_message"),
        (r#"{"type": "text", "context_id": "a"}"#, "invalid_message"),
        (
            r#"{"type": "text", "context_id": 5, "text": "hi"}"#,
            "invalid_message",
        ),
        (r#"{"type": "flush"}"#, "invalid_message"),
        (
            r#"{"type": "flush", "context_id": "nope"}"#,
            "unknown_context",
        ),
        (
            r#"{"type": "close", "context_id": "nope"}"#,
            "unknown_context",
        ),
        (
            r#"{"type": "cancel", "context_id": "nope"}"#,
            "unknown_context",
        ),
        (
            r#"{"type": "text", "context_id": "a", "text": ""}"#,
            "empty_text",
        ),
        (
            r#"{"type": "session.configure", "voice": "../tiny"}"#,
            "unknown_voice",
        ),
        (
            r#"{"type": "session.configure", "voice": "sub/dir"}"#,
            "unknown_voice",
        ),
        (
            r#"{"type": "session.configure", "voice": "nobody"}"#,
            "unknown_voice",
        ),
        (
            r#"{"type": "session.configure", "encoding": "aac"}"#,
            "unsupported_encoding",
        ),
        (
            r#"{"type": "session.configure", "encoding": "mp3", "bit_rate": 1}"#,
            "invalid_value",
        ),
        (
            r#"{"type": "session.configure", "sample_rate": 11025}"#,
            "unsupported_sample_rate",
        ),
        (
            r#"{"type": "session.configure", "cfg_scale": 0}"#,
            "invalid_value",
        ),
        (
            r#"{"type": "session.configure", "diffusion_steps": "many"}"#,
            "invalid_message",
        ),
    ];
    for (message, code) in cases {
        let err = error_for(&mut c, message).await;
        assert_eq!(err["code"], code, "{message}");
    }
    assert_eq!(
        error_for(&mut c, r#"{"type": "flush", "context_id": "nope"}"#).await["context_id"],
        "nope"
    );
    // An unknown voice, for the session or for one context, lists the valid names.
    for message in [
        r#"{"type": "session.configure", "voice": "nobody"}"#,
        r#"{"type": "text", "context_id": "v", "text": "Hi.", "voice": "nobody"}"#,
    ] {
        let err = error_for(&mut c, message).await;
        assert_eq!(err["code"], "unknown_voice", "{message}");
        let text = err["message"].as_str().unwrap();
        assert!(text.contains("valid voices: tiny, alloy, ash"), "{text}");
    }

    // Clamped values get a warning and the effective value.
    let (configured, warnings) = c
        .configure(json!({"cfg_scale": 50, "diffusion_steps": 500}))
        .await;
    assert_eq!(configured["cfg_scale"], 10.0);
    assert_eq!(configured["diffusion_steps"], 100);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings
        .iter()
        .all(|w| w["type"] == "warning" && w["code"] == "value_clamped"));
    let (configured, _) = c
        .configure(json!({"cfg_scale": 1.5, "diffusion_steps": 5}))
        .await;
    assert_eq!(configured["cfg_scale"], 1.5);

    // Text limits: per context, and a refused message changes nothing.
    let too_long = "x".repeat(61);
    let msg = json!({"type": "text", "context_id": "big", "text": too_long}).to_string();
    assert_eq!(error_for(&mut c, &msg).await["code"], "text_too_long");
    c.text("b", "Thirty characters of text here").await;
    c.until("context.created", Some("b")).await;
    let msg =
        json!({"type": "text", "context_id": "b", "text": " and thirty-one more characters."})
            .to_string();
    assert_eq!(error_for(&mut c, &msg).await["code"], "text_too_long");
    // Text after close (while the context drains) is refused.
    c.close_context("b").await;
    let msg = json!({"type": "text", "context_id": "b", "text": "late"}).to_string();
    let err = error_for(&mut c, &msg).await;
    assert_eq!(
        (err["code"].as_str(), err["context_id"].as_str()),
        (Some("context_closed"), Some("b"))
    );
    c.until("context.done", Some("b")).await;

    still_speaks(&mut c, "after").await;
    let (_, _, body) = server.get("/metrics").await;
    let m = PromText::parse(std::str::from_utf8(&body).unwrap());
    assert_eq!(
        m.value("vibevoice_errors_total", &[("code", "unknown_context")]),
        4.0
    );
    assert_eq!(
        m.value("vibevoice_errors_total", &[("code", "invalid_json")]),
        2.0
    );
    assert_eq!(
        m.value("vibevoice_errors_total", &[("code", "text_too_long")]),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_inputs_close_with_their_codes_and_the_server_keeps_serving() {
    let server = TestServer::ready(|s| s.limits.max_message_bytes = 1024).await;

    // Binary frames: protocol violation.
    let mut c = connect(server.addr, "").await;
    c.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    let (code, events) = c.closed().await;
    assert_eq!(code, Some(4400));
    let last = events.last().unwrap();
    assert_eq!(
        (last["code"].as_str(), last["fatal"].as_bool()),
        (Some("protocol_violation"), Some(true))
    );

    // A message over max_message_bytes.
    let mut c = connect(server.addr, "").await;
    let big = json!({"type": "text", "context_id": "a", "text": "y".repeat(2000)}).to_string();
    c.send_raw(Message::Text(big.into())).await;
    let (code, events) = c.closed().await;
    assert_eq!(code, Some(1009));
    assert_eq!(events.last().unwrap()["code"], "message_too_big");

    // Invalid UTF-8 in a text frame.
    let mut c = connect(server.addr, "").await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    c.send_raw(Message::Frame(frame)).await;
    let (code, events) = c.closed().await;
    assert_eq!(code, Some(1007));
    assert_eq!(events.last().unwrap()["code"], "invalid_utf8");

    // A client that vanishes mid-context does not hurt anyone.
    let mut c = connect(server.addr, "").await;
    c.text("gone", SPEECH).await;
    c.until("context.created", Some("gone")).await;
    drop(c);

    let mut c = connect(server.addr, "").await;
    still_speaks(&mut c, "fine").await;
    let (status, _, _) = server.get("/health").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_the_upgrade_but_not_the_page() {
    let server = TestServer::ready(|s| s.api_keys = ApiKeys::new(["k1"])).await;
    assert_eq!(refused(server.addr, "", None).await.0, 401);
    assert_eq!(refused(server.addr, "?api_key=wrong", None).await.0, 401);
    assert_eq!(refused(server.addr, "", Some("wrong")).await.0, 401);
    let mut c = connect(server.addr, "?api_key=k1").await;
    c.send(json!({"type": "keepalive"})).await;
    let mut c = connect_with_bearer(server.addr, "k1").await;
    still_speaks(&mut c, "authorised").await;

    let (status, headers, body) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = std::str::from_utf8(&body).unwrap();
    assert!(page.contains("/v1/tts/stream") && page.contains("<script>"));
}
