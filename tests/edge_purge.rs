//! Purges reach Fastly and Cloudflare: small local fakes of their purge
//! APIs (the request shapes, auth headers and error answers their docs
//! give) behind two replicas sharing a test Redis. Each change is purged
//! once across the replicas, in batches of the vendor's size, and retried
//! on 5xx and 429 until taken, while events are acknowledged at once.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use moat::config::{Config, PurgeKind, PurgeTarget, Secrets};
use serde_json::{Value, json};
use support::events::{price_event, send};
use support::redis::RedisServer;
use support::{Moat, Sim, eventually};

const FASTLY_TOKEN: &str = "fastly-test-token";
const CLOUDFLARE_TOKEN: &str = "cloudflare-test-token";

/// A canned answer: status, headers, body.
type Canned = (u16, Vec<(&'static str, &'static str)>, String);

/// One request a fake received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A vendor's purge API on a free port: records every request, answers
/// from a queue of canned answers, then with the vendor's success.
#[derive(Clone)]
struct Fake {
    url: String,
    kind: PurgeKind,
    seen: Arc<Mutex<Vec<Seen>>>,
    answers: Arc<Mutex<VecDeque<Canned>>>,
}

impl Fake {
    async fn start(kind: PurgeKind) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Fake {
            url: format!("http://{}", listener.local_addr().unwrap()),
            kind,
            seen: Arc::default(),
            answers: Arc::default(),
        };
        let serving = fake.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let fake = serving.clone();
                async move { fake.answer(method, uri, headers, body) }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let keys = keys_of(self.kind, &headers, &body);
        self.seen.lock().unwrap().push(Seen {
            method,
            path: uri.path().to_string(),
            headers,
            body,
        });
        let (status, headers, body) = self.answers.lock().unwrap().pop_front().unwrap_or_else(|| {
            // What each documents for a purge it took.
            let body = match self.kind {
                PurgeKind::Fastly => {
                    let ids: serde_json::Map<String, Value> =
                        keys.iter().map(|k| (k.clone(), json!("108-1391560174-974124"))).collect();
                    Value::Object(ids).to_string()
                }
                _ => json!({ "success": true, "errors": [], "messages": [], "result": { "id": "9a7806061c88ada191ed06f989cc3dac" } }).to_string(),
            };
            (200, Vec::new(), body)
        });
        let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
        for (name, value) in headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response
    }

    /// Queues answers given before the default success.
    fn fail_with(&self, answers: Vec<Canned>) {
        self.answers.lock().unwrap().extend(answers);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every purge request's keys, in order.
    fn purges(&self) -> Vec<Vec<String>> {
        self.seen()
            .iter()
            .map(|s| keys_of(self.kind, &s.headers, &s.body))
            .collect()
    }

    fn purged(&self, key: &str) -> usize {
        self.purges()
            .iter()
            .filter(|keys| keys.iter().any(|k| k == key))
            .count()
    }

    fn target(&self) -> PurgeTarget {
        PurgeTarget {
            kind: self.kind,
            url: Some(self.url.clone()),
            service_id: (self.kind == PurgeKind::Fastly).then(|| "SU1Z0isxPaozGVKXdv0eY".into()),
            zone: (self.kind == PurgeKind::Cloudflare)
                .then(|| "023e105f4ecef8ad9ca31a8372d0c353".into()),
            soft: self.kind == PurgeKind::Fastly,
            max_keys: None,
        }
    }
}

/// The keys of one purge request, as the vendor reads them.
fn keys_of(kind: PurgeKind, headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    match kind {
        PurgeKind::Cloudflare => serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["tags"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => headers
            .get("surrogate-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

fn secrets() -> Secrets {
    Secrets {
        edge_tokens: [
            ("fastly".to_string(), FASTLY_TOKEN.to_string()),
            ("cloudflare".to_string(), CLOUDFLARE_TOKEN.to_string()),
        ]
        .into(),
        ..support::secrets()
    }
}

async fn replica(sim: &Sim, redis: &RedisServer, fakes: &[&Fake]) -> Moat {
    let mut config: Config = support::config(&sim.url);
    config.redis.url = Some(redis.url());
    config.edge.purge = fakes.iter().map(|f| f.target()).collect();
    config.edge.purge_retry = Duration::from_millis(50);
    config.edge.purge_retry_max = Duration::from_millis(400);
    // Once per change here; the second purge has its own test.
    config.edge.purge_again_after = Duration::ZERO;
    Moat::start_with_secrets(config, secrets()).await
}

fn sku(n: usize) -> String {
    format!("SKU-{n:06}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_is_purged_once_across_two_replicas_in_each_vendors_shape() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let (fastly, cloudflare) = (
        Fake::start(PurgeKind::Fastly).await,
        Fake::start(PurgeKind::Cloudflare).await,
    );
    let a = replica(&sim, &redis, &[&fastly, &cloudflare]).await;
    let b = replica(&sim, &redis, &[&fastly, &cloudflare]).await;

    // The same event reaches both replicas: one applies it, one purge.
    let event = price_event("edge-once-1", &sku(1), 12_34, 1_000_001);
    for moat in [&a, &b] {
        let (status, _) = send(moat, "erp", &event).await;
        assert_eq!(status, 200);
    }
    // Then another change, on the other replica: once it is purged, any
    // second send of the first would have come before it.
    let (status, _) = send(
        &b,
        "erp",
        &price_event("edge-once-2", &sku(2), 5_00, 1_000_001),
    )
    .await;
    assert_eq!(status, 200);
    for fake in [&fastly, &cloudflare] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                fake.purged(&format!("price:{}", sku(2))) == 1
            })
            .await,
            "{:?} got {:?}",
            fake.kind,
            fake.purges()
        );
        assert_eq!(
            fake.purged(&format!("price:{}", sku(1))),
            1,
            "{:?}",
            fake.purges()
        );
        assert!(
            fake.purges()
                .iter()
                .all(|keys| keys.contains(&"price:all".to_string()))
        );
    }

    // Fastly: POST /service/{id}/purge, the keys in Surrogate-Key, the
    // token in Fastly-Key, soft as configured.
    for seen in fastly.seen() {
        assert_eq!(seen.method, Method::POST);
        assert_eq!(seen.path, "/service/SU1Z0isxPaozGVKXdv0eY/purge");
        assert_eq!(seen.headers["fastly-key"], FASTLY_TOKEN);
        assert_eq!(seen.headers["fastly-soft-purge"], "1");
    }
    // Cloudflare: POST /zones/{zone}/purge_cache, {"tags": [...]}, a
    // bearer token.
    for seen in cloudflare.seen() {
        assert_eq!(seen.method, Method::POST);
        assert_eq!(
            seen.path,
            "/zones/023e105f4ecef8ad9ca31a8372d0c353/purge_cache"
        );
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {CLOUDFLARE_TOKEN}").as_str()
        );
        assert!(
            seen.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
    let sent = |t: &str| format!("moat_edge_purges_total{{target=\"{t}\",outcome=\"sent\"}}");
    let total = a.metric(&sent("fastly")).await + b.metric(&sent("fastly")).await;
    assert!(total >= 1.0, "{total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_purges_are_retried_after_5xx_and_429_and_sent_in_batches() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let (fastly, cloudflare) = (
        Fake::start(PurgeKind::Fastly).await,
        Fake::start(PurgeKind::Cloudflare).await,
    );
    // Their documented refusals first: overload, rate limit (with
    // Retry-After), and Cloudflare's error envelope.
    fastly.fail_with(vec![
        (503, vec![], "<html>Service Unavailable</html>".into()),
        (
            429,
            vec![("retry-after", "1")],
            json!({"msg": "Too many requests"}).to_string(),
        ),
        (
            500,
            vec![],
            json!({"msg": "Internal error", "detail": "try again"}).to_string(),
        ),
    ]);
    cloudflare.fail_with(vec![
        (502, vec![], "bad gateway".into()),
        (429, vec![("retry-after", "1")], json!({"success": false, "errors": [{"code": 971, "message": "Please wait and consider throttling your request speed"}], "messages": [], "result": null}).to_string()),
        (200, vec![], json!({"success": false, "errors": [{"code": 1134, "message": "Purge request failed"}], "messages": [], "result": null}).to_string()),
    ]);
    let moat = replica(&sim, &redis, &[&fastly, &cloudflare]).await;

    // Every event is acknowledged at once, whatever the edge says.
    let changes = 40;
    for n in 0..changes {
        let event = price_event(
            &format!("edge-retry-{n}"),
            &sku(n + 10),
            1_00 + n as i64,
            1_000_001,
        );
        let (status, receipt) = send(&moat, "erp", &event).await;
        assert_eq!(
            (status, receipt["outcome"].as_str()),
            (200, Some("applied"))
        );
    }
    for fake in [&fastly, &cloudflare] {
        assert!(
            eventually(Duration::from_secs(20), || async {
                (0..changes).all(|n| fake.purged(&format!("price:{}", sku(n + 10))) >= 1)
            })
            .await,
            "{:?}: {:?}",
            fake.kind,
            fake.purges()
        );
        let purges = fake.purges();
        let limit = if fake.kind == PurgeKind::Cloudflare {
            30
        } else {
            256
        };
        assert!(purges.iter().all(|keys| keys.len() <= limit));
        // Changes that waited were sent together.
        assert!(purges.iter().any(|keys| keys.len() > 2), "{purges:?}");
        assert!(purges.len() < changes + 3, "{} requests", purges.len());
    }
    let (_, status) = moat.admin_get("/admin/status").await;
    let targets = status["edge"]["purge"]
        .as_array()
        .expect("edge.purge")
        .clone();
    let of = |name: &str| {
        targets
            .iter()
            .find(|t| t["target"] == name)
            .cloned()
            .unwrap()
    };
    assert!(of("fastly")["failed"].as_u64() >= Some(3));
    assert!(of("cloudflare")["failed"].as_u64() >= Some(3));
    assert!(
        of("cloudflare")["lastError"]
            .as_str()
            .unwrap()
            .contains("1134"),
        "{targets:?}"
    );
    assert!(
        moat.metric(r#"moat_edge_purges_total{target="cloudflare",outcome="failed"}"#)
            .await
            >= 3.0
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            moat.metric(r#"moat_edge_purge_backlog{target="fastly"}"#)
                .await
                == 0.0
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_purged_again_for_edges_that_refetched_from_a_replica_not_yet_told() {
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let fastly = Fake::start(PurgeKind::Fastly).await;
    let mut config: Config = support::config(&sim.url);
    config.redis.url = Some(redis.url());
    config.edge.purge = vec![fastly.target()];
    config.edge.purge_again_after = Duration::from_millis(300);
    let moat = Moat::start_with_secrets(config, secrets()).await;
    let (status, _) = send(
        &moat,
        "erp",
        &price_event("edge-again-1", &sku(3), 7_00, 1_000_001),
    )
    .await;
    assert_eq!(status, 200);
    let key = format!("price:{}", sku(3));
    assert!(
        eventually(Duration::from_secs(10), || async {
            fastly.purged(&key) == 2
        })
        .await,
        "{:?}",
        fastly.purges()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_each_targets_token_and_reach() {
    let sim = Sim::start().await;
    let fastly = Fake::start(PurgeKind::Fastly).await;
    let mut config: Config = support::config(&sim.url);
    let mut unreachable = Fake::start(PurgeKind::Cloudflare).await.target();
    unreachable.url = Some(format!("http://127.0.0.1:{}", support::free_port()));
    config.edge.purge = vec![fastly.target(), unreachable];
    let line = |lines: &[moat::doctor::Line], check: &str| {
        let found = lines.iter().find(|l| l.check == check);
        found
            .map(|l| l.status)
            .unwrap_or_else(|| panic!("no {check} in {lines:?}"))
    };
    use moat::doctor::Status;
    let without = moat::doctor::run(&config, &support::secrets()).await;
    assert_eq!(line(&without, "edge.purge.fastly"), Status::Fail);
    let with = moat::doctor::run(&config, &secrets()).await;
    assert_eq!(line(&with, "edge.purge.fastly"), Status::Ok);
    assert_eq!(line(&with, "edge.purge.cloudflare"), Status::Warn);
    // No Redis: purges wait in memory only.
    assert_eq!(line(&with, "edge.purge"), Status::Warn);
}
