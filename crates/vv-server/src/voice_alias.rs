//! Voice names as clients send them: installed voice names work directly, and OpenAI's voice
//! names are aliases of installed voices.
//!
//! The mapping is deterministic: the OpenAI names in [`OPENAI_VOICES`] order are assigned
//! round-robin to the installed voices sorted by name (`alloy` -> 1st, `ash` -> 2nd, ...,
//! wrapping around). An installed voice whose name equals an alias wins over the alias.
//! Names with path separators or `..` are never voices.

use vv_engine::EngineInfo;

use crate::error::ApiError;

/// OpenAI's voice names, in the order they are assigned.
pub const OPENAI_VOICES: [&str; 11] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
];

/// The installed voice a requested name denotes, or `None` when it denotes none.
/// `installed` must be sorted (as the engine reports it).
pub fn resolve_voice_name(installed: &[String], requested: &str) -> Option<String> {
    let name = requested.trim();
    if name.is_empty() || name.contains(['/', '\\']) || name.contains("..") {
        return None;
    }
    if let Some(v) = installed.iter().find(|v| v.as_str() == name) {
        return Some(v.clone());
    }
    let lower = name.to_ascii_lowercase();
    let index = OPENAI_VOICES.iter().position(|a| *a == lower)?;
    installed.get(index % installed.len().max(1)).cloned()
}

/// The installed voice for a request: the default voice when none (or a blank name) is given,
/// else the installed voice or alias named, else `UnknownVoice`.
pub fn resolve_voice(info: &EngineInfo, requested: Option<&str>) -> Result<String, ApiError> {
    match requested.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(info.default_voice.clone()),
        Some(name) => resolve_voice_name(&info.voices, name)
            .ok_or_else(|| ApiError::UnknownVoice(name.to_string())),
    }
}

/// The OpenAI aliases that denote `voice` (empty when an installed voice shadows them all).
pub fn aliases_of(installed: &[String], voice: &str) -> Vec<&'static str> {
    OPENAI_VOICES
        .iter()
        .copied()
        .filter(|alias| !installed.iter().any(|v| v == alias))
        .filter(|alias| resolve_voice_name(installed, alias).as_deref() == Some(voice))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn voices(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn installed_names_and_aliases() {
        let v = voices(&["en-Davis_man", "en-Emma_woman"]);
        assert_eq!(
            resolve_voice_name(&v, "en-Emma_woman").as_deref(),
            Some("en-Emma_woman")
        );
        assert_eq!(
            resolve_voice_name(&v, "alloy").as_deref(),
            Some("en-Davis_man")
        );
        assert_eq!(
            resolve_voice_name(&v, "ash").as_deref(),
            Some("en-Emma_woman")
        );
        assert_eq!(
            resolve_voice_name(&v, "Ballad").as_deref(),
            Some("en-Davis_man")
        );
        assert_eq!(resolve_voice_name(&v, "nobody"), None);
        assert_eq!(resolve_voice_name(&v, "../en-Davis_man"), None);
        assert_eq!(resolve_voice_name(&v, "a/b"), None);
        assert_eq!(resolve_voice_name(&v, "a\\b"), None);
        assert_eq!(resolve_voice_name(&[], "alloy"), None);
        assert_eq!(
            aliases_of(&v, "en-Emma_woman"),
            ["ash", "coral", "fable", "onyx", "shimmer"]
        );
    }

    #[test]
    fn installed_voice_shadows_alias() {
        let v = voices(&["alloy", "zed"]);
        assert_eq!(resolve_voice_name(&v, "alloy").as_deref(), Some("alloy"));
        assert!(!aliases_of(&v, "alloy").contains(&"alloy"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Every alias resolves to an installed voice, deterministically; arbitrary names
        /// resolve to an installed voice or to nothing.
        #[test]
        fn aliases_always_land_on_installed_voices(
            mut names in prop::collection::vec("[a-z]{1,8}", 1..6),
            probe in ".{0,12}",
        ) {
            names.sort();
            names.dedup();
            for alias in OPENAI_VOICES {
                let a = resolve_voice_name(&names, alias);
                prop_assert!(a.as_ref().is_some_and(|v| names.contains(v)));
                prop_assert_eq!(a, resolve_voice_name(&names, alias));
            }
            if let Some(v) = resolve_voice_name(&names, &probe) {
                prop_assert!(names.contains(&v));
                prop_assert!(!probe.contains('/'));
            }
        }
    }
}
