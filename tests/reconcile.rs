//! Reconciliation end to end: drift made in the simulator without any
//! event, found by a pass, repaired, counted, recorded as exceptions; the
//! pass yields to other traffic, runs on one replica at a time, and still
//! runs with Redis gone.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::process::{Running, config_file};
use support::redis::RedisServer;
use support::{Moat, Sim, config, eventually};

const PAGE: &str = "{ products(first: 50) { nodes { sku price { price { amount } } availability { quantity } } } }";

fn skus(page: &Value) -> Vec<String> {
    page["data"]["products"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["sku"].as_str().unwrap().to_string())
        .collect()
}

fn no_schedule(c: &mut moat::config::Config) {
    c.reconcile.enabled = false;
}

async fn reconcile(moat: &Moat, entity: &str) -> (u16, Value) {
    moat.admin_post(&format!("/admin/reconcile/{entity}"), json!({}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_found_repaired_and_reported_to_its_owner() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    c.redis.url = Some(redis.url());
    no_schedule(&mut c);
    let moat = Moat::start(c).await;
    let page = moat.query(PAGE, json!({})).await;
    let skus = skus(&page);
    assert_eq!(skus.len(), 50, "{page}");

    // Silent changes: 50 cached prices, 20 cached stock levels.
    for sku in &skus {
        sim.set_price(sku, json!({ "amount": "1.23", "segment": "default" }))
            .await;
    }
    for sku in &skus[..20] {
        sim.set_stock(sku, 4_321).await;
    }

    let (status, prices) = reconcile(&moat, "prices").await;
    assert_eq!(status, 200, "{prices}");
    assert_eq!(
        (prices["checked"].as_u64(), prices["drifted"].as_u64()),
        (Some(50), Some(50)),
        "{prices}"
    );
    assert_eq!(prices["repaired"], 50);
    assert_eq!(prices["complete"], true);
    let example = &prices["examples"][0];
    assert!(
        example["cached"].as_str().unwrap().contains("amount"),
        "{example}"
    );
    assert!(
        example["authoritative"].as_str().unwrap().contains("123"),
        "{example}"
    );
    assert!(example["ageSeconds"].is_number());
    let (_, stock) = reconcile(&moat, "inventory").await;
    assert_eq!(
        (stock["checked"].as_u64(), stock["drifted"].as_u64()),
        (Some(50), Some(20)),
        "{stock}"
    );

    // Reads show the owner's values now, straight from the cache.
    let erp = sim.requests("erp.prices").await + sim.requests("erp.inventory").await;
    let after = moat.query(PAGE, json!({})).await;
    for node in after["data"]["products"]["nodes"].as_array().unwrap() {
        assert_eq!(node["price"]["price"]["amount"], "1.23", "{node}");
    }
    let nodes = after["data"]["products"]["nodes"].as_array().unwrap();
    assert!(
        nodes[..20]
            .iter()
            .all(|n| n["availability"]["quantity"] == 4_321)
    );
    assert_eq!(
        sim.requests("erp.prices").await + sim.requests("erp.inventory").await,
        erp,
        "served from the repaired cache"
    );

    // The owners see every mismatch with both values.
    let (_, listed) = moat
        .admin_get("/admin/exceptions?system=erp&limit=1000")
        .await;
    let found: Vec<&Value> = listed["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["foundBy"] == "reconcile")
        .collect();
    assert_eq!(found.len(), 70, "{listed}");
    assert!(
        found
            .iter()
            .all(|e| e["held"].is_object() && e["ownerSays"].is_object()),
        "{listed}"
    );
    // In outside form: money as a decimal with its currency, times RFC 3339.
    let price = found
        .iter()
        .find(|e| e["entity"] == "price" && e["kind"] == "drift")
        .expect("a drifted price");
    for side in ["held", "ownerSays"] {
        let value = &price[side];
        assert!(
            value["amount"].as_str().is_some_and(|a| a.contains('.')),
            "{price}"
        );
        assert!(value["currencyCode"].is_string(), "{price}");
        assert!(
            value["updatedAt"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{price}"
        );
    }
    assert_eq!(
        found.iter().filter(|e| e["entity"] == "inventory").count(),
        20
    );
    assert!(
        moat.metric(r#"moat_reconcile_drift_total{entity="prices"}"#)
            .await
            >= 50.0
    );
    assert!(
        moat.metric(r#"moat_exceptions_total{system="erp",entity="price",found_by="reconcile"}"#)
            .await
            >= 50.0
    );

    // A second pass finds nothing.
    let (_, again) = reconcile(&moat, "prices").await;
    assert_eq!(again["drifted"], 0, "{again}");
    let (_, last) = moat.admin_get("/admin/reconcile/last").await;
    assert_eq!(last["reports"][0]["entity"], "prices", "{last}");
    assert_eq!(last["reports"].as_array().unwrap().len(), 3);

    // The CLI prints reports as a table.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["admin", "--url", &moat.admin_url, "reconcile"])
        .env("MOAT_ADMIN_TOKEN", support::ADMIN_TOKEN)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.starts_with("entity"),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with("prices")).count(),
        2,
        "{table}"
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_yields_to_browse_traffic_and_the_erp_limit_holds() {
    let sim = Sim::start_with(moat::sim::SimConfig {
        products: 2_000,
        ..Default::default()
    })
    .await;
    let mut c = config(&sim.url);
    no_schedule(&mut c);
    c.reconcile.batch_size = 20;
    let moat = Moat::start(c).await;
    // 200 prices cached (unlimited while warming), then a tight ERP limit.
    let q = "query($after: String) { products(first: 100, after: $after) { nodes { price { price { amount } } } pageInfo { endCursor } } }";
    let first = moat.query(q, json!({})).await;
    let cursor = first["data"]["products"]["pageInfo"]["endCursor"].clone();
    moat.query(q, json!({ "after": cursor })).await;
    let (status, _) = moat
        .http
        .put(format!("{}/admin/limits/erp", moat.admin_url))
        .bearer_auth(support::ADMIN_TOKEN)
        .json(&json!({ "rps": 10, "burst": 5, "checkout_reserve": 0.0 }))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 200);

    // Browse traffic that wants more than the whole ERP limit (cold prices).
    let started = Instant::now();
    let erp_before = sim.requests("erp.prices").await + sim.requests("erp.inventory").await;
    let browsing = {
        let (http, url) = (moat.http.clone(), format!("{}/graphql", moat.url));
        tokio::spawn(async move {
            let mut n = 1_000;
            while started.elapsed() < Duration::from_secs(4) {
                n += 1;
                let q = format!(
                    "{{ product(id: \"prod-{n:06}\") {{ price {{ price {{ amount }} }} }} }}"
                );
                let _ = http.post(&url).json(&json!({ "query": q })).send().await;
            }
        })
    };
    let (status, report) = reconcile(&moat, "prices").await;
    browsing.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(status, 200, "{report}");
    assert!(report["checked"].as_u64().unwrap() > 0, "{report}");
    let erp_calls =
        sim.requests("erp.prices").await + sim.requests("erp.inventory").await - erp_before;
    assert!(
        erp_calls as f64 <= 10.0 * elapsed + 5.0 + 1.0,
        "{erp_calls} ERP calls in {elapsed:.1} s at 10 rps"
    );
    assert!(
        moat.metric(r#"moat_ratelimit_rejected_total{upstream="erp",priority="reconcile"}"#)
            .await
            > 0.0,
        "the pass waited for idle capacity"
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_runs_a_pass_and_another_takes_over_when_it_dies() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    // A slow ERP makes the pass long enough to be caught running.
    sim.fault("erp", json!({ "latency_ms": 300 })).await;
    let file = config_file(
        "reconcile-lease",
        "[reconcile]\nenabled = false\nbatch_size = 5\nlease_ttl = \"2s\"\n",
    );
    let a = Running::start(
        &file,
        &[
            ("MOAT_UPSTREAM_URL", &sim.url),
            ("MOAT_REDIS_URL", &redis.url()),
        ],
    );
    let mut c = config(&sim.url);
    c.redis.url = Some(redis.url());
    no_schedule(&mut c);
    c.reconcile.batch_size = 5;
    c.reconcile.lease_ttl = Duration::from_secs(2);
    let b = Moat::start(c).await;
    a.query("{ products(first: 50) { nodes { price { price { amount } } } } }")
        .await;
    let erp = sim.requests("erp.prices").await;

    // A runs a pass; B asking meanwhile is told one is running.
    let a_admin = a.admin.clone();
    let running = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{a_admin}/admin/reconcile/prices"))
            .bearer_auth(support::ADMIN_TOKEN)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(
        eventually(Duration::from_secs(5), || async {
            sim.requests("erp.prices").await > erp
        })
        .await,
        "A's pass is under way"
    );
    let (status, body) = reconcile(&b, "prices").await;
    assert_eq!(status, 409, "one pass at a time across replicas: {body}");
    // A dies mid-pass: its lease outlives it, then lapses, and B runs.
    a.signal("KILL");
    let _ = running.await;
    let (status, body) = reconcile(&b, "prices").await;
    assert_eq!(status, 409, "the dead replica's lease still holds: {body}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            reconcile(&b, "prices").await.0 == 200
        })
        .await,
        "the other replica takes the pass once the lease expires"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_passes_run_once_per_interval_across_the_fleet() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let replica = |sim: &Sim| {
        let mut c = config(&sim.url);
        c.redis.url = Some(redis.url());
        c.reconcile.interval = Duration::from_secs(2);
        c.reconcile.entities = vec!["prices".into()];
        c
    };
    let (a, b) = (
        Moat::start(replica(&sim)).await,
        Moat::start(replica(&sim)).await,
    );
    a.query(PAGE, json!({})).await;
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || async {
            a.admin_get("/admin/reconcile/last").await.1["reports"]
                .as_array()
                .is_some_and(|r| r.len() >= 3)
        })
        .await
    );
    let elapsed = started.elapsed().as_secs_f64();
    let (_, last) = b.admin_get("/admin/reconcile/last").await;
    let reports = last["reports"].as_array().unwrap();
    // Never two at once, and about one per interval.
    for pair in reports.windows(2) {
        assert!(
            pair[0]["startedAt"].as_str().unwrap() >= pair[1]["finishedAt"].as_str().unwrap(),
            "{last}"
        );
    }
    assert!(
        reports.len() as f64 <= elapsed / 2.0 + 2.0,
        "{} passes in {elapsed:.1} s",
        reports.len()
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_pass_still_runs_on_l1_and_reports() {
    let mut redis = RedisServer::start();
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    c.redis.url = Some(redis.url());
    no_schedule(&mut c);
    let moat = Moat::start(c).await;
    let page = moat.query(PAGE, json!({})).await;
    let skus = skus(&page);
    redis.kill();
    for sku in &skus[..10] {
        sim.set_price(sku, json!({ "amount": "2.34", "segment": "default" }))
            .await;
    }
    let (status, report) = reconcile(&moat, "prices").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["checked"].as_u64(), report["drifted"].as_u64()),
        (Some(50), Some(10)),
        "{report}"
    );
    let (_, last) = moat.admin_get("/admin/reconcile/last").await;
    assert_eq!(last["reports"][0]["drifted"], 10, "kept in memory: {last}");
    let (_, exceptions) = moat.admin_get("/admin/exceptions?entity=price").await;
    assert_eq!(
        exceptions["exceptions"].as_array().unwrap().len(),
        10,
        "{exceptions}"
    );
    moat.stop().await;
}
