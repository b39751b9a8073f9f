//! Scenario "cold-replica": how much a new replica costs the upstreams when
//! it starts with an empty L1, with and without the shared L2.
//!
//! Replica A, standing for the fleet already running, serves 10,000
//! product-page requests (a skewed mix over 2,000 products, as storefront
//! traffic is), then replica B starts cold and serves 1,000 drawn the same
//! way. The figure is B's upstream
//! calls per 1,000 requests, read from the simulator's counters. Run by
//! `loadtests/run cold-replica`, or directly:
//! `cargo run --release --example cold_replica` (needs redis-server on PATH).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use support::redis::RedisServer;
use support::{Moat, Sim};

const QUERY: &str = "query($id: ID!) { product(id: $id) { name price { price { amount } } availability { status } } }";
const PRODUCTS: u64 = 2_000;
/// What the running fleet has served before B starts.
const FLEET_REQUESTS: usize = 10_000;
/// What B serves, cold.
const REQUESTS: usize = 1_000;

#[tokio::main]
async fn main() {
    println!(
        "scenario: cold-replica — upstream calls per {REQUESTS} requests of a replica that starts cold"
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>12}",
        "tier", "pim", "erp", "total", "per_1000"
    );
    let without = run(false).await;
    let with = run(true).await;
    for (name, (pim, erp)) in [("l1 only", without), ("l1 + redis l2", with)] {
        let total = pim + erp;
        let per = total as f64 * 1000.0 / REQUESTS as f64;
        println!("{name:<14} {pim:>10} {erp:>10} {total:>10} {per:>12.1}");
    }
    let (a, b) = (without.0 + without.1, with.0 + with.1);
    if b > 0 {
        println!(
            "with L2 the cold replica makes {:.1}x fewer upstream calls",
            a as f64 / b as f64
        );
    } else {
        println!("with L2 the cold replica makes no upstream calls");
    }
}

/// B's (pim, erp) calls for its requests.
async fn run(with_redis: bool) -> (u64, u64) {
    let sim = Sim::start_with(moat::sim::SimConfig {
        products: PRODUCTS as usize,
        ..Default::default()
    })
    .await;
    // A little latency, as real upstreams have.
    for system in ["pim", "erp"] {
        sim.fault(system, json!({ "latency_ms": 2 })).await;
    }
    let redis = with_redis.then(RedisServer::start);
    let config = || {
        let mut c = support::config(&sim.url);
        c.upstream.limits.rps = 100_000;
        c.upstream.limits.burst = 10_000;
        c.redis.url = redis.as_ref().map(RedisServer::url);
        c
    };
    let http = reqwest::Client::new();
    let a = Moat::start(config()).await;
    drive(&http, &format!("{}/graphql", a.url), 1, FLEET_REQUESTS).await;
    let before = counts(&sim).await;
    let b = Moat::start(config()).await;
    drive(&http, &format!("{}/graphql", b.url), 2, REQUESTS).await;
    let after = counts(&sim).await;
    a.stop().await;
    b.stop().await;
    (after.0 - before.0, after.1 - before.1)
}

/// `n` product reads, skewed: most traffic on few products.
async fn drive(http: &reqwest::Client, url: &str, seed: u64, n: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..n {
        // Squaring a uniform draw puts most requests on low ids.
        let u = rng.f64();
        let n = 1 + ((u * u) * (PRODUCTS - 1) as f64) as u64;
        let r: Value = http
            .post(url)
            .json(&json!({ "query": QUERY, "variables": { "id": format!("prod-{n:06}") } }))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert!(r.get("errors").is_none(), "{r}");
    }
}

async fn counts(sim: &Sim) -> (u64, u64) {
    let pim = sim.requests("pim.products").await;
    let erp = sim.requests("erp.prices").await + sim.requests("erp.inventory").await;
    (pim, erp)
}
