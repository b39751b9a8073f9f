//! Dead letters for SREs: `GET /admin/dlq` (paged; each entry names the
//! record its event is about), `POST /admin/dlq/replay` (`{"ids": [...]}`,
//! none: all), `DELETE /admin/dlq/{id}`. Replays and discards are audited.
//! The queue lives in Redis: without it every route answers 503
//! `REDIS_UNAVAILABLE`, saying so.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

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

/// Why the queue cannot be used: it needs Redis, which is either not
/// configured or not answering.
fn unavailable(app: &AppState) -> Error {
    let why = if app.redis.is_some() {
        "the dead-letter queue lives in Redis, which is not reachable now; retry when it is back"
    } else {
        "the dead-letter queue needs Redis: set [redis] url (or MOAT_REDIS_URL) to keep dead letters"
    };
    Error::new(Kind::RedisUnavailable, why)
}

/// `GET /admin/dlq?after=&limit=`: `{"depth", "items": [...], "next"}`;
/// each item with `record`, what its event is about.
pub async fn list(State(app): State<Arc<AppState>>, Query(page): Query<Page>) -> Response {
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let queue = app.events.dead_letters();
    let (Ok((items, next)), Ok(depth)) = (
        queue.list(page.after.as_deref(), limit).await,
        queue.depth().await,
    ) else {
        return error(&unavailable(&app));
    };
    let items: Vec<Value> = items
        .iter()
        .map(|letter| {
            let mut item = json!(letter);
            item["record"] = record(&letter.kind, &letter.envelope);
            item
        })
        .collect();
    axum::Json(json!({ "depth": depth, "items": items, "next": next })).into_response()
}

/// The record a parked event is about, from its envelope: `{kind, id}`
/// (with `segment` and `currency` for a price when the event names them),
/// from a thin event's `entity` or a fat event's item; null when neither
/// says.
fn record(event_type: &str, envelope: &str) -> Value {
    let Ok(event) = serde_json::from_str::<Value>(envelope) else {
        return Value::Null;
    };
    let kind = event_type.split('.').next().unwrap_or(event_type);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let (id, segment, currency) = match (event.get("entity"), event.get("data")) {
        (Some(entity), _) if entity.is_object() => (
            text(entity, "id"),
            text(entity, "segment"),
            text(entity, "currency"),
        ),
        (_, Some(data)) => (
            text(data, "sku").or_else(|| text(data, "id")),
            text(data, "segment"),
            text(data, "currency"),
        ),
        _ => (None, None, None),
    };
    let Some(id) = id else {
        return Value::Null;
    };
    let mut named = json!({ "kind": kind, "id": id });
    if let Some(segment) = segment {
        named["segment"] = json!(segment);
    }
    if let Some(currency) = currency {
        named["currency"] = json!(currency);
    }
    named
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
    if app.redis.is_none() {
        return error(&unavailable(&app));
    }
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
        Err(e) if e.kind() == Kind::UpstreamUnavailable => error(&unavailable(&app)),
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
        Err(_) => error(&unavailable(&app)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_names_its_record_thin_or_fat() {
        let thin = r#"{"id":"e1","type":"price.updated","source":"erp","entity":{"kind":"price","id":"SKU-1","segment":"vip","currency":"EUR"},"version":3}"#;
        assert_eq!(
            record("price.updated", thin),
            json!({"kind": "price", "id": "SKU-1", "segment": "vip", "currency": "EUR"})
        );
        let fat = r#"{"id":"e2","type":"inventory.updated","source":"erp","data":{"sku":"SKU-2","available":4}}"#;
        assert_eq!(
            record("inventory.updated", fat),
            json!({"kind": "inventory", "id": "SKU-2"})
        );
        let product =
            r#"{"id":"e3","type":"product.deleted","source":"pim","data":{"id":"prod-9"}}"#;
        assert_eq!(
            record("product.deleted", product),
            json!({"kind": "product", "id": "prod-9"})
        );
        assert_eq!(record("price.updated", "not json"), Value::Null);
        assert_eq!(record("price.updated", r#"{"id":"e4"}"#), Value::Null);
    }
}
