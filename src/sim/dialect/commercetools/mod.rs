//! The commercetools dialect: the seeded catalog as commercetools'
//! Composable Commerce HTTP API serves it, under any project key
//! (`/{projectKey}/…`), so `MOAT_COMMERCETOOLS_URL=http://HOST/{projectKey}`
//! is a working setup.
//!
//! - Auth: `POST /oauth/token` (client credentials, the client by HTTP
//!   Basic; any client unless the simulator has an OAuth client), then
//!   `Authorization: Bearer` on every call; without an issued token a call
//!   gets the API's 401. `POST /oauth/{projectKey}/customers/token` is the
//!   password flow of a customer (any password): its access token is the
//!   customer's seeded token, which `GET /{projectKey}/me` takes.
//! - Reads: `product-projections` (query, `/{id}`, `/key={key}`, with
//!   `expand` of the prices' customer groups and price selection),
//!   `inventory`, `categories`, `customer-groups`, `customers` and
//!   `customers/{id}`, `me`,
//!   `orders` and `orders/{id}` or `orders/order-number={n}`. Queries take
//!   `where` predicates with `var.*` input variables and page by `limit`
//!   (at most 500) and `offset` with `total`. Errors are `{statusCode,
//!   message, errors: [{code, message}]}`.
//! - Each read is counted, and meets faults, as the protocol v1 call for
//!   that record would be: a product projection queried by sku is a price
//!   read (`erp.prices`), otherwise a product read (`pim.products`). A
//!   malformed answer breaks one resource in the vendor's shape.
//! - Change events: Subscription messages (`ProductPriceChanged`,
//!   `InventoryEntryQuantitySet`; with thin events `ResourceUpdated`
//!   change notifications), as a relay from the subscription's queue
//!   posts them to `/events/commercetools`, signed per Standard Webhooks.
//!
//! Layout: this file has the routes, errors, query handling (`where`,
//! paging) and read handlers; `oauth` the token endpoints and the door;
//! `resources` the catalog in commercetools' shapes and their breakage;
//! `predicate` the `where` language; `messages` the change events.

mod messages;
mod oauth;
mod predicate;
mod resources;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use percent_encoding::percent_decode;
use serde_json::{Value, json};

use super::super::auth::{Denied, bearer};
use super::super::catalog::Catalog;
use super::super::stats::Endpoint;
use super::super::wire::SEGMENTS;
use super::super::{Refusal, Simulator, json as respond};
pub use messages::event;
use oauth::denied;
use predicate::Vars;
use resources::{Kind, Projection, Shape};

/// The project key named in change messages (requests take any).
const PROJECT: &str = "moat-demo";
/// Paging as the API has it (`traits/paging.raml`).
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 500;
const MAX_OFFSET: usize = 10_000;

pub fn routes(sim: &Simulator) -> Router<Simulator> {
    let api = Router::new()
        .route("/{project}/product-projections", get(product_projections))
        .route(
            "/{project}/product-projections/{id}",
            get(product_projection),
        )
        .route("/{project}/inventory", get(inventory))
        .route("/{project}/categories", get(categories))
        .route("/{project}/customer-groups", get(customer_groups))
        .route("/{project}/customers", get(customers))
        .route("/{project}/customers/{id}", get(customer))
        .route("/{project}/orders", get(orders))
        .route("/{project}/orders/{id}", get(order))
        .route_layer(middleware::from_fn_with_state(sim.clone(), oauth::door));
    api.route("/{project}/me", get(me))
        .route("/oauth/token", post(oauth::token))
        .route(
            "/oauth/{project}/customers/token",
            post(oauth::customer_token),
        )
}

/// `{statusCode, message, errors: [{code, message}]}`.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"statusCode": status.as_u16(), "message": message,
                      "errors": [{"code": code, "message": message}]});
    respond(status, body.to_string().into_bytes())
}

/// An answer other than the resource asked for, in the API's error shape.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message)
    }
}

/// A refusal of the shared machinery (faults) in the vendor's shape.
fn refused(r: Refusal) -> ApiError {
    let code = match r.status {
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        StatusCode::BAD_REQUEST => "InvalidInput",
        StatusCode::NOT_FOUND => "ResourceNotFound",
        _ => "General",
    };
    ApiError {
        status: r.status,
        code,
        message: r.message,
    }
}

fn bad_input(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "InvalidInput",
        message: message.into(),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "ResourceNotFound",
        message: format!("The Resource with ID '{id}' was not found."),
    }
}

/// Counts the call as `endpoint` and lets its system's faults act; the
/// corruption seed of a malformed answer.
async fn enter(sim: &Simulator, endpoint: Endpoint) -> Result<Option<u64>, ApiError> {
    let system = endpoint.system();
    if !sim.inner.served[system as usize] {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "ResourceNotFound",
            message: format!("this simulator does not serve {}", system.name()),
        });
    }
    sim.arrive(endpoint).await.map_err(refused)
}

/// A 200 with `body`, broken in the vendor's shape when `corrupt` says.
fn reply(
    sim: &Simulator,
    endpoint: Endpoint,
    shape: Shape,
    corrupt: Option<u64>,
    items: usize,
    body: Value,
) -> Response {
    let bytes = match corrupt {
        Some(seed) => resources::corrupt(body, shape, seed),
        None => body.to_string().into_bytes(),
    };
    sim.inner.stats.served(endpoint, items);
    respond(StatusCode::OK, bytes)
}

/// Query parameters in order, repeats kept (`var.skus=A&var.skus=B`).
fn params(raw: Option<String>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let spaced = s.replace('+', " ");
        percent_decode(spaced.as_bytes())
            .decode_utf8_lossy()
            .into_owned()
    };
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn expands(params: &[(String, String)], path: &str) -> bool {
    params.iter().any(|(k, v)| k == "expand" && v == path)
}

struct Paging {
    limit: usize,
    offset: usize,
    with_total: bool,
}

fn paging(params: &[(String, String)]) -> Result<Paging, ApiError> {
    let number = |name: &str, default: usize| match param(params, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad_input(format!("Malformed parameter: {name}: must be a number."))),
    };
    let limit = number("limit", DEFAULT_LIMIT)?;
    let offset = number("offset", 0)?;
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad_input(format!(
            "Malformed parameter: limit: must be between 1 and {MAX_LIMIT}."
        )));
    }
    if offset > MAX_OFFSET {
        return Err(bad_input(format!(
            "Malformed parameter: offset: must be at most {MAX_OFFSET}."
        )));
    }
    Ok(Paging {
        limit,
        offset,
        with_total: param(params, "withTotal") != Some("false"),
    })
}

/// The records (of `n`) whose view matches every `where` of the query.
fn matching(
    params: &[(String, String)],
    n: usize,
    view: impl Fn(usize) -> Value,
) -> Result<Vec<usize>, ApiError> {
    let mut predicates = Vec::new();
    let mut vars = Vars::new();
    for (k, v) in params {
        if k == "where" {
            let p = predicate::parse(v)
                .map_err(|e| bad_input(format!("Malformed parameter: where: {e}.")))?;
            predicates.push(p);
        } else if let Some(name) = k.strip_prefix("var.") {
            vars.entry(name.to_string()).or_default().push(v.clone());
        }
    }
    if predicates.is_empty() {
        return Ok((0..n).collect());
    }
    let mut found = Vec::new();
    for i in 0..n {
        let resource = view(i);
        let mut all = true;
        for p in &predicates {
            all &= p.matches(&resource, &vars).map_err(bad_input)?;
        }
        if all {
            found.push(i);
        }
    }
    Ok(found)
}

/// `{limit, offset, count, total, results}` of one page of `found`.
fn page(found: &[usize], paging: &Paging, render: impl Fn(usize) -> Value) -> (usize, Value) {
    let results: Vec<Value> = found
        .iter()
        .skip(paging.offset)
        .take(paging.limit)
        .map(|&i| render(i))
        .collect();
    let count = results.len();
    let mut body = json!({"limit": paging.limit, "offset": paging.offset,
                          "count": count, "results": results});
    if paging.with_total {
        body["total"] = Value::from(found.len());
    }
    (count, body)
}

/// A query endpoint: faults, paging, `where`, rendering under the lock.
async fn query(
    sim: &Simulator,
    endpoint: Endpoint,
    shape: Shape,
    params: &[(String, String)],
    count: impl Fn(&Catalog) -> usize,
    view: impl Fn(&Catalog, usize) -> Value,
    render: impl Fn(&Catalog, usize) -> Value,
) -> Result<Response, ApiError> {
    let corrupt = enter(sim, endpoint).await?;
    let paging = paging(params)?;
    let catalog = sim.read();
    let found = matching(params, count(&catalog), |i| view(&catalog, i))?;
    let (n, body) = page(&found, &paging, |i| render(&catalog, i));
    drop(catalog);
    Ok(reply(sim, endpoint, shape, corrupt, n, body))
}

/// How product projections are asked for.
fn projection(params: &[(String, String)]) -> Projection {
    Projection {
        expand_groups: expands(params, "masterVariant.prices[*].customerGroup")
            || expands(params, "variants[*].prices[*].customerGroup"),
        select: param(params, "priceCurrency").map(|c| {
            let group = param(params, "priceCustomerGroup").map(str::to_string);
            (c.to_string(), group)
        }),
    }
}

/// `GET /{projectKey}/product-projections`.
async fn product_projections(
    State(sim): State<Simulator>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw);
    let by_sku = params
        .iter()
        .any(|(k, v)| k == "where" && v.contains("sku"));
    let endpoint = if by_sku {
        Endpoint::ErpPrices
    } else {
        Endpoint::PimProducts
    };
    let how = projection(&params);
    query(
        &sim,
        endpoint,
        Shape::Products,
        &params,
        |c| c.products.len(),
        resources::product_view,
        |c, i| resources::product(c, i, &how),
    )
    .await
}

/// `GET /{projectKey}/product-projections/{id}` or `/key={key}`.
async fn product_projection(
    State(sim): State<Simulator>,
    Path((_, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    const ENDPOINT: Endpoint = Endpoint::PimProducts;
    let corrupt = enter(&sim, ENDPOINT).await?;
    let params = params(raw);
    let catalog = sim.read();
    let found = match id.strip_prefix("key=") {
        Some(key) => catalog.product_by_sku(key),
        None => resources::index_of(Kind::Product, &id).filter(|i| *i < catalog.products.len()),
    };
    let Some(i) = found else {
        return Err(not_found(&id));
    };
    let body = resources::product(&catalog, i, &projection(&params));
    drop(catalog);
    Ok(reply(&sim, ENDPOINT, Shape::Products, corrupt, 1, body))
}

/// `GET /{projectKey}/inventory`.
async fn inventory(
    State(sim): State<Simulator>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw);
    query(
        &sim,
        Endpoint::ErpInventory,
        Shape::Inventory,
        &params,
        |c| c.products.len(),
        resources::inventory_view,
        resources::inventory,
    )
    .await
}

/// `GET /{projectKey}/categories`.
async fn categories(
    State(sim): State<Simulator>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw);
    query(
        &sim,
        Endpoint::PimCategories,
        Shape::Categories,
        &params,
        |c| c.categories.len(),
        resources::category_view,
        resources::category,
    )
    .await
}

/// `GET /{projectKey}/customer-groups`: `wholesale` and `vip`.
async fn customer_groups(
    State(sim): State<Simulator>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw);
    let group = |_: &Catalog, i: usize| resources::customer_group(i + 1).unwrap_or_default();
    query(
        &sim,
        Endpoint::CrmCustomers,
        Shape::Customers,
        &params,
        |_| SEGMENTS.len() - 1,
        group,
        group,
    )
    .await
}

/// `GET /{projectKey}/customers`.
async fn customers(
    State(sim): State<Simulator>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw);
    let expand = expands(&params, "customerGroup");
    query(
        &sim,
        Endpoint::CrmCustomers,
        Shape::Customers,
        &params,
        |c| c.customers.len(),
        resources::customer_view,
        |c, i| resources::customer(c, i, expand),
    )
    .await
}

/// `GET /{projectKey}/customers/{id}`.
async fn customer(
    State(sim): State<Simulator>,
    Path((_, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    const ENDPOINT: Endpoint = Endpoint::CrmCustomers;
    let corrupt = enter(&sim, ENDPOINT).await?;
    let expand = expands(&params(raw), "customerGroup");
    let catalog = sim.read();
    let Some(i) = resources::index_of(Kind::Customer, &id).filter(|i| *i < catalog.customers.len())
    else {
        return Err(not_found(&id));
    };
    let body = resources::customer(&catalog, i, expand);
    drop(catalog);
    Ok(reply(&sim, ENDPOINT, Shape::Customers, corrupt, 1, body))
}

/// `GET /{projectKey}/me`: the customer whose access token this is (the
/// password flow's, not the API client's).
async fn me(State(sim): State<Simulator>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    const ENDPOINT: Endpoint = Endpoint::CrmCustomers;
    let found = bearer(&headers).and_then(|token| {
        let catalog = sim.read();
        catalog.customers.iter().position(|c| c.token == token)
    });
    let Some(i) = found else {
        sim.inner.stats.unauthorized();
        let why = match bearer(&headers) {
            None => Denied::Missing,
            Some(_) => Denied::Invalid,
        };
        return denied(why);
    };
    let corrupt = match enter(&sim, ENDPOINT).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let expand = expands(&params(raw), "customerGroup");
    let body = resources::customer(&sim.read(), i, expand);
    reply(&sim, ENDPOINT, Shape::Customers, corrupt, 1, body)
}

/// `GET /{projectKey}/orders`.
async fn orders(
    State(sim): State<Simulator>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw);
    query(
        &sim,
        Endpoint::OmsOrders,
        Shape::Orders,
        &params,
        |c| c.orders.len(),
        resources::order_view,
        resources::order,
    )
    .await
}

/// `GET /{projectKey}/orders/{id}` or `/orders/order-number={n}`.
async fn order(
    State(sim): State<Simulator>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    const ENDPOINT: Endpoint = Endpoint::OmsOrders;
    let corrupt = enter(&sim, ENDPOINT).await?;
    let catalog = sim.read();
    let found = match id.strip_prefix("order-number=") {
        Some(number) => catalog.orders.iter().position(|o| o.id == number),
        None => resources::index_of(Kind::Order, &id).filter(|i| *i < catalog.orders.len()),
    };
    let Some(i) = found else {
        return Err(not_found(&id));
    };
    let body = resources::order(&catalog, i);
    drop(catalog);
    Ok(reply(&sim, ENDPOINT, Shape::Orders, corrupt, 1, body))
}

#[cfg(test)]
mod tests;
