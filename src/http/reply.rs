//! How the public listener answers: the GraphQL-over-HTTP media types, and
//! an error that ends a request before GraphQL runs, in the GraphQL error
//! shape with the status the error table gives it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json | Media::Html => "application/json; charset=utf-8",
        })
    }
}

pub fn reply(media: Media, status: StatusCode, body: impl Into<bytes::Bytes>) -> Response {
    let body: bytes::Bytes = body.into();
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
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
