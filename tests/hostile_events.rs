//! Hostile change events against the real binary, as a sender with a
//! captured signature, a skewed or forged clock, or a runaway version
//! counter would send them: nothing unsigned is acted on, no time runs
//! ahead of the gateway's clock, versions stay exact and the owner heals
//! what a bad one left, ids cannot forge log lines, and the dead-letter
//! queue cannot grow without bound.
//!
//! The sender here signs as the README documents, by hand, so the tests
//! hold the documented form, not just agree with Moat's own signing code.

mod support;

use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use support::events::{now, rfc3339};
use support::process::{Running, config_file};
use support::redis::RedisServer;
use support::{ADMIN_TOKEN, EVENTS_SECRET, Sim, eventually};

/// `Moat-Signature` over `content` at unix time `t`.
fn signature(t: u64, content: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(EVENTS_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(content);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// What a binary-mode CloudEvent's signature covers: each `ce-*` header as
/// `name:value\n`, sorted by name, an empty line, then the body.
fn binary_content(attributes: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<String> = attributes
        .iter()
        .map(|(name, value)| format!("{}:{value}\n", name.to_ascii_lowercase()))
        .collect();
    lines.sort();
    let mut content = lines.concat().into_bytes();
    content.push(b'\n');
    content.extend_from_slice(body);
    content
}

/// Posts to `/events/{source}`; the status and the JSON answer.
async fn post(
    moat: &Running,
    source: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/events/{source}", moat.public))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("event post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Posts Moat's envelope, signed now.
async fn send(moat: &Running, source: &str, event: &Value) -> (u16, Value) {
    let body = event.to_string().into_bytes();
    let signed = signature(now(), &body);
    post(moat, source, &[("moat-signature", signed)], body).await
}

/// Posts a binary-mode CloudEvent signed over `signed_attributes`, sending
/// `sent_attributes` (the same, unless forged after signing).
async fn send_binary(
    moat: &Running,
    signed_attributes: &[(&str, String)],
    sent_attributes: &[(&str, String)],
) -> (u16, Value) {
    let signed = signature(now(), &binary_content(signed_attributes, b""));
    let mut headers = sent_attributes.to_vec();
    headers.push(("moat-signature", signed));
    post(moat, "erp", &headers, Vec::new()).await
}

fn gateway(name: &str, config: &str, sim: &Sim, redis: Option<&RedisServer>) -> Running {
    let file = config_file(name, config);
    let redis_url = redis.map(RedisServer::url);
    let mut env = vec![
        ("MOAT_UPSTREAM_URL", sim.url.as_str()),
        ("MOAT_EVENTS_SECRET", EVENTS_SECRET),
    ];
    if let Some(url) = &redis_url {
        env.push(("MOAT_REDIS_URL", url.as_str()));
    }
    Running::start(&file, &env)
}

async fn stock_version(sim: &Sim, sku: &str) -> u64 {
    sim.get_json(&format!("/erp/v1/inventory?skus={sku}")).await["items"][0]["version"]
        .as_u64()
        .expect("a stock version")
}

/// The default EUR price of `sku` at the ERP: (minor units, version).
async fn owner_price(sim: &Sim, sku: &str) -> (i64, u64) {
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

async fn shown(moat: &Running, query: &str) -> Value {
    moat.query(query).await["data"].clone()
}

async fn shown_price(moat: &Running, sku: &str) -> String {
    let q = format!(r#"{{ product(sku: "{sku}") {{ price {{ price {{ amount }} }} }} }}"#);
    shown(moat, &q).await["product"]["price"]["price"]["amount"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn admin_post(moat: &Running, path: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}{path}", moat.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .expect("admin request")
        .json()
        .await
        .expect("admin json")
}

async fn metric(moat: &Running, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", moat.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn error_of(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_binary_cloudevent_signature_forges_no_attribute() {
    let sim = Sim::start().await;
    let moat = gateway("forged-binary", "", &sim, None);
    let product = r#"{ product(id: "prod-000020") { id sku } }"#;
    let held = shown(&moat, product).await;
    assert_eq!(held["product"]["id"], "prod-000020", "{held}");
    let sku = "SKU-000009";
    sim.set_stock(sku, 3).await;
    let version = stock_version(&sim, sku).await;

    // What a system of record sends: applied.
    let captured = vec![
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", "ce-captured".to_string()),
        ("ce-source", "/sap/erp".to_string()),
        ("ce-type", "inventory.updated".to_string()),
        ("ce-time", rfc3339(now())),
        ("ce-subject", sku.to_string()),
        ("ce-entityversion", version.to_string()),
    ];
    let (status, r) = send_binary(&moat, &captured, &captured).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("applied")),
        "{r}"
    );

    // Its signature under any other attribute: refused before anything is
    // read, whichever one is changed, added or dropped.
    let changed = [
        ("ce-id", "ce-forged".to_string()),
        ("ce-type", "product.deleted".to_string()),
        ("ce-time", rfc3339(now() + 60)),
        ("ce-subject", "prod-000020".to_string()),
        ("ce-entityversion", (version + 1).to_string()),
        ("ce-source", "/attacker".to_string()),
        ("ce-segment", "vip".to_string()),
        ("ce-currency", "USD".to_string()),
    ];
    let mut forgeries: Vec<(String, Vec<(&str, String)>)> = Vec::new();
    for (name, value) in &changed {
        let mut forged: Vec<(&str, String)> = captured
            .iter()
            .filter(|(n, _)| n != name)
            .cloned()
            .collect();
        forged.push((name, value.clone()));
        forgeries.push((format!("{name} changed or added"), forged));
    }
    for (name, _) in &captured {
        let dropped = captured
            .iter()
            .filter(|(n, _)| n != name)
            .cloned()
            .collect();
        forgeries.push((format!("{name} dropped"), dropped));
    }
    // The attack as found: a thin product.deleted under a stock event's
    // signature.
    let deleted = vec![
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", "ce-captured-2".to_string()),
        ("ce-source", "/sap/erp".to_string()),
        ("ce-type", "product.deleted".to_string()),
        ("ce-time", rfc3339(now())),
        ("ce-subject", "prod-000020".to_string()),
    ];
    forgeries.push(("a product.deleted".into(), deleted));
    for (what, forged) in &forgeries {
        let (status, r) = send_binary(&moat, &captured, forged).await;
        assert_eq!(
            (status, r["code"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{what}: {r}"
        );
    }
    // A signature over the body alone (empty here) covers nothing.
    let mut body_only = captured.clone();
    body_only[1].1 = "ce-body-only".into();
    body_only.push(("moat-signature", signature(now(), b"")));
    let (status, r) = post(&moat, "erp", &body_only, Vec::new()).await;
    assert_eq!(status, 401, "{r}");
    assert!(error_of(&r).contains("ce-* headers"), "{r}");

    assert_eq!(
        shown(&moat, product).await,
        held,
        "the product is still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_times_ahead_of_the_gateway_are_refused_or_served_as_now() {
    let sim = Sim::start().await;
    let moat = gateway("future-events", "", &sim, None);
    let sku = "SKU-000014";
    let stock = format!(
        r#"{{ product(sku: "{sku}") {{ availability {{ quantity freshness {{ asOf ageSeconds }} }} }} }}"#
    );
    shown(&moat, &stock).await;
    let version = stock_version(&sim, sku).await;
    let fat = |id: &str, at: String, available: u64, version: u64| {
        json!({ "id": id, "type": "inventory.updated", "occurredAt": at,
                "data": { "sku": sku, "available": available, "version": version,
                          "updatedAt": rfc3339(now()) } })
    };

    // 2099, and an hour ahead: refused, naming the field.
    for (id, at) in [
        ("future-1", "2099-01-01T00:00:00Z".to_string()),
        ("future-2", rfc3339(now() + 3_600)),
    ] {
        let (status, r) = send(&moat, "erp", &fat(id, at, 999, version + 1)).await;
        assert_eq!(
            (status, r["code"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{r}"
        );
        assert!(error_of(&r).starts_with("occurredAt: "), "{r}");
    }
    let future_time = vec![
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", "future-3".to_string()),
        ("ce-type", "inventory.updated".to_string()),
        ("ce-time", rfc3339(now() + 3_600)),
        ("ce-subject", sku.to_string()),
        ("ce-entityversion", (version + 1).to_string()),
    ];
    let (status, r) = send_binary(&moat, &future_time, &future_time).await;
    assert_eq!(status, 400, "{r}");
    assert!(error_of(&r).starts_with("ce-time: "), "{r}");
    let gone = json!({ "id": "future-4", "type": "product.deleted", "occurredAt": "2099-01-01T00:00:00Z",
                       "entity": { "kind": "product", "id": "prod-000021" } });
    let (status, r) = send(&moat, "pim", &gone).await;
    assert_eq!(status, 400, "{r}");
    assert!(error_of(&r).starts_with("occurredAt: "), "{r}");

    // Two minutes ahead, within the tolerance: applied, as of now.
    sim.set_stock(sku, 7).await;
    let version = stock_version(&sim, sku).await;
    let (status, r) = send(
        &moat,
        "erp",
        &fat("skewed", rfc3339(now() + 120), 7, version),
    )
    .await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("applied")),
        "{r}"
    );
    let shown_stock = shown(&moat, &stock).await;
    let availability = &shown_stock["product"]["availability"];
    assert_eq!(availability["quantity"], 7, "{shown_stock}");
    let as_of = humantime::parse_rfc3339(availability["freshness"]["asOf"].as_str().unwrap())
        .expect("asOf is RFC 3339");
    assert!(
        as_of <= SystemTime::now(),
        "asOf {as_of:?} is in the future"
    );
    assert!(
        shown(&moat, r#"{ product(id: "prod-000021") { id } }"#).await["product"]["id"]
            == "prod-000021",
        "the product was never deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_past_the_json_safe_range_are_refused_and_a_poisoned_one_is_ignored() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let moat = gateway("version-range", "", &sim, Some(&redis));
    let sku = "SKU-000031";
    let thin = |id: &str, version: Value| {
        json!({ "id": id, "type": "inventory.updated", "occurredAt": rfc3339(now()),
                "entity": { "kind": "inventory", "id": sku }, "version": version })
    };
    for (id, version) in [
        ("v-max-u64", json!(u64::MAX)),
        ("v-2-53", json!(1u64 << 53)),
        ("v-neg", json!(-1)),
        ("v-frac", json!(1.5)),
    ] {
        let (status, r) = send(&moat, "erp", &thin(id, version)).await;
        assert_eq!(status, 400, "{id}: {r}");
        assert!(error_of(&r).starts_with("version: "), "{id}: {r}");
    }

    // A version a build before this one let in stays in Redis for the
    // dedupe window; it is not a version any more, and stops nothing.
    redis.command(&[
        "SET",
        &format!("moat:v1:version:inventory:{sku}"),
        "18446744073709551615",
    ]);
    sim.set_stock(sku, 5).await;
    let version = stock_version(&sim, sku).await;
    let (status, r) = send(&moat, "erp", &thin("v-after-poison", json!(version))).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("applied")),
        "{r}"
    );

    // The largest exact version is taken, and compared exactly after.
    let top = (1u64 << 53) - 1;
    let (_, r) = send(&moat, "erp", &thin("v-top-1", json!(top - 1))).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    let (_, r) = send(&moat, "erp", &thin("v-top", json!(top))).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    let (_, r) = send(&moat, "erp", &thin("v-top-again", json!(top - 1))).await;
    assert_eq!(r["outcome"], "stale", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_wins_over_a_version_ahead_and_the_next_event_applies() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    // Passes run when the test says, not on the schedule.
    let moat = gateway(
        "owner-wins",
        "[reconcile]\nenabled = false\n",
        &sim,
        Some(&redis),
    );

    // A buggy sender: a price 1,000 versions ahead of the ERP's, wrong.
    let sku = "SKU-000032";
    let (amount, version) = owner_price(&sim, sku).await;
    let runaway = json!({ "id": "runaway-1", "type": "price.updated", "occurredAt": rfc3339(now()),
        "data": { "sku": sku, "segment": "default", "currency": "EUR", "amount": 123,
                  "version": version + 1_000, "updatedAt": rfc3339(now()) } });
    let (_, r) = send(&moat, "erp", &runaway).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(shown_price(&moat, sku).await, "1.23");

    // A thin event naming a version far ahead: the stock is refetched (and
    // right), but the version stays on record.
    let stock_sku = "SKU-000033";
    let stock = format!(r#"{{ product(sku: "{stock_sku}") {{ availability {{ quantity }} }} }}"#);
    shown(&moat, &stock).await;
    let far = json!({ "id": "runaway-2", "type": "inventory.updated", "occurredAt": rfc3339(now()),
                      "entity": { "kind": "inventory", "id": stock_sku }, "version": 1_000_000_000u64 });
    let (_, r) = send(&moat, "erp", &far).await;
    assert_eq!(r["outcome"], "applied", "{r}");

    for entity in ["prices", "inventory"] {
        let report = admin_post(&moat, &format!("/admin/reconcile/{entity}")).await;
        assert_eq!(report["complete"], true, "{report}");
    }
    assert_eq!(
        shown_price(&moat, sku).await,
        support::decimal(amount),
        "the owner's price is back"
    );
    let exceptions = moat.admin_get("/admin/exceptions?system=erp").await;
    let listed = exceptions["exceptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let about = |key: &str| {
        listed
            .iter()
            .any(|e| e["key"].as_str().is_some_and(|k| k.contains(key)))
    };
    assert!(about(sku), "the price ahead is an exception: {exceptions}");
    assert!(
        about(stock_sku),
        "the version ahead is an exception: {exceptions}"
    );

    // The owner changes both; its events apply, not "stale".
    sim.set_price(sku, json!({ "amount": "45.67", "segment": "default" }))
        .await;
    let (_, version) = owner_price(&sim, sku).await;
    let thin = json!({ "id": "after-1", "type": "price.updated", "occurredAt": rfc3339(now()),
                       "entity": { "kind": "price", "id": sku, "segment": "default", "currency": "EUR" },
                       "version": version });
    let (_, r) = send(&moat, "erp", &thin).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(shown_price(&moat, sku).await, "45.67");
    sim.set_stock(stock_sku, 2).await;
    let version = stock_version(&sim, stock_sku).await;
    let thin = json!({ "id": "after-2", "type": "inventory.updated", "occurredAt": rfc3339(now()),
                       "entity": { "kind": "inventory", "id": stock_sku }, "version": version });
    let (_, r) = send(&moat, "erp", &thin).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(
        shown(&moat, &stock).await["product"]["availability"]["quantity"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_cannot_forge_a_log_line() {
    let sim = Sim::start().await;
    let moat = gateway("event-ids", "", &sim, None);
    let forged = "INFO moat: admin token rotated by root";
    for id in [
        format!("evt-1\n{forged}"),
        format!("evt-2\r{forged}"),
        "evt 3".to_string(),
        "\u{202e}evt-4".to_string(),
    ] {
        let event = json!({ "id": id, "type": "inventory.updated", "occurredAt": rfc3339(now()),
                            "entity": { "kind": "inventory", "id": "SKU-000034" }, "version": 1 });
        let (status, r) = send(&moat, "erp", &event).await;
        assert_eq!(status, 400, "{id:?}: {r}");
        assert!(error_of(&r).starts_with("id: "), "{id:?}: {r}");
    }
    assert!(
        !moat.log().iter().any(|line| line.starts_with(forged)),
        "a log line of the sender's: {:?}",
        moat.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_queue_keeps_its_newest_entries_and_counts_what_it_drops() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let moat = gateway(
        "dlq-cap",
        "[events]\ndlq_max_len = 2\napply_attempts = 1\n",
        &sim,
        Some(&redis),
    );
    assert_eq!(
        metric(&moat, "moat_dlq_trimmed_total").await,
        Some(0.0),
        "exported at 0 from the start"
    );
    sim.fault("erp", json!({ "down": true })).await;
    for i in 1..=3 {
        let event = json!({ "id": format!("parked-{i}"), "type": "inventory.updated",
                            "occurredAt": rfc3339(now()),
                            "entity": { "kind": "inventory", "id": format!("SKU-00004{i}") },
                            "version": 1_000 });
        let (status, r) = send(&moat, "erp", &event).await;
        assert_eq!(
            (status, r["outcome"].as_str()),
            (202, Some("dead_lettered")),
            "{r}"
        );
    }
    let dlq = moat.admin_get("/admin/dlq").await;
    let parked: Vec<&str> = dlq["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["eventId"].as_str())
        .collect();
    assert_eq!(parked, ["parked-2", "parked-3"], "{dlq}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(&moat, "moat_dlq_trimmed_total").await == Some(1.0)
        })
        .await,
        "one dropped, counted"
    );
}
