//! The response cache: an anonymous query answered again from its stored
//! bytes, and every way data changes (a purge, a change event, a checkout
//! repair, a reconciliation repair, another replica's invalidation) shows
//! in the very next answer.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::events::{price_event, send};
use support::redis::RedisServer;
use support::shop::{cart, shown, verify};
use support::{Moat, Sim, cents, config, decimal, eventually};

/// A product page without clock-dependent fields: the kind of query the
/// response cache stores.
const PAGE: &str = "query Page($sku: String!) { product(sku: $sku) { sku name price { price { amount } } availability { status } } }";

async fn page(moat: &Moat, sku: &str) -> Value {
    let r = moat.query(PAGE, json!({ "sku": sku })).await;
    assert!(r.get("errors").is_none(), "{r}");
    r
}

fn amount(r: &Value) -> &str {
    r["data"]["product"]["price"]["price"]["amount"]
        .as_str()
        .unwrap_or_default()
}

/// The stored answer to `query` for `sku`, as a client gets its bytes, if
/// it is still good (what the next request would get without running
/// GraphQL).
fn stored_text(moat: &Moat, sku: &str, query: &str) -> Option<String> {
    let responses = &moat.state().responses;
    let variables = async_graphql::Variables::from_json(json!({ "sku": sku }));
    let key = responses.key(query, None, &serde_json::to_string(&variables).unwrap())?;
    Some(String::from_utf8(responses.get(&key)?.to_vec()).unwrap())
}

fn stored(moat: &Moat, sku: &str, query: &str) -> Option<Value> {
    Some(serde_json::from_str(&stored_text(moat, sku, query)?).unwrap())
}

/// Asks until the answer is stored (the first answer after a change is
/// built by GraphQL, and one whose entries were still landing may be
/// refused at the next read), and returns it.
async fn served_stored(moat: &Moat, sku: &str) -> Value {
    let answer = std::sync::Mutex::new(Value::Null);
    let held = eventually(Duration::from_secs(2), || async {
        let now = page(moat, sku).await;
        let held = stored(moat, sku, PAGE).as_ref() == Some(&now);
        *answer.lock().unwrap() = now;
        held
    })
    .await;
    let answer = answer.into_inner().unwrap();
    assert!(held, "the answer is stored and still good: {answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_answer_shows_every_change_at_once() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let replica = || {
        let mut c = config(&sim.url);
        c.redis.url = Some(redis.url());
        c
    };
    let a = Moat::start(replica()).await;
    let b = Moat::start(replica()).await;
    let sku = "SKU-000021";
    page(&a, sku).await; // a miss: filled, not stored
    let first = served_stored(&a, sku).await;
    served_stored(&b, sku).await;
    // Field order as asked, not as fetches finished.
    let text = stored_text(&a, sku, PAGE).expect("stored");
    let at = |field: &str| text.find(&format!("\"{field}\":")).expect(field);
    assert!(
        at("sku") < at("name") && at("name") < at("price") && at("price") < at("availability"),
        "{text}"
    );
    let mut cents_now = cents(amount(&first));

    // A purge: the source changed quietly, an operator purges.
    cents_now += 100;
    sim.set_price(
        sku,
        json!({ "amount": decimal(cents_now), "segment": "default" }),
    )
    .await;
    assert_eq!(
        cents(amount(&page(&a, sku).await)),
        cents_now - 100,
        "cached"
    );
    let (status, body) = a
        .admin_post(
            "/admin/cache/purge",
            json!({ "entity": "price", "ids": [sku] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(amount(&page(&a, sku).await), decimal(cents_now), "purge");
    served_stored(&a, sku).await;

    // A change event, with its price.
    cents_now += 100;
    let version = sim
        .get_json(&format!(
            "/erp/v1/prices?skus={sku}&segment=default&currency=EUR"
        ))
        .await["items"][0]["version"]
        .as_u64()
        .unwrap();
    sim.set_price(
        sku,
        json!({ "amount": decimal(cents_now), "segment": "default" }),
    )
    .await;
    let (status, r) = send(
        &a,
        "erp",
        &price_event("resp-1", sku, cents_now, version + 1),
    )
    .await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("applied")),
        "{r}"
    );
    assert_eq!(amount(&page(&a, sku).await), decimal(cents_now), "event");
    served_stored(&a, sku).await;
    // The other replica dropped its copy when it heard of it.
    assert!(
        eventually(Duration::from_secs(2), || async {
            amount(&page(&b, sku).await) == decimal(cents_now)
        })
        .await,
        "the other replica's stored answer follows the event"
    );

    // A checkout repair: the ERP's quote says otherwise.
    let shown_before = shown(&a, None, sku).await;
    cents_now += 100;
    sim.set_price(
        sku,
        json!({ "amount": decimal(cents_now), "segment": "default" }),
    )
    .await;
    let r = verify(&a, None, cart(&[(&shown_before, 1)])).await;
    assert_eq!(r["data"]["verifyCheckout"]["ok"], false, "{r}");
    // The repair runs beside the answer (it must not hold up checkout);
    // once it lands, the stored answer shows it.
    assert!(
        eventually(Duration::from_secs(2), || async {
            amount(&page(&a, sku).await) == decimal(cents_now)
        })
        .await,
        "repair"
    );
    served_stored(&a, sku).await;

    // A reconciliation pass finds drift and repairs it.
    cents_now += 100;
    sim.set_price(
        sku,
        json!({ "amount": decimal(cents_now), "segment": "default" }),
    )
    .await;
    let (status, body) = a.admin_post("/admin/reconcile/prices", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        amount(&page(&a, sku).await),
        decimal(cents_now),
        "reconciliation: {body}"
    );
    served_stored(&a, sku).await;

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_anonymous_clock_free_answers_without_errors_are_stored() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let sku = "SKU-000022";
    page(&moat, sku).await;
    page(&moat, sku).await;

    assert!(stored(&moat, sku, PAGE).is_some());

    // Freshness changes with the clock: answered by GraphQL every time.
    let with_age =
        "query($sku: String!) { product(sku: $sku) { price { freshness { ageSeconds } } } }";
    for _ in 0..3 {
        let r = moat.query(with_age, json!({ "sku": sku })).await;
        assert!(
            r["data"]["product"]["price"]["freshness"]["ageSeconds"].is_i64(),
            "{r}"
        );
    }
    assert!(stored(&moat, sku, with_age).is_none());
    // A customer's answer is theirs alone.
    let token = sim.customers().await[0]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let other = "SKU-000025";
    for _ in 0..3 {
        moat.query_with_token(&token, PAGE, json!({ "sku": other }))
            .await;
    }
    assert!(stored(&moat, other, PAGE).is_none());
    // An answer with an error is not kept.
    sim.fault("erp", json!({ "down": true })).await;
    let missing = "SKU-000023";
    for _ in 0..3 {
        let r = moat.query(PAGE, json!({ "sku": missing })).await;
        assert!(r.get("errors").is_some(), "{r}");
    }
    assert!(stored(&moat, missing, PAGE).is_none());
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_response_cache_off_every_answer_runs_graphql() {
    let sim = Sim::start().await;
    let mut c = config(&sim.url);
    c.cache.responses.enabled = false;
    let moat = Moat::start(c).await;
    for _ in 0..3 {
        page(&moat, "SKU-000024").await;
    }
    assert!(stored(&moat, "SKU-000024", PAGE).is_none());
    assert!(!moat.state().responses.enabled());
    moat.stop().await;
}
