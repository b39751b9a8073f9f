//! The cache-hit read path, from the inside out, with L1 warm:
//!
//! - `tier_get_cached`: one product L1 lookup (`Tier::get_cached`), the fast
//!   path every resolver tries first;
//! - `graphql_product_hit`: one product query prepared (parsed document
//!   from the cache) and run through the schema with a fresh `Scope`, plus
//!   the JSON encoding the handler does: a request minus HTTP;
//! - `http_product_hit`: the same query over loopback HTTP on a keep-alive
//!   connection, one request at a time (latency, not throughput; the load
//!   test in `loadtests/` measures throughput).
//!
//! Real pieces only: the simulator and a gateway on loopback ports 0, as the
//! integration tests run them. TTLs are raised so no entry turns stale while
//! measuring; a stale read would queue a background refresh and this bench
//! would no longer measure the hit path alone.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

use moat::graphql::Scope;
use support::{Moat, Sim};

const PRODUCT_ID: &str = "prod-000007";
const QUERY: &str =
    r#"{ product(id: "prod-000007") { name price { price { amount } } availability { status } } }"#;

/// The simulator and a gateway in front of it, on one runtime.
struct Setup {
    runtime: tokio::runtime::Runtime,
    _sim: Sim,
    moat: Moat,
    url: String,
}

fn start() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (sim, moat) = runtime.block_on(async {
        let sim = Sim::start().await;
        let moat = Moat::start(config(&sim.url)).await;
        (sim, moat)
    });
    let url = format!("{}/graphql", moat.url);
    Setup {
        runtime,
        _sim: sim,
        moat,
        url,
    }
}

/// Long TTLs: a stale read would queue a background refresh, and this
/// bench would no longer measure the hit path alone.
fn config(upstream_url: &str) -> moat::config::Config {
    let mut config = support::config(upstream_url);
    let hour = Duration::from_secs(3600);
    for entity in [
        &mut config.cache.product,
        &mut config.cache.price,
        &mut config.cache.inventory,
    ] {
        entity.soft_ttl = hour;
        entity.hard_ttl = 2 * hour;
        entity.max_stale = 4 * hour;
    }
    config
}

/// One product query as the HTTP handler runs it, encoded as it would be
/// sent.
async fn execute(state: &moat::state::AppState) -> Vec<u8> {
    let scope = Scope::new(
        state.catalog.clone(),
        &state.customers,
        state.catalog.selling.default_segment.clone(),
        state.config().server.deadline,
    );
    // As the handler does: the parsed document comes from the cache.
    let mut request = async_graphql::Request::new(QUERY);
    let prepared = state
        .documents
        .prepare(&mut request)
        .expect("query prepares");
    let response = state
        .schema
        .execute(&state.documents, &prepared, request.data(scope))
        .await;
    serde_json::to_vec(&response).expect("response encodes")
}

/// Fails the bench early if the warm-up did not produce a full answer: a
/// bench of an error path would be meaningless.
fn check(body: &[u8]) {
    let value: Value = serde_json::from_slice(body).expect("response is JSON");
    assert!(value.get("errors").is_none(), "errors in {value}");
    let product = &value["data"]["product"];
    assert!(product["name"].is_string(), "no product in {value}");
    assert!(
        product["price"]["price"]["amount"].is_string(),
        "no price in {value}"
    );
    assert!(
        product["availability"]["status"].is_string(),
        "no stock in {value}"
    );
}

fn cache_hit(c: &mut Criterion) {
    let setup = start();
    let state = setup.moat.state().clone();
    let http = reqwest::Client::new();
    let body = json!({ "query": QUERY }).to_string();

    // Warm L1 (product, price, stock) with one real request over HTTP.
    let warm = setup.runtime.block_on(async {
        let response = http
            .post(&setup.url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("warm request");
        response.bytes().await.expect("warm body")
    });
    check(&warm);
    check(&setup.runtime.block_on(execute(&state)));

    let mut group = c.benchmark_group("cache_hit");
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));

    // Synchronous, but a stale hit would spawn a refresh: keep a runtime
    // context, as a resolver has.
    let context = setup.runtime.enter();
    let products = Arc::clone(&state.catalog.products);
    let id = PRODUCT_ID.to_string();
    assert!(products.get_cached(&id).is_some(), "product is not in L1");
    group.bench_function("tier_get_cached", |b| {
        b.iter(|| black_box(products.get_cached(black_box(&id))))
    });

    group.bench_function("graphql_product_hit", |b| {
        b.to_async(&setup.runtime).iter(|| execute(&state))
    });

    group.bench_function("http_product_hit", |b| {
        b.to_async(&setup.runtime).iter(|| async {
            let response = http
                .post(&setup.url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("request");
            black_box(response.bytes().await.expect("body"))
        })
    });
    group.finish();
    drop(context);

    let Setup { runtime, moat, .. } = setup;
    runtime.block_on(moat.stop());
}

criterion_group!(benches, cache_hit);
criterion_main!(benches);
