//! The supervised model thread seen from the service (faults injected through the engine's
//! fault seam): a model thread that hangs turns `/ready` to 503 `engine_stalled`, and one whose
//! device keeps failing ends with `engine_dead`; either way the server stops with the error
//! `engine_failed`, which makes the process exit non-zero so an orchestrator restarts it.

use crate::common;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{TestServer, VOICE};
use hyper::StatusCode;
use serde_json::json;
use vv_device::DeviceRequest;
use vv_engine::Faults;
use vv_model::ModelError;

/// Faults switched on by the test once the service is ready.
#[derive(Default)]
struct Switches {
    hang: AtomicBool,
    device_error: AtomicBool,
}

impl Faults for Switches {
    fn step(&self) -> vv_model::Result<()> {
        while self.hang.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.device_error.load(Ordering::SeqCst) {
            return Err(ModelError::Candle(candle_core::Error::Msg(
                "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered".into(),
            )));
        }
        Ok(())
    }
}

async fn ready_server(switches: &Arc<Switches>) -> TestServer {
    let faults: Arc<dyn Faults> = switches.clone();
    let server = TestServer::start_with_faults(
        DeviceRequest::Cpu,
        |s| s.limits.engine_stall_timeout_secs = 1,
        faults,
    )
    .await;
    server.wait_ready().await;
    server
}

/// Sends `requests` speech requests one after another in the background (so that the model
/// thread steps; with a failing device each fails, and the engine counts the failed rounds).
fn speak(server: &TestServer, requests: usize) {
    let addr = server.addr;
    tokio::spawn(async move {
        let body = json!({"input": "Keep the model thread busy for a while.", "voice": VOICE});
        for _ in 0..requests {
            let request = common::json_request("/v1/audio/speech", &body);
            let _ = common::collect(common::send(addr, request).await).await;
        }
    });
}

/// Polls `/ready` until it answers 503 with `status`; every other answer before it must be 200
/// `ready`.
async fn until_not_ready(server: &TestServer, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "/ready never said {status}");
        let (code, body) = server.get_json("/ready").await;
        if code == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["status"], status, "{body}");
            return;
        }
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::OK, Some("ready"))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the server to stop by itself; its error.
async fn stops_with_error(server: TestServer) -> vv_server::ServeError {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.is_finished() {
        assert!(Instant::now() < deadline, "the server kept running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await.unwrap_err()
}

#[tokio::test]
async fn a_hung_model_thread_makes_ready_503_and_stops_the_server() {
    let switches = Arc::new(Switches::default());
    let server = ready_server(&switches).await;
    switches.hang.store(true, Ordering::SeqCst);
    speak(&server, 1);
    until_not_ready(&server, "engine_stalled").await;
    let err = stops_with_error(server).await;
    switches.hang.store(false, Ordering::SeqCst);
    assert_eq!(err.code(), "engine_failed", "{err}");
    assert!(err.to_string().contains("stalled"), "{err}");
}

#[tokio::test]
async fn a_device_that_keeps_failing_ends_the_engine_and_the_server() {
    let switches = Arc::new(Switches::default());
    let server = ready_server(&switches).await;
    switches.device_error.store(true, Ordering::SeqCst);
    speak(&server, 10);
    let err = stops_with_error(server).await;
    assert_eq!(err.code(), "engine_failed", "{err}");
    assert!(err.to_string().contains("dead"), "{err}");
}
