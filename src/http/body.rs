//! Body limits, one per route that takes a body: the body is read whole, up
//! to the route's limit (read per request, so a reload applies it), before
//! the handler runs; past it the route's own 413 answers. A declared
//! `Content-Length` past the limit is refused before anything is read.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// A route's limit and how it refuses a body past it.
#[derive(Clone)]
pub struct BodyLimit {
    app: Arc<AppState>,
    /// The largest body, in bytes, as the running config has it.
    pub max: fn(&AppState) -> usize,
    /// The route's answer to a body past `max` (its media type, its metric).
    too_large: fn(&AppState, &Parts, usize) -> Response,
}

impl BodyLimit {
    pub fn new(
        app: &Arc<AppState>,
        max: fn(&AppState) -> usize,
        too_large: fn(&AppState, &Parts, usize) -> Response,
    ) -> BodyLimit {
        BodyLimit {
            app: app.clone(),
            max,
            too_large,
        }
    }
}

/// The middleware: hands the handler the whole body, or refuses it.
pub async fn read_whole(State(limit): State<BodyLimit>, request: Request, next: Next) -> Response {
    let app = &*limit.app;
    let max = (limit.max)(app);
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return (limit.too_large)(app, &parts, max);
    }
    match axum::body::to_bytes(body, max).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(_) => (limit.too_large)(app, &parts, max),
    }
}
