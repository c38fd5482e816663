//! The table of settings: for each one its TOML key, flag, environment variable, help text and
//! conversion. Everything that lists settings (loader, command line, reports) reads this table.

use super::api_keys::ApiKeys;
use super::error::ValueProblem;
use super::origins::AllowedOrigins;
use super::paths;
use super::settings::{FirstAudioHold, MaxSlots, Settings};
use super::value::RawValue;
use std::fmt::Display;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::str::FromStr;

type Apply = fn(&mut Settings, RawValue<'_>) -> Result<(), ValueProblem>;

/// One setting: how it is named in each source and how its value is converted.
#[derive(Debug)]
pub struct FieldSpec {
    /// TOML key and `Settings` field name (snake_case).
    pub name: &'static str,
    /// Command-line flag without the leading `--` (kebab-case).
    pub flag: &'static str,
    /// Shorter flag aliases.
    pub aliases: &'static [&'static str],
    /// Environment variable (`TTS_` + SCREAMING_CASE name).
    pub env: &'static str,
    /// Placeholder for the value in help texts.
    pub value_name: &'static str,
    /// One-line description.
    pub help: &'static str,
    /// A boolean whose flag may be given without a value (`--warmup` = `--warmup true`).
    pub switch: bool,
    /// A secret: its value never appears in messages or reports.
    pub secret: bool,
    apply: Apply,
}

impl FieldSpec {
    const fn new(
        name: &'static str,
        flag: &'static str,
        env: &'static str,
        value_name: &'static str,
        help: &'static str,
        apply: Apply,
    ) -> Self {
        Self {
            name,
            flag,
            aliases: &[],
            env,
            value_name,
            help,
            switch: false,
            secret: false,
            apply,
        }
    }

    const fn aliases(self, aliases: &'static [&'static str]) -> Self {
        Self { aliases, ..self }
    }

    const fn switch(self) -> Self {
        Self {
            switch: true,
            ..self
        }
    }

    const fn secret(self) -> Self {
        Self {
            secret: true,
            ..self
        }
    }

    /// Converts `raw` and stores it in `settings`; on error `settings` is unchanged.
    pub(crate) fn apply(
        &self,
        settings: &mut Settings,
        raw: RawValue<'_>,
    ) -> Result<(), ValueProblem> {
        (self.apply)(settings, raw)
    }

    /// The raw value as it may be shown in messages (secrets redacted).
    pub(crate) fn shown(&self, raw: RawValue<'_>) -> String {
        if self.secret {
            super::api_keys::REDACTED.to_string()
        } else {
            raw.display()
        }
    }
}

/// The setting called `name` (TOML key / field name), if there is one.
pub fn field_spec(name: &str) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|f| f.name == name)
}

fn set<T>(slot: &mut T, value: Result<T, ValueProblem>) -> Result<(), ValueProblem> {
    *slot = value?;
    Ok(())
}

fn cfg_scale(raw: RawValue<'_>) -> Result<f32, ValueProblem> {
    let value: f32 = raw.number("a number")?;
    if value.is_finite() && value > 0.0 && value <= 10.0 {
        Ok(value)
    } else {
        Err(ValueProblem::OutOfRange {
            value: value.to_string(),
            range: "greater than 0 and at most 10",
        })
    }
}

/// `auto` (any case, blanks around it ignored) as `None`, else an integer in `range`.
fn auto_or_integer<T>(
    raw: RawValue<'_>,
    range: RangeInclusive<T>,
    range_text: &'static str,
) -> Result<Option<T>, ValueProblem>
where
    T: FromStr + PartialOrd + Display,
    T::Err: Display,
{
    if raw.text()?.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    raw.integer_in(range, range_text).map(Some)
}

fn max_slots(raw: RawValue<'_>) -> Result<MaxSlots, ValueProblem> {
    let fixed = auto_or_integer(raw, 1..=1024, "auto, or between 1 and 1024")?;
    Ok(fixed.map_or(MaxSlots::Auto, MaxSlots::Fixed))
}

fn first_audio_hold(raw: RawValue<'_>) -> Result<FirstAudioHold, ValueProblem> {
    let range = 0..=FirstAudioHold::MAX_MS;
    let millis = auto_or_integer(raw, range, "auto, or between 0 and 1000")?;
    Ok(millis.map_or(FirstAudioHold::Auto, FirstAudioHold::Millis))
}

fn headroom(raw: RawValue<'_>) -> Result<f64, ValueProblem> {
    let value: f64 = raw.number("a number")?;
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(ValueProblem::OutOfRange {
            value: value.to_string(),
            range: "greater than 0 and at most 1",
        })
    }
}

fn host(raw: RawValue<'_>) -> Result<String, ValueProblem> {
    let host = raw.non_empty()?;
    let hostname_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if host.parse::<IpAddr>().is_ok() || host.chars().all(hostname_char) {
        Ok(host)
    } else {
        Err(ValueProblem::Unparsable {
            expected: "an IP address or a host name".to_string(),
            input: host,
            reason: None,
        })
    }
}

/// An optional OTLP/HTTP endpoint (see [`crate::trace::otlp::Endpoint`]).
fn otlp_endpoint(raw: RawValue<'_>) -> Result<Option<String>, ValueProblem> {
    let Some(url) = raw.optional_text()? else {
        return Ok(None);
    };
    match crate::trace::otlp::Endpoint::parse(&url) {
        Ok(_) => Ok(Some(url)),
        Err(reason) => Err(ValueProblem::Unparsable {
            expected: "an http://host:port URL".to_string(),
            input: url,
            reason: Some(reason),
        }),
    }
}

/// Every setting, in the order they are shown.
pub static FIELDS: &[FieldSpec] = &[
    FieldSpec::new(
        "device",
        "device",
        "TTS_DEVICE",
        "DEVICE",
        "Inference device: auto (CUDA, then Metal, then CPU), cpu, cuda, cuda:N, mps (alias metal)",
        |s, v| set(&mut s.device, v.parse_as()),
    ),
    FieldSpec::new(
        "dtype",
        "dtype",
        "TTS_DTYPE",
        "DTYPE",
        "Compute dtype: auto, bf16, f16, f32 (auto: bf16 on CUDA, f32 elsewhere)",
        |s, v| set(&mut s.dtype, v.parse_as()),
    ),
    FieldSpec::new(
        "quantize",
        "quantize",
        "TTS_QUANTIZE",
        "QUANTIZE",
        "Weights of the large matrices on the CPU (f32 compute): auto, none, bf16, int8 (auto: \
         int8 where the CPU kernels are SIMD kernels, none elsewhere; int8/bf16 on a GPU is an \
         error)",
        |s, v| set(&mut s.quantize, v.choice()),
    ),
    FieldSpec::new(
        "model",
        "model",
        "TTS_MODEL",
        "ID|DIR",
        "Hugging Face model id or local model directory",
        |s, v| set(&mut s.model, v.non_empty().and_then(paths::model)),
    ),
    FieldSpec::new(
        "model_revision",
        "model-revision",
        "TTS_MODEL_REVISION",
        "REV",
        "Branch, tag or commit of a Hugging Face model",
        |s, v| set(&mut s.model_revision, v.non_empty()),
    ),
    FieldSpec::new(
        "tokenizer",
        "tokenizer",
        "TTS_TOKENIZER",
        "ID|PATH",
        "Hugging Face tokenizer id, or a tokenizer.json (or a directory holding one)",
        |s, v| set(&mut s.tokenizer, v.non_empty().and_then(paths::tokenizer)),
    ),
    FieldSpec::new(
        "cache_dir",
        "cache-dir",
        "TTS_CACHE_DIR",
        "DIR",
        "Hugging Face cache directory (default: the hub's own)",
        |s, v| {
            let dir = v.optional_path();
            set(
                &mut s.cache_dir,
                dir.and_then(|d| paths::creatable_directory("cache directory", d)),
            )
        },
    ),
    FieldSpec::new(
        "voices_dir",
        "voices-dir",
        "TTS_VOICES_DIR",
        "DIR",
        "Directory of voice presets",
        |s, v| {
            let dir = v.optional_path();
            set(
                &mut s.voices_dir,
                dir.and_then(|d| paths::existing_directory("voices directory", d)),
            )
        },
    ),
    FieldSpec::new(
        "default_voice",
        "default-voice",
        "TTS_DEFAULT_VOICE",
        "VOICE",
        "Voice used when a request names none",
        |s, v| set(&mut s.default_voice, v.optional_text()),
    ),
    FieldSpec::new(
        "host",
        "host",
        "TTS_HOST",
        "ADDR",
        "Address to listen on",
        |s, v| set(&mut s.host, host(v)),
    ),
    FieldSpec::new(
        "port",
        "port",
        "TTS_PORT",
        "PORT",
        "Port to listen on (0: any free port)",
        |s, v| set(&mut s.port, v.number("a port number (0-65535)")),
    ),
    FieldSpec::new(
        "diffusion_steps",
        "diffusion-steps",
        "TTS_DIFFUSION_STEPS",
        "N",
        "Diffusion steps per speech frame (1-100)",
        |s, v| {
            set(
                &mut s.diffusion_steps,
                v.integer_in(1..=100, "between 1 and 100"),
            )
        },
    )
    .aliases(&["steps"]),
    FieldSpec::new(
        "cfg_scale",
        "cfg-scale",
        "TTS_CFG_SCALE",
        "SCALE",
        "Classifier-free guidance scale (> 0, <= 10)",
        |s, v| set(&mut s.cfg_scale, cfg_scale(v)),
    )
    .aliases(&["cfg"]),
    FieldSpec::new(
        "solver",
        "solver",
        "TTS_SOLVER",
        "SOLVER",
        "Diffusion solver: ode or sde",
        |s, v| set(&mut s.solver, v.choice()),
    ),
    FieldSpec::new(
        "seed",
        "seed",
        "TTS_SEED",
        "SEED",
        "Fixed sampler seed (default: random per utterance)",
        |s, v| set(&mut s.seed, v.optional_number("an unsigned 64-bit integer")),
    ),
    FieldSpec::new(
        "warmup",
        "warmup",
        "TTS_WARMUP",
        "BOOL",
        "Run a warm-up utterance before reporting ready",
        |s, v| set(&mut s.warmup, v.boolean()),
    )
    .switch(),
    FieldSpec::new(
        "cuda_graphs",
        "cuda-graphs",
        "TTS_CUDA_GRAPHS",
        "BOOL",
        "Replay text windows and each frame's sampling, decoder and feedback as CUDA graphs (CUDA only)",
        |s, v| set(&mut s.cuda_graphs, v.boolean()),
    )
    .switch(),
    FieldSpec::new(
        "cuda_graph_warmup",
        "cuda-graph-warmup",
        "TTS_CUDA_GRAPH_WARMUP",
        "BOOL",
        "Capture the CUDA graphs of every batch-size bucket (up to the slot limit) during warm-up; false captures each at first use",
        |s, v| set(&mut s.cuda_graph_warmup, v.boolean()),
    )
    .switch(),
    FieldSpec::new(
        "capacity_headroom",
        "capacity-headroom",
        "TTS_CAPACITY_HEADROOM",
        "FRACTION",
        "With max_slots = auto: admit a new utterance only while the projected round time stays within this fraction of the real-time budget (0-1]",
        |s, v| set(&mut s.capacity_headroom, headroom(v)),
    ),
    FieldSpec::new(
        "random_weights",
        "random-weights",
        "TTS_RANDOM_WEIGHTS",
        "BOOL",
        "Serve the real 0.5B architecture with random weights instead of loading the model (capacity measurements; the audio is noise; the weights are seeded, the same on every run and device)",
        |s, v| set(&mut s.random_weights, v.boolean()),
    )
    .switch(),
    FieldSpec::new(
        "max_slots",
        "max-slots",
        "TTS_MAX_SLOTS",
        "auto|N",
        "Utterances synthesised concurrently: auto (as many as run in real time, measured) or 1-1024",
        |s, v| set(&mut s.limits.max_slots, max_slots(v)),
    ),
    FieldSpec::new(
        "max_text_chars",
        "max-text-chars",
        "TTS_MAX_TEXT_CHARS",
        "N",
        "Characters of text per utterance (1-1000000)",
        |s, v| {
            let n = v.integer_in(1..=1_000_000, "between 1 and 1000000");
            set(&mut s.limits.max_text_chars, n)
        },
    ),
    FieldSpec::new(
        "max_message_bytes",
        "max-message-bytes",
        "TTS_MAX_MESSAGE_BYTES",
        "BYTES",
        "Bytes per inbound WebSocket message (256-16777216)",
        |s, v| {
            let n = v.integer_in(256..=16_777_216, "between 256 and 16777216");
            set(&mut s.limits.max_message_bytes, n)
        },
    ),
    FieldSpec::new(
        "max_frames_per_token",
        "max-frames-per-token",
        "TTS_MAX_FRAMES_PER_TOKEN",
        "N",
        "Safety cap on speech frames per text token (1-100)",
        |s, v| {
            let n = v.integer_in(1..=100, "between 1 and 100");
            set(&mut s.limits.max_frames_per_token, n)
        },
    ),
    FieldSpec::new(
        "session_idle_timeout_secs",
        "session-idle-timeout-secs",
        "TTS_SESSION_IDLE_TIMEOUT_SECS",
        "SECS",
        "Seconds a silent WebSocket session is kept open (1-86400)",
        |s, v| {
            let n = v.integer_in(1..=86_400, "between 1 and 86400");
            set(&mut s.limits.session_idle_timeout_secs, n)
        },
    ),
    FieldSpec::new(
        "context_idle_timeout_secs",
        "context-idle-timeout-secs",
        "TTS_CONTEXT_IDLE_TIMEOUT_SECS",
        "SECS",
        "Seconds a context waits for text before it is closed (1-86400)",
        |s, v| {
            let n = v.integer_in(1..=86_400, "between 1 and 86400");
            set(&mut s.limits.context_idle_timeout_secs, n)
        },
    ),
    FieldSpec::new(
        "max_contexts_per_session",
        "max-contexts-per-session",
        "TTS_MAX_CONTEXTS_PER_SESSION",
        "N",
        "Contexts one WebSocket session may have open at once (1-1024)",
        |s, v| {
            let n = v.integer_in(1..=1_024, "between 1 and 1024");
            set(&mut s.limits.max_contexts_per_session, n)
        },
    ),
    FieldSpec::new(
        "max_session_slot_percent",
        "max-session-slot-percent",
        "TTS_MAX_SESSION_SLOT_PERCENT",
        "PERCENT",
        "Share of the synthesis slots one WebSocket session may hold, in percent (1-100; at least one slot)",
        |s, v| {
            let n = v.integer_in(1..=100, "between 1 and 100");
            set(&mut s.limits.max_session_slot_percent, n)
        },
    ),
    FieldSpec::new(
        "max_diffusion_steps",
        "max-diffusion-steps",
        "TTS_MAX_DIFFUSION_STEPS",
        "N",
        "Diffusion steps a request may ask for (1-100); more is refused",
        |s, v| {
            let n = v.integer_in(1..=100, "between 1 and 100");
            set(&mut s.limits.max_diffusion_steps, n)
        },
    ),
    FieldSpec::new(
        "max_buffered_frames",
        "max-buffered-frames",
        "TTS_MAX_BUFFERED_FRAMES",
        "N",
        "Outbound frames buffered per context before slow_consumer (1-100000)",
        |s, v| {
            let n = v.integer_in(1..=100_000, "between 1 and 100000");
            set(&mut s.limits.max_buffered_frames, n)
        },
    ),
    FieldSpec::new(
        "shutdown_grace_secs",
        "shutdown-grace-secs",
        "TTS_SHUTDOWN_GRACE_SECS",
        "SECS",
        "Seconds in-flight work may take to finish on shutdown (0-3600)",
        |s, v| {
            let n = v.integer_in(0..=3_600, "between 0 and 3600");
            set(&mut s.limits.shutdown_grace_secs, n)
        },
    ),
    FieldSpec::new(
        "header_read_timeout_secs",
        "header-read-timeout-secs",
        "TTS_HEADER_READ_TIMEOUT_SECS",
        "SECS",
        "Seconds a client may take to send a request head, then its body (1-3600)",
        |s, v| {
            let n = v.integer_in(1..=3_600, "between 1 and 3600");
            set(&mut s.limits.header_read_timeout_secs, n)
        },
    ),
    FieldSpec::new(
        "keepalive_idle_timeout_secs",
        "keepalive-idle-timeout-secs",
        "TTS_KEEPALIVE_IDLE_TIMEOUT_SECS",
        "SECS",
        "Seconds a keep-alive connection may wait for its next request (1-86400)",
        |s, v| {
            let n = v.integer_in(1..=86_400, "between 1 and 86400");
            set(&mut s.limits.keepalive_idle_timeout_secs, n)
        },
    ),
    FieldSpec::new(
        "write_timeout_secs",
        "write-timeout-secs",
        "TTS_WRITE_TIMEOUT_SECS",
        "SECS",
        "Seconds a blocked write to a client may wait before it is disconnected (1-3600)",
        |s, v| {
            let n = v.integer_in(1..=3_600, "between 1 and 3600");
            set(&mut s.limits.write_timeout_secs, n)
        },
    ),
    FieldSpec::new(
        "max_connections",
        "max-connections",
        "TTS_MAX_CONNECTIONS",
        "N",
        "Open client connections in all, WebSockets included (1-1000000)",
        |s, v| {
            let n = v.integer_in(1..=1_000_000, "between 1 and 1000000");
            set(&mut s.limits.max_connections, n)
        },
    ),
    FieldSpec::new(
        "max_connections_per_ip",
        "max-connections-per-ip",
        "TTS_MAX_CONNECTIONS_PER_IP",
        "N",
        "Open client connections per client IP address (1-1000000)",
        |s, v| {
            let n = v.integer_in(1..=1_000_000, "between 1 and 1000000");
            set(&mut s.limits.max_connections_per_ip, n)
        },
    ),
    FieldSpec::new(
        "engine_stall_timeout_secs",
        "engine-stall-timeout-secs",
        "TTS_ENGINE_STALL_TIMEOUT_SECS",
        "SECS",
        "Seconds without a model-thread heartbeat before /ready answers 503 and the process exits (1-3600)",
        |s, v| {
            let n = v.integer_in(1..=3_600, "between 1 and 3600");
            set(&mut s.limits.engine_stall_timeout_secs, n)
        },
    ),
    FieldSpec::new(
        "text_wait_timeout_secs",
        "text-wait-timeout-secs",
        "TTS_TEXT_WAIT_TIMEOUT_SECS",
        "SECS",
        "Seconds an utterance waiting for text keeps its slot before the engine ends it (1-86400)",
        |s, v| {
            let n = v.integer_in(1..=86_400, "between 1 and 86400");
            set(&mut s.limits.text_wait_timeout_secs, n)
        },
    ),
    FieldSpec::new(
        "engine_commands_per_round",
        "engine-commands-per-round",
        "TTS_ENGINE_COMMANDS_PER_ROUND",
        "N",
        "Commands the model thread handles at most between two synthesis rounds (1-65536)",
        |s, v| {
            let n = v.integer_in(1..=65_536, "between 1 and 65536");
            set(&mut s.limits.engine_commands_per_round, n)
        },
    ),
    FieldSpec::new(
        "first_audio_hold_ms",
        "first-audio-hold-ms",
        "TTS_FIRST_AUDIO_HOLD_MS",
        "MS",
        "Milliseconds a WebSocket session may leave client messages unread while a context's first audio is made from text the engine has (auto: 250 on the CPU, 0 on GPUs; or 0-1000)",
        |s, v| set(&mut s.limits.first_audio_hold_ms, first_audio_hold(v)),
    ),
    FieldSpec::new(
        "api_keys",
        "api-keys",
        "TTS_API_KEYS",
        "KEYS",
        "Comma-separated API keys accepted as bearer tokens (none: no authentication)",
        |s, v| set(&mut s.api_keys, v.string_list().map(ApiKeys::new)),
    )
    .secret(),
    FieldSpec::new(
        "metrics_api_keys",
        "metrics-api-keys",
        "TTS_METRICS_API_KEYS",
        "KEYS",
        "Comma-separated keys that open /metrics, as do the API keys (none: /metrics is public)",
        |s, v| set(&mut s.metrics_api_keys, v.string_list().map(ApiKeys::new)),
    )
    .secret(),
    FieldSpec::new(
        "allowed_origins",
        "allowed-origins",
        "TTS_ALLOWED_ORIGINS",
        "ORIGINS",
        "Comma-separated browser origins allowed besides the server's own (WebSocket upgrades, CORS); * allows any",
        |s, v| {
            let list = v.string_list().and_then(AllowedOrigins::parse);
            set(&mut s.allowed_origins, list)
        },
    ),
    FieldSpec::new(
        "log_format",
        "log-format",
        "TTS_LOG_FORMAT",
        "FORMAT",
        "Log format on stderr: text or json",
        |s, v| set(&mut s.log_format, v.choice()),
    ),
    FieldSpec::new(
        "otlp_endpoint",
        "otlp-endpoint",
        "TTS_OTLP_ENDPOINT",
        "URL",
        "OTLP/HTTP collector (http://host:port) the utterance spans are exported to, as JSON to /v1/traces (none: no export)",
        |s, v| set(&mut s.otlp_endpoint, otlp_endpoint(v)),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions_and_cover_every_setting() {
        for f in FIELDS {
            assert_eq!(f.flag, f.name.replace('_', "-"), "{}", f.name);
            assert_eq!(f.env, format!("TTS_{}", f.name.to_ascii_uppercase()));
        }
        let json = serde_json::to_value(Settings::default()).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(names, keys_sorted);
    }

    #[test]
    fn a_failed_conversion_leaves_the_settings_unchanged() {
        let mut s = Settings::default();
        let port = field_spec("port").unwrap();
        assert!(port.apply(&mut s, RawValue::Text("99999")).is_err());
        assert_eq!(s, Settings::default());
        port.apply(&mut s, RawValue::Text("9000")).unwrap();
        assert_eq!(s.port, 9000);
    }

    #[test]
    fn secrets_are_not_shown() {
        let keys = field_spec("api_keys").unwrap();
        assert_eq!(
            keys.shown(RawValue::Text("k1,k2")),
            super::super::api_keys::REDACTED
        );
    }
}
