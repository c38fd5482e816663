//! Where a setting's value came from, for provenance reports and error messages.

use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// The layer that set a value (later layers override earlier ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Source {
    /// The built-in default.
    Default,
    /// The TOML configuration file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(&'static str),
    /// This command-line flag (without the leading `--`).
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(var) => write!(f, "env {var}"),
            Self::Flag(flag) => write!(f, "flag --{flag}"),
        }
    }
}

/// A value as it was given: its source, the setting's key and the raw text (redacted for
/// secrets). Displayed the way the user wrote it: `TTS_PORT=x`, `--port x`, `file: port = x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Where the value came from.
    pub source: Source,
    /// The setting's key (snake_case).
    pub key: &'static str,
    /// The value as given.
    pub raw: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, raw) = (self.key, &self.raw);
        match &self.source {
            Source::Default => write!(f, "default {key} = {raw}"),
            Source::File(path) => write!(f, "{}: {key} = {raw}", path.display()),
            Source::Env(var) => write!(f, "{var}={raw}"),
            Source::Flag(flag) => write!(f, "--{flag} {raw}"),
        }
    }
}
