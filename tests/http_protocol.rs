//! GraphQL over HTTP as the spec has it, and bad input answered clearly:
//! malformed GraphQL, wrong media types, huge or deep queries, bad
//! arguments. Also health and the admin listener's refusals.

mod support;

use moat::config::Config;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};
use support::{Moat, Sim, config, error_codes};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

async fn post(moat: &Moat, accept: &str, body: String) -> (u16, String, Value) {
    let r = moat
        .http
        .post(format!("{}/graphql", moat.url))
        .header(ACCEPT, accept)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, r.json().await.unwrap_or(Value::Null))
}

fn query(q: &str, variables: Value) -> String {
    json!({ "query": q, "variables": variables }).to_string()
}

async fn setup() -> (Sim, Moat) {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    (sim, moat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_get_the_specs_status_per_media_type() {
    let (_sim, moat) = setup().await;
    let cases = [
        (
            "syntax error",
            query("{ product(id: \"prod-000001\") { name ", json!({})),
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            "unknown field",
            query("{ product(id: \"prod-000001\") { colour } }", json!({})),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "wrong variable type",
            query(
                "query($id: ID!) { product(id: $id) { name } }",
                json!({ "id": { "not": "an id" } }),
            ),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "missing variable",
            query("query($id: ID!) { product(id: $id) { name } }", json!({})),
            "BAD_USER_INPUT",
        ),
    ];
    for (what, body, code) in cases {
        let (status, content_type, r) = post(&moat, GRAPHQL_RESPONSE, body.clone()).await;
        assert_eq!(status, 400, "{what}: {r}");
        assert_eq!(error_codes(&r), [code], "{what}: {r}");
        assert!(
            content_type.starts_with(GRAPHQL_RESPONSE),
            "{what}: {content_type}"
        );
        assert!(
            r.get("data").is_none(),
            "{what}: a request error has no data: {r}"
        );
        let message = r["errors"][0]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "{what}: {r}");

        let (status, content_type, r) = post(&moat, "application/json", body).await;
        assert_eq!(status, 200, "{what}: legacy JSON answers 200: {r}");
        assert!(content_type.starts_with("application/json"));
        assert!(r["errors"][0]["message"].is_string(), "{what}: {r}");
    }
    moat.stop().await;
}

/// A text whose shape passed full validation is checked by the rules that
/// look at values only: what they refuse reads as full validation has it,
/// and texts of another shape are validated in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validated_shape_still_refuses_what_full_validation_refuses() {
    let (_sim, moat) = setup().await;
    let by_variable = "query($id: ID!) { product(id: $id) { name } }";
    let bad = query(by_variable, json!({ "id": { "not": "an id" } }));
    let (status, _, refused_in_full) = post(&moat, GRAPHQL_RESPONSE, bad.clone()).await;
    assert_eq!(status, 400, "{refused_in_full}");
    assert_eq!(error_codes(&refused_in_full), ["GRAPHQL_VALIDATION_FAILED"]);
    let (status, _, r) = post(
        &moat,
        GRAPHQL_RESPONSE,
        query(by_variable, json!({ "id": "prod-000001" })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert!(r["data"]["product"]["name"].is_string(), "{r}");
    let (status, _, refused_again) = post(&moat, GRAPHQL_RESPONSE, bad).await;
    assert_eq!(status, 400, "{refused_again}");
    assert_eq!(
        refused_again, refused_in_full,
        "the same errors, word for word"
    );

    // Ids written into the text: one shape, whichever the ids, as long as
    // the same ones are the same (merging two fields compares them).
    let twice = |a: &str, b: &str| {
        query(
            &format!("{{ p: product(id: \"{a}\") {{ name }} p: product(id: \"{b}\") {{ name }} }}"),
            json!({}),
        )
    };
    let (status, _, r) = post(&moat, GRAPHQL_RESPONSE, twice("prod-000001", "prod-000001")).await;
    assert_eq!(status, 200, "{r}");
    let (status, _, r) = post(&moat, GRAPHQL_RESPONSE, twice("prod-000002", "prod-000002")).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["data"]["p"]["name"].is_string(), "{r}");
    let (status, _, r) = post(&moat, GRAPHQL_RESPONSE, twice("prod-000002", "prod-000003")).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(error_codes(&r), ["GRAPHQL_VALIDATION_FAILED"]);
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("differing arguments"),
        "{r}"
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_with_a_reason() {
    let (_sim, moat) = setup().await;
    for accept in [GRAPHQL_RESPONSE, "application/json"] {
        let (status, _, r) = post(&moat, accept, "{ this is not json".into()).await;
        assert_eq!(status, 400, "{r}");
        assert_eq!(error_codes(&r), ["BAD_REQUEST"]);
        assert!(
            r["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("not a GraphQL request in JSON")
        );

        let (status, _, r) = post(&moat, accept, json!({ "variables": {} }).to_string()).await;
        assert_eq!(status, 400, "no query: {r}");
        assert_eq!(error_codes(&r), ["BAD_REQUEST"]);

        let (status, _, r) = post(
            &moat,
            accept,
            json!([{ "query": "{ categories { id } }" }]).to_string(),
        )
        .await;
        assert_eq!(status, 400, "a batch: {r}");
        assert!(
            r["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("batch")
        );

        let (status, _, r) = post(
            &moat,
            accept,
            json!({ "query": "{ categories { id } }", "variables": [1] }).to_string(),
        )
        .await;
        assert_eq!(status, 400, "variables not an object: {r}");
    }

    let r = moat
        .http
        .post(format!("{}/graphql", moat.url))
        .header(CONTENT_TYPE, "text/plain")
        .body("{ categories { id } }")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(
        error_codes(&r.json().await.unwrap()),
        ["UNSUPPORTED_MEDIA_TYPE"]
    );

    let r = moat
        .http
        .post(format!("{}/graphql", moat.url))
        .header(ACCEPT, "text/plain")
        .header(CONTENT_TYPE, "application/json")
        .body(query("{ categories { id } }", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 406);
    assert_eq!(error_codes(&r.json().await.unwrap()), ["NOT_ACCEPTABLE"]);

    let huge = query(
        &format!("{{ categories {{ id }} }} #{}", "x".repeat(3 * 1024 * 1024)),
        json!({}),
    );
    let (status, _, r) = post(&moat, GRAPHQL_RESPONSE, huge).await;
    assert_eq!(status, 413, "{r}");
    assert_eq!(error_codes(&r), ["PAYLOAD_TOO_LARGE"]);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_serves_queries_but_not_mutations() {
    let (_sim, moat) = setup().await;
    let r = moat
        .http
        .get(format!("{}/graphql", moat.url))
        .query(&[
            ("query", "query($id: ID!) { product(id: $id) { sku } }"),
            ("variables", r#"{"id":"prod-000005"}"#),
        ])
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["product"]["sku"], "SKU-000005");

    let r = moat
        .http
        .get(format!("{}/graphql", moat.url))
        .query(&[("query", "mutation { verifyCheckout }")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(
        error_codes(&r.json().await.unwrap()),
        ["METHOD_NOT_ALLOWED"]
    );

    let r = moat
        .http
        .get(format!("{}/graphql", moat.url))
        .query(&[
            ("query", "{ categories { id } }"),
            ("variables", "{not json"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // A browser gets GraphiQL.
    let r = moat
        .http
        .get(format!("{}/graphql", moat.url))
        .header(ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Its scripts come from Moat alone (headless Chromium runs it in
    // graphql_clients.rs).
    let policy = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("GraphiQL") && !page.contains("https://"),
        "{page}"
    );
    for (asset, media) in [
        ("graphiql.min.js", "text/javascript"),
        ("graphiql.min.css", "text/css"),
        ("graphiql-start.js", "text/javascript"),
    ] {
        let r = moat
            .http
            .get(format!("{}/assets/{asset}", moat.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{asset}");
        assert_eq!(r.headers()["content-type"], media, "{asset}");
    }
    let r = moat
        .http
        .get(format!("{}/assets/../Cargo.toml", moat.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_or_complex_queries_are_refused_before_they_run() {
    let (sim, moat) = setup().await;
    // Deeper than max_query_depth through the category tree.
    let deep = format!(
        "{{ categories {{ {} id {} }} }}",
        "parent { ".repeat(14),
        "}".repeat(14)
    );
    let (status, _, r) = post(&moat, GRAPHQL_RESPONSE, query(&deep, json!({}))).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(error_codes(&r), ["QUERY_TOO_COMPLEX"], "{r}");

    // Pathologically nested text never reaches the parser.
    let nested = format!("{}{}", "{a".repeat(50_000), "}".repeat(50_000));
    let (status, _, r) = post(&moat, GRAPHQL_RESPONSE, query(&nested, json!({}))).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(error_codes(&r), ["QUERY_TOO_COMPLEX"], "{r}");

    // Wide: many aliases of full pages.
    let aliases: String = (0..60)
        .map(|i| {
            format!(
                "p{i}: products(first: 100) {{ nodes {{ name price {{ price {{ amount }} }} }} }} "
            )
        })
        .collect();
    let (status, _, r) = post(
        &moat,
        GRAPHQL_RESPONSE,
        query(&format!("{{ {aliases} }}"), json!({})),
    )
    .await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(error_codes(&r), ["QUERY_TOO_COMPLEX"], "{r}");

    assert_eq!(
        sim.requests("pim.products").await,
        0,
        "nothing reached upstream"
    );
    let alive = moat.query("{ categories { id } }", json!({})).await;
    assert!(
        alive["data"]["categories"].is_array(),
        "still serving: {alive}"
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_bad_user_input_naming_the_field() {
    let (_sim, moat) = setup().await;
    let cases = [
        (r#"{ product(id: "a,b") { name } }"#, "id"),
        (
            r#"{ product(id: "prod-000001", sku: "SKU-000001") { name } }"#,
            "product",
        ),
        (r#"{ product { name } }"#, "product"),
        (
            r#"{ product(id: "prod-000001") { price(currencyCode: "GBP") { segment } } }"#,
            "currencyCode",
        ),
        (
            r#"{ product(id: "prod-000001") { price(currencyCode: "XXX") { segment } } }"#,
            "currencyCode",
        ),
        (r#"{ products(first: 500) { nodes { id } } }"#, "first"),
        (r#"{ products(first: -1) { nodes { id } } }"#, "first"),
        (
            r#"{ products(after: "garbage!") { nodes { id } } }"#,
            "after",
        ),
    ];
    for (q, field) in cases {
        let r = moat.query(q, json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{q}: {r}");
        let message = r["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.starts_with(field),
            "{q}: message {message:?} names {field}"
        );
    }
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_admin_refusals() {
    let (_sim, moat) = setup().await;
    for path in ["/healthz", "/readyz"] {
        let r = moat
            .http
            .get(format!("{}{path}", moat.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let r = moat
        .http
        .get(format!("{}/metrics", moat.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("moat_"));

    let r = moat
        .http
        .get(format!("{}/admin/status", moat.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "no token");
    let r = moat
        .http
        .get(format!("{}/admin/status", moat.admin_url))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "wrong token");
    let (status, body) = moat.admin_get("/admin/status").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["cache"]["l1"]["product"]["entries"].is_number());
    let budget = Config::default().cache.product.l1_max_bytes.bytes();
    assert_eq!(
        body["cache"]["l1"]["product"]["max_bytes"],
        json!(budget),
        "each tier's budget beside what it holds"
    );
    moat.stop().await;

    // No token configured: admin routes refuse even a bearer.
    let sim = Sim::start().await;
    let closed = Moat::start_with_secrets(config(&sim.url), Default::default()).await;
    let (status, _) = closed.admin_get("/admin/status").await;
    assert_eq!(status, 403);
    closed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_passes_its_own_depth_rule_and_can_be_turned_off() {
    let sim = Sim::start().await;
    // The standard query nests `ofType` 9 deep: 15 levels in all.
    let type_ref = format!(
        "kind name {}",
        "ofType { kind name ".repeat(9) + &"}".repeat(9)
    );
    let introspection = format!(
        "{{ __schema {{ types {{ name fields {{ name args {{ name type {{ {type_ref} }} }} type {{ {type_ref} }} }} }} }} }}"
    );
    let moat = Moat::start(config(&sim.url)).await;
    let r = moat.query(&introspection, json!({})).await;
    assert!(r.get("errors").is_none(), "{r}");
    assert!(r["data"]["__schema"]["types"].as_array().unwrap().len() > 10);
    moat.stop().await;

    let mut production = config(&sim.url);
    production.server.introspection = false;
    production.server.graphiql = false;
    let moat = Moat::start(production).await;
    let (status, _, r) = post(&moat, GRAPHQL_RESPONSE, query(&introspection, json!({}))).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(error_codes(&r), ["GRAPHQL_VALIDATION_FAILED"], "{r}");
    let r = moat
        .query("{ __typename categories { id } }", json!({}))
        .await;
    assert_eq!(r["data"]["__typename"], "Query", "{r}");
    moat.stop().await;
}
