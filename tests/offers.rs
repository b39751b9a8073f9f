//! `systems.NAME.offers`: a product's price and stock in one ERP call
//! (`GET /erp/v1/offers`), observed through GraphQL and the simulator's
//! counters; and an ERP that turns out not to answer that route.

mod support;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use moat::config::{Config, SystemConfig};
use serde_json::{Value, json};
use support::redis::RedisServer;
use support::{Moat, Sim, config, error_codes, error_paths};

const PAGE: &str = r#"query($sku: String!) {
  product(sku: $sku) {
    name
    price { price { amount currencyCode } }
    availability { quantity }
  }
}"#;

fn with_offers(url: &str) -> Config {
    let mut c = config(url);
    let erp = SystemConfig {
        offers: Some(true),
        ..SystemConfig::default()
    };
    c.systems.insert("erp".into(), erp);
    c
}

/// What each ERP route was asked so far: (offers, prices, inventory).
async fn erp_calls(sim: &Sim) -> (u64, u64, u64) {
    (
        sim.requests("erp.offers").await,
        sim.requests("erp.prices").await,
        sim.requests("erp.inventory").await,
    )
}

/// The simulator's own default EUR price and stock of `sku`.
async fn truth(sim: &Sim, sku: &str) -> (Value, Value) {
    let offers = sim
        .get_json(&format!(
            "/erp/v1/offers?skus={sku}&segment=default&currency=EUR"
        ))
        .await;
    let amount = offers["prices"]["items"][0]["amount"].as_i64().unwrap();
    let quantity = offers["inventory"]["items"][0]["available"].clone();
    (
        json!(format!("{}.{:02}", amount / 100, amount % 100)),
        quantity,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_page_asks_the_erp_once_for_price_and_stock() {
    let sim = Sim::start().await;
    let moat = Moat::start(with_offers(&sim.url)).await;

    // A cold product page: one ERP call, nothing asked apart.
    let sku = "SKU-000011";
    let before = erp_calls(&sim).await;
    let page = moat.query(PAGE, json!({ "sku": sku })).await;
    assert!(page.get("errors").is_none(), "{page}");
    assert_eq!(erp_calls(&sim).await, (before.0 + 1, before.1, before.2));
    let (amount, quantity) = truth(&sim, sku).await;
    let product = &page["data"]["product"];
    assert_eq!(product["price"]["price"]["amount"], amount, "{page}");
    assert_eq!(product["availability"]["quantity"], quantity, "{page}");

    // Asked again: both from the cache.
    let calls = erp_calls(&sim).await;
    assert_eq!(moat.query(PAGE, json!({ "sku": sku })).await, page);
    assert_eq!(erp_calls(&sim).await, calls);

    // A listing of five cold products: one call for all their prices and
    // stock.
    let listing = "{ products(first: 5) { nodes { sku price { price { amount } } availability { quantity } } } }";
    let calls = erp_calls(&sim).await;
    let list = moat.query(listing, json!({})).await;
    assert!(list.get("errors").is_none(), "{list}");
    let nodes = list["data"]["products"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    assert!(
        nodes
            .iter()
            .all(|n| n["availability"]["quantity"].is_number())
    );
    assert_eq!(erp_calls(&sim).await, (calls.0 + 1, calls.1, calls.2));

    // Stock changed at the ERP and dropped from the cache: only stock is
    // asked for, by its own route (the price is still cached).
    sim.set_stock(sku, 3).await;
    let (status, _) = moat
        .admin_post(
            "/admin/cache/purge",
            json!({ "entity": "inventory", "ids": [sku] }),
        )
        .await;
    assert_eq!(status, 200);
    let calls = erp_calls(&sim).await;
    let page = moat.query(PAGE, json!({ "sku": sku })).await;
    assert_eq!(
        page["data"]["product"]["availability"]["quantity"], 3,
        "{page}"
    );
    assert_eq!(erp_calls(&sim).await, (calls.0, calls.1, calls.2 + 1));
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_offers_answer_fails_its_fields_not_the_page() {
    let sim = Sim::start().await;
    let moat = Moat::start(with_offers(&sim.url)).await;
    sim.fault("erp", json!({ "malformed_rate": 1.0 })).await;
    let page = moat.query(PAGE, json!({ "sku": "SKU-000012" })).await;
    assert!(page["data"]["product"]["name"].is_string(), "{page}");
    assert_eq!(page["data"]["product"]["price"], Value::Null, "{page}");
    assert!(!error_codes(&page).is_empty(), "{page}");
    let paths = error_paths(&page);
    assert!(
        paths.contains(&json!(["product", "price"])),
        "the price's error names it: {page}"
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_that_came_with_prices_is_shared_through_redis_and_an_erp_outage_fails_both_fields() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let replica = || {
        let mut c = with_offers(&sim.url);
        c.redis.url = Some(redis.url());
        Moat::start(c)
    };
    let (a, b) = (replica().await, replica().await);

    // One replica's cold page fills L2 with the stock that came along: the
    // other serves the same page without asking the ERP.
    let sku = "SKU-000015";
    let page = a.query(PAGE, json!({ "sku": sku })).await;
    assert!(page.get("errors").is_none(), "{page}");
    let calls = erp_calls(&sim).await;
    assert_eq!(calls, (1, 0, 0));
    assert_eq!(b.query(PAGE, json!({ "sku": sku })).await, page);
    assert_eq!(erp_calls(&sim).await, calls, "from L2");

    // The ERP down: a product never read still shows its PIM content; its
    // price and availability are null, each with its error.
    sim.fault("erp", json!({ "down": true })).await;
    let page = a.query(PAGE, json!({ "sku": "SKU-000016" })).await;
    let product = &page["data"]["product"];
    assert!(product["name"].is_string(), "{page}");
    assert_eq!(product["price"], Value::Null, "{page}");
    assert_eq!(product["availability"], Value::Null, "{page}");
    let paths = error_paths(&page);
    for field in ["price", "availability"] {
        assert!(
            paths.contains(&json!(["product", field])),
            "{field}: {page}"
        );
    }
    assert!(
        error_codes(&page)
            .iter()
            .all(|c| c == "UPSTREAM_UNAVAILABLE"),
        "{page}"
    );
    a.stop().await;
    b.stop().await;
}

/// Forwards every request to the simulator except the offers route: an
/// ERP that speaks protocol v1 from before that route.
async fn older_erp(State((http, sim)): State<(reqwest::Client, String)>, req: Request) -> Response {
    if req.uri().path() == "/erp/v1/offers" {
        return (StatusCode::NOT_FOUND, "no such route").into_response();
    }
    let url = format!("{sim}{}", req.uri());
    let mut forwarded = http.get(url);
    for (name, value) in req.headers() {
        if name != "host" {
            forwarded = forwarded.header(name, value);
        }
    }
    let answer = forwarded.send().await.expect("the simulator answers");
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let body = answer.bytes().await.unwrap();
    (status, [("content-type", "application/json")], body).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erp_without_the_offers_route_is_asked_apart() {
    let sim = Sim::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let erp_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(older_erp)
        .with_state((reqwest::Client::new(), sim.url.clone()));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut c = with_offers(&sim.url);
    c.systems.get_mut("erp").unwrap().url = Some(erp_url);
    let moat = Moat::start(c).await;

    // The first page finds the route missing and is served from the two
    // routes; later pages do not try it again.
    for sku in ["SKU-000013", "SKU-000014"] {
        let page = moat.query(PAGE, json!({ "sku": sku })).await;
        assert!(page.get("errors").is_none(), "{page}");
        let (amount, quantity) = truth(&sim, sku).await;
        let product = &page["data"]["product"];
        assert_eq!(product["price"]["price"]["amount"], amount, "{page}");
        assert_eq!(product["availability"]["quantity"], quantity, "{page}");
    }
    let (_, prices, inventory) = erp_calls(&sim).await;
    assert_eq!((prices, inventory), (2, 2), "each page asked both routes");
    moat.stop().await;
    server.abort();
}
