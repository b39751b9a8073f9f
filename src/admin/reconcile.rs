//! Reconciliation and the mismatch path for SREs and the systems' owners:
//! `POST /admin/reconcile/{entity}` runs a pass now and answers its report,
//! `GET /admin/reconcile/last` the last reports, `GET
//! /admin/exceptions?system=&entity=&kind=&found_by=&since=&until=&limit=`
//! what was found to differ (an unknown filter is refused by name).

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::access::Caller;
use super::{audit, error, who};
use crate::domain::Timestamp;
use crate::error::{Error, Kind};
use crate::exceptions::{Filter, FoundBy, KINDS};
use crate::reconcile::Subject;
use crate::state::AppState;
use crate::vocab::Entity;

/// `POST /admin/reconcile/{entity}`.
pub async fn run(
    State(app): State<Arc<AppState>>,
    Path(entity): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let Some(subject) = Subject::from_spelling(&entity) else {
        return error(&Error::new(
            Kind::NotFound,
            format!(
                "{entity:?} is not one of prices, inventory, products, orders (or price, product, order)"
            ),
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

/// The filters `GET /admin/exceptions` takes.
const FILTERS: [&str; 7] = [
    "system", "entity", "kind", "found_by", "since", "until", "limit",
];

/// `GET /admin/exceptions`: `{"exceptions": [...]}`, newest first, those
/// every given filter matches.
pub async fn exceptions(
    State(app): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    match filter(&query) {
        Ok((filter, limit)) => {
            let list = app.exceptions.list(&filter, limit).await;
            axum::Json(json!({ "exceptions": list })).into_response()
        }
        Err(problem) => error(&Error::new(Kind::BadUserInput, problem)),
    }
}

/// The filter a query string asks for, and how many at most; what is
/// wrong with it, by name.
fn filter(query: &[(String, String)]) -> Result<(Filter, usize), String> {
    let mut filter = Filter::default();
    let mut limit = 100;
    let time = |name: &str, value: &str| {
        Timestamp::parse_rfc3339(value).ok_or_else(|| {
            format!("{name}: {value:?} is not an RFC 3339 time such as 2026-12-01T00:00:00Z")
        })
    };
    for (name, value) in query {
        let value = value.as_str();
        match name.as_str() {
            "system" => filter.system = Some(value.to_string()),
            // `prices` or `price`: exceptions name entities in the singular.
            "entity" => {
                let entity = Entity::from_spelling(value).map_or(value, |e| e.name());
                filter.entity = Some(entity.to_string());
            }
            "kind" => {
                if !KINDS.iter().any(|k| k.eq_ignore_ascii_case(value)) {
                    return Err(format!(
                        "kind: {value:?} is not one of {}",
                        KINDS.join(", ")
                    ));
                }
                filter.kind = Some(value.to_string());
            }
            "found_by" => {
                let Some(found_by) = FoundBy::from_name(value) else {
                    return Err(format!(
                        "found_by: {value:?} is not one of reconcile, checkout, contract"
                    ));
                };
                filter.found_by = Some(found_by);
            }
            "since" => filter.since = Some(time("since", value)?),
            "until" => filter.until = Some(time("until", value)?),
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .map_err(|_| format!("limit: {value:?} is not a whole number"))?
                    .clamp(1, 10_000);
            }
            other => {
                return Err(format!(
                    "unknown filter {other:?}; the filters are {}",
                    FILTERS.join(", ")
                ));
            }
        }
    }
    Ok((filter, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_are_read_by_name_and_unknown_ones_refused() {
        let (found, limit) = filter(&query(&[
            ("found_by", "checkout"),
            ("entity", "prices"),
            ("system", "erp"),
            ("kind", "price"),
            ("since", "2026-12-01T00:00:00Z"),
            ("limit", "5"),
        ]))
        .expect("a good filter");
        assert_eq!(found.found_by, Some(FoundBy::Checkout));
        assert_eq!(found.entity.as_deref(), Some("price"));
        assert_eq!(found.system.as_deref(), Some("erp"));
        assert!(found.since.is_some() && found.until.is_none());
        assert_eq!(limit, 5);

        let refused = |pairs: &[(&str, &str)]| filter(&query(pairs)).expect_err("refused");
        assert!(refused(&[("foundBy", "checkout")]).contains("unknown filter \"foundBy\""));
        assert!(refused(&[("found_by", "cart")]).contains("found_by: \"cart\""));
        assert!(refused(&[("since", "yesterday")]).contains("since:"));
        assert!(refused(&[("kind", "weird")]).contains("kind:"));
        assert!(refused(&[("limit", "ten")]).contains("limit:"));
    }
}
