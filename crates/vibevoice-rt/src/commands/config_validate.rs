//! `vibevoice-rt config validate`: the effective settings with the source of each value, or
//! every problem of the configuration.

use super::{report_config_errors, EXIT_INVALID_CONFIG};
use crate::cli::ValidateArgs;
use anyhow::Context;
use serde_json::{json, Value};
use std::process::ExitCode;
use vv_server::config::{ConfigError, ConfigErrors, LoadedSettings};

/// Prints the outcome; exit status 2 when there is any problem.
pub fn run(
    args: &ValidateArgs,
    loaded: Result<LoadedSettings, ConfigErrors>,
) -> anyhow::Result<ExitCode> {
    match (loaded, args.json) {
        (Ok(loaded), true) => {
            print_json(&json!({
                "valid": true,
                "config_file": loaded.config_file,
                "settings": loaded.entries(),
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        (Ok(loaded), false) => {
            print!("{}", render_settings(&loaded));
            Ok(ExitCode::SUCCESS)
        }
        (Err(errors), true) => {
            let problems: Vec<Value> = errors.errors().iter().map(problem_json).collect();
            print_json(&json!({ "valid": false, "errors": problems }))?;
            Ok(ExitCode::from(EXIT_INVALID_CONFIG))
        }
        (Err(errors), false) => Ok(report_config_errors(&errors)),
    }
}

fn problem_json(error: &ConfigError) -> Value {
    json!({ "code": error.code(), "message": error.to_string() })
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("serializing the result")?;
    println!("{text}");
    Ok(())
}

/// The settings as an aligned three-column table: name, value, source.
fn render_settings(loaded: &LoadedSettings) -> String {
    let file = loaded
        .config_file
        .as_ref()
        .map_or("none".to_string(), |p| p.display().to_string());
    let rows: Vec<(String, String, String)> = loaded
        .entries()
        .into_iter()
        .map(|e| {
            (
                e.name.to_string(),
                show_value(&e.value),
                e.source.to_string(),
            )
        })
        .collect();
    let name_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    let mut out = format!("configuration is valid (config file: {file})\n\n");
    for (name, value, source) in rows {
        out.push_str(&format!(
            "{name:<name_width$}  {value:<value_width$}  {source}\n"
        ));
    }
    out
}

/// A JSON value as plain text: strings unquoted, lists comma-separated, null as `-`.
fn show_value(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(show_value).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_shown_plainly() {
        assert_eq!(show_value(&json!(null)), "-");
        assert_eq!(show_value(&json!("cuda:0")), "cuda:0");
        assert_eq!(show_value(&json!(["a", "b"])), "a, b");
        assert_eq!(show_value(&json!([])), "-");
        assert_eq!(show_value(&json!(1.5)), "1.5");
    }
}
