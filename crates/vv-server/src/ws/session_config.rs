//! The session's synthesis and output settings: defaults from the service settings and the
//! upgrade's query (`voice`, `encoding`, `sample_rate`, `bit_rate`), changed by
//! `session.configure`.
//!
//! Out-of-range numbers are clamped when a nearest valid value exists (`cfg_scale` above 10,
//! `diffusion_steps` outside 1..=100), each clamp reported as a `value_clamped` warning;
//! values with no sensible nearest value (`cfg_scale` <= 0 or not finite) are rejected with
//! `invalid_value`, as is a `diffusion_steps` above the server's `max_diffusion_steps` or a
//! `speed` outside 0.25-4.0. A rejected `session.configure` changes nothing.

use std::collections::HashMap;

use serde::{Serialize, Serializer};
use vv_audio::{Encoding, OutputFormat, Speed, NATIVE_SAMPLE_RATE};
use vv_engine::params::{CFG_RANGE, STEPS_RANGE};
use vv_engine::{EngineInfo, SynthesisParams};
use vv_model::scheduler::SolverKind;

use super::error::{supported_rate, WsError};
use super::messages::Configure;
use crate::config::Settings;
use crate::voice_alias::{resolve_voice, valid_voice_names};

/// Code of the warning sent for a clamped value.
pub const CLAMPED: &str = "value_clamped";

/// What new contexts of a session are synthesised and encoded with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionConfig {
    /// Installed voice name.
    pub voice: String,
    /// Encoding of audio frames: a raw sample encoding or MP3 (see [`wire_encoding`]).
    #[serde(serialize_with = "encoding_name")]
    pub encoding: OutputFormat,
    /// Output sample rate in Hz.
    pub sample_rate: u32,
    /// Classifier-free guidance scale.
    pub cfg_scale: f64,
    /// Diffusion steps per frame.
    pub diffusion_steps: usize,
    /// Noise seed (`null`: random per segment).
    pub seed: Option<u64>,
    /// Whether contexts send estimated word timestamps (`timestamps` events).
    pub timestamps: bool,
    /// Playback speed of the audio (time-stretched, pitch kept; 1.0: untouched).
    #[serde(serialize_with = "speed_value")]
    pub speed: Speed,
    /// Diffusion solver (a service setting, not configurable per session).
    #[serde(skip)]
    pub solver: SolverKind,
    /// Largest `diffusion_steps` a `session.configure` may ask for (`max_diffusion_steps`).
    #[serde(skip)]
    pub max_diffusion_steps: usize,
}

fn encoding_name<S: Serializer>(encoding: &OutputFormat, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(encoding.frame_stream_name().unwrap_or_default())
}

/// The frame encoding named `name` (`pcm_s16le`, `pcm_f32le`, `mulaw`, `alaw` or `mp3`), at
/// `bit_rate` bits per second for `mp3` (absent: the rate's default). A `bit_rate` given with
/// a raw encoding is ignored, as it has no meaning there.
pub fn wire_encoding(name: &str, bit_rate: Option<i64>) -> Result<OutputFormat, WsError> {
    if name != "mp3" {
        return Ok(OutputFormat::Raw(name.parse::<Encoding>()?));
    }
    let kbps = match bit_rate {
        None => None,
        Some(bps) => Some(vv_audio::mp3::kbps_of(bps).ok_or_else(|| {
            WsError::InvalidValue(format!(
                "`bit_rate` {bps} is outside 8000 to 320000 bits per second"
            ))
        })?),
    };
    Ok(OutputFormat::Mp3 { kbps })
}

/// The integer query parameter `name`, if given.
fn int_query(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, WsError> {
    query
        .get(name)
        .map(|text| {
            text.trim()
                .parse::<i64>()
                .map_err(|_| WsError::InvalidValue(format!("`{name}` {text:?} is not an integer")))
        })
        .transpose()
}

fn speed_value<S: Serializer>(speed: &Speed, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(speed.get())
}

/// A value that was changed to fit its range.
#[derive(Debug, Clone, PartialEq)]
pub struct Clamped {
    /// What was changed, for the warning's message.
    pub message: String,
}

impl SessionConfig {
    /// The service defaults: default voice, `pcm_s16le` at 24 kHz, configured steps, guidance
    /// and seed.
    pub fn defaults(settings: &Settings, info: &EngineInfo) -> Self {
        Self {
            voice: info.default_voice.clone(),
            encoding: Encoding::PcmS16le.into(),
            sample_rate: NATIVE_SAMPLE_RATE,
            cfg_scale: f64::from(settings.cfg_scale),
            diffusion_steps: settings.diffusion_steps,
            seed: settings.seed,
            timestamps: false,
            speed: Speed::NORMAL,
            solver: crate::engine_options::solver_kind(settings.solver),
            max_diffusion_steps: settings.limits.max_diffusion_steps,
        }
    }

    /// Applies the upgrade's query parameters `voice`, `encoding`, `sample_rate` and
    /// `bit_rate`.
    pub fn with_query(
        self,
        query: &HashMap<String, String>,
        info: &EngineInfo,
    ) -> Result<Self, WsError> {
        let request = Configure {
            voice: query.get("voice").cloned(),
            encoding: query.get("encoding").cloned(),
            sample_rate: int_query(query, "sample_rate")?,
            bit_rate: int_query(query, "bit_rate")?,
            ..Configure::default()
        };
        let (config, _) = self.configure(&request, info)?;
        Ok(config)
    }

    /// The settings after `request`, and the clamps it needed; an error changes nothing.
    pub fn configure(
        &self,
        request: &Configure,
        info: &EngineInfo,
    ) -> Result<(Self, Vec<Clamped>), WsError> {
        let mut next = self.clone();
        let mut clamped = Vec::new();
        if let Some(voice) = &request.voice {
            next.voice = resolve_voice(info, Some(voice)).map_err(|_| {
                WsError::UnknownVoice(voice.clone(), valid_voice_names(&info.voices))
            })?;
        }
        match (&request.encoding, request.bit_rate) {
            (Some(name), bit_rate) => next.encoding = wire_encoding(name, bit_rate)?,
            (None, Some(bit_rate)) => {
                if let OutputFormat::Mp3 { .. } = next.encoding {
                    next.encoding = wire_encoding("mp3", Some(bit_rate))?;
                }
            }
            (None, None) => {}
        }
        if let Some(rate) = request.sample_rate {
            next.sample_rate = supported_rate(rate)?;
        }
        if let Some(cfg) = request.cfg_scale {
            next.cfg_scale = clamp_cfg(cfg, &mut clamped)?;
        }
        if let Some(steps) = request.diffusion_steps {
            next.diffusion_steps = clamp_steps(steps, &mut clamped);
            if next.diffusion_steps > self.max_diffusion_steps {
                return Err(WsError::InvalidValue(format!(
                    "`diffusion_steps` {steps} is above this server's limit of {} \
                     (max_diffusion_steps)",
                    self.max_diffusion_steps
                )));
            }
        }
        if let Some(seed) = request.seed {
            next.seed = seed;
        }
        if let Some(timestamps) = request.timestamps {
            next.timestamps = timestamps;
        }
        if let Some(speed) = request.speed {
            next.speed = Speed::new(speed).map_err(|_| {
                WsError::InvalidValue(format!("`speed` {speed} is outside the range 0.25 to 4.0"))
            })?;
        }
        Ok((next, clamped))
    }

    /// Engine parameters for a segment.
    pub fn synthesis_params(&self) -> SynthesisParams {
        SynthesisParams {
            voice: Some(self.voice.clone()),
            cfg_scale: self.cfg_scale,
            diffusion_steps: self.diffusion_steps,
            solver: self.solver,
            seed: self.seed,
        }
    }
}

fn clamp_cfg(cfg: f64, clamped: &mut Vec<Clamped>) -> Result<f64, WsError> {
    if !cfg.is_finite() || cfg <= CFG_RANGE.0 {
        return Err(WsError::InvalidValue(format!(
            "`cfg_scale` must be a number > {} and <= {}, got {cfg}",
            CFG_RANGE.0, CFG_RANGE.1
        )));
    }
    if cfg > CFG_RANGE.1 {
        clamped.push(Clamped {
            message: format!(
                "`cfg_scale` {cfg} is above {}; using {}",
                CFG_RANGE.1, CFG_RANGE.1
            ),
        });
        return Ok(CFG_RANGE.1);
    }
    Ok(cfg)
}

fn clamp_steps(steps: i64, clamped: &mut Vec<Clamped>) -> usize {
    let (lo, hi) = STEPS_RANGE;
    let fitted = usize::try_from(steps.max(0)).unwrap_or(hi).clamp(lo, hi);
    if i64::try_from(fitted).ok() != Some(steps) {
        clamped.push(Clamped {
            message: format!("`diffusion_steps` {steps} is outside {lo}..={hi}; using {fitted}"),
        });
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::test_support::engine_info;

    fn base() -> (SessionConfig, EngineInfo) {
        let info = engine_info(&["a", "b"]);
        (SessionConfig::defaults(&Settings::default(), &info), info)
    }

    #[test]
    fn diffusion_steps_above_the_server_limit_are_refused() {
        let info = engine_info(&["a"]);
        let mut settings = Settings::default();
        settings.limits.max_diffusion_steps = 20;
        let cfg = SessionConfig::defaults(&settings, &info);
        let ask = |steps| Configure {
            diffusion_steps: Some(steps),
            ..Configure::default()
        };
        let (ok, _) = cfg.configure(&ask(20), &info).unwrap();
        assert_eq!(ok.diffusion_steps, 20);
        for over in [21, 100, 5000] {
            let e = cfg.configure(&ask(over), &info).unwrap_err();
            assert_eq!(e.code(), "invalid_value");
            assert!(e.to_string().contains("max_diffusion_steps"), "{e}");
            assert!(!e.is_fatal());
        }
    }

    #[test]
    fn defaults_and_query() {
        let (cfg, info) = base();
        assert_eq!(cfg.voice, "a");
        assert_eq!(cfg.encoding, Encoding::PcmS16le.into());
        assert_eq!(cfg.sample_rate, 24_000);
        let q: HashMap<String, String> = [
            ("voice", "b"),
            ("encoding", "mulaw"),
            ("sample_rate", "8000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let got = cfg.clone().with_query(&q, &info).unwrap();
        assert_eq!(
            (got.voice.as_str(), got.encoding, got.sample_rate),
            ("b", Encoding::Mulaw.into(), 8000)
        );
        let bad = |k: &str, v: &str| {
            let q = HashMap::from([(k.to_string(), v.to_string())]);
            cfg.clone().with_query(&q, &info).unwrap_err().code()
        };
        assert_eq!(bad("voice", "../a"), "unknown_voice");
        assert_eq!(bad("encoding", "aac"), "unsupported_encoding");
        assert_eq!(bad("bit_rate", "fast"), "invalid_value");
        let q = HashMap::from([
            ("encoding".to_string(), "mp3".to_string()),
            ("bit_rate".to_string(), "48000".to_string()),
        ]);
        let got = cfg.clone().with_query(&q, &info).unwrap();
        assert_eq!(got.encoding, OutputFormat::Mp3 { kbps: Some(48) });
        let json = serde_json::to_value(&got).unwrap();
        assert_eq!(json["encoding"], "mp3");
        assert_eq!(bad("sample_rate", "11025"), "unsupported_sample_rate");
        assert_eq!(bad("sample_rate", "fast"), "invalid_value");
    }

    #[test]
    fn configure_clamps_rejects_and_is_atomic() {
        let (cfg, info) = base();
        let req = Configure {
            cfg_scale: Some(25.0),
            diffusion_steps: Some(0),
            seed: Some(Some(7)),
            voice: Some("alloy".into()),
            ..Configure::default()
        };
        let (next, clamped) = cfg.configure(&req, &info).unwrap();
        assert_eq!(next.cfg_scale, CFG_RANGE.1);
        assert_eq!(next.diffusion_steps, STEPS_RANGE.0);
        assert_eq!(next.seed, Some(7));
        assert_eq!(next.voice, "a");
        assert_eq!(clamped.len(), 2);
        let (again, none) = next
            .configure(
                &Configure {
                    diffusion_steps: Some(1000),
                    seed: Some(None),
                    ..Configure::default()
                },
                &info,
            )
            .unwrap();
        assert_eq!(
            (again.diffusion_steps, again.seed, none.len()),
            (STEPS_RANGE.1, None, 1)
        );
        for cfg_scale in [0.0, -1.0, f64::NAN] {
            let req = Configure {
                cfg_scale: Some(cfg_scale),
                encoding: Some("alaw".into()),
                ..Configure::default()
            };
            assert_eq!(
                next.configure(&req, &info).unwrap_err().code(),
                "invalid_value"
            );
        }
        let req = Configure {
            voice: Some("nobody".into()),
            ..Configure::default()
        };
        let unknown = next.configure(&req, &info).unwrap_err();
        assert_eq!(unknown.code(), "unknown_voice");
        // The message lists the valid names, as the HTTP error does.
        let message = unknown.to_string();
        assert!(
            message.contains("valid voices: a, b, alloy, ash"),
            "{message}"
        );
        assert!(message.ends_with("marin, cedar"), "{message}");
        assert!(next.synthesis_params().validate().is_ok());
    }
}
