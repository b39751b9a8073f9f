//! Body limits, one per route that takes a body: the body is read whole, up
//! to the route's limit (read per request, so a reload applies it), before
//! the handler runs; past it the route's own 413 answers. A declared
//! `Content-Length` past the limit is refused before anything is kept.
//!
//! Before a 413 for a declared length, a body of modest size is read and dropped
//! (within [`DRAIN_BYTES`] and [`DRAIN_TIME`]): a server that answers and
//! closes while the client is still writing resets the connection, and the
//! client sees a broken pipe instead of the 413 that says why.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

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
        if declared.is_some_and(|length| length <= DRAIN_BYTES) {
            drain(body).await;
        }
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

/// The most of a refused body read (and dropped) so its client hears the 413.
pub const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
/// How long a refused body is read for at most.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads and drops what is left of `body`, within the drain bounds.
async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}
