//! Answers as the GraphQL spec has them and as client caches read them,
//! with a system down: every selected key is present, an errored field
//! `null` with its error (path and code) in `errors`, and a failed non-null
//! field nulls its nearest nullable parent; keys follow the selection
//! (aliases, fragments, merged fields), whether fetches missed or hit, on
//! every way in (POST, GET, by hash) and at the door, where a stored answer
//! is byte for byte the fresh one; and a variable used only in a directive
//! on `__typename` is used.

mod support;

use std::time::Duration;

use serde_json::{Value, json};

use moat::graphql::sha256_hex;
use support::{Moat, Sim, eventually};

/// A product page that reads the PIM and the ERP.
const PAGE: &str = "query Page($sku: String!) { product(sku: $sku) { name price { price { amount } freshness { stale } } availability { status } id sku } }";

/// A gateway whose breakers never open: every request meets the same
/// failure (with one open, some would meet the breaker, and their errors
/// would say so), so two answers can be compared byte for byte.
async fn gateway(sim: &Sim) -> Moat {
    let mut config = support::config(&sim.url);
    config.upstream.breaker.consecutive_failures = 100_000;
    config.upstream.breaker.min_calls = 100_000;
    Moat::start(config).await
}

/// POSTs `body` as it is; the status and the answer's text.
async fn post(moat: &Moat, body: &str) -> (u16, String) {
    let r = moat
        .http
        .post(format!("{}/graphql", moat.url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.text().await.expect("text"))
}

/// `GET /graphql` with these parameters; the status and the answer's text.
async fn get(moat: &Moat, params: &[(&str, String)]) -> (u16, String) {
    let r = moat
        .http
        .get(format!("{}/graphql", moat.url))
        .query(params)
        .send()
        .await
        .expect("get");
    (r.status().as_u16(), r.text().await.expect("text"))
}

fn body(query: &str, variables: Value) -> String {
    json!({ "query": query, "variables": variables }).to_string()
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Every key under `data`, as a dotted path, in the order the text has
/// them (lists by index). `serde_json::Value` sorts keys; the library's
/// own value type keeps them.
fn data_keys(text: &str) -> Vec<String> {
    fn walk(value: &async_graphql::Value, at: &str, out: &mut Vec<String>) {
        let join = |key: &str| match at {
            "" => key.to_string(),
            _ => format!("{at}.{key}"),
        };
        match value {
            async_graphql::Value::Object(map) => {
                for (key, value) in map {
                    out.push(join(key));
                    walk(value, &join(key), out);
                }
            }
            async_graphql::Value::List(items) => {
                for (i, value) in items.iter().enumerate() {
                    walk(value, &join(&i.to_string()), out);
                }
            }
            _ => {}
        }
    }
    let answer: async_graphql::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut keys = Vec::new();
    if let async_graphql::Value::Object(answer) = &answer
        && let Some(data) = answer.get("data")
    {
        walk(data, "", &mut keys);
    }
    keys
}

/// `(path, code)` of every error, in the answer's order.
fn errors(answer: &Value) -> Vec<(Value, String)> {
    answer["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let code = e["extensions"]["code"].as_str().unwrap_or("none");
                    (e["path"].clone(), code.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn unavailable(path: Value) -> (Value, String) {
    (path, "UPSTREAM_UNAVAILABLE".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_erp_down_errored_fields_are_present_as_null_on_every_way_in() {
    let sim = Sim::start().await;
    let moat = gateway(&sim).await;
    sim.fault("erp", json!({ "down": true })).await;
    let variables = json!({ "sku": "SKU-000009" });

    // Nothing cached for the sku: content from the PIM, the rest null.
    let (status, text) = post(&moat, &body(PAGE, variables.clone())).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        data_keys(&text),
        [
            "product",
            "product.name",
            "product.price",
            "product.availability",
            "product.id",
            "product.sku"
        ],
        "{text}"
    );
    let answer = parse(&text);
    let product = &answer["data"]["product"];
    assert_eq!(product["sku"], "SKU-000009");
    assert!(product["name"].is_string(), "{text}");
    assert_eq!(product["price"], Value::Null);
    assert_eq!(product["availability"], Value::Null);
    assert_eq!(
        errors(&answer),
        [
            unavailable(json!(["product", "price"])),
            unavailable(json!(["product", "availability"]))
        ],
        "in selection order: {text}"
    );

    // Sent again, it is the same answer, byte for byte (had it been
    // storable, the door would have served these bytes).
    assert_eq!(post(&moat, &body(PAGE, variables.clone())).await.1, text);

    // Over GET, and by hash (APQ: registered with the text, then the hash
    // alone, over POST and GET): the same answer.
    let vars = variables.to_string();
    let (status, by_get) = get(
        &moat,
        &[("query", PAGE.to_string()), ("variables", vars.clone())],
    )
    .await;
    assert_eq!((status, &by_get), (200, &text));
    let hash = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(PAGE) } });
    let registered = json!({ "query": PAGE, "variables": variables, "extensions": hash });
    assert_eq!(post(&moat, &registered.to_string()).await.1, text);
    let by_hash = json!({ "variables": variables, "extensions": hash });
    assert_eq!(post(&moat, &by_hash.to_string()).await.1, text);
    let (status, by_hash_get) = get(
        &moat,
        &[("variables", vars), ("extensions", hash.to_string())],
    )
    .await;
    assert_eq!((status, &by_hash_get), (200, &text));

    // The price alone: the product is there, its price null.
    let (_, text) = post(
        &moat,
        &body(
            "query($sku: String!) { product(sku: $sku) { price { price { amount } } } }",
            variables,
        ),
    )
    .await;
    let answer = parse(&text);
    assert_eq!(
        answer["data"],
        json!({ "product": { "price": null } }),
        "{text}"
    );
    assert_eq!(errors(&answer), [unavailable(json!(["product", "price"]))]);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_erp_down_a_product_list_and_checkout_answer_as_the_spec_has_it() {
    let sim = Sim::start().await;
    let moat = gateway(&sim).await;
    sim.fault("erp", json!({ "down": true })).await;

    let list = body(
        "{ products(first: 5) { nodes { sku price { price { amount } } } } }",
        json!({}),
    );
    let (status, text) = post(&moat, &list).await;
    assert_eq!(status, 200, "{text}");
    let expected_keys: Vec<String> = ["products".to_string(), "products.nodes".to_string()]
        .into_iter()
        .chain((0..5).flat_map(|i| {
            [
                format!("products.nodes.{i}.sku"),
                format!("products.nodes.{i}.price"),
            ]
        }))
        .collect();
    assert_eq!(data_keys(&text), expected_keys, "{text}");
    let answer = parse(&text);
    for node in answer["data"]["products"]["nodes"].as_array().unwrap() {
        assert!(node["sku"].is_string(), "{text}");
        assert_eq!(node["price"], Value::Null, "{text}");
    }
    assert_eq!(
        errors(&answer),
        (0..5)
            .map(|i| unavailable(json!(["products", "nodes", i, "price"])))
            .collect::<Vec<_>>(),
        "{text}"
    );
    assert_eq!(post(&moat, &list).await.1, text, "the same answer again");

    // `verifyCheckout` is non-null at the root: `data` is null, the
    // error on its path.
    let line = json!({
        "sku": "SKU-000009",
        "quantity": 1,
        "displayedUnitPrice": { "amount": "10.00", "currencyCode": "EUR" },
    });
    let input = json!({
        "currencyCode": "EUR",
        "lines": [line],
        "displayedTotal": { "amount": "10.00", "currencyCode": "EUR" },
    });
    let verify = body(support::shop::VERIFY, json!({ "input": input }));
    let (status, text) = post(&moat, &verify).await;
    assert_eq!(status, 200, "{text}");
    let answer = parse(&text);
    assert_eq!(answer["data"], Value::Null, "{text}");
    assert_eq!(
        errors(&answer),
        [unavailable(json!(["verifyCheckout"]))],
        "{text}"
    );
    assert_eq!(post(&moat, &verify).await.1, text, "the same answer again");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_non_null_field_nulls_its_nearest_nullable_parent() {
    let sim = Sim::start().await;
    let moat = gateway(&sim).await;
    // Products and a listing cached, the categories never read.
    let warm = "{ product(sku: \"SKU-000011\") { name } products(first: 2) { nodes { sku } } }";
    let (_, text) = post(&moat, &body(warm, json!({}))).await;
    assert!(parse(&text).get("errors").is_none(), "{text}");
    sim.fault("pim", json!({ "down": true })).await;

    // `categories: [Category!]!` fails: its product (nullable) is null,
    // its sibling product is not, and there is one error, on the path of
    // the field that failed.
    let q = r#"{
        plain: product(sku: "SKU-000011") { name }
        filed: product(sku: "SKU-000011") { name categories { name } }
    }"#;
    let (status, text) = post(&moat, &body(q, json!({}))).await;
    assert_eq!(status, 200, "{text}");
    let answer = parse(&text);
    assert!(answer["data"]["plain"]["name"].is_string(), "{text}");
    assert_eq!(answer["data"]["filed"], Value::Null, "{text}");
    assert_eq!(data_keys(&text), ["plain", "plain.name", "filed"]);
    assert_eq!(
        errors(&answer),
        [unavailable(json!(["filed", "categories"]))],
        "{text}"
    );

    // Non-null all the way up (`products`, `nodes`, each node): `data`
    // is null, and the path still names the field that failed.
    let q = "{ products(first: 2) { nodes { sku categories { id } } } }";
    let (status, text) = post(&moat, &body(q, json!({}))).await;
    assert_eq!(status, 200, "{text}");
    let answer = parse(&text);
    assert_eq!(answer["data"], Value::Null, "{text}");
    let errors = errors(&answer);
    assert_eq!(errors.len(), 1, "{text}");
    let (path, code) = &errors[0];
    assert_eq!(code, "UPSTREAM_UNAVAILABLE");
    let path = path.as_array().expect("a path");
    assert_eq!(path.len(), 4, "{text}");
    assert_eq!(path[..2], [json!("products"), json!("nodes")], "{text}");
    assert!(path[2].as_u64().is_some_and(|i| i < 2), "{text}");
    assert_eq!(path[3], "categories", "{text}");
    moat.stop().await;
}

/// Aliases, a named and an inline fragment, and `price` selected twice
/// (merged, its keys in order of first appearance).
const ORDERED: &str = r#"
query Ordered($sku: String!) {
  product(sku: $sku) {
    title: name
    price { price { amount } }
    ...Pricing
    ... on Product { stock: availability { status quantity } }
    sku
    id
  }
  listing: products(first: 2) { nodes { id } }
}
fragment Pricing on Product { price { price { currencyCode amount } } }"#;

const ORDERED_KEYS: [&str; 15] = [
    "product",
    "product.title",
    "product.price",
    "product.price.price",
    "product.price.price.amount",
    "product.price.price.currencyCode",
    "product.stock",
    "product.stock.status",
    "product.stock.quantity",
    "product.sku",
    "product.id",
    "listing",
    "listing.nodes",
    "listing.nodes.0.id",
    "listing.nodes.1.id",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_selection_for_misses_hits_and_stored_answers() {
    let sim = Sim::start().await;
    // Latency, so fetches finish in an order of their own.
    for system in ["pim", "erp"] {
        sim.fault(system, json!({ "latency_ms": 20 })).await;
    }
    let moat = gateway(&sim).await;
    let sent = body(ORDERED, json!({ "sku": "SKU-000013" }));

    // A miss: every field fetched.
    let (status, miss) = post(&moat, &sent).await;
    assert_eq!(status, 200, "{miss}");
    assert!(parse(&miss).get("errors").is_none(), "{miss}");
    assert_eq!(data_keys(&miss), ORDERED_KEYS, "{miss}");

    // Hits, until the door holds the answer: each the miss's bytes.
    let responses = &moat.state().responses;
    let key = responses
        .key(
            ORDERED,
            moat::cache::Sent::Post(sent.clone().into()),
            moat::cache::Audience::Anyone,
        )
        .expect("a storable query");
    let stored = eventually(Duration::from_secs(5), || async {
        let (_, hit) = post(&moat, &sent).await;
        assert_eq!(hit, miss, "a hit answers as the miss did");
        responses.get(&key).is_some()
    })
    .await;
    assert!(stored, "the answer is stored");
    let at_the_door = responses.get(&key).expect("stored").body;
    assert_eq!(String::from_utf8_lossy(&at_the_door), miss);
    let (_, served) = post(&moat, &sent).await;
    assert_eq!(served, miss);

    // The same request in other bytes runs GraphQL again, on hits alone:
    // byte for byte the stored answer.
    let again = json!({ "operationName": "Ordered", "query": ORDERED, "variables": { "sku": "SKU-000013" } });
    let (_, fresh) = post(&moat, &again.to_string()).await;
    assert_eq!(fresh, miss);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_used_only_in_a_directive_on_typename_is_used() {
    let sim = Sim::start().await;
    let moat = gateway(&sim).await;
    let q = "query Q($on: Boolean!) { __typename @include(if: $on) }";
    let (status, text) = post(&moat, &body(q, json!({ "on": true }))).await;
    assert_eq!(
        (status, text.as_str()),
        (200, r#"{"data":{"__typename":"Query"}}"#)
    );
    let (status, text) = post(&moat, &body(q, json!({ "on": false }))).await;
    assert_eq!((status, text.as_str()), (200, r#"{"data":{}}"#));

    // Inside an object too; and an object whose every field is skipped
    // is an object, not null.
    let q = r#"query Q($on: Boolean!) { product(sku: "SKU-000001") { __typename @skip(if: $on) sku @include(if: $on) } }"#;
    let (_, text) = post(&moat, &body(q, json!({ "on": true }))).await;
    assert_eq!(text, r#"{"data":{"product":{"sku":"SKU-000001"}}}"#);
    let (_, text) = post(&moat, &body(q, json!({ "on": false }))).await;
    assert_eq!(text, r#"{"data":{"product":{"__typename":"Product"}}}"#);
    let q = r#"query Q($on: Boolean!) { product(sku: "SKU-000001") { sku @include(if: $on) } }"#;
    let (_, text) = post(&moat, &body(q, json!({ "on": false }))).await;
    assert_eq!(text, r#"{"data":{"product":{}}}"#);

    // Its directives are validated like any field's: an undefined
    // variable, a variable of the wrong type, an unknown directive.
    for (q, variables) in [
        ("query Q { __typename @include(if: $on) }", json!({})),
        (
            "query Q($on: String!) { __typename @include(if: $on) }",
            json!({ "on": "yes" }),
        ),
        (
            "query Q($on: Boolean!) { __typename @include(if: $on) @nonsense }",
            json!({ "on": true }),
        ),
    ] {
        let (status, text) = post(&moat, &body(q, variables)).await;
        let answer = parse(&text);
        assert_eq!(status, 200, "{q}: {text}");
        assert!(answer.get("data").is_none(), "{q}: {text}");
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
            "{q}: {text}"
        );
    }
    moat.stop().await;
}
