//! Loading the settings: defaults < TOML file < environment < command-line flags, with every
//! problem of every layer collected before failing. Nothing here touches a model.

use super::error::{ConfigError, ConfigErrors};
use super::fields::{field_spec, FieldSpec, FIELDS};
use super::settings::Settings;
use super::source::{Origin, Source};
use super::suggest::closest_setting;
use super::value::RawValue;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Environment variable naming the TOML configuration file (the twin of `--config`).
pub const CONFIG_ENV: &str = "TTS_CONFIG";

/// How the loader reads environment variables (the real environment in the binary, a map in
/// tests).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One flag given on the command line, as text (converted, and checked, by the loader).
#[derive(Debug, Clone)]
pub struct FlagValue {
    /// The setting the flag sets.
    pub field: &'static FieldSpec,
    /// The text given.
    pub value: String,
}

/// What the command line says about the configuration.
#[derive(Debug, Clone, Default)]
pub struct CommandLine {
    /// `--config`: the TOML file (overrides `TTS_CONFIG`).
    pub config_file: Option<PathBuf>,
    /// Setting flags, applied in this order.
    pub flags: Vec<FlagValue>,
}

impl CommandLine {
    /// Adds (or replaces) the flag of `field`.
    pub fn set(&mut self, field: &'static FieldSpec, value: impl Into<String>) -> &mut Self {
        self.flags.retain(|f| f.field.name != field.name);
        self.flags.push(FlagValue {
            field,
            value: value.into(),
        });
        self
    }
}

/// Settings together with where each value came from.
#[derive(Debug, Clone)]
pub struct LoadedSettings {
    /// The effective settings.
    pub settings: Settings,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
    sources: HashMap<&'static str, Source>,
}

/// One line of the provenance report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingEntry {
    /// The setting's key.
    pub name: &'static str,
    /// Its effective value (secrets redacted).
    pub value: serde_json::Value,
    /// The layer that set it.
    pub source: Source,
}

impl Settings {
    /// Loads the settings; see [`LoadedSettings::load`].
    pub fn load(cli: &CommandLine, env: EnvLookup<'_>) -> Result<Settings, ConfigErrors> {
        LoadedSettings::load(cli, env).map(|loaded| loaded.settings)
    }
}

impl LoadedSettings {
    /// Builds the settings from the defaults, the TOML file (`--config`, else `TTS_CONFIG`;
    /// unset or empty means none), the `TTS_*` variables and the flags, each layer overriding
    /// the previous one. Every invalid value of every layer, unknown file key and unusable
    /// path is reported, all at once. Relative paths are relative to the working directory.
    pub fn load(cli: &CommandLine, env: EnvLookup<'_>) -> Result<Self, ConfigErrors> {
        let config_file = cli.config_file.clone().or_else(|| {
            env(CONFIG_ENV)
                .filter(|p| !p.trim().is_empty())
                .map(PathBuf::from)
        });
        let mut layers = Layers::default();
        if let Some(path) = &config_file {
            layers.file(path);
        }
        layers.environment(env);
        layers.flags(&cli.flags);
        ConfigErrors::check(layers.errors)?;
        Ok(Self {
            settings: layers.settings,
            config_file,
            sources: layers.sources,
        })
    }

    /// The layer that set the setting `name` (`None` for an unknown name).
    pub fn source_of(&self, name: &str) -> Option<Source> {
        let field = field_spec(name)?;
        Some(self.source_of_field(field))
    }

    fn source_of_field(&self, field: &FieldSpec) -> Source {
        self.sources
            .get(field.name)
            .cloned()
            .unwrap_or(Source::Default)
    }

    /// Every setting with its effective value and source, in table order.
    pub fn entries(&self) -> Vec<SettingEntry> {
        let values = serde_json::to_value(&self.settings).unwrap_or_default();
        FIELDS
            .iter()
            .map(|field| SettingEntry {
                name: field.name,
                value: values.get(field.name).cloned().unwrap_or_default(),
                source: self.source_of_field(field),
            })
            .collect()
    }
}

/// The layers applied so far, with the problems found.
#[derive(Default)]
struct Layers {
    settings: Settings,
    sources: HashMap<&'static str, Source>,
    errors: Vec<ConfigError>,
}

impl Layers {
    fn apply(&mut self, field: &'static FieldSpec, raw: RawValue<'_>, source: Source) {
        match field.apply(&mut self.settings, raw) {
            Ok(()) => {
                self.sources.insert(field.name, source);
            }
            Err(problem) => self.errors.push(ConfigError::InvalidValue {
                origin: Origin {
                    source,
                    key: field.name,
                    raw: field.shown(raw),
                },
                problem,
            }),
        }
    }

    fn file(&mut self, path: &Path) {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                return self.errors.push(ConfigError::UnreadableFile {
                    file: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        };
        let table = match text.parse::<toml::Table>() {
            Ok(table) => table,
            Err(e) => {
                let (line, column) = line_and_column(&text, e.span().map_or(0, |s| s.start));
                return self.errors.push(ConfigError::InvalidToml {
                    file: path.to_path_buf(),
                    line,
                    column,
                    reason: e.message().trim().replace('\n', "; "),
                });
            }
        };
        for (key, value) in &table {
            match field_spec(key) {
                Some(field) => self.apply(field, RawValue::Toml(value), Source::File(path.into())),
                None => self.errors.push(ConfigError::UnknownKey {
                    file: path.to_path_buf(),
                    key: key.clone(),
                    suggestion: closest_setting(key),
                }),
            }
        }
    }

    fn environment(&mut self, env: EnvLookup<'_>) {
        for field in FIELDS {
            if let Some(value) = env(field.env) {
                self.apply(field, RawValue::Text(&value), Source::Env(field.env));
            }
        }
    }

    fn flags(&mut self, flags: &[FlagValue]) {
        for flag in flags {
            let source = Source::Flag(flag.field.flag);
            self.apply(flag.field, RawValue::Text(&flag.value), source);
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_and_column("a = 1\nbb = ?", 11), (2, 6));
        assert_eq!(line_and_column("x", 0), (1, 1));
        assert_eq!(line_and_column("x", 99), (1, 2));
    }
}
