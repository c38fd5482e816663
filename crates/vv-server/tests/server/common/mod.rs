//! Shared support for the HTTP integration tests: a real server on 127.0.0.1:0 with the tiny
//! fixture model, a minimal HTTP/1.1 client, and parsers for WAV headers and Prometheus text.
#![allow(dead_code)] // each test binary uses a different subset

pub mod json_ws;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vv_device::DeviceRequest;
use vv_engine::{Faults, NoFaults};
use vv_server::config::Settings;
use vv_server::serve::{ServeError, Server};
use vv_server::AppState;

/// Root of the tiny fixture.
pub const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");

/// The installed voice name in test servers.
pub const VOICE: &str = "tiny";

/// Settings for the tiny model on `device`, warmup on, port 0, voices in `voices_dir`.
pub fn tiny_settings(voices_dir: PathBuf, device: DeviceRequest) -> Settings {
    Settings {
        model: format!("{TINY}/model"),
        tokenizer: format!("{TINY}/tokenizer/tokenizer.json"),
        voices_dir: Some(voices_dir),
        device,
        warmup: true,
        host: "127.0.0.1".to_string(),
        port: 0,
        // A fixed number: automatic slots calibrate every bucket at start (tests/capacity.rs).
        limits: vv_server::config::Limits {
            max_slots: vv_server::config::MaxSlots::Fixed(4),
            ..Default::default()
        },
        ..Settings::default()
    }
}

/// A running server and the means to stop it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    _voices: TempDir,
}

impl TestServer {
    /// Starts a server on the CPU; `configure` adjusts the settings first.
    pub async fn start(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::start_on(DeviceRequest::Cpu, configure).await
    }

    /// Starts a server on `device`.
    pub async fn start_on(device: DeviceRequest, configure: impl FnOnce(&mut Settings)) -> Self {
        Self::start_with_faults(device, configure, Arc::new(NoFaults)).await
    }

    /// Starts a server on `device` whose model thread calls `faults` (the engine's fault seam).
    pub async fn start_with_faults(
        device: DeviceRequest,
        configure: impl FnOnce(&mut Settings),
        faults: Arc<dyn Faults>,
    ) -> Self {
        let voices = tempfile::tempdir().unwrap();
        std::fs::copy(
            format!("{TINY}/golden/voice_preset.pt"),
            voices.path().join(format!("{VOICE}.pt")),
        )
        .unwrap();
        let mut settings = tiny_settings(voices.path().to_path_buf(), device);
        configure(&mut settings);
        let server = Server::bind(settings)
            .await
            .unwrap()
            .with_engine_faults(faults);
        let addr = server.local_addr().unwrap();
        let state = server.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
            _voices: voices,
        }
    }

    /// Starts a server and waits until `/ready` answers 200.
    pub async fn ready(configure: impl FnOnce(&mut Settings)) -> Self {
        let server = Self::start(configure).await;
        server.wait_ready().await;
        server
    }

    /// Polls `/ready` until 200 (panics after 120 s).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, _, _) = self.get("/ready").await;
            if status == StatusCode::OK {
                return;
            }
            assert!(Instant::now() < deadline, "server not ready after 120 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no utterance holds a slot (panics after 30 s). The model thread frees a
    /// slot just after an utterance's last event, so a finished response may briefly hold it.
    pub async fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.state.in_flight() != 0 {
            assert!(Instant::now() < deadline, "a slot is still held after 30 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Signals shutdown (the server starts draining).
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.signal_shutdown();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("server did not stop within 60 s")
            .unwrap()
    }

    /// Whether `run` has returned.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// GET `path`, whole body.
    pub async fn get(&self, path: &str) -> (StatusCode, hyper::HeaderMap, Bytes) {
        let req = Request::get(path).body(Full::new(Bytes::new())).unwrap();
        collect(send(self.addr, req).await).await
    }

    /// POST a JSON body to `path`, whole body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (StatusCode, hyper::HeaderMap, Bytes) {
        collect(send(self.addr, json_request(path, body)).await).await
    }

    /// GET `path` as JSON.
    pub async fn get_json(&self, path: &str) -> (StatusCode, serde_json::Value) {
        let (status, _, body) = self.get(path).await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// `ws://addr` + `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// A POST request with a JSON body.
pub fn json_request(path: &str, body: &serde_json::Value) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Sends one request on a fresh connection; the response body streams.
pub async fn send(addr: SocketAddr, mut req: Request<Full<Bytes>>) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    req.headers_mut()
        .insert("host", addr.to_string().parse().unwrap());
    sender.send_request(req).await.unwrap()
}

/// Reads a whole response.
pub async fn collect(response: Response<Incoming>) -> (StatusCode, hyper::HeaderMap, Bytes) {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

/// The error code of an OpenAI error envelope.
pub fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    v["error"]["code"].as_str().unwrap().to_string()
}

/// A parsed canonical WAV header.
#[derive(Debug, PartialEq, Eq)]
pub struct WavInfo {
    pub format_tag: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits: u16,
    pub riff_size: u32,
    pub data_size: u32,
    pub data_offset: usize,
}

/// Parses the RIFF/WAVE header of `bytes` (panics on anything malformed).
pub fn parse_wav(bytes: &[u8]) -> WavInfo {
    assert!(
        bytes.len() >= 44,
        "WAV shorter than a header: {}",
        bytes.len()
    );
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let mut pos = 12;
    let mut fmt = None;
    loop {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(pos + 4);
        if id == b"fmt " {
            fmt = Some((
                u16_at(pos + 8),
                u16_at(pos + 10),
                u32_at(pos + 12),
                u16_at(pos + 22),
            ));
        }
        if id == b"data" {
            let (format_tag, channels, sample_rate, bits) = fmt.expect("fmt before data");
            return WavInfo {
                format_tag,
                channels,
                sample_rate,
                bits,
                riff_size: u32_at(4),
                data_size: size,
                data_offset: pos + 8,
            };
        }
        pos += 8 + size as usize;
    }
}

/// One sample line of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed Prometheus text exposition: `# TYPE` declarations and samples.
#[derive(Debug, Default)]
pub struct PromText {
    pub types: BTreeMap<String, String>,
    pub samples: Vec<PromSample>,
}

impl PromText {
    /// Parses the text format 0.0.4; panics with the offending line on any syntax error.
    pub fn parse(text: &str) -> Self {
        let mut out = PromText::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("bad TYPE: {line}"));
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type: {line}"
                );
                out.types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') {
                assert!(line.starts_with("# HELP "), "bad comment: {line}");
                continue;
            }
            out.samples.push(parse_sample(line));
        }
        for s in &out.samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    s.name
                        .strip_suffix(suffix)
                        .filter(|f| out.types.contains_key(*f))
                })
                .unwrap_or(&s.name);
            assert!(
                out.types.contains_key(family),
                "sample without TYPE: {}",
                s.name
            );
        }
        out
    }

    /// Samples named `name` whose labels include every pair of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&PromSample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the single sample named `name` with `labels` (panics if not exactly one).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
        found[0].value
    }
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn parse_sample(line: &str) -> PromSample {
    let bad = || -> ! { panic!("bad sample line: {line}") };
    let name_end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if name_end == 0 {
        bad();
    }
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let consumed = loop {
            let (start, c) = chars.next().unwrap_or_else(|| bad());
            if c == '}' {
                break start + 1;
            }
            if c == ',' {
                continue;
            }
            let mut key = String::from(c);
            loop {
                let (_, c) = chars.next().unwrap_or_else(|| bad());
                if c == '=' {
                    break;
                }
                if !is_name_char(c, false) {
                    bad();
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                bad();
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next().unwrap_or_else(|| bad());
                match c {
                    '"' => break,
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        _ => bad(),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
        };
        rest = &after[consumed..];
    }
    let value_text = rest.trim().split(' ').next().unwrap_or_else(|| bad());
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| bad()),
    };
    PromSample {
        name,
        labels,
        value,
    }
}
