//! Cartesia's WebSocket dialect at `/tts/websocket` over a real server (tiny model), driven
//! with exactly the messages Pipecat's `CartesiaTTSService` sends: sentences with
//! `continue: true`, the end of the turn as an empty transcript with `continue: false`, and
//! `{"context_id", "cancel": true}` on barge-in; keys as the `api_key` query (Pipecat) or the
//! `X-API-Key` header.

use crate::common;
use crate::common::json_ws::{must_next, send, Ws};
use crate::common::TestServer;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vv_server::config::ApiKeys;

const KEY: &str = "cartesia-key";
const SENTENCES: [&str; 2] = [
    "Hello there, this is a test of the Cartesia dialect. ",
    "It speaks whole sentences, one after another.",
];

/// What Pipecat's `CartesiaTTSService._build_msg` sends.
fn pipecat_msg(context_id: &str, transcript: &str, keep_open: bool) -> Value {
    json!({
        "transcript": transcript,
        "continue": keep_open,
        "context_id": context_id,
        "model_id": "sonic-2",
        "voice": {"mode": "id", "id": "tiny"},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
        "add_timestamps": true,
        "use_original_timestamps": true,
        "language": "en",
    })
}

async fn connect(server: &TestServer) -> Ws {
    let url = server.ws_url(&format!(
        "/tts/websocket?api_key={KEY}&cartesia_version=2024-11-13"
    ));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn server() -> TestServer {
    TestServer::ready(|s| s.api_keys = ApiKeys::new([KEY])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipecat_turn_gets_chunks_word_timestamps_and_done() {
    let server = server().await;
    let mut ws = connect(&server).await;
    for sentence in SENTENCES {
        send(&mut ws, pipecat_msg("turn-1", sentence, true)).await;
    }
    send(&mut ws, pipecat_msg("turn-1", "", false)).await;
    let (mut audio, mut words, mut starts, mut ends) = (Vec::new(), Vec::new(), vec![], vec![]);
    loop {
        let msg = must_next(&mut ws).await;
        assert_eq!(msg["context_id"], "turn-1", "{msg}");
        match msg["type"].as_str().unwrap() {
            "chunk" => {
                assert_eq!(
                    (msg["status_code"].as_u64(), msg["done"].as_bool()),
                    (Some(206), Some(false))
                );
                assert!(msg["step_time"].is_number());
                let data = msg["data"].as_str().unwrap();
                audio.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .unwrap(),
                );
            }
            "timestamps" => {
                let wt = &msg["word_timestamps"];
                let seconds = |key: &str| -> Vec<f64> {
                    wt[key]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect()
                };
                words.extend(
                    wt["words"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|w| w.as_str().unwrap().to_string()),
                );
                starts.extend(seconds("start"));
                ends.extend(seconds("end"));
            }
            "done" => break,
            other => panic!("unexpected {other}: {msg}"),
        }
    }
    assert!(!audio.is_empty() && audio.len() % 2 == 0);
    let expected: Vec<String> = SENTENCES
        .concat()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(words, expected);
    let seconds = (audio.len() / 2) as f64 / 24_000.0;
    for i in 0..words.len() {
        assert!(starts[i] <= ends[i] && ends[i] <= seconds + 1e-9);
        assert!(i == 0 || ends[i - 1] <= starts[i]);
    }
    // The socket stays open for the next turn.
    send(
        &mut ws,
        pipecat_msg("turn-2", "And here is a second turn.", true),
    )
    .await;
    send(&mut ws, pipecat_msg("turn-2", "", false)).await;
    loop {
        let msg = must_next(&mut ws).await;
        if msg["type"] == "done" {
            assert_eq!(msg["context_id"], "turn-2");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_context_and_errors_name_it() {
    let server = server().await;
    let mut ws = connect(&server).await;
    // Barge-in: Pipecat sends the cancel once audio is playing; nothing more comes for it.
    send(
        &mut ws,
        pipecat_msg("barge", SENTENCES.concat().as_str(), true),
    )
    .await;
    let first = must_next(&mut ws).await;
    assert!(
        ["chunk", "timestamps"].contains(&first["type"].as_str().unwrap()),
        "{first}"
    );
    send(&mut ws, json!({"context_id": "barge", "cancel": true})).await;
    // A request that cannot be honoured: an error about its context, the socket goes on.
    let mut fast = pipecat_msg("fast", "Too fast.", true);
    fast["generation_config"] = json!({"speed": 5.0});
    send(&mut ws, fast).await;
    let mut unknown = pipecat_msg("who", "Nobody.", true);
    unknown["voice"] = json!({"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"});
    send(&mut ws, unknown).await;
    let mut errors = Vec::new();
    while errors.len() < 2 {
        let msg = must_next(&mut ws).await;
        match msg["type"].as_str().unwrap() {
            "error" => errors.push(msg),
            "chunk" | "timestamps" if msg["context_id"] == "barge" => {}
            other => panic!("unexpected {other}: {msg}"),
        }
    }
    assert_eq!(
        (errors[0]["context_id"].as_str(), errors[0]["code"].as_str()),
        (Some("fast"), Some("invalid_value"))
    );
    assert_eq!(
        (errors[1]["context_id"].as_str(), errors[1]["code"].as_str()),
        (Some("who"), Some("unknown_voice"))
    );
    assert_eq!(errors[1]["status_code"], 400);
    let unknown = errors[1]["error"].as_str().unwrap();
    assert!(unknown.contains("a0e99841"), "{unknown}");
    assert!(unknown.contains("valid voices: tiny, alloy"), "{unknown}");
    // Nothing more for the cancelled context; a mu-law context at 8 kHz still works.
    let mut mulaw = pipecat_msg("g711", "Short and narrow band audio.", false);
    mulaw["output_format"] =
        json!({"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000});
    send(&mut ws, mulaw).await;
    let mut bytes = 0;
    loop {
        let msg = must_next(&mut ws).await;
        assert_eq!(msg["context_id"], "g711", "{msg}");
        match msg["type"].as_str().unwrap() {
            "chunk" => {
                bytes += base64::engine::general_purpose::STANDARD
                    .decode(msg["data"].as_str().unwrap())
                    .unwrap()
                    .len()
            }
            "done" => break,
            _ => {}
        }
    }
    assert!(bytes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_as_query_or_x_api_key_header() {
    let server = server().await;
    let refused = |request| async move {
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            other => panic!("not refused: {:?}", other.map(|_| ())),
        }
    };
    let bare = server
        .ws_url("/tts/websocket")
        .into_client_request()
        .unwrap();
    assert_eq!(refused(bare).await, 401);
    let wrong = server
        .ws_url("/tts/websocket?api_key=nope")
        .into_client_request()
        .unwrap();
    assert_eq!(refused(wrong).await, 401);
    let mut header = server
        .ws_url("/tts/websocket")
        .into_client_request()
        .unwrap();
    header
        .headers_mut()
        .insert("x-api-key", KEY.parse().unwrap());
    header
        .headers_mut()
        .insert("cartesia-version", "2025-04-16".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(header).await.unwrap();
    send(&mut ws, pipecat_msg("k", "Keys work.", false)).await;
    loop {
        if must_next(&mut ws).await["type"] == "done" {
            break;
        }
    }
    // The query key is for WebSocket upgrades only.
    let (status, _, _) = server.get(&format!("/v1/models?api_key={KEY}")).await;
    assert_eq!(status.as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tts_bytes_answers_raw_audio_in_the_asked_format() {
    let server = server().await;
    let body = json!({
        "model_id": "sonic-2", "transcript": "Hello from the bytes endpoint.",
        "voice": {"mode": "id", "id": "tiny"}, "language": "en",
        "output_format": {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000},
    });
    let mut request = common::json_request("/tts/bytes", &body);
    request
        .headers_mut()
        .insert("x-api-key", KEY.parse().unwrap());
    request
        .headers_mut()
        .insert("cartesia-version", "2025-04-16".parse().unwrap());
    let (status, _, audio) = common::collect(common::send(server.addr, request).await).await;
    assert_eq!(status.as_u16(), 200);
    assert!(!audio.is_empty());
    let mut mp3 = body.clone();
    mp3["output_format"] = json!({"container": "mp3", "sample_rate": 44100, "bit_rate": 64000});
    let mut request = common::json_request("/tts/bytes", &mp3);
    request
        .headers_mut()
        .insert("x-api-key", KEY.parse().unwrap());
    let (status, headers, audio) = common::collect(common::send(server.addr, request).await).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(headers["content-type"], "audio/mpeg");
    // MPEG-1 Layer III, 64 kb/s (bitrate index 5), 44.1 kHz (rate index 0).
    assert_eq!(
        (audio[0], audio[1], audio[2] >> 4, (audio[2] >> 2) & 3),
        (0xFF, 0xFB, 5, 0)
    );
    let mut ogg = body.clone();
    ogg["output_format"] = json!({"container": "ogg", "sample_rate": 44100});
    let mut request = common::json_request("/tts/bytes", &ogg);
    request
        .headers_mut()
        .insert("x-api-key", KEY.parse().unwrap());
    let (status, _, error) = common::collect(common::send(server.addr, request).await).await;
    assert_eq!(status.as_u16(), 400);
    assert_eq!(common::error_code(&error), "unsupported_format");
    let unauthorised = common::json_request("/tts/bytes", &body);
    let (status, _, _) = common::collect(common::send(server.addr, unauthorised).await).await;
    assert_eq!(status.as_u16(), 401);
}
