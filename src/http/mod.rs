//! The public listener: `/graphql`, health checks, and (later) signed
//! webhooks, with the inbound layers every request passes.

pub mod client_limit;
mod graphql;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;

pub fn router(app: Arc<AppState>) -> Router {
    let timeout = app.config().server.request_timeout;
    Router::new()
        .route(
            "/graphql",
            get(graphql::get)
                .post(graphql::post)
                .layer(middleware::from_fn_with_state(
                    app.client_limits.clone(),
                    client_limit::limit,
                )),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
        .layer(TraceLayer::new_for_http())
        // A request that outlives its deadline is answered 504, not hung.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            timeout,
        ))
}

/// Liveness: the process answers.
async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Readiness: accepting traffic (false while draining at shutdown).
async fn readyz(axum::extract::State(app): axum::extract::State<Arc<AppState>>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        axum::Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "draining" })),
        )
            .into_response()
    }
}
