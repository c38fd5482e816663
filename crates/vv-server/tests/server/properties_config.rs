//! Seed properties 5, 6 and 7 (configuration side of device selection) as property tests.

use crate::support::{env_of, lookup, write_file};
use proptest::prelude::*;
use std::collections::HashMap;
use vv_device::request::VALID_DEVICE_FORMS;
use vv_device::DeviceRequest;
use vv_server::config::{
    field_spec, CommandLine, ConfigError, LoadedSettings, Settings, Source, FIELDS,
};

/// The valid device forms, restated independently of the parser: trimmed, case-insensitive
/// `auto`, `cpu`, `cuda`, `mps`, `metal`, or `cuda:` followed by decimal digits fitting usize.
fn is_valid_device_form(s: &str) -> bool {
    let t = s.trim().to_ascii_lowercase();
    matches!(t.as_str(), "auto" | "cpu" | "cuda" | "mps" | "metal")
        || t.strip_prefix("cuda:").is_some_and(|n| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && n.parse::<usize>().is_ok()
        })
}

const NEAR_MISSES: &[&str] = &[
    "",
    " ",
    "gpu",
    "GPU",
    "mps0",
    "mps:0",
    "metal:0",
    "cuda:",
    "cuda:-1",
    "cuda:+1",
    "cuda: 1",
    "cuda::0",
    "cuda:1.0",
    "cuda:0x1",
    "cuda-0",
    "cuda0",
    "cuda 0",
    "cpu0",
    "auto1",
    "autos",
    "nvidia",
    "rocm",
    "cpu,cuda",
    "cuda:99999999999999999999999",
    "cuda:٣",
    "ｃｕｄａ",
];

const VALID_BASES: &[&str] = &["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps", "metal"];

/// Strings that are not valid device forms: near misses, valid forms with one junk character
/// inserted, and arbitrary strings.
fn invalid_device() -> impl Strategy<Value = String> {
    let near_miss = proptest::sample::select(NEAR_MISSES).prop_map(str::to_string);
    let mutated = (
        proptest::sample::select(VALID_BASES),
        any::<prop::sample::Index>(),
        "[^ \t\r\n]",
    )
        .prop_map(|(base, at, junk)| {
            let at = at.index(base.len() + 1);
            format!("{}{junk}{}", &base[..at], &base[at..])
        });
    let arbitrary = any::<String>();
    prop_oneof![near_miss, mutated, arbitrary]
        .prop_filter("must be invalid", |s| !is_valid_device_form(s))
}

/// Valid device strings with random case and surrounding whitespace, and what they mean.
fn valid_device() -> impl Strategy<Value = (String, DeviceRequest)> {
    let base = prop_oneof![
        Just(("auto".to_string(), DeviceRequest::Auto)),
        Just(("cpu".to_string(), DeviceRequest::Cpu)),
        Just(("cuda".to_string(), DeviceRequest::Cuda(0))),
        Just(("mps".to_string(), DeviceRequest::Metal)),
        Just(("metal".to_string(), DeviceRequest::Metal)),
        (any::<u32>(), 0usize..3).prop_map(|(n, zeros)| {
            let n = n as usize;
            (
                format!("cuda:{}{n}", "0".repeat(zeros)),
                DeviceRequest::Cuda(n),
            )
        }),
    ];
    let upper = proptest::collection::vec(any::<bool>(), 32);
    (base, upper, "[ \t\r\n]{0,3}", "[ \t\r\n]{0,3}").prop_map(|((s, want), upper, pre, post)| {
        let cased: String = s
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        (format!("{pre}{cased}{post}"), want)
    })
}

/// Where the invalid device string is given.
#[derive(Debug, Clone, Copy)]
enum Layer {
    Env,
    Flag,
    File,
}

fn load_device_from(
    layer: Layer,
    device: &str,
) -> Result<LoadedSettings, vv_server::config::ConfigErrors> {
    // A hub id that does not exist: loading must not try to fetch it (no model work).
    let mut env = env_of(&[("TTS_MODEL", "nobody/no-such-model-for-tests")]);
    let mut cli = CommandLine::default();
    match layer {
        Layer::Env => {
            env.insert("TTS_DEVICE".into(), device.into());
        }
        Layer::Flag => {
            cli.set(field_spec("device").unwrap(), device);
        }
        Layer::File => {
            let value = toml::Value::String(device.to_string());
            cli.config_file = Some(write_file("config.toml", &format!("device = {value}\n")));
        }
    }
    let loaded = LoadedSettings::load(&cli, &lookup(&env));
    loaded
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Property 5: every invalid device string is rejected while the configuration is loaded,
    /// by whichever layer gives it, with one error listing the valid forms, examples and auto.
    #[test]
    fn property_05_invalid_device_strings_are_rejected_at_configuration(
        device in invalid_device(),
        layer in prop_oneof![Just(Layer::Env), Just(Layer::Flag), Just(Layer::File)],
    ) {
        let errors = load_device_from(layer, &device).unwrap_err();
        prop_assert_eq!(errors.errors().len(), 1, "{}", errors);
        let error = &errors.errors()[0];
        prop_assert_eq!(error.code(), "invalid_device");
        let ConfigError::InvalidValue { origin, .. } = error else {
            return Err(TestCaseError::fail(format!("not a value error: {error:?}")));
        };
        prop_assert_eq!(origin.key, "device");
        let source_matches = match (layer, &origin.source) {
            (Layer::Env, Source::Env(var)) => *var == "TTS_DEVICE",
            (Layer::Flag, Source::Flag(flag)) => *flag == "device",
            (Layer::File, Source::File(path)) => path.ends_with("config.toml"),
            _ => false,
        };
        prop_assert!(source_matches, "{:?} from {:?}", origin.source, layer);
        let message = error.to_string();
        prop_assert!(message.contains(VALID_DEVICE_FORMS), "{}", message);
        prop_assert!(message.contains("cuda:0") && message.contains("\"auto\""), "{}", message);
    }

    /// Property 6: any valid device string in TTS_DEVICE gives that request.
    #[test]
    fn property_06_valid_tts_device_selects_that_device((device, want) in valid_device()) {
        let env = env_of(&[("TTS_DEVICE", &device)]);
        let loaded = LoadedSettings::load(&CommandLine::default(), &lookup(&env)).unwrap();
        prop_assert_eq!(loaded.settings.device, want);
        prop_assert_eq!(loaded.source_of("device"), Some(Source::Env("TTS_DEVICE")));
    }

    /// Property 7: without TTS_DEVICE (whatever else is set) the device is auto.
    #[test]
    fn property_07_unset_tts_device_defaults_to_auto(
        others in proptest::collection::hash_map("[A-Za-z][A-Za-z0-9_]{0,15}", ".{0,12}", 0..8),
        near in proptest::collection::hash_map(
            proptest::sample::select(&["TTS_DEVICES", "TTS_DEVICE_", "tts_device", "TTSDEVICE", "DEVICE"][..]),
            ".{0,12}",
            0..3,
        ),
        known in proptest::sample::subsequence(
            &[("TTS_DTYPE", "f16"), ("TTS_PORT", "9001"), ("TTS_MAX_SLOTS", "2"),
              ("TTS_LOG_FORMAT", "json"), ("TTS_SOLVER", "sde"), ("TTS_SEED", "7")][..],
            0..=6,
        ),
    ) {
        let reserved = |name: &str| name == "TTS_CONFIG" || FIELDS.iter().any(|f| f.env == name);
        let mut env: HashMap<String, String> =
            others.into_iter().filter(|(k, _)| !reserved(k)).collect();
        env.extend(near.into_iter().map(|(k, v)| (k.to_string(), v)));
        env.extend(known.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        prop_assert!(!env.contains_key("TTS_DEVICE"));
        let loaded = LoadedSettings::load(&CommandLine::default(), &lookup(&env)).unwrap();
        prop_assert_eq!(loaded.settings.device, DeviceRequest::Auto);
        prop_assert_eq!(loaded.source_of("device"), Some(Source::Default));
        prop_assert_eq!(Settings::load(&CommandLine::default(), &lookup(&env)).unwrap().device, DeviceRequest::Auto);
    }
}

#[test]
fn the_oracle_agrees_with_the_examples() {
    for valid in VALID_BASES.iter().chain(&[" CUDA:7 ", "\tMetal\n"]) {
        assert!(is_valid_device_form(valid), "{valid:?}");
    }
    for invalid in NEAR_MISSES {
        assert!(!is_valid_device_form(invalid), "{invalid:?}");
    }
}
