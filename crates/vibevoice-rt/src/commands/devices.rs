//! `vibevoice-rt devices`: the backends this build and machine offer, and what the device
//! request in force resolves to.

use super::settings_or_exit;
use crate::cli::DevicesArgs;
use anyhow::Context;
use std::process::ExitCode;
use vv_device::{CandleOps, DevicesReport, SystemProbe};
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
    if args.json {
        let json = serde_json::to_string_pretty(&report).context("serializing the report")?;
        println!("{json}");
    } else {
        print!("{}", report.render_table());
    }
    match report.error() {
        Some(error) => Err(anyhow::Error::new(error.clone())),
        None => Ok(ExitCode::SUCCESS),
    }
}
