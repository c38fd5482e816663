//! `vibevoice-rt devices`: the backends this build and machine offer, what the device
//! request in force resolves to, and the CPU kernels and weight format the CPU would use.

use super::settings_or_exit;
use crate::cli::DevicesArgs;
use anyhow::Context;
use candle_core::DType;
use serde_json::{json, Value};
use std::process::ExitCode;
use vv_device::{Backend, CandleOps, DevicesReport, SystemProbe};
use vv_model::quantize::{cpu_kernels, KernelReport, Quantize};
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
    let cpu = CpuSection::new(settings.quantize);
    if args.json {
        let mut json = serde_json::to_value(&report).context("serializing the report")?;
        if let Value::Object(fields) = &mut json {
            fields.insert("cpu_kernels".into(), cpu.json());
        }
        let json = serde_json::to_string_pretty(&json).context("serializing the report")?;
        println!("{json}");
    } else {
        print!("{}", report.render_table());
        print!("{}", cpu.table());
    }
    match report.error() {
        Some(error) => Err(anyhow::Error::new(error.clone())),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The CPU kernels in use and the weight format `--quantize` gives on the CPU (f32 compute).
struct CpuSection {
    kernels: KernelReport,
    request: Quantize,
    /// The format in effect (`none`, `bf16`, `int8`), or `error`.
    format: String,
    reason: String,
}

impl CpuSection {
    fn new(request: Quantize) -> Self {
        let (format, reason) = match request.resolve(Backend::Cpu, DType::F32) {
            Ok(choice) => (choice.packing.name().to_string(), choice.reason),
            Err(e) => ("error".to_string(), e.to_string()),
        };
        Self {
            kernels: cpu_kernels(),
            request,
            format,
            reason,
        }
    }

    fn json(&self) -> Value {
        json!({
            "isa": self.kernels.isa,
            "forced": self.kernels.forced,
            "kernels": self.kernels.kernels,
            "features": self.kernels.features,
            "quantize_request": self.request.as_str(),
            "quantize": self.format,
            "quantize_reason": self.reason,
        })
    }

    fn table(&self) -> String {
        let how = if self.kernels.forced {
            "forced by VV_CPU_KERNELS"
        } else {
            "auto"
        };
        format!(
            "CPU kernels: {} ({how}): {}\nCPU weights: {} ({})\n",
            self.kernels.isa,
            self.kernels.kernels.join("; "),
            self.format,
            self.reason
        )
    }
}
