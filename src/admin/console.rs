//! The SRE console, `GET /admin/` in a browser: one page and its script,
//! built into the binary (no CDN). The page itself is public; everything it
//! shows comes from the admin API with the token the operator signs in
//! with, which stays in the tab's session storage.

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

/// Only this origin, no inline script.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                      connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub async fn page() -> Response {
    let mut response = Html(include_str!("console/index.html")).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn script() -> Response {
    asset("text/javascript", include_str!("console/console.js"))
}

pub async fn style() -> Response {
    asset("text/css", include_str!("console/console.css"))
}

fn asset(media: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(media)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
