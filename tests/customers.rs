//! Customers end to end: bearer tokens resolved through the CRM, prices in
//! the customer's segment, `viewer`, and orders from the OMS that only
//! their owner may read, over real TCP.

mod support;

use serde_json::{Value, json};
use support::shop::{cart, shown, verify};
use support::{Moat, Sim, config, customer_in, decimal, error_codes, eventually};

const ORDER: &str = r#"query($id: ID!) {
  order(id: $id) { id status total { amount currencyCode } lines { sku quantity unitPrice { amount } } placedAt }
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_read_their_own_orders_and_only_those() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let (a_id, a_token, a_orders) = customer_in(&sim, "default").await;
    let (_, b_token, b_orders) = customer_in(&sim, "vip").await;

    let own = moat
        .query_with_token(&a_token, ORDER, json!({ "id": a_orders[0] }))
        .await;
    assert!(own.get("errors").is_none(), "{own}");
    let order = &own["data"]["order"];
    let oms = sim
        .get_json(&format!("/oms/v1/orders/{}", a_orders[0]))
        .await;
    assert_eq!(oms["customerId"], json!(a_id));
    assert_eq!(order["id"], oms["id"]);
    assert_eq!(order["status"], oms["status"]);
    assert_eq!(
        order["total"]["amount"],
        json!(decimal(oms["totalAmount"].as_i64().unwrap()))
    );
    assert_eq!(order["total"]["currencyCode"], oms["currency"]);
    assert_eq!(order["lines"][0]["sku"], oms["lines"][0]["sku"]);
    assert!(order["placedAt"].is_string());
    let calls = sim.requests("oms.orders").await;
    moat.query_with_token(&a_token, ORDER, json!({ "id": a_orders[0] }))
        .await;
    assert_eq!(
        sim.requests("oms.orders").await,
        calls,
        "cached per customer"
    );

    // B's order, asked for by A: null and FORBIDDEN, the rest intact.
    let q = r#"query($id: ID!) { viewer { id } order(id: $id) { id total { amount } } }"#;
    let theirs = moat
        .query_with_token(&a_token, q, json!({ "id": b_orders[0] }))
        .await;
    assert_eq!(theirs["data"]["order"], Value::Null, "{theirs}");
    assert_eq!(theirs["data"]["viewer"]["id"], json!(a_id));
    assert_eq!(error_codes(&theirs), ["FORBIDDEN"]);
    assert_eq!(theirs["errors"][0]["path"], json!(["order"]));
    let again = moat
        .query_with_token(&a_token, q, json!({ "id": b_orders[0] }))
        .await;
    assert_eq!(error_codes(&again), ["FORBIDDEN"], "from the cache too");
    let mine = moat
        .query_with_token(&b_token, q, json!({ "id": b_orders[0] }))
        .await;
    assert!(
        mine["data"]["order"]["id"].is_string(),
        "B reads it: {mine}"
    );

    // Anonymous: UNAUTHENTICATED on the field, the request still runs.
    let (status, _, anon) = moat
        .query_as(
            None,
            r#"{ order(id: "ord-00001") { id } categories { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(anon["data"]["order"], Value::Null);
    assert!(anon["data"]["categories"].is_array());
    assert_eq!(error_codes(&anon), ["UNAUTHENTICATED"]);

    // No such order: null, no error.
    let none = moat
        .query_with_token(&a_token, ORDER, json!({ "id": "ord-99999" }))
        .await;
    assert_eq!(none["data"]["order"], Value::Null);
    assert!(none.get("errors").is_none(), "{none}");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_malformed_token_is_a_401_request_error() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let q = "{ categories { id } }";
    for header in [
        "Bearer ct_000000000000000000000000",
        "Bearer ",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "ct_000000000000000000000000",
    ] {
        let (status, headers, body) = moat.query_as(Some(header), q, json!({})).await;
        assert_eq!(status, 401, "{header}: {body}");
        let challenge = headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{header}: {challenge}");
        assert!(body.get("data").is_none(), "{body}");
        assert_eq!(error_codes(&body), ["UNAUTHENTICATED"]);
        assert!(
            !body.to_string().contains("ct_000000000000000000000000"),
            "the token is not echoed: {body}"
        );
    }
    // An opaque token past 512 bytes is refused before the CRM is asked.
    let calls = sim.requests("crm.customers").await;
    let long = format!("Bearer ct_{}", "0".repeat(600));
    let (status, _, body) = moat.query_as(Some(&long), q, json!({})).await;
    assert_eq!(
        (status, error_codes(&body)),
        (401, vec!["UNAUTHENTICATED".into()])
    );
    assert_eq!(sim.requests("crm.customers").await, calls);
    // An unknown token is remembered briefly, not asked about every time.
    moat.query_as(Some("Bearer ct_000000000000000000000000"), q, json!({}))
        .await;
    assert_eq!(sim.requests("crm.customers").await, calls);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_crm_down_customer_fields_fail_and_never_show_anonymous_prices() {
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    // The CRM's breaker opens while it is down; a short cooldown lets the
    // test see it come back.
    c.upstream.breaker.cooldown = std::time::Duration::from_millis(200);
    let moat = Moat::start(c).await;
    let (_, token, orders) = customer_in(&sim, "vip").await;
    let sku = "SKU-000001";
    sim.fault("crm", json!({ "down": true })).await;

    let q = r#"query($sku: String!, $order: ID!) {
      viewer { id }
      order(id: $order) { id }
      product(sku: $sku) { name price { price { amount } } availability { status } }
    }"#;
    let (status, _, r) = moat
        .query_as(
            Some(&format!("Bearer {token}")),
            q,
            json!({ "sku": sku, "order": orders[0] }),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["data"]["viewer"], Value::Null, "{r}");
    assert_eq!(r["data"]["order"], Value::Null);
    assert_eq!(
        r["data"]["product"]["price"],
        Value::Null,
        "no anonymous price: {r}"
    );
    assert!(r["data"]["product"]["name"].is_string());
    assert!(r["data"]["product"]["availability"]["status"].is_string());
    let mut paths: Vec<String> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].to_string())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [r#"["order"]"#, r#"["product","price"]"#, r#"["viewer"]"#]
    );
    assert!(
        error_codes(&r).iter().all(|c| c == "UPSTREAM_UNAVAILABLE"),
        "{r}"
    );

    // Checkout cannot know the segment either: it fails closed.
    let warm = shown(&moat, None, sku).await;
    let v = verify(&moat, Some(&token), cart(&[(&warm, 1)])).await;
    assert_eq!(error_codes(&v), ["UPSTREAM_UNAVAILABLE"], "{v}");

    // Once the CRM answers (and its breaker has probed), the customer is back.
    sim.fault("crm", json!({ "down": false })).await;
    let back = eventually(std::time::Duration::from_secs(10), || async {
        let r = moat
            .query_with_token(&token, "{ viewer { segment } }", json!({}))
            .await;
        r["data"]["viewer"]["segment"] == "vip"
    })
    .await;
    assert!(back, "the customer is back once the CRM answers");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_tokens_cannot_spend_the_crm_limit() {
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    c.customers.unknown_token_rps = 5;
    c.customers.unknown_token_burst = 10;
    let moat = Moat::start(c).await;
    let (_, known, _) = customer_in(&sim, "wholesale").await;
    let (_, fresh, _) = customer_in(&sim, "vip").await;
    let viewer = "{ viewer { id segment } }";
    let r = moat.query_with_token(&known, viewer, json!({})).await;
    assert_eq!(r["data"]["viewer"]["segment"], "wholesale", "{r}");
    let calls_before = sim.requests("crm.customers").await;

    let started = std::time::Instant::now();
    let mut refused = 0;
    for round in 0..10 {
        let flood = (0..20).map(|i| {
            let token = format!("Bearer ct_made_up_{round}_{i}_{:08x}", fastrand::u32(..));
            let moat = &moat;
            async move { moat.query_as(Some(&token), viewer, json!({})).await }
        });
        for (status, _, body) in futures_util::future::join_all(flood).await {
            match status {
                401 => assert_eq!(error_codes(&body), ["UNAUTHENTICATED"]),
                200 => {
                    assert_eq!(error_codes(&body), ["RATE_LIMITED"], "{body}");
                    refused += 1;
                }
                other => panic!("{other}: {body}"),
            }
        }
        // A customer Moat knows is never held up by the flood.
        let r = moat.query_with_token(&known, viewer, json!({})).await;
        assert_eq!(r["data"]["viewer"]["segment"], "wholesale", "{r}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let crm_calls = sim.requests("crm.customers").await - calls_before;
    assert!(refused > 0, "the flood met the limit");
    assert!(
        (crm_calls as f64) <= 10.0 + 5.0 * elapsed + 1.0,
        "{crm_calls} CRM calls in {elapsed:.2} s"
    );
    assert!(moat.metric("moat_customer_sign_ins_refused_total").await >= refused as f64);
    // A real new customer gets through once the flood is over.
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            let r = moat.query_with_token(&fresh, viewer, json!({})).await;
            r["data"]["viewer"]["segment"] == "vip"
        })
        .await
    );
    moat.stop().await;
}

/// `viewer` with a customer token from `http` (bound to its own loopback
/// address), naming `forwarded` in `X-Forwarded-For`: status and body.
async fn viewer_from(
    http: &reqwest::Client,
    moat: &Moat,
    token: &str,
    forwarded: Option<&str>,
) -> (u16, Value) {
    let mut request = http
        .post(format!("{}/graphql", moat.url))
        .bearer_auth(token)
        .json(&json!({ "query": "{ viewer { id segment } }" }));
    if let Some(addr) = forwarded {
        request = request.header("x-forwarded-for", addr);
    }
    let r = request.send().await.expect("graphql request");
    (r.status().as_u16(), r.json().await.expect("graphql json"))
}

/// A client whose connections come from `addr` (any 127/8 address is
/// loopback).
fn client_at(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr.parse::<std::net::IpAddr>().expect("address"))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_flood_from_one_address_leaves_shoppers_at_others_signing_in() {
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    c.customers.unknown_token_rps = 1;
    c.customers.unknown_token_burst = 5;
    // 127.0.0.1 is the load balancer: it names the client in
    // X-Forwarded-For. 127.0.0.2 and .3 are clients reaching Moat directly.
    c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let moat = Moat::start(c).await;
    let (proxy, direct, other) = (
        client_at("127.0.0.1"),
        client_at("127.0.0.2"),
        client_at("127.0.0.3"),
    );
    let tokens: Vec<String> = sim
        .customers()
        .await
        .iter()
        .filter_map(|c| c["token"].as_str().map(str::to_string))
        .collect();
    // Each signs in once, for the first time: none is cached yet.
    let (shoppers, fresh) = (&tokens[..6], &tokens[10]);
    let segment_of = |token: &str| {
        let token = token.to_string();
        let sim = &sim;
        async move {
            sim.customers()
                .await
                .into_iter()
                .find(|c| c["token"] == token.as_str())
                .map(|c| c["segment"].clone())
                .expect("a seeded customer")
        }
    };

    // The flood: made-up tokens, all from 203.0.113.66 by the proxy's word,
    // running while shoppers at other addresses sign in.
    let flooding = std::sync::atomic::AtomicBool::new(true);
    let flood = async {
        let (mut refused, mut sent) = (0, 0);
        while flooding.load(std::sync::atomic::Ordering::Relaxed) || refused == 0 {
            let burst = (0..10).map(|i| {
                let token = format!("ct_flood_{sent}_{i}_{:08x}", fastrand::u32(..));
                let proxy = &proxy;
                let moat = &moat;
                async move { viewer_from(proxy, moat, &token, Some("203.0.113.66")).await }
            });
            for (status, body) in futures_util::future::join_all(burst).await {
                sent += 1;
                match status {
                    401 => assert_eq!(error_codes(&body), ["UNAUTHENTICATED"], "{body}"),
                    200 => {
                        assert_eq!(error_codes(&body), ["RATE_LIMITED"], "{body}");
                        refused += 1;
                    }
                    other => panic!("{other}: {body}"),
                }
            }
        }
        (refused, sent)
    };
    let shop = async {
        // Wait until the flood's address is being refused, then sign in
        // from elsewhere, each shopper once, never retried.
        assert!(
            eventually(std::time::Duration::from_secs(10), || async {
                let (status, body) = viewer_from(
                    &proxy,
                    &moat,
                    &format!("ct_probe_{:08x}", fastrand::u32(..)),
                    Some("203.0.113.66"),
                )
                .await;
                status == 200 && error_codes(&body) == ["RATE_LIMITED"]
            })
            .await,
            "the flooding address meets its limit"
        );
        for (i, token) in shoppers.iter().enumerate() {
            let forwarded = format!("198.51.100.{}", i + 1);
            let (status, body) = viewer_from(&proxy, &moat, token, Some(&forwarded)).await;
            assert_eq!(status, 200, "{body}");
            assert!(
                body.get("errors").is_none(),
                "shopper at {forwarded}: {body}"
            );
            assert_eq!(body["data"]["viewer"]["segment"], segment_of(token).await);
        }
        flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    };
    let ((refused, sent), ()) = tokio::join!(flood, shop);
    assert!(refused > 0 && refused < sent, "{refused} of {sent} refused");

    // A client that is not the trusted proxy cannot pick its address by
    // sending the header: each guess is counted against 127.0.0.2.
    let mut refused = 0;
    for i in 0..20 {
        let (status, body) = viewer_from(
            &direct,
            &moat,
            &format!("ct_direct_{i}_{:08x}", fastrand::u32(..)),
            Some(&format!("192.0.2.{i}")),
        )
        .await;
        match status {
            401 => {}
            200 if error_codes(&body) == ["RATE_LIMITED"] => refused += 1,
            other => panic!("{other}: {body}"),
        }
    }
    assert!(
        refused >= 15,
        "only the burst of 5 got through: {refused} refused"
    );
    // Another direct client is its own address, and is served.
    let (status, body) = viewer_from(&other, &moat, fresh, Some("192.0.2.1")).await;
    assert_eq!((status, body.get("errors")), (200, None), "{body}");
    assert_eq!(body["data"]["viewer"]["segment"], segment_of(fresh).await);
    moat.stop().await;
}
