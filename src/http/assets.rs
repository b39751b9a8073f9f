//! GraphiQL's files, built into the binary (`web/graphiql/refresh` copies
//! them from the pinned npm packages), so the page works without internet
//! access and under a content security policy that allows only this origin.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// The files under `/assets/`, with their media types.
const FILES: [(&str, &str, &[u8]); 6] = [
    (
        "graphiql.min.js",
        "text/javascript",
        include_bytes!("assets/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css",
        include_bytes!("assets/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript",
        include_bytes!("assets/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript",
        include_bytes!("assets/react-dom.production.min.js"),
    ),
    (
        "graphiql-start.js",
        "text/javascript",
        include_bytes!("assets/graphiql-start.js"),
    ),
    (
        "graphiql-page.css",
        "text/css",
        include_bytes!("assets/graphiql-page.css"),
    ),
];

/// Only this origin; GraphiQL sets inline styles and uses data: fonts.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                      img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                      frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The GraphiQL page, under its content security policy.
pub fn graphiql() -> Response {
    let mut response = Html(include_str!("graphiql.html")).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    response
}

/// `GET /assets/{file}`.
pub async fn file(Path(name): Path<String>) -> Response {
    let Some((_, media, bytes)) = FILES.iter().find(|(file, _, _)| *file == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(media)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        *bytes,
    )
        .into_response()
}
