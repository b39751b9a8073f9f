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
/// GraphQL). It is keyed by the request as sent: `Moat::query`'s body.
fn stored_text(moat: &Moat, sku: &str, query: &str) -> Option<String> {
    let responses = &moat.state().responses;
    let sent = serde_json::to_vec(&json!({ "query": query, "variables": { "sku": sku } }));
    let key = responses.key(
        query,
        moat::cache::Sent::Post(sent.unwrap().into()),
        moat::cache::Audience::Anyone,
    )?;
    Some(String::from_utf8(responses.get(&key)?.body.to_vec()).unwrap())
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
async fn only_clock_free_answers_without_errors_are_stored_and_for_their_audience() {
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
    // A customer's answer is never given to anonymous shoppers (it is
    // stored for their segment: `tests/segment_answers.rs`).
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

/// The door: a repeated anonymous POST is answered from its stored bytes
/// before it is routed or decoded, with everything a client can see still
/// as the full path has it: the media type asked for, the refusals, the
/// counts, and a body that arrives in pieces. Its own process, so the
/// counts are this test's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_answer_at_the_door_is_what_the_full_path_would_send() {
    let sim = Sim::start().await;
    let file = support::process::config_file("responses-door", "");
    let moat = support::process::Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    let http = reqwest::Client::new();
    let body = json!({ "query": PAGE, "variables": { "sku": "SKU-000026" } }).to_string();
    let post = |accept: Option<&'static str>, auth: Option<&'static str>| {
        let mut request = http
            .post(format!("{}/graphql", moat.public))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        async move {
            let r = request.send().await.unwrap();
            let kind = r.headers()["content-type"].to_str().unwrap().to_string();
            (r.status().as_u16(), kind, r.text().await.unwrap())
        }
    };
    let counts = || async {
        let text = http
            .get(format!("{}/metrics", moat.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let count = |result: &str| -> u64 {
            text.lines()
                .filter(|l| {
                    l.starts_with("moat_cache_requests_total")
                        && l.contains("tier=\"response\"")
                        && l.contains(&format!("result=\"{result}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum()
        };
        (count("hit"), count("miss"))
    };

    // Filled (a miss), then stored (a miss: its answer is built), then a hit.
    let (_, _, filled) = post(None, None).await;
    let (_, _, built) = post(None, None).await;
    let (status, kind, answer) = post(None, None).await;
    assert_eq!(
        (status, kind.as_str()),
        (200, "application/json; charset=utf-8")
    );
    assert_eq!(answer, built, "the stored bytes are the built answer");
    let first: Value = serde_json::from_str(&filled).unwrap();
    assert_eq!(
        first["data"],
        serde_json::from_str::<Value>(&answer).unwrap()["data"]
    );
    assert_eq!(counts().await, (1, 2), "each request looked up once");

    // The media type asked for, and a refusal of what cannot be served.
    let (status, kind, again) = post(Some("application/graphql-response+json"), None).await;
    assert_eq!(
        (status, kind.as_str(), again == answer),
        (
            200,
            "application/graphql-response+json; charset=utf-8",
            true
        )
    );
    let (status, _, refusal) = post(Some("text/plain"), None).await;
    assert_eq!(status, 406, "{refusal}");
    // A token is checked as before: a stored answer is no way around it.
    let (status, _, refusal) = post(None, Some("Bearer not-a-customer")).await;
    assert_eq!(status, 401, "{refusal}");
    assert_eq!(counts().await, (2, 2));

    // A body that comes in two pieces (two chunks, so two frames however
    // the bytes arrive) is read whole and served the same.
    let address = moat.public.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let (one, two) = body.split_at(body.len() / 2);
    let request = format!(
        "POST /graphql HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{one}\r\n{:x}\r\n{two}\r\n0\r\n\r\n",
        one.len(),
        two.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    socket.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.ends_with(&answer), "{raw}");
    assert_eq!(counts().await, (3, 2));
    drop(moat);
}
