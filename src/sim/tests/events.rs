//! Change events: signature format, and delivery to a real listener on
//! 127.0.0.1 (port 0) standing in for Moat's `/events/{source}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::super::events::signature;
use super::super::{SimConfig, Simulator};
use super::{assert_valid, put, sim};

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Checks `header` against `body` the way Moat does; returns `t`.
fn verify(secret: &str, header: &str, body: &[u8]) -> u64 {
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("malformed signature {header}"));
    assert_eq!(v1.len(), 64, "{header}");
    assert!(
        v1.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "lowercase hex: {header}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&unhex(v1)).expect("signature verifies");
    t.parse().expect("t is unix seconds")
}

#[test]
fn signature_is_hmac_sha256_of_t_dot_body_in_lowercase_hex() {
    let header = signature(b"s3cret", 1_767_225_600, br#"{"id":"evt-1"}"#);
    assert!(header.starts_with("t=1767225600,v1="), "{header}");
    assert_eq!(
        verify("s3cret", &header, br#"{"id":"evt-1"}"#),
        1_767_225_600
    );
    // RFC 4231 test case 2, to pin the primitive itself.
    let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
    mac.update(b"what do ya want for nothing?");
    let known = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    assert!(mac.verify_slice(&unhex(known)).is_ok());
    let header = signature(b"Jefe", 0, b"what do ya want for nothing?");
    assert_ne!(
        header,
        format!("t=0,v1={known}"),
        "the timestamp is part of the signed text"
    );
}

type Received = Arc<Mutex<Vec<(String, HeaderMap, Vec<u8>)>>>;

async fn receive(
    State(seen): State<Received>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> StatusCode {
    seen.lock()
        .expect("lock")
        .push((source, headers, body.to_vec()));
    StatusCode::ACCEPTED
}

#[tokio::test]
async fn emitted_events_are_signed_and_carry_the_wire_item() {
    let seen: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let moat = Router::new()
        .route("/events/{source}", post(receive))
        .with_state(seen.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, moat)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    let simulator = Simulator::new(SimConfig {
        products: 10,
        events_to: Some(format!("http://{addr}/")),
        events_secret: Some("whsec".into()),
        ..SimConfig::default()
    });
    let app = simulator.router();
    let (_, prices) = put(
        &app,
        "/_sim/prices/SKU-000001",
        json!({"amount": "5.00", "emit_event": true}),
    )
    .await;
    let (_, stock) = put(
        &app,
        "/_sim/inventory/SKU-000002",
        json!({"available": 3, "emit_event": true}),
    )
    .await;
    let (_, product) = put(
        &app,
        "/_sim/products/prod-000003",
        json!({"description": "New.", "emit_event": true}),
    )
    .await;
    put(&app, "/_sim/inventory/SKU-000004", json!({"available": 9})).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().expect("lock").len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    server.await.expect("join").expect("serve");

    let received = seen.lock().expect("lock").clone();
    assert_eq!(
        received.len(),
        5,
        "one per changed entity, none for a write without emit_event"
    );
    let mut expected: Vec<(&str, &str, Value)> = Vec::new();
    for item in prices["items"].as_array().expect("items") {
        expected.push(("erp", "price.updated", item.clone()));
    }
    expected.push(("erp", "inventory.updated", stock["items"][0].clone()));
    expected.push(("pim", "product.updated", product["items"][0].clone()));
    let mut ids = std::collections::HashSet::new();
    for (source, kind, data) in expected {
        let (_, headers, body) = received
            .iter()
            .find(|(s, _, b)| {
                s == source && serde_json::from_slice::<Value>(b).is_ok_and(|e| e["data"] == data)
            })
            .unwrap_or_else(|| panic!("no {kind} event for {data}"));
        assert_eq!(headers["content-type"], "application/json");
        let header = headers["moat-signature"].to_str().expect("ascii");
        verify("whsec", header, body);
        let event: Value = serde_json::from_slice(body).expect("json");
        assert_valid("event.json", &event);
        assert_eq!(
            (&event["source"], &event["type"]),
            (&json!(source), &json!(kind))
        );
        assert!(
            event["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("evt-") && ids.insert(id.to_owned()))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn emit_event_without_a_target_is_accepted() {
    let app = sim(5).router();
    let (status, body) = put(
        &app,
        "/_sim/inventory/SKU-000001",
        json!({"available": 1, "emit_event": true}),
    )
    .await;
    assert_eq!(
        (status, &body["items"][0]["available"]),
        (axum::http::StatusCode::OK, &json!(1))
    );
}

#[tokio::test]
async fn thin_events_name_the_entity_and_chaos_sends_each_twice() {
    let seen: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let moat = Router::new()
        .route("/events/{source}", post(receive))
        .with_state(seen.clone());
    let server = tokio::spawn(async move { axum::serve(listener, moat).await });

    let simulator = Simulator::new(SimConfig {
        products: 10,
        events_to: Some(format!("http://{addr}")),
        events_secret: Some("whsec".into()),
        ..SimConfig::default()
    });
    let app = simulator.router();
    let (status, mode) = super::post(
        &app,
        "/_sim/events",
        json!({ "form": "thin", "chaos": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{mode}");
    assert_eq!(mode, json!({ "form": "thin", "chaos": true }));
    put(
        &app,
        "/_sim/prices/SKU-000001",
        json!({"amount": "5.00", "segment": "vip", "emit_event": true}),
    )
    .await;
    put(
        &app,
        "/_sim/inventory/SKU-000002",
        json!({"available": 3, "emit_event": true}),
    )
    .await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().expect("lock").len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.abort();
    let received = seen.lock().expect("lock").clone();
    assert_eq!(received.len(), 4, "two events, each delivered twice");
    for (_, headers, body) in &received {
        verify(
            "whsec",
            headers["moat-signature"].to_str().expect("ascii"),
            body,
        );
        let event: Value = serde_json::from_slice(body).expect("json");
        assert_valid("event.json", &event);
        assert!(event.get("data").is_none(), "thin: {event}");
        assert!(event["version"].as_u64().is_some(), "{event}");
        match event["type"].as_str() {
            Some("price.updated") => assert_eq!(
                event["entity"],
                json!({ "kind": "price", "id": "SKU-000001", "segment": "vip", "currency": "EUR" })
            ),
            Some("inventory.updated") => {
                assert_eq!(
                    event["entity"],
                    json!({ "kind": "inventory", "id": "SKU-000002" })
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let ids: std::collections::HashSet<String> = received
        .iter()
        .map(|(_, _, b)| {
            let event: Value = serde_json::from_slice(b).expect("json");
            event["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 2, "the copies share their id");
}
