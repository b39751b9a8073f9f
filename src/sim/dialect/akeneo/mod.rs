//! The akeneo dialect: Akeneo PIM's REST API v1 over the seeded catalog.
//!
//! - `POST /api/oauth/v1/token`: the password grant (and refresh), the
//!   client by HTTP Basic, the body JSON or a form. Any client, user and
//!   password will do unless the simulator has an OAuth client, whose id
//!   and secret then must match; what it insists on is the flow: every API
//!   call needs `Authorization: Bearer` with a token it issued, or gets
//!   Akeneo's 401 (`{"code": 401, "message": …}`).
//! - `GET /api/rest/v1/products-uuid` (a page; `search` by `uuid`, by the
//!   identifier attribute `sku`, by `categories`; `pagination_type` `page`
//!   or `search_after`; `limit` up to 100) and `/products-uuid/{uuid}`.
//! - `GET /api/rest/v1/categories` (paged) and `/categories/{code}`.
//!
//! Products and categories are the PIM's records: they are counted as
//! protocol v1's `pim.products` and `pim.categories` and meet the pim's
//! faults, and a malformed answer is broken in Akeneo's shape (an item
//! without its uuid, identifier, name, categories or update time, or with
//! one of the wrong type). Akeneo holds no prices, stock, customers or
//! orders, so this dialect serves none. Product changes are sent as the
//! Events API sends them (`product.updated`, the whole product as
//! `data.resource`, signed with `X-Akeneo-Request-Signature`).

mod event;
mod search;
mod shape;
mod token;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::super::auth::Denied;
use super::super::corrupt::{Breakage, Shape};
use super::super::faults::System;
use super::super::stats::Endpoint;
use super::super::{Refusal, Simulator};
pub use event::event;
use shape::{API, Embedded, Href, Page, PageLinks, ProductDoc};

/// A page of products or categories as it can be broken.
static PRODUCT_PAGE: Breakage = Breakage {
    list: Some("/_embedded/items"),
    required: PRODUCT_FIELDS,
    wrong_types: PRODUCT_TYPES,
};
static PRODUCT: Breakage = Breakage {
    list: None,
    required: PRODUCT_FIELDS,
    wrong_types: PRODUCT_TYPES,
};
const PRODUCT_FIELDS: &[&str] = &[
    "/uuid",
    "/values/sku",
    "/values/name",
    "/categories",
    "/updated",
];
const PRODUCT_TYPES: &[(&str, &str)] = &[
    ("/values/name", "\"Lamp\""),
    ("/categories", "\"cat-01\""),
    ("/updated", "17"),
];
static CATEGORY_PAGE: Breakage = Breakage {
    list: Some("/_embedded/items"),
    required: CATEGORY_FIELDS,
    wrong_types: CATEGORY_TYPES,
};
static CATEGORY: Breakage = Breakage {
    list: None,
    required: CATEGORY_FIELDS,
    wrong_types: CATEGORY_TYPES,
};
const CATEGORY_FIELDS: &[&str] = &["/code", "/updated"];
const CATEGORY_TYPES: &[(&str, &str)] = &[("/labels", "\"Chairs\""), ("/parent", "12")];

/// Page size when `limit` is not given, and the most it may be.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;
/// Offset paging stops here; past it Akeneo asks for `search_after`.
const MAX_OFFSET: usize = 10_000;

pub fn routes(sim: &Simulator) -> Router<Simulator> {
    Router::new()
        .route(&format!("{API}/products-uuid"), get(products))
        .route(&format!("{API}/products-uuid/{{uuid}}"), get(product))
        .route(&format!("{API}/categories"), get(categories))
        .route(&format!("{API}/categories/{{code}}"), get(category))
        .route_layer(middleware::from_fn_with_state(sim.clone(), door))
        .route("/api/oauth/v1/token", post(token::token))
}

/// Akeneo's error: `{"code": status, "message": …}`.
fn error(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(shape::error_body(status.as_u16(), message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A refusal of the shared mechanisms (faults, encoding) in Akeneo's shape.
fn refused(refusal: Refusal) -> Response {
    error(refusal.status, &refusal.message)
}

fn unprocessable(message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// Before every API route: served (the pim's records), traced, and
/// authorised with a token the token endpoint issued; a refusal is not
/// counted but as `unauthorized`, as in protocol v1.
async fn door(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    if !sim.inner.served[System::Pim as usize] {
        return error(StatusCode::NOT_FOUND, "this simulator does not serve pim");
    }
    sim.inner.stats.trace_context(System::Pim.name(), &request);
    match sim.inner.auth.check_issued(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(denied) => {
            sim.inner.stats.unauthorized();
            let message = match denied {
                Denied::Missing => "Authentication is required",
                Denied::Invalid => "The access token provided is invalid.",
            };
            let mut response = error(StatusCode::UNAUTHORIZED, message);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="Service""#),
            );
            response
        }
    }
}

/// The PIM's own URL, as links in its answers carry it.
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

type Params = Vec<(String, String)>;

fn params(q: Result<Query<Params>, QueryRejection>) -> Result<Params, Refusal> {
    q.map(|Query(p)| p)
        .map_err(|e| Refusal::bad_request(e.body_text()))
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `limit`: 10 unless given, at most 100 (above is a 422, as Akeneo has it).
fn limit(params: &Params) -> Result<usize, Refusal> {
    match param(params, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n > MAX_LIMIT => Err(unprocessable(format!(
                "You cannot request more than {MAX_LIMIT} items."
            ))),
            Ok(n) if n > 0 => Ok(n),
            _ => Err(unprocessable(format!(
                "\"{raw}\" is not a valid limit number."
            ))),
        },
    }
}

/// What a query value escapes: all but RFC 3986's unreserved characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `path?params` on the PIM's URL, with `set` replacing (or, `None`,
/// removing) parameters of the request.
fn href(base: &str, path: &str, params: &Params, set: &[(&str, Option<String>)]) -> Href {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !set.iter().any(|(name, _)| name == k))
        .cloned()
        .collect();
    for (name, value) in set {
        if let Some(value) = value {
            pairs.push(((*name).to_owned(), value.clone()));
        }
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY),
                utf8_percent_encode(v, QUERY)
            )
        })
        .collect();
    let sep = if query.is_empty() { "" } else { "?" };
    Href {
        href: format!("{base}{path}{sep}{}", query.join("&")),
    }
}

/// `GET /api/rest/v1/products-uuid`.
async fn products(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    q: Result<Query<Params>, QueryRejection>,
) -> Response {
    const ENDPOINT: Endpoint = Endpoint::PimProducts;
    let corrupt = match sim.arrive(ENDPOINT).await {
        Ok(corrupt) => corrupt,
        Err(refusal) => return refused(refusal),
    };
    list_products(&sim, &headers, q, corrupt).unwrap_or_else(refused)
}

fn list_products(
    sim: &Simulator,
    headers: &HeaderMap,
    q: Result<Query<Params>, QueryRejection>,
    corrupt: Option<u64>,
) -> Result<Response, Refusal> {
    let params = params(q)?;
    let limit = limit(&params)?;
    let search = match param(&params, "search") {
        Some(text) => search::parse(text).map_err(|r| {
            let status = StatusCode::from_u16(r.code).unwrap_or(StatusCode::BAD_REQUEST);
            Refusal::new(status, r.message)
        })?,
        None => search::Search::default(),
    };
    let search_after = match param(&params, "pagination_type") {
        None | Some("page") => false,
        Some("search_after") => true,
        Some(other) => {
            return Err(unprocessable(format!(
                "Pagination type \"{other}\" is not supported."
            )));
        }
    };
    let base = base(headers);
    let path = format!("{API}/products-uuid");
    let catalog = sim.read();
    let set = search::select(&catalog, &search);
    let (start, page) = if search_after {
        let start = match param(&params, "search_after") {
            None => 0,
            Some(after) => {
                let index = shape::index_of(&catalog, after).ok_or_else(|| {
                    unprocessable("search_after is not a cursor this server issued")
                })?;
                set.first_at(index + 1)
            }
        };
        (start, None)
    } else {
        let page = match param(&params, "page") {
            None => 1,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| unprocessable(format!("\"{raw}\" is not a valid page number.")))?,
        };
        let offset = (page - 1).saturating_mul(limit);
        if offset >= MAX_OFFSET {
            return Err(unprocessable(
                "You have reached the maximum number of pages you can retrieve with the \"page\" pagination type. Please use the search after pagination type instead",
            ));
        }
        (offset.min(set.len()), Some(page))
    };
    let end = start.saturating_add(limit).min(set.len());
    let items: Vec<ProductDoc<'_>> = (start..end)
        .map(|position| {
            let index = set.at(position);
            ProductDoc {
                base: Some(&base),
                index,
                product: &catalog.products[index],
            }
        })
        .collect();
    let more = end < set.len();
    let (first, previous, next) = match page {
        Some(page) => (
            href(&base, &path, &params, &[("page", Some("1".into()))]),
            (page > 1).then(|| {
                href(
                    &base,
                    &path,
                    &params,
                    &[("page", Some((page - 1).to_string()))],
                )
            }),
            more.then(|| {
                href(
                    &base,
                    &path,
                    &params,
                    &[("page", Some((page + 1).to_string()))],
                )
            }),
        ),
        None => (
            href(&base, &path, &params, &[("search_after", None)]),
            None,
            more.then(|| {
                let last = shape::uuid(set.at(end - 1));
                href(&base, &path, &params, &[("search_after", Some(last))])
            }),
        ),
    };
    let payload = Page {
        links: PageLinks {
            this: href(&base, &path, &params, &[]),
            first,
            previous,
            next,
        },
        current_page: page.map(|p| p as u64),
        embedded: Embedded { items: &items },
    };
    let shape = Shape::Foreign(&PRODUCT_PAGE);
    sim.reply(Endpoint::PimProducts, shape, corrupt, items.len(), &payload)
}

/// `GET /api/rest/v1/products-uuid/{uuid}`.
async fn product(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    uuid: Result<Path<String>, PathRejection>,
) -> Response {
    const ENDPOINT: Endpoint = Endpoint::PimProducts;
    let corrupt = match sim.arrive(ENDPOINT).await {
        Ok(corrupt) => corrupt,
        Err(refusal) => return refused(refusal),
    };
    let Ok(Path(uuid)) = uuid else {
        return error(StatusCode::BAD_REQUEST, "the uuid is not valid UTF-8");
    };
    let base = base(&headers);
    let catalog = sim.read();
    let Some(index) = shape::index_of(&catalog, &uuid) else {
        let message = format!(
            "Product \"{uuid}\" does not exist or you do not have permission to access it."
        );
        return error(StatusCode::NOT_FOUND, &message);
    };
    let doc = ProductDoc {
        base: Some(&base),
        index,
        product: &catalog.products[index],
    };
    sim.reply(ENDPOINT, Shape::Foreign(&PRODUCT), corrupt, 1, &doc)
        .unwrap_or_else(refused)
}

/// `GET /api/rest/v1/categories`: offset pages only, as Akeneo has them.
async fn categories(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    q: Result<Query<Params>, QueryRejection>,
) -> Response {
    const ENDPOINT: Endpoint = Endpoint::PimCategories;
    let corrupt = match sim.arrive(ENDPOINT).await {
        Ok(corrupt) => corrupt,
        Err(refusal) => return refused(refusal),
    };
    let page = || -> Result<Response, Refusal> {
        let params = params(q)?;
        let limit = limit(&params)?;
        let page = match param(&params, "page") {
            None => 1,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| unprocessable(format!("\"{raw}\" is not a valid page number.")))?,
        };
        let base = base(&headers);
        let path = format!("{API}/categories");
        let catalog = sim.read();
        let all = &catalog.categories;
        let start = (page - 1).saturating_mul(limit).min(all.len());
        let end = start.saturating_add(limit).min(all.len());
        let items: Vec<serde_json::Value> = all[start..end]
            .iter()
            .map(|c| shape::category(&base, c))
            .collect();
        let at = |p: usize| href(&base, &path, &params, &[("page", Some(p.to_string()))]);
        let payload = Page {
            links: PageLinks {
                this: href(&base, &path, &params, &[]),
                first: at(1),
                previous: (page > 1).then(|| at(page - 1)),
                next: (end < all.len()).then(|| at(page + 1)),
            },
            current_page: Some(page as u64),
            embedded: Embedded { items: &items },
        };
        let shape = Shape::Foreign(&CATEGORY_PAGE);
        sim.reply(ENDPOINT, shape, corrupt, items.len(), &payload)
    };
    page().unwrap_or_else(refused)
}

/// `GET /api/rest/v1/categories/{code}`.
async fn category(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    code: Result<Path<String>, PathRejection>,
) -> Response {
    const ENDPOINT: Endpoint = Endpoint::PimCategories;
    let corrupt = match sim.arrive(ENDPOINT).await {
        Ok(corrupt) => corrupt,
        Err(refusal) => return refused(refusal),
    };
    let Ok(Path(code)) = code else {
        return error(StatusCode::BAD_REQUEST, "the code is not valid UTF-8");
    };
    let base = base(&headers);
    let catalog = sim.read();
    let Some(found) = catalog.categories.iter().find(|c| c.id == code) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Category \"{code}\" does not exist."),
        );
    };
    let doc = shape::category(&base, found);
    sim.reply(ENDPOINT, Shape::Foreign(&CATEGORY), corrupt, 1, &doc)
        .unwrap_or_else(refused)
}
