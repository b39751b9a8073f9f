//! Simulator tests: the router is driven in-process with `oneshot` and
//! paused tokio time (so the default 20 ms latency costs nothing); only the
//! event test binds a real port, to receive what the simulator sends.
//!
//! Responses are checked against `schema/upstream/*.json` (closed: no
//! property the schema does not list), which keeps the schemas and the
//! simulator honest with each other.

mod auth;
mod control;
mod events;
mod faults;
mod jwt;
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

/// Problems of `value` against schema file `name`. Closed: a property the
/// schema does not list is a problem too, so the schema stays complete.
pub fn violations(name: &str, value: &Value) -> Vec<String> {
    crate::schema::validate(name, value, crate::schema::Properties::Closed)
        .iter()
        .map(ToString::to_string)
        .collect()
}

pub fn assert_valid(name: &str, value: &Value) {
    let problems = violations(name, value);
    assert!(problems.is_empty(), "{name}: {problems:?} in {value}");
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
