//! ElevenLabs' WebSocket dialect at `/v1/text-to-speech/{voice_id}/multi-stream-input` (and
//! `stream-input`, and the HTTP routes) over a real server (tiny model), driven with exactly
//! the messages Pipecat's `ElevenLabsTTSService` sends: the context opened with
//! `{"text": " ", "context_id", "voice_settings"}`, sentences as `{"text", "context_id"}`,
//! `{"context_id", "flush": true}` at the end of the LLM response, `{"context_id",
//! "close_context": true}` at the end of the turn and on barge-in, keepalives `{"text": ""}`
//! with and without a context, and the key in the `xi-api-key` header. Word times are read
//! back the way Pipecat's `calculate_word_times` reads them.

use crate::common;
use std::time::Duration;

use crate::common::json_ws::{must_next, next, send, Ws};
use crate::common::TestServer;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vv_server::config::ApiKeys;

const KEY: &str = "elevenlabs-key";
const SENTENCES: [&str; 2] = [
    "Hello there, this is a test of the ElevenLabs dialect. ",
    "It speaks whole sentences, one after another.",
];
/// What Pipecat's URL carries besides the voice.
const QUERY: &str = "model_id=eleven_turbo_v2_5&output_format=pcm_24000&auto_mode=true";

async fn connect_path(server: &TestServer, path: &str) -> Ws {
    let mut request = server.ws_url(path).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("xi-api-key", KEY.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn connect(server: &TestServer) -> Ws {
    connect_path(
        server,
        &format!("/v1/text-to-speech/tiny/multi-stream-input?{QUERY}"),
    )
    .await
}

async fn server() -> TestServer {
    TestServer::ready(|s| s.api_keys = ApiKeys::new([KEY])).await
}

/// Pipecat's context init.
fn init(context_id: &str) -> Value {
    json!({"text": " ", "context_id": context_id,
           "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.0}})
}

/// A context's messages up to its `isFinal`, read as Pipecat reads them.
#[derive(Default)]
struct Turn {
    audio: Vec<u8>,
    /// (word, start seconds) as Pipecat's `calculate_word_times` computes them.
    words: Vec<(String, f64)>,
    /// Pipecat's `_cumulative_time` at the end.
    cumulative: f64,
    partial: String,
    partial_start: f64,
}

impl Turn {
    fn alignment(&mut self, alignment: &Value) {
        let chars = alignment["chars"].as_array().unwrap();
        let starts = alignment["charStartTimesMs"].as_array().unwrap();
        let durations = alignment["charDurationsMs"].as_array().unwrap();
        assert_eq!(chars.len(), starts.len());
        assert_eq!(chars.len(), durations.len());
        let mut complete = 0;
        for (c, start) in chars.iter().zip(starts) {
            let c = c.as_str().unwrap();
            if c == " " {
                if !self.partial.is_empty() {
                    let word = std::mem::take(&mut self.partial);
                    self.words.push((word, self.partial_start));
                    complete += 1;
                }
            } else {
                if self.partial.is_empty() {
                    self.partial_start = self.cumulative + start.as_f64().unwrap() / 1000.0;
                }
                self.partial.push_str(c);
            }
        }
        if complete > 0 {
            let last = starts.last().unwrap().as_f64().unwrap();
            self.cumulative += (last + durations.last().unwrap().as_f64().unwrap()) / 1000.0;
        }
    }
}

/// Reads `context`'s messages until its `isFinal` (other contexts' messages are skipped).
async fn read_turn(ws: &mut Ws, context: &str) -> Turn {
    let mut turn = Turn::default();
    loop {
        let msg = must_next(ws).await;
        assert!(msg.get("error").is_none(), "{msg}");
        if msg["contextId"] != context {
            continue;
        }
        if msg["isFinal"] == true {
            return turn;
        }
        let audio = msg["audio"].as_str().unwrap();
        turn.audio.extend(
            base64::engine::general_purpose::STANDARD
                .decode(audio)
                .unwrap(),
        );
        if let Some(alignment) = msg.get("alignment").filter(|a| !a.is_null()) {
            turn.alignment(alignment);
        }
    }
}

fn words_of(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipecat_turn_gets_audio_alignment_and_is_final() {
    let server = server().await;
    let mut ws = connect(&server).await;
    // A keepalive before any context, as Pipecat sends when idle.
    send(&mut ws, json!({"text": ""})).await;
    send(&mut ws, init("turn-1")).await;
    for sentence in SENTENCES {
        send(&mut ws, json!({"text": sentence, "context_id": "turn-1"})).await;
    }
    send(&mut ws, json!({"text": "", "context_id": "turn-1"})).await;
    send(&mut ws, json!({"context_id": "turn-1", "flush": true})).await;
    send(
        &mut ws,
        json!({"context_id": "turn-1", "close_context": true}),
    )
    .await;
    let turn = read_turn(&mut ws, "turn-1").await;
    assert!(!turn.audio.is_empty() && turn.audio.len() % 2 == 0);
    assert!(
        turn.partial.is_empty(),
        "a word left partial: {}",
        turn.partial
    );
    let words: Vec<String> = turn.words.iter().map(|(w, _)| w.clone()).collect();
    assert_eq!(words, words_of(&SENTENCES.concat()));
    let seconds = (turn.audio.len() / 2) as f64 / 24_000.0;
    for pair in turn.words.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "{pair:?}");
    }
    assert!(
        turn.cumulative <= seconds + 1e-3,
        "{} > {seconds}",
        turn.cumulative
    );
    assert!(turn.words[0].1 >= 0.0);
    // The socket stays open for the next turn, flushed before its close.
    send(&mut ws, init("turn-2")).await;
    send(
        &mut ws,
        json!({"text": "And here is a second turn.", "context_id": "turn-2"}),
    )
    .await;
    send(&mut ws, json!({"context_id": "turn-2", "flush": true})).await;
    let second = read_turn_after_close(&mut ws, "turn-2").await;
    assert_eq!(
        second
            .words
            .iter()
            .map(|(w, _)| w.clone())
            .collect::<Vec<_>>(),
        words_of("And here is a second turn.")
    );
}

/// Waits for the first audio of a flushed context, then closes it and reads it to the end.
async fn read_turn_after_close(ws: &mut Ws, context: &str) -> Turn {
    let first = must_next(ws).await;
    assert_eq!(first["contextId"], context, "{first}");
    send(ws, json!({"context_id": context, "close_context": true})).await;
    let mut turn = read_turn(ws, context).await;
    let mut all = Turn {
        audio: base64::engine::general_purpose::STANDARD
            .decode(first["audio"].as_str().unwrap())
            .unwrap(),
        ..Turn::default()
    };
    if let Some(a) = first.get("alignment") {
        all.alignment(a);
    }
    for (word, start) in std::mem::take(&mut turn.words) {
        all.words.push((word, start + all.cumulative));
    }
    all.audio.extend(turn.audio);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_context_mid_utterance_ends_it_and_errors_name_their_context() {
    let server = server().await;
    let mut ws = connect(&server).await;
    // Barge-in: Pipecat closes the context once audio is playing and opens the next turn.
    send(&mut ws, init("barge")).await;
    send(
        &mut ws,
        json!({"text": SENTENCES.concat(), "context_id": "barge"}),
    )
    .await;
    send(&mut ws, json!({"context_id": "barge", "flush": true})).await;
    let first = must_next(&mut ws).await;
    assert_eq!(first["contextId"], "barge", "{first}");
    send(
        &mut ws,
        json!({"context_id": "barge", "close_context": true}),
    )
    .await;
    read_turn(&mut ws, "barge").await;
    // Nothing more for the closed context: the next messages are about other contexts.
    let mut fast = init("fast");
    fast["voice_settings"]["speed"] = json!(5.0);
    send(&mut ws, fast).await;
    send(
        &mut ws,
        json!({"text": "No context.", "voice_settings": {"speed": 1.0}}),
    )
    .await;
    let error = must_next(&mut ws).await;
    assert_eq!(
        (error["contextId"].as_str(), error["error"].as_str()),
        (Some("fast"), Some("invalid_value")),
        "{error}"
    );
    let error = must_next(&mut ws).await;
    assert_eq!(
        (&error["contextId"], error["error"].as_str()),
        (&Value::Null, Some("invalid_message")),
        "{error}"
    );
    send(&mut ws, init("next")).await;
    send(
        &mut ws,
        json!({"text": "Sorry, go ahead.", "context_id": "next"}),
    )
    .await;
    send(
        &mut ws,
        json!({"context_id": "next", "close_context": true}),
    )
    .await;
    let next_turn = read_turn(&mut ws, "next").await;
    assert!(!next_turn.audio.is_empty());
    // close_socket stops everything and the server closes.
    send(&mut ws, json!({"close_socket": true})).await;
    assert_eq!(next(&mut ws, Duration::from_secs(5)).await, None);
}

/// LiveKit's ElevenLabs plugin (livekit-plugins-elevenlabs 1.8.9) reads `normalizedAlignment`
/// (its default `preferred_alignment` for English) and appends each message's
/// `charStartTimesMs` to one list without an offset: its word times are monotone and inside the
/// audio only if those times count from the context's first sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_livekit_stream_gets_word_times_from_the_first_sample() {
    let server = server().await;
    let query = "model_id=eleven_turbo_v2_5&output_format=pcm_22050&enable_ssml_parsing=false\
                 &enable_logging=true&inactivity_timeout=300&apply_text_normalization=auto\
                 &sync_alignment=true&auto_mode=true";
    let path = format!("/v1/text-to-speech/tiny/multi-stream-input?{query}");
    let mut ws = connect_path(&server, &path).await;
    // _SynthesizeStream: the init packet, one flushed packet per sentence, an empty flushed
    // packet, then close_context.
    send(
        &mut ws,
        json!({"text": " ", "voice_settings": {}, "context_id": "lk"}),
    )
    .await;
    for sentence in SENTENCES {
        let text = format!("{} ", sentence.trim());
        send(
            &mut ws,
            json!({"text": text, "context_id": "lk", "flush": true}),
        )
        .await;
    }
    send(
        &mut ws,
        json!({"text": "", "context_id": "lk", "flush": true}),
    )
    .await;
    send(&mut ws, json!({"context_id": "lk", "close_context": true})).await;
    let (mut chars, mut starts, mut audio_bytes) = (String::new(), Vec::new(), 0usize);
    loop {
        let msg = must_next(&mut ws).await;
        assert!(msg.get("error").is_none(), "{msg}");
        if msg["isFinal"] == true {
            break;
        }
        let audio = msg["audio"].as_str().unwrap();
        audio_bytes += base64::engine::general_purpose::STANDARD
            .decode(audio)
            .unwrap()
            .len();
        if let Some(a) = msg.get("normalizedAlignment").filter(|a| !a.is_null()) {
            for (c, start) in a["chars"]
                .as_array()
                .unwrap()
                .iter()
                .zip(a["charStartTimesMs"].as_array().unwrap())
            {
                chars.push_str(c.as_str().unwrap());
                starts.push(start.as_u64().unwrap());
            }
        }
    }
    assert_eq!(words_of(&chars), words_of(&SENTENCES.concat()));
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "start times not monotone: {starts:?}"
    );
    let audio_ms = audio_bytes as u64 * 1000 / 2 / 22050;
    assert!(
        *starts.last().unwrap() <= audio_ms,
        "{starts:?} vs {audio_ms} ms"
    );
    assert!(*starts.last().unwrap() > 0);
}

/// Pipecat's `_disconnect_websocket` sends `{"close_socket": true}` and waits (2 s) for the
/// server to close, as ElevenLabs does: the server closes with 1000 at once, mid-synthesis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_socket_closes_the_connection() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let server = server().await;
    let mut ws = connect(&server).await;
    send(&mut ws, init("long")).await;
    send(
        &mut ws,
        json!({"text": SENTENCES.concat(), "context_id": "long"}),
    )
    .await;
    send(&mut ws, json!({"context_id": "long", "flush": true})).await;
    let first = must_next(&mut ws).await;
    assert_eq!(first["contextId"], "long", "{first}");
    send(&mut ws, json!({"close_socket": true})).await;
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the server closes within 2 s of close_socket");
    assert_eq!(closed, Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_formats_and_voices_are_checked_before_the_upgrade() {
    let server = server().await;
    let refused = |request| async move {
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            other => panic!("not refused: {:?}", other.map(|_| ())),
        }
    };
    let path = format!("/v1/text-to-speech/tiny/multi-stream-input?{QUERY}");
    let bare = server.ws_url(&path).into_client_request().unwrap();
    assert_eq!(refused(bare).await, 401);
    let mut wrong = server.ws_url(&path).into_client_request().unwrap();
    wrong
        .headers_mut()
        .insert("xi-api-key", "nope".parse().unwrap());
    assert_eq!(refused(wrong).await, 401);
    for bad in [
        "/v1/text-to-speech/tiny/multi-stream-input?output_format=mp3_44100_999",
        "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/multi-stream-input",
    ] {
        let mut request = server.ws_url(bad).into_client_request().unwrap();
        request
            .headers_mut()
            .insert("xi-api-key", KEY.parse().unwrap());
        assert_eq!(refused(request).await, 400, "{bad}");
    }
    // The `api_key` query works on the upgrade too; mu-law at 8 kHz.
    let query = format!(
        "/v1/text-to-speech/alloy/multi-stream-input?output_format=ulaw_8000&api_key={KEY}"
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(&query))
        .await
        .unwrap();
    send(&mut ws, init("g711")).await;
    send(
        &mut ws,
        json!({"text": "Narrow band.", "context_id": "g711"}),
    )
    .await;
    send(
        &mut ws,
        json!({"context_id": "g711", "close_context": true}),
    )
    .await;
    let turn = read_turn(&mut ws, "g711").await;
    assert!(!turn.audio.is_empty());
    // MP3 at 22.05 kHz, 32 kb/s (LiveKit's ElevenLabs plugin's default): the `audio` messages
    // together are one MP3 stream of that rate and bitrate that decodes.
    let query = format!(
        "/v1/text-to-speech/alloy/multi-stream-input?output_format=mp3_22050_32&api_key={KEY}"
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(&query))
        .await
        .unwrap();
    send(&mut ws, init("mp3")).await;
    send(&mut ws, json!({"text": "Compressed.", "context_id": "mp3"})).await;
    send(&mut ws, json!({"context_id": "mp3", "close_context": true})).await;
    let turn = read_turn(&mut ws, "mp3").await;
    // MPEG-2 Layer III (0xFFF3), 32 kb/s (index 4), 22.05 kHz (index 0), mono.
    let header = &turn.audio[..4];
    assert_eq!((header[0], header[1], header[2] >> 4), (0xFF, 0xF3, 4));
    assert_eq!(((header[2] >> 2) & 3, header[3] >> 6), (0, 3));
    let mut decoder = rusty_mp3::Mp3Decoder::new();
    decoder.push(&turn.audio);
    decoder.flush();
    let mut samples = 0;
    while let Ok(frame) = decoder.next_frame() {
        assert_eq!(frame.sample_rate, 22_050);
        samples += frame.samples.len();
    }
    assert!(samples > 1057, "{samples} samples decoded");
    assert_eq!(samples % 576, 0, "whole MPEG-2 frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_input_ends_with_empty_text_and_closes() {
    let server = server().await;
    let mut ws = connect_path(
        &server,
        "/v1/text-to-speech/tiny/stream-input?output_format=pcm_16000",
    )
    .await;
    send(
        &mut ws,
        json!({"text": " ", "voice_settings": {"speed": 1.0}, "xi_api_key": KEY}),
    )
    .await;
    send(
        &mut ws,
        json!({"text": "One context only. ", "try_trigger_generation": true}),
    )
    .await;
    send(&mut ws, json!({"text": ""})).await;
    let turn = read_turn(&mut ws, "0").await;
    assert!(!turn.audio.is_empty());
    assert_eq!(
        turn.words
            .iter()
            .map(|(w, _)| w.clone())
            .collect::<Vec<_>>(),
        words_of("One context only.")
    );
    assert!(
        next(&mut ws, Duration::from_secs(10)).await.is_none(),
        "the socket closes after isFinal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_text_to_speech_answers_audio_in_the_asked_format() {
    let server = server().await;
    let body = json!({"text": "Hello from the HTTP route.", "model_id": "eleven_turbo_v2_5",
                      "voice_settings": {"stability": 0.5, "speed": 1.0}});
    for path in [
        "/v1/text-to-speech/tiny?output_format=ulaw_8000",
        "/v1/text-to-speech/alloy/stream?output_format=pcm_22050",
        "/v1/text-to-speech/tiny/stream?output_format=pcm_32000",
    ] {
        let mut request = common::json_request(path, &body);
        request
            .headers_mut()
            .insert("xi-api-key", KEY.parse().unwrap());
        let (status, _, audio) = common::collect(common::send(server.addr, request).await).await;
        assert_eq!(status.as_u16(), 200, "{path}");
        assert!(!audio.is_empty());
    }
    let mut mp3 =
        common::json_request("/v1/text-to-speech/tiny?output_format=mp3_44100_128", &body);
    mp3.headers_mut().insert("xi-api-key", KEY.parse().unwrap());
    let (status, headers, audio) = common::collect(common::send(server.addr, mp3).await).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(headers["content-type"], "audio/mpeg");
    // MPEG-1 Layer III (0xFFFB), 128 kb/s (index 9).
    assert_eq!((audio[0], audio[1], audio[2] >> 4), (0xFF, 0xFB, 9));
    let mut bad = common::json_request("/v1/text-to-speech/tiny?output_format=mp3_44100", &body);
    bad.headers_mut().insert("xi-api-key", KEY.parse().unwrap());
    let (status, _, error) = common::collect(common::send(server.addr, bad).await).await;
    assert_eq!(status.as_u16(), 400);
    assert_eq!(common::error_code(&error), "invalid_request");
    let unauthorised = common::json_request("/v1/text-to-speech/tiny", &body);
    let (status, _, _) = common::collect(common::send(server.addr, unauthorised).await).await;
    assert_eq!(status.as_u16(), 401);
}
