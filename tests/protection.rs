//! Upstream protection against the simulator's fault controls: priority
//! rate limits (local and shared through Redis), circuit breakers, the
//! retry budget, live tuning through the admin API and CLI, the request
//! deadline, and inbound per-client limits.

mod support;

use std::time::{Duration, Instant};

use moat::config::Config;
use serde_json::{Value, json};
use support::redis::RedisServer;
use support::{ADMIN_TOKEN, Moat, Sim, config, error_codes};

const PRICE: &str = r#"query($id: ID!) { product(id: $id) { name price { price { amount } } } }"#;

fn id(n: usize) -> String {
    format!("prod-{n:06}")
}

async fn big_sim() -> Sim {
    Sim::start_with(moat::sim::SimConfig {
        products: 3_000,
        ..Default::default()
    })
    .await
}

/// Fills the product cache page by page (a few PIM calls), so price reads
/// that follow are the only upstream traffic.
async fn warm_products(moat: &Moat, pages: usize) {
    let mut after: Option<String> = None;
    for _ in 0..pages {
        let r = moat
            .query(
                "query($a: String) { products(first: 100, after: $a) { pageInfo { endCursor } } }",
                json!({ "a": after }),
            )
            .await;
        after = r["data"]["products"]["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_string);
        assert!(after.is_some(), "{r}");
    }
}

fn erp_limit(c: &mut Config, rps: u32, burst: u32) {
    c.upstream.limits.erp.rps = Some(rps);
    c.upstream.limits.erp.burst = Some(burst);
}

async fn erp_breaker(moat: &Moat) -> Value {
    moat.admin_get("/admin/status").await.1["upstreams"]["erp"]["breaker"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_cold_reads_stays_within_the_erp_limit() {
    let sim = big_sim().await;
    let mut c = config(&sim.url);
    erp_limit(&mut c, 10, 10);
    c.upstream.limits.checkout_reserve = 0.2;
    let moat = Moat::start(c).await;
    warm_products(&moat, 20).await;
    // A cart shown before the campaign starts.
    let shown = support::shop::shown(&moat, None, "SKU-002500").await;
    let erp_calls = || async {
        sim.requests("erp.prices").await
            + sim.requests("erp.inventory").await
            + sim.requests("erp.quote").await
    };
    let before = erp_calls().await;
    let asked_before = erp_items(&sim).await;

    let started = Instant::now();
    let reads = futures_util::stream::iter(1..=2_000)
        .map(|n| moat.query(PRICE, json!({ "id": id(n) })))
        .buffer_unordered(64)
        .collect::<Vec<Value>>();
    // Checkouts keep verifying during the burst, on their reserved share.
    let checkouts = async {
        let mut results = Vec::new();
        for _ in 0..5 {
            let input = support::shop::cart(&[(&shown, 1)]);
            results.push(support::shop::verify(&moat, None, input).await);
        }
        results
    };
    let (responses, checkouts) = tokio::join!(reads, checkouts);
    let elapsed = started.elapsed().as_secs_f64();

    let calls = erp_calls().await - before;
    // Reads in progress together share a call: what the ERP was asked is
    // counted by the keys it was sent.
    let asked = erp_items(&sim).await - asked_before;
    let allowed = (10.0 * elapsed).ceil() as u64 + 10;
    assert!(
        calls <= allowed,
        "{calls} ERP calls in {elapsed:.1}s; the limit allows {allowed}"
    );
    let limited = responses
        .iter()
        .filter(|r| error_codes(r).contains(&"RATE_LIMITED".to_string()))
        .count();
    // Every read the limit kept from the ERP was refused at once, none
    // queued until it got through.
    assert!(
        limited as u64 + asked >= 2_000,
        "{limited} refused and {asked} asked of 2000 reads"
    );
    assert!(
        responses
            .iter()
            .all(|r| r["data"]["product"]["name"].is_string()),
        "content still served"
    );
    for v in &checkouts {
        assert_eq!(
            v["data"]["verifyCheckout"]["ok"], true,
            "checkout got through: {v}"
        );
    }
    assert!(
        moat.metric("moat_ratelimit_rejected_total{upstream=\"erp\",priority=\"browse\"}")
            .await
            > 0.0
    );
    moat.stop().await;
}

use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_erp_trips_its_breaker_which_only_probes_then_closes() {
    let sim = big_sim().await;
    let mut c = config(&sim.url);
    c.upstream.breaker.consecutive_failures = 5;
    c.upstream.breaker.cooldown = Duration::from_millis(500);
    c.upstream.breaker.probes = 1;
    c.upstream.retry.max_attempts = 1;
    let moat = Moat::start(c).await;
    warm_products(&moat, 5).await;
    sim.fault("erp", json!({ "error_rate": 1.0 })).await;

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    let mut opened = false;
    while !opened && Instant::now() < deadline {
        n += 1;
        let _ = moat.query(PRICE, json!({ "id": id(n) })).await;
        opened = erp_breaker(&moat).await["state"] == "open";
    }
    assert!(opened, "breaker opens");
    let report = erp_breaker(&moat).await;
    assert!(
        report["trip_reason"]
            .as_str()
            .unwrap()
            .contains("consecutive"),
        "{report}"
    );
    assert_eq!(
        moat.metric("moat_breaker_state{upstream=\"erp\"}").await,
        2.0
    );

    // While ERP keeps failing: reads fail fast, and ERP sees probes only.
    let before = sim.requests("erp.prices").await;
    let started = Instant::now();
    for k in 0..60 {
        let r = moat.query(PRICE, json!({ "id": id(500 + k) })).await;
        assert_eq!(error_codes(&r), ["UPSTREAM_UNAVAILABLE"], "{r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cooldowns = (started.elapsed().as_secs_f64() / 0.5).ceil() as u64;
    let probes = sim.requests("erp.prices").await - before;
    assert!(
        probes <= cooldowns + 1,
        "{probes} calls over {cooldowns} cooldowns: probes only"
    );

    sim.fault("erp", json!({ "error_rate": 0.0 })).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut k = 700;
    let mut closed = false;
    while !closed && Instant::now() < deadline {
        k += 1;
        let r = moat.query(PRICE, json!({ "id": id(k) })).await;
        closed = r["data"]["product"]["price"]["price"]["amount"].is_string();
        if !closed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(closed, "serves prices again once ERP recovers");
    assert_eq!(erp_breaker(&moat).await["state"], "closed");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_during_an_outage_stay_within_the_budget() {
    let sim = big_sim().await;
    let mut c = config(&sim.url);
    // Breaker out of the way: this test is about the budget alone.
    c.upstream.breaker.consecutive_failures = 100_000;
    c.upstream.breaker.min_calls = 100_000;
    c.upstream.retry.max_attempts = 3;
    c.upstream.retry.backoff = Duration::from_millis(1);
    c.upstream.retry.budget_ratio = 0.1;
    c.upstream.retry.budget_floor = 1;
    c.upstream.retry.budget_window = Duration::from_secs(10);
    erp_limit(&mut c, 100_000, 1_000);
    let moat = Moat::start(c).await;
    warm_products(&moat, 3).await;
    sim.fault("erp", json!({ "error_rate": 1.0 })).await;
    let before = sim.requests("erp.prices").await;

    let requests = 200;
    let reads = futures_util::stream::iter(1..=requests)
        .map(|n| moat.query(PRICE, json!({ "id": id(n) })))
        // One at a time: reads in progress together would share a call,
        // and this counts each request's first attempt.
        .buffered(1);
    let responses: Vec<Value> = reads.collect().await;
    assert!(
        responses
            .iter()
            .all(|r| error_codes(r) == ["UPSTREAM_UNAVAILABLE"])
    );

    let attempts = sim.requests("erp.prices").await - before;
    let bound = (requests as f64 * 1.1) as u64 + 10;
    assert!(attempts >= requests as u64, "every request was tried");
    assert!(
        attempts <= bound,
        "{attempts} attempts for {requests} requests; budget allows {bound}"
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_changes_the_erp_limit_live() {
    let sim = big_sim().await;
    let mut c = config(&sim.url);
    erp_limit(&mut c, 5, 1);
    c.upstream.limits.checkout_reserve = 0.0;
    let moat = Moat::start(c).await;
    warm_products(&moat, 30).await;

    // Steady demand well above both limits, for a measured window.
    let rate = |from: usize| {
        let moat = &moat;
        let sim = &sim;
        async move {
            let before = sim.requests("erp.prices").await;
            let started = Instant::now();
            let reads = futures_util::stream::iter(from..from + 400)
                .map(|n| moat.query(PRICE, json!({ "id": id(n) })))
                .buffer_unordered(16);
            let _: Vec<Value> = reads.collect().await;
            (
                sim.requests("erp.prices").await - before,
                started.elapsed().as_secs_f64(),
            )
        }
    };
    let (slow, secs) = rate(1).await;
    assert!(
        slow as f64 <= 5.0 * secs + 2.0,
        "{slow} calls in {secs:.1}s at 5 rps"
    );

    let (status, body) = moat
        .http
        .put(format!("{}/admin/limits/erp", moat.admin_url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "rps": 200, "burst": 20 }))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 200, "{:?}", body.text().await);
    let (_, limits) = moat.admin_get("/admin/limits").await;
    assert_eq!(limits["erp"]["rps"], 200);
    assert_eq!(
        moat.metric("moat_ratelimit_limit_rps{upstream=\"erp\"}")
            .await,
        200.0
    );

    let (fast, secs) = rate(1_000).await;
    assert!(
        fast as f64 > 5.0 * secs + 2.0,
        "{fast} calls in {secs:.1}s: above the old limit"
    );

    // Bad changes are refused and change nothing.
    let r = moat
        .http
        .put(format!("{}/admin/limits/erp", moat.admin_url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "rps": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = moat
        .http
        .put(format!("{}/admin/limits/warehouse", moat.admin_url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "rps": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(moat.admin_get("/admin/limits").await.1["erp"]["rps"], 200);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_refuses_without_the_right_token() {
    let sim = Sim::start().await;
    let routes = [
        ("GET", "/admin/status"),
        ("GET", "/admin/limits"),
        ("PUT", "/admin/limits/erp"),
        ("POST", "/admin/breakers/erp"),
        ("POST", "/admin/cache/purge"),
    ];
    let moat = Moat::start(config(&sim.url)).await;
    let closed = Moat::start_with_secrets(config(&sim.url), Default::default()).await;
    for (method, path) in routes {
        let method: reqwest::Method = method.parse().unwrap();
        for (token, expect) in [(None, 401), (Some("wrong"), 401)] {
            let mut r = moat
                .http
                .request(method.clone(), format!("{}{path}", moat.admin_url));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let status = r.json(&json!({})).send().await.unwrap().status().as_u16();
            assert_eq!(status, expect, "{method} {path} with {token:?}");
        }
        let status = closed
            .http
            .request(method.clone(), format!("{}{path}", closed.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 403, "{method} {path} with no token configured");
    }
    // The breaker can be forced and handed back.
    let (status, body) = moat
        .admin_post("/admin/breakers/erp", json!({ "action": "open" }))
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("open")));
    let r = moat.query(PRICE, json!({ "id": id(1) })).await;
    assert_eq!(error_codes(&r), ["UPSTREAM_UNAVAILABLE"]);
    let (status, body) = moat
        .admin_post("/admin/breakers/erp", json!({ "action": "reset" }))
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("closed")));
    let (status, _) = moat
        .admin_post("/admin/breakers/erp", json!({ "action": "explode" }))
        .await;
    assert_eq!(status, 400);
    moat.stop().await;
    closed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_sharing_redis_stay_within_one_erp_limit() {
    let sim = big_sim().await;
    let redis = RedisServer::start();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let mut c = config(&sim.url);
        c.redis.url = Some(redis.url());
        c.upstream.replicas = 3;
        erp_limit(&mut c, 10, 5);
        replicas.push(Moat::start(c).await);
    }
    for r in &replicas {
        warm_products(r, 20).await;
    }
    let before = sim.requests("erp.prices").await;
    let started = Instant::now();
    let reads = futures_util::stream::iter(1..=900)
        .map(|n| replicas[n % 3].query(PRICE, json!({ "id": id(n) })))
        .buffer_unordered(48);
    let _: Vec<Value> = reads.collect().await;
    let elapsed = started.elapsed().as_secs_f64();
    let calls = sim.requests("erp.prices").await - before;
    let allowed = (10.0 * elapsed).ceil() as u64 + 5 + 1;
    assert!(
        calls <= allowed,
        "{calls} ERP calls in {elapsed:.1}s across 3 replicas; one limit allows {allowed}"
    );
    assert!(calls >= 5, "the shared limit let traffic through ({calls})");

    // Redis gone: each replica falls back to its share (10 / 3 rps), so
    // together they still keep to about the one limit.
    drop(redis);
    let before = sim.requests("erp.prices").await;
    let started = Instant::now();
    let reads = futures_util::stream::iter(1_000..1_900)
        .map(|n| replicas[n % 3].query(PRICE, json!({ "id": id(n) })))
        .buffer_unordered(48);
    let responses: Vec<Value> = reads.collect().await;
    let elapsed = started.elapsed().as_secs_f64();
    let calls = sim.requests("erp.prices").await - before;
    // Each share is 10/3 rps with a burst of 2 (5 split three ways, rounded up).
    let allowed = (10.0 * elapsed).ceil() as u64 + 3 * 2 + 3;
    assert!(
        calls <= allowed,
        "{calls} ERP calls in {elapsed:.1}s on local shares; allowed {allowed}"
    );
    assert!(
        responses
            .iter()
            .all(|r| r["data"]["product"]["name"].is_string()),
        "serving without Redis"
    );
    for r in replicas {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_limit_gets_429_while_others_are_served() {
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    c.server.client_limit.enabled = true;
    c.server.client_limit.rps = 1;
    c.server.client_limit.burst = 3;
    let moat = Moat::start(c).await;
    let ask = |key: &'static str| {
        moat.http
            .post(format!("{}/graphql", moat.url))
            .header("x-api-key", key)
            .json(&json!({ "query": "{ categories { id } }" }))
            .send()
    };
    let mut refused = None;
    for _ in 0..10 {
        let r = ask("greedy").await.unwrap();
        if r.status().as_u16() == 429 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the greedy client is refused");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(error_codes(&body), ["RATE_LIMITED"]);

    let other = ask("polite").await.unwrap();
    assert_eq!(other.status().as_u16(), 200);
    // Health is never limited.
    for _ in 0..10 {
        let r = moat
            .http
            .get(format!("{}/healthz", moat.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_address_is_a_client() {
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    c.server.client_limit.enabled = true;
    c.server.client_limit.rps = 1;
    c.server.client_limit.burst = 3;
    c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let moat = Moat::start(c).await;
    let direct = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let ask = |http: &reqwest::Client, forwarded: &str| {
        http.post(format!("{}/graphql", moat.url))
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "query": "{ categories { id } }" }))
            .send()
    };
    let mut refused = false;
    for _ in 0..10 {
        refused = ask(&moat.http, "203.0.113.66").await.unwrap().status() == 429;
        if refused {
            break;
        }
    }
    assert!(refused, "the greedy address is refused");
    // The proxy's other clients are served.
    let other = ask(&moat.http, "198.51.100.7").await.unwrap();
    assert_eq!(other.status().as_u16(), 200);
    // A client that is not the proxy is its own address whatever it sends.
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = ask(&direct, &format!("192.0.2.{i}")).await.unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_costs_a_field_not_the_request() {
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    c.server.deadline = Duration::from_millis(300);
    c.upstream.timeout = Duration::from_secs(5);
    let moat = Moat::start(c).await;
    let _ = moat
        .query("{ product(id: \"prod-000001\") { name } }", json!({}))
        .await;
    sim.fault("erp", json!({ "latency_ms": 2_000 })).await;
    let r = moat.query(PRICE, json!({ "id": id(1) })).await;
    assert!(r["data"]["product"]["name"].is_string(), "{r}");
    assert_eq!(r["data"]["product"]["price"], Value::Null);
    assert_eq!(error_codes(&r), ["UPSTREAM_UNAVAILABLE"]);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_reads_and_changes_limits() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
            .arg("admin")
            .arg("--url")
            .arg(&moat.admin_url)
            .args(args)
            .env("MOAT_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap()
    };
    let out = cli(&["limits", "set", "erp", "--rps", "42"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["limits", "--json"]);
    let limits: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(limits["erp"]["rps"], 42);
    let out = cli(&["breaker", "erp", "open"]);
    assert!(out.status.success());
    assert_eq!(erp_breaker(&moat).await["state"], "open");
    let out = cli(&["limits", "set", "nowhere", "--rps", "1"]);
    assert_eq!(out.status.code(), Some(1), "refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no upstream \"nowhere\""));
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_browse_miss_is_served_stale_when_it_can_be() {
    let sim = big_sim().await;
    let mut c = config(&sim.url);
    erp_limit(&mut c, 1, 1);
    c.upstream.limits.checkout_reserve = 0.0;
    c.upstream.limits.browse_wait = Duration::ZERO;
    c.cache.jitter = 0.0;
    c.cache.price.soft_ttl = Duration::from_millis(300);
    c.cache.price.hard_ttl = Duration::from_millis(300);
    let moat = Moat::start(c).await;
    warm_products(&moat, 1).await;
    let first = moat.query(PRICE, json!({ "id": id(1) })).await;
    let price = first["data"]["product"]["price"]["price"]["amount"].clone();
    assert!(price.is_string(), "{first}");

    // Past its hard TTL the price must be fetched; with the ERP bucket
    // drained by another read, the fetch is refused and the old price is
    // served, marked stale, without an error.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served_stale = false;
    while !served_stale && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(350)).await;
        let _ = moat.query(PRICE, json!({ "id": id(2) })).await; // drains the bucket
        let r = moat.query("query($id: ID!) { product(id: $id) { price { price { amount } freshness { stale } } } }", json!({ "id": id(1) })).await;
        if r["data"]["product"]["price"]["freshness"]["stale"] == true {
            assert_eq!(r["data"]["product"]["price"]["price"]["amount"], price);
            assert!(r.get("errors").is_none(), "{r}");
            served_stale = true;
        }
    }
    assert!(served_stale, "served stale instead of RATE_LIMITED");
    // A cold read in the same spot fails fast instead.
    let cold = moat.query(PRICE, json!({ "id": id(3) })).await;
    let cold2 = moat.query(PRICE, json!({ "id": id(4) })).await;
    assert!(
        error_codes(&cold).contains(&"RATE_LIMITED".to_string())
            || error_codes(&cold2).contains(&"RATE_LIMITED".to_string()),
        "{cold} {cold2}"
    );
    moat.stop().await;
}

/// How many keys the ERP's price, stock and quote routes were sent.
async fn erp_items(sim: &Sim) -> u64 {
    let items = &sim.stats().await["items"];
    ["erp.prices", "erp.inventory", "erp.quote"]
        .iter()
        .map(|route| items[*route].as_u64().unwrap_or(0))
        .sum()
}
