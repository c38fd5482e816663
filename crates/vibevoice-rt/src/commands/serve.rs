//! `vibevoice-rt serve`: the HTTP + WebSocket service on a multi-threaded tokio runtime (the
//! model itself runs on its own thread inside the engine; free heap memory is returned to the
//! system when the engine goes idle: `vv_server::memory_release`).

use std::process::ExitCode;

use anyhow::Context;
use vv_server::config::LoadedSettings;

/// Builds the runtime and serves until SIGINT/SIGTERM (then drains and exits 0).
pub fn run(loaded: LoadedSettings) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vv-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(vv_server::serve::serve(loaded.settings))?;
    Ok(ExitCode::SUCCESS)
}
