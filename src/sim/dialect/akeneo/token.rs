//! `POST /api/oauth/v1/token`: Akeneo's token endpoint. The client (a
//! Connection's id and secret) comes by HTTP Basic; the body, JSON or a
//! form, is the password grant (`username`, `password`) or a refresh
//! (`refresh_token`). Failures are Akeneo's 422s, `{"code", "message"}`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;

use super::super::super::Simulator;
use super::super::super::oauth::{basic_credentials, no_store, parse_form};
use super::error;

#[derive(Serialize)]
struct Granted<'a> {
    access_token: &'a str,
    expires_in: u64,
    token_type: &'static str,
    scope: Option<&'a str>,
    refresh_token: &'a str,
}

/// Refresh tokens carry this prefix; any of them is accepted, as any
/// user is (the simulator keeps no sessions).
const REFRESH: &str = "sim_refresh_";

pub async fn token(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    match grant(&sim, &headers, &body) {
        Ok(response) => response,
        Err(message) => no_store(error(StatusCode::UNPROCESSABLE_ENTITY, &message)),
    }
}

fn grant(sim: &Simulator, headers: &HeaderMap, body: &[u8]) -> Result<Response, String> {
    let bad_client = || {
        "Parameter \"client_id\" is missing or does not match any client, or secret is invalid"
            .to_owned()
    };
    let (id, secret) = basic_credentials(headers).ok_or_else(bad_client)?;
    if id.is_empty() {
        return Err(bad_client());
    }
    if let Some(client) = sim.inner.auth.client()
        && (client.id != id || client.secret != secret)
    {
        return Err(bad_client());
    }
    let fields = fields(headers, body)?;
    let field = |name: &str| fields.get(name).filter(|v| !v.is_empty());
    match field("grant_type").map(String::as_str) {
        Some("password") => {
            if field("username").is_none() || field("password").is_none() {
                return Err("Parameter \"username\", \"password\" or \"grant_type\" is missing, empty or invalid".into());
            }
        }
        Some("refresh_token") => {
            if !field("refresh_token").is_some_and(|t| t.starts_with(REFRESH)) {
                return Err("Invalid refresh token".into());
            }
        }
        _ => return Err("Invalid grant_type parameter or parameter missing".into()),
    }
    let access_token = sim.inner.auth.issue();
    let refresh_token = format!("{REFRESH}{:032x}", fastrand::u128(..));
    let body = serde_json::to_vec(&Granted {
        access_token: &access_token,
        expires_in: sim.inner.auth.ttl().as_secs(),
        token_type: "bearer",
        scope: None,
        refresh_token: &refresh_token,
    })
    .map_err(|e| e.to_string())?;
    sim.inner.stats.token_issued();
    Ok(no_store(super::super::super::json(StatusCode::OK, body)))
}

/// The body's fields: JSON (what Akeneo's documentation shows) or a form
/// (which it also takes).
fn fields(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, String> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media == "application/x-www-form-urlencoded" {
        return parse_form(body).map_err(|f| f.description.into_owned());
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return Err("Invalid json message received".into());
    };
    Ok(object
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect())
}
