//! `vibevoice-rt devices`: the backends this build and machine offer, what the device
//! request in force resolves to, and the CPU kernels and weight format the CPU would use.

use super::settings_or_exit;
use crate::cli::DevicesArgs;
use anyhow::Context;
use candle_core::DType;
use serde_json::{json, Value};
use std::process::ExitCode;
use vv_device::{Backend, CandleOps, DevicesReport, SystemProbe};
use vv_model::quantize::{cpu_kernels, Quantize};
use vv_server::config::{ConfigErrors, LoadedSettings};

/// Prints the report (table or JSON); a request that cannot be honoured is an error after it.
pub fn run(
    args: &DevicesArgs,
    loaded: Result<LoadedSettings, ConfigErrors>,
) -> anyhow::Result<ExitCode> {
    let settings = match settings_or_exit(loaded) {
        Ok(loaded) => loaded.settings,
        Err(code) => return Ok(code),
    };
    let report = DevicesReport::collect(
        settings.device,
        settings.dtype,
        &SystemProbe::new(),
        &CandleOps,
    );
    let cpu = cpu_section(settings.quantize);
    if args.json {
        let mut json = serde_json::to_value(&report).context("serializing the report")?;
        if let Value::Object(fields) = &mut json {
            fields.insert("cpu_kernels".into(), cpu);
        }
        let json = serde_json::to_string_pretty(&json).context("serializing the report")?;
        println!("{json}");
    } else {
        print!("{}", report.render_table());
        println!(
            "CPU kernels: {} ({}): {}",
            cpu["isa"].as_str().unwrap_or_default(),
            if cpu["forced"] == true {
                "forced by VV_CPU_KERNELS"
            } else {
                "auto"
            },
            cpu["kernels"]
                .as_array()
                .map(|k| k
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default()
        );
        println!(
            "CPU weights: {} ({})",
            cpu["quantize"].as_str().unwrap_or_default(),
            cpu["quantize_reason"].as_str().unwrap_or_default()
        );
    }
    match report.error() {
        Some(error) => Err(anyhow::Error::new(error.clone())),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The CPU kernels in use and the weight format `quantize` gives on the CPU (f32 compute).
fn cpu_section(quantize: Quantize) -> Value {
    let kernels = cpu_kernels();
    let (format, reason) = match quantize.resolve(Backend::Cpu, DType::F32) {
        Ok(choice) => (choice.packing.name().to_string(), choice.reason),
        Err(e) => ("error".to_string(), e.to_string()),
    };
    json!({
        "isa": kernels.isa,
        "forced": kernels.forced,
        "kernels": kernels.kernels,
        "features": kernels.features,
        "quantize_request": quantize.as_str(),
        "quantize": format,
        "quantize_reason": reason,
    })
}
