//! The Redis tier with two gateways (separate L1s) sharing one throwaway
//! redis-server and one simulator: shared fills, invalidation across
//! replicas, honest freshness, stale-if-error, outages, and one fill across
//! replicas.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::redis::RedisServer;
use support::{Moat, Sim, config, error_codes, eventually};

const PRICE: &str = r#"query($sku: String!) {
  product(sku: $sku) { price { price { amount } freshness { asOf ageSeconds stale reason } } }
}"#;

fn with_redis(sim: &Sim, redis: &RedisServer) -> moat::config::Config {
    let mut c = config(&sim.url);
    c.redis.url = Some(redis.url());
    c.redis.timeout = Duration::from_millis(200);
    // Upstream limits are not what these tests are about.
    c.upstream.limits.rps = 100_000;
    c.upstream.limits.burst = 10_000;
    c
}

fn price_of(r: &Value) -> Option<String> {
    r["data"]["product"]["price"]["price"]["amount"]
        .as_str()
        .map(str::to_string)
}

fn stale_of(r: &Value) -> Option<bool> {
    r["data"]["product"]["price"]["freshness"]["stale"].as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_on_one_replica_fills_l2_for_the_other() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let a = Moat::start(with_redis(&sim, &redis)).await;
    let b = Moat::start(with_redis(&sim, &redis)).await;

    let first = a.query(PRICE, json!({ "sku": "SKU-000011" })).await;
    assert!(price_of(&first).is_some(), "{first}");
    let calls = (
        sim.requests("pim.products").await,
        sim.requests("erp.prices").await,
    );

    let second = b.query(PRICE, json!({ "sku": "SKU-000011" })).await;
    assert_eq!(price_of(&second), price_of(&first));
    assert_eq!(
        (
            sim.requests("pim.products").await,
            sim.requests("erp.prices").await
        ),
        calls,
        "B served from L2 without an upstream call"
    );
    // Freshness tells the truth for a value another replica fetched.
    assert_eq!(
        second["data"]["product"]["price"]["freshness"]["asOf"],
        first["data"]["product"]["price"]["freshness"]["asOf"]
    );
    let keys = redis.command(&["KEYS", "moat:v1:price:*"]);
    assert!(
        keys.contains("moat:v1:price:SKU-000011:default:EUR"),
        "{keys}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_one_replica_reaches_the_other_within_a_second() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let a = Moat::start(with_redis(&sim, &redis)).await;
    let b = Moat::start(with_redis(&sim, &redis)).await;
    let vars = json!({ "sku": "SKU-000012" });
    let old = price_of(&a.query(PRICE, vars.clone()).await).unwrap();
    assert_eq!(price_of(&b.query(PRICE, vars.clone()).await).unwrap(), old);

    sim.set_price("SKU-000012", json!({ "amount": "777.00" }))
        .await;
    assert_eq!(
        price_of(&b.query(PRICE, vars.clone()).await).unwrap(),
        old,
        "cached until purged"
    );

    let (status, body) = a
        .admin_post(
            "/admin/cache/purge",
            json!({ "entity": "price", "ids": ["SKU-000012"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = eventually(Duration::from_secs(1), || async {
        price_of(&b.query(PRICE, vars.clone()).await).as_deref() == Some("777.00")
    })
    .await;
    assert!(
        seen,
        "B serves the new price within a second of the purge on A"
    );
    assert_eq!(
        price_of(&a.query(PRICE, vars.clone()).await).unwrap(),
        "777.00"
    );

    // Bad purges are refused with a reason (an entity may be plural,
    // not unknown).
    let (status, body) = a
        .admin_post("/admin/cache/purge", json!({ "entity": "pricez" }))
        .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("entity"), "{body}");
    let (status, _) = a
        .admin_post(
            "/admin/cache/purge",
            json!({ "entity": "price", "ids": [] }),
        )
        .await;
    assert_eq!(status, 400);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_soft_ttl_a_read_is_stale_at_once_and_refreshed_once() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let mut c = with_redis(&sim, &redis);
    c.cache.jitter = 0.0;
    c.cache.price.soft_ttl = Duration::from_secs(1);
    c.cache.price.hard_ttl = Duration::from_secs(60);
    let a = Moat::start(c).await;
    let vars = json!({ "sku": "SKU-000013" });
    let first = a.query(PRICE, vars.clone()).await;
    assert_eq!(stale_of(&first), Some(false));
    let calls = sim.requests("erp.prices").await;

    // Poll until a read comes back stale: that read is served at once and
    // sets off the refresh. It is the only stale read this test makes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut stale = None;
    while stale.is_none() && tokio::time::Instant::now() < deadline {
        let r = a.query(PRICE, vars.clone()).await;
        if stale_of(&r) == Some(true) {
            stale = Some(r);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(stale.is_some(), "a stale read after the soft TTL");
    let stale = stale.unwrap();
    assert_eq!(price_of(&stale), price_of(&first));
    assert!(
        eventually(Duration::from_secs(2), || async {
            sim.requests("erp.prices").await == calls + 1
        })
        .await
    );
    let fresh = a.query(PRICE, vars.clone()).await;
    assert_eq!(stale_of(&fresh), Some(false), "{fresh}");
    assert_eq!(
        sim.requests("erp.prices").await,
        calls + 1,
        "exactly one refresh call"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_erp_down_prices_are_served_stale_up_to_max_stale_and_not_after() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let mut c = with_redis(&sim, &redis);
    c.cache.jitter = 0.0;
    c.cache.price.soft_ttl = Duration::from_millis(500);
    c.cache.price.hard_ttl = Duration::from_millis(500);
    c.cache.price.max_stale = Duration::from_secs(2);
    let a = Moat::start(c).await;
    let vars = json!({ "sku": "SKU-000014" });
    let good = price_of(&a.query(PRICE, vars.clone()).await).unwrap();
    sim.fault("erp", json!({ "down": true })).await;

    // Until max-stale: the last good price, marked stale because the ERP
    // could not answer, never an error.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut saw_stale = false;
    let mut expired = false;
    while !expired && tokio::time::Instant::now() < deadline {
        let r = a.query(PRICE, vars.clone()).await;
        match price_of(&r) {
            Some(p) => {
                assert_eq!(p, good);
                let freshness = &r["data"]["product"]["price"]["freshness"];
                if stale_of(&r) == Some(true) {
                    assert_eq!(freshness["reason"], "SOURCE_UNAVAILABLE", "{r}");
                    saw_stale = true;
                } else {
                    assert_eq!(freshness["reason"], "FRESH", "{r}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None => {
                assert_eq!(error_codes(&r), ["UPSTREAM_UNAVAILABLE"], "{r}");
                expired = true;
            }
        }
    }
    assert!(saw_stale, "served stale while the ERP was down");
    assert!(expired, "after max-stale the price is no longer served");
    let age = a.query(PRICE, vars.clone()).await;
    assert_eq!(age["data"]["product"]["price"], Value::Null);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_mid_load_fails_no_request_and_l2_resumes_when_it_returns() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let sim = Sim::start_with(moat::sim::SimConfig {
        products: 5_000,
        ..Default::default()
    })
    .await;
    let mut redis = RedisServer::start();
    let a = Moat::start(with_redis(&sim, &redis)).await;
    let b = Moat::start(with_redis(&sim, &redis)).await;

    // Eight clients reading ever new products, so Redis is on every path.
    let failures = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let url = if w % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let (failures, completed, done) = (failures.clone(), completed.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                n += 1;
                let sku = format!("SKU-{:06}", 1 + (n * 8 + w) % 4_000);
                let r = http
                    .post(format!("{url}/graphql"))
                    .json(&json!({ "query": PRICE, "variables": { "sku": sku } }))
                    .send()
                    .await;
                let ok = match r {
                    Ok(r) if r.status().is_success() => {
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        body.get("errors").is_none() && price_of(&body).is_some()
                    }
                    _ => false,
                };
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progressed = |by: u64| {
        let completed = completed.clone();
        let target = completed.load(Ordering::Relaxed) + by;
        async move {
            eventually(Duration::from_secs(20), || {
                let c = completed.clone();
                async move { c.load(Ordering::Relaxed) >= target }
            })
            .await
        }
    };
    let breaker = |moat: &Moat, state: &'static str| {
        let (http, url) = (moat.http.clone(), moat.admin_url.clone());
        async move {
            eventually(Duration::from_secs(20), || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let status: Value = match http
                        .get(format!("{url}/admin/status"))
                        .bearer_auth(support::ADMIN_TOKEN)
                        .send()
                        .await
                    {
                        Ok(r) => r.json().await.unwrap_or(Value::Null),
                        Err(_) => Value::Null,
                    };
                    status["redis"]["breaker"]["state"] == state
                }
            })
            .await
        }
    };
    assert!(progressed(200).await, "load is running");
    redis.kill();
    assert!(breaker(&a, "open").await, "A's Redis breaker opens");
    assert!(breaker(&b, "open").await, "B's Redis breaker opens");
    assert!(progressed(300).await, "serving without Redis");
    redis.restart();
    assert!(breaker(&a, "closed").await, "A uses Redis again by itself");
    assert!(breaker(&b, "closed").await, "B uses Redis again by itself");
    assert!(progressed(200).await, "serving with Redis back");
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed");

    // L2 works again without restarting Moat: A fills, B reads it. Each
    // attempt asks for a product nobody has cached, so it reaches Redis
    // (the first ones may find Redis' breaker still cooling down).
    let mut filled = None;
    for n in 4_001..4_100 {
        let sku = format!("SKU-{n:06}");
        let _ = a.query(PRICE, json!({ "sku": sku })).await;
        let key = format!("moat:v1:price:{sku}:default:EUR");
        if redis.command(&["EXISTS", &key]).contains(":1") {
            filled = Some(sku);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sku = filled.expect("A writes to L2 again");
    let calls = sim.requests("erp.prices").await;
    assert!(price_of(&b.query(PRICE, json!({ "sku": sku })).await).is_some());
    assert_eq!(
        sim.requests("erp.prices").await,
        calls,
        "B's read was an L2 hit"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_across_two_replicas_make_one_upstream_call() {
    let sim = Sim::start().await;
    for system in ["pim", "erp"] {
        sim.fault(system, json!({ "latency_ms": 150 })).await;
    }
    let redis = RedisServer::start();
    let a = Moat::start(with_redis(&sim, &redis)).await;
    let b = Moat::start(with_redis(&sim, &redis)).await;
    let vars = json!({ "sku": "SKU-000015" });
    let queries = (0..500).map(|i| {
        let moat = if i % 2 == 0 { &a } else { &b };
        moat.query(PRICE, vars.clone())
    });
    let responses = futures_util::future::join_all(queries).await;
    assert!(responses.iter().all(|r| price_of(r).is_some()));
    let prices = sim.requests("erp.prices").await;
    let products = sim.requests("pim.products").await;
    assert!(
        prices <= 2 && products <= 2,
        "prices {prices}, products {products}"
    );
    assert_eq!(
        (prices, products),
        (1, 1),
        "one fill across replicas while leases hold"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moat_starts_and_serves_with_redis_down() {
    let sim = Sim::start().await;
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let mut c = config(&sim.url);
    c.redis.url = Some(url);
    let a = Moat::start(c).await;
    let r = a.query(PRICE, json!({ "sku": "SKU-000016" })).await;
    assert!(price_of(&r).is_some(), "{r}");
    let (status, body) = a.admin_get("/admin/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["redis"]["configured"], true);
    a.stop().await;
}

/// A failover that loses the stream's newest entries leaves a replica's
/// position past what the new primary holds, and the new primary may
/// append below it (its clock): the replica replays what the new primary
/// holds rather than skipping it, and keeps its L1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_stream_position_a_failover_lost_replays_what_the_new_primary_holds() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let a = Moat::start(with_redis(&sim, &redis)).await;
    let b = Moat::start(with_redis(&sim, &redis)).await;
    let (kept, changed, marker) = ("SKU-000019", "SKU-000017", "SKU-000018");
    for sku in [kept, changed, marker] {
        for moat in [&a, &b] {
            assert!(price_of(&moat.query(PRICE, json!({ "sku": sku })).await).is_some());
        }
    }
    // A reads up to a known entry: a purge B sends.
    sim.set_price(marker, json!({ "amount": "18.18" })).await;
    let (status, _) = b
        .admin_post(
            "/admin/cache/purge",
            json!({ "entity": "price", "ids": [marker] }),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(3), || async {
            price_of(&a.query(PRICE, json!({ "sku": marker })).await).as_deref() == Some("18.18")
        })
        .await
    );
    let last = redis.command(&["XREVRANGE", "moat:v1:invalidations", "+", "-", "COUNT", "1"]);
    let at: u64 = last
        .lines()
        .find_map(|l| l.split_once('-').and_then(|(ms, _)| ms.parse().ok()))
        .expect("the stream's last id");

    // The failover: the new primary lacks that entry, and appends (from a
    // replica whose change it took) an id below it.
    sim.set_price(changed, json!({ "amount": "17.17" })).await;
    let kept_price = price_of(&a.query(PRICE, json!({ "sku": kept })).await);
    redis.command(&["DEL", "moat:v1:invalidations"]);
    redis.command(&["DEL", &format!("moat:v1:price:{changed}:default:EUR")]);
    let message = json!({ "from": "a-replica-elsewhere", "entity": "price",
                          "target": { "ids": [changed] } })
    .to_string();
    let id = format!("{}-0", at - 2_000);
    let added = redis.command(&["XADD", "moat:v1:invalidations", &id, "m", &message]);
    assert!(added.contains(&id), "{added}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            price_of(&a.query(PRICE, json!({ "sku": changed })).await).as_deref() == Some("17.17")
        })
        .await,
        "A applied the entry the new primary appended below its position"
    );
    let calls = sim.requests("erp.prices").await;
    assert_eq!(
        price_of(&a.query(PRICE, json!({ "sku": kept })).await),
        kept_price
    );
    assert_eq!(sim.requests("erp.prices").await, calls, "A kept its L1");
    a.stop().await;
    b.stop().await;
}
