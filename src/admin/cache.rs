//! `POST /admin/cache/purge`: an operator drops cached entries on every
//! replica.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::access::Caller;
use super::{audit, error, who};
use crate::cache::Target;
use crate::error::{Error, Kind};
use crate::state::AppState;
use crate::vocab::Entity;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    entity: String,
    /// Without ids: the whole entity.
    ids: Option<Vec<String>>,
}

/// `POST /admin/cache/purge`: drops keys here, in L2, and on every replica.
pub async fn purge(
    State(app): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let purge: Purge = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error(&Error::new(
                Kind::BadRequest,
                format!("expected {{\"entity\", \"ids\"?}}: {e}"),
            ));
        }
    };
    let target = match &purge.ids {
        Some(ids) if ids.is_empty() => {
            return error(&Error::new(
                Kind::BadUserInput,
                "`ids` is empty; leave it out to purge the whole entity",
            ));
        }
        Some(ids) => Target::Ids(ids.clone()),
        None => Target::All,
    };
    let Some(entity) = Entity::from_spelling(&purge.entity) else {
        return error(&Error::new(
            Kind::BadUserInput,
            format!(
                "entity: {:?} is not one of {}",
                purge.entity,
                app.invalidator.entities().join(", ")
            ),
        ));
    };
    match app.invalidator.invalidate(entity, target, None).await {
        Ok(()) => {
            audit(
                &app,
                &who(&caller, &headers),
                "cache.purge",
                entity.name(),
                json!(null),
                json!(purge.ids),
            );
            axum::Json(json!({ "purged": entity.name(), "ids": purge.ids })).into_response()
        }
        Err(e) => error(&e),
    }
}
