//! `vibevoice-rt`: parses the command line, runs the subcommand and turns errors into a clear
//! message and a non-zero exit status (never a panic or a backtrace for user errors).

mod cli;
mod commands;
mod logging;
mod threads;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    threads::pin_thread_count();
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
