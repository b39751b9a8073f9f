//! The Shopify dialect: the seeded catalog behind the Admin GraphQL API,
//! `POST /admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`,
//! and the client-credentials grant at `POST /admin/oauth/access_token`.
//!
//! Calls need a token the grant issued and that has not expired; the
//! grant takes any client unless `oauth_client` names one. With
//! `require_token`, that token is accepted too (a legacy custom app's
//! Admin API token, made in the shop's admin). A call without an
//! acceptable token gets Shopify's 401, `{"errors": "[API] Invalid API
//! key or access token (unrecognized login or wrong password)"}`.
//!
//! It is no GraphQL server: it finds the query's root field and reads its
//! arguments from `variables` (a recipe passes every argument as one), and
//! answers with every field it knows of the objects asked (`nodes`), so
//! selections are not checked. Root fields, with the system whose faults
//! and counters they meet (as protocol v1 would have called it):
//! - `productVariants(first, after, query: "sku:A OR sku:B")`: products by
//!   sku or a page of the catalog (pim); the same with `contextualPricing`
//!   in the query is a price read (erp), priced for `variables.country`.
//! - `nodes(ids: [variant GIDs])`: products by id (pim).
//! - `collections(first, after)` (pim), and `collectionByIdentifier(
//!   identifier: {handle} | {id})` with `products(first, after)` (pim).
//! - `inventoryItems(query: "sku:A OR sku:B")` (erp).
//! - `customerByIdentifier(identifier: {customId: {namespace: "moat", key:
//!   "token", value}})` (crm), `order(id)` (oms).
//!
//! Lists page with `first` (at most 250) and `after`, answering `pageInfo
//! {hasNextPage endCursor}`; every answer carries `extensions.cost`. A
//! malformed answer (`malformed_rate`) goes through the simulator's shared
//! breaker: one object of the answer with a field every mapping needs gone
//! or of the wrong kind (a price that is no amount, a negative stock), or
//! a body cut short. An outage (`down`) is a 503; an error
//! (`error_rate`) is Shopify's usual one, a 200 with `THROTTLED` errors
//! and no data.

mod nodes;
mod query;
mod token;
mod webhooks;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::super::corrupt::{Breakage, Shape};
use super::super::faults::System;
use super::super::{Simulator, json as respond};
use query::{Identifier, Op, operation};
pub use webhooks::event;

/// Shopify's answer to a missing or wrong access token.
const INVALID_TOKEN: &str =
    "[API] Invalid API key or access token (unrecognized login or wrong password)";
/// Largest request body read.
const MAX_BODY: usize = 1 << 20;

pub fn routes(_sim: &Simulator) -> Router<Simulator> {
    Router::new()
        .route("/admin/api/{version}/graphql.json", post(graphql))
        .route("/admin/oauth/access_token", post(token::grant))
}

/// `{"errors": message}` with `status`, as Shopify's REST-style failures.
fn failure(status: StatusCode, message: &str) -> Response {
    respond(
        status,
        json!({ "errors": message }).to_string().into_bytes(),
    )
}

/// A GraphQL error: HTTP 200, `errors[{message, extensions{code}}]`.
fn graphql_error(message: &str, code: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    respond(StatusCode::OK, body.to_string().into_bytes())
}

/// The cost of a query, as every Admin GraphQL answer reports it.
fn cost(objects: usize) -> Value {
    let cost = 1 + objects as u64;
    json!({ "cost": {
        "requestedQueryCost": cost,
        "actualQueryCost": cost,
        "throttleStatus": { "maximumAvailable": 2000.0, "currentlyAvailable": 2000 - cost.min(2000), "restoreRate": 100.0 },
    } })
}

/// Cursors are opaque: the index of the next object, behind base64.
fn encode_cursor(next: usize) -> String {
    STANDARD.encode(format!("c1.{next:x}"))
}

fn decode_cursor(cursor: Option<&str>) -> Result<usize, String> {
    let Some(cursor) = cursor else { return Ok(0) };
    let bad = || "Invalid cursor for current pagination.".to_string();
    let text = STANDARD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let hex = text.strip_prefix("c1.").ok_or_else(bad)?;
    usize::from_str_radix(hex, 16).map_err(|_| bad())
}

/// `{nodes, pageInfo}` of one page.
fn connection(nodes: Vec<Value>, next: Option<usize>) -> Value {
    json!({
        "nodes": nodes,
        "pageInfo": {
            "hasNextPage": next.is_some(),
            "endCursor": next.map(encode_cursor),
        },
    })
}

/// A page of `len` objects from `start`: its range and the next start.
fn page_of(start: usize, first: usize, len: usize) -> (std::ops::Range<usize>, Option<usize>) {
    let start = start.min(len);
    let end = start.saturating_add(first).min(len);
    (start..end, (end < len).then_some(end))
}

/// The answer's `data`, how it can be broken, and how many objects it
/// holds.
struct Answer {
    data: Value,
    breakage: &'static Breakage,
    count: usize,
}

/// Renders `op` from the catalog; `Err` is a GraphQL error.
fn answer(sim: &Simulator, op: &Op, country: Option<&str>) -> Result<Answer, String> {
    let catalog = sim.read();
    let products = catalog.products.len();
    let list = |data: Value, breakage: &'static Breakage, count: usize| {
        Ok(Answer {
            data,
            breakage,
            count,
        })
    };
    match op {
        Op::VariantsBySku { skus, priced } => {
            let found: Vec<Value> = skus
                .iter()
                .filter_map(|s| catalog.product_by_sku(s))
                .map(|i| nodes::variant(&catalog, i, country))
                .collect();
            let n = found.len();
            list(
                json!({ "productVariants": connection(found, None) }),
                if *priced { &PRICES } else { &VARIANTS },
                n,
            )
        }
        Op::VariantsPage { first, after } => {
            let (range, next) = page_of(decode_cursor(after.as_deref())?, *first, products);
            let found: Vec<Value> = range
                .map(|i| nodes::variant(&catalog, i, country))
                .collect();
            let n = found.len();
            list(
                json!({ "productVariants": connection(found, next) }),
                &VARIANTS,
                n,
            )
        }
        Op::Nodes(ids) => {
            // `nodes` answers each id in order, null for one it does not know.
            let found: Vec<Value> = ids
                .iter()
                .map(|id| {
                    nodes::index_of(id, nodes::VARIANT, products)
                        .map_or(Value::Null, |i| nodes::variant(&catalog, i, country))
                })
                .collect();
            let n = found.iter().filter(|v| !v.is_null()).count();
            list(json!({ "nodes": found }), &NODES, n)
        }
        Op::Collections { first, after } => {
            let len = catalog.categories.len();
            let (range, next) = page_of(decode_cursor(after.as_deref())?, *first, len);
            let found: Vec<Value> = range.map(|c| nodes::collection(&catalog, c)).collect();
            let n = found.len();
            list(
                json!({ "collections": connection(found, next) }),
                &COLLECTIONS,
                n,
            )
        }
        Op::CollectionProducts {
            collection,
            first,
            after,
        } => {
            let len = catalog.categories.len();
            let found = match collection {
                Identifier::Handle(h) => catalog.categories.iter().position(|c| c.id == h),
                Identifier::Id(id) => nodes::index_of(id, nodes::COLLECTION, len),
            };
            let Some(c) = found else {
                return list(
                    json!({ "collectionByIdentifier": null }),
                    &COLLECTION_PRODUCTS,
                    0,
                );
            };
            let members = &catalog.category_members[c];
            let (range, next) = page_of(decode_cursor(after.as_deref())?, *first, members.len());
            let products: Vec<Value> = members[range]
                .iter()
                .map(|&m| {
                    let variant = nodes::variant(&catalog, m as usize, country);
                    json!({ "id": variant["product"]["id"], "variants": { "nodes": [variant] } })
                })
                .collect();
            let n = products.len();
            let mut node = nodes::collection(&catalog, c);
            node["products"] = connection(products, next);
            list(
                json!({ "collectionByIdentifier": node }),
                &COLLECTION_PRODUCTS,
                n,
            )
        }
        Op::InventoryItems(skus) => {
            let found: Vec<Value> = skus
                .iter()
                .filter_map(|s| catalog.product_by_sku(s))
                .map(|i| nodes::inventory_item(&catalog, i))
                .collect();
            let n = found.len();
            list(
                json!({ "inventoryItems": connection(found, None) }),
                &INVENTORY,
                n,
            )
        }
        Op::Customer(token) => {
            let found = token.as_deref().and_then(|t| {
                let c = catalog.customers.iter().position(|c| c.token == t)?;
                Some(nodes::customer(c, &catalog.customers[c]))
            });
            let n = usize::from(found.is_some());
            list(json!({ "customerByIdentifier": found }), &CUSTOMER, n)
        }
        Op::Order(id) => {
            let found = nodes::index_of(id, nodes::ORDER, catalog.orders.len())
                .map(|o| nodes::order(&catalog, o, &catalog.orders[o]));
            let n = usize::from(found.is_some());
            list(json!({ "order": found }), &ORDER, n)
        }
    }
}

/// How each answer can be broken (`malformed_rate`), through the
/// simulator's own breaker: a field every mapping needs, gone or of the
/// wrong kind, on one object of the answer.
static VARIANTS: Breakage = Breakage {
    list: Some("/data/productVariants/nodes"),
    required: VARIANT_FIELDS,
    wrong_types: VARIANT_TYPES,
};
static NODES: Breakage = Breakage {
    list: Some("/data/nodes"),
    required: VARIANT_FIELDS,
    wrong_types: VARIANT_TYPES,
};
const VARIANT_FIELDS: &[&str] = &["/sku", "/product/title"];
const VARIANT_TYPES: &[(&str, &str)] = &[("/product/title", "42"), ("/sku", "7")];
static PRICES: Breakage = Breakage {
    list: Some("/data/productVariants/nodes"),
    required: &["/sku"],
    wrong_types: &[
        ("/contextualPricing/price/amount", "\"-5.00\""),
        ("/contextualPricing/price/amount", "\"abc\""),
    ],
};
static COLLECTION_PRODUCTS: Breakage = Breakage {
    list: Some("/data/collectionByIdentifier/products/nodes"),
    required: &["/variants/nodes/0/sku", "/variants/nodes/0/product/title"],
    wrong_types: &[("/variants/nodes/0/product/title", "42")],
};
static COLLECTIONS: Breakage = Breakage {
    list: Some("/data/collections/nodes"),
    required: &["/handle", "/title"],
    wrong_types: &[("/title", "false")],
};
static INVENTORY: Breakage = Breakage {
    list: Some("/data/inventoryItems/nodes"),
    required: &["/sku"],
    wrong_types: &[
        ("/inventoryLevels/nodes/0/quantities/0/quantity", "\"lots\""),
        ("/inventoryLevels/nodes/0/quantities/0/quantity", "-7"),
    ],
};
static CUSTOMER: Breakage = Breakage {
    list: None,
    required: &["/data/customerByIdentifier/defaultEmailAddress"],
    wrong_types: &[("/data/customerByIdentifier/updatedAt", "17")],
};
static ORDER: Breakage = Breakage {
    list: None,
    required: &["/data/order/processedAt"],
    wrong_types: &[("/data/order/totalPriceSet/shopMoney/amount", "\"abc\"")],
};

/// The access token of a call, if it carries one.
fn token_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// `POST /admin/api/{version}/graphql.json`.
async fn graphql(State(sim): State<Simulator>, request: Request) -> Response {
    let token = token_of(request.headers());
    let allowed = match token {
        None => false,
        Some(token) => {
            let auth = &sim.inner.auth;
            auth.is_issued(token) || (!auth.open() && auth.check_token(Some(token)).is_ok())
        }
    };
    if !allowed {
        sim.inner.stats.unauthorized();
        return failure(StatusCode::UNAUTHORIZED, INVALID_TOKEN);
    }
    let mut seen = Request::new(());
    *seen.method_mut() = request.method().clone();
    *seen.uri_mut() = request.uri().clone();
    *seen.headers_mut() = request.headers().clone();
    let body: Bytes = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return failure(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large"),
    };
    let Ok(asked) = serde_json::from_slice::<Value>(&body) else {
        return failure(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let query = asked["query"].as_str().unwrap_or_default();
    let variables = asked.get("variables").cloned().unwrap_or(Value::Null);
    let op = match operation(query, &variables) {
        Ok(op) => op,
        Err((message, code)) => return graphql_error(&message, code),
    };
    let endpoint = op.endpoint();
    let system: System = endpoint.system();
    if !sim.inner.served[system as usize] {
        let message = format!("this simulator does not serve {}", system.name());
        return failure(StatusCode::NOT_FOUND, &message);
    }
    sim.inner.stats.trace_context(system.name(), &seen);
    let corrupt = match sim.arrive(endpoint).await {
        Ok(corrupt) => corrupt,
        // Shopify's usual failure is the cost bucket running dry: a 200
        // with THROTTLED and no data.
        Err(refusal) if refusal.status == StatusCode::INTERNAL_SERVER_ERROR => {
            return graphql_error("Throttled", "THROTTLED");
        }
        Err(refusal) => return failure(refusal.status, &refusal.message),
    };
    let country = variables["country"].as_str();
    let answer = match answer(&sim, &op, country) {
        Ok(answer) => answer,
        Err(message) => return graphql_error(&message, "BAD_REQUEST"),
    };
    let Answer {
        data,
        breakage,
        count,
    } = answer;
    let payload = json!({ "data": data, "extensions": cost(count) });
    sim.reply(endpoint, Shape::Foreign(breakage), corrupt, count, &payload)
        .unwrap_or_else(|refusal| failure(refusal.status, &refusal.message))
}
