//! The command line: subcommands and their options (clap derive).

mod service_args;

use clap::{Args, Parser, Subcommand};
pub use service_args::ServiceArgs;

use crate::commands::bench::BenchArgs;
use crate::commands::check_fixture::CheckFixtureArgs;
use crate::commands::loadtest::LoadtestArgs;
use crate::commands::say::SayArgs;
use crate::commands::voices::VoicesCommand;

/// Real-time text-to-speech service for VibeVoice-Realtime-0.5B.
///
/// Every service option can also be set with its TTS_* environment variable or in a TOML file
/// (--config / TTS_CONFIG); precedence: defaults < file < environment < flags.
#[derive(Debug, Parser)]
#[command(name = "vibevoice-rt", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load model, tokenizer and voices, pick the device, warm up, and serve HTTP + WebSocket.
    Serve(ServeArgs),
    /// Synthesise a text to a 24 kHz mono 16-bit WAV file.
    Say(SayArgs),
    /// Measure time to first audio and time per frame (medians over several runs).
    Bench(BenchArgs),
    /// Inspect, convert or list voice presets.
    #[command(subcommand)]
    Voices(VoicesCommand),
    /// Compare the implementation with a golden fixture directory, tensor by tensor.
    CheckFixture(CheckFixtureArgs),
    /// Show every compute backend (compiled in, present, devices, memory), the device request
    /// in force, what it resolves to and the dtype with its reason.
    Devices(DevicesArgs),
    /// Work with the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Drive a running server with concurrent streams and report latency and real-time margins
    /// per level.
    Loadtest(LoadtestArgs),
}

impl Command {
    /// The service options of the subcommand, for those that take them.
    pub fn service(&self) -> Option<&ServiceArgs> {
        match self {
            Self::Serve(args) => Some(&args.service),
            Self::Say(args) => Some(&args.service),
            Self::Bench(args) => Some(&args.service),
            Self::Devices(args) => Some(&args.service),
            Self::Config(ConfigCommand::Validate(args)) => Some(&args.service),
            Self::Voices(_) | Self::CheckFixture(_) | Self::Loadtest(_) => None,
        }
    }
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Service options.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Options of `devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Service options (the device and dtype requests are the ones that matter here).
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// The `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration: print the effective settings with the source of each value,
    /// or every problem found (exit status 2).
    Validate(ValidateArgs),
}

/// Options of `config validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Service options.
    #[command(flatten)]
    pub service: ServiceArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn service_flags_reach_the_loader_as_text() {
        let cli = Cli::try_parse_from([
            "vibevoice-rt",
            "config",
            "validate",
            "--device",
            "gpu",
            "--steps",
            "0",
            "--cfg-scale",
            "-1",
            "--warmup",
            "--config",
            "x.toml",
        ])
        .unwrap();
        let line = &cli.command.service().unwrap().0;
        let given: Vec<(&str, &str)> = line
            .flags
            .iter()
            .map(|f| (f.field.name, f.value.as_str()))
            .collect();
        assert_eq!(
            given,
            [
                ("device", "gpu"),
                ("diffusion_steps", "0"),
                ("cfg_scale", "-1"),
                ("warmup", "true")
            ]
        );
        assert_eq!(line.config_file.as_deref(), Some("x.toml".as_ref()));
    }

    #[test]
    fn switches_take_an_optional_value() {
        let cli =
            Cli::try_parse_from(["vibevoice-rt", "devices", "--warmup=false", "--json"]).unwrap();
        let Command::Devices(args) = &cli.command else {
            panic!("not devices");
        };
        assert!(args.json);
        assert_eq!(args.service.0.flags[0].value, "false");
    }
}
