//! The configuration guide (docs/configuration.md) cannot drift from the settings table: every
//! entry of `FIELDS` must have a row with its flag (and aliases), environment variable, TOML key
//! and default, and every documented flag must be a real setting.

use serde_json::Value;
use vv_server::config::{Settings, CONFIG_ENV, FIELDS};

const GUIDE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/configuration.md"
));

/// The cells of the settings table's rows (those whose first cell starts with a flag), trimmed.
/// Only the first four cells are parsed: the last one is free text.
fn setting_rows(guide: &str) -> Vec<[String; 4]> {
    guide
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .map(|line| {
            let mut cells = line.split('|').skip(1).map(|c| c.trim().to_string());
            std::array::from_fn(|_| cells.next().unwrap_or_default())
        })
        .collect()
}

/// How the guide writes a default: the value in backticks, or `none` when unset.
fn documented_default(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "none".to_string(),
        Some(Value::Array(items)) if items.is_empty() => "none".to_string(),
        Some(Value::String(s)) => format!("`{s}`"),
        Some(other) => format!("`{other}`"),
    }
}

/// The flags of a row's first cell, without backticks: "`--cfg-scale`, `--cfg`" -> both.
fn flags(cell: &str) -> Vec<&str> {
    cell.split(',')
        .map(|f| f.trim().trim_matches('`'))
        .collect()
}

#[test]
fn every_setting_is_documented_with_flag_env_key_and_default() {
    let rows = setting_rows(GUIDE);
    let defaults = serde_json::to_value(Settings::default()).unwrap();
    let mut missing = Vec::new();
    for field in FIELDS {
        let flag = format!("--{}", field.flag);
        let Some([flag_cell, env, key, default]) = rows
            .iter()
            .find(|row| flags(&row[0]).first() == Some(&flag.as_str()))
        else {
            missing.push(format!("{}: no row for {flag}", field.name));
            continue;
        };
        let mut expected_flags = vec![flag.clone()];
        expected_flags.extend(field.aliases.iter().map(|a| format!("--{a}")));
        if flags(flag_cell) != expected_flags {
            missing.push(format!(
                "{}: flags {flag_cell} != {expected_flags:?}",
                field.name
            ));
        }
        if *env != format!("`{}`", field.env) {
            missing.push(format!(
                "{}: environment variable {env} != {}",
                field.name, field.env
            ));
        }
        if *key != format!("`{}`", field.name) {
            missing.push(format!("{}: TOML key {key} != {}", field.name, field.name));
        }
        let expected = documented_default(defaults.get(field.name));
        if *default != expected {
            missing.push(format!("{}: default {default} != {expected}", field.name));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md is out of step with vv_server::config::FIELDS:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_documented_flag_is_a_setting() {
    let rows = setting_rows(GUIDE);
    // One row per setting, plus `--config`.
    assert_eq!(rows.len(), FIELDS.len() + 1, "{rows:?}");
    for [flag_cell, env, ..] in &rows {
        let flag = flags(flag_cell)[0].trim_start_matches("--");
        let known = FIELDS.iter().any(|f| f.flag == flag)
            || (flag == "config" && *env == format!("`{CONFIG_ENV}`"));
        assert!(known, "documented but not a setting: --{flag}");
    }
}

#[test]
fn the_parsers_of_this_test_read_what_they_should() {
    let rows = setting_rows(
        "| `--a`, `--b` | `TTS_A` | `a` | `1.5` | text | with | pipes |\n| not a row |\n",
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][1], "`TTS_A`");
    assert_eq!(rows[0][3], "`1.5`");
    assert_eq!(flags(&rows[0][0]), ["--a", "--b"]);
    assert_eq!(documented_default(Some(&Value::Null)), "none");
    assert_eq!(documented_default(Some(&serde_json::json!([]))), "none");
    assert_eq!(documented_default(Some(&serde_json::json!(1.5))), "`1.5`");
    assert_eq!(documented_default(Some(&serde_json::json!(true))), "`true`");
    assert_eq!(
        documented_default(Some(&serde_json::json!("auto"))),
        "`auto`"
    );
}
