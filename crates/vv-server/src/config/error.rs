//! Configuration errors: one per problem, all collected before loading fails.

use super::source::Origin;
use std::fmt;
use std::path::PathBuf;
use vv_device::{InvalidDTypeRequest, InvalidDeviceRequest};

/// Why one value is not acceptable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueProblem {
    /// Not a valid device form.
    #[error(transparent)]
    Device(#[from] InvalidDeviceRequest),
    /// Not a valid dtype form.
    #[error(transparent)]
    DType(#[from] InvalidDTypeRequest),
    /// The text does not parse as the expected type.
    #[error("expected {expected}, got {input:?}{}", reason_suffix(.reason))]
    Unparsable {
        /// What was expected, e.g. "an integer".
        expected: String,
        /// The rejected text.
        input: String,
        /// The parser's explanation, if any.
        reason: Option<String>,
    },
    /// A TOML array or table where a single value is expected (or the reverse).
    #[error("expected {expected}, got a TOML {found}")]
    WrongShape {
        /// What was expected.
        expected: &'static str,
        /// The TOML type found.
        found: &'static str,
    },
    /// A number outside its valid range.
    #[error("{value} is out of range: must be {range}")]
    OutOfRange {
        /// The rejected value.
        value: String,
        /// The valid range, in words.
        range: &'static str,
    },
    /// An empty value for a setting that needs one.
    #[error("must not be empty")]
    Empty,
    /// A local path that does not exist.
    #[error("{what} {} does not exist", .path.display())]
    PathNotFound {
        /// What the path is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// An existing path of the wrong kind.
    #[error("{what} {} must be {expected}", .path.display())]
    WrongPathKind {
        /// What the path is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What it must be, e.g. "a directory".
        expected: &'static str,
    },
}

fn reason_suffix(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

impl ValueProblem {
    /// Stable machine label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Device(e) => e.code(),
            Self::DType(e) => e.code(),
            Self::Unparsable { .. } | Self::WrongShape { .. } => "invalid_value",
            Self::OutOfRange { .. } => "out_of_range",
            Self::Empty => "empty_value",
            Self::PathNotFound { .. } => "path_not_found",
            Self::WrongPathKind { .. } => "wrong_path_kind",
        }
    }
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A value (from the file, the environment or a flag) that is not acceptable.
    #[error("{origin}: {problem}")]
    InvalidValue {
        /// Where the value came from, as given.
        origin: Origin,
        /// What is wrong with it.
        problem: ValueProblem,
    },
    /// A key in the TOML file that is not a setting.
    #[error("{}: unknown key {key:?}{}", .file.display(), suggestion_suffix(.suggestion))]
    UnknownKey {
        /// The configuration file.
        file: PathBuf,
        /// The unknown key.
        key: String,
        /// The closest known key, if any is close.
        suggestion: Option<&'static str>,
    },
    /// The configuration file cannot be read.
    #[error("{}: cannot read the configuration file: {reason}", .file.display())]
    UnreadableFile {
        /// The configuration file.
        file: PathBuf,
        /// The operating system's explanation.
        reason: String,
    },
    /// The configuration file is not valid TOML.
    #[error("{}:{line}:{column}: invalid TOML: {reason}", .file.display())]
    InvalidToml {
        /// The configuration file.
        file: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's explanation.
        reason: String,
    },
}

fn suggestion_suffix(suggestion: &Option<&'static str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}

impl ConfigError {
    /// Stable machine label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidValue { problem, .. } => problem.code(),
            Self::UnknownKey { .. } => "unknown_key",
            Self::UnreadableFile { .. } => "unreadable_config_file",
            Self::InvalidToml { .. } => "invalid_toml",
        }
    }
}

/// Every problem found while loading the configuration (never empty).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// `Ok(())` when there is no problem, else all of them.
    pub(crate) fn check(errors: Vec<ConfigError>) -> Result<(), Self> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Self(errors))
        }
    }

    /// The problems, in the order they were found (file, environment, flags).
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Stable machine label.
    pub fn code(&self) -> &'static str {
        "invalid_configuration"
    }
}

impl fmt::Display for ConfigErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
