//! Queries sent by hash: automatic persisted queries over POST and GET,
//! and the allow-list mode, where only the manifest's operations run and a
//! reload brings in a new manifest. (Apollo Client's own APQ link is run
//! against the binary in `graphql_clients.rs`.)

mod support;

use serde_json::{Value, json};

use moat::config::{PersistedMode, PersistedQueries};
use moat::graphql::sha256_hex;
use support::{Moat, Sim};

const NAMES: &str =
    "query Names($first: Int!) { products(first: $first) { edges { node { name } } } }";
const SKU: &str = "query Sku { product(sku: \"SKU-000001\") { sku } }";

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// POSTs `body` asking for graphql-response+json; status and JSON.
async fn post(moat: &Moat, body: Value) -> (u16, Value) {
    let r = moat
        .http
        .post(format!("{}/graphql", moat.url))
        .header("accept", "application/graphql-response+json")
        .json(&body)
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.json().await.expect("json"))
}

async fn get(moat: &Moat, query: &[(&str, String)]) -> (u16, Value) {
    let r = moat
        .http
        .get(format!("{}/graphql", moat.url))
        .header("accept", "application/graphql-response+json")
        .query(query)
        .send()
        .await
        .expect("get");
    (r.status().as_u16(), r.json().await.expect("json"))
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apq_registers_a_query_once_and_then_runs_it_by_hash() {
    let sim = Sim::start().await;
    let moat = Moat::start(support::config(&sim.url)).await;
    let hash = sha256_hex(NAMES);
    let vars = json!({ "first": 2 });

    // Unknown: a 200 clients recognise, so they send the text.
    let (status, body) = post(
        &moat,
        json!({ "variables": vars, "extensions": persisted(&hash) }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND");

    let (status, body) = post(
        &moat,
        json!({ "query": NAMES, "variables": vars, "extensions": persisted(&hash) }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let names = body["data"]["products"]["edges"].clone();
    assert_eq!(names.as_array().map(Vec::len), Some(2), "{body}");

    // Now the hash alone, by POST and by a cacheable GET.
    let (_, body) = post(
        &moat,
        json!({ "variables": vars, "extensions": persisted(&hash) }),
    )
    .await;
    assert_eq!(body["data"]["products"]["edges"], names, "{body}");
    let (status, body) = get(
        &moat,
        &[
            ("variables", vars.to_string()),
            ("extensions", persisted(&hash).to_string()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["products"]["edges"], names, "{body}");

    // A text that is not the hash's is refused and registers nothing.
    let other = sha256_hex(SKU);
    let (status, body) = post(
        &moat,
        json!({ "query": NAMES, "variables": vars, "extensions": persisted(&other) }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "BAD_REQUEST");
    let (_, body) = post(&moat, json!({ "extensions": persisted(&other) })).await;
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    moat.stop().await;
}

fn manifest(name: &str, operations: &[(&str, &str)]) -> std::path::PathBuf {
    let ops: Vec<Value> = operations
        .iter()
        .map(|(id, body)| json!({ "id": id, "name": "op", "type": "query", "body": body }))
        .collect();
    let text = json!({
        "format": "apollo-persisted-query-manifest", "version": 1, "operations": ops,
    });
    let dir = std::env::temp_dir().join(format!("moat-manifest-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("operations.json");
    std::fs::write(&file, text.to_string()).expect("manifest");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_runs_only_the_manifest_and_reloads_it() {
    let sim = Sim::start().await;
    let mut config = support::config(&sim.url);
    let names_hash = sha256_hex(NAMES);
    config.server.persisted_queries = PersistedQueries {
        mode: PersistedMode::AllowList,
        manifest: Some(manifest("allow", &[("names-v1", NAMES)])),
        ..PersistedQueries::default()
    };
    let moat = Moat::start(config.clone()).await;
    let vars = json!({ "first": 1 });
    let ran = |body: &Value| body["data"]["products"]["edges"].as_array().map(Vec::len) == Some(1);

    // By the manifest's id, by the hash of its text, or as its exact text.
    for body in [
        json!({ "variables": vars, "extensions": persisted("names-v1") }),
        json!({ "variables": vars, "extensions": persisted(&names_hash) }),
        json!({ "query": NAMES, "variables": vars }),
    ] {
        let (status, answer) = post(&moat, body.clone()).await;
        assert!(status == 200 && ran(&answer), "{body} -> {answer}");
    }
    // Anything else is refused before it is parsed, even with its hash.
    for body in [
        json!({ "query": SKU }),
        json!({ "query": SKU, "extensions": persisted(&sha256_hex(SKU)) }),
        json!({ "extensions": persisted(&sha256_hex(SKU)) }),
        json!({ "query": "{ __schema { types { name } } }" }),
    ] {
        let (status, answer) = post(&moat, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(code(&answer), "PERSISTED_QUERY_NOT_IN_LIST", "{answer}");
        assert!(answer.get("data").is_none(), "{answer}");
    }

    // A reload brings a new manifest; a broken one keeps the running list.
    config.server.persisted_queries.manifest = Some(manifest("allow2", &[("sku-v1", SKU)]));
    moat.gateway
        .as_ref()
        .expect("running")
        .reload(config.clone());
    let (_, answer) = post(&moat, json!({ "extensions": persisted("sku-v1") })).await;
    assert_eq!(answer["data"]["product"]["sku"], "SKU-000001", "{answer}");
    let (_, answer) = post(&moat, json!({ "query": NAMES, "variables": vars })).await;
    assert_eq!(code(&answer), "PERSISTED_QUERY_NOT_IN_LIST", "{answer}");
    let broken = manifest("broken", &[]);
    std::fs::write(&broken, "{ not json").expect("write");
    config.server.persisted_queries.manifest = Some(broken);
    moat.gateway.as_ref().expect("running").reload(config);
    let (_, answer) = post(&moat, json!({ "extensions": persisted("sku-v1") })).await;
    assert_eq!(answer["data"]["product"]["sku"], "SKU-000001", "{answer}");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_persisted_queries_off_a_hash_is_not_supported() {
    let sim = Sim::start().await;
    let mut config = support::config(&sim.url);
    config.server.persisted_queries.mode = PersistedMode::Off;
    let moat = Moat::start(config).await;
    let (status, body) = post(&moat, json!({ "extensions": persisted(&sha256_hex(SKU)) })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotSupported");
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_SUPPORTED");
    let (status, body) = post(&moat, json!({ "query": SKU })).await;
    assert_eq!(status, 200, "{body}");
    moat.stop().await;
}

#[test]
fn config_names_persisted_query_problems() {
    let file = support::process::config_file(
        "persisted-config",
        "[server.persisted_queries]\nmode = \"allow_list\"\n",
    );
    let problems = moat::config::Config::from_sources(Some(&file), false)
        .expect_err("allow_list without a manifest")
        .problems;
    assert!(
        problems
            .iter()
            .any(|p| p.key == "server.persisted_queries.manifest"),
        "{problems:?}"
    );
}

/// A query sent with its hash is registered only once it has parsed and
/// validated: nothing invalid takes room in the registry, and its hash
/// stays unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_query_is_never_registered() {
    let sim = Sim::start().await;
    let moat = Moat::start(support::config(&sim.url)).await;
    for bad in ["{ product(sku: \"A\") { nosuch } }", "{ product(sku: "] {
        let hash = sha256_hex(bad);
        let (status, refused) = post(
            &moat,
            json!({ "query": bad, "extensions": persisted(&hash) }),
        )
        .await;
        assert_eq!(status, 400, "{refused}");
        let (_, by_hash) = post(&moat, json!({ "extensions": persisted(&hash) })).await;
        assert_eq!(code(&by_hash), "PERSISTED_QUERY_NOT_FOUND", "{by_hash}");
    }
    moat.stop().await;
}
