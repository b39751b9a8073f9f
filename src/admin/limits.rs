//! Live tuning of upstream protection: `GET /admin/limits`,
//! `PUT` and `DELETE /admin/limits/{upstream}`, `POST
//! /admin/breakers/{upstream}`. A change applies at once here and, through
//! `fleet`, on every replica sharing Redis; it is logged as an audit line
//! and shows in `moat_ratelimit_limit_rps` / `moat_breaker_state`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::access::Caller;
use super::{audit, error, who};
use crate::error::{Error, Kind};
use crate::resilience::breaker::Forced;
use crate::state::AppState;
use crate::upstream::Protection;

/// `GET /admin/limits`: every upstream's limit.
pub async fn list(State(app): State<Arc<AppState>>) -> Response {
    let limits: serde_json::Map<String, serde_json::Value> = app
        .upstreams
        .protection()
        .map(|p| (p.system.name().to_string(), json!(p.limit())))
        .collect();
    axum::Json(limits).into_response()
}

/// The fields an operator may change; any subset.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitChange {
    rps: Option<u32>,
    burst: Option<u32>,
    checkout_reserve: Option<f64>,
    #[serde(default, with = "humantime_serde::option")]
    browse_wait: Option<Duration>,
}

/// `PUT /admin/limits/{upstream}` `{"rps": 50, "burst": 100, "checkout_reserve": 0.2}`.
pub async fn set(
    State(app): State<Arc<AppState>>,
    Path(upstream): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let protection = match find(&app, &upstream) {
        Ok(p) => p,
        Err(message) => return error(&Error::new(Kind::NotFound, message)),
    };
    let change: LimitChange = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return error(&Error::new(
                Kind::BadRequest,
                format!(
                    "expected any of {{\"rps\", \"burst\", \"checkout_reserve\", \"browse_wait\"}}: {e}"
                ),
            ));
        }
    };
    let old = protection.limit();
    let mut new = old;
    new.rps = change.rps.unwrap_or(old.rps);
    new.burst = change.burst.unwrap_or(old.burst);
    new.checkout_reserve = change.checkout_reserve.unwrap_or(old.checkout_reserve);
    new.browse_wait = change.browse_wait.unwrap_or(old.browse_wait);
    if let Some(problem) = new.problem() {
        return error(&Error::new(Kind::BadUserInput, problem));
    }
    let who = who(&caller, &headers);
    let fleet = app.fleet.set_limit(&protection, new, &who.name).await;
    audit(&app, &who, "limits.set", &upstream, json!(old), json!(new));
    answer(json!(new), fleet)
}

/// `DELETE /admin/limits/{upstream}`: back to the configured limit, on
/// every replica.
pub async fn reset(
    State(app): State<Arc<AppState>>,
    Path(upstream): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let protection = match find(&app, &upstream) {
        Ok(p) => p,
        Err(message) => return error(&Error::new(Kind::NotFound, message)),
    };
    let old = protection.limit();
    let who = who(&caller, &headers);
    let fleet = app.fleet.reset_limit(&protection, &who.name).await;
    let new = protection.limit();
    audit(
        &app,
        &who,
        "limits.reset",
        &upstream,
        json!(old),
        json!(new),
    );
    answer(json!(new), fleet)
}

/// The new state, and `"fleet"`: whether every replica sharing Redis takes
/// it too (false: only this one, Redis is not configured or away).
fn answer(mut state: serde_json::Value, fleet: bool) -> Response {
    state["fleet"] = json!(fleet);
    axum::Json(state).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakerAction {
    action: String,
}

/// `POST /admin/breakers/{upstream}` `{"action": "open" | "close" | "reset"}`.
/// `open` and `close` hold the breaker there until `reset` hands it back to
/// its thresholds.
pub async fn breaker(
    State(app): State<Arc<AppState>>,
    Path(upstream): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let protection = match find(&app, &upstream) {
        Ok(p) => p,
        Err(message) => return error(&Error::new(Kind::NotFound, message)),
    };
    let forced = match serde_json::from_slice::<BreakerAction>(&body).map(|a| a.action) {
        Ok(a) if a == "open" => Some(Forced::Open),
        Ok(a) if a == "close" => Some(Forced::Closed),
        Ok(a) if a == "reset" => None,
        Ok(a) => {
            return error(&Error::new(
                Kind::BadUserInput,
                format!("action {a:?} is not one of open, close, reset"),
            ));
        }
        Err(e) => {
            return error(&Error::new(
                Kind::BadRequest,
                format!("expected {{\"action\": ...}}: {e}"),
            ));
        }
    };
    let old = protection.breaker.report();
    let who = who(&caller, &headers);
    let fleet = app
        .fleet
        .force_breaker(&protection, forced, &who.name)
        .await;
    let new = protection.breaker.report();
    // Named for what was asked: a reset hands the breaker back to its
    // thresholds, which is not the same as holding it closed.
    let action = match forced {
        Some(Forced::Open) => "breaker.open",
        Some(Forced::Closed) => "breaker.close",
        None => "breaker.reset",
    };
    audit(
        &app,
        &who,
        action,
        &upstream,
        json!(old.state),
        json!(new.state),
    );
    answer(json!(new), fleet)
}

fn find(app: &AppState, upstream: &str) -> Result<Arc<Protection>, String> {
    app.upstreams
        .system(upstream)
        .map(|c| c.protection.clone())
        .ok_or_else(|| {
            let known: Vec<&str> = app
                .upstreams
                .systems
                .iter()
                .map(|c| c.system.name())
                .collect();
            format!("no upstream {upstream:?}; use one of {}", known.join(", "))
        })
}
