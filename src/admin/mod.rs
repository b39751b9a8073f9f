//! The admin listener: Prometheus `/metrics`, the SRE console (`/admin/`)
//! and the `/admin/*` API behind a bearer token (`access`: viewers read,
//! operators change). Without a configured token every admin route
//! refuses; it never opens up.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::json;

use crate::error::{Error, Kind};
use crate::state::AppState;
use crate::telemetry;
use access::Caller;

pub mod access;
mod cache;
pub mod cli;
mod console;
mod dlq;
mod limits;
mod reconcile;
mod table;

pub fn router(app: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route("/admin/status", get(status))
        .route("/admin/whoami", get(whoami))
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
    let body = telemetry::render();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Lets a request through only with `Authorization: Bearer <token>` of a
/// configured admin token, and a change only from an operator; the
/// handler finds the [`Caller`] among the request's extensions.
async fn require_token(
    State(app): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let config = app.config();
    if !access::enabled(&config.admin, &app.secrets) {
        return error(&Error::new(
            Kind::Forbidden,
            "the admin API is disabled: set MOAT_ADMIN_TOKEN (or MOAT_ADMIN_TOKEN_{NAME} with [admin.tokens.NAME]) to enable it",
        ));
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(caller) = access::identify(&config.admin, &app.secrets, given) else {
        let mut response = error(&Error::new(
            Kind::Unauthenticated,
            "a valid admin bearer token is required",
        ));
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    };
    if !caller.may(request.method()) {
        return error(&Error::new(
            Kind::ForbiddenForRole,
            format!(
                "the admin token {:?} is a {}: it may read, not change anything",
                caller.name,
                caller.role.name()
            ),
        ));
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// `GET /admin/whoami`: the token's name and role, so the console shows
/// only what the caller may do.
async fn whoami(Extension(caller): Extension<Caller>) -> Response {
    axum::Json(json!({ "name": caller.name, "role": caller.role.name() })).into_response()
}

/// `GET /admin/status`: what an SRE checks first.
async fn status(State(app): State<Arc<AppState>>) -> Response {
    let redis = match &app.redis {
        Some(r) => json!({
            "configured": true,
            "mode": r.mode(),
            "answering": r.answering(),
            "breaker": r.report(),
        }),
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
        "edge": { "purge": app.purges.status() },
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
/// who (the admin token's name, or what made the change), what, old, new.
pub(crate) fn audit(
    app: &AppState,
    who: &Who,
    what: &str,
    target: &str,
    old: serde_json::Value,
    new: serde_json::Value,
) {
    telemetry::audit(telemetry::Audit {
        at: telemetry::unix_now(),
        who: who.name.clone(),
        via: who.via.clone(),
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

/// Who made a change, for the audit line.
pub(crate) struct Who {
    /// The admin token that signed the change in (checked), or the part
    /// of Moat that made it (`reload`).
    pub name: String,
    /// What the caller says it is (`X-Moat-Actor`: the CLI sends
    /// `cli:$USER`, the console `console`); unchecked, so only beside the
    /// token's name.
    pub via: Option<String>,
}

impl Who {
    pub fn moat(name: &str) -> Who {
        Who {
            name: name.to_string(),
            via: None,
        }
    }
}

/// The signed-in caller of an admin request, and what it says it is.
pub(crate) fn who(caller: &Caller, headers: &axum::http::HeaderMap) -> Who {
    let via = headers
        .get("x-moat-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .filter(|v| v.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        .map(str::to_string);
    Who {
        name: caller.name.clone(),
        via,
    }
}

/// An admin API error: `{"error": message, "code": CODE}` with the status
/// from the error table.
pub(crate) fn error(e: &Error) -> Response {
    let body = json!({ "error": e.public_message(), "code": e.kind().code() });
    (e.kind().status(), axum::Json(body)).into_response()
}
