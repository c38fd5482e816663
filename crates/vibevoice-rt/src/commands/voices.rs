//! `vibevoice-rt voices`: inspect, convert and list voice presets (read natively, no Python).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use vv_preset::{convert, VoiceLibrary, VoicePreset};

/// The `voices` subcommands.
#[derive(Debug, Subcommand)]
pub enum VoicesCommand {
    /// Print the zip root name and, for each entry, cache length, layer count, dtype and shapes.
    Inspect(InspectArgs),
    /// Convert an official `.pt` preset to the flat safetensors form.
    Convert(ConvertArgs),
    /// List the voices of a directory (name -> file).
    List(ListArgs),
}

/// Options of `voices inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Preset file (`.pt` or flat `.safetensors`).
    pub file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `voices convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Input preset (`.pt`).
    pub input: PathBuf,
    /// Output file (`.safetensors`).
    pub output: PathBuf,
}

/// Options of `voices list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Voices directory.
    #[arg(default_value = "voices", env = "TTS_VOICES_DIR")]
    pub dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `voices` subcommand.
pub fn run(cmd: &VoicesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VoicesCommand::Inspect(a) => {
            let summary = VoicePreset::load(&a.file)?.summary();
            if a.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.render_text());
            }
        }
        VoicesCommand::Convert(a) => {
            let summary = convert(&a.input, &a.output)?;
            println!("wrote {}", a.output.display());
            print!("{}", summary.render_text());
        }
        VoicesCommand::List(a) => {
            let library = VoiceLibrary::scan(&a.dir)?;
            let rows: Vec<(String, String)> = library
                .names()
                .map(|n| {
                    let path = library.path(n).map(|p| p.display().to_string());
                    (n.to_string(), path.unwrap_or_default())
                })
                .collect();
            if a.json {
                let map: serde_json::Map<String, serde_json::Value> =
                    rows.into_iter().map(|(n, p)| (n, p.into())).collect();
                println!("{}", serde_json::to_string_pretty(&map)?);
            } else {
                for (name, path) in rows {
                    println!("{name:<32} {path}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
