//! Thin change events while their owner cannot answer: a change event only
//! ever makes answers more correct. What Moat holds stays served, marked
//! stale with `CHANGED_AT_SOURCE` on every replica, the event is parked
//! after its retries, and a replay once the owner is back lands the new
//! values. With Redis down too, the sender is told to try again.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::events::{now, rfc3339, send};
use support::redis::RedisServer;
use support::{Moat, Sim, config, eventually};

const PAGE: &str = r#"query($sku: String!) { product(sku: $sku) { id name
    eur: price { price { amount } freshness { stale reason } }
    usd: price(currencyCode: "USD") { price { amount } freshness { stale reason } }
    availability { quantity freshness { stale reason } } } }"#;

async fn replica(sim: &Sim, redis_url: &str) -> Moat {
    let mut c = config(&sim.url);
    c.redis.url = Some(redis_url.to_string());
    Moat::start(c).await
}

/// What a shopper is shown of `sku`: name, EUR and USD amounts, stock, and
/// the freshness of each (`stale reason`).
#[derive(Debug, PartialEq)]
struct Shown {
    name: String,
    eur: String,
    usd: String,
    quantity: i64,
    reasons: [String; 3],
}

async fn shown(moat: &Moat, sku: &str) -> Shown {
    let r = moat.query(PAGE, json!({ "sku": sku })).await;
    let p = &r["data"]["product"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let reason = |f: &Value| {
        let stale = f["stale"].as_bool().unwrap_or_default();
        format!(
            "{} {}",
            if stale { "stale" } else { "fresh" },
            text(&f["reason"])
        )
    };
    Shown {
        name: text(&p["name"]),
        eur: text(&p["eur"]["price"]["amount"]),
        usd: text(&p["usd"]["price"]["amount"]),
        quantity: p["availability"]["quantity"].as_i64().unwrap_or(-1),
        reasons: [
            reason(&p["eur"]["freshness"]),
            reason(&p["usd"]["freshness"]),
            reason(&p["availability"]["freshness"]),
        ],
    }
}

fn all(reason: &str) -> [String; 3] {
    [reason.to_string(), reason.to_string(), reason.to_string()]
}

/// A thin event: what changed and its version, no data.
fn thin(id: &str, kind: &str, entity: Value, version: u64) -> Value {
    json!({ "id": id, "type": kind, "occurredAt": rfc3339(now()), "entity": entity,
            "version": version })
}

async fn version(sim: &Sim, path: &str) -> u64 {
    sim.get_json(path).await["items"][0]["version"]
        .as_u64()
        .expect("a version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thin_events_while_the_owner_is_down_keep_what_is_held_until_the_refetch_lands() {
    let mut redis = RedisServer::start();
    let sim = Sim::start().await;
    let (a, b) = (
        replica(&sim, &redis.url()).await,
        replica(&sim, &redis.url()).await,
    );
    let sku = "SKU-000021";
    let before = shown(&a, sku).await;
    assert_eq!(before.reasons, all("fresh FRESH"), "{before:?}");
    assert_eq!(shown(&b, sku).await, before);
    let r = a.query(PAGE, json!({ "sku": sku })).await;
    let product_id = r["data"]["product"]["id"].as_str().unwrap().to_string();

    // The owners change everything, then cannot answer for it.
    sim.set_price(sku, json!({ "amount": "61.00", "segment": "default" }))
        .await;
    sim.set_price(
        sku,
        json!({ "amount": "71.00", "segment": "default", "currency": "USD" }),
    )
    .await;
    sim.set_stock(sku, 3).await;
    let renamed = reqwest::Client::new()
        .put(format!("{}/_sim/products/{product_id}", sim.url))
        .json(&json!({ "name": "Renamed Notebook" }))
        .send()
        .await
        .unwrap();
    assert!(renamed.status().is_success());
    let prices =
        |currency: &str| format!("/erp/v1/prices?skus={sku}&segment=default&currency={currency}");
    let eur = version(&sim, &prices("EUR")).await;
    let usd = version(&sim, &prices("USD")).await;
    let stock = version(&sim, &format!("/erp/v1/inventory?skus={sku}")).await;
    let product = version(&sim, &format!("/pim/v1/products?ids={product_id}")).await;
    for system in ["erp", "pim"] {
        sim.fault(system, json!({ "down": true })).await;
    }

    // Each kind of thin event: parked after its retries, nothing wiped.
    let events = [
        (
            "erp",
            thin(
                "bare-sku",
                "price.updated",
                json!({ "kind": "price", "id": sku }),
                eur.max(usd),
            ),
        ),
        (
            "erp",
            thin(
                "full-key",
                "price.updated",
                json!({ "kind": "price", "id": sku, "segment": "default", "currency": "EUR" }),
                eur,
            ),
        ),
        (
            "erp",
            thin(
                "stock",
                "inventory.updated",
                json!({ "kind": "inventory", "id": sku }),
                stock,
            ),
        ),
        (
            "pim",
            thin(
                "product",
                "product.updated",
                json!({ "kind": "product", "id": product_id }),
                product,
            ),
        ),
    ];
    for (source, event) in &events {
        let (status, receipt) = send(&a, source, event).await;
        assert_eq!(
            (status, receipt["outcome"].as_str()),
            (202, Some("dead_lettered")),
            "{event}: {receipt}"
        );
        assert!(
            !receipt["reason"].as_str().unwrap_or_default().is_empty(),
            "parked with its reason: {receipt}"
        );
    }
    let held = Shown {
        reasons: all("stale CHANGED_AT_SOURCE"),
        ..before
    };
    assert_eq!(shown(&a, sku).await, held, "the replica that took them");
    let told = tokio::sync::Mutex::new(None);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let now = shown(&b, sku).await;
            let same = now == held;
            *told.lock().await = Some(now);
            same
        })
        .await,
        "the other replica marks what it holds too: {:?}",
        told.lock().await
    );
    // A replica that starts now reads the marks from L2.
    let c = replica(&sim, &redis.url()).await;
    assert_eq!(shown(&c, sku).await, held, "a new replica, through L2");

    let (_, dlq) = a.admin_get("/admin/dlq").await;
    assert_eq!(dlq["depth"], 4, "{dlq}");
    for letter in dlq["items"].as_array().unwrap() {
        assert_eq!(letter["attempts"], 3, "an outage is retried: {letter}");
    }

    // The owners are back: replaying lands the new values everywhere.
    for system in ["erp", "pim"] {
        sim.fault(system, json!({ "down": false })).await;
        a.admin_post(
            &format!("/admin/breakers/{system}"),
            json!({ "action": "reset" }),
        )
        .await;
    }
    let (status, report) = a.admin_post("/admin/dlq/replay", json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["replayed"].as_array().map(Vec::len),
        Some(4),
        "{report}"
    );
    let after = Shown {
        name: "Renamed Notebook".into(),
        eur: "61.00".into(),
        usd: "71.00".into(),
        quantity: 3,
        reasons: all("fresh FRESH"),
    };
    for moat in [&a, &b, &c] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                shown(moat, sku).await == after
            })
            .await,
            "{:?}",
            shown(moat, sku).await
        );
    }

    // With Redis down as well, the event can be neither applied nor
    // parked: the sender is told to deliver it again later, and what is
    // held is still served.
    sim.set_price(sku, json!({ "amount": "62.00", "segment": "default" }))
        .await;
    let eur = version(&sim, &prices("EUR")).await;
    redis.kill();
    sim.fault("erp", json!({ "down": true })).await;
    let event = thin(
        "no-redis",
        "price.updated",
        json!({ "kind": "price", "id": sku, "segment": "default", "currency": "EUR" }),
        eur,
    );
    let body = event.to_string();
    let response = a
        .http
        .post(format!("{}/events/erp", a.url))
        .header("content-type", "application/json")
        .header(
            "moat-signature",
            moat::events::moat_signature_for(
                support::EVENTS_SECRET.as_bytes(),
                now(),
                body.as_bytes(),
            ),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let still = shown(&a, sku).await;
    assert_eq!(
        (still.eur.as_str(), still.reasons[0].as_str()),
        ("61.00", "stale CHANGED_AT_SOURCE"),
        "{still:?}"
    );
    for moat in [a, b, c] {
        moat.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refetch_that_breaks_the_contract_is_parked_without_retries() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let moat = replica(&sim, &redis.url()).await;
    let sku = "SKU-000022";
    let before = shown(&moat, sku).await;
    let stock = version(&sim, &format!("/erp/v1/inventory?skus={sku}")).await;

    // Every answer of the ERP now breaks the contract: asking again would
    // bring the same, so the event is parked at its first attempt.
    sim.fault("erp", json!({ "malformed_rate": 1.0 })).await;
    let event = thin(
        "broken",
        "inventory.updated",
        json!({ "kind": "inventory", "id": sku }),
        stock + 1,
    );
    let (status, receipt) = send(&moat, "erp", &event).await;
    assert_eq!(
        (status, receipt["outcome"].as_str()),
        (202, Some("dead_lettered")),
        "{receipt}"
    );
    let (_, dlq) = moat.admin_get("/admin/dlq").await;
    assert_eq!(dlq["items"][0]["attempts"], 1, "{dlq}");
    let now = shown(&moat, sku).await;
    assert_eq!(now.quantity, before.quantity, "the held stock is kept");
    assert_eq!(now.reasons[2], "stale CHANGED_AT_SOURCE", "{now:?}");
    moat.stop().await;
}
