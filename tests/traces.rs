//! Traces across systems, as an SRE would follow them: the storefront sends
//! a W3C `traceparent`, Moat continues that trace through its cache and
//! its upstream calls, the simulator records the `traceparent` each call
//! carried, and an OTLP/HTTP receiver in this test collects what Moat
//! exports. The real binary runs, with JSON logs, so the log lines are
//! checked too.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use support::process::{Running, config_file};
use support::{Sim, eventually};

/// An OTLP/HTTP receiver on a free loopback port that keeps every span it
/// is sent (the JSON protocol, so the test reads it without protobuf).
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Value>>>,
    resources: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    async fn start() -> Collector {
        type Kept = (Arc<Mutex<Vec<Value>>>, Arc<Mutex<Vec<Value>>>);
        async fn receive(State((spans, resources)): State<Kept>, body: Bytes) -> &'static str {
            let export: Value = serde_json::from_slice(&body).expect("OTLP JSON");
            for rs in export["resourceSpans"].as_array().into_iter().flatten() {
                resources.lock().unwrap().push(rs["resource"].clone());
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for span in ss["spans"].as_array().into_iter().flatten() {
                        spans.lock().unwrap().push(span.clone());
                    }
                }
            }
            "{}"
        }
        let spans = Arc::new(Mutex::new(Vec::new()));
        let resources = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state((spans.clone(), resources.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector {
            url,
            spans,
            resources,
        }
    }

    fn trace(&self, trace_id: &str) -> Vec<Value> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s["traceId"] == trace_id)
            .cloned()
            .collect()
    }
}

/// A span attribute's value as text (`stringValue` or `intValue`).
fn attribute(span: &Value, key: &str) -> Option<String> {
    let kv = span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?;
    let v = &kv["value"];
    v["stringValue"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| v["intValue"].as_str().map(str::to_owned))
        .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
}

/// The `traceparent` of every call the simulator received, by system.
async fn received(sim: &Sim) -> Vec<(String, Option<String>)> {
    let calls = sim.get_json("/_sim/traces").await;
    calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["system"].as_str().unwrap().to_string(),
                c["traceparent"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Every call carries a well-formed traceparent of a trace Moat started,
/// nothing of `bad`.
fn page_calls_are_traced(calls: &[(String, Option<String>)], bad: &str) {
    for (system, tp) in calls {
        let tp = tp
            .as_deref()
            .unwrap_or_else(|| panic!("{system}: no traceparent"));
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(
            (parts[0].len(), parts[1].len(), parts[2].len()),
            (2, 32, 16),
            "{tp}"
        );
        assert!(!bad.contains(parts[1]), "{tp} after {bad}");
    }
}

async fn graphql(moat: &Running, traceparent: Option<&str>, query: &str) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", moat.public))
        .json(&json!({ "query": query, "operationName": "ProductPage" }));
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    request.send().await.unwrap().json().await.unwrap()
}

fn product_page(id: u32) -> String {
    format!(
        "query ProductPage {{ product(id: \"prod-{id:06}\") {{ name price {{ price {{ amount }} }} availability {{ status }} }} }}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_storefront_through_moat_to_the_erp() {
    let collector = Collector::start().await;
    let sim = Sim::start().await;
    let file = config_file(
        "traces",
        &format!(
            "[telemetry]\nlog_format = \"json\"\n\n[telemetry.traces]\notlp_endpoint = \"{}\"\nprotocol = \"http/json\"\n",
            collector.url
        ),
    );
    let mut moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);

    // A storefront's sampled trace: a cold product page, so Moat reads PIM
    // and ERP inside it.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let storefront_span = "00f067aa0ba902b7";
    let page = graphql(
        &moat,
        Some(&format!("00-{trace}-{storefront_span}-01")),
        &product_page(42),
    )
    .await;
    assert!(page["data"]["product"]["name"].is_string(), "{page}");

    // Every upstream call carried the storefront's trace id, sampled, with
    // a span of Moat's as its parent.
    let calls = received(&sim).await;
    for system in ["pim", "erp"] {
        assert!(
            calls.iter().any(|(s, _)| s == system),
            "{system} was called: {calls:?}"
        );
    }
    let mut parents_seen = HashMap::new();
    for (system, traceparent) in &calls {
        let tp = traceparent
            .as_deref()
            .unwrap_or_else(|| panic!("a {system} call without traceparent: {calls:?}"));
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!((parts[0], parts[1], parts[3]), ("00", trace, "01"), "{tp}");
        assert_ne!(parts[2], storefront_span, "Moat's own span is the parent");
        parents_seen.insert(parts[2].to_string(), system.clone());
    }

    // A second request whose ERP answer breaks the contract: the warning
    // it logs carries that request's trace id.
    let broken = "0af7651916cd43dd8448eb211c80319c";
    sim.fault("erp", json!({ "malformed_rate": 1.0 })).await;
    graphql(
        &moat,
        Some(&format!("00-{broken}-b7ad6b7169203331-01")),
        &product_page(43),
    )
    .await;
    sim.fault("erp", json!({ "malformed_rate": 0.0 })).await;
    // The log is read from the process's output as it comes.
    let warning = "breaks protocol v1";
    assert!(
        eventually(Duration::from_secs(5), || async { moat.logged(warning) }).await,
        "a contract warning was logged"
    );
    let warned = moat
        .log()
        .into_iter()
        .find(|l| l.contains(warning))
        .expect("a contract warning was logged");
    let line: Value = serde_json::from_str(&warned).expect("a JSON log line");
    assert!(
        line["spans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["trace_id"] == broken),
        "the log line carries the trace id: {warned}"
    );

    // A request without trace context starts a trace of its own, and the
    // upstream still hears of it.
    let before = received(&sim).await.len();
    graphql(&moat, None, &product_page(44)).await;
    let fresh = received(&sim).await.split_off(before);
    assert!(!fresh.is_empty());
    let ids: Vec<String> = fresh
        .iter()
        .map(|(_, tp)| {
            tp.as_deref()
                .expect("traceparent")
                .split('-')
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        ids.iter()
            .all(|id| id == &ids[0] && id != trace && id != broken)
    );

    // Shutdown sends what is buffered.
    moat.signal("TERM");
    assert!(
        moat.wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            !collector.trace(trace).is_empty()
        })
        .await,
        "spans reached the collector"
    );
    let spans = collector.trace(trace);
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["spanId"].as_str().unwrap(), s))
        .collect();

    // One server span for the operation, the storefront's child ...
    let operation: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parentSpanId"] == storefront_span)
        .collect();
    assert_eq!(operation.len(), 1, "{spans:#?}");
    let operation = operation[0];
    assert_eq!(operation["name"], "query ProductPage");
    assert_eq!(operation["kind"], 2, "SERVER");
    assert_eq!(
        attribute(operation, "graphql.operation.type").as_deref(),
        Some("query")
    );
    // ... every other span of the trace below it ...
    for span in &spans {
        let mut at: &Value = span;
        while at["spanId"] != operation["spanId"] {
            let parent = at["parentSpanId"].as_str().unwrap_or_default();
            at = by_id.get(parent).unwrap_or_else(|| {
                panic!("{} is not under the operation: {spans:#?}", span["name"])
            });
        }
    }
    // ... with the cache tiers and the upstream calls as children.
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for name in ["cache product", "cache price", "fill product", "fill price"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let upstream: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 3).collect();
    assert!(
        upstream
            .iter()
            .any(|s| attribute(s, "moat.upstream.system").as_deref() == Some("erp")),
        "{names:?}"
    );
    // The span the ERP saw as its parent is Moat's client span for that call.
    for (parent, system) in &parents_seen {
        let span = by_id
            .get(parent.as_str())
            .unwrap_or_else(|| panic!("{system}'s parent {parent} was exported"));
        assert_eq!(span["kind"], 3, "CLIENT");
        assert_eq!(
            attribute(span, "moat.upstream.system").as_deref(),
            Some(system.as_str())
        );
        assert_eq!(
            attribute(span, "http.response.status_code").as_deref(),
            Some("200")
        );
    }
    // The broken answer's span says so.
    let broken_spans = collector.trace(broken);
    assert!(
        broken_spans
            .iter()
            .any(|s| s["name"] == "query ProductPage" && s["status"]["code"] == 2),
        "the operation with a broken upstream answer is an error: {broken_spans:#?}"
    );
    let resources = collector.resources.lock().unwrap().clone();
    assert!(resources.iter().all(|r| {
        r["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "moat")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_storefront_trace_is_followed_and_not_exported() {
    let collector = Collector::start().await;
    let sim = Sim::start().await;
    let file = config_file(
        "traces-unsampled",
        &format!(
            "[telemetry.traces]\notlp_endpoint = \"{}\"\nprotocol = \"http/json\"\n",
            collector.url
        ),
    );
    let mut moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    graphql(
        &moat,
        Some(&format!("00-{trace}-00f067aa0ba902b7-00")),
        &product_page(7),
    )
    .await;
    // The sampled one after it shows the export works.
    let sampled = "6bf92f3577b34da6a3ce929d0e0e4738";
    graphql(
        &moat,
        Some(&format!("00-{sampled}-00f067aa0ba902b7-01")),
        &product_page(8),
    )
    .await;
    let calls = received(&sim).await;
    let unsampled: Vec<&String> = calls
        .iter()
        .filter_map(|(_, tp)| tp.as_ref())
        .filter(|tp| tp.contains(trace))
        .collect();
    assert!(!unsampled.is_empty(), "{calls:?}");
    assert!(
        unsampled.iter().all(|tp| tp.ends_with("-00")),
        "{unsampled:?}"
    );

    // A broken or oversized traceparent is ignored: the request is served
    // in a trace of its own.
    let long = format!("00-{}-00f067aa0ba902b7-01", "a".repeat(4000));
    let bad = [
        "00-zzzz-not-a-trace",
        "ff-00000000000000000000000000000000-0000000000000000-01",
        long.as_str(),
    ];
    for (product, bad) in (30..).zip(bad) {
        let before = received(&sim).await.len();
        let page = graphql(&moat, Some(bad), &product_page(product)).await;
        assert!(page["data"]["product"]["name"].is_string(), "{bad}: {page}");
        let calls = received(&sim).await.split_off(before);
        assert!(!calls.is_empty(), "a cold page reads upstream");
        page_calls_are_traced(&calls, bad);
    }

    moat.signal("TERM");
    assert!(moat.wait_exit(Duration::from_secs(20)).is_some());
    assert!(
        eventually(Duration::from_secs(5), || async {
            !collector.trace(sampled).is_empty()
        })
        .await
    );
    assert!(
        collector.trace(trace).is_empty(),
        "not sampled: not exported"
    );
}

/// What the simulator saw since `from` calls: `(system, path, traceparent,
/// tracestate)` each.
async fn calls_since(sim: &Sim, from: usize) -> Vec<(String, String, Value, Value)> {
    let calls = sim.get_json("/_sim/traces").await;
    calls["calls"].as_array().unwrap()[from..]
        .iter()
        .map(|c| {
            (
                c["system"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
                c["traceparent"].clone(),
                c["tracestate"].clone(),
            )
        })
        .collect()
}

async fn post_with(moat: &Running, headers: &[(&str, &str)], body: Value) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", moat.public))
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_the_storefront_trace_context_is_passed_on_unchanged() {
    let sim = Sim::start().await;
    let file = config_file("traces-off", "");
    let moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    let seen = || async {
        sim.get_json("/_sim/traces").await["calls"]
            .as_array()
            .unwrap()
            .len()
    };
    let page = |id: u32| json!({ "query": product_page(id), "operationName": "ProductPage" });

    // A cold product page: its PIM and ERP calls carry the storefront's
    // context as it was sent (Moat has no span of its own to put there).
    let traceparent = "00-7bf92f3577b34da6a3ce929d0e0e4739-00f067aa0ba902b7-01";
    let tracestate = "vendor=opaque,other=1";
    let r = post_with(
        &moat,
        &[("traceparent", traceparent), ("tracestate", tracestate)],
        page(9),
    )
    .await;
    assert!(r["data"]["product"]["name"].is_string(), "{r}");
    let calls = calls_since(&sim, 0).await;
    for system in ["pim", "erp"] {
        assert!(calls.iter().any(|c| c.0 == system), "{calls:?}");
    }
    for (system, path, tp, ts) in &calls {
        assert_eq!(tp, traceparent, "{system} {path}");
        assert_eq!(ts, tracestate, "{system} {path}");
    }

    // A checkout's ERP quote carries it too.
    let from = seen().await;
    let checkout = json!({
        "query": "mutation($input: VerifyCheckoutInput!) { verifyCheckout(input: $input) { ok } }",
        "variables": { "input": {
            "currencyCode": "EUR",
            "lines": [{ "sku": "SKU-000009", "quantity": 1, "priceToken": "forged",
                        "displayedUnitPrice": { "amount": "1.00", "currencyCode": "EUR" } }],
            "displayedTotal": { "amount": "1.00", "currencyCode": "EUR" },
        } },
    });
    let quote_tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let r = post_with(&moat, &[("traceparent", quote_tp)], checkout).await;
    assert_eq!(r["data"]["verifyCheckout"]["ok"], false, "{r}");
    let calls = calls_since(&sim, from).await;
    assert!(calls.iter().any(|c| c.1 == "/erp/v1/quote"), "{calls:?}");
    for (system, path, tp, ts) in &calls {
        assert_eq!(tp, quote_tp, "{system} {path}");
        assert!(ts.is_null(), "none was sent: {system} {path}");
    }

    // A malformed traceparent is not passed on, nor is anything for a
    // request that sent none (no other request's context leaks into it).
    for headers in [
        &[("traceparent", "00-not-a-trace-01"), ("tracestate", "a=b")][..],
        &[(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )][..],
        &[][..],
    ] {
        let from = seen().await;
        let r = post_with(&moat, headers, page(10 + from as u32)).await;
        assert!(r["data"]["product"]["name"].is_string(), "{r}");
        let calls = calls_since(&sim, from).await;
        assert!(!calls.is_empty(), "a cold page calls upstream");
        for (system, path, tp, ts) in &calls {
            assert!(
                tp.is_null() && ts.is_null(),
                "{headers:?}: {system} {path}: {tp}"
            );
        }
    }
}
