//! Real Varnish (`varnishd` with `deploy/varnish/moat.vcl` and the xkey
//! vmod) in front of a gateway: a product page is a Varnish hit the second
//! time; a signed price event purges it, so Varnish serves the new price
//! next; with Varnish stopped the event is still applied at once and the
//! purge reaches Varnish once it is back.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::events::{price_event, send};
use support::redis::RedisServer;
use support::varnish::{self, Varnish};
use support::{Moat, Sim, decimal, eventually};

const PAGE: &str =
    "query($sku: String!) { product(sku: $sku) { sku name price { price { amount } } } }";

/// The product page through Varnish: its price and `X-Cache`.
async fn page(http: &reqwest::Client, varnish: &Varnish, sku: &str) -> (String, String) {
    let response = http
        .get(format!("{}/graphql", varnish.url()))
        .query(&[
            ("query", PAGE.to_string()),
            ("variables", json!({ "sku": sku }).to_string()),
        ])
        .send()
        .await
        .expect("GET through varnish");
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Value = response.json().await.expect("json through varnish");
    let amount = body["data"]["product"]["price"]["price"]["amount"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (amount, cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varnish_serves_from_cache_until_an_event_purges_it() {
    if !varnish::available() {
        eprintln!("varnishd not installed: skipped (CI installs it)");
        return;
    }
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let mut config = support::config(&sim.url);
    config.redis.url = Some(redis.url());
    // Long freshness: only a purge can make Varnish ask again.
    config.cache.price.soft_ttl = Duration::from_secs(600);
    config.cache.inventory.soft_ttl = Duration::from_secs(600);
    config.cache.product.soft_ttl = Duration::from_secs(600);
    config.edge.purge_retry = Duration::from_millis(100);
    config.edge.purge_retry_max = Duration::from_millis(500);
    // The purge target's port is known before Moat starts: Varnish's.
    let port = support::free_port();
    config.edge.purge = vec![moat::config::PurgeTarget {
        kind: moat::config::PurgeKind::Varnish,
        url: Some(format!("http://127.0.0.1:{port}")),
        service_id: None,
        zone: None,
        soft: false,
        max_keys: None,
    }];
    let moat = Moat::start(config).await;
    let backend = moat.url.rsplit(':').next().unwrap().parse().unwrap();
    let mut varnish = Varnish::start_on(backend, port).await;
    let http = reqwest::Client::new();
    let sku = "SKU-000007";

    let (first, cache) = page(&http, &varnish, sku).await;
    assert_eq!(cache, "MISS");
    assert!(!first.is_empty());
    let (again, cache) = page(&http, &varnish, sku).await;
    assert_eq!((again.as_str(), cache.as_str()), (first.as_str(), "HIT"));
    // Varnish adds a worker's counts up when it finishes a task: wait.
    assert!(
        eventually(Duration::from_secs(10), || async {
            varnish.counter("MAIN.cache_hit") >= 1
        })
        .await,
        "varnishstat counts the hit"
    );

    // A signed price event: Moat applies it and purges Varnish.
    let sent = r#"moat_edge_purges_total{target="varnish",outcome="sent"}"#;
    let purged_before = moat.metric(sent).await;
    let (status, _) = send(
        &moat,
        "erp",
        &price_event("varnish-1", sku, 43_21, 1_000_001),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(10), || async {
            page(&http, &varnish, sku).await.0 == decimal(43_21)
        })
        .await,
        "Varnish serves the new price"
    );
    assert!(moat.metric(sent).await > purged_before);
    assert!(
        eventually(Duration::from_secs(10), || async {
            varnish.counter("MAIN.s_synth") >= 1
        })
        .await,
        "varnishstat counts the purge Moat sent"
    );
    let (_, cache) = page(&http, &varnish, sku).await;
    assert_eq!(cache, "HIT", "cached again");

    // Varnish away: the event is applied and acknowledged all the same.
    varnish.stop();
    let failed = r#"moat_edge_purges_total{target="varnish",outcome="failed"}"#;
    let failed_before = moat.metric(failed).await;
    let (status, receipt) = send(
        &moat,
        "erp",
        &price_event("varnish-2", sku, 44_44, 1_000_002),
    )
    .await;
    assert_eq!(
        (status, receipt["outcome"].as_str()),
        (200, Some("applied"))
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            moat.metric(failed).await > failed_before
        })
        .await,
        "the failed purge is counted"
    );
    let (_, status) = moat.admin_get("/admin/status").await;
    assert!(
        status["edge"]["purge"][0]["lastError"].is_string(),
        "{status}"
    );

    // Back: the purge waiting in the outbox is delivered.
    let delivered_before = moat.metric(sent).await;
    varnish.start_again().await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            moat.metric(sent).await > delivered_before
        })
        .await,
        "the purge is delivered once Varnish is back"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            varnish.counter("MAIN.s_synth") >= 1
        })
        .await,
        "Varnish answered the purge"
    );
    assert_eq!(page(&http, &varnish, sku).await.0, decimal(44_44));
}
