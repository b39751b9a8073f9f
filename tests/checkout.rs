//! `verifyCheckout` end to end: a gateway in front of the simulator's ERP
//! quote over real TCP, with price tokens, stale caches, failing upstreams
//! and bad input.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::redis::RedisServer;
use support::shop::{Shown, cart, eur, kinds, mismatches, shown, skus_in_stock, verify};
use support::{Moat, Sim, cents, config, customer_in, decimal, error_codes, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_of_prices_moat_served_verifies_for_anonymous_and_wholesale_shoppers() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let skus = skus_in_stock(&moat, 3).await;
    let (_, wholesale, _) = customer_in(&sim, "wholesale").await;

    let viewer = moat
        .query_with_token(
            &wholesale,
            "{ viewer { id email name segment } }",
            json!({}),
        )
        .await;
    assert_eq!(viewer["data"]["viewer"]["segment"], "wholesale", "{viewer}");
    let anonymous = moat.query("{ viewer { id } }", json!({})).await;
    assert_eq!(anonymous["data"]["viewer"], Value::Null);
    assert!(anonymous.get("errors").is_none(), "{anonymous}");

    for token in [None, Some(wholesale.as_str())] {
        let mut prices = Vec::new();
        for sku in &skus {
            prices.push(shown(&moat, token, sku).await);
        }
        let lines: Vec<(&Shown, i64)> = prices.iter().zip([1, 2, 3]).collect();
        let expected_total: i64 = lines.iter().map(|(s, q)| cents(&s.amount) * q).sum();
        let before = sim.requests("erp.quote").await;
        let r = verify(&moat, token, cart(&lines)).await;
        assert!(r.get("errors").is_none(), "{r}");
        let v = &r["data"]["verifyCheckout"];
        assert_eq!(v["ok"], true, "{token:?}: {r}");
        assert_eq!(v["mismatches"], json!([]));
        assert_eq!(
            v["total"],
            json!({ "amount": decimal(expected_total), "currencyCode": "EUR" })
        );
        assert_eq!(v["lines"][1]["quantity"], 2);
        assert_eq!(
            v["lines"][1]["unitPrice"]["amount"],
            json!(prices[1].amount)
        );
        assert_eq!(
            v["lines"][1]["lineTotal"]["amount"],
            json!(decimal(cents(&prices[1].amount) * 2))
        );
        assert!(v["checkedAt"].is_string());
        assert_eq!(
            sim.requests("erp.quote").await,
            before + 1,
            "one quote, never cached"
        );
    }

    // The two shoppers really were shown different prices.
    let default_price = shown(&moat, None, &skus[0]).await.amount;
    let wholesale_price = shown(&moat, Some(&wholesale), &skus[0]).await.amount;
    assert!(cents(&wholesale_price) < cents(&default_price));
    assert!(
        moat.metric(r#"moat_checkout_verifications_total{outcome="ok"}"#)
            .await
            >= 2.0
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_changed_without_an_event_is_reported_and_repaired_on_every_replica() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let with_redis = || {
        let mut c = config(&sim.url);
        c.redis.url = Some(redis.url());
        c.redis.timeout = Duration::from_millis(200);
        c
    };
    let a = Moat::start(with_redis()).await;
    let b = Moat::start(with_redis()).await;
    let sku = skus_in_stock(&a, 1).await.remove(0);
    let old = shown(&a, None, &sku).await;
    assert_eq!(
        shown(&b, None, &sku).await.amount,
        old.amount,
        "B caches it too"
    );

    let new_amount = decimal(cents(&old.amount) + 250);
    sim.set_price(&sku, json!({ "amount": new_amount, "currency": "EUR" }))
        .await;
    assert_eq!(
        shown(&a, None, &sku).await.amount,
        old.amount,
        "no event: still cached"
    );

    let r = verify(&a, None, cart(&[(&old, 2)])).await;
    assert!(r.get("errors").is_none(), "{r}");
    assert_eq!(r["data"]["verifyCheckout"]["ok"], false);
    assert_eq!(kinds(&r), ["PRICE", "TOTAL"], "{r}");
    let m = mismatches(&r);
    assert_eq!(m[0]["sku"], json!(sku));
    assert_eq!(m[0]["displayed"], json!(old.amount));
    assert_eq!(m[0]["authoritative"], json!(new_amount));
    assert!(
        m[0]["message"].as_str().unwrap().contains(&new_amount),
        "{r}"
    );
    assert_eq!(m[1]["sku"], Value::Null);
    assert_eq!(m[1]["displayed"], json!(decimal(cents(&old.amount) * 2)));
    assert_eq!(
        m[1]["authoritative"],
        json!(decimal(cents(&new_amount) * 2))
    );
    assert_eq!(
        r["data"]["verifyCheckout"]["total"]["amount"],
        json!(decimal(cents(&new_amount) * 2))
    );

    // The quote repaired the cache: here, and on the other replica.
    for (name, moat) in [("A", &a), ("B", &b)] {
        let repaired = eventually(Duration::from_secs(2), || async {
            shown(moat, None, &sku).await.amount == new_amount
        })
        .await;
        assert!(repaired, "{name} shows the authoritative price");
    }
    assert!(
        a.metric(r#"moat_checkout_mismatches_total{kind="PRICE"}"#)
            .await
            >= 1.0,
        "mismatches counted"
    );
    assert!(
        a.metric(r#"moat_checkout_verifications_total{outcome="mismatch"}"#)
            .await
            >= 1.0
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_unknown_skus_and_price_tokens_are_checked() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let skus = skus_in_stock(&moat, 2).await;
    let (a, b) = (
        shown(&moat, None, &skus[0]).await,
        shown(&moat, None, &skus[1]).await,
    );

    // More than the ERP has in stock.
    sim.set_stock(&a.sku, 2).await;
    let r = verify(&moat, None, cart(&[(&a, 3)])).await;
    assert_eq!(kinds(&r), ["AVAILABILITY"], "{r}");
    let m = &mismatches(&r)[0];
    assert_eq!(
        (m["displayed"].as_str(), m["authoritative"].as_str()),
        (Some("3"), Some("2"))
    );
    assert_eq!(r["data"]["verifyCheckout"]["lines"][0]["available"], 2);

    // A sku the ERP does not sell.
    let ghost = Shown {
        sku: "SKU-999999".into(),
        ..b.clone()
    };
    let r = verify(&moat, None, cart(&[(&b, 1), (&ghost, 1)])).await;
    assert!(kinds(&r).contains(&"UNKNOWN_SKU".to_string()), "{r}");
    assert!(
        kinds(&r).contains(&"INVALID_TOKEN".to_string()),
        "b's token on another sku: {r}"
    );
    assert_eq!(
        r["data"]["verifyCheckout"]["lines"][1]["unitPrice"],
        Value::Null
    );

    // Forged and altered tokens.
    let parts: Vec<&str> = b.token.split('.').collect();
    let mut payload = parts[2].to_string().into_bytes();
    payload[3] = if payload[3] == b'A' { b'B' } else { b'A' };
    let altered = format!(
        "{}.{}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(payload).unwrap(),
        parts[3]
    );
    for bad in [
        altered,
        "v1.00000000.AAAA.AAAA".to_string(),
        "made-up".to_string(),
    ] {
        let forged = Shown {
            token: bad.clone(),
            ..b.clone()
        };
        let r = verify(&moat, None, cart(&[(&forged, 1)])).await;
        assert_eq!(kinds(&r), ["INVALID_TOKEN"], "{bad}: {r}");
        assert_eq!(r["data"]["verifyCheckout"]["ok"], false);
    }

    // A genuine token with a cheaper price typed in: the token does not
    // match the line, and the price is wrong too.
    let cheaper = Shown {
        amount: decimal(cents(&b.amount) - 100),
        ..b.clone()
    };
    let r = verify(&moat, None, cart(&[(&cheaper, 1)])).await;
    assert_eq!(kinds(&r), ["INVALID_TOKEN", "PRICE", "TOTAL"], "{r}");

    // A wholesale token (and price) used by an anonymous shopper.
    let (_, wholesale, _) = customer_in(&sim, "wholesale").await;
    let theirs = shown(&moat, Some(&wholesale), &b.sku).await;
    let r = verify(&moat, None, cart(&[(&theirs, 1)])).await;
    assert!(kinds(&r).contains(&"INVALID_TOKEN".to_string()), "{r}");
    // The same cart as the wholesale customer is fine.
    let r = verify(&moat, Some(&wholesale), cart(&[(&theirs, 1)])).await;
    assert_eq!(r["data"]["verifyCheckout"]["ok"], true, "{r}");

    // Without a token a line is checked on price alone.
    let untokened = cart(&[(&b, 1)]);
    let mut untokened = untokened;
    untokened["lines"][0]["priceToken"] = Value::Null;
    let r = verify(&moat, None, untokened).await;
    assert_eq!(r["data"]["verifyCheckout"]["ok"], true, "{r}");

    // Another currency for one line is a CURRENCY mismatch.
    let mut mixed = cart(&[(&b, 1)]);
    mixed["lines"][0]["displayedUnitPrice"]["currencyCode"] = json!("USD");
    let r = verify(&moat, None, mixed).await;
    assert!(kinds(&r).contains(&"CURRENCY".to_string()), "{r}");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_fails_closed_when_the_erp_cannot_answer() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let sku = skus_in_stock(&moat, 1).await.remove(0);
    let warm = shown(&moat, None, &sku).await;
    let before = moat
        .metric(r#"moat_checkout_verifications_total{outcome="unavailable"}"#)
        .await;

    for fault in [
        json!({ "down": true }),
        json!({ "malformed_rate": 1.0 }),
        json!({ "error_rate": 1.0 }),
    ] {
        sim.fault(
            "erp",
            json!({ "down": false, "malformed_rate": 0.0, "error_rate": 0.0 }),
        )
        .await;
        sim.fault("erp", fault.clone()).await;
        // The cache still holds the price and serves it to browsing.
        assert_eq!(shown(&moat, None, &sku).await.amount, warm.amount);
        let r = verify(&moat, None, cart(&[(&warm, 1)])).await;
        assert_eq!(r["data"], Value::Null, "{fault}: {r}");
        assert_eq!(error_codes(&r), ["UPSTREAM_UNAVAILABLE"], "{fault}: {r}");
        assert_eq!(r["errors"][0]["path"], json!(["verifyCheckout"]));
        assert!(!r.to_string().contains(r#""ok":true"#));
    }
    assert!(
        moat.metric(r#"moat_checkout_verifications_total{outcome="unavailable"}"#)
            .await
            >= before + 3.0
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_before_the_erp_is_asked() {
    let sim = Sim::start().await;
    // The default body limit leaves room for a 10,000-line cart, so the
    // line limit is what answers it.
    let moat = Moat::start(config(&sim.url)).await;
    let line = |quantity: i64, amount: &str| json!({ "sku": "SKU-000001", "quantity": quantity, "displayedUnitPrice": eur(amount) });
    let input = |lines: Vec<Value>, currency: &str, total: &str| json!({ "currencyCode": currency, "lines": lines, "displayedTotal": eur(total) });
    let cases = [
        (
            input(vec![line(0, "1.00")], "EUR", "1.00"),
            "lines[0].quantity: ",
        ),
        (
            input(vec![line(1, "1.00"); 10_000], "EUR", "1.00"),
            "lines: ",
        ),
        (
            input(vec![line(1, "1.234")], "EUR", "1.00"),
            "lines[0].displayedUnitPrice.amount: ",
        ),
        (
            input(vec![line(1, "1.00")], "EUR", "1.234"),
            "displayedTotal.amount: ",
        ),
        (
            input(vec![line(1, "1.00")], "XXX", "1.00"),
            "currencyCode: ",
        ),
    ];
    for (case, field) in cases {
        let r = verify(&moat, None, case).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{field}: {r}");
        let message = r["errors"][0]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{field}: {message}");
    }
    assert_eq!(
        sim.requests("erp.quote").await,
        0,
        "nothing reached the ERP"
    );
    assert!(
        moat.metric(r#"moat_checkout_verifications_total{outcome="bad_input"}"#)
            .await
            >= 5.0
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_capacity_cannot_be_spent_by_one_request_or_one_client() {
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    c.server.client_limit.enabled = true;
    c.server.client_limit.checkout_rps = 1;
    c.server.client_limit.checkout_burst = 2;
    let moat = Moat::start(c).await;
    let item = shown(&moat, None, "SKU-000001").await;
    let input = cart(&[(&item, 1)]);

    // Two verifications in one request: refused before the ERP is asked.
    let aliases: String = (0..2)
        .map(|i| format!("v{i}: verifyCheckout(input: $input) {{ ok }} "))
        .collect();
    let r = moat
        .query(
            &format!("mutation($input: VerifyCheckoutInput!) {{ {aliases} }}"),
            json!({ "input": input }),
        )
        .await;
    assert_eq!(error_codes(&r), ["QUERY_TOO_COMPLEX"], "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("verifyCheckout")
    );
    assert_eq!(sim.requests("erp.quote").await, 0);

    // One at a time, one client: its burst, then 429 with Retry-After.
    let ask = |key: &'static str| {
        moat.http
            .post(format!("{}/graphql", moat.url))
            .header("x-api-key", key)
            .json(&json!({ "query": support::shop::VERIFY, "variables": { "input": input } }))
            .send()
    };
    for _ in 0..2 {
        let r = ask("checkout-a").await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let refused = ask("checkout-a").await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(error_codes(&body), ["RATE_LIMITED"], "{body}");
    // Another client still verifies.
    let other: Value = ask("checkout-b").await.unwrap().json().await.unwrap();
    assert_eq!(other["data"]["verifyCheckout"]["ok"], true, "{other}");
    assert_eq!(sim.requests("erp.quote").await, 3);
    moat.stop().await;
}
