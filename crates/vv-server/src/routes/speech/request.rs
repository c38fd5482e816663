//! The body of `POST /v1/audio/speech`: OpenAI's fields plus the extensions `cfg_scale`,
//! `diffusion_steps`, `seed` and `sample_rate`, each type-checked on its own so that an error
//! names the offending field.
//!
//! `response_format` takes OpenAI's `wav`, `mp3`, `pcm` (16-bit, 24 kHz unless `sample_rate`
//! says otherwise), `flac`, `opus`, and the raw encodings `pcm_s16le`, `pcm_f32le`, `mulaw`,
//! `alaw`; the extension `bit_rate` (bits per second, as Cartesia names it) sets an `mp3`
//! stream's bitrate. Defaults that differ from OpenAI: `response_format` defaults to `wav`
//! (OpenAI's default is `mp3`); `model` and `voice` may be left out (native model, default
//! voice).
//! `speed` (0.25-4.0, OpenAI's range) time-stretches the audio with its pitch kept; outside
//! that range it is refused with 400 `unsupported_speed`.
//! A `diffusion_steps` above the server's `max_diffusion_steps` is refused (400).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tracing::debug;
use vv_audio::{OutputFormat, Speed, NATIVE_SAMPLE_RATE};
use vv_engine::{EngineInfo, SynthesisParams};

use crate::config::Settings;
use crate::engine_options::solver_kind;
use crate::error::ApiError;
use crate::routes::models::is_known_model;
use crate::voice_alias::resolve_voice;

/// How the audio is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// The audio bytes as a chunked body.
    Audio,
    /// Server-sent events with base64 audio deltas.
    Sse,
}

/// A validated request, not yet bound to the installed voices.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechRequest {
    /// Text to speak (non-empty, within `max_text_chars`).
    pub input: String,
    /// Requested voice (installed name or OpenAI alias), if any.
    pub voice: Option<String>,
    /// Output container or encoding.
    pub format: OutputFormat,
    /// Output sample rate.
    pub sample_rate: u32,
    /// Playback speed (pitch kept).
    pub speed: Speed,
    /// Delivery.
    pub stream_format: StreamFormat,
    /// Guidance scale.
    pub cfg_scale: f64,
    /// Diffusion steps per frame.
    pub diffusion_steps: usize,
    /// Noise seed.
    pub seed: Option<u64>,
}

/// A request bound to an installed voice: what the engine and the encoder are given.
#[derive(Debug, Clone)]
pub struct SpeechPlan {
    /// Text to speak.
    pub input: String,
    /// Engine parameters (voice resolved).
    pub params: SynthesisParams,
    /// Output container or encoding.
    pub format: OutputFormat,
    /// Output sample rate.
    pub sample_rate: u32,
    /// Playback speed (pitch kept).
    pub speed: Speed,
    /// Delivery.
    pub stream_format: StreamFormat,
}

/// One optional field, type-checked; `null` counts as absent.
fn field<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<T>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| ApiError::invalid(name, format!("`{name}`: {e}"))),
    }
}

impl SpeechRequest {
    /// Parses and validates a JSON body against the service settings.
    pub fn parse(body: &[u8], settings: &Settings) -> Result<Self, ApiError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        let Value::Object(obj) = value else {
            return Err(ApiError::InvalidRequest {
                message: "the request body must be a JSON object".to_string(),
                param: None,
            });
        };

        if let Some(model) = field::<String>(&obj, "model")? {
            if !is_known_model(&model) {
                return Err(ApiError::UnknownModel(model));
            }
        }
        let input: String = field(&obj, "input")?
            .ok_or_else(|| ApiError::invalid("input", "`input` is required"))?;
        if input.trim().is_empty() {
            return Err(ApiError::EmptyInput);
        }
        let chars = input.chars().count();
        let max = settings.limits.max_text_chars;
        if chars > max {
            return Err(ApiError::InputTooLong { chars, max });
        }
        let voice: Option<String> = field(&obj, "voice")?;
        let speed = match field::<f64>(&obj, "speed")? {
            None => Speed::NORMAL,
            Some(speed) => Speed::new(speed).map_err(|_| ApiError::UnsupportedSpeed(speed))?,
        };
        if field::<String>(&obj, "instructions")?.is_some() {
            debug!("`instructions` is accepted and ignored");
        }
        let format = match field::<String>(&obj, "response_format")? {
            None => OutputFormat::Wav,
            Some(name) => name.parse()?,
        };
        let kbps = field::<i64>(&obj, "bit_rate")?.map(vv_audio::mp3::kbps_of);
        let format = match (format, kbps) {
            (format, None) => format,
            (OutputFormat::Mp3 { .. }, Some(Some(kbps))) => OutputFormat::Mp3 { kbps: Some(kbps) },
            (_, Some(_)) => return Err(ApiError::invalid(
                "bit_rate",
                "`bit_rate` (8000 to 320000 bits per second) applies to response_format mp3 only",
            )),
        };
        let stream_format = match field::<String>(&obj, "stream_format")?.as_deref() {
            None | Some("audio") => StreamFormat::Audio,
            Some("sse") => StreamFormat::Sse,
            Some(other) => {
                return Err(ApiError::invalid(
                    "stream_format",
                    format!("unsupported stream_format {other:?}; use \"audio\" or \"sse\""),
                ))
            }
        };
        let diffusion_steps = match field::<usize>(&obj, "diffusion_steps")? {
            Some(steps) => {
                check_diffusion_steps(steps, settings, "diffusion_steps")?;
                steps
            }
            None => settings.diffusion_steps,
        };
        Ok(Self {
            input,
            voice,
            format,
            sample_rate: field(&obj, "sample_rate")?.unwrap_or(NATIVE_SAMPLE_RATE),
            speed,
            stream_format,
            cfg_scale: field(&obj, "cfg_scale")?.unwrap_or(f64::from(settings.cfg_scale)),
            diffusion_steps,
            seed: field(&obj, "seed")?.or(settings.seed),
        })
    }

    /// Binds the request to the installed voices of a running engine and checks the engine's
    /// parameter ranges.
    pub fn plan(self, settings: &Settings, info: &EngineInfo) -> Result<SpeechPlan, ApiError> {
        let voice = resolve_voice(info, self.voice.as_deref())?;
        let params = SynthesisParams {
            voice: Some(voice),
            cfg_scale: self.cfg_scale,
            diffusion_steps: self.diffusion_steps,
            solver: solver_kind(settings.solver),
            seed: self.seed,
        };
        params.validate()?;
        Ok(SpeechPlan {
            input: self.input,
            params,
            format: self.format,
            sample_rate: self.sample_rate,
            speed: self.speed,
            stream_format: self.stream_format,
        })
    }
}

/// Refuses `steps` requested in field `param` when above the server's `max_diffusion_steps`.
pub fn check_diffusion_steps(
    steps: usize,
    settings: &Settings,
    param: &'static str,
) -> Result<(), ApiError> {
    let max = settings.limits.max_diffusion_steps;
    if steps > max {
        return Err(ApiError::invalid(
            param,
            format!(
                "`{param}` {steps} is above this server's limit of {max} (max_diffusion_steps)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz_strategies::{object_with, FUZZ_CASES};
    use crate::routes::test_support::engine_info;
    use proptest::prelude::*;

    fn parse(json: &str) -> Result<SpeechRequest, ApiError> {
        SpeechRequest::parse(json.as_bytes(), &Settings::default())
    }

    fn code(json: &str) -> (&'static str, Option<&'static str>) {
        let e = parse(json).unwrap_err();
        (e.code(), e.param())
    }

    #[test]
    fn defaults_and_extensions() {
        let r = parse(r#"{"model":"tts-1","input":"Hello there","voice":"alloy"}"#).unwrap();
        assert_eq!(r.format, OutputFormat::Wav);
        assert_eq!(r.sample_rate, 24_000);
        assert_eq!(r.stream_format, StreamFormat::Audio);
        assert_eq!(r.diffusion_steps, 5);
        assert!((r.cfg_scale - 1.5).abs() < 1e-9);
        let r = parse(
            r#"{"input":"x y z w","response_format":"flac","stream_format":"sse","speed":1.0,
               "cfg_scale":2.0,"diffusion_steps":7,"seed":9,"sample_rate":16000,"instructions":"calm"}"#,
        )
        .unwrap();
        assert_eq!(r.format, OutputFormat::Flac);
        assert_eq!(r.stream_format, StreamFormat::Sse);
        let mp3 = |json: &str| parse(json).unwrap().format;
        assert_eq!(
            mp3(r#"{"input":"x","response_format":"mp3"}"#),
            OutputFormat::Mp3 { kbps: None }
        );
        assert_eq!(
            mp3(r#"{"input":"x","response_format":"mp3","bit_rate":96000}"#),
            OutputFormat::Mp3 { kbps: Some(96) }
        );
        assert_eq!(
            (r.diffusion_steps, r.seed, r.sample_rate),
            (7, Some(9), 16_000)
        );
    }

    #[test]
    fn every_bad_input_has_its_code() {
        assert_eq!(code("{"), ("invalid_json", None));
        assert_eq!(code("[1]"), ("invalid_request", None));
        assert_eq!(
            code(r#"{"voice":"alloy"}"#),
            ("invalid_request", Some("input"))
        );
        assert_eq!(code(r#"{"input":5}"#), ("invalid_request", Some("input")));
        assert_eq!(code(r#"{"input":"  \n"}"#), ("empty_input", Some("input")));
        for speed in ["0.2", "4.5", "0", "-1", "1e300"] {
            let json = format!(r#"{{"input":"hi","speed":{speed}}}"#);
            assert_eq!(code(&json), ("unsupported_speed", Some("speed")), "{json}");
            let message = parse(&json).unwrap_err().to_string();
            assert!(
                message.contains("0.25") && message.contains("4.0"),
                "{message}"
            );
        }
        for (speed, want) in [("0.25", 0.25), ("1.5", 1.5), ("4", 4.0), ("null", 1.0)] {
            let json = format!(r#"{{"input":"hi","speed":{speed}}}"#);
            assert_eq!(parse(&json).unwrap().speed.get(), want, "{json}");
        }
        assert_eq!(
            code(r#"{"input":"hi","speed":"fast"}"#),
            ("invalid_request", Some("speed"))
        );
        assert_eq!(
            code(r#"{"input":"hi","response_format":"aac"}"#),
            ("unsupported_format", Some("response_format"))
        );
        for bad in [
            r#"{"input":"hi","response_format":"wav","bit_rate":128000}"#,
            r#"{"input":"hi","bit_rate":128000}"#,
            r#"{"input":"hi","response_format":"mp3","bit_rate":500000}"#,
            r#"{"input":"hi","response_format":"mp3","bit_rate":7999}"#,
            r#"{"input":"hi","response_format":"mp3","bit_rate":"high"}"#,
        ] {
            assert_eq!(code(bad), ("invalid_request", Some("bit_rate")), "{bad}");
        }
        assert_eq!(
            code(r#"{"input":"hi","response_format":"WAV"}"#),
            ("unsupported_format", Some("response_format"))
        );
        assert_eq!(
            code(r#"{"input":"hi","stream_format":"ws"}"#),
            ("invalid_request", Some("stream_format"))
        );
        assert_eq!(
            code(r#"{"input":"hi","model":"gpt-4"}"#),
            ("model_not_found", Some("model"))
        );
        assert_eq!(
            code(r#"{"input":"hi","diffusion_steps":-1}"#),
            ("invalid_request", Some("diffusion_steps"))
        );
        let mut capped = Settings::default();
        capped.limits.max_diffusion_steps = 20;
        let over = SpeechRequest::parse(br#"{"input":"hi","diffusion_steps":21}"#, &capped);
        let e = over.unwrap_err();
        assert_eq!(
            (e.code(), e.param()),
            ("invalid_request", Some("diffusion_steps"))
        );
        assert!(e.to_string().contains("limit of 20"), "{e}");
        let at = SpeechRequest::parse(br#"{"input":"hi","diffusion_steps":20}"#, &capped);
        assert_eq!(at.unwrap().diffusion_steps, 20);
        assert_eq!(
            code(r#"{"input":"hi","voice":7}"#),
            ("invalid_request", Some("voice"))
        );
        let long = format!(r#"{{"input":"{}"}}"#, "a".repeat(5001));
        assert_eq!(code(&long), ("input_too_long", Some("input")));
        let max = format!(r#"{{"input":"{}"}}"#, "é".repeat(5000));
        assert!(
            parse(&max).is_ok(),
            "the limit counts characters, not bytes"
        );
    }

    #[test]
    fn plan_resolves_voices_and_ranges() {
        let info = engine_info(&["en-Davis_man", "tiny"]);
        let s = Settings::default();
        let plan = parse(r#"{"input":"hi","voice":"ash"}"#)
            .unwrap()
            .plan(&s, &info)
            .unwrap();
        assert_eq!(plan.params.voice.as_deref(), Some("tiny"));
        let plan = parse(r#"{"input":"hi"}"#).unwrap().plan(&s, &info).unwrap();
        assert_eq!(plan.params.voice.as_deref(), Some("en-Davis_man"));
        for (json, want) in [
            (
                r#"{"input":"hi","voice":"nobody"}"#,
                ("unknown_voice", Some("voice")),
            ),
            (
                r#"{"input":"hi","voice":"../tiny"}"#,
                ("unknown_voice", Some("voice")),
            ),
            (
                r#"{"input":"hi","diffusion_steps":0}"#,
                ("invalid_request", Some("diffusion_steps")),
            ),
            (
                r#"{"input":"hi","cfg_scale":0}"#,
                ("invalid_request", Some("cfg_scale")),
            ),
        ] {
            let e = parse(json).unwrap().plan(&s, &info).unwrap_err();
            assert_eq!((e.code(), e.param()), want, "{json}");
        }
    }

    proptest! {
        // Fuzzing by structured generation (issue 12): 10,000 cases each.
        #![proptest_config(ProptestConfig::with_cases(FUZZ_CASES))]
        /// Arbitrary bytes never panic, any rejection is a 4xx and what is accepted is within
        /// the limits (the fuzz check).
        #[test]
        fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
            crate::fuzz_entry::speech_request(&body);
        }

        /// Objects with the request's keys holding any JSON values never panic; what is
        /// accepted has a speakable input and a plan, what is rejected is a 4xx with a code.
        #[test]
        fn request_shaped_json_never_panics(v in object_with(Just(None), &["model", "input",
            "voice", "response_format", "speed", "stream_format", "sample_rate", "cfg_scale",
            "diffusion_steps", "seed", "instructions", "extra"])) {
            let settings = Settings::default();
            match SpeechRequest::parse(v.to_string().as_bytes(), &settings) {
                Ok(r) => {
                    prop_assert!(!r.input.trim().is_empty());
                    if let Err(e) = r.plan(&settings, &engine_info(&["tiny"])) {
                        prop_assert!(e.status().is_client_error(), "{:?}", e);
                    }
                }
                Err(e) => {
                    prop_assert!(e.status().is_client_error());
                    prop_assert!(!e.code().is_empty());
                }
            }
        }

        /// Arbitrary JSON objects with the known keys never panic; rejections are 4xx.
        #[test]
        fn arbitrary_fields_never_panic(
            input in prop::option::of(".{0,20}"),
            speed in prop::option::of(-5.0f64..5.0),
            steps in prop::option::of(-3i64..200),
            format in prop::option::of("[a-z0-9_]{0,8}"),
        ) {
            let mut obj = serde_json::Map::new();
            if let Some(i) = input { obj.insert("input".into(), i.into()); }
            if let Some(s) = speed { obj.insert("speed".into(), s.into()); }
            if let Some(s) = steps { obj.insert("diffusion_steps".into(), s.into()); }
            if let Some(f) = format { obj.insert("response_format".into(), f.into()); }
            let body = serde_json::to_vec(&Value::Object(obj)).unwrap();
            match SpeechRequest::parse(&body, &Settings::default()) {
                Ok(r) => prop_assert!(!r.input.trim().is_empty()),
                Err(e) => prop_assert!(e.status().is_client_error()),
            }
        }
    }
}
