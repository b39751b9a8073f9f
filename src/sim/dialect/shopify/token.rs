//! `POST /admin/oauth/access_token`: Shopify's client-credentials grant.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::super::super::{Simulator, json as respond};
use super::MAX_BODY;

/// `POST /admin/oauth/access_token`: the client-credentials grant, its
/// fields as a form or as JSON. Answers `{access_token, scope,
/// expires_in}` (no token type: the token goes in `X-Shopify-Access-Token`).
async fn grant_from(sim: &Simulator, headers: &HeaderMap, body: &[u8]) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let fields: Vec<(String, String)> = if is_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
                .collect(),
            _ => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
        }
    } else {
        body.split(|b| *b == b'&')
            .filter_map(|pair| {
                let text = String::from_utf8_lossy(pair).replace('+', " ");
                let (k, v) = text.split_once('=')?;
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                };
                Some((decode(k), decode(v)))
            })
            .collect()
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let (Some(grant), Some(id), Some(secret)) = (
        field("grant_type"),
        field("client_id"),
        field("client_secret"),
    ) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if grant != "client_credentials" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if let Some(client) = sim.inner.auth.client()
        && (client.id != id || client.secret != secret)
    {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let token = sim.inner.auth.issue();
    sim.inner.stats.token_issued();
    let body = json!({
        "access_token": token,
        "scope": "read_products,read_inventory,read_customers,read_orders",
        "expires_in": sim.inner.auth.ttl().as_secs(),
    });
    respond(StatusCode::OK, body.to_string().into_bytes())
}

pub async fn grant(State(sim): State<Simulator>, headers: HeaderMap, body: Body) -> Response {
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => grant_from(&sim, &headers, &body).await,
        Err(_) => oauth_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"),
    }
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    respond(
        status,
        json!({ "error": code, "error_description": code.replace('_', " ") })
            .to_string()
            .into_bytes(),
    )
}
