//! The Shopify dialect driven in-process: shapes against the catalog,
//! paging, the access token and its 401, and broken answers.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::super::super::{SimConfig, Simulator};
use super::super::Dialect;

const GRAPHQL: &str = "/admin/api/2025-07/graphql.json";

/// The token every call of these tests carries, accepted as a legacy
/// custom app's would be.
const TOKEN: &str = "shpat_test";

fn shop(config: SimConfig) -> Router {
    sim(config).router()
}

fn sim(config: SimConfig) -> Simulator {
    Simulator::new(SimConfig {
        products: 30,
        dialect: Dialect::Shopify,
        require_token: Some(TOKEN.into()),
        ..config
    })
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body reads");
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn query_as(
    app: &Router,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> (StatusCode, Value) {
    let mut request = Request::post(GRAPHQL).header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("X-Shopify-Access-Token", token);
    }
    let body = json!({ "query": query, "variables": variables }).to_string();
    call(app, request.body(Body::from(body)).expect("request builds")).await
}

async fn query(app: &Router, query: &str, variables: Value) -> Value {
    let (status, body) = query_as(app, Some(TOKEN), query, variables).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

const BY_SKU: &str =
    "query($query: String!) { productVariants(first: 250, query: $query) { nodes { id sku } } }";
const PRICED: &str = "query($query: String!, $country: CountryCode) { productVariants(first: 250, query: $query) { nodes { sku contextualPricing(context: {country: $country}) { price { amount currencyCode } } } } }";

#[tokio::test]
async fn variants_by_sku_carry_the_catalogs_product_and_prices() {
    let app = shop(SimConfig::default());
    let v1 = Simulator::new(SimConfig {
        products: 30,
        ..SimConfig::default()
    })
    .router();
    let (_, want) = call(
        &v1,
        Request::get("/pim/v1/products?skus=SKU-000003")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let got = query(
        &app,
        BY_SKU,
        json!({ "query": "sku:\"SKU-000003\" OR sku:SKU-000999 OR sku:SKU-000001" }),
    )
    .await;
    let nodes = got["data"]["productVariants"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "unknown skus are left out: {got}");
    let variant = &nodes[0];
    assert_eq!(variant["id"], "gid://shopify/ProductVariant/3");
    assert_eq!(variant["product"]["title"], want["items"][0]["name"]);
    assert_eq!(
        variant["product"]["description"],
        want["items"][0]["description"]
    );
    assert!(
        got["extensions"]["cost"]["actualQueryCost"].is_u64(),
        "{got}"
    );

    let (_, prices) = call(
        &v1,
        Request::get("/erp/v1/prices?skus=SKU-000003&currency=USD")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let cents = prices["items"][0]["amount"].as_u64().unwrap();
    let got = query(
        &app,
        PRICED,
        json!({ "query": "sku:SKU-000003", "country": "US" }),
    )
    .await;
    let price = &got["data"]["productVariants"]["nodes"][0]["contextualPricing"]["price"];
    assert_eq!(price["currencyCode"], "USD");
    assert_eq!(
        price["amount"],
        format!("{}.{:02}", cents / 100, cents % 100)
    );
}

#[tokio::test]
async fn pages_follow_the_end_cursor_to_the_last() {
    let app = shop(SimConfig::default());
    let page = "query($first: Int!, $after: String) { productVariants(first: $first, after: $after) { nodes { sku } pageInfo { hasNextPage endCursor } } }";
    let (mut after, mut seen) = (Value::Null, Vec::new());
    loop {
        let got = query(&app, page, json!({ "first": 12, "after": after })).await;
        let list = &got["data"]["productVariants"];
        seen.extend(
            list["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["sku"].clone()),
        );
        if list["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = list["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len(), 30);
    assert_eq!(seen[29], "SKU-000030");
    let got = query(&app, page, json!({ "first": 251 })).await;
    assert!(
        got["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("250"),
        "{got}"
    );
    let got = query(&app, page, json!({ "first": 2, "after": "bm9wZQ==" })).await;
    assert!(
        got["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cursor"),
        "{got}"
    );
}

#[tokio::test]
async fn a_call_without_an_access_token_gets_shopifys_401() {
    let app = shop(SimConfig::default());
    let (status, body) = query_as(&app, None, BY_SKU, json!({ "query": "sku:SKU-000001" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["errors"]
            .as_str()
            .unwrap()
            .starts_with("[API] Invalid API key or access token"),
        "{body}"
    );

    // By default, any client gets a token, and only such a token will do.
    let open = Simulator::new(SimConfig {
        products: 30,
        dialect: Dialect::Shopify,
        ..SimConfig::default()
    })
    .router();
    let ask = |token: String| {
        let open = open.clone();
        async move {
            query_as(
                &open,
                Some(&token),
                BY_SKU,
                json!({ "query": "sku:SKU-000001" }),
            )
            .await
            .0
        }
    };
    assert_eq!(ask("made-up".into()).await, StatusCode::UNAUTHORIZED);
    let json_grant = Request::post("/admin/oauth/access_token")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"grant_type":"client_credentials","client_id":"any","client_secret":"thing"}"#,
        ))
        .unwrap();
    let (status, granted) = call(&open, json_grant).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    let token = granted["access_token"].as_str().unwrap().to_string();
    assert_eq!(ask(token).await, StatusCode::OK);

    // With a client, only that client gets one.
    let app = Simulator::new(SimConfig {
        products: 30,
        dialect: Dialect::Shopify,
        oauth_client: Some(("app".into(), "secret".into())),
        ..SimConfig::default()
    })
    .router();
    let (status, _) = query_as(
        &app,
        Some("made-up"),
        BY_SKU,
        json!({ "query": "sku:SKU-000001" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let grant = |secret: &str| {
        Request::post("/admin/oauth/access_token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "grant_type=client_credentials&client_id=app&client_secret={secret}"
            )))
            .unwrap()
    };
    let (status, _) = call(&app, grant("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, granted) = call(&app, grant("secret")).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert!(
        granted["expires_in"].is_u64() && granted.get("token_type").is_none(),
        "{granted}"
    );
    let token = granted["access_token"].as_str().unwrap();
    let (status, body) = query_as(
        &app,
        Some(token),
        BY_SKU,
        json!({ "query": "sku:SKU-000001" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn customers_orders_stock_and_collections_have_shopifys_shapes() {
    let sim = sim(SimConfig::default());
    let (token, segment, customer_id, order_id) = {
        let catalog = sim.read();
        let c = catalog
            .customers
            .iter()
            .position(|c| c.segment == "wholesale")
            .unwrap();
        let customer = &catalog.customers[c];
        (
            customer.token.clone(),
            customer.segment,
            c + 1,
            customer.order_ids[0].clone(),
        )
    };
    let app = sim.router();
    let got = query(&app, "query($identifier: CustomerIdentifierInput!) { customerByIdentifier(identifier: $identifier) { id tags } }",
        json!({ "identifier": { "customId": { "namespace": "moat", "key": "token", "value": token } } })).await;
    let customer = &got["data"]["customerByIdentifier"];
    assert_eq!(
        customer["id"],
        format!("gid://shopify/Customer/{customer_id}")
    );
    assert_eq!(customer["tags"], json!([segment]));
    let number: usize = order_id.trim_start_matches("ord-").parse().unwrap();
    let got = query(
        &app,
        "query($id: ID!) { order(id: $id) { id } }",
        json!({ "id": format!("gid://shopify/Order/{number}") }),
    )
    .await;
    let order = &got["data"]["order"];
    assert_eq!(order["customer"]["id"], customer["id"], "{got}");
    assert!(
        order["totalPriceSet"]["shopMoney"]["amount"]
            .as_str()
            .unwrap()
            .contains('.')
    );

    let got = query(
        &app,
        "query($query: String!) { inventoryItems(first: 250, query: $query) { nodes { sku } } }",
        json!({ "query": "sku:SKU-000002" }),
    )
    .await;
    let level = &got["data"]["inventoryItems"]["nodes"][0]["inventoryLevels"]["nodes"][0];
    assert_eq!(level["quantities"][0]["name"], "available", "{got}");

    let got = query(
        &app,
        "query($first: Int!) { collections(first: $first) { nodes { handle } } }",
        json!({ "first": 250 }),
    )
    .await;
    assert_eq!(
        got["data"]["collections"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        24
    );
    let got = query(&app, "{ shop { name } }", json!({})).await;
    assert_eq!(
        got["errors"][0]["extensions"]["code"], "undefinedField",
        "{got}"
    );
}

#[tokio::test]
async fn a_malformed_answer_breaks_one_variant_and_is_counted() {
    let sim = sim(SimConfig::default());
    let app = sim.router();
    let (status, _) = call(
        &app,
        Request::post("/_sim/faults/pim")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"malformed_rate": 1.0, "latency_ms": 0}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let got = query(
        &app,
        "query($query: String!) { productVariants(first: 250, query: $query) { nodes { sku } } }",
        json!({ "query": "sku:SKU-000001 OR sku:SKU-000002 OR sku:SKU-000003" }),
    )
    .await;
    let nodes = got["data"]["productVariants"]["nodes"].as_array().unwrap();
    let whole = nodes
        .iter()
        .filter(|n| n["sku"].is_string() && n["product"]["title"].is_string())
        .count();
    assert_eq!(whole, 2, "one of three broken: {got}");
    assert_eq!(
        sim.inner
            .stats
            .requests(super::super::super::stats::Endpoint::PimProducts),
        1
    );
}

#[test]
fn a_search_reads_quoted_and_bare_skus() {
    assert_eq!(
        super::query::skus_of(r#"sku:A OR sku:"B C" OR sku:A"#).unwrap(),
        ["A", "B C"]
    );
    assert!(super::query::skus_of("title:lamp").is_err());
    assert_eq!(
        super::query::root_field(
            "query Q($a: X) { v: productVariants(first: 1) { nodes { id } } }"
        ),
        Some("productVariants")
    );
}

#[tokio::test]
async fn an_error_is_a_throttled_query_and_an_outage_a_503() {
    let app = shop(SimConfig::default());
    let fault = |body: &'static str| {
        Request::post("/_sim/faults/erp")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    call(&app, fault(r#"{"error_rate": 1.0, "latency_ms": 0}"#)).await;
    let got = query(
        &app,
        PRICED,
        json!({ "query": "sku:SKU-000001", "country": "DE" }),
    )
    .await;
    assert_eq!(got["errors"][0]["extensions"]["code"], "THROTTLED", "{got}");
    assert!(got.get("data").is_none(), "{got}");
    call(&app, fault(r#"{"error_rate": 0.0, "down": true}"#)).await;
    let (status, _) = query_as(
        &app,
        Some(TOKEN),
        PRICED,
        json!({ "query": "sku:SKU-000001" }),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn changes_are_sent_as_shopifys_signed_webhooks() {
    use super::super::Change;
    let sim = sim(SimConfig::default());
    let item =
        json!({ "sku": "SKU-000005", "segment": "default", "currency": "EUR", "amount": 1234 });
    let change = Change {
        kind: "price.updated",
        item: &item,
        id: "evt-1",
        thin: false,
    };
    let delivery = super::event(&sim, &change, Some("app-secret")).expect("a webhook");
    assert_eq!(delivery.path, "/events/shopify");
    let header = |name: &str| {
        delivery
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header("x-shopify-topic"), "products/update");
    assert_eq!(header("x-shopify-webhook-id"), "evt-1");
    assert_eq!(
        header("x-shopify-hmac-sha256"),
        super::webhooks::sign("app-secret", &delivery.body)
    );
    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["id"], 5, "REST ids are numbers: {body}");
    assert_eq!(body["variants"][0]["sku"], "SKU-000005");
    assert!(
        body["variants"][0]["price"].as_str().unwrap().contains('.'),
        "{body}"
    );

    // A wholesale price is no variant's own: Shopify sends nothing.
    let wholesale = json!({ "sku": "SKU-000005", "segment": "wholesale", "currency": "EUR" });
    let change = Change {
        kind: "price.updated",
        item: &wholesale,
        id: "evt-2",
        thin: false,
    };
    assert!(super::event(&sim, &change, Some("app-secret")).is_none());
    let stock = json!({ "sku": "SKU-000005", "available": 3 });
    let change = Change {
        kind: "inventory.updated",
        item: &stock,
        id: "evt-3",
        thin: false,
    };
    let delivery = super::event(&sim, &change, None).expect("a webhook");
    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["inventory_item_id"], 5);
    assert!(
        delivery
            .headers
            .iter()
            .all(|(n, _)| n != "X-Shopify-Hmac-Sha256"),
        "unsigned without a secret"
    );
}
