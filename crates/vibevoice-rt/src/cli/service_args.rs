//! The service options shared by every subcommand that needs the settings: one flag per entry
//! of the settings table, taken as text so that conversion problems are collected by the
//! loader together with those of the file and the environment.

use clap::builder::ValueParser;
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches};
use std::path::PathBuf;
use vv_server::config::{
    CommandLine, ConfigErrors, EnvLookup, FieldSpec, LoadedSettings, Settings, CONFIG_ENV, FIELDS,
};

const CONFIG_ARG: &str = "config";
const HEADING: &str = "Service options";

/// The service options as given on the command line (`#[command(flatten)]` into subcommands).
#[derive(Debug, Clone, Default)]
pub struct ServiceArgs(pub CommandLine);

impl ServiceArgs {
    /// Loads the settings from these flags, the environment and the configuration file.
    pub fn load(&self, env: EnvLookup<'_>) -> Result<LoadedSettings, ConfigErrors> {
        LoadedSettings::load(&self.0, env)
    }
}

impl Args for ServiceArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let defaults = serde_json::to_value(Settings::default()).unwrap_or_default();
        let config = Arg::new(CONFIG_ARG)
            .long(CONFIG_ARG)
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help(format!("TOML configuration file [env: {CONFIG_ENV}]"))
            .help_heading(HEADING);
        FIELDS.iter().fold(cmd.arg(config), |cmd, field| {
            cmd.arg(field_arg(field, defaults.get(field.name)))
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// The flag of one setting; its help names the default and the environment twin.
fn field_arg(field: &'static FieldSpec, default: Option<&serde_json::Value>) -> Arg {
    let default = match default {
        _ if field.secret => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
            Some(v.to_string())
        }
        _ => None,
    };
    let help = match default {
        Some(default) => format!("{} [default: {default}] [env: {}]", field.help, field.env),
        None => format!("{} [env: {}]", field.help, field.env),
    };
    let arg = Arg::new(field.name)
        .long(field.flag)
        .visible_aliases(field.aliases.iter().copied())
        .value_name(field.value_name)
        .help(help)
        .help_heading(HEADING)
        .action(ArgAction::Set)
        .value_parser(ValueParser::string());
    if field.switch {
        arg.num_args(0..=1).default_missing_value("true")
    } else {
        arg.allow_hyphen_values(true)
    }
}

impl FromArgMatches for ServiceArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(path) = get::<PathBuf>(matches, CONFIG_ARG)? {
            self.0.config_file = Some(path.clone());
        }
        for field in FIELDS {
            if let Some(value) = get::<String>(matches, field.name)? {
                self.0.set(field, value.clone());
            }
        }
        Ok(())
    }
}

fn get<'a, T>(matches: &'a ArgMatches, id: &str) -> Result<Option<&'a T>, clap::Error>
where
    T: std::any::Any + Clone + Send + Sync + 'static,
{
    matches
        .try_get_one::<T>(id)
        .map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e))
}
