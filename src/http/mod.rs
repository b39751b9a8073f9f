//! The public listener: `/graphql` (and GraphiQL's `/assets/`), health
//! checks and signed change events (`/events/{source}`), with the inbound
//! layers every request passes; in front of them, the response cache's
//! stored answers (`graphql::stored`).

mod assets;
pub mod client_limit;
mod events;
mod graphql;
mod reply;

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower::ServiceExt;
use tower_http::trace::TraceLayer;

use crate::error::{Error, Kind};
use crate::state::AppState;

/// What the public listener serves: a repeated anonymous query answered
/// from the response cache at the door, everything else by the router.
pub fn service(app: Arc<AppState>) -> impl crate::listener::Service {
    let router = router(app.clone());
    tower::service_fn(move |request: Request| {
        let (app, router) = (app.clone(), router.clone());
        async move {
            Ok::<_, Infallible>(match graphql::stored(&app, request) {
                ControlFlow::Break(answer) => answer,
                ControlFlow::Continue(request) => match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
            })
        }
    })
}

fn router(app: Arc<AppState>) -> Router {
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
        .route("/assets/{file}", get(assets::file))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/events/{source}", post(events::receive))
        .layer(middleware::from_fn_with_state(app.clone(), request_timeout))
        .with_state(app)
        .layer(TraceLayer::new_for_http())
}

/// A request that outlives `server.request_timeout` is answered 504 with a
/// coded error, not hung.
async fn request_timeout(
    State(app): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let timeout = app.config().server.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => reply::problem(
            reply::Media::Json,
            &Error::new(
                Kind::Timeout,
                format!("the request took longer than {timeout:?}"),
            ),
        ),
    }
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
