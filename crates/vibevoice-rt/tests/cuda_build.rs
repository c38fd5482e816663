//! The CUDA build of `scripts/build-cuda.sh` (CUDA loaded at run time) run on a machine without
//! CUDA: `auto` falls back to the CPU with a warning, an explicit CUDA request fails with a clear
//! error and no panic, and the CPU still passes the golden fixture.
//!
//! Runs only when `VV_CUDA_BINARY` names that binary (CI is CPU-only and does not build CUDA);
//! otherwise each test prints a note and returns. On a machine where the binary finds a CUDA
//! device the fallback checks do not apply and are skipped with a note.

mod common;

use common::{assert_no_panic, clean_command, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The workspace root: fixture and voice paths are relative to it.
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The CUDA binary named by `VV_CUDA_BINARY`, or `None` (with a note) when it is not set.
fn cuda_binary(test: &str) -> Option<PathBuf> {
    match std::env::var_os("VV_CUDA_BINARY") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "VV_CUDA_BINARY={} is no file",
                path.display()
            );
            Some(path)
        }
        None => {
            eprintln!(
                "{test}: skipped, VV_CUDA_BINARY is not set (build with scripts/build-cuda.sh)"
            );
            None
        }
    }
}

/// Runs `binary` from the workspace root with no `TTS_*`, `RUST_LOG` or `RUST_BACKTRACE`
/// inherited from the test's environment.
fn run(binary: &Path, args: &[&str]) -> Output {
    clean_command(binary)
        .current_dir(WORKSPACE)
        .args(args)
        .output()
        .unwrap()
}

/// The `devices --json` report of `binary`, asserted to run cleanly.
fn devices_report(binary: &Path) -> (Value, String) {
    let out = run(binary, &["devices", "--json"]);
    assert_no_panic(&out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        text(&out.stderr),
    )
}

fn cuda_status(report: &Value) -> &Value {
    report["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "cuda")
        .unwrap()
}

/// Whether this machine has a CUDA device the binary can see (then the fallback checks skip).
fn gpu_present(binary: &Path, test: &str) -> bool {
    let (report, _) = devices_report(binary);
    let present = cuda_status(&report)["present"] == true;
    if present {
        eprintln!("{test}: skipped, this machine has a CUDA device (see scripts/gpu-check.sh)");
    }
    present
}

#[test]
fn auto_falls_back_to_the_cpu_with_a_warning() {
    let test = "auto_falls_back_to_the_cpu_with_a_warning";
    let Some(binary) = cuda_binary(test) else {
        return;
    };
    if gpu_present(&binary, test) {
        return;
    }
    let (report, stderr) = devices_report(&binary);
    let cuda = cuda_status(&report);
    assert_eq!(cuda["compiled_in"], true, "{report}");
    assert_eq!(cuda["present"], false, "{report}");
    let reason = cuda["unavailable_reason"].as_str().unwrap();
    assert!(reason.contains("libcuda"), "{reason}");
    assert_eq!(report["resolved"]["backend"], "cpu", "{report}");
    assert_eq!(report["dtype"]["dtype"], "f32", "{report}");
    assert_eq!(report["error"], Value::Null, "{report}");
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.starts_with("auto: cuda is compiled in but unavailable")
            && warning.ends_with("falling back to cpu"),
        "{warning}"
    );
    assert!(stderr.is_empty(), "{stderr}");

    let out = run(&binary, &["devices"]);
    assert_no_panic(&out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("warning") && l.contains(warning)),
        "{table}"
    );
}

#[test]
fn explicit_cuda_requests_fail_with_a_clear_error() {
    let test = "explicit_cuda_requests_fail_with_a_clear_error";
    let Some(binary) = cuda_binary(test) else {
        return;
    };
    if gpu_present(&binary, test) {
        return;
    }
    for (request, label) in [("cuda", "cuda:0"), ("cuda:1", "cuda:1")] {
        let out = run(&binary, &["devices", "--device", request]);
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(1), "{request}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("error: device {label} is unavailable: ")),
            "{stderr}"
        );
        assert!(stderr.contains("libcuda"), "{stderr}");
    }
}

#[test]
fn the_cpu_passes_the_golden_fixture() {
    let test = "the_cpu_passes_the_golden_fixture";
    let Some(binary) = cuda_binary(test) else {
        return;
    };
    let out = run(
        &binary,
        &[
            "check-fixture",
            "testdata/vibevoice-tiny",
            "--device",
            "cpu",
            "--json",
        ],
    );
    assert_no_panic(&out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert!(reports.len() >= 100, "{} tensors", reports.len());
    for r in reports {
        let (rel, tol) = (r["rel"].as_f64().unwrap(), r["tolerance"].as_f64().unwrap());
        assert!(rel <= tol, "{r}");
    }
}
