//! What replicas sharing one Redis must show whatever Redis is (one
//! server, a Cluster, a Sentinel-watched primary), checked the same way
//! before and after a failover: L2 shared, one fill across replicas, an
//! event applied once with its redelivery a duplicate, an invalidation on
//! every replica, a dead letter replayed. And a storefront load that must
//! not fail while Redis fails over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::events::{price_event, send, shown_price, thin_price_event};
use super::{Moat, Sim, decimal, eventually};

pub const PRICE: &str = r#"query($sku: String!) {
  product(sku: $sku) { price { price { amount } } }
}"#;

pub fn price_of(r: &Value) -> Option<String> {
    r["data"]["product"]["price"]["price"]["amount"]
        .as_str()
        .map(str::to_string)
}

/// The simulator's default EUR price of `sku`: (amount in cents, version).
pub async fn upstream_price(sim: &Sim, sku: &str) -> (i64, u64) {
    let r = sim
        .get_json(&format!(
            "/erp/v1/prices?skus={sku}&segment=default&currency=EUR"
        ))
        .await;
    let item = &r["items"][0];
    (
        item["amount"].as_i64().unwrap(),
        item["version"].as_u64().unwrap(),
    )
}

/// Every check, on skus `SKU-<base+1..>` and event ids tagged `round`.
/// Redis may still be settling after a failover: each check that needs it
/// waits for it (a replica's Redis breaker may be cooling down).
pub async fn shared_tier_holds(sim: &Sim, replicas: &[&Moat], base: u32, round: &str) {
    let (a, b) = (replicas[0], replicas[1]);

    // L2 shared: what A fetched, B reads without an upstream call. A's
    // write may be skipped while Redis settles: then a fresh sku is tried.
    let mut shared = false;
    for n in 0..40 {
        let sku = format!("SKU-{:06}", base + 100 + n);
        let r = a.query(PRICE, json!({ "sku": sku })).await;
        let first = price_of(&r);
        assert!(first.is_some(), "{round}: A serves {sku}: {r}");
        let calls = sim.requests("erp.prices").await;
        let second = price_of(&b.query(PRICE, json!({ "sku": sku })).await);
        assert_eq!(second, first, "{round}: B serves {sku} alike");
        if sim.requests("erp.prices").await == calls {
            shared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shared, "{round}: B read A's fill from L2");

    // One fill across replicas: concurrent misses on both make one call.
    for system in ["pim", "erp"] {
        sim.fault(system, json!({ "latency_ms": 150 })).await;
    }
    let sku = format!("SKU-{:06}", base + 1);
    let (prices, products) = (
        sim.requests("erp.prices").await,
        sim.requests("pim.products").await,
    );
    let queries = (0..100).map(|i| {
        let moat = replicas[i % replicas.len()];
        moat.query(PRICE, json!({ "sku": sku }))
    });
    let responses = futures_util::future::join_all(queries).await;
    for system in ["pim", "erp"] {
        sim.fault(system, json!({ "latency_ms": 0 })).await;
    }
    assert!(responses.iter().all(|r| price_of(r).is_some()), "{round}");
    assert_eq!(
        (
            sim.requests("erp.prices").await - prices,
            sim.requests("pim.products").await - products
        ),
        (1, 1),
        "{round}: one fill across replicas while leases hold"
    );

    // An event applied once, its redelivery a duplicate on the other
    // replica; the change reaches every replica.
    let sku = format!("SKU-{:06}", base + 2);
    for moat in replicas {
        shown_price(moat, &sku).await;
    }
    let (amount, version) = upstream_price(sim, &sku).await;
    let event = price_event(&format!("{round}-fat"), &sku, amount + 111, version + 1);
    let (status, receipt) = send(a, "erp", &event).await;
    assert_eq!(
        (status, receipt["outcome"].as_str()),
        (200, Some("applied")),
        "{round}: {receipt}"
    );
    let (status, receipt) = send(b, "erp", &event).await;
    assert_eq!(
        (status, receipt["outcome"].as_str()),
        (200, Some("duplicate")),
        "{round}: {receipt}"
    );
    let want = decimal(amount + 111);
    for moat in replicas {
        assert!(
            eventually(Duration::from_secs(3), || async {
                shown_price(moat, &sku).await.0 == want
            })
            .await,
            "{round}: the change reached every replica"
        );
    }

    // A purge on one replica reaches the others.
    let sku = format!("SKU-{:06}", base + 3);
    for moat in replicas {
        shown_price(moat, &sku).await;
    }
    sim.set_price(&sku, json!({ "amount": "321.00", "segment": "default" }))
        .await;
    let (status, body) = b
        .admin_post(
            "/admin/cache/purge",
            json!({ "entity": "price", "ids": [sku] }),
        )
        .await;
    assert_eq!(status, 200, "{round}: {body}");
    for moat in replicas {
        assert!(
            eventually(Duration::from_secs(3), || async {
                shown_price(moat, &sku).await.0 == "321.00"
            })
            .await,
            "{round}: the purge reached every replica"
        );
    }

    // A dead letter, parked while the ERP is down, replayed once it is back.
    let sku = format!("SKU-{:06}", base + 4);
    shown_price(a, &sku).await;
    sim.set_price(&sku, json!({ "amount": "54.32", "segment": "default" }))
        .await;
    let (_, version) = upstream_price(sim, &sku).await;
    sim.fault("erp", json!({ "down": true })).await;
    let parked = thin_price_event(&format!("{round}-park"), &sku, version);
    let (status, r) = send(a, "erp", &parked).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (202, Some("dead_lettered")),
        "{round}: {r}"
    );
    let (_, r) = send(b, "erp", &parked).await;
    assert_eq!(r["outcome"], "duplicate", "{round}: {r}");
    sim.fault("erp", json!({ "down": false })).await;
    for moat in replicas {
        moat.admin_post("/admin/breakers/erp", json!({ "action": "reset" }))
            .await;
    }
    let (status, dlq) = b.admin_get("/admin/dlq").await;
    assert_eq!(status, 200, "{round}: {dlq}");
    assert_eq!(dlq["depth"], 1, "{round}: the other replica sees it: {dlq}");
    let (status, report) = b.admin_post("/admin/dlq/replay", json!({})).await;
    assert_eq!(status, 200, "{round}: {report}");
    assert_eq!(
        report["replayed"].as_array().map(Vec::len),
        Some(1),
        "{round}: {report}"
    );
    for moat in replicas {
        assert!(
            eventually(Duration::from_secs(3), || async {
                shown_price(moat, &sku).await.0 == "54.32"
            })
            .await,
            "{round}: the replayed change reached every replica"
        );
    }
    let (_, dlq) = a.admin_get("/admin/dlq").await;
    assert_eq!(dlq["depth"], 0, "{round}: {dlq}");
}

/// Storefront reads of skus every replica holds, round and round, until
/// stopped; counts answers and failures (a request that errs or answers
/// without a price).
pub struct Load {
    stop: Arc<AtomicBool>,
    pub answered: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    pub failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub async fn start(replicas: &[&Moat], skus: &[String]) -> Load {
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            answered: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(std::sync::Mutex::new(Vec::new())),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for (i, moat) in replicas.iter().enumerate() {
            let (url, http) = (moat.url.clone(), moat.http.clone());
            let skus = skus.to_vec();
            let (stop, answered, failed, failures) = (
                load.stop.clone(),
                load.answered.clone(),
                load.failed.clone(),
                load.failures.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    let sku = &skus[n % skus.len()];
                    n += 1;
                    let r = http
                        .post(format!("{url}/graphql"))
                        .json(&json!({ "query": PRICE, "variables": { "sku": sku } }))
                        .send()
                        .await;
                    let body: Option<Value> = match r {
                        Ok(r) => r.json().await.ok(),
                        Err(_) => None,
                    };
                    match body.as_ref().and_then(price_of) {
                        Some(_) => answered.fetch_add(1, Ordering::Relaxed),
                        None => {
                            let mut f = failures.lock().unwrap();
                            if f.len() < 5 {
                                f.push(format!("{sku}: {body:?}"));
                            }
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }));
        }
        Load { tasks, ..load }
    }

    /// Waits until `n` more answers came.
    pub async fn progressed(&self, n: u64) -> bool {
        let from = self.answered.load(Ordering::Relaxed);
        eventually(Duration::from_secs(20), || async {
            self.answered.load(Ordering::Relaxed) >= from + n
        })
        .await
    }

    /// Stops; the failures seen.
    pub async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let failures = self.failures.lock().unwrap().clone();
        (
            self.answered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            failures,
        )
    }
}
