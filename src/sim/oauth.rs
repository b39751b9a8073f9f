//! `POST /oauth/token`: the client-credentials grant of OAuth 2.0 (RFC 6749
//! §4.4), so a gateway's token fetch, reuse and refresh run against a real
//! exchange. Only served when the simulator has an OAuth client.
//!
//! The form is parsed by hand: axum's `Form` extractor sits behind a
//! feature this crate leaves off, and the grant needs four fields.

use std::borrow::Cow;
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode;
use serde::Serialize;

use super::{Simulator, json};

const FORM: &str = "application/x-www-form-urlencoded";

/// An RFC 6749 §5.2 error: its code and a human description.
pub(super) struct Failure {
    status: StatusCode,
    code: &'static str,
    pub(super) description: Cow<'static, str>,
    /// The client tried HTTP Basic: §5.2 wants a `WWW-Authenticate`
    /// challenge with the 401.
    basic: bool,
}

impl Failure {
    fn invalid_request(description: impl Into<Cow<'static, str>>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            description: description.into(),
            basic: false,
        }
    }

    /// A simulator bug, not the client's.
    fn server_error(description: &'static str) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "server_error",
            description: description.into(),
            basic: false,
        }
    }

    fn invalid_client(basic: bool) -> Failure {
        Failure {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_client",
            description: "client authentication failed".into(),
            basic,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

#[derive(Serialize)]
struct Grant<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

/// `POST /oauth/token` with `grant_type=client_credentials` and the client
/// by HTTP Basic or by `client_id` and `client_secret` in the form.
pub async fn token(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match grant(&sim, &headers, body) {
        Ok(response) => response,
        Err(failure) => {
            let body = serde_json::to_vec(&ErrorBody {
                error: failure.code,
                error_description: &failure.description,
            })
            .unwrap_or_else(|_| br#"{"error":"server_error"}"#.to_vec());
            let mut response = no_store(json(failure.status, body));
            if failure.basic && failure.status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            }
            response
        }
    }
}

/// Checks in the order of RFC 6749 §5.2's codes: a malformed request, then
/// the client, then whether the grant is one this server has.
fn grant(
    sim: &Simulator,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let Some(client) = sim.inner.auth.client() else {
        // The route is only served with a client configured.
        return Err(Failure::server_error("token endpoint without a client"));
    };
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM));
    if !is_form {
        return Err(Failure::invalid_request(format!("the body must be {FORM}")));
    }
    let body = body.map_err(|e| Failure::invalid_request(e.body_text()))?;
    let form = parse_form(&body)?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| Failure::invalid_request("grant_type is required"))?;

    let basic = headers.get(header::AUTHORIZATION).is_some();
    let in_form = form.contains_key("client_id") || form.contains_key("client_secret");
    let (id, secret) = match (basic, in_form) {
        (true, true) => {
            // §2.3: one authentication method per request.
            return Err(Failure::invalid_request(
                "authenticate the client by HTTP Basic or by the form, not both",
            ));
        }
        (true, false) => basic_credentials(headers).ok_or(Failure::invalid_client(true))?,
        (false, _) => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if id != client.id || secret != client.secret {
        return Err(Failure::invalid_client(basic));
    }
    if grant_type != "client_credentials" {
        return Err(Failure {
            status: StatusCode::BAD_REQUEST,
            code: "unsupported_grant_type",
            description: "only client_credentials is supported".into(),
            basic: false,
        });
    }

    let access_token = sim.inner.auth.issue();
    let body = serde_json::to_vec(&Grant {
        access_token: &access_token,
        token_type: "Bearer",
        expires_in: sim.inner.auth.ttl().as_secs(),
        scope: form.get("scope").map(String::as_str),
    })
    .map_err(|_| Failure::server_error("cannot encode the token response"))?;
    sim.inner.stats.token_issued();
    tracing::debug!("simulator issued an access token");
    Ok(no_store(json(StatusCode::OK, body)))
}

/// RFC 6749 §5.1: token responses must not be cached.
pub(super) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `application/x-www-form-urlencoded` fields. Empty values count as
/// absent and a repeated field is an error (RFC 6749 §3.2).
pub(super) fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, Failure> {
    let mut fields = HashMap::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        let (name, value) = (form_decode(name)?, form_decode(value)?);
        if value.is_empty() {
            continue;
        }
        if fields.insert(name.clone(), value).is_some() {
            return Err(Failure::invalid_request(format!(
                "{name} is given more than once"
            )));
        }
    }
    Ok(fields)
}

/// One form-urlencoded name or value: `+` is a space, then `%XX` escapes.
fn form_decode(raw: &[u8]) -> Result<String, Failure> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_decode(&spaced)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| Failure::invalid_request("the form is not valid UTF-8"))
}

/// `Authorization: Basic base64(id:secret)`, where id and secret are each
/// form-urlencoded first (RFC 6749 §2.3.1).
pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let at = decoded.iter().position(|b| *b == b':')?;
    let id = form_decode(&decoded[..at]).ok()?;
    let secret = form_decode(&decoded[at + 1..]).ok()?;
    Some((id, secret))
}
