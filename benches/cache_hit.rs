//! The cache-hit read path, from the inside out, with L1 warm:
//!
//! - `tier_get_cached`: one product L1 lookup (`Tier::get_cached`), the fast
//!   path every resolver tries first;
//! - `graphql_product_hit`: one product query through the schema with a fresh
//!   `Scope`, plus the JSON encoding the handler does: a request minus HTTP;
//! - `http_product_hit`: the same query over loopback HTTP on a keep-alive
//!   connection, one request at a time (latency, not throughput; the load
//!   test in `loadtests/` measures throughput).
//!
//! Real pieces only: the simulator and a gateway on loopback ports 0, as the
//! integration tests run them. TTLs are raised so no entry turns stale while
//! measuring; a stale read would queue a background refresh and this bench
//! would no longer measure the hit path alone.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

use moat::app::Gateway;
use moat::config::{Config, Secrets};
use moat::graphql::Scope;
use moat::sim::{SimConfig, Simulator};

const PRODUCT_ID: &str = "prod-000007";
const QUERY: &str =
    r#"{ product(id: "prod-000007") { name price { price { amount } } availability { status } } }"#;

/// The simulator and a gateway in front of it, on one runtime.
struct Setup {
    runtime: tokio::runtime::Runtime,
    gateway: Gateway,
    url: String,
    stop_sim: tokio::sync::oneshot::Sender<()>,
}

fn start() -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (gateway, stop_sim) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sim");
        let sim_url = format!("http://{}", listener.local_addr().expect("sim addr"));
        let (stop_sim, stopped) = tokio::sync::oneshot::channel::<()>();
        let sim = Simulator::new(SimConfig {
            products: 500,
            ..SimConfig::default()
        });
        tokio::spawn(async move {
            let _ = moat::sim::serve(listener, sim, async move {
                let _ = stopped.await;
            })
            .await;
        });
        let gateway = Gateway::start(config(&sim_url), Secrets::default())
            .await
            .expect("gateway starts");
        (gateway, stop_sim)
    });
    let url = format!("http://{}/graphql", gateway.public_addr);
    Setup {
        runtime,
        gateway,
        url,
        stop_sim,
    }
}

fn config(upstream_url: &str) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin.listen = "127.0.0.1:0".parse().expect("addr");
    config.upstream.url = Some(upstream_url.to_string());
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
async fn execute(state: &moat::app::AppState) -> Vec<u8> {
    let scope = Scope::new(
        state.catalog.clone(),
        state.catalog.selling.default_segment.clone(),
        state.config().server.deadline,
    );
    let response = state
        .schema
        .execute(async_graphql::Request::new(QUERY).data(scope))
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
    let state = setup.gateway.state.clone();
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

    let Setup {
        runtime,
        gateway,
        stop_sim,
        ..
    } = setup;
    runtime.block_on(gateway.stop());
    let _ = stop_sim.send(());
}

criterion_group!(benches, cache_hit);
criterion_main!(benches);
