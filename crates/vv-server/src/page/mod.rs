//! The web page at `GET /`: a text box, a voice picker, streaming playback over the v1
//! WebSocket (Web Audio, `pcm_f32le` at 24 kHz) and live time-to-first-audio and real-time
//! factor. One self-contained HTML document (CSS and JS inlined at first use), no external
//! resources, so it works offline and behind API keys (`/` is public; the page asks for a
//! key and sends it as `Authorization` and as the WebSocket's `api_key` parameter).
//!
//! Opened with `?autotest=1` it speaks a fixed sentence at once and writes its result as
//! JSON into `#status` (`data-state` = `done` or `error`), for `scripts/browser_check.sh`.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const HTML: &str = include_str!("index.html");
const CSS: &str = include_str!("app.css");
const JS: &str = include_str!("app.js");

/// Where the stylesheet goes in [`HTML`].
const CSS_SLOT: &str = "/*APP_CSS*/";
/// Where the script goes in [`HTML`].
const JS_SLOT: &str = "/*APP_JS*/";

/// The page with its stylesheet and script inlined.
static PAGE: LazyLock<String> = LazyLock::new(|| HTML.replace(CSS_SLOT, CSS).replace(JS_SLOT, JS));

/// The route.
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(page))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        assert!(HTML.contains(CSS_SLOT) && HTML.contains(JS_SLOT));
        let page = PAGE.as_str();
        assert!(!page.contains(CSS_SLOT) && !page.contains(JS_SLOT));
        assert!(page.contains("/v1/tts/stream") && page.contains("/v1/audio/voices"));
        for external in ["http://", "https://", "//cdn", "<link", "src=\""] {
            assert!(!page.contains(external), "external resource: {external}");
        }
    }
}
