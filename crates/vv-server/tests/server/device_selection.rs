//! Seed properties 6 and 12 end to end: a service configured through `TTS_DEVICE` (every valid
//! form) either runs inference on the device that value resolves to, after a successful warmup,
//! or, for a device this build or machine cannot open, stops with a typed error (an explicit
//! device never falls back). The expected outcome comes from an oracle written here, not from
//! the resolver.

use std::time::{Duration, Instant};

use crate::common::{parse_wav, PromText, TestServer, VOICE};
use hyper::StatusCode;
use serde_json::json;
use vv_device::Backend;
use vv_server::config::{CommandLine, Settings};

/// What a `TTS_DEVICE` value must lead to on this build and machine.
#[derive(Debug, PartialEq)]
enum Expected {
    /// Ready after warmup, inference on the CPU.
    Cpu,
    /// The service stops; the error names the backend's missing cargo feature.
    NotCompiled(&'static str),
}

/// The oracle: the value trimmed and lowercased; `auto` and `cpu` run on the CPU of a machine
/// whose build has no GPU backend; `cuda[:n]` needs the `cuda` feature, `mps`/`metal` `metal`.
fn expected(value: &str) -> Expected {
    let v = value.trim().to_ascii_lowercase();
    match v.as_str() {
        "auto" | "cpu" => Expected::Cpu,
        "mps" | "metal" => Expected::NotCompiled("metal"),
        _ if v == "cuda" || v.starts_with("cuda:") => Expected::NotCompiled("cuda"),
        _ => panic!("not a valid form: {value:?}"),
    }
}

#[tokio::test]
async fn every_tts_device_value_runs_inference_where_it_resolves_or_fails_typed() {
    if Backend::Cuda.compiled_into_this_build() || Backend::Metal.compiled_into_this_build() {
        eprintln!("skipped: this oracle describes CPU-only builds (the GPU scripts cover GPUs)");
        return;
    }
    for value in [
        "auto", "AUTO", "cpu", " CPU ", "\tcpu\n", "cuda", "cuda:0", "CUDA:3", "mps", "metal",
    ] {
        let env = |name: &str| (name == "TTS_DEVICE").then(|| value.to_string());
        let settings = Settings::load(&CommandLine::default(), &env).unwrap();
        let server = TestServer::start_on(settings.device, |_| {}).await;
        match expected(value) {
            Expected::Cpu => runs_on_the_cpu(server, value).await,
            Expected::NotCompiled(feature) => fails_typed(server, value, feature).await,
        }
    }
}

/// Ready after a warmup that ran, reports the CPU everywhere, and synthesises speech there.
async fn runs_on_the_cpu(server: TestServer, value: &str) {
    server.wait_ready().await;
    let (_, info) = server.get_json("/api/info").await;
    assert_eq!(
        info["device"]["device"], "cpu",
        "TTS_DEVICE={value:?}: {info}"
    );
    assert_eq!(info["device"]["backend"], "cpu", "{info}");
    assert_eq!(info["device"]["cpu_fallbacks"], json!([]), "{info}");
    assert!(
        info["model"]["warmup_seconds"].as_f64().unwrap() > 0.0,
        "{info}"
    );
    let engine = server.state.loaded_engine().unwrap();
    assert_eq!(engine.info().device.device.backend, Backend::Cpu);

    let request = json!({"input": "Which device am I on?", "voice": VOICE,
                         "response_format": "wav", "seed": 3});
    let (status, _, body) = server.post_json("/v1/audio/speech", &request).await;
    assert_eq!(status, StatusCode::OK, "TTS_DEVICE={value:?}");
    let wav = parse_wav(&body);
    assert!(
        body.len() > wav.data_offset + 3200 * 2,
        "audio was produced"
    );

    let (_, _, metrics) = server.get("/metrics").await;
    let prom = PromText::parse(std::str::from_utf8(&metrics).unwrap());
    assert_eq!(
        prom.value("vibevoice_build_info", &[("device", "cpu")]),
        1.0
    );
    assert!(prom.value("vibevoice_audio_seconds_total", &[]) > 0.0);
    server.stop().await.unwrap();
}

/// The service stops with `model_load_failed`, naming the feature the build lacks.
async fn fails_typed(server: TestServer, value: &str, feature: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.is_finished() {
        assert!(
            Instant::now() < deadline,
            "TTS_DEVICE={value:?}: kept running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = server.stop().await.unwrap_err();
    assert_eq!(
        err.code(),
        "model_load_failed",
        "TTS_DEVICE={value:?}: {err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("no {feature} support")),
        "TTS_DEVICE={value:?}: {message}"
    );
}
