//! The API's auth as commercetools has it: `POST /oauth/token` (client
//! credentials, the client by HTTP Basic), then `Authorization: Bearer`
//! on every call; and a customer's password flow, whose token `/me` takes.
//! Auth errors add OAuth's `error` and `error_description` to the API's
//! error shape.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::super::super::auth::Denied;
use super::super::super::{Simulator, json as respond};
use super::{PROJECT, params};

/// An auth error: `{statusCode, message, errors: [{code, message}]}`
/// plus OAuth's `error` and `error_description`.
fn auth_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"statusCode": status.as_u16(), "message": message,
                      "errors": [{"code": code, "message": message}],
                      "error": code, "error_description": message});
    let mut response = respond(status, body.to_string().into_bytes());
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// The 401 of a call without an acceptable token.
pub(super) fn denied(why: Denied) -> Response {
    let message = match why {
        Denied::Missing => "Missing authorization header: send a Bearer token from /oauth/token.",
        Denied::Invalid => "invalid_token: the access token is unknown or has expired.",
    };
    auth_error(StatusCode::UNAUTHORIZED, "invalid_token", message)
}

/// Every API call: an issued bearer token, checked before the call is
/// counted or meets faults.
pub(super) async fn door(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    sim.inner.stats.trace_context("commercetools", &request);
    match sim.inner.auth.check_issued(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(why) => {
            sim.inner.stats.unauthorized();
            denied(why)
        }
    }
}

/// `application/x-www-form-urlencoded` fields (the last of a repeat).
fn form(body: &[u8]) -> HashMap<String, String> {
    params(Some(String::from_utf8_lossy(body).into_owned()))
        .into_iter()
        .collect()
}

fn invalid_client() -> Response {
    auth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Please provide valid client credentials using HTTP Basic Authentication.",
    )
}

/// Whether `Authorization: Basic` names an API client this simulator
/// takes: any, unless it has an OAuth client.
fn client(sim: &Simulator, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| STANDARD.decode(encoded.trim()).ok())
        .and_then(|d| String::from_utf8(d).ok());
    let Some((id, secret)) = given.as_deref().and_then(|d| d.split_once(':')) else {
        return false;
    };
    match sim.inner.auth.client() {
        Some(c) => c.id == id && c.secret == secret,
        None => !id.is_empty(),
    }
}

fn granted(token: &str, ttl: u64, scope: &str) -> Response {
    let body = json!({"access_token": token, "token_type": "Bearer",
                      "expires_in": ttl, "scope": scope});
    let mut response = respond(StatusCode::OK, body.to_string().into_bytes());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A token request's form, once its client is accepted and it asks for
/// `grant_type`; else commercetools' refusal (boxed: a response is large
/// beside the form).
fn grant(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &[u8],
    grant_type: &str,
) -> Result<HashMap<String, String>, Box<Response>> {
    if !client(sim, headers) {
        return Err(Box::new(invalid_client()));
    }
    let form = form(body);
    if form.get("grant_type").map(String::as_str) != Some(grant_type) {
        return Err(Box::new(auth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type must be {grant_type} here."),
        )));
    }
    Ok(form)
}

/// `POST /oauth/token`: the client credentials flow.
pub(super) async fn token(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match grant(&sim, &headers, &body, "client_credentials") {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let token = sim.inner.auth.issue();
    sim.inner.stats.token_issued();
    let scope = form
        .get("scope")
        .cloned()
        .unwrap_or_else(|| format!("manage_project:{PROJECT}"));
    granted(&token, sim.inner.auth.ttl().as_secs(), &scope)
}

/// `POST /oauth/{projectKey}/customers/token`: a customer's password flow
/// (any password): the customer's own access token, for `/me`.
pub(super) async fn customer_token(
    State(sim): State<Simulator>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match grant(&sim, &headers, &body, "password") {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let email = form.get("username").cloned().unwrap_or_default();
    let token = {
        let catalog = sim.read();
        catalog
            .customers
            .iter()
            .find(|c| c.email == email)
            .map(|c| c.token.clone())
    };
    match token {
        Some(token) => granted(
            &token,
            sim.inner.auth.ttl().as_secs(),
            &format!("manage_my_profile:{project}"),
        ),
        None => auth_error(
            StatusCode::BAD_REQUEST,
            "invalid_customer_account_credentials",
            "Customer account with the given credentials not found.",
        ),
    }
}
