//! How the public listener answers: the GraphQL-over-HTTP media types, and
//! an error that ends a request before GraphQL runs, in the GraphQL error
//! shape with the status the error table gives it.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::cache::Shareable;
use crate::domain::Timestamp;
use crate::edge;
use crate::error::Error;
use crate::graphql;

/// What the client will read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    GraphqlResponse,
    Json,
    Html,
}

impl Media {
    /// What tells its representations apart (in an `ETag`).
    pub fn name(self) -> &'static str {
        match self {
            Media::GraphqlResponse => "graphql-response",
            Media::Json | Media::Html => "json",
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json | Media::Html => "application/json; charset=utf-8",
        })
    }
}

/// An answer no cache may share or keep (`private, no-store`): what every
/// answer is unless `edge::headers` finds it shareable and says so.
pub fn reply(media: Media, status: StatusCode, body: impl Into<bytes::Bytes>) -> Response {
    let body: bytes::Bytes = body.into();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, media.content_type());
    headers.insert(header::CACHE_CONTROL, edge::headers::PRIVATE);
    response
}

/// A shareable answer with its caching headers, or a bodiless 304 when the
/// client's copy (`If-None-Match`) is this one.
pub fn shared(
    media: Media,
    request: &HeaderMap,
    body: impl Into<bytes::Bytes>,
    shareable: &Shareable,
) -> Response {
    let now = Timestamp::now();
    let mut response = if edge::headers::not_modified(request, shareable.etag(media.name())) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        reply(media, StatusCode::OK, body)
    };
    edge::headers::apply(shareable, media.name(), response.headers_mut(), now);
    response
}

/// An error answered before GraphQL ran: `{"errors": [{message,
/// extensions: {code}}]}` with the error's status.
/// Counted as a storefront request that failed.
pub fn problem(media: Media, error: &Error) -> Response {
    crate::telemetry::graphql_refused();
    let body = json!({ "errors": [graphql::request_error(error)] });
    reply(media, error.kind().status(), body.to_string().into_bytes())
}
