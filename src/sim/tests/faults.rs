//! Injected faults and the traffic counters: what a gateway's breakers,
//! contract checks and load tests rely on.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::upstream::skus;
use super::{assert_error, get, post, send, sim, violations};

#[tokio::test(start_paused = true)]
async fn down_gives_503_and_errors_give_500_for_that_system_only() {
    let app = sim(10).router();
    let (status, state) = post(&app, "/_sim/faults/pim", json!({"down": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        state,
        json!({"latency_ms": 20, "error_rate": 0.0, "down": true, "malformed_rate": 0.0})
    );
    assert_error(
        &get(&app, "/pim/v1/products?ids=prod-000001").await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    assert_error(
        &get(&app, "/pim/v1/categories").await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    assert_eq!(
        get(&app, "/erp/v1/inventory?skus=SKU-000001").await.0,
        StatusCode::OK
    );

    post(&app, "/_sim/faults/erp", json!({"error_rate": 1.0})).await;
    assert_error(
        &get(&app, "/erp/v1/inventory?skus=SKU-000001").await,
        StatusCode::INTERNAL_SERVER_ERROR,
    );
    assert_error(
        &post(&app, "/erp/v1/quote", json!({"lines": []})).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    );
    assert_eq!(
        get(&app, "/oms/v1/orders/ord-00001").await.0,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn latency_delays_every_request_of_that_system() {
    let app = sim(10).router();
    let started = tokio::time::Instant::now();
    get(&app, "/pim/v1/categories").await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(20),
        "default latency"
    );
    post(&app, "/_sim/faults/crm", json!({"latency_ms": 1500})).await;
    let started = tokio::time::Instant::now();
    get(&app, "/crm/v1/customers/by-token/nope").await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn malformed_rate_one_always_breaks_the_contract() {
    let app = sim(50).router();
    for system in ["pim", "erp", "crm", "oms"] {
        post(
            &app,
            &format!("/_sim/faults/{system}"),
            json!({"malformed_rate": 1.0}),
        )
        .await;
    }
    let (_, sign_ins) = get(&app, "/_sim/customers").await;
    let token = sign_ins["items"][0]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let quote = json!({"lines": [{"sku": "SKU-000001", "quantity": 1}, {"sku": "SKU-000002", "quantity": 2}]});
    let (mut not_json, mut invalid) = (0, 0);
    for _ in 0..12 {
        let calls = [
            (
                Method::GET,
                "/pim/v1/products?limit=5".to_owned(),
                None,
                "product.json",
            ),
            (
                Method::GET,
                "/pim/v1/categories".to_owned(),
                None,
                "category.json",
            ),
            (
                Method::GET,
                format!("/erp/v1/prices?skus={}", skus(1, 5)),
                None,
                "price.json",
            ),
            (
                Method::GET,
                format!("/erp/v1/inventory?skus={}", skus(1, 5)),
                None,
                "inventory.json",
            ),
            (
                Method::POST,
                "/erp/v1/quote".to_owned(),
                Some(quote.clone()),
                "quote.json",
            ),
            (
                Method::GET,
                "/oms/v1/orders/ord-00002".to_owned(),
                None,
                "order.json",
            ),
            (
                Method::GET,
                format!("/crm/v1/customers/by-token/{token}"),
                None,
                "customer.json",
            ),
        ];
        for (method, uri, body, schema) in calls {
            let (status, bytes) = send(&app, method, &uri, body).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
                not_json += 1;
                continue;
            };
            let broken = match value.get("items").and_then(Value::as_array) {
                Some(items) => items
                    .iter()
                    .any(|item| !violations(schema, item).is_empty()),
                None => !violations(schema, &value).is_empty(),
            };
            assert!(broken, "{uri} served a valid body: {value}");
            invalid += 1;
        }
    }
    assert!(
        not_json > 0 && invalid > 0,
        "both kinds of breakage occur: {not_json} / {invalid}"
    );
}

#[tokio::test(start_paused = true)]
async fn stats_count_arrivals_and_served_entities() {
    let app = sim(10).router();
    get(
        &app,
        "/pim/v1/products?ids=prod-000001,prod-000002,prod-000003",
    )
    .await;
    get(&app, "/pim/v1/products?limit=4").await;
    get(&app, "/pim/v1/categories").await;
    get(&app, "/erp/v1/prices?skus=SKU-000001,NOPE").await;
    get(&app, "/erp/v1/prices?skus=SKU-000001&currency=XXX").await;
    post(&app, "/erp/v1/quote", json!({"lines": [{"sku": "SKU-000001", "quantity": 1}, {"sku": "SKU-000002", "quantity": 1}]})).await;
    get(&app, "/erp/v1/offers?skus=SKU-000001,NOPE").await;
    get(&app, "/oms/v1/orders/ord-00001").await;
    get(&app, "/oms/v1/orders/nope").await;
    post(&app, "/_sim/faults/erp", json!({"down": true})).await;
    get(&app, "/erp/v1/inventory?skus=SKU-000001").await;
    get(&app, "/_sim/customers").await;
    let (status, stats) = get(&app, "/_sim/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        stats,
        json!({
            "requests": {"pim.products": 2, "pim.categories": 1, "erp.prices": 2, "erp.inventory": 1, "erp.quote": 1, "erp.offers": 1, "oms.orders": 2, "crm.customers": 0, "crm.jwks": 0},
            "items": {"pim.products": 7, "pim.categories": 24, "erp.prices": 1, "erp.inventory": 0, "erp.quote": 2, "erp.offers": 1, "oms.orders": 1, "crm.customers": 0, "crm.jwks": 0},
            "unauthorized": 0,
            "tokens_issued": 0,
        })
    );
}
