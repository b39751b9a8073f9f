//! Change events end to end: two replicas sharing a test Redis in front of
//! the simulator, events posted signed (or not) as a system of record
//! would, and what each replica then serves.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::events::{
    now, post, post_signed, price_event, rfc3339, send, shown_price, thin_price_event,
};
use support::proxy::Proxy;
use support::redis::RedisServer;
use support::{EVENTS_SECRET, Moat, Sim, config, decimal, eventually};

/// A gateway on `redis_url` in front of `sim`.
async fn replica(sim: &Sim, redis_url: &str) -> Moat {
    let mut c = config(&sim.url);
    c.redis.url = Some(redis_url.to_string());
    Moat::start(c).await
}

/// The simulator's default EUR price of `sku`: (amount in cents, version).
async fn upstream_price(sim: &Sim, sku: &str) -> (i64, u64) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fat_event_reaches_both_replicas_and_a_thin_one_costs_one_refetch() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let (a, b) = (
        replica(&sim, &redis.url()).await,
        replica(&sim, &redis.url()).await,
    );
    let sku = "SKU-000005";
    for moat in [&a, &b] {
        shown_price(moat, sku).await;
    }

    // Fat: the ERP changed and says so with the new price; nobody asks it.
    sim.set_price(sku, json!({ "amount": "66.66", "segment": "default" }))
        .await;
    let (amount, version) = upstream_price(&sim, sku).await;
    let calls = sim.requests("erp.prices").await;
    let event = price_event("fat-1", sku, amount, version);
    let (status, receipt) = send(&a, "erp", &event).await;
    assert_eq!(
        (status, receipt["outcome"].as_str()),
        (200, Some("applied")),
        "{receipt}"
    );
    let want = decimal(amount);
    assert_eq!(shown_price(&a, sku).await.0, want);
    assert!(
        eventually(Duration::from_secs(2), || async {
            shown_price(&b, sku).await.0 == want
        })
        .await,
        "the other replica shows it"
    );
    let (_, as_of) = shown_price(&b, sku).await;
    assert_eq!(
        &as_of[..19],
        &event["occurredAt"].as_str().unwrap()[..19],
        "asOf is the event's time"
    );
    assert_eq!(
        sim.requests("erp.prices").await,
        calls,
        "no upstream price call"
    );

    // Thin: the ERP changed; one replica refetches for the fleet.
    sim.set_price(sku, json!({ "amount": "77.77", "segment": "default" }))
        .await;
    let (_, version) = upstream_price(&sim, sku).await;
    let calls = sim.requests("erp.prices").await;
    let (status, receipt) = send(&b, "erp", &thin_price_event("thin-1", sku, version)).await;
    assert_eq!(
        (status, receipt["outcome"].as_str()),
        (200, Some("applied")),
        "{receipt}"
    );
    for moat in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(2), || async {
                shown_price(moat, sku).await.0 == "77.77"
            })
            .await
        );
    }
    assert_eq!(
        sim.requests("erp.prices").await,
        calls + 1,
        "exactly one refetch"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_older_versions_change_nothing() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let (a, b) = (
        replica(&sim, &redis.url()).await,
        replica(&sim, &redis.url()).await,
    );
    let sku = "SKU-000006";
    let (amount, version) = upstream_price(&sim, sku).await;

    // The same event five times, to either replica: applied once.
    let event = price_event("dup-1", sku, amount + 1, version + 1);
    let mut outcomes = Vec::new();
    for i in 0..5 {
        let (status, r) = send(if i % 2 == 0 { &a } else { &b }, "erp", &event).await;
        assert_eq!(status, 200, "{r}");
        outcomes.push(r["outcome"].as_str().unwrap().to_string());
    }
    assert_eq!(
        outcomes.iter().filter(|o| *o == "applied").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "duplicate").count(),
        4,
        "{outcomes:?}"
    );

    // Two deliveries at once while the refetch is slow: the later one
    // waits for the first and answers as a duplicate, not with a 503 its
    // sender would have to retry.
    let other = "SKU-000016";
    sim.set_price(other, json!({ "amount": "16.16", "segment": "default" }))
        .await;
    let (_, changed) = upstream_price(&sim, other).await;
    sim.fault("erp", json!({ "latency_ms": 300 })).await;
    let copy = thin_price_event("dup-2", other, changed);
    let (first, second) = tokio::join!(send(&a, "erp", &copy), send(&b, "erp", &copy));
    sim.fault("erp", json!({ "latency_ms": 0 })).await;
    let mut outcomes = [first, second].map(|(status, r)| {
        assert_eq!(status, 200, "{r}");
        r["outcome"].as_str().unwrap().to_string()
    });
    outcomes.sort();
    assert_eq!(outcomes, ["applied", "duplicate"]);

    // Version 9, then 7: the older one is ignored.
    let (_, r) = send(&a, "erp", &price_event("v9", sku, 9_00, version + 9)).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    let (_, r) = send(&b, "erp", &price_event("v7", sku, 7_00, version + 7)).await;
    assert_eq!(r["outcome"], "stale", "{r}");
    for moat in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(2), || async {
                shown_price(moat, sku).await.0 == "9.00"
            })
            .await
        );
    }
    let metric = |o: &str| format!("moat_events_total{{source=\"erp\",outcome=\"{o}\"}}");
    assert!(a.metric(&metric("duplicate")).await >= 4.0);
    assert!(a.metric(&metric("stale")).await >= 1.0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_are_refused_and_nothing_is_applied() {
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    c.events.max_body_bytes = moat::config::ByteSize(4096);
    let moat = Moat::start(c).await;
    let sku = "SKU-000007";
    let before = shown_price(&moat, sku).await.0;
    let body = price_event("bad-1", sku, 1, 1_000).to_string().into_bytes();

    let wrong = moat::events::moat_signature_for(b"not-the-secret", now(), &body);
    let (status, r) = post(
        &moat,
        "erp",
        body.clone(),
        &[("moat-signature", wrong)],
        "application/json",
    )
    .await;
    assert_eq!(
        (status, r["code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{r}"
    );
    let (status, r) = post_signed(&moat, "erp", &body, now() - 3_600).await;
    assert_eq!(status, 401, "stale timestamp: {r}");
    let (status, r) = post(&moat, "erp", body.clone(), &[], "application/json").await;
    assert_eq!(status, 401, "unsigned: {r}");
    let huge = format!(r#"{{"id": "big", "pad": "{}"}}"#, "x".repeat(8_000));
    let (status, r) = post_signed(&moat, "erp", huge.as_bytes(), now()).await;
    assert_eq!(
        (status, r["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{r}"
    );
    let (status, r) = post_signed(&moat, "erp", b"{ not json", now()).await;
    assert_eq!(
        (status, r["code"].as_str()),
        (400, Some("BAD_REQUEST")),
        "{r}"
    );
    assert!(r["error"].as_str().unwrap().starts_with("body:"), "{r}");
    let mut unknown = price_event("bad-2", sku, 1, 1_000);
    unknown["type"] = json!("price.exploded");
    let (status, r) = post_signed(&moat, "erp", unknown.to_string().as_bytes(), now()).await;
    assert_eq!(status, 400);
    assert!(r["error"].as_str().unwrap().starts_with("type:"), "{r}");
    let mut broken = price_event("bad-3", sku, 1, 1_000);
    broken["data"]["amount"] = json!("12.99");
    let (status, r) = post_signed(&moat, "erp", broken.to_string().as_bytes(), now()).await;
    assert_eq!(status, 400);
    assert!(r["error"].as_str().unwrap().starts_with("data:"), "{r}");
    let (status, r) = post_signed(&moat, "wms", &body, now()).await;
    assert_eq!(
        (status, r["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{r}"
    );

    assert_eq!(
        shown_price(&moat, sku).await.0,
        before,
        "nothing was applied"
    );
    assert!(
        moat.metric(r#"moat_events_total{source="erp",outcome="rejected"}"#)
            .await
            >= 7.0
    );
    moat.stop().await;

    // A source without a secret is told which variable to set.
    let secrets = moat::config::Secrets {
        events_secrets: [("pim".to_string(), vec![EVENTS_SECRET.to_string()])].into(),
        ..Default::default()
    };
    let only_pim = Moat::start_with_secrets(config(&sim.url), secrets).await;
    let (status, r) = post_signed(&only_pim, "erp", &body, now()).await;
    assert_eq!(status, 403, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("MOAT_EVENTS_SECRET_ERP"),
        "{r}"
    );
    only_pim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_and_standard_webhooks_are_applied() {
    use base64::Engine;
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;

    // Structured CloudEvent.
    let (amount, version) = upstream_price(&sim, "SKU-000008").await;
    let structured = json!({
        "specversion": "1.0", "id": "ce-1", "source": "/sap/erp", "type": "com.example.price.updated",
        "time": rfc3339(now()), "datacontenttype": "application/json",
        "data": { "sku": "SKU-000008", "segment": "default", "currency": "EUR",
                  "amount": amount + 5, "version": version + 1, "updatedAt": rfc3339(now()) },
    });
    let body = structured.to_string().into_bytes();
    let signature = moat::events::moat_signature_for(EVENTS_SECRET.as_bytes(), now(), &body);
    let (status, r) = post(
        &moat,
        "erp",
        body,
        &[("moat-signature", signature)],
        "application/cloudevents+json",
    )
    .await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("applied")),
        "{r}"
    );
    assert_eq!(
        shown_price(&moat, "SKU-000008").await.0,
        decimal(amount + 5)
    );

    // Binary CloudEvent, thin (attributes in headers, no data).
    sim.set_stock("SKU-000009", 3).await;
    let inventory = sim.get_json("/erp/v1/inventory?skus=SKU-000009").await;
    let stock_version = inventory["items"][0]["version"].as_u64().unwrap();
    let mut headers = vec![
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", "ce-2".to_string()),
        ("ce-source", "/sap/erp".to_string()),
        ("ce-type", "inventory.updated".to_string()),
        ("ce-time", rfc3339(now())),
        ("ce-subject", "SKU-000009".to_string()),
        ("ce-entityversion", stock_version.to_string()),
    ];
    // The signature covers the attributes, which are headers here.
    let attributes: reqwest::header::HeaderMap = headers
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect();
    let content = moat::events::signed_content(&attributes, b"");
    let signature = moat::events::moat_signature_for(EVENTS_SECRET.as_bytes(), now(), &content);
    headers.push(("moat-signature", signature));
    let (status, r) = post(&moat, "erp", Vec::new(), &headers, "application/json").await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("applied")),
        "{r}"
    );
    let stock = moat
        .query(
            r#"{ product(sku: "SKU-000009") { availability { quantity } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        stock["data"]["product"]["availability"]["quantity"], 3,
        "{stock}"
    );

    // Standard Webhooks.
    let (amount, version) = upstream_price(&sim, "SKU-000010").await;
    let body = price_event("sw-1", "SKU-000010", amount + 7, version + 1).to_string();
    let t = now().to_string();
    let mac = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(EVENTS_SECRET.as_bytes()).unwrap();
        mac.update(format!("msg_1.{t}.{body}").as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    let headers = [
        ("webhook-id", "msg_1".to_string()),
        ("webhook-timestamp", t),
        ("webhook-signature", format!("v1,{mac}")),
    ];
    let (status, r) = post(
        &moat,
        "erp",
        body.into_bytes(),
        &headers,
        "application/json",
    )
    .await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("applied")),
        "{r}"
    );
    assert_eq!(
        shown_price(&moat, "SKU-000010").await.0,
        decimal(amount + 7)
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_applied_is_parked_then_replayed() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let moat = replica(&sim, &redis.url()).await;
    let sku = "SKU-000011";
    shown_price(&moat, sku).await;
    sim.set_price(sku, json!({ "amount": "55.55", "segment": "default" }))
        .await;
    let (_, version) = upstream_price(&sim, sku).await;

    sim.fault("erp", json!({ "down": true })).await;
    let (status, r) = send(&moat, "erp", &thin_price_event("park-1", sku, version)).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (202, Some("dead_lettered")),
        "{r}"
    );
    let (status, dlq) = moat.admin_get("/admin/dlq").await;
    assert_eq!(status, 200, "{dlq}");
    assert_eq!(dlq["depth"], 1, "{dlq}");
    let letter = &dlq["items"][0];
    assert_eq!(letter["eventId"], "park-1");
    assert!(letter["attempts"].as_u64().unwrap() >= 1);
    assert!(!letter["reason"].as_str().unwrap().is_empty());
    assert_eq!(moat.metric("moat_dlq_depth").await, 1.0);
    // Redelivered by the sender meanwhile: already handled (parked).
    let (_, r) = send(&moat, "erp", &thin_price_event("park-1", sku, version)).await;
    assert_eq!(r["outcome"], "duplicate", "{r}");

    // The ERP is back; its breaker is handed back to its thresholds.
    sim.fault("erp", json!({ "down": false })).await;
    moat.admin_post("/admin/breakers/erp", json!({ "action": "reset" }))
        .await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["admin", "--url", &moat.admin_url, "dlq", "replay", "--json"])
        .env("MOAT_ADMIN_TOKEN", support::ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replayed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(shown_price(&moat, sku).await.0, "55.55");
    let (_, dlq) = moat.admin_get("/admin/dlq").await;
    assert_eq!(dlq["depth"], 0, "{dlq}");

    // Discard: a parked event can be dropped by id.
    sim.fault("erp", json!({ "down": true })).await;
    send(&moat, "erp", &thin_price_event("park-2", sku, version + 1)).await;
    let (_, dlq) = moat.admin_get("/admin/dlq").await;
    let id = dlq["items"][0]["id"].as_str().unwrap().to_string();
    let r = moat
        .http
        .delete(format!("{}/admin/dlq/{id}", moat.admin_url))
        .bearer_auth(support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, dlq) = moat.admin_get("/admin/dlq").await;
    assert_eq!(dlq["depth"], 0);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_and_the_upstream_down_an_event_is_refused_for_later() {
    let mut redis = RedisServer::start();
    let sim = Sim::start().await;
    let moat = replica(&sim, &redis.url()).await;
    let sku = "SKU-000012";
    sim.set_price(sku, json!({ "amount": "44.44", "segment": "default" }))
        .await;
    let (_, version) = upstream_price(&sim, sku).await;
    redis.kill();
    sim.fault("erp", json!({ "down": true })).await;
    let event = thin_price_event("lost-1", sku, version);
    let response = moat
        .http
        .post(format!("{}/events/erp", moat.url))
        .header("content-type", "application/json")
        .header(
            "moat-signature",
            moat::events::moat_signature_for(
                EVENTS_SECRET.as_bytes(),
                now(),
                event.to_string().as_bytes(),
            ),
        )
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));

    // Once both are back, the sender's redelivery is applied, not a duplicate.
    redis.restart();
    sim.fault("erp", json!({ "down": false })).await;
    moat.admin_post("/admin/breakers/erp", json!({ "action": "reset" }))
        .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            send(&moat, "erp", &event).await.1["outcome"] == "applied"
        })
        .await
    );
    assert_eq!(shown_price(&moat, sku).await.0, "44.44");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_redis_replays_what_it_missed_and_keeps_its_l1() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port).await;
    let sim = Sim::start().await;
    let a = replica(&sim, &redis.url()).await;
    let b = replica(&sim, &proxy.url()).await;
    // B holds the first page: 100 products and their prices, in L1.
    let page = "{ products(first: 100) { nodes { sku price { price { amount } } } } }";
    let prices = |r: &Value| -> Vec<String> {
        r["data"]["products"]["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| {
                        n["price"]["price"]["amount"]
                            .as_str()
                            .unwrap_or("")
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = b.query(page, json!({})).await;
    assert_eq!(prices(&before).len(), 100, "{before}");
    let skus: Vec<String> = (1..=100).map(|i| format!("SKU-{i:06}")).collect();
    let mut versions = Vec::new();
    for sku in &skus {
        versions.push(upstream_price(&sim, sku).await.1);
    }
    let pim_calls = sim.requests("pim.products").await;

    // 100 prices change at the source while B cannot hear about it. (The
    // source has them too: a replica that reaches neither Redis nor L2 in
    // time reads the source, and must find the truth there.)
    proxy.cut();
    for (i, sku) in skus.iter().enumerate() {
        sim.set_price(
            sku,
            json!({ "amount": decimal(1_000 + i as i64), "segment": "default" }),
        )
        .await;
        let event = price_event(&format!("cut-{i}"), sku, 1_000 + i as i64, versions[i] + 1);
        let (status, r) = send(&a, "erp", &event).await;
        assert_eq!(
            (status, r["outcome"].as_str()),
            (200, Some("applied")),
            "{r}"
        );
    }
    // B stays cut off until it has noticed, after the last change: its
    // Redis clients, the invalidation reader among them, keep retrying and
    // are refused.
    let refused = proxy.refused();
    assert!(
        eventually(Duration::from_secs(10), || async {
            proxy.refused() > refused
        })
        .await,
        "B tries Redis again while cut off"
    );
    proxy.restore();

    let want: Vec<String> = (0..100).map(|i| decimal(1_000 + i)).collect();
    let shown = std::sync::Mutex::new(Vec::new());
    assert!(
        eventually(Duration::from_secs(10), || async {
            *shown.lock().unwrap() = prices(&b.query(page, json!({})).await);
            *shown.lock().unwrap() == want
        })
        .await,
        "the replica caught up with all 100 changes; it shows {:?}",
        shown.lock().unwrap()
    );
    // Its L1 was not dropped: the page and its products came from it.
    assert_eq!(
        sim.requests("pim.products").await,
        pim_calls,
        "served from L1"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_sends_events_moat_applies_once_even_twice_and_out_of_order() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sim = Sim::start_with(moat::sim::SimConfig {
        products: 500,
        events_to: Some(format!("http://127.0.0.1:{port}")),
        events_secret: Some(EVENTS_SECRET.into()),
        ..Default::default()
    })
    .await;
    let mut c = config(&sim.url);
    c.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let moat = Moat::start(c).await;
    let sku = "SKU-000013";
    shown_price(&moat, sku).await;
    sim.set_price(
        sku,
        json!({ "amount": "33.33", "segment": "default", "emit_event": true }),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            shown_price(&moat, sku).await.0 == "33.33"
        })
        .await,
        "a fat event from the simulator"
    );

    let r = moat
        .http
        .post(format!("{}/_sim/events", sim.url))
        .json(&json!({ "form": "thin", "chaos": true }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let count = |outcome: &'static str| {
        let moat = &moat;
        async move {
            moat.metric(&format!(
                "moat_events_total{{source=\"erp\",outcome=\"{outcome}\"}}"
            ))
            .await
        }
    };
    let applied = count("applied").await;
    for amount in ["34.34", "35.35", "36.36"] {
        sim.set_price(
            sku,
            json!({ "amount": amount, "segment": "default", "emit_event": true }),
        )
        .await;
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            shown_price(&moat, sku).await.0 == "36.36"
        })
        .await,
        "the newest price wins whatever the order"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            count("duplicate").await + count("stale").await >= 3.0
        })
        .await,
        "every second copy was a duplicate"
    );
    assert!(count("applied").await - applied <= 3.0);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_customer_and_order_events_are_applied() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let moat = replica(&sim, &redis.url()).await;

    // A product renamed (fat), then deleted (thin).
    let product = sim.get_json("/pim/v1/products?ids=prod-000020").await["items"][0].clone();
    let mut renamed = product.clone();
    renamed["name"] = json!("Renamed Lamp");
    renamed["version"] = json!(product["version"].as_u64().unwrap() + 1);
    let event = json!({ "id": "p-1", "type": "product.updated", "occurredAt": rfc3339(now()), "data": renamed });
    let (status, r) = send(&moat, "pim", &event).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("applied")),
        "{r}"
    );
    let q = r#"{ product(id: "prod-000020") { name } }"#;
    assert_eq!(
        moat.query(q, json!({})).await["data"]["product"]["name"],
        "Renamed Lamp"
    );
    let gone = json!({ "id": "p-2", "type": "product.deleted", "occurredAt": rfc3339(now()),
                       "entity": { "kind": "product", "id": "prod-000020" } });
    let (_, r) = send(&moat, "pim", &gone).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(
        moat.query(q, json!({})).await["data"]["product"],
        Value::Null
    );

    // A customer changed: their cached sign-in is refetched (one CRM
    // call), and the next request is served from the cache.
    let (id, token, orders) = support::customer_in(&sim, "vip").await;
    moat.query_with_token(&token, "{ viewer { id } }", json!({}))
        .await;
    let crm = sim.requests("crm.customers").await;
    let changed = json!({ "id": "c-1", "type": "customer.updated", "occurredAt": rfc3339(now()),
                          "entity": { "kind": "customer", "id": id }, "version": 99 });
    let (_, r) = send(&moat, "crm", &changed).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    moat.query_with_token(&token, "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(sim.requests("crm.customers").await, crm + 1);

    // An order changed (thin): it is refetched once, for the next read.
    let order_query = "query($id: ID!) { order(id: $id) { status } }";
    let vars = json!({ "id": orders[0] });
    moat.query_with_token(&token, order_query, vars.clone())
        .await;
    let oms = sim.requests("oms.orders").await;
    let updated = json!({ "id": "o-1", "type": "order.updated", "occurredAt": rfc3339(now()),
                          "entity": { "kind": "order", "id": orders[0] }, "version": 99 });
    let (_, r) = send(&moat, "oms", &updated).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    moat.query_with_token(&token, order_query, vars).await;
    assert_eq!(sim.requests("oms.orders").await, oms + 1);
    moat.stop().await;
}

/// With Redis configured but down, a replica cannot know whether another
/// one applied an event, nor tell the others it did: a fat event is
/// refused for later rather than applied here alone, and its redelivery,
/// once Redis is back, reaches every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_fat_event_waits_for_it_and_then_reaches_every_replica() {
    let mut redis = RedisServer::start();
    let sim = Sim::start().await;
    let a = replica(&sim, &redis.url()).await;
    let b = replica(&sim, &redis.url()).await;
    let sku = "SKU-000013";
    let (amount, version) = upstream_price(&sim, sku).await;
    let before = decimal(amount);
    for moat in [&a, &b] {
        assert_eq!(shown_price(moat, sku).await.0, before);
    }

    redis.kill();
    let event = price_event("while-redis-is-down", sku, amount + 100, version + 1);
    let (status, receipt) = send(&a, "erp", &event).await;
    assert_eq!(status, 503, "{receipt}");
    assert_eq!(receipt["code"], "REDIS_UNAVAILABLE", "{receipt}");
    assert_eq!(
        shown_price(&a, sku).await.0,
        before,
        "not applied on A alone"
    );

    redis.restart();
    assert!(
        eventually(Duration::from_secs(10), || async {
            send(&a, "erp", &event).await.1["outcome"] == "applied"
        })
        .await
    );
    let after = decimal(amount + 100);
    for moat in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                shown_price(moat, sku).await.0 == after
            })
            .await,
            "every replica shows the redelivered change"
        );
    }
    assert_eq!(send(&b, "erp", &event).await.1["outcome"], "duplicate");
    a.stop().await;
    b.stop().await;
}
