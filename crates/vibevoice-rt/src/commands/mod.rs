//! The subcommands, and what they share: loading the settings and reporting their problems.

pub mod bench;
pub mod check_fixture;
pub mod config_validate;
pub mod devices;
pub mod loadtest;
pub mod say;
pub mod serve;
pub mod voices;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::logging;
use std::process::ExitCode;
use vv_server::config::{ConfigErrors, LoadedSettings, LogFormat};

/// Exit status for an invalid configuration (the status clap uses for usage errors too).
pub const EXIT_INVALID_CONFIG: u8 = 2;

/// Log filter when `RUST_LOG` is unset for the report commands: their reports already hold
/// what the device layer would log (set `RUST_LOG` to see the logs too).
const REPORT_LOG_FILTER: &str = "error";
/// Log filter when `RUST_LOG` is unset for the commands that run the model.
const RUN_LOG_FILTER: &str = "info";

/// Loads the settings from the real environment, sets up logging and runs the subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let loaded = cli.command.service().map(|s| s.load(&process_env));
    let (log_format, otlp_endpoint) = match &loaded {
        Some(Ok(l)) => (l.settings.log_format, l.settings.otlp_endpoint.clone()),
        _ => (LogFormat::default(), None),
    };
    let filter = match cli.command {
        Command::Serve(_) | Command::Say(_) | Command::Bench(_) => RUN_LOG_FILTER,
        _ => REPORT_LOG_FILTER,
    };
    // Only `serve` exports spans: the other commands serve no requests.
    let otlp_endpoint = otlp_endpoint.filter(|_| matches!(cli.command, Command::Serve(_)));
    logging::init(log_format, filter, otlp_endpoint.as_deref());
    match (&cli.command, loaded) {
        (Command::Voices(cmd), _) => voices::run(cmd),
        (Command::CheckFixture(args), _) => check_fixture::run(args),
        (Command::Loadtest(args), _) => loadtest::run(args),
        (_, None) => unreachable!("every other command takes the service options"),
        (Command::Devices(args), Some(loaded)) => devices::run(args, loaded),
        (Command::Config(ConfigCommand::Validate(args)), Some(loaded)) => {
            config_validate::run(args, loaded)
        }
        (Command::Serve(_), Some(loaded)) => with_settings(loaded, serve::run),
        (Command::Say(args), Some(loaded)) => with_settings(loaded, |l| say::run(args, l)),
        (Command::Bench(args), Some(loaded)) => with_settings(loaded, |l| bench::run(args, l)),
    }
}

/// Runs `f` with valid settings, or reports the configuration problems.
fn with_settings(
    loaded: Result<LoadedSettings, ConfigErrors>,
    f: impl FnOnce(LoadedSettings) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    match settings_or_exit(loaded) {
        Ok(loaded) => f(loaded),
        Err(code) => Ok(code),
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
