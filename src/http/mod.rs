//! The public listener: `/graphql` (and GraphiQL's `/assets/`), health
//! checks and signed change events (`/events/{source}`), behind the inbound
//! stack `service` builds, layer by layer, in one place.

mod assets;
mod body;
pub mod client_addr;
pub mod client_limit;
mod events;
mod graphql;
pub mod lane;
mod reply;

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower::ServiceExt;
use tower_http::trace::TraceLayer;

use self::body::BodyLimit;
pub use self::lane::Lane;
use crate::error::{Error, Kind};
use crate::state::AppState;

/// The public listener's inbound stack, built from the handlers out: each
/// layer wraps the ones above it, and says why it sits there. In front of
/// all of it, `listener::serve` holds each connection to its limits (how
/// many, how slow its headers, how long idle) and sets `ConnectInfo`.
/// Requests the door does not answer run on `lane`.
pub fn service(app: Arc<AppState>, lane: Arc<Lane>) -> impl crate::listener::Service {
    let graphql_body = BodyLimit::new(&app, graphql_body_max, graphql::too_large);
    let graphql = get(graphql::get)
        .post(graphql::post)
        // The body, whole and within `server.max_body_bytes`, before the
        // handler decodes it; the 413 in the media type asked for.
        .layer(middleware::from_fn_with_state(
            graphql_body,
            body::read_whole,
        ))
        // Per client, outside the body limit: a client over its limit costs
        // a counter, not the read of its body.
        .layer(middleware::from_fn_with_state(
            app.client_limits.clone(),
            client_limit::limit,
        ))
        // Who the client is (its address, or the one a trusted proxy
        // names), for the per-client and sign-in limits.
        .layer(middleware::from_fn_with_state(
            app.clone(),
            client_addr::resolve,
        ));
    let event_body = BodyLimit::new(&app, event_body_max, events::too_large);
    let events = post(events::receive)
        // The body, whole and within `[events] max_body_bytes`, before its
        // signature is checked over it; the 413 counted as a rejected event
        // of its source.
        .layer(middleware::from_fn_with_state(event_body, body::read_whole));
    let routes = Router::new()
        .route("/graphql", graphql)
        .route("/events/{source}", events)
        .route("/assets/{file}", get(assets::file))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app.clone())
        // axum's own body limit off: the routes' limits above are the ones
        // that apply, and may be larger than its 2MiB.
        .layer(DefaultBodyLimit::disable())
        // Every routed request within `server.request_timeout`, body reads
        // included: a trickled upload ends in a 504, not a held task.
        .layer(middleware::from_fn_with_state(app.clone(), request_timeout))
        // Traced outside the timeout, so a 504 is traced like any answer.
        .layer(TraceLayer::new_for_http());
    // Outermost, the door: a repeated query answered from its stored bytes
    // before routing, tracing, the timeout and decoding, the steady state
    // of a storefront (`benches/cache_hit.rs`). It takes a body only when
    // it came whole with the head and within `/graphql`'s limit, and hands
    // everything else on untouched, to the full path's own threads.
    door(app, routes, lane)
}

/// `/graphql`'s body limit, which the door holds bodies to as well.
fn graphql_body_max(app: &AppState) -> usize {
    app.config().server.max_body_bytes.bytes() as usize
}

fn event_body_max(app: &AppState) -> usize {
    app.events.settings().max_body_bytes.bytes() as usize
}

/// Answers what `graphql::stored` can, and passes the rest to `routes`
/// on the `lane`.
fn door(app: Arc<AppState>, routes: Router, lane: Arc<Lane>) -> impl crate::listener::Service {
    tower::service_fn(move |request: Request| {
        let (app, routes, lane) = (app.clone(), routes.clone(), lane.clone());
        async move {
            Ok::<_, Infallible>(match graphql::stored(&app, request, graphql_body_max) {
                ControlFlow::Break(answer) => {
                    lane.answered_at_door();
                    answer
                }
                ControlFlow::Continue(request) => {
                    let routed = async move {
                        match routes.oneshot(request).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        }
                    };
                    lane.run(routed).await
                }
            })
        }
    })
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
