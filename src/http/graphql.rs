//! GraphQL over HTTP, as the GraphQL-over-HTTP spec has it: POST with a JSON
//! body, GET with query parameters (queries only), answers in
//! `application/graphql-response+json` or `application/json` as the client
//! accepts, with the spec's status codes:
//!
//! | situation                                   | graphql-response+json | json |
//! |---------------------------------------------|-----------------------|------|
//! | executed (even with field errors)           | 200                   | 200  |
//! | request error (syntax, validation, limits)  | 400                   | 200  |
//! | body not JSON / no `query`                  | 400                   | 400  |
//! | Content-Type not JSON (POST)                | 415                   | 415  |
//! | no acceptable media type                    | 406                   | 406  |
//! | mutation over GET                           | 405                   | 405  |
//! | body too large                              | 413                   | 413  |
//! | customer token unknown or malformed         | 401                   | 401  |
//!
//! A customer token (`Authorization: Bearer …`) is resolved here, before
//! the request runs, because an invalid one is an error of the whole
//! request; an unresolvable one (the CRM is down) is not, and fails only
//! the fields that need the customer.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::customers::Viewer;
use crate::error::{Error, Kind};
use crate::graphql::Scope;
use crate::telemetry;
use crate::upstream::Priority;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// What the client will read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
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

/// The GET parameters (and, with the same names, the POST body).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<serde_json::Value>,
    #[allow(dead_code)]
    extensions: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
}

pub async fn get(State(app): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Response {
    let Some(media) = negotiate(&headers, app.config().server.graphiql) else {
        return not_acceptable();
    };
    if media == Media::Html {
        return Html(include_str!("graphiql.html")).into_response();
    }
    let params = match Query::<GetParams>::try_from_uri(&uri) {
        Ok(Query(p)) => p,
        Err(e) => {
            return request_problem(
                media,
                StatusCode::BAD_REQUEST,
                &format!("bad query string: {e}"),
            );
        }
    };
    let variables = match params.variables.as_deref().map(serde_json::from_str) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            return request_problem(
                media,
                StatusCode::BAD_REQUEST,
                &format!("`variables` is not JSON: {e}"),
            );
        }
    };
    let params = Params {
        query: params.query,
        operation_name: params.operation_name,
        variables,
        extensions: None,
    };
    execute(&app, media, &headers, params, true).await
}

pub async fn post(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let Some(media) = negotiate(&headers, false) else {
        return not_acceptable();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if content_type.as_deref() != Some(JSON) {
        return request_problem(
            media,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST bodies must be `Content-Type: application/json`",
        );
    }
    let limit = app.config().server.max_body_bytes.bytes() as usize;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return request_problem(
                media,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body is larger than {limit} bytes"),
            );
        }
    };
    let params: Params = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            return request_problem(
                media,
                StatusCode::BAD_REQUEST,
                &format!("request body is not a GraphQL request in JSON: {e}"),
            );
        }
    };
    execute(&app, media, &headers, params, false).await
}

async fn execute(
    app: &AppState,
    media: Media,
    headers: &HeaderMap,
    params: Params,
    via_get: bool,
) -> Response {
    let started = Instant::now();
    let Some(query) = params.query.filter(|q| !q.trim().is_empty()) else {
        return request_problem(media, StatusCode::BAD_REQUEST, "the request has no `query`");
    };
    let variables = match params.variables {
        None | Some(serde_json::Value::Null) => async_graphql::Variables::default(),
        Some(v @ serde_json::Value::Object(_)) => async_graphql::Variables::from_json(v),
        Some(_) => {
            return request_problem(
                media,
                StatusCode::BAD_REQUEST,
                "`variables` must be a JSON object",
            );
        }
    };
    let mut request = async_graphql::Request::new(query).variables(variables);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    let prepared = match app.documents.prepare(&mut request) {
        Ok(p) => p,
        Err(error) => return graphql_request_error(media, error),
    };
    let is_mutation = prepared.is_mutation;
    if via_get && is_mutation {
        let mut response = request_problem(
            media,
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations must be sent with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    // A mutation is a checkout: its sign-in must not queue behind browsing.
    let priority = if is_mutation {
        Priority::Checkout
    } else {
        Priority::Browse
    };
    let viewer = match viewer(app, headers, priority).await {
        Ok(viewer) => viewer,
        Err(e) => return unauthenticated(media, &e),
    };
    let scope = Scope::for_viewer(app.catalog.clone(), viewer, app.config().server.deadline);
    let response = app.schema.execute(request.data(scope)).await;
    telemetry::graphql_request(started.elapsed());

    // A request error happens before execution: there is no data and no
    // error is tied to a field path. Field errors always carry a path.
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let body = if request_error {
        serde_json::to_vec(&json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    };
    match body {
        Ok(body) => reply(media, status_for(media, request_error), body),
        Err(e) => request_problem(
            media,
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the response: {e}"),
        ),
    }
}

/// Who is asking: anonymous without `Authorization`, a customer for a
/// bearer token the CRM knows. Anything else there is `UNAUTHENTICATED`,
/// never quietly anonymous.
async fn viewer(app: &AppState, headers: &HeaderMap, priority: Priority) -> Result<Viewer, Error> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Viewer::Anonymous);
    };
    let token = value.to_str().ok().and_then(bearer_token).ok_or_else(|| {
        Error::new(
            Kind::Unauthenticated,
            "the Authorization header must be `Bearer <customer token>`",
        )
    })?;
    app.catalog.customers.sign_in(token, priority).await
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750
/// token68 characters), or `None` for anything else.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    let token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.len() <= 512
        && token.chars().all(token68))
    .then_some(token)
}

/// 401 with a `Bearer` challenge (RFC 6750); no data, as for any request
/// error. The body says what was wrong; the token is never echoed.
fn unauthenticated(media: Media, error: &Error) -> Response {
    let body = json!({ "errors": [{
        "message": error.message(),
        "extensions": { "code": error.kind().code() },
    }] });
    let mut response = reply(
        media,
        StatusCode::UNAUTHORIZED,
        body.to_string().into_bytes(),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// 400 for a request error with graphql-response+json; legacy JSON clients
/// get 200 for every well-formed request.
fn status_for(media: Media, request_error: bool) -> StatusCode {
    if request_error && media == Media::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

fn reply(media: Media, status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    response
}

/// An error answered before GraphQL ran, in the GraphQL error shape.
fn request_problem(media: Media, status: StatusCode, message: &str) -> Response {
    let body =
        json!({ "errors": [{ "message": message, "extensions": { "code": "BAD_REQUEST" } }] });
    reply(media, status, body.to_string().into_bytes())
}

/// A GraphQL request error found before execution.
fn graphql_request_error(media: Media, error: async_graphql::ServerError) -> Response {
    let body = json!({ "errors": [error] });
    reply(
        media,
        status_for(media, true),
        body.to_string().into_bytes(),
    )
}

fn not_acceptable() -> Response {
    request_problem(
        Media::Json,
        StatusCode::NOT_ACCEPTABLE,
        "this endpoint answers application/graphql-response+json or application/json",
    )
}

/// Picks the response media type from `Accept`. No header means
/// `application/json` (what legacy clients expect); `*/*` alone does too.
/// `application/graphql-response+json` is used when the client names it and
/// likes it at least as much as plain JSON.
fn negotiate(headers: &HeaderMap, html_allowed: bool) -> Option<Media> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Media::Json);
    };
    let ranges: Vec<(String, f32)> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let range = pieces.next()?.trim().to_ascii_lowercase();
            let q = pieces
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!range.is_empty()).then_some((range, q))
        })
        .collect();
    // The most specific range that matches a media type sets its quality.
    let quality = |media: &str| -> (f32, bool) {
        let family = format!("{}/*", media.split('/').next().unwrap_or(""));
        let mut best: Option<(u8, f32)> = None;
        for (range, q) in &ranges {
            let specificity = if range == media {
                3
            } else if *range == family {
                2
            } else if range == "*/*" {
                1
            } else {
                continue;
            };
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, *q));
            }
        }
        best.map_or((0.0, false), |(s, q)| (q, s >= 2))
    };
    let (q_gr, gr_named) = quality(GRAPHQL_RESPONSE);
    let (q_json, _) = quality(JSON);
    let (q_html, html_named) = quality("text/html");
    if html_allowed
        && html_named
        && q_html > 0.0
        && q_html > q_json.max(if gr_named { q_gr } else { 0.0 })
    {
        return Some(Media::Html);
    }
    if gr_named && q_gr > 0.0 && q_gr >= q_json {
        Some(Media::GraphqlResponse)
    } else if q_json > 0.0 {
        Some(Media::Json)
    } else if q_gr > 0.0 {
        Some(Media::GraphqlResponse)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_bearer_token_is_taken() {
        assert_eq!(bearer_token("Bearer ct_abc123"), Some("ct_abc123"));
        assert_eq!(bearer_token("bearer  ct_abc123 "), Some("ct_abc123"));
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "ct_abc123",
            "Bearer a b",
            "Bearer a,b",
            "Bearer t\u{e9}",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
        assert_eq!(bearer_token(&format!("Bearer {}", "a".repeat(513))), None);
    }

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn negotiates_like_the_spec_asks() {
        assert_eq!(negotiate(&HeaderMap::new(), true), Some(Media::Json));
        assert_eq!(negotiate(&accept("*/*"), true), Some(Media::Json));
        assert_eq!(negotiate(&accept(JSON), true), Some(Media::Json));
        assert_eq!(
            negotiate(&accept(GRAPHQL_RESPONSE), true),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            negotiate(
                &accept("application/graphql-response+json, application/json;q=0.9"),
                true
            ),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            negotiate(
                &accept("application/json, application/graphql-response+json;q=0.5"),
                true
            ),
            Some(Media::Json)
        );
        assert_eq!(negotiate(&accept("text/plain"), true), None);
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(negotiate(&accept(browser), true), Some(Media::Html));
        assert_eq!(negotiate(&accept(browser), false), Some(Media::Json));
        assert_eq!(negotiate(&accept("application/json;q=0"), true), None);
    }
}
