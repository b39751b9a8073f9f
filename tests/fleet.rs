//! Fleet-wide tuning: a limit or breaker change sent to one replica is
//! applied by every replica sharing Redis (and by one started later), and
//! a reset hands it back to config everywhere. Without Redis the answer
//! says the change stayed local.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use support::redis::RedisServer;
use support::{Moat, Sim, eventually};

fn with_redis(sim: &Sim, redis: &RedisServer) -> moat::config::Config {
    let mut c = support::config(&sim.url);
    c.redis.url = Some(redis.url());
    c.redis.timeout = Duration::from_millis(200);
    c
}

async fn erp_rps(moat: &Moat) -> u64 {
    let (_, limits) = moat.admin_get("/admin/limits").await;
    limits["erp"]["rps"].as_u64().unwrap_or(0)
}

async fn erp_breaker(moat: &Moat) -> Value {
    let (_, status) = moat.admin_get("/admin/status").await;
    status["upstreams"]["erp"]["breaker"]["state"].clone()
}

/// How many replicas `moat` counts as sharing the ERP limit.
async fn erp_replicas(moat: &Moat) -> u64 {
    let (_, status) = moat.admin_get("/admin/status").await;
    status["upstreams"]["erp"]["replicas"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_count_each_other_by_heartbeat_and_share_the_limit_by_that_count() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let a = Moat::start(with_redis(&sim, &redis)).await;
    assert_eq!(erp_replicas(&a).await, 1, "configured: one replica");
    let b = Moat::start(with_redis(&sim, &redis)).await;
    let c = Moat::start(with_redis(&sim, &redis)).await;
    for moat in [&a, &b, &c] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                erp_replicas(moat).await == 3
            })
            .await,
            "three live replicas counted"
        );
    }
    // One stops: after its heartbeats age out, the others count two.
    c.stop().await;
    for moat in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                erp_replicas(moat).await == 2
            })
            .await,
            "a stopped replica is no longer counted"
        );
    }
    let (_, status) = a.admin_get("/admin/status").await;
    assert_eq!(status["redis"]["mode"], "single", "{status}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_reaches_every_replica() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let a = Moat::start(with_redis(&sim, &redis)).await;
    let b = Moat::start(with_redis(&sim, &redis)).await;
    let configured = erp_rps(&a).await;
    assert_eq!(erp_rps(&b).await, configured);

    let (status, answer) = a
        .admin(Method::PUT, "/admin/limits/erp", Some(json!({ "rps": 37 })))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rps"], 37);
    assert_eq!(answer["fleet"], true);
    // (Replicas in one test process share a metrics recorder, so each
    // replica's own limit is read from its admin API.)
    assert!(eventually(Duration::from_secs(5), || async { erp_rps(&b).await == 37 }).await);

    // A replica started now takes the fleet's setting too.
    let c = Moat::start(with_redis(&sim, &redis)).await;
    assert!(eventually(Duration::from_secs(5), || async { erp_rps(&c).await == 37 }).await);

    // Breakers too, and a reset from another replica hands them back.
    let (_, answer) = b
        .admin(
            Method::POST,
            "/admin/breakers/erp",
            Some(json!({ "action": "open" })),
        )
        .await;
    assert_eq!(answer["fleet"], true, "{answer}");
    for moat in [&a, &c] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                erp_breaker(moat).await == "open"
            })
            .await
        );
    }
    let (_, answer) = c
        .admin(
            Method::POST,
            "/admin/breakers/erp",
            Some(json!({ "action": "reset" })),
        )
        .await;
    assert_eq!(answer["state"], "closed", "{answer}");
    let (_, answer) = c.admin(Method::DELETE, "/admin/limits/erp", None).await;
    assert_eq!(answer["rps"].as_u64(), Some(configured), "{answer}");
    for moat in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                erp_breaker(moat).await == "closed" && erp_rps(moat).await == configured
            })
            .await
        );
    }
    for moat in [a, b, c] {
        moat.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_change_says_it_stayed_on_this_replica() {
    let sim = Sim::start().await;
    let moat = Moat::start(support::config(&sim.url)).await;
    let (status, answer) = moat
        .admin(Method::PUT, "/admin/limits/erp", Some(json!({ "rps": 12 })))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["fleet"], false);
    assert_eq!(erp_rps(&moat).await, 12);
    let (_, answer) = moat.admin(Method::DELETE, "/admin/limits/erp", None).await;
    assert_ne!(answer["rps"], 12, "{answer}");
    moat.stop().await;
}
