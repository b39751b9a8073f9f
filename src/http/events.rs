//! `POST /events/{source}`: the HTTP face of `events`. The body arrives
//! whole, within `[events] max_body_bytes` (the inbound stack answers 413
//! past it); the answer is JSON, 200 with the outcome, 202 when the event
//! was dead-lettered, and the error table's status otherwise, with
//! `Retry-After` on 503 so the sender tries again.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::error::{Error, Kind};
use crate::events::Outcome;
use crate::state::AppState;

/// `body` is whole and within `[events] max_body_bytes` (the inbound
/// stack's body limit).
pub async fn receive(
    State(app): State<Arc<AppState>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match app.events.receive(&source, &headers, &body).await {
        Ok(receipts) => {
            let parked = receipts.iter().any(|r| r.outcome == Outcome::DeadLettered);
            let status = if parked {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            // One event (Moat's form): its receipt. A system's own
            // delivery may hold none or several: each one's.
            match receipts.as_slice() {
                [one] => (status, axum::Json(one)).into_response(),
                all => (status, axum::Json(json!({ "events": all }))).into_response(),
            }
        }
        Err(e) => refusal(&e),
    }
}

/// 413 for an event past `max` bytes, counted as its source's rejection.
pub fn too_large(app: &AppState, request: &Parts, max: usize) -> Response {
    let source = request.uri.path().rsplit('/').next().unwrap_or("");
    let label = app.events.source(source).map_or("unknown", |s| s.name());
    crate::telemetry::event(label, "rejected");
    refusal(&Error::new(
        Kind::PayloadTooLarge,
        format!("an event is at most {max} bytes"),
    ))
}

/// `{"error", "code"}` with the table's status (webhook senders are not
/// GraphQL clients).
fn refusal(e: &Error) -> Response {
    let body = json!({ "error": e.public_message(), "code": e.kind().code() });
    let mut response = (e.kind().status(), axum::Json(body)).into_response();
    if e.kind().status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    response
}
