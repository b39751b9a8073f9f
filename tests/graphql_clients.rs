//! Real GraphQL tooling against the real binary: the `graphql-http`
//! package's GraphQL-over-HTTP server audits, graphql-js's full
//! introspection query sent through graphql-request, built into a client
//! schema (what GraphiQL and code generators do), Apollo Client's
//! automatic persisted queries, and Apollo Client's cache and
//! graphql-request with a system down and a directive on `__typename`.
//! Needs Node.js and npm;
//! the packages are pinned in `tests/js/package-lock.json` and installed
//! on first use.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use serde_json::Value;
use support::Sim;
use support::process::{Running, config_file};

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// `npm ci` once, when the pinned packages are not there yet.
fn install_packages() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let installed = [
            "graphql-http",
            "graphql-request",
            "@apollo/client",
            "puppeteer-core",
        ]
        .iter()
        .all(|p| js_dir().join("node_modules").join(p).is_dir());
        if installed {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(js_dir())
            .status()
            .expect("npm (Node.js) is needed for these tests");
        assert!(status.success(), "npm ci in tests/js failed");
    });
}

/// Runs `node SCRIPT URL [ARGS]` and returns its JSON line and whether it
/// exited 0.
fn node(script: &str, url: &str) -> (bool, Value) {
    node_with(script, &[url])
}

fn node_with(script: &str, args: &[&str]) -> (bool, Value) {
    let out = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(js_dir())
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "{script}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_over_http_audits_pass_and_clients_build_the_schema() {
    install_packages();
    let sim = Sim::start().await;
    let file = config_file("clients", "");
    let moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    let url = format!("{}/graphql", moat.public);
    let (url_for_audit, url_for_schema) = (url.clone(), url);

    let audit = tokio::task::spawn_blocking(move || node("audit.mjs", &url_for_audit));
    let (passed, report) = audit.await.unwrap();
    assert_eq!(report["total"], 61, "{report}");
    assert!(
        passed && report["failed"] == Value::Array(vec![]),
        "{report:#}"
    );

    let schema = tokio::task::spawn_blocking(move || node("introspect.mjs", &url_for_schema));
    let (built, schema) = schema.await.unwrap();
    assert!(built, "{schema}");
    for field in [
        "product",
        "products",
        "category",
        "categories",
        "viewer",
        "order",
    ] {
        assert!(
            schema["queryFields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == field),
            "{field}: {schema}"
        );
    }
    assert_eq!(
        schema["mutationFields"],
        serde_json::json!(["verifyCheckout"])
    );

    // Apollo's APQ link: the first client's hash is unknown, so it sends
    // the text once; the second is served by hash alone, over GET.
    let url = format!("{}/graphql", moat.public);
    let apq = tokio::task::spawn_blocking(move || node("apq.mjs", &url));
    let (ran, apq) = apq.await.unwrap();
    assert!(ran && apq["errors"] == serde_json::json!([]), "{apq}");
    assert_eq!(apq["names"][0], apq["names"][1], "{apq}");
    assert_eq!(apq["names"][0].as_array().map(Vec::len), Some(2), "{apq}");
    let sent = |method: &str, query: bool| serde_json::json!({ "method": method, "query": query, "hash": true });
    assert_eq!(
        apq["requests"],
        serde_json::json!([sent("GET", false), sent("POST", true), sent("GET", false)]),
        "{apq}"
    );
}

/// With the ERP down, Apollo Client (InMemoryCache, errorPolicy "all")
/// stores the partial product page and reads it back whole, the price
/// null, without a word about missing fields; and graphql-request's query
/// with a variable used only in a directive on `__typename` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cache_partial_answers_and_send_directives_on_typename() {
    install_packages();
    let sim = Sim::start().await;
    sim.fault("erp", serde_json::json!({ "down": true })).await;
    let file = config_file("partial", "");
    let moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    let url = format!("{}/graphql", moat.public);

    let page_url = url.clone();
    let page =
        tokio::task::spawn_blocking(move || node_with("partial.mjs", &[&page_url, "SKU-000009"]));
    let (ran, page) = page.await.unwrap();
    assert!(ran, "{page:#}");
    let product = &page["data"]["product"];
    assert_eq!(product["sku"], "SKU-000009", "{page:#}");
    assert!(product["name"].is_string(), "{page:#}");
    assert_eq!(product["price"], Value::Null, "{page:#}");
    assert_eq!(product["availability"], Value::Null, "{page:#}");
    assert_eq!(page["cached"], page["data"], "read back whole: {page:#}");
    let failed: Vec<(&Value, &Value)> = page["errors"]
        .as_array()
        .map(|errors| errors.iter().map(|e| (&e["path"], &e["code"])).collect())
        .unwrap_or_default();
    let unavailable = serde_json::json!("UPSTREAM_UNAVAILABLE");
    assert_eq!(
        failed,
        [
            (&serde_json::json!(["product", "price"]), &unavailable),
            (
                &serde_json::json!(["product", "availability"]),
                &unavailable
            ),
        ],
        "{page:#}"
    );
    let missing: Vec<&Value> = page["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter(|l| l.as_str().unwrap_or("").to_lowercase().contains("missing"))
        .collect();
    assert!(missing.is_empty(), "{page:#}");

    let typename = tokio::task::spawn_blocking(move || node("typename.mjs", &url));
    let (ran, typename) = typename.await.unwrap();
    assert!(ran, "{typename}");
    assert_eq!(
        typename,
        serde_json::json!({ "on": { "__typename": "Query" }, "off": {} })
    );
}

/// The README's first query.
const README_QUERY: &str = "{ product(sku: \"SKU-000001\") { name price { price { amount currencyCode } freshness { ageSeconds stale } } availability { status quantity } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_works_offline_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        assert!(
            std::env::var_os("MOAT_CI").is_none(),
            "{chromium} is missing (Debian: the chromium package)"
        );
        eprintln!("no {chromium}: GraphiQL not tested in a browser here");
        return;
    }
    install_packages();
    let sim = Sim::start().await;
    let file = config_file("graphiql", "");
    let moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    let url = format!("{}/graphql", moat.public);
    let expected = sim.get_json("/pim/v1/products?ids=prod-000001").await["items"][0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let page =
        tokio::task::spawn_blocking(move || node_with("graphiql.mjs", &[&url, README_QUERY]));
    let (ran, page) = page.await.unwrap();
    assert!(ran, "{page:#}");
    // Nothing was fetched from beyond loopback, nothing failed to load.
    assert_eq!(page["offsite"], serde_json::json!([]), "{page:#}");
    assert_eq!(page["errors"], serde_json::json!([]), "{page:#}");
    let result = page["result"].as_str().unwrap_or("");
    assert!(result.contains(&expected), "{expected} not in {result}");
    assert!(result.contains("currencyCode"), "{result}");
    // The docs explorer was built from introspection.
    let docs = page["docs"].as_str().unwrap_or("");
    assert!(
        docs.contains("ProductPrice") && docs.contains("VerifyCheckoutInput"),
        "{docs}"
    );
}
