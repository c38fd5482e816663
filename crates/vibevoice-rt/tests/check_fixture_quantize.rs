//! `check-fixture --quantize`: every matrix of the tiny fixture packed to int8 or bf16 passes
//! at the stated tolerance scale (500, the CUDA bf16 path's; docs/quantization.md), while the
//! packed weights are measurably not f32.

mod common;

use common::{assert_no_panic, clean_command, text};
use serde_json::Value;
use std::path::Path;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");

/// The reports of `check-fixture TINY --quantize <format> --tolerance-scale 500 --json`.
fn reports(format: &str) -> Vec<Value> {
    let out = clean_command(Path::new(env!("CARGO_BIN_EXE_vibevoice-rt")))
        .args(["check-fixture", TINY, "--quantize", format])
        .args(["--tolerance-scale", "500", "--json"])
        .output()
        .unwrap();
    assert_no_panic(&out);
    assert!(out.status.success(), "{format}: {}", text(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn packed_weights_pass_at_the_stated_scale() {
    for format in ["int8", "bf16"] {
        let reports = reports(format);
        assert!(reports.len() > 100, "{format}: {} reports", reports.len());
        let rel = |r: &Value| r["rel"].as_f64().unwrap();
        let tol = |r: &Value| r["tolerance"].as_f64().unwrap();
        assert!(reports.iter().all(|r| rel(r) <= tol(r)), "{format}");
        // Far above the f32 tolerance somewhere: the weights were packed.
        assert!(
            reports.iter().any(|r| rel(r) > tol(r) / 500.0),
            "{format}: every error within the f32 tolerance"
        );
    }
}
