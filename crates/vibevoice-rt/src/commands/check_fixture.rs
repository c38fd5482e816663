//! `vibevoice-rt check-fixture DIR`: compares the implementation with a golden fixture
//! directory tensor by tensor, prints every error, exits non-zero on any mismatch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use vv_device::dtype::select_dtype;
use vv_device::probe::SystemProbe;
use vv_device::resolve::resolve_device;
use vv_device::{DTypeRequest, DeviceRequest};
use vv_model::linear::Packing;
use vv_model::parity::{check_all, FixtureDir};
use vv_model::Quantize;

/// Options of `check-fixture`.
#[derive(Debug, Args)]
pub struct CheckFixtureArgs {
    /// Fixture directory (model/, golden/, tokenizer/).
    pub dir: PathBuf,
    /// Device to run on.
    #[arg(long, default_value = "cpu", env = "TTS_DEVICE")]
    pub device: DeviceRequest,
    /// Compute dtype (tolerances are stated for f32; other dtypes are scaled by --tolerance-scale).
    #[arg(long, default_value = "f32")]
    pub dtype: DTypeRequest,
    /// Pack every weight matrix (and the embedding table) to int8 or bf16, whatever its size:
    /// the worst case of `--quantize` (CPU, f32 only; none and auto pack nothing here).
    /// Tolerances are scaled by --tolerance-scale (500 passes, like the CUDA bf16 path; see
    /// docs/quantization.md).
    #[arg(long, default_value = "none")]
    pub quantize: Quantize,
    /// Multiplies every tolerance (e.g. for bf16 runs, with the factor stated in docs).
    #[arg(long, default_value_t = 1.0)]
    pub tolerance_scale: f64,
    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the checks.
pub fn run(args: &CheckFixtureArgs) -> anyhow::Result<ExitCode> {
    let fixture = FixtureDir::open(&args.dir)
        .with_context(|| format!("fixture directory {}", args.dir.display()))?;
    let probe = SystemProbe::new();
    let resolution = resolve_device(args.device, &probe)?;
    let dtype = select_dtype(resolution.device.backend, args.dtype, &probe);
    // Validates the request for this device (an explicit format on a GPU is an error).
    args.quantize
        .resolve(resolution.device.backend, dtype.dtype)?;
    let packing = args
        .quantize
        .format()
        .map_or(Packing::NONE, Packing::every_matrix);
    let device = resolution.device.to_candle_device()?;
    let mut reports = check_all(&fixture, &device, dtype.dtype, packing)?;
    for r in &mut reports {
        r.tolerance *= args.tolerance_scale;
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "{:<16} {:<40} {:>11} {:>11} {:>9}  result",
            "component", "tensor", "max_abs", "rel", "tol"
        );
        for r in &reports {
            println!(
                "{:<16} {:<40} {:>11.3e} {:>11.3e} {:>9.1e}  {}",
                r.component,
                r.name,
                r.max_abs,
                r.rel,
                r.tolerance,
                if r.passed() { "ok" } else { "MISMATCH" }
            );
        }
        println!(
            "{} tensors checked on {} ({:?}, weights {}): {} passed, {} failed",
            reports.len(),
            resolution.device.label(),
            dtype.dtype,
            packing.name(),
            reports.len() - failed,
            failed
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
