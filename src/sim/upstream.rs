//! The protocol v1 routes of the simulated systems of record: what a real
//! PIM, ERP, OMS and CRM connector would expose to Moat.
//!
//! Each system's routes sit behind [`door`] (served? authorised?), then each
//! handler counts the call, lets the system's faults act, validates, then
//! renders under the catalog's read lock (never across an await).

use std::collections::HashSet;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::corrupt::Shape;
use super::faults::System;
use super::stats::Endpoint;
use super::wire::{Items, Page, QuoteRequest, currency_index, segment_index};
use super::{Refusal, Simulator, error};

/// How an upstream declares the protocol version it speaks, on every
/// protocol response.
const PROTOCOL_HEADER: HeaderName = HeaderName::from_static("moat-protocol");

/// The protocol routes of `system`, behind its door.
pub fn routes(sim: &Simulator, system: System) -> Router<Simulator> {
    let routes = match system {
        System::Pim => Router::new()
            .route("/pim/v1/products", get(products))
            .route("/pim/v1/categories", get(categories)),
        System::Erp => Router::new()
            .route("/erp/v1/prices", get(prices))
            .route("/erp/v1/inventory", get(inventory))
            .route("/erp/v1/offers", get(offers))
            .route("/erp/v1/quote", post(quote)),
        System::Oms => Router::new().route("/oms/v1/orders/{id}", get(order)),
        System::Crm => Router::new()
            .route("/crm/v1/customers/by-token/{token}", get(customer))
            .route("/crm/v1/customers/{id}", get(customer_by_id)),
    };
    // A route layer: the door guards these routes only, never the 404
    // fallback; a wrong method still gets the router's plain JSON 405.
    routes.route_layer(middleware::from_fn_with_state((sim.clone(), system), door))
}

/// Runs before a protocol handler, so nothing it refuses is counted or
/// meets faults: a system this simulator does not play is a 404, a call
/// without an acceptable token a 401 (counted as `unauthorized`). Whatever
/// a served system answers declares its protocol. Every call to a served
/// system has its trace context recorded, as a traced upstream would.
async fn door(
    State((sim, system)): State<(Simulator, System)>,
    request: Request,
    next: Next,
) -> Response {
    if !sim.inner.served[system as usize] {
        let message = format!("this simulator does not serve {}", system.name());
        return error(StatusCode::NOT_FOUND, &message);
    }
    sim.inner.stats.trace_context(system.name(), &request);
    let mut response = match sim.inner.auth.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(denied) => {
            sim.inner.stats.unauthorized();
            denied.into_response()
        }
    };
    response
        .headers_mut()
        .insert(PROTOCOL_HEADER, sim.inner.protocol.clone());
    response
}

/// Most ids, skus or quote lines one request may carry.
pub const MAX_BATCH: usize = 500;
pub const DEFAULT_LIMIT: usize = 20;
/// Larger `limit`s are clamped to this, as most paging APIs do.
pub const MAX_LIMIT: usize = 100;

#[derive(Deserialize)]
pub struct ProductsQuery {
    ids: Option<String>,
    skus: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
    #[serde(rename = "categoryId")]
    category_id: Option<String>,
}

#[derive(Deserialize)]
pub struct PricesQuery {
    skus: Option<String>,
    segment: Option<String>,
    currency: Option<String>,
}

#[derive(Deserialize)]
pub struct InventoryQuery {
    skus: Option<String>,
}

/// Splits `a,b,c`, dropping empty entries and repeats (first one wins, so
/// the response follows request order).
fn split_keys<'a>(list: &'a str, what: &str) -> Result<Vec<&'a str>, Refusal> {
    let keys: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect();
    if keys.len() > MAX_BATCH {
        return Err(Refusal::bad_request(format!(
            "at most {MAX_BATCH} {what} per request, got {}",
            keys.len()
        )));
    }
    let mut seen = HashSet::with_capacity(keys.len());
    Ok(keys.into_iter().filter(|k| seen.insert(*k)).collect())
}

/// Query parameters, or a JSON 400 instead of axum's plain-text one.
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Refusal> {
    query
        .map(|Query(q)| q)
        .map_err(|e| Refusal::bad_request(e.body_text()))
}

/// A path segment, or a JSON 400 when it is not valid UTF-8.
pub(super) fn path(segment: Result<Path<String>, PathRejection>) -> Result<String, Refusal> {
    segment
        .map(|Path(s)| s)
        .map_err(|e| Refusal::bad_request(e.body_text()))
}

fn parse_limit(limit: Option<&str>) -> Result<usize, Refusal> {
    match limit {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(raw) => match raw.parse::<usize>() {
            Ok(0) | Err(_) => Err(Refusal::bad_request("limit must be a positive integer")),
            Ok(n) => Ok(n.min(MAX_LIMIT)),
        },
    }
}

/// `GET /pim/v1/products`: a batch by `ids` or `skus`, else a page.
pub async fn products(
    State(sim): State<Simulator>,
    q: Result<Query<ProductsQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::PimProducts;
    let corrupt = sim.arrive(ENDPOINT).await?;
    let q = query(q)?;
    let batch = match (&q.ids, &q.skus) {
        (Some(_), Some(_)) => return Err(Refusal::bad_request("give ids or skus, not both")),
        (Some(ids), None) => Some((split_keys(ids, "ids")?, false)),
        (None, Some(skus)) => Some((split_keys(skus, "skus")?, true)),
        (None, None) => None,
    };
    let catalog = sim.read();
    if let Some((keys, by_sku)) = batch {
        let items: Vec<_> = keys
            .into_iter()
            .filter_map(|k| {
                if by_sku {
                    catalog.product_by_sku(k)
                } else {
                    catalog.product_by_id(k)
                }
            })
            .map(|i| &catalog.products[i])
            .collect();
        let payload = Items { items: &items };
        return sim.reply(ENDPOINT, Shape::Products, corrupt, items.len(), &payload);
    }
    let limit = parse_limit(q.limit.as_deref())?;
    let (items, next_cursor) = catalog
        .page(q.category_id.as_deref(), q.cursor.as_deref(), limit)
        .map_err(|_| Refusal::bad_request("cursor is not one this server issued"))?;
    let page = Page {
        items: &items,
        next_cursor,
    };
    sim.reply(ENDPOINT, Shape::Products, corrupt, items.len(), &page)
}

/// `GET /pim/v1/categories`: all of them.
pub async fn categories(State(sim): State<Simulator>) -> Result<Response, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::PimCategories;
    let corrupt = sim.arrive(ENDPOINT).await?;
    let catalog = sim.read();
    let items = &catalog.categories;
    sim.reply(
        ENDPOINT,
        Shape::Categories,
        corrupt,
        items.len(),
        &Items { items },
    )
}

/// Resolves `segment` and `currency` (defaults `default` and `EUR`).
fn price_list(segment: Option<&str>, currency: Option<&str>) -> Result<(usize, usize), Refusal> {
    let segment = segment.filter(|s| !s.is_empty()).unwrap_or("default");
    let currency = currency.filter(|c| !c.is_empty()).unwrap_or("EUR");
    let s = segment_index(segment).ok_or_else(|| {
        Refusal::bad_request(format!(
            "unknown segment {segment:?}; known: default, wholesale, vip"
        ))
    })?;
    let c = currency_index(currency).ok_or_else(|| {
        Refusal::bad_request(format!("unknown currency {currency:?}; known: EUR, USD"))
    })?;
    Ok((s, c))
}

/// The `skus` parameter the ERP list routes require.
fn required_skus(skus: Option<&str>) -> Result<Vec<&str>, Refusal> {
    split_keys(
        skus.ok_or_else(|| Refusal::bad_request("skus is required"))?,
        "skus",
    )
}

/// `GET /erp/v1/prices?skus=…&segment=…&currency=…`.
pub async fn prices(
    State(sim): State<Simulator>,
    q: Result<Query<PricesQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::ErpPrices;
    let corrupt = sim.arrive(ENDPOINT).await?;
    let q = query(q)?;
    let (segment, currency) = price_list(q.segment.as_deref(), q.currency.as_deref())?;
    let keys = required_skus(q.skus.as_deref())?;
    let catalog = sim.read();
    let items: Vec<_> = keys
        .into_iter()
        .filter_map(|sku| catalog.product_by_sku(sku))
        .map(|i| catalog.price(i, segment, currency))
        .collect();
    let payload = Items { items: &items };
    sim.reply(ENDPOINT, Shape::Prices, corrupt, items.len(), &payload)
}

/// `GET /erp/v1/inventory?skus=…`.
pub async fn inventory(
    State(sim): State<Simulator>,
    q: Result<Query<InventoryQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::ErpInventory;
    let corrupt = sim.arrive(ENDPOINT).await?;
    let q = query(q)?;
    let keys = required_skus(q.skus.as_deref())?;
    let catalog = sim.read();
    let items: Vec<_> = keys
        .into_iter()
        .filter_map(|sku| catalog.product_by_sku(sku))
        .map(|i| catalog.inventory(i))
        .collect();
    let payload = Items { items: &items };
    sim.reply(ENDPOINT, Shape::Inventory, corrupt, items.len(), &payload)
}

/// `GET /erp/v1/offers?skus=…&segment=…&currency=…`: the prices and the
/// stock of the skus, each list what its own route answers.
pub async fn offers(
    State(sim): State<Simulator>,
    q: Result<Query<PricesQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::ErpOffers;
    let corrupt = sim.arrive(ENDPOINT).await?;
    let q = query(q)?;
    let (segment, currency) = price_list(q.segment.as_deref(), q.currency.as_deref())?;
    let keys = required_skus(q.skus.as_deref())?;
    let catalog = sim.read();
    let found: Vec<_> = keys
        .into_iter()
        .filter_map(|sku| catalog.product_by_sku(sku))
        .collect();
    let prices: Vec<_> = found
        .iter()
        .map(|&i| catalog.price(i, segment, currency))
        .collect();
    let inventory: Vec<_> = found.iter().map(|&i| catalog.inventory(i)).collect();
    let payload = Offers {
        prices: Items { items: &prices },
        inventory: Items { items: &inventory },
    };
    sim.reply(ENDPOINT, Shape::Offers, corrupt, prices.len(), &payload)
}

/// The offers answer: two lists.
#[derive(serde::Serialize)]
struct Offers<P, I> {
    prices: Items<P>,
    inventory: Items<I>,
}

/// `POST /erp/v1/quote`: authoritative unit prices, totals and stock.
pub async fn quote(
    State(sim): State<Simulator>,
    body: Result<Json<QuoteRequest>, JsonRejection>,
) -> Result<Response, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::ErpQuote;
    let corrupt = sim.arrive(ENDPOINT).await?;
    let Json(request) = body.map_err(|e| Refusal::bad_request(e.body_text()))?;
    let (segment, currency) = price_list(Some(&request.segment), Some(&request.currency))?;
    if request.lines.len() > MAX_BATCH {
        return Err(Refusal::bad_request(format!(
            "at most {MAX_BATCH} lines per quote"
        )));
    }
    if let Some(line) = request.lines.iter().find(|l| l.quantity == 0) {
        return Err(Refusal::bad_request(format!(
            "quantity of {:?} must be at least 1",
            line.sku
        )));
    }
    let quote = sim.read().quote(segment, currency, &request.lines);
    sim.reply(ENDPOINT, Shape::Quote, corrupt, quote.lines.len(), &quote)
}

/// `GET /oms/v1/orders/{id}`.
pub async fn order(
    State(sim): State<Simulator>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::OmsOrders;
    let corrupt = sim.arrive(ENDPOINT).await?;
    let id = path(id)?;
    let catalog = sim.read();
    let order = catalog
        .order(&id)
        .ok_or_else(|| Refusal::not_found(format!("no order {id:?}")))?;
    sim.reply(ENDPOINT, Shape::Order, corrupt, 1, order)
}

/// `GET /crm/v1/customers/by-token/{token}`.
pub async fn customer(
    State(sim): State<Simulator>,
    token: Result<Path<String>, PathRejection>,
) -> Result<Response, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::CrmCustomers;
    let corrupt = sim.arrive(ENDPOINT).await?;
    let token = path(token)?;
    let catalog = sim.read();
    // The token is a credential: the error does not echo it back.
    let customer = catalog
        .customer_by_token(&token)
        .ok_or_else(|| Refusal::not_found("no customer with that token"))?;
    sim.reply(ENDPOINT, Shape::Customer, corrupt, 1, customer)
}

/// `GET /crm/v1/customers/{id}`: for a gateway that verified a JWT itself
/// and knows the customer id, not a token.
pub async fn customer_by_id(
    State(sim): State<Simulator>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::CrmCustomers;
    let corrupt = sim.arrive(ENDPOINT).await?;
    let id = path(id)?;
    let catalog = sim.read();
    let customer = catalog
        .customer_by_id(&id)
        .ok_or_else(|| Refusal::not_found(format!("no customer {id:?}")))?;
    sim.reply(ENDPOINT, Shape::Customer, corrupt, 1, customer)
}
