//! `loadtest` run as a user would, against the real binary serving the tiny fixture model:
//! WebSocket and HTTP runs report audio for every level, and a server that cannot be reached
//! is a clear error.

mod common;

use common::{assert_no_panic, clean_command, text};
use serde_json::Value;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
const BINARY: &str = env!("CARGO_BIN_EXE_vibevoice-rt");
/// Root of the tiny fixture.
const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");
/// Longest wait for the server to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `vibevoice-rt serve` with the tiny model on a free port; killed when dropped (also when a
/// test fails).
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server (the tiny preset installed as the voice `tiny`) and waits until
    /// `GET /ready` answers 200.
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let voices = dir.path().join("voices");
        std::fs::create_dir(&voices).unwrap();
        std::fs::copy(
            format!("{TINY}/golden/voice_preset.pt"),
            voices.join("tiny.pt"),
        )
        .unwrap();
        let log = dir.path().join("server.log");
        let port = free_port();
        let child = clean_command(Path::new(BINARY))
            .args(["serve", "--model", &format!("{TINY}/model")])
            .args(["--tokenizer", &format!("{TINY}/tokenizer/tokenizer.json")])
            .arg("--voices-dir")
            .arg(&voices)
            .args(["--device", "cpu", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            port,
            log,
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls `GET /ready` until 200.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited ({status}):\n{}", self.log());
            }
            if http_status(self.port, "/ready") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready after {READY_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status of `GET path`, or `None` when the server does not answer.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// `vibevoice-rt loadtest ARGS`.
fn loadtest(args: &[&str]) -> Output {
    clean_command(Path::new(BINARY))
        .arg("loadtest")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The JSON report of a successful run, with one level per entry of `streams`, each with audio.
fn report(out: &Output, mode: &str, streams: &[u64]) -> Value {
    assert_no_panic(out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{}", text(&out.stdout)));
    assert_eq!(report["mode"], mode, "{report}");
    assert_eq!(report["buffer_ms"], 300, "{report}");
    let levels = report["levels"].as_array().unwrap();
    let got: Vec<u64> = levels
        .iter()
        .map(|l| l["streams"].as_u64().unwrap())
        .collect();
    assert_eq!(got, streams, "{report}");
    for level in levels {
        assert!(level["contexts"].as_u64().unwrap() >= 1, "{level}");
        assert!(level["ttfa_p50_ms"].as_f64().unwrap() > 0.0, "{level}");
        assert!(level["ttfa_p99_ms"].as_f64().unwrap() >= level["ttfa_p50_ms"].as_f64().unwrap());
        assert!(level["audio_seconds"].as_f64().unwrap() > 0.0, "{level}");
        assert!(
            level["audio_per_wall_min"].as_f64().unwrap() > 0.0,
            "{level}"
        );
        assert!(
            level["underruns"].as_u64() <= level["streams"].as_u64(),
            "{level}"
        );
        assert!(level["errors"].is_object(), "{level}");
    }
    report
}

#[test]
fn websocket_and_http_runs_report_audio_for_every_level() {
    let server = Server::start();
    let url = server.url();

    let out = loadtest(&[
        &format!("{url}/"),
        "--streams",
        "1,2",
        "--seconds",
        "3",
        "--voice",
        "tiny",
        "--json",
    ]);
    let ws = report(&out, "websocket", &[1, 2]);
    assert_eq!(ws["seconds"], 3);
    assert_eq!(ws["url"], format!("{url}/"));

    let out = loadtest(&[&url, "--http", "--streams", "1", "--seconds", "2", "--json"]);
    report(&out, "http", &[1]);

    // Without --json: a table, one line per level after the title and the header.
    let out = loadtest(&[&url, "--http", "--streams", "1", "--seconds", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table.lines().nth(2).unwrap().trim_start().starts_with("1 "),
        "{table}"
    );
}

#[test]
fn an_unreachable_server_is_a_clear_error_and_bad_flags_are_usage_errors() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = loadtest(&[&url, "--streams", "1", "--seconds", "1", "--json"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("error: cannot reach the server at {url}")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    for args in [
        &[url.as_str(), "--streams", "0"][..],
        &[&url, "--streams", "a,b"],
        &[&url, "--seconds", "0"],
        &["https://127.0.0.1:1"],
    ] {
        let out = loadtest(args);
        assert_no_panic(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
