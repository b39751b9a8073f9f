//! Scenario "edge": how long after a signed price event Varnish serves the
//! new price. A gateway (with Redis, so purges go through the outbox)
//! behind a real `varnishd` with `deploy/varnish/moat.vcl`; for each of
//! `EDGE_EVENTS` (200) skus, the product page is cached in Varnish (a
//! hit), a signed fat price event goes to the gateway, and the page is
//! read through Varnish until it shows the new price. Prints p50, p99 and
//! the worst, and how many reads were still old. Run by
//! `loadtests/run edge`, or:
//! `cargo run --release --example edge_purge` (needs varnishd, varnish-modules
//! and redis-server).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::events::{price_event, send};
use support::redis::RedisServer;
use support::varnish::Varnish;
use support::{Moat, Sim, config, decimal};

const PAGE: &str = "query($sku: String!) { product(sku: $sku) { sku price { price { amount } } } }";

async fn through_varnish(http: &reqwest::Client, varnish: &Varnish, sku: &str) -> (String, bool) {
    let response = http
        .get(format!("{}/graphql", varnish.url()))
        .query(&[
            ("query", PAGE.to_string()),
            ("variables", json!({ "sku": sku }).to_string()),
        ])
        .send()
        .await
        .expect("GET through varnish");
    let hit = response
        .headers()
        .get("x-cache")
        .is_some_and(|v| v == "HIT");
    let body: Value = response.json().await.expect("json");
    let amount = body["data"]["product"]["price"]["price"]["amount"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (amount, hit)
}

#[tokio::main]
async fn main() {
    let events: usize = std::env::var("EDGE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let redis = RedisServer::start();
    let sim = Sim::start_with(moat::sim::SimConfig {
        products: 1_000,
        ..Default::default()
    })
    .await;
    let mut c = config(&sim.url);
    c.redis.url = Some(redis.url());
    c.reconcile.enabled = false;
    let port = support::free_port();
    c.edge.purge = vec![moat::config::PurgeTarget {
        kind: moat::config::PurgeKind::Varnish,
        url: Some(format!("http://127.0.0.1:{port}")),
        service_id: None,
        zone: None,
        soft: false,
        max_keys: None,
    }];
    let moat = Moat::start(c).await;
    let backend: u16 = moat
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let varnish = Varnish::start_on(backend, port).await;
    let http = reqwest::Client::new();

    let mut took = Vec::with_capacity(events);
    let mut old_reads = 0u64;
    for n in 0..events {
        let sku = format!("SKU-{:06}", n + 1);
        // Cached in Varnish first: the second read is a hit.
        through_varnish(&http, &varnish, &sku).await;
        let (before, hit) = through_varnish(&http, &varnish, &sku).await;
        assert!(hit, "{sku} is not cached in Varnish");
        let amount = 90_000 + n as i64;
        let want = decimal(amount);
        assert_ne!(before, want);
        let event = price_event(
            &format!("edge-load-{n}"),
            &sku,
            amount,
            1_000_000 + n as u64,
        );
        let started = Instant::now();
        let (status, _) = send(&moat, "erp", &event).await;
        assert_eq!(status, 200, "event for {sku}");
        loop {
            let (shown, _) = through_varnish(&http, &varnish, &sku).await;
            if shown == want {
                took.push(started.elapsed());
                break;
            }
            old_reads += 1;
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Varnish still serves {shown} for {sku}"
            );
        }
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{} signed price events, each read back through Varnish until it showed the new price",
        took.len()
    );
    println!(
        "event sent -> new price served by Varnish: p50 {:.1} ms, p99 {:.1} ms, worst {:.1} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(took[took.len() - 1])
    );
    println!(
        "reads through Varnish that still showed the old price: {old_reads} ({:.2} per event)",
        old_reads as f64 / took.len() as f64
    );
    moat.stop().await;
}
