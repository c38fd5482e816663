//! Service configuration: one [`Settings`] struct, filled from defaults, an optional TOML
//! file, `TTS_*` environment variables and command-line flags (in that order of precedence),
//! validated completely (every problem reported at once) before any model work.

mod api_keys;
mod error;
mod fields;
mod loader;
mod location;
mod origins;
mod paths;
mod settings;
mod source;
mod suggest;
mod value;

pub use api_keys::{ApiKeys, REDACTED};
pub use error::{ConfigError, ConfigErrors, ValueProblem};
pub use fields::{field_spec, FieldSpec, FIELDS};
pub use loader::{CommandLine, EnvLookup, FlagValue, LoadedSettings, SettingEntry, CONFIG_ENV};
pub use location::ResourceLocation;
pub use origins::{AllowedOrigins, ANY_ORIGIN};
pub use settings::{
    Choice, FirstAudioHold, Limits, LogFormat, MaxSlots, Settings, Solver, DEFAULT_MODEL,
    DEFAULT_TOKENIZER,
};
pub use source::{Origin, Source};
