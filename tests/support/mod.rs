//! Test harness: the simulator and gateways on free loopback ports, a
//! throwaway `redis-server`, and small clients for GraphQL, the simulator's
//! control API and the admin API. Everything talks over real TCP. Benches
//! and load-test programs include it too (`#[path]`), so they start the
//! same real pieces the same way.

#![allow(dead_code)]

pub mod events;
pub mod fleet;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod shop;
pub mod varnish;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

use moat::app::Gateway;
use moat::config::{Config, Secrets};
use moat::sim::{SimConfig, Simulator};

pub const ADMIN_TOKEN: &str = "test-admin-token";
/// Signs test change events (`MOAT_EVENTS_SECRET`).
pub const EVENTS_SECRET: &str = "test-events-secret";
/// Shared by every test gateway, so replicas verify each other's tokens.
pub const PRICE_TOKEN_SECRET: &str = "test-price-token-secret-0123456789abcdef";

/// A simulator serving on 127.0.0.1 with an ephemeral port.
pub struct Sim {
    pub url: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Sim {
    pub async fn start() -> Sim {
        Sim::start_with(SimConfig {
            products: 500,
            ..SimConfig::default()
        })
        .await
    }

    pub async fn start_with(config: SimConfig) -> Sim {
        install_tls_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sim");
        let url = format!("http://{}", listener.local_addr().expect("sim addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let sim = Simulator::new(config);
        tokio::spawn(async move {
            let _ = moat::sim::serve(listener, sim, async move {
                let _ = stopped.await;
            })
            .await;
        });
        let sim = Sim {
            url,
            http: reqwest::Client::new(),
            stop: Some(stop),
        };
        // Fast tests: no artificial latency unless a test asks for it.
        for system in ["pim", "erp", "crm", "oms"] {
            sim.fault(system, json!({ "latency_ms": 0 })).await;
        }
        sim
    }

    /// `POST /_sim/faults/{system}`.
    pub async fn fault(&self, system: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}/_sim/faults/{system}", self.url))
            .json(&body)
            .send()
            .await
            .expect("sim faults");
        assert!(
            r.status().is_success(),
            "fault {system} {body}: {}",
            r.status()
        );
    }

    /// `GET /_sim/stats` → `requests[endpoint]`.
    pub async fn requests(&self, endpoint: &str) -> u64 {
        self.stats().await["requests"][endpoint]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_sim/stats", self.url))
            .send()
            .await
            .expect("sim stats")
            .json()
            .await
            .expect("stats json")
    }

    pub async fn reset(&self) {
        self.http
            .post(format!("{}/_sim/reset", self.url))
            .send()
            .await
            .expect("sim reset");
        for system in ["pim", "erp", "crm", "oms"] {
            self.fault(system, json!({ "latency_ms": 0 })).await;
        }
    }

    /// `PUT /_sim/prices/{sku}`.
    pub async fn set_price(&self, sku: &str, body: Value) {
        let r = self
            .http
            .put(format!("{}/_sim/prices/{sku}", self.url))
            .json(&body)
            .send()
            .await
            .expect("sim price");
        assert!(r.status().is_success(), "set price: {}", r.status());
    }

    /// `PUT /_sim/inventory/{sku}`.
    pub async fn set_stock(&self, sku: &str, available: i64) {
        let r = self
            .http
            .put(format!("{}/_sim/inventory/{sku}", self.url))
            .json(&json!({ "available": available }))
            .send()
            .await
            .expect("sim inventory");
        assert!(r.status().is_success(), "set stock: {}", r.status());
    }

    /// `GET /_sim/customers`.
    pub async fn customers(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/_sim/customers", self.url))
            .send()
            .await
            .expect("sim customers")
            .json()
            .await
            .expect("customers json");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// A raw upstream read, to compare with what Moat serves.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("sim get")
            .json()
            .await
            .expect("sim json")
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// reqwest is built without a default TLS provider; clients need one.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A config for tests: ephemeral ports, the given upstream, test-friendly
/// timeouts.
pub fn config(upstream_url: &str) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin.listen = "127.0.0.1:0".parse().expect("addr");
    config.upstream.url = Some(upstream_url.to_string());
    config.upstream.timeout = Duration::from_secs(2);
    config
}

/// A loopback port nothing listens on now (for a process that must be
/// told its port before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The secrets every test gateway has: admin token, price-token secret and
/// one events secret for every source; no system credentials.
pub fn secrets() -> Secrets {
    Secrets {
        admin_token: Some(ADMIN_TOKEN.into()),
        price_token_secret: Some(PRICE_TOKEN_SECRET.into()),
        price_token_previous_secret: None,
        events_secrets: [(String::new(), vec![EVENTS_SECRET.to_string()])].into(),
        ..Secrets::default()
    }
}

/// A gateway in process, with its own L1 caches.
pub struct Moat {
    pub gateway: Option<Gateway>,
    pub url: String,
    pub admin_url: String,
    pub http: reqwest::Client,
}

impl Moat {
    /// The running gateway's shared state (for benches that go around HTTP).
    pub fn state(&self) -> &std::sync::Arc<moat::state::AppState> {
        &self.gateway.as_ref().expect("running").state
    }

    pub async fn start(config: Config) -> Moat {
        Moat::start_with_secrets(config, secrets()).await
    }

    pub async fn start_with_secrets(config: Config, secrets: Secrets) -> Moat {
        // RUST_LOG=moat=debug cargo test … shows the gateway's logs.
        if std::env::var_os("RUST_LOG").is_some() {
            moat::telemetry::init_logs(&Default::default());
        }
        let gateway = Gateway::start(config, secrets)
            .await
            .expect("gateway starts");
        Moat {
            url: format!("http://{}", gateway.public_addr),
            admin_url: format!("http://{}", gateway.admin_addr),
            gateway: Some(gateway),
            http: reqwest::Client::new(),
        }
    }

    /// POSTs a query and returns the JSON response (any status).
    pub async fn query(&self, query: &str, variables: Value) -> Value {
        self.http
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("graphql request")
            .json()
            .await
            .expect("graphql json")
    }

    /// POSTs a query with an `Authorization` header (`None`: without one)
    /// and returns the status, headers and JSON body.
    pub async fn query_as(
        &self,
        authorization: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("graphql request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.expect("graphql json");
        (status, headers, body)
    }

    /// A query as a signed-in customer; the JSON body (any status).
    pub async fn query_with_token(&self, token: &str, query: &str, variables: Value) -> Value {
        let bearer = format!("Bearer {token}");
        self.query_as(Some(&bearer), query, variables).await.2
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("admin request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Any admin call: method, path, optional JSON body; status and JSON.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.expect("admin request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The value of one Prometheus sample, e.g.
    /// `moat_contract_violations_total{entity="price",upstream="erp"}`.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.admin_url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(name_and_labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            g.stop().await;
        }
    }
}

/// Polls `check` until it returns true or `within` passes. Tests wait for
/// outcomes this way, never by sleeping a guessed amount.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A customer of the simulator by segment: `(id, token, order ids)`.
pub async fn customer_in(sim: &Sim, segment: &str) -> (String, String, Vec<String>) {
    let all = sim.customers().await;
    let c = all
        .iter()
        .find(|c| c["segment"] == segment)
        .unwrap_or_else(|| panic!("no {segment} customer in {all:?}"));
    let orders = c["orderIds"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (
        c["id"].as_str().unwrap_or_default().to_string(),
        c["token"].as_str().unwrap_or_default().to_string(),
        orders,
    )
}

/// `"12.34"` → 1234 (two minor digits, as EUR and USD have).
pub fn cents(decimal: &str) -> i64 {
    let (whole, fraction) = decimal.split_once('.').unwrap_or((decimal, "0"));
    let fraction = format!("{fraction:0<2}");
    whole.parse::<i64>().expect("whole part") * 100 + fraction[..2].parse::<i64>().expect("cents")
}

/// 1234 → `"12.34"`.
pub fn decimal(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The `extensions.code` of every error in a response.
/// Every error's `path`, in order (`Null` for an error without one).
pub fn error_paths(response: &Value) -> Vec<Value> {
    response["errors"]
        .as_array()
        .map(|errors| errors.iter().map(|e| e["path"].clone()).collect())
        .unwrap_or_default()
}

pub fn error_codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["extensions"]["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
