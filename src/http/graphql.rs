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

use std::net::IpAddr;
use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use http_body::Body as _;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use super::client_addr::ClientAddr;
use super::reply::{self, Media, problem, reply};
use crate::cache::responses::Answer;
use crate::cache::{Asked, Audience, Sent};
use crate::customers::Viewer;
use crate::domain::Timestamp;
use crate::edge;
use crate::error::{Error, Kind};
use crate::graphql::{self, Scope};
use crate::resilience::client_limit::Client;
use crate::state::AppState;
use crate::telemetry;
use crate::telemetry::traces::{self, trace_span};
use crate::vocab::Priority;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// A POST body (and, once decoded, the GET parameters). `operationName`
/// must be a string and `variables` and `extensions` objects when given;
/// anything else is a malformed request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<serde_json::Value>,
    extensions: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

pub async fn get(
    State(app): State<Arc<AppState>>,
    client: Option<axum::Extension<Client>>,
    axum::Extension(ClientAddr(addr)): axum::Extension<ClientAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let Some(media) = negotiate(&headers, app.config().server.graphiql) else {
        return not_acceptable();
    };
    if media == Media::Html {
        return super::assets::graphiql();
    }
    let params = match Query::<GetParams>::try_from_uri(&uri) {
        Ok(Query(p)) => p,
        Err(e) => return problem(media, &Error::bad_request(format!("bad query string: {e}"))),
    };
    let json_param =
        |name: &str, text: Option<String>| match text.as_deref().map(serde_json::from_str) {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(e)) => Err(Error::bad_request(format!("`{name}` is not JSON: {e}"))),
        };
    let (variables, extensions) = match (
        json_param("variables", params.variables),
        json_param("extensions", params.extensions),
    ) {
        (Ok(v), Ok(e)) => (v, e),
        (Err(e), _) | (_, Err(e)) => return problem(media, &e),
    };
    let params = Params {
        query: params.query,
        operation_name: params.operation_name,
        variables,
        extensions,
    };
    let sent = Arrived {
        sent: Sent::Get(Bytes::copy_from_slice(uri.query().unwrap_or("").as_bytes())),
        looked_up: false,
    };
    execute(
        &app,
        media,
        &headers,
        client.map(|c| c.0),
        addr,
        params,
        sent,
    )
    .await
}

/// A repeated `/graphql` query answered from the response cache before
/// routing, the inbound layers and decoding: the steady state of a
/// storefront, the same few queries over and over, as a POST body or a GET
/// query string (plain or persisted), anonymous or by a shopper whose
/// segment is known at once (`Customers::cached_segment`). Anything else
/// goes on to the router, untouched but for a body read here (which it
/// gets back); so do requests this shortcut leaves to the full path:
/// traced ones (their spans), limited clients (their counts), a token not
/// known yet, and a body that did not arrive whole with the head.
pub fn stored(
    app: &AppState,
    request: Request,
    body_max: fn(&AppState) -> usize,
) -> ControlFlow<Response, Request> {
    let started = Instant::now();
    if request.uri().path() != "/graphql"
        || !app.responses.enabled()
        || traces::on()
        || app.client_limits.enabled()
    {
        return Continue(request);
    }
    let audience = match request.headers().get(header::AUTHORIZATION) {
        None => Audience::Anyone,
        Some(value) => {
            let token = value.to_str().ok().and_then(bearer_token);
            match token.and_then(|t| app.customers.cached_segment(t)) {
                Some(segment) => Audience::Segment(segment),
                None => return Continue(request),
            }
        }
    };
    let (request, media, sent) = match *request.method() {
        Method::GET => {
            let graphiql = app.config().server.graphiql;
            match negotiate(request.headers(), graphiql) {
                Some(media) if media != Media::Html => {
                    let query = request.uri().query().unwrap_or("").as_bytes();
                    let sent = Sent::Get(Bytes::copy_from_slice(query));
                    (request, media, sent)
                }
                _ => return Continue(request),
            }
        }
        Method::POST if is_json(request.headers()) => {
            let Some(media) = negotiate(request.headers(), false) else {
                return Continue(request);
            };
            match whole_body(request, body_max(app)) {
                (request, Some(body)) => (request, media, Sent::Post(body)),
                (request, None) => return Continue(request),
            }
        }
        _ => return Continue(request),
    };
    let asked = Asked::new(sent, audience);
    if let Some(answer) = app.responses.get(&asked) {
        telemetry::graphql_request(started.elapsed(), true);
        return Break(match &answer.shareable {
            Some(shareable) => reply::shared(media, request.headers(), answer.body, shareable),
            None => reply(media, StatusCode::OK, answer.body),
        });
    }
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(LookedUp);
    Continue(Request::from_parts(parts, body))
}

/// The request with its body put back, and that body when it came whole
/// with the head and within `limit`; else the request as it came (a longer
/// body with its first part in front of the rest).
fn whole_body(request: Request, limit: usize) -> (Request, Option<Bytes>) {
    let (parts, mut body) = request.into_parts();
    let data = match body.frame().now_or_never() {
        Some(Some(Ok(frame))) => match frame.into_data() {
            Ok(data) if body.is_end_stream() && data.len() <= limit => data,
            // Part of a longer body: hand it on in front of the rest.
            Ok(data) => {
                let first = futures_util::stream::once(async move { Ok(data) });
                let body = Body::from_stream(first.chain(body.into_data_stream()));
                return (Request::from_parts(parts, body), None);
            }
            Err(_) => return (Request::from_parts(parts, body), None),
        },
        // Not here yet, or empty: the full path reads (or refuses) it.
        None | Some(None) => return (Request::from_parts(parts, body), None),
        Some(Some(Err(_))) => return (Request::from_parts(parts, Body::empty()), None),
    };
    (
        Request::from_parts(parts, Body::from(data.clone())),
        Some(data),
    )
}

/// Marks a request `stored` looked up in vain, so it is not looked up again.
#[derive(Clone, Copy)]
pub struct LookedUp;

/// The request as it came, the response cache's key for it.
struct Arrived {
    sent: Sent,
    /// Already looked up (and not found) by `stored`.
    looked_up: bool,
}

/// `body` is whole and within `server.max_body_bytes` (the inbound stack's
/// body limit).
pub async fn post(
    State(app): State<Arc<AppState>>,
    client: Option<axum::Extension<Client>>,
    axum::Extension(ClientAddr(addr)): axum::Extension<ClientAddr>,
    looked_up: Option<axum::Extension<LookedUp>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let Some(media) = negotiate(&headers, false) else {
        return not_acceptable();
    };
    if !is_json(&headers) {
        return problem(
            media,
            &Error::new(
                Kind::UnsupportedMediaType,
                "POST bodies must be `Content-Type: application/json`",
            ),
        );
    }
    let params = match decode_post(&bytes) {
        Ok(p) => p,
        Err(e) => return problem(media, &e),
    };
    let sent = Arrived {
        sent: Sent::Post(bytes),
        looked_up: looked_up.is_some(),
    };
    execute(
        &app,
        media,
        &headers,
        client.map(|c| c.0),
        addr,
        params,
        sent,
    )
    .await
}

/// 413 for a body past `max` bytes, in the media type asked for.
pub fn too_large(_: &AppState, request: &Parts, max: usize) -> Response {
    let media = negotiate(&request.headers, false).unwrap_or(Media::Json);
    let error = Error::new(
        Kind::PayloadTooLarge,
        format!("request body is larger than {max} bytes"),
    );
    problem(media, &error)
}

/// Whether a POST body is declared `application/json` (any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(JSON))
}

/// A POST body as a GraphQL request: a JSON object (an array is a batch,
/// which is refused by name: serde would read a struct from one).
fn decode_post(bytes: &[u8]) -> Result<Params, Error> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[') => {
            return Err(Error::bad_request(
                "batched requests (a JSON array) are not supported; send one request per POST",
            ));
        }
        _ => {
            return Err(Error::bad_request(
                "request body is not a GraphQL request: a JSON object",
            ));
        }
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Error::bad_request(format!(
            "request body is not a GraphQL request in JSON: {e}"
        ))
    })
}

/// The parameters as a GraphQL request: a non-empty `query`, and
/// `variables` and `extensions` objects when given.
fn graphql_request(params: Params) -> Result<async_graphql::Request, Error> {
    let Some(query) = params.query.filter(|q| !q.trim().is_empty()) else {
        return Err(Error::bad_request("the request has no `query`"));
    };
    let variables = match params.variables {
        None | Some(serde_json::Value::Null) => async_graphql::Variables::default(),
        Some(v @ serde_json::Value::Object(_)) => async_graphql::Variables::from_json(v),
        Some(_) => return Err(Error::bad_request("`variables` must be a JSON object")),
    };
    if !matches!(
        params.extensions,
        None | Some(serde_json::Value::Null | serde_json::Value::Object(_))
    ) {
        return Err(Error::bad_request("`extensions` must be a JSON object"));
    }
    let mut request = async_graphql::Request::new(query).variables(variables);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    Ok(request)
}

/// Runs the request in its operation's span: a child of the storefront's
/// span when it sent a `traceparent` (with traces off, that context is
/// passed on to its upstream calls instead).
async fn execute(
    app: &AppState,
    media: Media,
    headers: &HeaderMap,
    client: Option<Client>,
    addr: IpAddr,
    params: Params,
    sent: Arrived,
) -> Response {
    let span = trace_span!(
        "graphql",
        otel.name = "graphql",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        graphql.operation.type = tracing::field::Empty,
        graphql.operation.name = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    traces::continue_from(&span, headers);
    // Boxed: the executing query is a large future, and every layer above
    // (routing, the timeout, tracing, the lane's task) would move it whole.
    let request = Box::pin(run(app, media, headers, client, addr, params, sent)).instrument(span);
    match traces::incoming(headers) {
        Some(context) => traces::pass_on(context, request).await,
        None => request.await,
    }
}

async fn run(
    app: &AppState,
    media: Media,
    headers: &HeaderMap,
    client: Option<Client>,
    addr: IpAddr,
    params: Params,
    sent: Arrived,
) -> Response {
    let started = Instant::now();
    let via_get = matches!(sent.sent, Sent::Get(_));
    let (params, register) = match app
        .persisted
        .resolve(params.query, params.extensions.as_ref())
    {
        Ok(resolved) => (
            Params {
                query: resolved.query,
                ..params
            },
            resolved.register,
        ),
        Err(e) => return graphql_request_error(media, &e),
    };
    let mut request = match graphql_request(params) {
        Ok(r) => r,
        Err(e) => return problem(media, &e),
    };
    // An anonymous query answered before, from entries L1 still holds (a
    // customer's is looked up once the token says their segment).
    let anonymous = !headers.contains_key(header::AUTHORIZATION);
    let mut stored = None;
    if anonymous {
        stored = app
            .responses
            .key(&request.query, sent.sent.clone(), Audience::Anyone);
        if let Some(answer) = look_up(app, stored.as_ref(), sent.looked_up) {
            telemetry::graphql_request(started.elapsed(), true);
            return match &answer.shareable {
                Some(shareable) => reply::shared(media, headers, answer.body, shareable),
                None => reply(media, StatusCode::OK, answer.body),
            };
        }
    }
    let prepared = match app.documents.prepare(&mut request) {
        Ok(p) => p,
        Err(error) => {
            tracing::Span::current().record("otel.status_code", "ERROR");
            return graphql_request_error(media, &error);
        }
    };
    // Registered once it has run without a request error (validation
    // happens as it runs), so nothing invalid takes room.
    let register = register.map(|hash| (hash, request.query.clone()));
    if traces::on() {
        let span = tracing::Span::current();
        let kind = if prepared.is_mutation {
            "mutation"
        } else {
            "query"
        };
        span.record("graphql.operation.type", kind);
        match &request.operation_name {
            Some(name) => {
                span.record("graphql.operation.name", name.as_str());
                traces::rename(&span, format!("{kind} {name}"));
            }
            None => traces::rename(&span, kind.to_string()),
        }
    }
    if via_get && prepared.is_mutation {
        let mut response = problem(
            media,
            &Error::new(Kind::MethodNotAllowed, "mutations must be sent with POST"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if prepared.cost.verifications > 0
        && let Some(client) = &client
        && let Err(wait) = app
            .client_limits
            .verifications(client, prepared.cost.verifications)
    {
        return super::client_limit::too_many(wait, "this client is over its verifyCheckout limit");
    }
    // A mutation is a checkout: its sign-in must not queue behind browsing.
    let priority = if prepared.is_mutation {
        Priority::Checkout
    } else {
        Priority::Browse
    };
    let viewer = match viewer(app, headers, priority, addr).await {
        Ok(viewer) => viewer,
        Err(e) => return unauthenticated(media, &e),
    };
    // A customer's query answered before for their segment.
    if let Viewer::Customer(customer) = &viewer
        && !prepared.is_mutation
    {
        let segment = Audience::Segment(Arc::from(customer.segment.as_str()));
        stored = app.responses.key(&request.query, sent.sent, segment);
        if let Some(answer) = look_up(app, stored.as_ref(), sent.looked_up) {
            telemetry::graphql_request(started.elapsed(), true);
            return reply(media, StatusCode::OK, answer.body);
        }
    }
    let scope = Scope::for_viewer(
        app.catalog.clone(),
        &app.customers,
        viewer,
        app.config().server.deadline,
    );
    let (reads, sources) = (scope.reads.clone(), scope.sources.clone());
    let mut response = app
        .schema
        .execute(&app.documents, &prepared, request.data(scope))
        .await;
    telemetry::graphql_request(started.elapsed(), response.errors.is_empty());
    graphql::code_every_error(&mut response);
    let request_error = graphql::is_request_error(&response);
    if let Some((hash, text)) = register.filter(|_| !request_error) {
        app.persisted.register(hash, &text);
    }
    if !response.errors.is_empty() {
        tracing::Span::current().record("otel.status_code", "ERROR");
    }
    let body = if request_error {
        serde_json::to_vec(&json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    };
    match body {
        Ok(body) => {
            let body = bytes::Bytes::from(body);
            let clean = !prepared.is_mutation && response.errors.is_empty();
            // Shared with HTTP caches: anonymous GETs (persisted or not),
            // answered without errors.
            let shareable = sources
                .take()
                .filter(|_| clean && via_get)
                .and_then(|read| {
                    let edge = &app.config().edge;
                    edge::headers::shareable(edge, &read, &body, Timestamp::now())
                })
                .map(Arc::new);
            if let Some(key) = stored.filter(|_| clean) {
                app.responses
                    .put(key, body.clone(), &reads, shareable.clone());
            }
            match &shareable {
                Some(shareable) => reply::shared(media, headers, body, shareable),
                None => reply(media, status_for(media, request_error), body),
            }
        }
        Err(e) => problem(
            media,
            &Error::internal(format!("cannot encode the response: {e}")),
        ),
    }
}

/// The stored answer for `key` (a request whose answer may be stored),
/// unless the door already looked; a miss is counted.
fn look_up(app: &AppState, key: Option<&Asked>, looked_up: bool) -> Option<Answer> {
    let key = key?;
    if !looked_up && let Some(answer) = app.responses.get(key) {
        return Some(answer);
    }
    app.responses.missed();
    None
}

/// Who is asking: anonymous without `Authorization`, a customer for a
/// bearer token the CRM knows. Anything else there is `UNAUTHENTICATED`,
/// never quietly anonymous.
async fn viewer(
    app: &AppState,
    headers: &HeaderMap,
    priority: Priority,
    addr: IpAddr,
) -> Result<Viewer, Error> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Viewer::Anonymous);
    };
    let token = value.to_str().ok().and_then(bearer_token).ok_or_else(|| {
        Error::new(
            Kind::Unauthenticated,
            "the Authorization header must be `Bearer <customer token>`",
        )
    })?;
    app.customers.sign_in(token, priority, addr).await
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750
/// token68 characters), or `None` for anything else. Its length is held
/// to `[customers] max_token_bytes` where tokens are taken (`customers`):
/// a JWT signed with RSA alone is longer than an opaque token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    let token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.chars().all(token68))
        .then_some(token)
}

/// 401 with a `Bearer` challenge (RFC 6750); no data, as for any request
/// error. The body says what was wrong; the token is never echoed.
fn unauthenticated(media: Media, error: &Error) -> Response {
    let mut response = problem(media, error);
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

/// A GraphQL request error found before execution (parse, validation,
/// limits, variables): 400, or 200 for legacy JSON clients.
fn graphql_request_error(media: Media, error: &Error) -> Response {
    let body = json!({ "errors": [graphql::request_error(error)] });
    // A routine miss of a persisted query is a 200 whatever the media, and
    // no failure: the client sends the query next.
    let status = if error.kind().status().is_success() {
        StatusCode::OK
    } else {
        telemetry::graphql_refused();
        status_for(media, true)
    };
    reply(media, status, body.to_string().into_bytes())
}

fn not_acceptable() -> Response {
    problem(
        Media::Json,
        &Error::new(
            Kind::NotAcceptable,
            "this endpoint answers application/graphql-response+json or application/json",
        ),
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
    // What clients send most, settled without parsing.
    match accept {
        // `*/*` is what curl and most HTTP libraries send unasked.
        JSON | "*/*" => return Some(Media::Json),
        GRAPHQL_RESPONSE => return Some(Media::GraphqlResponse),
        _ => {}
    }
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
        // A JWT signed with RSA-2048 is about 600 characters: taken here,
        // its length held to `max_token_bytes` by `customers`.
        let jwt = format!("{}.{}.{}", "a".repeat(40), "b".repeat(200), "c".repeat(342));
        assert_eq!(bearer_token(&format!("Bearer {jwt}")), Some(jwt.as_str()));
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

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                ".{0,16}".prop_map(serde_json::Value::String),
                Just(json!("{ __typename }")),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                    prop::collection::btree_map(
                        prop::sample::select(vec![
                            "query",
                            "variables",
                            "operationName",
                            "extensions",
                            "id",
                            "x",
                        ])
                        .prop_map(str::to_string),
                        inner,
                        0..5
                    )
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn body() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                json_value().prop_map(|v| v.to_string().into_bytes()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any body is a request or a refusal with a code and a status
            /// from the error table; a request then goes through the
            /// guard and the cost check the same way.
            #[test]
            fn any_body_is_decoded_or_refused(body in body()) {
                let documents = crate::graphql::Documents::new(crate::graphql::query_limits(
                    &crate::config::Server::default(),
                    &crate::config::Checkout::default(),
                ));
                match decode_post(&body).and_then(graphql_request) {
                    Ok(mut request) => {
                        if let Err(e) = documents.prepare(&mut request) {
                            prop_assert!(e.kind().status().is_client_error(), "{}", e);
                        }
                    }
                    Err(e) => {
                        prop_assert_eq!(e.kind(), Kind::BadRequest);
                        prop_assert!(!e.message().is_empty());
                    }
                }
            }
        }
    }
}
