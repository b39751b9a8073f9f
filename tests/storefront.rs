//! The storefront read path end to end: a gateway in front of the simulator
//! over real TCP, observed through GraphQL and the simulator's counters.

mod support;

use serde_json::{Value, json};
use support::{Moat, Sim, config, error_codes};

const PRODUCT: &str = r#"
query($id: ID!) {
  product(id: $id) {
    id sku name description
    attributes { name value }
    categories { id name }
    price { price { amount currencyCode } compareAtPrice { amount } segment freshness { asOf ageSeconds stale } }
    availability { status quantity freshness { stale } }
  }
}"#;

fn decimal(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_query_returns_content_price_and_availability() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;

    let response = moat.query(PRODUCT, json!({ "id": "prod-000007" })).await;
    assert!(response.get("errors").is_none(), "{response}");
    let product = &response["data"]["product"];

    let pim = sim.get_json("/pim/v1/products?ids=prod-000007").await;
    let expected = &pim["items"][0];
    assert_eq!(product["sku"], expected["sku"]);
    assert_eq!(product["name"], expected["name"]);
    assert_eq!(product["description"], expected["description"]);
    assert_eq!(product["attributes"], expected["attributes"]);
    let category_ids: Vec<&Value> = product["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(
        category_ids,
        expected["categoryIds"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>()
    );

    let sku = expected["sku"].as_str().unwrap();
    let erp = sim
        .get_json(&format!(
            "/erp/v1/prices?skus={sku}&segment=default&currency=EUR"
        ))
        .await;
    let price = &erp["items"][0];
    assert_eq!(
        product["price"]["price"]["amount"],
        json!(decimal(price["amount"].as_i64().unwrap()))
    );
    assert_eq!(product["price"]["price"]["currencyCode"], "EUR");
    assert_eq!(product["price"]["segment"], "default");
    assert_eq!(product["price"]["freshness"]["stale"], false);
    assert!(
        product["price"]["freshness"]["ageSeconds"]
            .as_i64()
            .unwrap()
            <= 1
    );

    let stock = sim.get_json(&format!("/erp/v1/inventory?skus={sku}")).await;
    let available = stock["items"][0]["available"].as_i64().unwrap();
    assert_eq!(product["availability"]["quantity"], json!(available));
    let status = match available {
        0 => "OUT_OF_STOCK",
        1..=5 => "LOW_STOCK",
        _ => "IN_STOCK",
    };
    assert_eq!(product["availability"]["status"], status);

    // The same product by sku is the same product, from the cache.
    let before = sim.requests("pim.products").await;
    let by_sku = moat
        .query(
            "query($s: String) { product(sku: $s) { id name } }",
            json!({ "s": sku }),
        )
        .await;
    assert_eq!(by_sku["data"]["product"]["id"], "prod-000007");
    assert_eq!(
        sim.requests("pim.products").await,
        before + 1,
        "one sku lookup"
    );

    // An unknown product is null without an error.
    let missing = moat.query(PRODUCT, json!({ "id": "prod-999999" })).await;
    assert_eq!(missing["data"]["product"], Value::Null);
    assert!(missing.get("errors").is_none(), "{missing}");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_queries_for_a_cold_product_make_one_call_per_endpoint() {
    let sim = Sim::start().await;
    // Latency keeps the first fetch in flight while the others arrive.
    for system in ["pim", "erp"] {
        sim.fault(system, json!({ "latency_ms": 100 })).await;
    }
    let moat = Moat::start(config(&sim.url)).await;

    let queries = (0..200).map(|_| moat.query(PRODUCT, json!({ "id": "prod-000042" })));
    let responses = futures_util::future::join_all(queries).await;
    for r in &responses {
        assert!(r.get("errors").is_none(), "{r}");
        assert_eq!(r["data"]["product"]["id"], "prod-000042");
        assert!(r["data"]["product"]["price"]["price"]["amount"].is_string());
    }
    assert_eq!(sim.requests("pim.products").await, 1);
    assert_eq!(sim.requests("erp.prices").await, 1);
    assert_eq!(sim.requests("erp.inventory").await, 1);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_product_by_sku_aliases_cost_one_pim_call() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let aliases: String = (1..=50)
        .map(|i| format!(r#"p{i}: product(sku: "SKU-{i:06}") {{ id sku }} "#))
        .collect();
    let r = moat.query(&format!("{{ {aliases} }}"), json!({})).await;
    assert!(r.get("errors").is_none(), "{r}");
    for i in 1..=50 {
        assert_eq!(r["data"][format!("p{i}")]["sku"], format!("SKU-{i:06}"));
    }
    assert_eq!(sim.requests("pim.products").await, 1, "one batch by sku");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_twenty_products_costs_one_call_per_endpoint() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let page = r#"{ products(first: 20) {
        nodes { sku name price { price { amount } } availability { status } }
        pageInfo { hasNextPage endCursor }
    } }"#;
    let response = moat.query(page, json!({})).await;
    assert!(response.get("errors").is_none(), "{response}");
    let nodes = response["data"]["products"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 20);
    assert!(
        nodes
            .iter()
            .all(|n| n["price"]["price"]["amount"].is_string())
    );
    assert_eq!(sim.requests("pim.products").await, 1);
    assert_eq!(sim.requests("erp.prices").await, 1);
    assert_eq!(sim.requests("erp.inventory").await, 1);
    assert_eq!(sim.stats().await["items"]["erp.prices"], 20);

    // The next page follows the cursor without repeating a product.
    let cursor = response["data"]["products"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_string();
    let next = moat
        .query(
            "query($after: String) { products(first: 20, after: $after) { nodes { sku } } }",
            json!({ "after": cursor }),
        )
        .await;
    let next_nodes = next["data"]["products"]["nodes"].as_array().unwrap();
    assert_eq!(next_nodes.len(), 20);
    assert!(
        next_nodes
            .iter()
            .all(|n| !nodes.iter().any(|m| m["sku"] == n["sku"]))
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_upstream_payload_is_counted_and_never_served() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let metric = r#"moat_contract_violations_total{"#;
    let before = moat.metric(metric).await;

    sim.fault("erp", json!({ "malformed_rate": 1.0 })).await;
    let q = r#"query($id: ID!) { product(id: $id) { name price { price { amount } } availability { status } } }"#;
    let broken = moat.query(q, json!({ "id": "prod-000003" })).await;
    assert!(
        broken["data"]["product"]["name"].is_string(),
        "PIM content still served: {broken}"
    );
    assert_eq!(broken["data"]["product"]["price"], Value::Null, "{broken}");
    assert_eq!(
        broken["data"]["product"]["availability"],
        Value::Null,
        "{broken}"
    );
    assert!(
        error_codes(&broken)
            .iter()
            .all(|c| c == "UPSTREAM_UNAVAILABLE")
    );
    assert_eq!(error_codes(&broken).len(), 2, "{broken}");
    assert!(
        moat.metric(metric).await >= before + 2.0,
        "violations counted"
    );

    // Nothing broken was cached: once the ERP behaves, the real values show.
    sim.fault("erp", json!({ "malformed_rate": 0.0 })).await;
    let good = moat.query(q, json!({ "id": "prod-000003" })).await;
    assert!(good.get("errors").is_none(), "{good}");
    let erp = sim
        .get_json("/erp/v1/prices?skus=SKU-000003&segment=default&currency=EUR")
        .await;
    assert_eq!(
        good["data"]["product"]["price"]["price"]["amount"],
        json!(decimal(erp["items"][0]["amount"].as_i64().unwrap()))
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pim_down_cached_products_are_served_and_uncached_ones_fail_alone() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let warm = moat.query(PRODUCT, json!({ "id": "prod-000001" })).await;
    assert!(warm.get("errors").is_none(), "{warm}");

    sim.fault("pim", json!({ "down": true })).await;
    let q = r#"{
        cached: product(id: "prod-000001") { name price { price { amount } } }
        cold: product(id: "prod-000002") { name }
    }"#;
    let r = moat.query(q, json!({})).await;
    assert_eq!(r["data"]["cached"]["name"], warm["data"]["product"]["name"]);
    assert!(r["data"]["cached"]["price"]["price"]["amount"].is_string());
    assert_eq!(r["data"]["cold"], Value::Null);
    let errors = r["errors"]
        .as_array()
        .expect("an error for the cold product");
    assert_eq!(errors.len(), 1, "{r}");
    assert_eq!(errors[0]["path"], json!(["cold"]));
    assert_eq!(errors[0]["extensions"]["code"], "UPSTREAM_UNAVAILABLE");

    // ERP down as well: prices already cached are still served.
    sim.fault("erp", json!({ "down": true })).await;
    let r = moat.query(q, json!({})).await;
    assert!(
        r["data"]["cached"]["price"]["price"]["amount"].is_string(),
        "{r}"
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn categories_and_category_listings() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let r = moat
        .query("{ categories { id name parent { id } } }", json!({}))
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    let categories = r["data"]["categories"].as_array().unwrap();
    assert_eq!(categories.len(), 24);
    let leaf = categories
        .iter()
        .find(|c| !c["parent"].is_null())
        .expect("a leaf category");
    let id = leaf["id"].as_str().unwrap();

    let listing = moat
        .query(
            "query($c: ID!) { category(id: $c) { name products(first: 5) { nodes { id categories { id } } } } }",
            json!({ "c": id }),
        )
        .await;
    assert!(listing.get("errors").is_none(), "{listing}");
    let nodes = listing["data"]["category"]["products"]["nodes"]
        .as_array()
        .unwrap();
    assert!(!nodes.is_empty());
    for node in nodes {
        let ids: Vec<&str> = node["categories"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["id"].as_str())
            .collect();
        assert!(ids.contains(&id), "{node} is in {id}");
    }
    assert_eq!(sim.requests("pim.categories").await, 1, "categories cached");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_product_is_remembered_briefly() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    for _ in 0..5 {
        let r = moat.query(PRODUCT, json!({ "id": "prod-999999" })).await;
        assert_eq!(r["data"]["product"], Value::Null, "{r}");
    }
    assert_eq!(
        sim.requests("pim.products").await,
        1,
        "negative answer cached"
    );
    moat.stop().await;
}
