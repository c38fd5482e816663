//! The subcommands, and what they share: loading the settings and reporting their problems.

pub mod config_validate;
pub mod devices;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::logging;
use std::process::ExitCode;
use vv_server::config::{ConfigErrors, LoadedSettings, LogFormat};

/// Exit status for an invalid configuration (the status clap uses for usage errors too).
pub const EXIT_INVALID_CONFIG: u8 = 2;

/// Log filter when `RUST_LOG` is unset: these commands print reports that already hold what
/// the device layer would log (set `RUST_LOG` to see the logs too).
const DEFAULT_LOG_FILTER: &str = "error";

/// Loads the settings from the real environment, sets up logging and runs the subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let loaded = cli.command.service().load(&process_env);
    let log_format = loaded
        .as_ref()
        .map_or(LogFormat::default(), |l| l.settings.log_format);
    logging::init(log_format, DEFAULT_LOG_FILTER);
    match &cli.command {
        Command::Devices(args) => devices::run(args, loaded),
        Command::Config(ConfigCommand::Validate(args)) => config_validate::run(args, loaded),
    }
}

/// A variable of the process environment; a value that is not UTF-8 is passed on lossily, so
/// that it is reported as invalid rather than ignored.
fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// Prints every configuration problem to stderr and gives the exit status for them.
pub fn report_config_errors(errors: &ConfigErrors) -> ExitCode {
    let count = errors.errors().len();
    let plural = if count == 1 { "" } else { "s" };
    eprintln!("error: invalid configuration ({count} problem{plural}):");
    for error in errors.errors() {
        eprintln!("  - {error}");
    }
    ExitCode::from(EXIT_INVALID_CONFIG)
}

/// Settings or, when the configuration is invalid, the exit status after reporting it.
pub fn settings_or_exit(
    loaded: Result<LoadedSettings, ConfigErrors>,
) -> Result<LoadedSettings, ExitCode> {
    loaded.map_err(|errors| report_config_errors(&errors))
}
