//! `bench` on the tiny fixture's model: the JSON contract, and `--baseline-streams` (a second
//! set of streams whose rounds alternate with the measured ones) with its ratio.

mod common;

use common::{assert_no_panic, clean_command, text};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");

fn bench(extra: &[&str]) -> Output {
    let out = clean_command(Path::new(env!("CARGO_BIN_EXE_vibevoice-rt")))
        .arg("bench")
        .args(["--model", &format!("{TINY}/model")])
        .args(["--tokenizer", &format!("{TINY}/tokenizer")])
        .args(["--voice-file", &format!("{TINY}/golden/voice_preset.pt")])
        .args(["--device", "cpu", "--frames", "4", "--runs", "2", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert_no_panic(&out);
    out
}

fn report(extra: &[&str]) -> Value {
    let out = bench(extra);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_baseline_set_is_measured_in_the_same_runs_with_its_ratio() {
    let r = report(&["--streams", "2", "--baseline-streams", "1"]);
    assert_eq!(r["streams"], 2);
    let base = &r["baseline"];
    assert_eq!(base["streams"], 1);
    assert_eq!(base["per_frame_runs_ms"].as_array().unwrap().len(), 2);
    let (main, alone) = (
        r["per_frame_ms"].as_f64().unwrap(),
        base["per_frame_ms"].as_f64().unwrap(),
    );
    assert!(main > 0.0 && alone > 0.0 && base["ttfa_ms"].as_f64().unwrap() > 0.0);
    let ratio = base["per_frame_ratio"].as_f64().unwrap();
    assert!(
        (ratio - main / alone).abs() < 1e-9,
        "{ratio} vs {main} / {alone}"
    );
}

#[test]
fn without_a_baseline_the_report_has_no_baseline_key() {
    let r = report(&["--streams", "1"]);
    assert_eq!(r["streams"], 1);
    assert!(r["per_frame_ms"].as_f64().unwrap() > 0.0);
    assert!(r.get("baseline").is_none(), "{r}");
    assert_eq!(r["idle_ms"], 0);
}

#[test]
fn a_rest_before_each_run_is_reported() {
    let r = report(&["--idle-ms", "20"]);
    assert_eq!(r["idle_ms"], 20);
    assert!(r["ttfa_ms"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn a_baseline_with_staggered_starts_is_refused_with_a_message() {
    let out = bench(&["--baseline-streams", "1", "--stagger-ms", "5"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--baseline-streams does not combine with --stagger-ms"),
        "{}",
        text(&out.stderr)
    );
}
