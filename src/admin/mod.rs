//! The admin listener: Prometheus `/metrics` and the `/admin/*` API behind a
//! bearer token. Without a configured token every admin route refuses; it
//! never opens up.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::cache::invalidation::Target;
use crate::telemetry;

pub fn router(app: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route("/admin/status", get(status))
        .route("/admin/cache/purge", post(purge))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/metrics", get(metrics))
        .merge(admin)
        .with_state(app)
}

async fn metrics() -> Response {
    let body = telemetry::prometheus().render();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Lets a request through only with `Authorization: Bearer <MOAT_ADMIN_TOKEN>`.
async fn require_token(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(expected) = app.secrets.admin_token.as_deref() else {
        return error(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: set MOAT_ADMIN_TOKEN to enable it",
        );
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Comparing digests keeps the comparison constant-time in the length too.
    let matches: bool = Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.as_bytes()))
        .into();
    if !given.is_empty() && matches {
        next.run(request).await
    } else {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "a valid admin bearer token is required",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// `GET /admin/status`: what an SRE checks first.
async fn status(State(app): State<Arc<AppState>>) -> Response {
    let redis = match &app.redis {
        Some(r) => json!({ "configured": true, "breaker": r.report() }),
        None => json!({ "configured": false }),
    };
    axum::Json(json!({
        "cache": { "l1": app.catalog.usage(), "entities": app.invalidator.entities() },
        "redis": redis,
        "upstream": { "url": app.upstream_url },
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    entity: String,
    /// Without ids: the whole entity.
    ids: Option<Vec<String>>,
}

/// `POST /admin/cache/purge`: drops keys here, in L2, and on every replica.
async fn purge(State(app): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let purge: Purge = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"entity\", \"ids\"?}}: {e}"),
            );
        }
    };
    let target = match &purge.ids {
        Some(ids) if ids.is_empty() => {
            return error(
                StatusCode::BAD_REQUEST,
                "`ids` is empty; leave it out to purge the whole entity",
            );
        }
        Some(ids) => Target::Ids(ids.clone()),
        None => Target::All,
    };
    match app.invalidator.invalidate(&purge.entity, target).await {
        Ok(()) => {
            audit("cache.purge", &purge.entity, json!(null), json!(purge.ids));
            axum::Json(json!({ "purged": purge.entity, "ids": purge.ids })).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.message()),
    }
}

/// One audit line per change made through the admin API.
pub(crate) fn audit(what: &str, target: &str, old: serde_json::Value, new: serde_json::Value) {
    tracing::info!(target: "moat::audit", action = what, target_name = target, old = %old, new = %new, "admin change");
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}
