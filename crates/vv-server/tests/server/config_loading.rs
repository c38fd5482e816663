//! Loading the configuration: precedence of the layers, collected errors, paths and secrets.

use std::time::Duration;

use crate::support::{env_of, lookup, scratch_dir, write_file};
use vv_device::{DTypeRequest, DeviceRequest};
use vv_server::config::{
    field_spec, CommandLine, ConfigError, FirstAudioHold, LoadedSettings, LogFormat, MaxSlots,
    Settings, Solver, Source, REDACTED,
};

fn flags(pairs: &[(&str, &str)]) -> CommandLine {
    let mut cli = CommandLine::default();
    for (name, value) in pairs {
        cli.set(field_spec(name).unwrap(), *value);
    }
    cli
}

fn codes(errors: &vv_server::config::ConfigErrors) -> Vec<&'static str> {
    errors.errors().iter().map(ConfigError::code).collect()
}

#[test]
fn nothing_set_gives_the_documented_defaults() {
    let loaded = LoadedSettings::load(&CommandLine::default(), &|_| None).unwrap();
    let s = &loaded.settings;
    assert_eq!(s, &Settings::default());
    assert_eq!(s.device, DeviceRequest::Auto);
    assert_eq!(s.dtype, DTypeRequest::Auto);
    assert_eq!(s.model, "microsoft/VibeVoice-Realtime-0.5B");
    assert_eq!(s.model_revision, "main");
    assert_eq!(s.tokenizer, "Qwen/Qwen2.5-0.5B");
    assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 8000));
    assert_eq!(
        (s.diffusion_steps, s.cfg_scale, s.solver),
        (5, 1.5, Solver::Ode)
    );
    assert!(s.warmup && s.seed.is_none() && s.api_keys.is_empty());
    assert_eq!(s.log_format, LogFormat::Text);
    let l = s.limits;
    assert_eq!(
        (l.max_slots, l.max_text_chars, l.max_message_bytes),
        (MaxSlots::Auto, 5000, 65536)
    );
    assert_eq!((l.max_frames_per_token, l.max_buffered_frames), (10, 64));
    assert_eq!(
        (
            l.session_idle_timeout_secs,
            l.context_idle_timeout_secs,
            l.shutdown_grace_secs
        ),
        (60, 30, 30)
    );
    assert!(loaded.entries().iter().all(|e| e.source == Source::Default));
    assert_eq!(loaded.config_file, None);
}

#[test]
fn each_layer_overrides_the_previous_one() {
    let file = write_file(
        "service.toml",
        "port = 1001\ndiffusion_steps = 7\ndtype = \"f16\"\nmax_slots = 3\nsolver = \"sde\"\n",
    );
    let env = env_of(&[
        ("TTS_CONFIG", file.to_str().unwrap()),
        ("TTS_PORT", "1002"),
        ("TTS_DIFFUSION_STEPS", "8"),
        ("TTS_SOLVER", "ode"),
    ]);
    let cli = flags(&[("port", "1003")]);
    let loaded = LoadedSettings::load(&cli, &lookup(&env)).unwrap();
    let s = &loaded.settings;
    assert_eq!(s.port, 1003);
    assert_eq!(s.diffusion_steps, 8);
    assert_eq!(s.solver, Solver::Ode);
    assert_eq!(s.dtype, DTypeRequest::F16);
    assert_eq!(s.limits.max_slots, MaxSlots::Fixed(3));
    assert_eq!(s.cfg_scale, 1.5);
    assert_eq!(loaded.config_file.as_deref(), Some(file.as_path()));
    assert_eq!(loaded.source_of("port"), Some(Source::Flag("port")));
    assert_eq!(
        loaded.source_of("diffusion_steps"),
        Some(Source::Env("TTS_DIFFUSION_STEPS"))
    );
    assert_eq!(loaded.source_of("dtype"), Some(Source::File(file.clone())));
    assert_eq!(loaded.source_of("cfg_scale"), Some(Source::Default));
    assert_eq!(loaded.source_of("no_such_setting"), None);
}

#[test]
fn the_config_flag_overrides_tts_config() {
    let from_env = write_file("env.toml", "port = 1\n");
    let from_flag = write_file("flag.toml", "port = 2\n");
    let env = env_of(&[("TTS_CONFIG", from_env.to_str().unwrap())]);
    let cli = CommandLine {
        config_file: Some(from_flag.clone()),
        ..CommandLine::default()
    };
    let loaded = LoadedSettings::load(&cli, &lookup(&env)).unwrap();
    assert_eq!(loaded.settings.port, 2);
    assert_eq!(loaded.config_file, Some(from_flag));
}

#[test]
fn the_first_audio_hold_is_auto_or_milliseconds_up_to_a_second() {
    for (value, want) in [
        ("auto", Some(FirstAudioHold::Auto)),
        ("AUTO", Some(FirstAudioHold::Auto)),
        ("0", Some(FirstAudioHold::Millis(0))),
        ("1000", Some(FirstAudioHold::Millis(1000))),
        ("1001", None),
        ("-1", None),
        ("soon", None),
    ] {
        let env = env_of(&[("TTS_FIRST_AUDIO_HOLD_MS", value)]);
        let loaded = Settings::load(&CommandLine::default(), &lookup(&env));
        assert_eq!(
            loaded.ok().map(|s| s.limits.first_audio_hold_ms),
            want,
            "{value}"
        );
    }
    let auto = FirstAudioHold::Auto;
    assert_eq!(
        auto.resolve(true),
        Duration::from_millis(FirstAudioHold::CPU_MS)
    );
    assert_eq!(auto.resolve(false), Duration::ZERO);
    assert_eq!(
        FirstAudioHold::Millis(40).resolve(false),
        Duration::from_millis(40)
    );
}

#[test]
fn tts_device_cuda_0_keeps_its_meaning() {
    for (value, want) in [
        ("cuda:0", DeviceRequest::Cuda(0)),
        ("cuda", DeviceRequest::Cuda(0)),
        ("cuda:1", DeviceRequest::Cuda(1)),
        ("mps", DeviceRequest::Metal),
        ("metal", DeviceRequest::Metal),
        ("cpu", DeviceRequest::Cpu),
    ] {
        let env = env_of(&[("TTS_DEVICE", value)]);
        let s = Settings::load(&CommandLine::default(), &lookup(&env)).unwrap();
        assert_eq!(s.device, want, "{value}");
    }
}

#[test]
fn every_problem_of_every_layer_is_reported_at_once() {
    let file = write_file(
        "config.toml",
        "prot = 80\ncfg_scale = 0\nvoices_dir = \"/no/such/voices\"\nport = 70000\n",
    );
    let env = env_of(&[
        ("TTS_DEVICE", "gpu"),
        ("TTS_PORT", "http"),
        ("TTS_MODEL", "/no/such/model/dir"),
        ("TTS_LOG_FORMAT", "xml"),
    ]);
    let mut cli = flags(&[("diffusion_steps", "0"), ("warmup", "maybe")]);
    cli.config_file = Some(file.clone());
    let errors = LoadedSettings::load(&cli, &lookup(&env)).unwrap_err();
    let f = file.display();
    let expected = [
        (
            "out_of_range",
            format!("{f}: cfg_scale = 0: 0 is out of range"),
        ),
        (
            "invalid_value",
            format!("{f}: port = 70000: expected a port number"),
        ),
        (
            "unknown_key",
            format!("{f}: unknown key \"prot\" (did you mean \"port\"?)"),
        ),
        (
            "path_not_found",
            format!("{f}: voices_dir = \"/no/such/voices\": voices directory"),
        ),
        (
            "invalid_device",
            "TTS_DEVICE=gpu: invalid device \"gpu\": valid forms are".into(),
        ),
        (
            "path_not_found",
            "TTS_MODEL=/no/such/model/dir: model directory".into(),
        ),
        (
            "invalid_value",
            "TTS_PORT=http: expected a port number (0-65535), got \"http\"".into(),
        ),
        (
            "invalid_value",
            "TTS_LOG_FORMAT=xml: expected one of text, json".into(),
        ),
        (
            "out_of_range",
            "--diffusion-steps 0: 0 is out of range: must be between 1 and 100".into(),
        ),
        ("invalid_value", "--warmup maybe: expected a boolean".into()),
    ];
    let text = errors.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (_, start) in &expected {
        assert!(
            lines.iter().any(|l| l.starts_with(start.as_str())),
            "missing {start:?} in\n{text}"
        );
    }
    let mut got = codes(&errors);
    let mut want: Vec<&str> = expected.iter().map(|(c, _)| *c).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{text}");
    assert_eq!(errors.code(), "invalid_configuration");
}

#[test]
fn unknown_toml_keys_and_nested_tables_are_rejected() {
    let file = write_file(
        "config.toml",
        "port = 9000\nvoice_dir = \"x\"\n[limits]\nmax_slots = 2\n",
    );
    let cli = CommandLine {
        config_file: Some(file.clone()),
        ..CommandLine::default()
    };
    let errors = LoadedSettings::load(&cli, &|_| None).unwrap_err();
    assert_eq!(
        errors.errors(),
        &[
            ConfigError::UnknownKey {
                file: file.clone(),
                key: "limits".into(),
                suggestion: None
            },
            ConfigError::UnknownKey {
                file,
                key: "voice_dir".into(),
                suggestion: Some("voices_dir")
            },
        ]
    );
}

#[test]
fn a_broken_or_missing_file_is_reported_with_the_other_problems() {
    // "host = " makes the parser explain itself over two lines: the error stays on one.
    let broken = write_file("broken.toml", "port = 9000\nhost = \n");
    let env = env_of(&[("TTS_MAX_SLOTS", "0")]);
    let cli = CommandLine {
        config_file: Some(broken.clone()),
        ..CommandLine::default()
    };
    let errors = LoadedSettings::load(&cli, &lookup(&env)).unwrap_err();
    assert_eq!(codes(&errors), ["invalid_toml", "out_of_range"], "{errors}");
    let first = errors.errors()[0].to_string();
    assert!(
        first.starts_with(&format!("{}:2:", broken.display())),
        "{first}"
    );

    let missing = scratch_dir("missing").join("nope.toml");
    let env = env_of(&[("TTS_CONFIG", missing.to_str().unwrap())]);
    let errors = LoadedSettings::load(&CommandLine::default(), &lookup(&env)).unwrap_err();
    assert_eq!(codes(&errors), ["unreadable_config_file"]);
}

#[test]
fn local_paths_are_checked_and_empty_optional_values_unset() {
    let dir = scratch_dir("paths");
    let tokenizer = dir.join("tokenizer.json");
    std::fs::write(&tokenizer, "{}").unwrap();
    let empty_dir = scratch_dir("empty");
    let file = write_file(
        "config.toml",
        &format!("voices_dir = {:?}\nseed = 42\n", dir.to_str().unwrap()),
    );
    let ok_env = env_of(&[
        ("TTS_TOKENIZER", tokenizer.to_str().unwrap()),
        ("TTS_MODEL", dir.to_str().unwrap()),
        ("TTS_VOICES_DIR", ""),
        ("TTS_SEED", " "),
    ]);
    let cli = CommandLine {
        config_file: Some(file),
        ..CommandLine::default()
    };
    let s = Settings::load(&cli, &lookup(&ok_env)).unwrap();
    assert_eq!(s.tokenizer, tokenizer.to_str().unwrap());
    assert_eq!((s.voices_dir, s.seed), (None, None));

    let bad_env = env_of(&[
        ("TTS_TOKENIZER", empty_dir.to_str().unwrap()),
        ("TTS_VOICES_DIR", tokenizer.to_str().unwrap()),
        ("TTS_CACHE_DIR", tokenizer.to_str().unwrap()),
        ("TTS_MODEL", "./no-such-model"),
    ]);
    let errors = Settings::load(&CommandLine::default(), &lookup(&bad_env)).unwrap_err();
    assert_eq!(
        codes(&errors),
        [
            "path_not_found",
            "wrong_path_kind",
            "wrong_path_kind",
            "wrong_path_kind"
        ],
        "{errors}"
    );
}

#[test]
fn api_keys_are_never_shown_in_clear() {
    let env = env_of(&[("TTS_API_KEYS", "alpha-secret, beta-secret")]);
    let loaded = LoadedSettings::load(&CommandLine::default(), &lookup(&env)).unwrap();
    assert_eq!(loaded.settings.api_keys.len(), 2);
    assert!(loaded.settings.api_keys.accepts("beta-secret"));
    let shown = [
        format!("{loaded:?}"),
        format!("{:?}", loaded.settings),
        serde_json::to_string(&loaded.settings).unwrap(),
        serde_json::to_string(&loaded.entries()).unwrap(),
    ];
    for text in &shown {
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains(REDACTED), "{text}");
    }

    let file = write_file("config.toml", "api_keys = [\"gamma-secret\", 3]\n");
    let cli = CommandLine {
        config_file: Some(file),
        ..CommandLine::default()
    };
    let errors = LoadedSettings::load(&cli, &|_| None).unwrap_err();
    let text = format!("{errors} {errors:?}");
    assert!(!text.contains("gamma-secret"), "{text}");
    assert!(text.contains("api_keys = <redacted>"), "{text}");
}

#[test]
fn toml_values_of_every_kind_are_accepted() {
    let file = write_file(
        "config.toml",
        "cfg_scale = 2\nwarmup = false\napi_keys = [\"k1\"]\nseed = 9\nhost = \"0.0.0.0\"\n\
         default_voice = \"en-Carter_man\"\nlog_format = \"JSON\"\n",
    );
    let cli = CommandLine {
        config_file: Some(file),
        ..CommandLine::default()
    };
    let s = Settings::load(&cli, &|_| None).unwrap();
    assert_eq!(s.cfg_scale, 2.0);
    assert!(!s.warmup);
    assert!(s.api_keys.accepts("k1"));
    assert_eq!(s.seed, Some(9));
    assert_eq!(s.host, "0.0.0.0");
    assert_eq!(s.default_voice.as_deref(), Some("en-Carter_man"));
    assert_eq!(s.log_format, LogFormat::Json);
}
