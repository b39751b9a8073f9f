//! What HTTP caches in front of Moat are told: `Cache-Control` from the
//! freshness of the records in a shareable answer, `ETag` and 304,
//! `Vary`, surrogate keys naming the records (and their cap), and
//! `private, no-store` for everything that must not be shared.

mod support;

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::{Moat, Sim};

const PAGE: &str = "query($sku: String!) { product(sku: $sku) { id sku name price { price { amount } } availability { status } } }";

/// GETs `/graphql` with `query` and `variables` (and any extra headers).
async fn get(
    moat: &Moat,
    query: &str,
    variables: Value,
    extra: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let mut request = moat.http.get(format!("{}/graphql", moat.url)).query(&[
        ("query", query.to_string()),
        ("variables", variables.to_string()),
    ]);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("GET /graphql");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().expect("ascii header"))
        .unwrap_or("")
}

/// `max-age` of a `Cache-Control` value.
fn max_age(headers: &HeaderMap) -> u64 {
    header(headers, "cache-control")
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no max-age in {:?}", headers.get("cache-control")))
}

async fn start(sim: &Sim, change: impl FnOnce(&mut moat::config::Config)) -> Moat {
    let mut config = support::config(&sim.url);
    config.cache.jitter = 0.0;
    change(&mut config);
    Moat::start(config).await
}

fn ttl(config: &mut moat::config::EntityCache, soft: u64, hard: u64, max_stale: u64) {
    config.soft_ttl = Duration::from_secs(soft);
    config.hard_ttl = Duration::from_secs(hard);
    config.max_stale = Duration::from_secs(max_stale);
}

#[tokio::test]
async fn max_age_follows_the_record_whose_freshness_ends_first() {
    let sim = Sim::start().await;
    let sku = support::shop::skus_in_stock(&start(&sim, |_| {}).await, 1).await[0].clone();
    // Stock fresh for 20s, prices for 600s: stock decides.
    let moat = start(&sim, |c| {
        ttl(&mut c.cache.inventory, 20, 60, 900);
        ttl(&mut c.cache.price, 600, 900, 3600);
    })
    .await;
    let (status, headers, body) = get(&moat, PAGE, json!({ "sku": sku }), &[]).await;
    assert_eq!(status, 200, "{body}");
    let control = header(&headers, "cache-control");
    assert!(control.starts_with("public, max-age="), "{control}");
    assert!((1..=20).contains(&max_age(&headers)), "{control}");
    // The windows past it: the shortest any record leaves (stock's).
    assert!(
        control.ends_with("stale-while-revalidate=40, stale-if-error=880"),
        "{control}"
    );
    assert!(header(&headers, "vary").contains("accept"));
    assert!(header(&headers, "vary").contains("authorization"));
    // Now prices end first.
    let moat = start(&sim, |c| {
        ttl(&mut c.cache.inventory, 600, 900, 3600);
        ttl(&mut c.cache.price, 30, 60, 900);
    })
    .await;
    let (_, headers, _) = get(&moat, PAGE, json!({ "sku": sku }), &[]).await;
    let age = max_age(&headers);
    assert!(
        (21..=30).contains(&age),
        "{:?}",
        headers.get("cache-control")
    );
    // Served again from the stored answer: same validator, max-age counted
    // down from the same records (never up).
    let (_, again, _) = get(&moat, PAGE, json!({ "sku": sku }), &[]).await;
    assert_eq!(header(&again, "etag"), header(&headers, "etag"));
    assert!(max_age(&again) <= age);
}

#[tokio::test]
async fn a_matching_if_none_match_is_answered_304_without_a_body() {
    let sim = Sim::start().await;
    let moat = start(&sim, |_| {}).await;
    let sku = support::shop::skus_in_stock(&moat, 1).await[0].clone();
    let (_, headers, body) = get(&moat, PAGE, json!({ "sku": sku }), &[]).await;
    let etag = header(&headers, "etag").to_string();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let (status, not_modified, empty) = get(
        &moat,
        PAGE,
        json!({ "sku": sku }),
        &[("if-none-match", &format!("\"nope\", {etag}"))],
    )
    .await;
    assert_eq!(status, 304);
    assert!(empty.is_empty());
    assert_eq!(header(&not_modified, "etag"), etag);
    assert!(header(&not_modified, "cache-control").starts_with("public"));
    let (status, _, again) = get(
        &moat,
        PAGE,
        json!({ "sku": sku }),
        &[("if-none-match", "\"nope\"")],
    )
    .await;
    assert_eq!((status, again), (200, body));
    // Another media type is another representation.
    let (_, other, _) = get(
        &moat,
        PAGE,
        json!({ "sku": sku }),
        &[("accept", "application/graphql-response+json")],
    )
    .await;
    assert_ne!(header(&other, "etag"), etag);
}

#[tokio::test]
async fn surrogate_keys_name_the_records_of_the_answer() {
    let sim = Sim::start().await;
    let moat = start(&sim, |_| {}).await;
    let sku = support::shop::skus_in_stock(&moat, 1).await[0].clone();
    let (_, headers, body) = get(&moat, PAGE, json!({ "sku": sku }), &[]).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    let id = body["data"]["product"]["id"].as_str().unwrap();
    let keys: Vec<&str> = header(&headers, "surrogate-key").split(' ').collect();
    for wanted in [
        format!("product:{id}"),
        format!("product_sku:{sku}"),
        format!("price:{sku}"),
        format!("inventory:{sku}"),
        "price".to_string(),
    ] {
        assert!(keys.contains(&wanted.as_str()), "{wanted} in {keys:?}");
    }
    assert_eq!(header(&headers, "cache-tag"), keys.join(","));
}

#[tokio::test]
async fn past_the_cap_an_entity_is_named_coarsely_and_counted() {
    let sim = Sim::start().await;
    let moat = start(&sim, |c| c.edge.surrogate_keys_max_bytes = 256).await;
    let capped = r#"moat_edge_surrogate_keys_capped_total{entity="price"}"#;
    let before = moat.metric(capped).await;
    let (_, headers, _) = get(
        &moat,
        "{ products(first: 40) { nodes { sku price { price { amount } } } } }",
        json!({}),
        &[],
    )
    .await;
    let keys = header(&headers, "surrogate-key");
    assert!(keys.len() <= 256, "{keys}");
    assert!(keys.split(' ').any(|k| k == "price:all"), "{keys}");
    assert!(!keys.contains("price:SKU"), "{keys}");
    assert_eq!(moat.metric(capped).await, before + 1.0);
}

#[tokio::test]
async fn signed_in_post_error_and_switched_off_answers_are_private() {
    let sim = Sim::start().await;
    let moat = start(&sim, |c| c.edge.price.shared = false).await;
    let sku = support::shop::skus_in_stock(&moat, 1).await[0].clone();
    let private = |h: &HeaderMap| {
        assert_eq!(header(h, "cache-control"), "private, no-store", "{h:?}");
        assert!(h.get("surrogate-key").is_none() && h.get("etag").is_none());
    };
    // Prices are switched off: an answer holding one is not shared...
    let (_, headers, _) = get(&moat, PAGE, json!({ "sku": sku }), &[]).await;
    private(&headers);
    // ...one without is.
    let name = "query($sku: String!) { product(sku: $sku) { name } }";
    let (_, headers, _) = get(&moat, name, json!({ "sku": sku }), &[]).await;
    assert!(header(&headers, "cache-control").starts_with("public"));
    // Signed in.
    let (_, token, _) = support::customer_in(&sim, "wholesale").await;
    let bearer = format!("Bearer {token}");
    // Again and again: once stored for its segment, still private.
    for _ in 0..3 {
        let (status, headers, _) = get(
            &moat,
            name,
            json!({ "sku": sku }),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(status, 200);
        private(&headers);
    }
    // POST, even anonymous, even answered from the stored answer.
    for _ in 0..2 {
        let (_, headers, _) = moat.query_as(None, name, json!({ "sku": sku })).await;
        private(&headers);
    }
    // Errors.
    let (status, headers, _) = get(&moat, "{ nope }", json!({}), &[]).await;
    assert_eq!(status, 200);
    private(&headers);
    let (_, headers, _) = get(&moat, "{ product(sku: \"\") { name } }", json!({}), &[]).await;
    private(&headers);
}

#[tokio::test]
async fn a_stored_get_answer_keeps_its_headers_and_browsers_still_get_graphiql() {
    let sim = Sim::start().await;
    let moat = start(&sim, |_| {}).await;
    let sku = support::shop::skus_in_stock(&moat, 1).await[0].clone();
    let (_, first, body) = get(&moat, PAGE, json!({ "sku": sku }), &[]).await;
    // Served again (from the stored answer, at the door), byte for byte
    // and with the same validator and keys.
    for _ in 0..3 {
        let (status, headers, again) = get(&moat, PAGE, json!({ "sku": sku }), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(again, body);
        assert!(header(&headers, "cache-control").starts_with("public"));
        for name in ["etag", "surrogate-key", "vary"] {
            assert_eq!(header(&headers, name), header(&first, name), "{name}");
        }
    }
    let etag = header(&first, "etag").to_string();
    let (status, _, empty) = get(
        &moat,
        PAGE,
        json!({ "sku": sku }),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!((status, empty.as_str()), (304, ""));
    // A browser asking for the same URL gets GraphiQL, not the answer.
    let browser = "text/html,application/xhtml+xml,*/*;q=0.8";
    let (status, headers, page) =
        get(&moat, PAGE, json!({ "sku": sku }), &[("accept", browser)]).await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type").starts_with("text/html"),
        "{headers:?}"
    );
    assert!(
        page.contains("graphiql") || page.contains("GraphiQL"),
        "{page}"
    );
}
