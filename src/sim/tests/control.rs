//! The `/_sim` routes: writes, validation, faults and reset.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::super::control::parse_amount;
use super::super::seed;
use super::{assert_error, assert_valid, get, post, put, send, sim};

#[test]
fn amounts_need_exactly_two_minor_digits() {
    assert_eq!(parse_amount("12.34"), Ok(1234));
    assert_eq!(parse_amount("0.05"), Ok(5));
    assert_eq!(parse_amount("1000.00"), Ok(100_000));
    for bad in [
        "12",
        "12.3",
        "12.345",
        "-1.00",
        "+1.00",
        "1e3",
        ".50",
        "1.5a",
        "abc",
        "",
        "1,00",
        "99999999999999999999.00",
    ] {
        assert!(parse_amount(bad).is_err(), "{bad:?} accepted");
    }
}

#[tokio::test(start_paused = true)]
async fn price_writes_bump_versions_per_segment() {
    let app = sim(20).router();
    let (status, one) = put(
        &app,
        "/_sim/prices/SKU-000003",
        json!({"amount": "12.34", "segment": "vip"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    let items = one["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_valid("price.json", &items[0]);
    assert_eq!(
        (
            &items[0]["amount"],
            &items[0]["version"],
            &items[0]["currency"]
        ),
        (&json!(1234), &json!(2), &json!("EUR"))
    );
    assert_ne!(items[0]["updatedAt"], "2026-01-01T00:00:00.000Z");
    let (_, vip) = get(&app, "/erp/v1/prices?skus=SKU-000003&segment=vip").await;
    assert_eq!(vip["items"][0], items[0]);
    let (_, usd) = get(
        &app,
        "/erp/v1/prices?skus=SKU-000003&segment=vip&currency=USD",
    )
    .await;
    assert_eq!(usd["items"][0]["version"], 1, "other currency untouched");

    let (_, all) = put(
        &app,
        "/_sim/prices/SKU-000003",
        json!({"amount": "0.99", "currency": "USD"}),
    )
    .await;
    let items = all["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "no segment: every segment");
    for (item, segment) in items.iter().zip(["default", "wholesale", "vip"]) {
        assert_eq!(
            (&item["segment"], &item["amount"], &item["version"]),
            (&json!(segment), &json!(99), &json!(2))
        );
    }

    let catalog = seed::build(20, 42);
    let discounted = catalog
        .prices
        .iter()
        .position(|p| p[0].compare_at.is_some())
        .expect("some sku has a compare-at");
    let uri = format!("/_sim/prices/SKU-{:06}", discounted + 1);
    let (_, cheaper) = put(&app, &uri, json!({"amount": "1.00", "segment": "default"})).await;
    assert_eq!(
        cheaper["items"][0]["compareAtAmount"],
        catalog.prices[discounted][0]
            .compare_at
            .expect("compare-at")
    );
    let (_, dearer) = put(
        &app,
        &uri,
        json!({"amount": "100000.00", "segment": "default"}),
    )
    .await;
    assert!(
        dearer["items"][0].get("compareAtAmount").is_none(),
        "a compare-at no longer above the price is dropped"
    );

    assert_error(
        &put(&app, "/_sim/prices/SKU-999999", json!({"amount": "1.00"})).await,
        StatusCode::NOT_FOUND,
    );
    for bad in [
        json!({"amount": "12.3"}),
        json!({"amount": 1234}),
        json!({"amount": "1.00", "currency": "GBP"}),
        json!({"amount": "1.00", "segment": "gold"}),
        json!({"amount": "1.00", "emit": true}),
        json!({"currency": "EUR"}),
    ] {
        assert_error(
            &put(&app, "/_sim/prices/SKU-000003", bad).await,
            StatusCode::BAD_REQUEST,
        );
    }
}

#[tokio::test(start_paused = true)]
async fn inventory_and_product_writes_show_up_upstream() {
    let app = sim(20).router();
    let (status, stock) = put(&app, "/_sim/inventory/SKU-000004", json!({"available": 5})).await;
    assert_eq!(status, StatusCode::OK);
    assert_valid("inventory.json", &stock["items"][0]);
    assert_eq!(
        (
            &stock["items"][0]["available"],
            &stock["items"][0]["version"]
        ),
        (&json!(5), &json!(2))
    );
    let (_, served) = get(&app, "/erp/v1/inventory?skus=SKU-000004").await;
    assert_eq!(served["items"][0], stock["items"][0]);
    assert_error(
        &put(&app, "/_sim/inventory/SKU-000004", json!({"available": -1})).await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(
        &put(
            &app,
            "/_sim/inventory/SKU-000004",
            json!({"available": "5"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(
        &put(&app, "/_sim/inventory/NOPE", json!({"available": 1})).await,
        StatusCode::NOT_FOUND,
    );

    let (status, product) = put(
        &app,
        "/_sim/products/prod-000004",
        json!({"name": "Renamed Lamp"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_valid("product.json", &product["items"][0]);
    assert_eq!(
        (
            &product["items"][0]["name"],
            &product["items"][0]["version"]
        ),
        (&json!("Renamed Lamp"), &json!(2))
    );
    let (_, touched) = put(&app, "/_sim/products/prod-000004", json!({})).await;
    assert_eq!(
        touched["items"][0]["version"], 3,
        "an empty write still touches"
    );
    let (_, served) = get(&app, "/pim/v1/products?ids=prod-000004").await;
    assert_eq!(served["items"][0], touched["items"][0]);
    assert_error(
        &put(&app, "/_sim/products/prod-000004", json!({"name": " "})).await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(
        &put(&app, "/_sim/products/prod-000004", json!({"price": 1})).await,
        StatusCode::BAD_REQUEST,
    );
    assert_error(
        &put(&app, "/_sim/products/prod-999999", json!({})).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test(start_paused = true)]
async fn fault_patches_change_only_given_fields() {
    let app = sim(5).router();
    let (_, all) = get(&app, "/_sim/faults").await;
    let default =
        json!({"latency_ms": 20, "error_rate": 0.0, "down": false, "malformed_rate": 0.0});
    assert_eq!(
        all,
        json!({"pim": default, "erp": default, "crm": default, "oms": default})
    );
    post(
        &app,
        "/_sim/faults/oms",
        json!({"latency_ms": 0, "error_rate": 0.5}),
    )
    .await;
    let (_, state) = post(&app, "/_sim/faults/oms", json!({"malformed_rate": 0.25})).await;
    assert_eq!(
        state,
        json!({"latency_ms": 0, "error_rate": 0.5, "down": false, "malformed_rate": 0.25})
    );
    let (_, all) = get(&app, "/_sim/faults").await;
    assert_eq!((&all["oms"], &all["pim"]), (&state, &default));

    assert_error(
        &post(&app, "/_sim/faults/wms", json!({})).await,
        StatusCode::BAD_REQUEST,
    );
    for bad in [
        json!({"latency": 5}),
        json!({"error_rate": 1.5}),
        json!({"malformed_rate": -0.1}),
        json!({"down": "yes"}),
        json!({"latency_ms": -1}),
    ] {
        assert_error(
            &post(&app, "/_sim/faults/pim", bad).await,
            StatusCode::BAD_REQUEST,
        );
    }
    let (_, all) = get(&app, "/_sim/faults").await;
    assert_eq!(all["pim"], default, "a refused patch changes nothing");
    let (status, _) = send(&app, Method::DELETE, "/_sim/faults/pim", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(start_paused = true)]
async fn reset_restores_the_seeded_state() {
    let app = sim(50).router();
    let pristine = sim(50).router();
    let uris = [
        "/pim/v1/products?ids=prod-000001,prod-000002",
        "/erp/v1/prices?skus=SKU-000001&segment=vip",
        "/erp/v1/inventory?skus=SKU-000002",
    ];
    put(
        &app,
        "/_sim/products/prod-000001",
        json!({"name": "Changed"}),
    )
    .await;
    put(&app, "/_sim/prices/SKU-000001", json!({"amount": "1.00"})).await;
    put(&app, "/_sim/inventory/SKU-000002", json!({"available": 0})).await;
    post(
        &app,
        "/_sim/faults/erp",
        json!({"latency_ms": 0, "error_rate": 0.3}),
    )
    .await;
    for uri in uris {
        assert_ne!(
            send(&app, Method::GET, uri, None).await,
            send(&pristine, Method::GET, uri, None).await,
            "{uri}"
        );
    }

    let (status, body) = post(&app, "/_sim/reset", json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ok": true})));
    let (_, stats) = get(&app, "/_sim/stats").await;
    assert!(
        stats["requests"]
            .as_object()
            .expect("requests")
            .values()
            .all(|n| n == 0),
        "{stats}"
    );
    assert_eq!(
        get(&app, "/_sim/faults").await,
        get(&pristine, "/_sim/faults").await
    );
    for uri in uris {
        assert_eq!(
            send(&app, Method::GET, uri, None).await,
            send(&pristine, Method::GET, uri, None).await,
            "{uri}"
        );
    }
    // The fault dice restart too: the same requests fail the same way.
    post(&app, "/_sim/faults/erp", json!({"error_rate": 0.5})).await;
    post(&pristine, "/_sim/faults/erp", json!({"error_rate": 0.5})).await;
    for _ in 0..16 {
        let uri = "/erp/v1/inventory?skus=SKU-000001";
        assert_eq!(get(&app, uri).await.0, get(&pristine, uri).await.0);
    }
}
