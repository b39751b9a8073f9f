//! Reconciliation and the mismatch path for SREs and the systems' owners:
//! `POST /admin/reconcile/{entity}` runs a pass now and answers its report,
//! `GET /admin/reconcile/last` the last reports, `GET
//! /admin/exceptions?system=&entity=&limit=` what was found to differ.

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::access::Caller;
use super::{audit, error, who};
use crate::error::{Error, Kind};
use crate::reconcile::Subject;
use crate::state::AppState;

/// `POST /admin/reconcile/{entity}`.
pub async fn run(
    State(app): State<Arc<AppState>>,
    Path(entity): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let Some(subject) = Subject::from_name(&entity) else {
        return error(&Error::new(
            Kind::NotFound,
            format!("{entity:?} is not one of prices, inventory, products, orders"),
        ));
    };
    match app.reconciler.run(subject).await {
        Ok(report) => {
            audit(
                &app,
                &who(&caller, &headers),
                "reconcile.run",
                subject.name(),
                json!(null),
                json!({ "checked": report.checked, "drifted": report.drifted }),
            );
            axum::Json(report).into_response()
        }
        Err(e) => error(&e),
    }
}

/// `GET /admin/reconcile/last`: `{"reports": [...]}`, newest first.
pub async fn last(State(app): State<Arc<AppState>>) -> Response {
    axum::Json(json!({ "reports": app.reconciler.last().await })).into_response()
}

#[derive(Deserialize)]
pub struct Filter {
    system: Option<String>,
    entity: Option<String>,
    limit: Option<usize>,
}

/// `GET /admin/exceptions`: `{"exceptions": [...]}`, newest first.
pub async fn exceptions(
    State(app): State<Arc<AppState>>,
    Query(filter): Query<Filter>,
) -> Response {
    let limit = filter.limit.unwrap_or(100).clamp(1, 10_000);
    let list = app
        .exceptions
        .list(filter.system.as_deref(), filter.entity.as_deref(), limit)
        .await;
    axum::Json(json!({ "exceptions": list })).into_response()
}
