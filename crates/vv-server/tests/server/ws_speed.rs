//! Protocol v1 `speed` over a real server (tiny fixture model): `session.configure`
//! `{"speed": 2.0}` time-stretches every context's audio (the same seeded audio, stretched:
//! `round(n / speed)` samples, the first half-frame a copy), durations count the stretched
//! audio, and a speed outside 0.25-4.0 is refused.

use crate::common::TestServer;
use crate::ws_client::connect;
use serde_json::json;
use vv_audio::resample::resampled_len;
use vv_audio::stretch::HOP;
use vv_audio::Speed;

const TEXT: &str = "Faster and slower, same pitch.";

fn f32_samples(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_speed_stretches_context_audio() {
    // The tiny model outruns a debug-build client: room for a whole context's frames, so that
    // no context ends as a slow consumer.
    let server = TestServer::ready(|s| s.limits.max_buffered_frames = 4096).await;
    let mut c = connect(server.addr, "?encoding=pcm_f32le").await;
    assert_eq!(c.ready["defaults"]["speed"], 1.0);
    c.configure(json!({"seed": 5})).await;
    let normal = f32_samples(&c.speak("normal", TEXT).await.payload());
    assert!(normal.len() >= 3200);

    let (configured, warnings) = c.configure(json!({"speed": 2.0})).await;
    assert_eq!(configured["speed"], 2.0);
    assert!(warnings.is_empty(), "{warnings:?}");
    let fast = c.speak("fast", TEXT).await;
    let samples = f32_samples(&fast.payload());
    assert_eq!(samples.len(), (normal.len() as f64 / 2.0).round() as usize);
    for (a, b) in samples.iter().zip(&normal).take(HOP) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let last = fast.frames.last().unwrap().0;
    assert!(last.is_last());
    assert_eq!(
        fast.event("context.done")["audio_ms"],
        samples.len() as u64 * 1000 / 24_000,
        "audio_ms counts the stretched audio"
    );

    // Speed and rate together: stretched first, then resampled.
    c.configure(json!({"speed": 0.5, "sample_rate": 16000, "encoding": "pcm_s16le"}))
        .await;
    let slow = c.speak("slow", TEXT).await.payload();
    let stretched = Speed::new(0.5).unwrap().stretched_len(normal.len() as u64);
    assert_eq!(slow.len() as u64, 2 * resampled_len(stretched, 16_000));

    for bad in [0.1, 4.5] {
        c.send(json!({"type": "session.configure", "speed": bad}))
            .await;
        let e = c.error().await;
        assert_eq!(e["code"], "invalid_value", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("0.25 to 4.0"),
            "{e}"
        );
    }
    // A refused configure changes nothing.
    let (configured, _) = c.configure(json!({})).await;
    assert_eq!(configured["speed"], 0.5);
}
