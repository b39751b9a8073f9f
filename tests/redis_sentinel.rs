//! Replicas on a Sentinel-watched Redis (a primary, a replica, three
//! Sentinels): everything they share works, keeps working after the
//! primary is killed and the Sentinels promote the replica, and no
//! storefront read fails meanwhile.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;

use moat::config::RedisMode;
use support::fleet::{Load, PRICE, price_of, shared_tier_holds};
use support::redis::{RedisSentinels, SENTINEL_MASTER};
use support::{Moat, Sim, config, eventually};

fn on_sentinels(sim: &Sim, setup: &RedisSentinels) -> moat::config::Config {
    let mut c = config(&sim.url);
    c.redis.mode = RedisMode::Sentinel;
    c.redis.nodes = setup.nodes();
    c.redis.master = Some(SENTINEL_MASTER.into());
    c.redis.timeout = Duration::from_millis(300);
    c.upstream.limits.rps = 100_000;
    c.upstream.limits.burst = 10_000;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_sentinels_keep_serving_through_a_primary_failover() {
    let mut setup = RedisSentinels::start();
    let sim = Sim::start().await;
    let a = Moat::start(on_sentinels(&sim, &setup)).await;
    let b = Moat::start(on_sentinels(&sim, &setup)).await;
    let replicas = [&a, &b];
    for moat in replicas {
        assert!(
            eventually(Duration::from_secs(5), || async {
                moat.query(PRICE, json!({ "sku": "SKU-000001" })).await;
                moat.admin_get("/admin/status").await.1["redis"]["answering"] == true
            })
            .await,
            "the primary was found from the Sentinels"
        );
    }
    shared_tier_holds(&sim, &replicas, 100, "before").await;

    let skus: Vec<String> = (0..20).map(|n| format!("SKU-{:06}", 400 + n)).collect();
    for sku in &skus {
        for moat in replicas {
            assert!(price_of(&moat.query(PRICE, json!({ "sku": sku })).await).is_some());
        }
    }
    let load = Load::start(&replicas, &skus).await;
    assert!(load.progressed(100).await, "load is running");
    let old = setup.primary.port;
    setup.primary.kill();
    let failed_over = Instant::now();
    let promoted = eventually(Duration::from_secs(30), || async {
        setup.primary_port().is_some_and(|p| p != old)
    })
    .await;
    assert!(promoted, "the Sentinels promoted the replica");
    assert_eq!(setup.primary_port(), Some(setup.replica.port));
    let took = failed_over.elapsed();
    assert!(load.progressed(200).await, "serving after the failover");
    let (answered, failed, failures) = load.finish().await;
    assert_eq!(
        failed, 0,
        "{failed} of {answered} storefront reads failed during a failover of {took:?}: {failures:?}"
    );

    shared_tier_holds(&sim, &replicas, 250, "after").await;
    assert!(
        a.metric("moat_redis_topology_refresh_duration_seconds_count{mode=\"sentinel\"}")
            .await
            >= 2.0,
        "the primary was looked up again"
    );
    a.stop().await;
    b.stop().await;
}

/// `moat doctor` asks the Sentinels for the primary and pings it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_finds_the_primary_through_the_sentinels() {
    let setup = RedisSentinels::start();
    let sim = Sim::start().await;
    let file = support::process::config_file(
        "sentinel",
        &format!(
            "[upstream]\nurl = \"{}\"\n[redis]\nmode = \"sentinel\"\nmaster = \"{SENTINEL_MASTER}\"\n",
            sim.url
        ),
    );
    let (_, out) = support::process::moat(
        &["doctor", "--config", file.to_str().unwrap(), "--json"],
        &[("MOAT_REDIS__NODES", &setup.nodes().join(","))],
    )
    .await;
    let lines: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    let line = lines
        .iter()
        .find(|l| l["check"] == "redis.nodes")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(line["status"], "OK", "{line}");
}
