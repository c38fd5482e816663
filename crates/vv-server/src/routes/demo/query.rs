//! The demo's query parameters, interpreted as the demo does: `cfg` <= 0 or invalid -> 1.5,
//! `steps` <= 0 or invalid -> the service default, unknown `voice` -> the default voice,
//! `’` -> `'` in the text. Deviations (documented): values above the engine's limits are
//! clamped to them, a `steps` above the server's `max_diffusion_steps` (after that clamp) is
//! refused with 400 before the upgrade, and an explicit `steps` does not become the new
//! service default.

use std::collections::HashMap;

use vv_engine::params::{CFG_RANGE, STEPS_RANGE};
use vv_engine::{EngineInfo, SynthesisParams};

use crate::config::Settings;
use crate::engine_options::solver_kind;
use crate::error::ApiError;
use crate::routes::speech::request::check_diffusion_steps;
use crate::voice_alias::resolve_voice_name;

/// The demo's guidance scale when none (or a bad one) is given.
pub const DEMO_CFG: f64 = 1.5;

/// One `/stream` request.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    /// Text to speak (may be empty: then no audio).
    pub text: String,
    /// The `voice` parameter as given (the demo logs it).
    pub voice_param: Option<String>,
    /// The `steps` parameter when valid (the demo logs it, `null` otherwise).
    pub steps_param: Option<usize>,
    /// Engine parameters.
    pub params: SynthesisParams,
}

impl DemoRequest {
    /// Interprets the query parameters; fails only for `steps` above `max_diffusion_steps`.
    pub fn from_query(
        query: &HashMap<String, String>,
        settings: &Settings,
        info: &EngineInfo,
    ) -> Result<Self, ApiError> {
        let text = query
            .get("text")
            .map_or_else(String::new, |t| t.replace('\u{2019}', "'"));
        let cfg_scale = query
            .get("cfg")
            .and_then(|c| c.trim().parse::<f64>().ok())
            .filter(|c| c.is_finite() && *c > 0.0)
            .map_or(DEMO_CFG, |c| c.min(CFG_RANGE.1));
        let steps_param = query
            .get("steps")
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|s| *s > 0)
            .map(|s| {
                usize::try_from(s)
                    .unwrap_or(STEPS_RANGE.1)
                    .min(STEPS_RANGE.1)
            });
        if let Some(steps) = steps_param {
            check_diffusion_steps(steps, settings, "steps")?;
        }
        let voice_param = query.get("voice").cloned();
        let voice = voice_param
            .as_deref()
            .and_then(|v| resolve_voice_name(&info.voices, v))
            .unwrap_or_else(|| info.default_voice.clone());
        Ok(Self {
            text,
            voice_param,
            steps_param,
            params: SynthesisParams {
                voice: Some(voice),
                cfg_scale,
                diffusion_steps: steps_param.unwrap_or(settings.diffusion_steps),
                solver: solver_kind(settings.solver),
                seed: settings.seed,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::test_support::engine_info;

    fn req(pairs: &[(&str, &str)]) -> DemoRequest {
        let q = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DemoRequest::from_query(&q, &Settings::default(), &engine_info(&["a", "b"])).unwrap()
    }

    #[test]
    fn demo_defaults_and_fallbacks() {
        let r = req(&[]);
        assert_eq!(r.text, "");
        assert_eq!(r.params.cfg_scale, DEMO_CFG);
        assert_eq!(r.params.diffusion_steps, 5);
        assert_eq!(r.params.voice.as_deref(), Some("a"));
        for bad in ["0", "-2", "abc", "NaN", "inf"] {
            assert_eq!(req(&[("cfg", bad)]).params.cfg_scale, DEMO_CFG, "{bad}");
        }
        assert_eq!(req(&[("cfg", "2.5")]).params.cfg_scale, 2.5);
        assert_eq!(req(&[("cfg", "99")]).params.cfg_scale, CFG_RANGE.1);
        for bad in ["0", "-1", "x", "1.5"] {
            let r = req(&[("steps", bad)]);
            assert_eq!(
                (r.steps_param, r.params.diffusion_steps),
                (None, 5),
                "{bad}"
            );
        }
        assert_eq!(req(&[("steps", "12")]).params.diffusion_steps, 12);
        assert_eq!(
            req(&[("steps", "100000")]).params.diffusion_steps,
            STEPS_RANGE.1
        );
        assert_eq!(req(&[("voice", "b")]).params.voice.as_deref(), Some("b"));
        assert_eq!(req(&[("voice", "zzz")]).params.voice.as_deref(), Some("a"));
        assert_eq!(req(&[("voice", "../b")]).params.voice.as_deref(), Some("a"));
        assert_eq!(req(&[("text", "it\u{2019}s")]).text, "it's");
        assert!(req(&[("cfg", "3"), ("steps", "7")])
            .params
            .validate()
            .is_ok());
    }

    #[test]
    fn steps_above_the_server_limit_are_refused() {
        let mut settings = Settings::default();
        settings.limits.max_diffusion_steps = 8;
        let info = engine_info(&["a"]);
        let ask = |steps: &str| {
            let q = HashMap::from([("steps".to_string(), steps.to_string())]);
            DemoRequest::from_query(&q, &settings, &info)
        };
        assert_eq!(ask("8").unwrap().params.diffusion_steps, 8);
        for over in ["9", "100000"] {
            let e = ask(over).unwrap_err();
            assert_eq!((e.code(), e.param()), ("invalid_request", Some("steps")));
            assert!(e.to_string().contains("max_diffusion_steps"), "{e}");
        }
    }
}
