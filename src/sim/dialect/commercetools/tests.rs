//! The dialect driven in-process (`oneshot`, paused time for the default
//! latency): its auth flow, shapes, paging, errors, malformed answers and
//! change messages.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::super::super::faults::{FaultPatch, System};
use super::super::super::{SimConfig, Simulator};
use super::super::{Change, Dialect};

fn sim() -> Simulator {
    Simulator::new(SimConfig {
        products: 60,
        dialect: Dialect::Commercetools,
        ..SimConfig::default()
    })
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A client credentials token, the way the API hands them out.
async fn token(app: &Router) -> String {
    let (status, body) = call(
        app,
        Method::POST,
        "/oauth/token",
        &[
            ("authorization", "Basic Y2xpZW50OnNlY3JldA=="),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "grant_type=client_credentials&scope=manage_project%3Amoat-demo",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "manage_project:moat-demo");
    format!("Bearer {}", body["access_token"].as_str().unwrap())
}

async fn get(app: &Router, auth: &str, uri: &str) -> (StatusCode, Value) {
    call(app, Method::GET, uri, &[("authorization", auth)], "").await
}

#[tokio::test(start_paused = true)]
async fn calls_need_a_token_from_the_token_endpoint() {
    let app = sim().router();
    let uri = "/moat-demo/inventory";
    let (status, body) = call(&app, Method::GET, uri, &[], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["statusCode"], 401);
    assert_eq!(body["errors"][0]["code"], "invalid_token", "{body}");
    let (status, body) = get(&app, "Bearer made-up", uri).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token"))
    );
    let (status, body) = call(
        &app,
        Method::POST,
        "/oauth/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the client goes by Basic");
    assert_eq!(body["error"], "invalid_client");
    let auth = token(&app).await;
    let (status, body) = get(&app, &auth, uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 60);
}

#[tokio::test(start_paused = true)]
async fn prices_are_embedded_per_customer_group_in_cent_precision() {
    let sim = sim();
    let app = sim.router();
    let auth = token(&app).await;
    let uri = "/moat-demo/product-projections?where=masterVariant(sku%20in%20:skus)%20or%20variants(sku%20in%20:skus)&var.skus=SKU-000002&var.skus=SKU-000005&staged=false&expand=masterVariant.prices%5B*%5D.customerGroup";
    let (status, body) = get(&app, &auth, uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["count"].as_u64(), body["total"].as_u64()),
        (Some(2), Some(2))
    );
    let product = &body["results"][1];
    assert_eq!(product["masterVariant"]["sku"], "SKU-000005");
    let (vip_usd, name) = {
        let catalog = sim.read();
        (
            catalog.price(4, 2, 1).amount,
            catalog.products[4].name.clone(),
        )
    };
    let price = product["masterVariant"]["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["customerGroup"]["obj"]["key"] == "vip" && p["value"]["currencyCode"] == "USD")
        .unwrap();
    let paid = price
        .get("discounted")
        .map_or(&price["value"], |d| &d["value"]);
    assert_eq!(paid["centAmount"], vip_usd, "{price}");
    assert_eq!(paid["fractionDigits"], 2);
    assert_eq!(paid["type"], "centPrecision");
    assert_eq!(product["name"]["en"], name);
    let default_prices = product["masterVariant"]["prices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.get("customerGroup").is_none())
        .count();
    assert_eq!(default_prices, 2, "the default segment is no group");
    assert_eq!(sim.inner.stats.to_json()["requests"]["erp.prices"], 1);

    // Price selection: the group's price into masterVariant.price.
    let group = &price["customerGroup"]["id"];
    let uri = format!(
        "/moat-demo/product-projections/key=SKU-000005?priceCurrency=USD&priceCustomerGroup={}",
        group.as_str().unwrap()
    );
    let (_, one) = get(&app, &auth, &uri).await;
    assert_eq!(one["masterVariant"]["price"]["id"], price["id"], "{one}");
}

#[tokio::test(start_paused = true)]
async fn queries_page_by_limit_and_offset_and_refuse_bad_predicates() {
    let app = sim().router();
    let auth = token(&app).await;
    let (_, body) = get(&app, &auth, "/moat-demo/inventory?limit=25&offset=50").await;
    assert_eq!(
        (
            &body["limit"],
            &body["offset"],
            &body["count"],
            &body["total"]
        ),
        (&json!(25), &json!(50), &json!(10), &json!(60))
    );
    assert_eq!(body["results"][0]["sku"], "SKU-000051");
    let (_, body) = get(&app, &auth, "/moat-demo/inventory?withTotal=false&limit=1").await;
    assert!(body.get("total").is_none(), "{body}");
    let uri = "/moat-demo/inventory?where=sku%20in%20(%22SKU-000003%22)%20and%20supplyChannel%20is%20not%20defined";
    let (_, body) = get(&app, &auth, uri).await;
    let entry = &body["results"][0];
    assert_eq!(
        (entry["sku"].as_str(), body["count"].as_u64()),
        (Some("SKU-000003"), Some(1))
    );
    assert_eq!(entry["availableQuantity"], entry["quantityOnStock"]);
    for bad in [
        "/moat-demo/inventory?where=sku%20in",
        "/moat-demo/inventory?where=sku%20in%20:skus",
        "/moat-demo/inventory?limit=501",
    ] {
        let (status, body) = get(&app, &auth, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["errors"][0]["code"], "InvalidInput", "{body}");
    }
    let (status, body) = get(&app, &auth, "/moat-demo/orders/order-number=ord-99999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["code"], "ResourceNotFound");
}

#[tokio::test(start_paused = true)]
async fn a_customer_reads_itself_with_its_own_token_and_its_orders_by_number() {
    let sim = sim();
    let app = sim.router();
    let (token, email, segment, order_id) = {
        let c = sim.read();
        let vip = c.customers.iter().find(|c| c.segment == "vip").unwrap();
        (
            vip.token.clone(),
            vip.email.clone(),
            vip.segment,
            vip.order_ids[0].clone(),
        )
    };
    // The password flow hands out the customer's token.
    let (status, granted) = call(
        &app,
        Method::POST,
        "/oauth/moat-demo/customers/token",
        &[
            ("authorization", "Basic Y2xpZW50OnNlY3JldA=="),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &format!("grant_type=password&username={email}&password=x"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert_eq!(granted["access_token"], token.as_str());
    let mine = format!("Bearer {token}");
    let (status, me) = get(&app, &mine, "/moat-demo/me?expand=customerGroup").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["customerGroup"]["obj"]["key"], segment);
    let (status, _) = get(&app, "Bearer ct_nobody", "/moat-demo/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let auth = token_of(&app).await;
    let (status, order) = get(
        &app,
        &auth,
        &format!("/moat-demo/orders/order-number={order_id}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["customerId"], me["id"]);
    let lines = order["lineItems"].as_array().unwrap();
    let sum: u64 = lines
        .iter()
        .map(|l| l["totalPrice"]["centAmount"].as_u64().unwrap())
        .sum();
    assert_eq!(order["totalPrice"]["centAmount"], sum);
    let (_, again) = get(
        &app,
        &auth,
        &format!("/moat-demo/orders/{}", order["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(again, order);
    let (_, by_id) = get(
        &app,
        &auth,
        &format!("/moat-demo/customers/{}", me["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(by_id["customerNumber"], me["customerNumber"]);
}

async fn token_of(app: &Router) -> String {
    token(app).await
}

#[tokio::test(start_paused = true)]
async fn a_malformed_answer_breaks_one_resource_in_the_vendors_shape() {
    let sim = sim();
    let app = sim.router();
    let auth = token(&app).await;
    let patch: FaultPatch = serde_json::from_value(json!({"malformed_rate": 1.0})).unwrap();
    sim.inner.faults.apply(System::Erp, &patch).unwrap();
    for _ in 0..8 {
        let (status, body) = get(&app, &auth, "/moat-demo/inventory?limit=5").await;
        assert_eq!(status, StatusCode::OK);
        let results = body["results"].as_array().unwrap();
        let whole = |r: &Value| {
            r["availableQuantity"].as_u64().is_some()
                && r["version"].is_u64()
                && r["lastModifiedAt"].is_string()
        };
        assert_eq!(results.iter().filter(|r| !whole(r)).count(), 1, "{body}");
    }
}

#[tokio::test]
async fn a_change_is_a_signed_subscription_message() {
    let sim = sim();
    let item = json!({"sku": "SKU-000004", "segment": "wholesale", "currency": "EUR",
                      "amount": 1, "version": 2});
    let change = Change {
        kind: "price.updated",
        item: &item,
        id: "evt-1",
        thin: false,
    };
    let delivery = super::event(&sim, &change, Some("s3cret")).unwrap();
    assert_eq!(delivery.path, "/events/commercetools");
    let message: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(message["notificationType"], "Message");
    assert_eq!(message["type"], "ProductPriceChanged");
    assert_eq!(
        message["resourceUserProvidedIdentifiers"]["key"],
        "SKU-000004"
    );
    assert_eq!(message["resourceVersion"], message["sequenceNumber"]);
    let header = |name: &str| {
        delivery
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let t = header("webhook-timestamp");
    let expected = super::messages::standard_webhooks("s3cret", "evt-1", &t, &delivery.body);
    assert_eq!(header("webhook-signature"), expected);
    assert!(expected.starts_with("v1,"));

    let thin = Change {
        kind: "inventory.updated",
        item: &json!({"sku": "SKU-000004"}),
        id: "evt-2",
        thin: true,
    };
    let delivery = super::event(&sim, &thin, None).unwrap();
    let note: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(note["notificationType"], "ResourceUpdated");
    assert_eq!(note["resource"]["typeId"], "inventory-entry");
    assert_eq!(note["resourceUserProvidedIdentifiers"]["sku"], "SKU-000004");
    assert!(
        delivery
            .headers
            .iter()
            .all(|(n, _)| n != "webhook-signature")
    );
    let product = Change {
        kind: "product.updated",
        item: &json!({"id": "prod-000004", "sku": "SKU-000004"}),
        id: "evt-3",
        thin: false,
    };
    assert!(super::event(&sim, &product, None).is_none());
}
