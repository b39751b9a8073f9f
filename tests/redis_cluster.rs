//! Replicas on a real Redis Cluster (six `redis-server --cluster-enabled
//! yes`, three primaries with a replica each): everything they share
//! works across slots, keeps working after a primary is killed, and no
//! storefront read fails while the cluster fails over. Purges and events
//! find their keys through Moat's indexes, never by walking the key space.

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use moat::config::RedisMode;
use support::events::{now, rfc3339, send, shown_price};
use support::fleet::{Load, PRICE, price_of, shared_tier_holds};
use support::redis::RedisCluster;
use support::{Moat, Sim, config, eventually};

fn on_cluster(sim: &Sim, cluster: &RedisCluster) -> moat::config::Config {
    let mut c = config(&sim.url);
    c.redis.mode = RedisMode::Cluster;
    c.redis.nodes = cluster.seeds();
    c.redis.timeout = Duration::from_millis(300);
    c.upstream.limits.rps = 100_000;
    c.upstream.limits.burst = 10_000;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_cluster_and_keep_serving_through_a_primary_failover() {
    let mut cluster = RedisCluster::start();
    let sim = Sim::start().await;
    let a = Moat::start(on_cluster(&sim, &cluster)).await;
    let b = Moat::start(on_cluster(&sim, &cluster)).await;
    let replicas = [&a, &b];
    shared_tier_holds(&sim, &replicas, 100, "before").await;
    assert_eq!(
        a.admin_get("/admin/status").await.1["redis"]["answering"],
        true
    );

    // A page of 50 prices: one batched read (MGET) over keys on every
    // shard, and one batched write; B's page comes from L2 alone.
    const PAGE: &str = "{ products(first: 50) { nodes { sku price { price { amount } } } } }";
    let page = |r: &Value| -> Vec<String> {
        r["data"]["products"]["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .filter_map(|n| n["price"]["price"]["amount"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let first = page(&a.query(PAGE, json!({})).await);
    assert_eq!(first.len(), 50, "{first:?}");
    let calls = (
        sim.requests("erp.prices").await,
        sim.requests("pim.products").await,
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            page(&b.query(PAGE, json!({})).await) == first
        })
        .await
    );
    assert_eq!(
        (
            sim.requests("erp.prices").await,
            sim.requests("pim.products").await
        ),
        calls,
        "B's page came from L2"
    );

    // Under load on skus both replicas hold, the primary of the
    // invalidation stream's slot is killed.
    let skus: Vec<String> = (0..20).map(|n| format!("SKU-{:06}", 400 + n)).collect();
    for sku in &skus {
        for moat in replicas {
            assert!(price_of(&moat.query(PRICE, json!({ "sku": sku })).await).is_some());
        }
    }
    let load = Load::start(&replicas, &skus).await;
    assert!(load.progressed(100).await, "load is running");
    let victim = cluster.primary_of("moat:v1:invalidations");
    cluster.kill(victim);
    let failed_over = Instant::now();
    tokio::task::block_in_place(|| cluster.wait_ok());
    let took = failed_over.elapsed();
    assert!(load.progressed(200).await, "serving after the failover");
    let (answered, failed, failures) = load.finish().await;
    assert_eq!(
        failed, 0,
        "{failed} of {answered} storefront reads failed during a failover of {took:?}: {failures:?}"
    );

    shared_tier_holds(&sim, &replicas, 250, "after").await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.admin_get("/admin/status").await.1["redis"]["answering"] == true
        })
        .await
    );
    a.stop().await;
    b.stop().await;
}

/// Cold reads of `skus`, 48 at a time, through the replicas in turn.
async fn cold_reads(replicas: &[Moat], skus: std::ops::Range<usize>) {
    let reads = futures_util::stream::iter(skus)
        .map(|n| replicas[n % 3].query(PRICE, json!({ "sku": format!("SKU-{n:06}") })))
        .buffer_unordered(48);
    let _: Vec<Value> = reads.collect().await;
}

/// Three replicas hold one ERP limit on the cluster; while the primary of
/// its bucket fails over each keeps to its share (limit / the live
/// replicas its heartbeats counted: config says one), and after it the
/// one limit holds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_cluster_hold_one_erp_limit_through_a_failover() {
    let mut cluster = RedisCluster::start();
    let sim = Sim::start().await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let mut c = on_cluster(&sim, &cluster);
        c.upstream.limits.erp.rps = Some(10);
        c.upstream.limits.erp.burst = Some(5);
        replicas.push(Moat::start(c).await);
    }
    for moat in &replicas {
        assert!(
            eventually(Duration::from_secs(5), || async {
                moat.admin_get("/admin/status").await.1["upstreams"]["erp"]["replicas"] == 3
            })
            .await,
            "three live replicas counted"
        );
    }
    let within =
        |calls: u64, secs: f64, rps: f64, burst: u64| calls <= (rps * secs).ceil() as u64 + burst;

    let before = sim.requests("erp.prices").await;
    let started = Instant::now();
    cold_reads(&replicas, 1..151).await;
    let (calls, secs) = (
        sim.requests("erp.prices").await - before,
        started.elapsed().as_secs_f64(),
    );
    eprintln!("before the failover: {calls} ERP calls in {secs:.1}s");
    assert!(
        within(calls, secs, 10.0, 5 + 1),
        "{calls} ERP calls in {secs:.1}s; one limit"
    );
    assert!(calls >= 5, "the shared limit let traffic through ({calls})");

    // The bucket's primary dies; reads go on until the cluster is whole.
    let victim = cluster.primary_of("moat:v1:ratelimit:erp:general");
    cluster.kill(victim);
    let before = sim.requests("erp.prices").await;
    let started = Instant::now();
    let mut n = 151;
    while !cluster.is_ok() {
        assert!(started.elapsed() < Duration::from_secs(30), "no failover");
        cold_reads(&replicas, n..n + 24).await;
        n = if n + 24 > 330 { 151 } else { n + 24 };
    }
    let (calls, secs) = (
        sim.requests("erp.prices").await - before,
        started.elapsed().as_secs_f64(),
    );
    eprintln!("during the failover: {calls} ERP calls in {secs:.1}s");
    // At worst the shared bucket and every local share at once.
    assert!(
        within(calls, secs, 20.0, 5 + 3 * 2 + 1),
        "{calls} ERP calls in {secs:.1}s during the failover"
    );

    let before = sim.requests("erp.prices").await;
    let started = Instant::now();
    cold_reads(&replicas, 331..481).await;
    let (calls, secs) = (
        sim.requests("erp.prices").await - before,
        started.elapsed().as_secs_f64(),
    );
    eprintln!("after the failover: {calls} ERP calls in {secs:.1}s");
    assert!(
        within(calls, secs, 10.0, 5 + 3 * 2 + 1),
        "{calls} ERP calls in {secs:.1}s after the failover"
    );
    for r in replicas {
        r.stop().await;
    }
}

/// 100,000 cached prices: a purge by sku and an order event touch only
/// their record's keys (no `SCAN`, no `KEYS` on any node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_by_sku_and_an_order_event_walk_no_key_space() {
    let cluster = RedisCluster::start();
    let sim = Sim::start().await;
    let secrets = moat::config::Secrets {
        data_key: Some("5d1f0b6a3c2e4f8091a7b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2".into()),
        ..support::secrets()
    };
    let moat = Moat::start_with_secrets(on_cluster(&sim, &cluster), secrets).await;

    // The 100,000 prices, written as Moat lays them out (through the
    // cluster client, each key on its own slot).
    let client = redis::cluster::ClusterClient::new(cluster.seeds()).unwrap();
    let conn = client.get_async_connection().await.unwrap();
    let writes = futures_util::stream::iter(0..100_000u32)
        .map(|n| {
            let mut conn = conn.clone();
            async move {
                let key = format!("moat:v1:price:FILL-{n:06}:default:EUR");
                redis::cmd("SET")
                    .arg(&key)
                    .arg("x")
                    .arg("EX")
                    .arg(600)
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .buffer_unordered(256);
    let written: Vec<redis::RedisResult<()>> = writes.collect().await;
    assert!(written.iter().all(Result::is_ok));

    // One sku cached in three currencies and segments, and an order.
    let sku = "SKU-000042";
    shown_price(&moat, sku).await;
    moat.query(
        r#"query($sku: String!) { product(sku: $sku) { price(currencyCode: USD) { price { amount } } } }"#,
        json!({ "sku": sku }),
    )
    .await;
    let (_, token, orders) = support::customer_in(&sim, "vip").await;
    let order_query = "query($id: ID!) { order(id: $id) { status } }";
    moat.query_with_token(&token, order_query, json!({ "id": orders[0] }))
        .await;
    let price_key = format!("moat:v1:price:{sku}:default:EUR");
    let mut conn = conn.clone();
    let exists = |conn: &redis::cluster_async::ClusterConnection| {
        let mut conn = conn.clone();
        let key = price_key.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(&key)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert!(
        eventually(Duration::from_secs(3), || async {
            exists(&conn).await == 1
        })
        .await,
        "the sku's price is in L2"
    );

    for node in cluster.nodes.iter() {
        node.command(&["CONFIG", "RESETSTAT"]);
    }
    let (status, body) = moat
        .admin_post(
            "/admin/cache/purge",
            json!({ "entity": "price", "ids": [sku] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(exists(&conn).await, 0, "the sku's prices are purged");
    let updated = json!({ "id": "o-100k", "type": "order.updated", "occurredAt": rfc3339(now()),
                          "entity": { "kind": "order", "id": orders[0] }, "version": 99 });
    let oms = sim.requests("oms.orders").await;
    let (_, r) = send(&moat, "oms", &updated).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    moat.query_with_token(&token, order_query, json!({ "id": orders[0] }))
        .await;
    assert_eq!(
        sim.requests("oms.orders").await,
        oms + 1,
        "the order was refetched once"
    );

    assert_eq!(cluster.calls("scan"), 0, "no SCAN");
    assert_eq!(cluster.calls("keys"), 0, "no KEYS");
    let still: i64 = redis::cmd("EXISTS")
        .arg("moat:v1:price:FILL-054321:default:EUR")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(still, 1, "other prices are untouched");
    moat.stop().await;
}

/// `moat doctor` finds the cluster from `MOAT_REDIS__MODE` and
/// `MOAT_REDIS__NODES` (a comma list), and fails when no node answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_cluster_named_in_the_environment() {
    let cluster = RedisCluster::start();
    let sim = Sim::start().await;
    let file =
        support::process::config_file("cluster", &format!("[upstream]\nurl = \"{}\"\n", sim.url));
    let file = file.to_str().unwrap();
    let redis_line = |out: &str| -> Value {
        let lines: Vec<Value> = serde_json::from_str(out).unwrap_or_else(|_| panic!("{out}"));
        lines
            .into_iter()
            .find(|l| l["check"] == "redis.nodes")
            .unwrap_or_else(|| panic!("{out}"))
    };
    let nodes = cluster.seeds()[..2].join(",");
    let (_, out) = support::process::moat(
        &["doctor", "--config", file, "--json"],
        &[
            ("MOAT_REDIS__MODE", "cluster"),
            ("MOAT_REDIS__NODES", &nodes),
        ],
    )
    .await;
    let line = redis_line(&out);
    assert_eq!(line["status"], "OK", "{line}");
    assert!(
        line["detail"].as_str().unwrap().contains("cluster"),
        "{line}"
    );

    let nowhere = format!("redis://127.0.0.1:{}", support::free_port());
    let (code, out) = support::process::moat(
        &["doctor", "--config", file, "--json"],
        &[
            ("MOAT_REDIS__MODE", "cluster"),
            ("MOAT_REDIS__NODES", &nowhere),
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(redis_line(&out)["status"], "FAIL", "{out}");
}

/// Three replicas at the default Redis timeout under steady reads (many
/// at once on each) while a primary is killed: once the cluster has
/// failed over, every replica's Redis answers again and an event reaches
/// all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_of_three_recovers_after_a_primary_dies_under_load() {
    let mut cluster = RedisCluster::start();
    let sim = Sim::start_with(moat::sim::SimConfig {
        products: 20_000,
        ..Default::default()
    })
    .await;
    let mut moats = Vec::new();
    for _ in 0..3 {
        let mut c = on_cluster(&sim, &cluster);
        c.redis.timeout = moat::config::Redis::default().timeout;
        // A shared ERP limit far above the load: every cold read runs
        // the bucket's script on the cluster.
        c.upstream.limits.erp.rps = Some(100_000);
        c.upstream.limits.erp.burst = Some(10_000);
        moats.push(Moat::start(c).await);
    }
    let replicas: Vec<&Moat> = moats.iter().collect();
    shared_tier_holds(&sim, &replicas, 100, "before").await;

    // Mostly cold reads: L2, fill leases and the shared limit all in use.
    let skus: Vec<String> = (1000..20_000).map(|n| format!("SKU-{n:06}")).collect();
    // Eight readers on each replica.
    let readers: Vec<&Moat> = (0..24).map(|i| replicas[i % 3]).collect();
    let load = Load::start(&readers, &skus).await;
    assert!(
        load.progressed(200).await,
        "load is running: {:?}",
        load.failures.lock().unwrap()
    );
    let victim = cluster.primary_of("moat:v1:invalidations");
    cluster.kill(victim);
    tokio::task::block_in_place(|| cluster.wait_ok());
    assert!(load.progressed(500).await, "serving after the failover");

    for (i, moat) in replicas.iter().enumerate() {
        assert!(
            eventually(Duration::from_secs(10), || async {
                let redis = moat.admin_get("/admin/status").await.1["redis"].clone();
                redis["answering"] == true && redis["breaker"]["state"] == "closed"
            })
            .await,
            "replica {i}'s Redis answers again after the failover: {}",
            moat.admin_get("/admin/status").await.1["redis"]
        );
    }
    let (answered, failed, _) = load.finish().await;
    eprintln!("{answered} reads answered, {failed} failed or not found");
    // The shared tier works on every replica: leases, L2, invalidations.
    shared_tier_holds(&sim, &replicas, 300, "after").await;
    for moat in moats {
        moat.stop().await;
    }
}
