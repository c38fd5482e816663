//! Voice names as clients send them: installed voice names work directly, and OpenAI's voice
//! names are aliases of installed voices.
//!
//! The mapping is deterministic: the OpenAI names in [`OPENAI_VOICES`] order are assigned
//! round-robin to the installed voices sorted by name (`alloy` -> 1st, `ash` -> 2nd, ...,
//! wrapping around; `marin` and `cedar`, added to OpenAI's list later, come last so that the
//! earlier assignments never change). An installed voice whose name equals an alias wins over
//! the alias. Names with path separators or `..` are never voices. An unknown name's error
//! lists the valid names.

use vv_engine::EngineInfo;

use crate::error::ApiError;

/// OpenAI's voice names, in the order they are assigned (append only: the order is the
/// mapping).
pub const OPENAI_VOICES: [&str; 13] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
    "marin", "cedar",
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
/// else the installed voice or alias named, else `UnknownVoice` with the valid names.
pub fn resolve_voice(info: &EngineInfo, requested: Option<&str>) -> Result<String, ApiError> {
    match requested.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(info.default_voice.clone()),
        Some(name) => resolve_voice_name(&info.voices, name).ok_or_else(|| {
            ApiError::UnknownVoice(name.to_string(), valid_voice_names(&info.voices))
        }),
    }
}

/// Every name a request may use: the installed voices, then the aliases they do not shadow
/// (none when no voice is installed).
pub fn valid_voice_names(installed: &[String]) -> Vec<String> {
    let aliases = OPENAI_VOICES
        .iter()
        .filter(|alias| !installed.is_empty() && !installed.iter().any(|v| v == *alias))
        .map(|alias| alias.to_string());
    installed.iter().cloned().chain(aliases).collect()
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
            ["ash", "coral", "fable", "onyx", "shimmer", "marin"]
        );
    }

    /// The first eleven aliases keep their places; `marin` and `cedar` follow `verse`.
    #[test]
    fn newer_openai_voices_are_appended() {
        let v = voices(&["v0", "v1", "v2", "v3", "v4", "v5", "v6"]);
        let got: Vec<String> = OPENAI_VOICES
            .iter()
            .map(|a| resolve_voice_name(&v, a).unwrap())
            .collect();
        let want = [
            "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v0", "v1", "v2", "v3", "v4", "v5",
        ];
        assert_eq!(got, want);
        assert_eq!(resolve_voice_name(&v, "Marin").as_deref(), Some("v4"));
        assert_eq!(resolve_voice_name(&v, "cedar").as_deref(), Some("v5"));
    }

    #[test]
    fn unknown_voice_error_lists_the_valid_names() {
        let info = crate::routes::test_support::engine_info(&["en-Davis_man", "verse"]);
        let e = resolve_voice(&info, Some("nobody")).unwrap_err();
        assert_eq!((e.code(), e.param()), ("unknown_voice", Some("voice")));
        let message = e.to_string();
        assert!(
            message.contains("valid voices: en-Davis_man, verse, alloy, ash"),
            "{message}"
        );
        assert!(message.ends_with("shimmer, marin, cedar"), "{message}");
        assert_eq!(message.matches("verse").count(), 1, "{message}");
        assert!(valid_voice_names(&[]).is_empty());
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
