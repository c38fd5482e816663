//! The built binary, run as a user would: help, `devices`, `config validate` and `say`.

mod common;

use common::{assert_no_panic, clean_command, text};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// The binary with no `TTS_*` variable and no `RUST_LOG` inherited from the test's environment.
fn vibevoice_rt(args: &[&str], env: &[(&str, &str)]) -> Output {
    clean_command(Path::new(env!("CARGO_BIN_EXE_vibevoice-rt")))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_subcommands_and_the_environment_twins() {
    let out = vibevoice_rt(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("devices") && help.contains("config"),
        "{help}"
    );

    let out = vibevoice_rt(&["devices", "--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for expected in [
        "--device <DEVICE>",
        "[default: auto] [env: TTS_DEVICE]",
        "--max-slots <auto|N>",
        "[env: TTS_MAX_SLOTS]",
        "[env: TTS_CONFIG]",
        "--json",
    ] {
        assert!(help.contains(expected), "missing {expected:?} in\n{help}");
    }
}

#[test]
fn devices_json_reports_every_backend_and_the_resolution() {
    let out = vibevoice_rt(&["devices", "--json"], &[]);
    assert_no_panic(&out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["request"], "auto");
    assert_eq!(report["error"], Value::Null);
    let backends: Vec<&str> = report["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["backend"].as_str().unwrap())
        .collect();
    assert_eq!(backends, ["cuda", "metal", "cpu"]);
    if !cfg!(any(feature = "cuda", feature = "metal")) {
        assert_eq!(report["resolved"]["backend"], "cpu", "{report}");
        assert_eq!(report["dtype"]["dtype"], "f32", "{report}");
    }
}

/// `devices` names the CPU kernels in use and the weight format `--quantize` gives there;
/// forcing the portable body turns `auto` quantization off.
#[test]
fn devices_names_the_cpu_kernels_and_the_weight_format() {
    let report = |env: &[(&str, &str)], args: &[&str]| -> Value {
        let out = vibevoice_rt(&[&["devices", "--json"], args].concat(), env);
        assert_no_panic(&out);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["cpu_kernels"].clone()
    };
    let forced = report(&[("VV_CPU_KERNELS", "portable")], &[]);
    assert_eq!(forced["isa"], "portable", "{forced}");
    assert_eq!(forced["quantize"], "none", "{forced}");
    assert_eq!(
        forced["kernels"].as_array().map(Vec::len),
        Some(3),
        "{forced}"
    );
    let auto = report(&[], &[]);
    let simd = auto["isa"] != "portable";
    assert_eq!(
        auto["quantize"],
        if simd { "int8" } else { "none" },
        "{auto}"
    );
    let bf16 = report(&[], &["--quantize", "bf16"]);
    assert_eq!(bf16["quantize"], "bf16", "{bf16}");
    assert_eq!(bf16["quantize_request"], "bf16", "{bf16}");
}

#[test]
fn devices_prints_a_table_with_the_request_from_the_environment() {
    let out = vibevoice_rt(&["devices"], &[("TTS_DEVICE", "cpu")]);
    assert_no_panic(&out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("BACKEND") && table.contains("cpu"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("request") && l.contains("cpu")),
        "{table}"
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn devices_with_an_unavailable_cuda_request_fails_naming_the_feature() {
    let out = vibevoice_rt(&["devices", "--device", "cuda"], &[]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: device cuda:0 is not available"),
        "{stderr}"
    );
    assert!(stderr.contains("--features cuda"), "{stderr}");
}

#[test]
fn devices_with_an_invalid_device_lists_the_valid_forms() {
    let out = vibevoice_rt(&["devices", "--device", "gpu"], &[]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--device gpu: invalid device \"gpu\""),
        "{stderr}"
    );
    assert!(
        stderr.contains(vv_device::request::VALID_DEVICE_FORMS),
        "{stderr}"
    );
    assert!(stderr.contains("\"auto\""), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "no report for an invalid configuration"
    );
}

#[test]
fn config_validate_lists_every_bad_environment_value() {
    let env = [
        ("TTS_DEVICE", "gpu"),
        ("TTS_PORT", "http"),
        ("TTS_MAX_SLOTS", "0"),
        ("TTS_CFG_SCALE", "11"),
    ];
    let out = vibevoice_rt(&["config", "validate", "--steps", "0"], &env);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for expected in [
        "invalid configuration (5 problems)",
        "TTS_DEVICE=gpu: invalid device",
        "TTS_PORT=http: expected a port number",
        "TTS_MAX_SLOTS=0: 0 is out of range",
        "TTS_CFG_SCALE=11: 11 is out of range",
        "--diffusion-steps 0: 0 is out of range",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in\n{stderr}"
        );
    }

    let out = vibevoice_rt(&["config", "validate", "--json"], &env);
    assert_eq!(out.status.code(), Some(2));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["valid"], false);
    let codes: Vec<&str> = result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_device",
            "invalid_value",
            "out_of_range",
            "out_of_range"
        ]
    );
}

#[test]
fn config_validate_shows_each_value_with_its_source() {
    let env = [("TTS_DEVICE", "cuda:0"), ("TTS_API_KEYS", "top-secret")];
    let out = vibevoice_rt(&["config", "validate", "--port", "9001"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    let line = |name: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line in\n{report}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(line("device"), ["device", "cuda:0", "env", "TTS_DEVICE"]);
    assert_eq!(line("port"), ["port", "9001", "flag", "--port"]);
    assert_eq!(line("max_slots"), ["max_slots", "auto", "default"]);
    assert!(!report.contains("top-secret"), "{report}");

    let out = vibevoice_rt(&["config", "validate", "--json"], &env);
    assert!(out.status.success());
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["valid"], true);
    let device = result["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "device")
        .unwrap();
    assert_eq!(device["value"], "cuda:0");
    assert_eq!(
        device["source"],
        serde_json::json!({"kind": "env", "name": "TTS_DEVICE"})
    );
    assert!(!text(&out.stdout).contains("top-secret"));
}

#[test]
fn say_writes_a_wav_file_and_reports_the_timing() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("out.wav");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vibevoice-tiny");
    let arg = |p: &str| root.join(p).to_str().unwrap().to_string();
    let (model, tokenizer, voices) = (arg("model"), arg("tokenizer/tokenizer.json"), arg("voices"));
    let out = vibevoice_rt(
        &[
            "say",
            "--model",
            &model,
            "--tokenizer",
            &tokenizer,
            "--voices-dir",
            &voices,
            "--device",
            "cpu",
            "--seed",
            "7",
            "-o",
            wav.to_str().unwrap(),
            "Hello there, this is a short test of the say command.",
        ],
        &[],
    );
    assert_no_panic(&out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(
        report.contains("seed 7") && report.contains("time to first audio"),
        "{report}"
    );
    let bytes = std::fs::read(&wav).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    assert!(
        bytes.len() > 44 + 2 * 3200,
        "at least one frame of 16-bit audio"
    );

    let empty = vibevoice_rt(&["say", "-o", wav.to_str().unwrap(), "  "], &[]);
    assert_no_panic(&empty);
    assert!(!empty.status.success());
    assert!(text(&empty.stderr).contains("the text is empty"));
}
