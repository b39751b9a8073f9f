//! `POST /events/{source}`: the HTTP face of `events`. The body is read up
//! to `[events] max_body_bytes` (413 past it); the answer is JSON, 200 with
//! the outcome, 202 when the event was dead-lettered, and the error table's
//! status otherwise, with `Retry-After` on 503 so the sender tries again.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{Error, Kind};
use crate::events::Outcome;
use crate::state::AppState;

pub async fn receive(
    State(app): State<Arc<AppState>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = app.events.settings().max_body_bytes.bytes() as usize;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        let e = Error::new(
            Kind::PayloadTooLarge,
            format!("an event is at most {limit} bytes"),
        );
        let label = app.events.source(&source).map_or("unknown", |s| s.name());
        crate::telemetry::event(label, "rejected");
        return refusal(&e);
    };
    match app.events.receive(&source, &headers, &bytes).await {
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
