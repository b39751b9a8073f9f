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

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moat::app::Gateway;
use moat::config::{Config, Secrets};
use moat::sim::{SimConfig, Simulator};
use serde_json::{Value, json};

const QUERY: &str = "query($id: ID!) { product(id: $id) { name price { price { amount } } availability { status } } }";
const PRODUCTS: u64 = 2_000;
/// What the running fleet has served before B starts.
const FLEET_REQUESTS: usize = 10_000;
/// What B serves, cold.
const REQUESTS: usize = 1_000;

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
    let sim = Simulator::new(SimConfig {
        products: PRODUCTS as usize,
        ..SimConfig::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sim_url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(moat::sim::serve(listener, sim, std::future::pending()));
    let http = reqwest::Client::new();
    for system in ["pim", "erp", "crm", "oms"] {
        http.post(format!("{sim_url}/_sim/faults/{system}"))
            .json(&json!({ "latency_ms": 2 }))
            .send()
            .await
            .expect("faults");
    }
    let redis = with_redis.then(Redis::start);
    let config = || {
        let mut c = Config::default();
        c.server.listen = "127.0.0.1:0".parse().expect("addr");
        c.admin.listen = "127.0.0.1:0".parse().expect("addr");
        c.upstream.url = Some(sim_url.clone());
        c.upstream.limits.rps = 100_000;
        c.upstream.limits.burst = 10_000;
        c.redis.url = redis.as_ref().map(Redis::url);
        c
    };
    let a = Gateway::start(config(), Secrets::default())
        .await
        .expect("replica A");
    drive(
        &http,
        &format!("http://{}/graphql", a.public_addr),
        1,
        FLEET_REQUESTS,
    )
    .await;
    let before = counts(&http, &sim_url).await;
    let b = Gateway::start(config(), Secrets::default())
        .await
        .expect("replica B");
    drive(
        &http,
        &format!("http://{}/graphql", b.public_addr),
        2,
        REQUESTS,
    )
    .await;
    let after = counts(&http, &sim_url).await;
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

async fn counts(http: &reqwest::Client, sim_url: &str) -> (u64, u64) {
    let s: Value = http
        .get(format!("{sim_url}/_sim/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    let n = |k: &str| s["requests"][k].as_u64().unwrap_or(0);
    (n("pim.products"), n("erp.prices") + n("erp.inventory"))
}

/// A throwaway redis-server on a free loopback port.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
