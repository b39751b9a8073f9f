//! Simulator tests: the router is driven in-process with `oneshot` and
//! paused tokio time (so the default 20 ms latency costs nothing); only the
//! event test binds a real port, to receive what the simulator sends.
//!
//! Responses are checked against `schema/upstream/*.json` with a small
//! validator below, which keeps the schemas and the simulator honest with
//! each other.

mod auth;
mod control;
mod events;
mod faults;
mod upstream;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use bytes::Bytes;
use serde_json::Value;
use tower::ServiceExt;

use super::{SimConfig, Simulator};

pub fn sim(products: usize) -> Simulator {
    Simulator::new(SimConfig {
        products,
        ..SimConfig::default()
    })
}

pub async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Bytes) {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(value) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(value.to_string())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).expect("request builds"))
        .await
        .expect("router is infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body reads");
    (status, bytes)
}

fn parse(status: StatusCode, bytes: &Bytes) -> (StatusCode, Value) {
    let value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    });
    (status, value)
}

pub async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (status, bytes) = send(app, Method::GET, uri, None).await;
    parse(status, &bytes)
}

pub async fn post(app: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let (status, bytes) = send(app, Method::POST, uri, Some(body)).await;
    parse(status, &bytes)
}

pub async fn put(app: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let (status, bytes) = send(app, Method::PUT, uri, Some(body)).await;
    parse(status, &bytes)
}

/// Asserts a `{"error": "..."}` body with `status`.
pub fn assert_error(response: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(response.0, status, "{}", response.1);
    assert!(
        response.1["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        response.1
    );
}

pub fn schema(name: &str) -> Value {
    let text = match name {
        "product.json" => include_str!("../../../schema/upstream/product.json"),
        "category.json" => include_str!("../../../schema/upstream/category.json"),
        "price.json" => include_str!("../../../schema/upstream/price.json"),
        "inventory.json" => include_str!("../../../schema/upstream/inventory.json"),
        "customer.json" => include_str!("../../../schema/upstream/customer.json"),
        "order.json" => include_str!("../../../schema/upstream/order.json"),
        "quote-request.json" => include_str!("../../../schema/upstream/quote-request.json"),
        "quote.json" => include_str!("../../../schema/upstream/quote.json"),
        "event.json" => include_str!("../../../schema/upstream/event.json"),
        other => panic!("no schema {other}"),
    };
    serde_json::from_str(text).expect("schema is JSON")
}

/// Problems of `value` against schema file `name`. Closed: a property the
/// schema does not list is a problem too, so the schema stays complete.
pub fn violations(name: &str, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(&schema(name), value, name, true, &mut problems);
    problems
}

pub fn assert_valid(name: &str, value: &Value) {
    let problems = violations(name, value);
    assert!(problems.is_empty(), "{name}: {problems:?} in {value}");
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => false,
    }
}

/// The subset of JSON Schema 2020-12 our schema files use.
fn walk(schema: &Value, value: &Value, at: &str, closed: bool, problems: &mut Vec<String>) {
    if let Some(file) = schema.get("$ref").and_then(Value::as_str) {
        walk(&self::schema(file), value, at, closed, problems);
    }
    if let Some(kind) = schema.get("type") {
        let kinds: Vec<&str> = match kind {
            Value::String(k) => vec![k.as_str()],
            Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !kinds.iter().any(|k| type_matches(k, value)) {
            problems.push(format!("{at}: {value} is not {kinds:?}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        problems.push(format!("{at}: {value} not in {options:?}"));
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        problems.push(format!("{at}: {value} is not {expected}"));
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && let Some(n) = value.as_f64()
        && n < min
    {
        problems.push(format!("{at}: {n} < {min}"));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && let Some(s) = value.as_str()
        && (s.chars().count() as u64) < min
    {
        problems.push(format!("{at}: {s:?} shorter than {min}"));
    }
    if let Some(object) = value.as_object() {
        for field in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(field) = field.as_str().filter(|f| !object.contains_key(*f)) {
                problems.push(format!("{at}: missing {field}"));
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (key, sub) in properties {
                if let Some(v) = object.get(key) {
                    walk(sub, v, &format!("{at}.{key}"), closed, problems);
                }
            }
            let open = schema.get("additionalProperties") != Some(&Value::Bool(false)) && !closed;
            for key in object
                .keys()
                .filter(|k| !open && !properties.contains_key(*k))
            {
                problems.push(format!("{at}: unexpected {key}"));
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            problems.push(format!("{at}: more than {max} items"));
        }
        if let Some(sub) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                walk(sub, item, &format!("{at}[{i}]"), closed, problems);
            }
        }
    }
    // Conditional parts only ever constrain, so they are checked open.
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk(part, value, at, false, problems);
    }
    if let (Some(condition), Some(then)) = (schema.get("if"), schema.get("then")) {
        let mut miss = Vec::new();
        walk(condition, value, at, false, &mut miss);
        if miss.is_empty() {
            walk(then, value, at, false, problems);
        }
    }
}

#[test]
fn validator_catches_what_it_should() {
    let good = serde_json::json!({
        "sku": "SKU-000001", "available": 3, "version": 1, "updatedAt": "2026-01-01T00:00:00.000Z"
    });
    assert_valid("inventory.json", &good);
    for (field, bad) in [
        ("available", serde_json::json!(-1)),
        ("available", serde_json::json!("lots")),
        ("extra", serde_json::json!(1)),
    ] {
        let mut broken = good.clone();
        broken[field] = bad;
        assert!(
            !violations("inventory.json", &broken).is_empty(),
            "{broken}"
        );
    }
    let mut missing = good.clone();
    missing.as_object_mut().map(|o| o.remove("sku"));
    assert!(!violations("inventory.json", &missing).is_empty());
}

#[test]
fn every_schema_is_draft_2020_12_with_an_id() {
    for name in [
        "product.json",
        "category.json",
        "price.json",
        "inventory.json",
        "customer.json",
        "order.json",
        "quote-request.json",
        "quote.json",
        "event.json",
    ] {
        let s = schema(name);
        assert_eq!(
            s["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        assert!(
            s["$id"].as_str().is_some_and(|id| id.ends_with(name)),
            "{name}"
        );
        assert_eq!(s["type"], "object", "{name}");
    }
}

#[tokio::test]
async fn serve_answers_on_a_real_port_and_stops_on_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::serve(listener, sim(10), async {
        let _ = stopped.await;
    }));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{addr}/pim/v1/products?ids=prod-000001"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["items"][0]["sku"], "SKU-000001");
    let _ = stop.send(());
    let finished = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "serve returns after shutdown"
    );
}
