//! The admin listener: Prometheus `/metrics`, the SRE console (`/admin/`)
//! and the `/admin/*` API behind a bearer token. Without a configured token
//! every admin route refuses; it never opens up.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Kind};
use crate::state::AppState;
use crate::telemetry;

mod cache;
pub mod cli;
mod console;
mod dlq;
mod limits;
mod reconcile;

pub fn router(app: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route("/admin/status", get(status))
        .route("/admin/cache/purge", post(cache::purge))
        .route("/admin/limits", get(limits::list))
        .route(
            "/admin/limits/{upstream}",
            put(limits::set).delete(limits::reset),
        )
        .route("/admin/breakers/{upstream}", post(limits::breaker))
        .route("/admin/dlq", get(dlq::list))
        .route("/admin/dlq/replay", post(dlq::replay))
        .route("/admin/dlq/{id}", delete(dlq::discard))
        .route("/admin/reconcile/last", get(reconcile::last))
        .route("/admin/reconcile/{entity}", post(reconcile::run))
        .route("/admin/exceptions", get(reconcile::exceptions))
        .route("/admin/audit", get(recent_audits))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/admin",
            get(|| async { axum::response::Redirect::permanent("/admin/") }),
        )
        .route("/admin/", get(console::page))
        .route("/admin/console.js", get(console::script))
        .route("/admin/console.css", get(console::style))
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
        return error(&Error::new(
            Kind::Forbidden,
            "the admin API is disabled: set MOAT_ADMIN_TOKEN to enable it",
        ));
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
        let mut response = error(&Error::new(
            Kind::Unauthenticated,
            "a valid admin bearer token is required",
        ));
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
    let l1: serde_json::Map<String, serde_json::Value> = app
        .tiers()
        .iter()
        .map(|t| {
            let (entries, bytes) = t.usage();
            (
                t.entity().name().to_string(),
                json!({ "entries": entries, "bytes": bytes, "max_bytes": t.max_bytes() }),
            )
        })
        .collect();
    let dlq = app.events.dead_letters().depth().await.ok();
    let reconciliation = app.reconciler.last().await;
    axum::Json(json!({
        "cache": {
            "l1": l1,
            "entities": app.invalidator.entities(),
            "unpublished_invalidations": app.invalidator.unpublished(),
        },
        "dlq": { "depth": dlq },
        "reconciliation": { "last": reconciliation.first() },
        "redis": redis,
        "replica": app.fleet.replica(),
        "upstreams": app
            .upstreams
            .systems
            .iter()
            .map(|c| {
                let mut status = c.protection.status();
                status["url"] = json!(c.url);
                status["records"] = json!(c.records.iter().map(|r| r.name()).collect::<Vec<_>>());
                status["owner"] = json!(c.owner);
                status["contact"] = json!(c.contact);
                status["protocol"] = json!(c.protocol);
                (c.system.name().to_string(), status)
            })
            .collect::<serde_json::Map<_, _>>(),
    }))
    .into_response()
}

/// One audit line per change made through the admin API (or a reload):
/// who, what, old, new.
pub(crate) fn audit(
    app: &AppState,
    who: &str,
    what: &str,
    target: &str,
    old: serde_json::Value,
    new: serde_json::Value,
) {
    telemetry::audit(telemetry::Audit {
        at: telemetry::unix_now(),
        who: who.to_string(),
        action: what.to_string(),
        target: target.to_string(),
        replica: app.fleet.replica().to_string(),
        old,
        new,
    });
}

/// `GET /admin/audit`: this replica's recent changes, newest first.
async fn recent_audits() -> Response {
    axum::Json(telemetry::recent_audits()).into_response()
}

/// Who made an admin change, for the audit line: the caller's
/// `X-Moat-Actor` header (the CLI sends the user name), else "admin-api".
pub(crate) fn actor(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-moat-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .unwrap_or("admin-api")
        .to_string()
}

/// An admin API error: `{"error": message, "code": CODE}` with the status
/// from the error table.
pub(crate) fn error(e: &Error) -> Response {
    let body = json!({ "error": e.public_message(), "code": e.kind().code() });
    (e.kind().status(), axum::Json(body)).into_response()
}
