//! `verifyCheckout` latency as a checkout service sees it: one mutation over
//! loopback HTTP, a three-line cart with price tokens, against the
//! simulator at its default latency (20 ms per upstream call). Every
//! verification asks the ERP for a quote (never the cache), so the floor is
//! one upstream round trip.
//!
//! Criterion reports the mean and median; p50 and p99 come from a separate
//! run of sequential verifications timed one by one, printed at the end.
//!
//! Real pieces only: the simulator and a gateway on loopback ports 0.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::{Value, json};

use moat::app::Gateway;
use moat::config::{Config, Secrets};
use moat::sim::{SimConfig, Simulator};

const SKUS: [&str; 3] = ["SKU-000011", "SKU-000012", "SKU-000013"];
const SHOWN: &str = r#"query($sku: String!) { product(sku: $sku) {
    price { price { amount } priceToken } } }"#;
const VERIFY: &str = r#"mutation($input: VerifyCheckoutInput!) {
    verifyCheckout(input: $input) { ok total { amount } mismatches { kind } } }"#;
/// Timed verifications for the percentiles.
const RUNS: usize = 400;

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
        // Default faults: 20 ms latency on every system, no errors.
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
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().expect("addr");
        config.admin.listen = "127.0.0.1:0".parse().expect("addr");
        config.upstream.url = Some(sim_url);
        let secrets = Secrets {
            price_token_secret: Some("bench-price-token-secret-0123456789abcdef".into()),
            ..Secrets::default()
        };
        let gateway = Gateway::start(config, secrets)
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

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    http.post(url)
        .json(body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// A cart of the prices the gateway shows, one of each sku.
async fn cart(http: &reqwest::Client, url: &str) -> Value {
    let mut lines = Vec::new();
    let mut total = 0i64;
    for sku in SKUS {
        let r = post(
            http,
            url,
            &json!({ "query": SHOWN, "variables": { "sku": sku } }),
        )
        .await;
        let price = &r["data"]["product"]["price"];
        let amount = price["price"]["amount"].as_str().expect("amount");
        let (whole, cents) = amount.split_once('.').expect("two digits");
        total += whole.parse::<i64>().expect("whole") * 100 + cents.parse::<i64>().expect("cents");
        lines.push(json!({
            "sku": sku,
            "quantity": 1,
            "displayedUnitPrice": { "amount": amount, "currencyCode": "EUR" },
            "priceToken": price["priceToken"],
        }));
    }
    json!({ "query": VERIFY, "variables": { "input": {
        "currencyCode": "EUR",
        "lines": lines,
        "displayedTotal": { "amount": format!("{}.{:02}", total / 100, total % 100), "currencyCode": "EUR" },
    } } })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn verify_checkout(c: &mut Criterion) {
    let setup = start();
    let http = reqwest::Client::new();
    let body = setup.runtime.block_on(cart(&http, &setup.url));
    let first = setup.runtime.block_on(post(&http, &setup.url, &body));
    assert_eq!(
        first["data"]["verifyCheckout"]["ok"], true,
        "the bench cart must verify: {first}"
    );

    let mut group = c.benchmark_group("verify_checkout");
    // ~25 ms per call: flat sampling keeps the run to seconds.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("http_3_lines", |b| {
        b.to_async(&setup.runtime)
            .iter(|| async { black_box(post(&http, &setup.url, &body).await) })
    });
    group.finish();

    let mut took: Vec<Duration> = setup.runtime.block_on(async {
        let mut took = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let r = post(&http, &setup.url, &body).await;
            took.push(started.elapsed());
            assert_eq!(r["data"]["verifyCheckout"]["ok"], true, "{r}");
        }
        took
    });
    took.sort();
    println!(
        "verify_checkout/http_3_lines over {RUNS} sequential runs (upstream latency 20 ms): \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&took, 0.50).as_secs_f64() * 1e3,
        percentile(&took, 0.99).as_secs_f64() * 1e3,
        took.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );

    let Setup {
        runtime,
        gateway,
        stop_sim,
        ..
    } = setup;
    runtime.block_on(gateway.stop());
    let _ = stop_sim.send(());
}

criterion_group!(benches, verify_checkout);
criterion_main!(benches);
