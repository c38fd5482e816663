//! The `quantize` setting: its default, each layer, its errors, and its way to the engine.

use crate::support::{env_of, lookup, write_file};
use vv_model::Quantize;
use vv_server::config::{field_spec, CommandLine, ConfigError, LoadedSettings, Settings, Source};
use vv_server::engine_options::engine_options;

#[test]
fn auto_by_default_and_each_layer_sets_it() {
    let defaults = Settings::load(&CommandLine::default(), &|_| None).unwrap();
    assert_eq!(defaults.quantize, Quantize::Auto);

    let file = write_file("quantize.toml", "quantize = \"bf16\"\n");
    let env = env_of(&[("TTS_CONFIG", file.to_str().unwrap())]);
    let loaded = LoadedSettings::load(&CommandLine::default(), &lookup(&env)).unwrap();
    assert_eq!(loaded.settings.quantize, Quantize::Bf16);
    assert_eq!(loaded.source_of("quantize"), Some(Source::File(file)));

    let env = env_of(&[("TTS_QUANTIZE", "INT8")]);
    let s = Settings::load(&CommandLine::default(), &lookup(&env)).unwrap();
    assert_eq!(s.quantize, Quantize::Int8);
    assert_eq!(engine_options(&s).quantize, Quantize::Int8);

    let mut cli = CommandLine::default();
    cli.set(field_spec("quantize").unwrap(), "none");
    let s = Settings::load(&cli, &lookup(&env)).unwrap();
    assert_eq!(s.quantize, Quantize::None);
}

#[test]
fn an_unknown_format_is_a_collected_error_naming_the_valid_ones() {
    let env = env_of(&[("TTS_QUANTIZE", "int4")]);
    let errors = Settings::load(&CommandLine::default(), &lookup(&env)).unwrap_err();
    let codes: Vec<_> = errors.errors().iter().map(ConfigError::code).collect();
    assert_eq!(codes, ["invalid_value"]);
    let message = errors.to_string();
    assert!(message.contains("TTS_QUANTIZE"), "{message}");
    assert!(message.contains("auto, none, bf16, int8"), "{message}");
}
