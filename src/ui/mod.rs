//! The web UI: one HTML page for every UI route and the scripts and style
//! that render it from the JSON API in the browser (docs/ui.md).
//!
//! Everything is embedded in the binary, so the UI needs no build step and
//! no file at run time, and nothing outside the agent: it must work where
//! only the agent is reachable. Scripts and style are separate files so
//! that every UI response can carry a strict Content-Security-Policy (no
//! inline code); their URLs carry a hash of their contents, so browsers
//! may keep them for a year and still never run a stale script.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Only the agent's own files; no inline code, no framing by other sites.
pub const CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page every UI route serves; `{v}` stands for [`version`], `{pkg}`
/// for the agent's version.
const PAGE: &str = include_str!("assets/page.html");

/// The files under `/ui/assets/{version}/`: name, content type, contents.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    ("common.js", JS, include_str!("assets/common.js")),
    ("overview.js", JS, include_str!("assets/overview.js")),
    ("failover.js", JS, include_str!("assets/failover.js")),
    ("slots.js", JS, include_str!("assets/slots.js")),
    ("topology.js", JS, include_str!("assets/topology.js")),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

/// The UI routes, to merge into the agent's router (behind its auth):
/// `/` (overview), `/ui/topology`, `/ui/failovers/{id}`,
/// `/ui/clusters/{deployment}`, and the assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/ui/topology", get(page))
        .route("/ui/failovers/{id}", get(page))
        .route("/ui/clusters/{deployment}", get(page))
        .route("/ui/assets/{version}/{file}", get(asset))
}

/// A hash of the page and every asset: changes whenever any of them does.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(PAGE.as_bytes());
        for (name, _, body) in ASSETS {
            ctx.update(name.as_bytes());
            ctx.update(body.as_bytes());
        }
        ctx.finish().as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

/// The page, the same for every route: the script renders what the path
/// names. Never cached, so that it always names the current assets.
async fn page() -> Response {
    static BODY: OnceLock<String> = OnceLock::new();
    let body = BODY.get_or_init(|| {
        PAGE.replace("{v}", version())
            .replace("{pkg}", env!("CARGO_PKG_VERSION"))
    });
    respond("text/html; charset=utf-8", body.as_str(), "no-cache")
}

async fn asset(Path((v, file)): Path<(String, String)>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) if v == version() => {
            respond(content_type, body, "public, max-age=31536000, immutable")
        }
        _ => (
            StatusCode::NOT_FOUND,
            [(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            )],
            "no such asset\n",
        )
            .into_response(),
    }
}

fn respond(content_type: &'static str, body: &'static str, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get(path: &str) -> Response {
        routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn header_of(r: &Response, name: header::HeaderName) -> &str {
        r.headers().get(name).map_or("", |v| v.to_str().unwrap())
    }

    async fn text(r: Response) -> String {
        String::from_utf8(to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn every_page_route_serves_the_page_with_the_policy() {
        for path in [
            "/",
            "/ui/topology",
            "/ui/failovers/sessions%3Amymaster%3Ae3.2",
            // Colons are allowed in a path segment: links may leave them as they are.
            "/ui/failovers/sessions:mymaster:e3.2",
            "/ui/clusters/cache",
        ] {
            let r = get(path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header_of(&r, header::CONTENT_TYPE),
                "text/html; charset=utf-8"
            );
            assert_eq!(header_of(&r, header::CONTENT_SECURITY_POLICY), CSP);
            assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-cache");
            let body = text(r).await;
            assert!(body.contains(&format!("/ui/assets/{}/common.js", version())));
            assert!(!body.contains('{'), "every placeholder replaced");
            assert!(body.contains(env!("CARGO_PKG_VERSION")));
        }
    }

    #[tokio::test]
    async fn the_page_has_no_inline_code_and_names_only_its_own_files() {
        let body = text(get("/").await).await;
        assert!(!body.contains("<style"), "inline style");
        assert!(!body.contains(" style="), "inline style attribute");
        assert!(
            !body
                .split_whitespace()
                .any(|w| w.starts_with("on") && w.contains('=')),
            "inline event handler"
        );
        for tag in body.split("<script").skip(1) {
            assert!(tag.trim_start().starts_with("src=\"/ui/assets/"), "{tag}");
        }
        assert!(!body.contains("//"), "no other origin: {body}");
        for link in ["/metrics", "/api/v1/"] {
            assert!(body.contains(link), "a link to {link}");
        }
    }

    #[tokio::test]
    async fn assets_have_their_type_and_are_cached_only_under_the_current_version() {
        for (name, content_type, body) in ASSETS {
            let r = get(&format!("/ui/assets/{}/{name}", version())).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_eq!(header_of(&r, header::CONTENT_TYPE), *content_type);
            assert_eq!(header_of(&r, header::CONTENT_SECURITY_POLICY), CSP);
            assert_eq!(
                header_of(&r, header::CACHE_CONTROL),
                "public, max-age=31536000, immutable"
            );
            assert_eq!(text(r).await, *body);
        }
        for path in [
            format!("/ui/assets/{}/nope.js", version()),
            "/ui/assets/0123456789ab/common.js".to_string(),
            format!("/ui/assets/{}/..%2Fmod.rs", version()),
            "/ui/nope".to_string(),
        ] {
            let r = get(&path).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(header_of(&r, header::CACHE_CONTROL), "", "{path}");
        }
    }
}
