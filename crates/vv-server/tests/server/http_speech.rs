//! `POST /v1/audio/speech` against the real server with the tiny model: every format, SSE,
//! every bad input, overload and cancellation on disconnect.

use crate::common::{collect, error_code, json_request, parse_wav, send, TestServer, VOICE};
use base64::Engine as _;
use http_body_util::BodyExt;
use hyper::StatusCode;
use serde_json::{json, Value};

const TEXT: &str = "Streaming speech from a tiny model.";

fn speech(extra: Value) -> Value {
    let mut body = json!({"model": "tts-1", "input": TEXT, "voice": VOICE, "seed": 11});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// A long, slow request that keeps its slot for a while.
fn long_speech() -> Value {
    speech(json!({
        "input": "A long utterance that keeps its synthesis slot busy for a good while. ".repeat(8),
        "diffusion_steps": 100,
        "response_format": "pcm",
    }))
}

#[tokio::test]
async fn every_format_is_valid_audio() {
    let server = TestServer::ready(|_| {}).await;
    let (status, headers, wav) = server
        .post_json(
            "/v1/audio/speech",
            &speech(json!({"response_format": "wav"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "audio/wav");
    let info = parse_wav(&wav);
    assert_eq!(
        (info.format_tag, info.channels, info.bits, info.sample_rate),
        (1, 1, 16, 24_000)
    );
    assert_eq!(
        (info.riff_size, info.data_size),
        (u32::MAX, u32::MAX),
        "streaming sizes"
    );
    let wav_samples = (wav.len() - info.data_offset) / 2;
    assert_eq!((wav.len() - info.data_offset) % 2, 0);
    assert!(wav_samples >= 3200, "at least one frame: {wav_samples}");
    assert_eq!(wav_samples % 3200, 0, "whole 3200-sample frames at 24 kHz");

    let (status, headers, pcm) = server
        .post_json(
            "/v1/audio/speech",
            &speech(json!({"response_format": "pcm"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "audio/pcm");
    assert_eq!(pcm.len() % 2, 0);
    assert_eq!(
        &pcm[..],
        &wav[info.data_offset..],
        "same seed: pcm == wav payload"
    );

    let (status, headers, flac) = server
        .post_json(
            "/v1/audio/speech",
            &speech(json!({"response_format": "flac"})),
        )
        .await;
    assert_eq!(
        (status, &headers["content-type"]),
        (StatusCode::OK, &"audio/flac".parse().unwrap())
    );
    assert_eq!(&flac[..4], b"fLaC");

    let (status, headers, opus) = server
        .post_json(
            "/v1/audio/speech",
            &speech(json!({"response_format": "opus"})),
        )
        .await;
    assert_eq!(
        (status, &headers["content-type"]),
        (StatusCode::OK, &"audio/ogg".parse().unwrap())
    );
    assert_eq!(&opus[..4], b"OggS");
    assert!(opus.windows(8).take(100).any(|w| w == b"OpusHead"));

    // MP3 (bit_rate is the extension Cartesia's and ElevenLabs' routes use): decodes to the
    // same audio as pcm (same seed), 1,057 samples later (the codec's delay).
    let (status, headers, mp3) = server
        .post_json(
            "/v1/audio/speech",
            &speech(json!({"response_format": "mp3", "bit_rate": 96000})),
        )
        .await;
    assert_eq!(
        (status, &headers["content-type"]),
        (StatusCode::OK, &"audio/mpeg".parse().unwrap())
    );
    let mut decoder = rusty_mp3::Mp3Decoder::new();
    decoder.push(&mp3);
    decoder.flush();
    let mut decoded = Vec::new();
    while let Ok(frame) = decoder.next_frame() {
        assert_eq!((frame.sample_rate, frame.channels), (24_000, 1));
        decoded.extend(frame.samples);
    }
    assert_eq!(mp3[2] >> 4, 10, "96 kb/s (MPEG-2 bitrate index 10)");
    let reference: Vec<f32> = pcm
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    assert!(decoded.len() >= reference.len() + 1057);
    let (mut signal, mut noise) = (0f64, 0f64);
    for (r, d) in reference.iter().zip(&decoded[1057..]) {
        signal += f64::from(*r).powi(2);
        noise += f64::from(r - d).powi(2);
    }
    let snr = 10.0 * (signal / noise).log10();
    assert!(snr > 10.0, "mp3 against pcm: SNR {snr:.1} dB");

    let (status, _, wav16) = server
        .post_json(
            "/v1/audio/speech",
            &speech(json!({"response_format": "wav", "sample_rate": 16000})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let info16 = parse_wav(&wav16);
    assert_eq!(info16.sample_rate, 16_000);
    let samples16 = (wav16.len() - info16.data_offset) / 2;
    let expected = vv_audio::resample::resampled_len(wav_samples as u64, 16_000);
    assert_eq!(
        samples16 as u64, expected,
        "ceil(n * 16000 / 24000) samples"
    );
    server.stop().await.unwrap();
}

/// The chunk sizes of an HTTP/1.1 `Transfer-Encoding: chunked` body as the server framed them
/// on the wire (a client library may hand one chunk over in pieces as TCP delivers it).
fn wire_chunk_sizes(body: &[u8]) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let line = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return sizes;
        }
        sizes.push(size);
        rest = &rest[line_end + 2 + size..];
        assert_eq!(&rest[..2], b"\r\n", "chunk data ends with CRLF");
        rest = &rest[2..];
    }
}

#[tokio::test]
async fn audio_arrives_in_several_chunks() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::ready(|_| {}).await;
    let body = speech(json!({"input": TEXT.repeat(3), "response_format": "pcm"})).to_string();
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST /v1/audio/speech HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let chunks = wire_chunk_sizes(&response[head_end + 4..]);
    assert!(chunks.len() >= 2, "one chunk per frame: {chunks:?}");
    assert!(
        chunks.iter().all(|&n| n % 2 == 0),
        "whole samples per chunk: {chunks:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sse_stream_carries_base64_deltas_then_done() {
    let server = TestServer::ready(|_| {}).await;
    let (status, _, pcm) = server
        .post_json(
            "/v1/audio/speech",
            &speech(json!({"response_format": "pcm"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, body) = server
        .post_json(
            "/v1/audio/speech",
            &speech(json!({"response_format": "pcm", "stream_format": "sse"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    let text = std::str::from_utf8(&body).unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data line")).unwrap())
        .collect();
    let (last, deltas) = events.split_last().unwrap();
    assert_eq!(last["type"], "speech.audio.done");
    assert!(!deltas.is_empty());
    let mut audio = Vec::new();
    for d in deltas {
        assert_eq!(d["type"], "speech.audio.delta");
        audio.extend(
            base64::engine::general_purpose::STANDARD
                .decode(d["audio"].as_str().unwrap())
                .unwrap(),
        );
    }
    assert_eq!(audio, pcm.to_vec(), "same seed: sse audio == pcm body");
    server.stop().await.unwrap();
}

/// Little-endian f32 samples of a `pcm_f32le` body.
fn f32_samples(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// `speed` time-stretches the same seeded audio: speed 2.0 has round(n / 2) samples, 0.5 has
/// 2n, each starting with the speed-1.0 audio's first 20 ms (the stretcher's first half-frame
/// is a copy; later samples cannot be compared exactly because the encoder clips the tiny
/// model's loud output); SSE carries the same stretched bytes and every container works at
/// any speed.
#[tokio::test]
async fn speed_stretches_the_audio_in_every_format() {
    let server = TestServer::ready(|_| {}).await;
    let pcm_at = |speed: f64, extra: Value| {
        let mut body = speech(json!({"response_format": "pcm_f32le", "speed": speed}));
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (status, _, normal) = server
        .post_json("/v1/audio/speech", &pcm_at(1.0, json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let normal = f32_samples(&normal);
    assert!(normal.len() >= 3200);
    for speed in [2.0, 0.5, 1.5] {
        let (status, _, body) = server
            .post_json("/v1/audio/speech", &pcm_at(speed, json!({})))
            .await;
        assert_eq!(status, StatusCode::OK, "speed {speed}");
        let stretched = f32_samples(&body);
        let want = (normal.len() as f64 / speed).round() as usize;
        assert_eq!(stretched.len(), want, "speed {speed}");
        for (i, (a, b)) in stretched
            .iter()
            .zip(&normal)
            .take(vv_audio::stretch::HOP)
            .enumerate()
        {
            assert!(
                (a - b).abs() < 1e-5,
                "speed {speed}, sample {i}: {a} vs {b}"
            );
        }
    }
    let (_, _, pcm) = server
        .post_json(
            "/v1/audio/speech",
            &pcm_at(1.5, json!({"response_format": "pcm"})),
        )
        .await;
    let (status, _, sse) = server
        .post_json(
            "/v1/audio/speech",
            &pcm_at(
                1.5,
                json!({"response_format": "pcm", "stream_format": "sse"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut audio = Vec::new();
    for event in std::str::from_utf8(&sse).unwrap().split("\n\n") {
        let Some(data) = event.strip_prefix("data: ") else {
            continue;
        };
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(delta) = v["audio"].as_str() {
            audio.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(delta)
                    .unwrap(),
            );
        }
    }
    assert_eq!(
        audio,
        pcm.to_vec(),
        "same seed and speed: sse audio == pcm body"
    );
    assert_eq!(pcm.len() / 2, (normal.len() as f64 / 1.5).round() as usize);
    let (status, _, wav) = server
        .post_json(
            "/v1/audio/speech",
            &pcm_at(
                0.25,
                json!({"response_format": "wav", "sample_rate": 16000}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let info = parse_wav(&wav);
    let want = vv_audio::resample::resampled_len(normal.len() as u64 * 4, 16_000);
    assert_eq!(((wav.len() - info.data_offset) / 2) as u64, want);
    for (format, magic) in [
        ("flac", &b"fLaC"[..]),
        ("opus", &b"OggS"[..]),
        ("mp3", &[0xFF, 0xF3][..]),
    ] {
        let (status, _, body) = server
            .post_json(
                "/v1/audio/speech",
                &pcm_at(4.0, json!({"response_format": format})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{format}");
        assert_eq!(&body[..magic.len()], magic, "{format}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_inputs_get_typed_4xx_and_the_service_keeps_serving() {
    let server = TestServer::ready(|s| s.limits.max_text_chars = 40).await;
    let raw = |body: &'static str| {
        let mut req = json_request("/v1/audio/speech", &json!(null));
        *req.body_mut() = http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes()));
        req
    };
    for (body, code) in [
        ("{\"input\": \"hi\"", "invalid_json"),
        ("not json at all", "invalid_json"),
        ("{\"input\": [1, 2]}", "invalid_request"),
        (
            "{\"input\": \"hi\", \"speed\": \"fast\"}",
            "invalid_request",
        ),
    ] {
        let (status, _, resp) = collect(send(server.addr, raw(body)).await).await;
        assert_eq!(
            (status, error_code(&resp)),
            (StatusCode::BAD_REQUEST, code.to_string()),
            "{body}"
        );
    }
    let cases = [
        (json!({"input": ""}), StatusCode::BAD_REQUEST, "empty_input"),
        (
            json!({"input": "   "}),
            StatusCode::BAD_REQUEST,
            "empty_input",
        ),
        (
            json!({"input": "x".repeat(41)}),
            StatusCode::BAD_REQUEST,
            "input_too_long",
        ),
        (
            json!({"voice": "nobody"}),
            StatusCode::BAD_REQUEST,
            "unknown_voice",
        ),
        (
            json!({"voice": "../tiny"}),
            StatusCode::BAD_REQUEST,
            "unknown_voice",
        ),
        (
            json!({"voice": "voices/tiny"}),
            StatusCode::BAD_REQUEST,
            "unknown_voice",
        ),
        (
            json!({"response_format": "mp3", "bit_rate": 1}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"response_format": "aac"}),
            StatusCode::BAD_REQUEST,
            "unsupported_format",
        ),
        (
            json!({"sample_rate": 11025}),
            StatusCode::BAD_REQUEST,
            "unsupported_sample_rate",
        ),
        (
            json!({"response_format": "opus", "sample_rate": 44100}),
            StatusCode::BAD_REQUEST,
            "unsupported_sample_rate",
        ),
        (
            json!({"speed": 5.0}),
            StatusCode::BAD_REQUEST,
            "unsupported_speed",
        ),
        (
            json!({"stream_format": "chunks"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"diffusion_steps": 0}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"cfg_scale": -1.0}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"seed": -5}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"model": "whisper-1"}),
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
    ];
    for (extra, status, code) in cases {
        let (got, _, body) = server
            .post_json("/v1/audio/speech", &speech(extra.clone()))
            .await;
        assert_eq!(
            (got, error_code(&body)),
            (status, code.to_string()),
            "{extra}"
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (_, _, body) = server
        .post_json("/v1/audio/speech", &speech(json!({"speed": 0.2})))
        .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["param"], "speed");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("0.25 to 4.0"), "{v}");
    let (_, _, body) = server
        .post_json("/v1/audio/speech", &speech(json!({"voice": "nobody"})))
        .await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("valid voices: {VOICE}, alloy, ash"))
            && message.contains("cedar"),
        "the error lists the installed voices and aliases: {message}"
    );

    // Still serving, with aliases (including OpenAI's newer `marin` and `cedar`) and installed
    // names alike.
    for voice in ["alloy", "shimmer", "marin", "cedar", VOICE] {
        let (status, _, wav) = server
            .post_json(
                "/v1/audio/speech",
                &speech(json!({"voice": voice, "input": "Fine."})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{voice}");
        parse_wav(&wav);
    }
    let errors = &server.state.metrics().errors_total;
    assert_eq!(errors.with_label_values(&["unknown_voice"]).get(), 4);
    assert_eq!(errors.with_label_values(&["unsupported_speed"]).get(), 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_full_server_answers_503_overloaded_with_retry_after() {
    let server =
        TestServer::ready(|s| s.limits.max_slots = vv_server::config::MaxSlots::Fixed(1)).await;
    let held = send(
        server.addr,
        json_request("/v1/audio/speech", &long_speech()),
    )
    .await;
    assert_eq!(held.status(), StatusCode::OK);
    assert_eq!(
        server.state.in_flight(),
        1,
        "the first request holds the only slot"
    );

    let (status, headers, body) = server
        .post_json("/v1/audio/speech", &speech(json!({})))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(error_code(&body), "overloaded");
    assert_eq!(
        server
            .state
            .metrics()
            .errors_total
            .with_label_values(&["overloaded"])
            .get(),
        1
    );
    drop(held);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_disconnect_cancels_the_utterance_and_frees_the_slot() {
    let server =
        TestServer::ready(|s| s.limits.max_slots = vv_server::config::MaxSlots::Fixed(1)).await;
    let metrics = server.state.metrics().clone();
    let steps = || metrics.engine_step_seconds.get_sample_count();

    // Leave after the first chunk: the utterance stops early and frees the only slot.
    let before = steps();
    let response = send(
        server.addr,
        json_request("/v1/audio/speech", &long_speech()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(server.state.in_flight(), 1);
    drop(body);
    server.wait_idle().await;
    let cancelled_steps = steps() - before;
    assert_eq!(
        metrics
            .contexts_total
            .with_label_values(&["cancelled"])
            .get(),
        1
    );
    assert_eq!(metrics.contexts_active.get(), 0);

    // The same request read to the end (same seed, same frames) takes more engine steps.
    let before = steps();
    let (status, _, pcm) = server.post_json("/v1/audio/speech", &long_speech()).await;
    assert_eq!(status, StatusCode::OK);
    server.wait_idle().await;
    // The slot is freed before the model thread records its last step: wait for the record.
    let frames = (pcm.len() / 2 / 3200) as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while steps() - before < frames && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let full_steps = steps() - before;
    assert_eq!(full_steps, frames, "one step per frame at batch size 1");
    assert!(
        cancelled_steps < full_steps,
        "cancelled after {cancelled_steps} of {full_steps} steps"
    );
    server.stop().await.unwrap();
}
