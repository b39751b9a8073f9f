//! Dead letters for SREs: `GET /admin/dlq` (paged), `POST
//! /admin/dlq/replay` (`{"ids": [...]}`, none: all), `DELETE
//! /admin/dlq/{id}`. Replays and discards are audited.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::access::Caller;
use super::{audit, error, who};
use crate::error::{Error, Kind};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Page {
    /// Continue after this queue id (the previous page's `next`).
    after: Option<String>,
    limit: Option<usize>,
}

fn unavailable() -> Error {
    Error::unavailable(
        "the dead-letter queue lives in Redis, which is not configured or not reachable",
    )
}

/// `GET /admin/dlq?after=&limit=`: `{"depth", "items": [...], "next"}`.
pub async fn list(State(app): State<Arc<AppState>>, Query(page): Query<Page>) -> Response {
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let queue = app.events.dead_letters();
    let (Ok((items, next)), Ok(depth)) = (
        queue.list(page.after.as_deref(), limit).await,
        queue.depth().await,
    ) else {
        return error(&unavailable());
    };
    axum::Json(json!({ "depth": depth, "items": items, "next": next })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Replay {
    ids: Option<Vec<String>>,
}

/// `POST /admin/dlq/replay`: `{"replayed": [...], "failed": [{id, reason}]}`.
pub async fn replay(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let replay: Replay = if body.iter().all(u8::is_ascii_whitespace) {
        Replay { ids: None }
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(&Error::new(
                    Kind::BadRequest,
                    format!("expected {{\"ids\"?: [...]}}: {e}"),
                ));
            }
        }
    };
    match app.events.replay(replay.ids.clone()).await {
        Ok(report) => {
            audit(
                &app,
                &who(&caller, &headers),
                "dlq.replay",
                "dlq",
                json!(replay.ids),
                json!(report.replayed),
            );
            axum::Json(report).into_response()
        }
        Err(e) => error(&e),
    }
}

/// `DELETE /admin/dlq/{id}`.
pub async fn discard(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    match app.events.dead_letters().remove(&id).await {
        Ok(true) => {
            audit(
                &app,
                &who(&caller, &headers),
                "dlq.discard",
                &id,
                json!(id),
                json!(null),
            );
            axum::Json(json!({ "discarded": id })).into_response()
        }
        Ok(false) => error(&Error::new(
            Kind::NotFound,
            format!("no dead letter {id:?}"),
        )),
        Err(_) => error(&unavailable()),
    }
}
