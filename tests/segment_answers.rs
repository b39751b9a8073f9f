//! Stored answers for signed-in shoppers: an answer that depends only on
//! the shopper's price segment is stored for that segment and served, at
//! the door, to every shopper of it; never to a shopper of another segment
//! or to anonymous ones, and never when it read who the shopper is.
//!
//! Alone in its binary: it counts the response cache's hits from the
//! process-wide metrics, and reads its threads' priorities.

mod support;

use std::time::Duration;

use moat::cache::{Asked, Audience, Sent};
use serde_json::{Value, json};
use support::{Moat, Sim, config, customer_in, eventually};

const PAGE: &str = "query Page($sku: String!) { product(sku: $sku) { sku name price { price { amount } } availability { status } } }";
const PERSONAL: &str = "query Me($sku: String!) { viewer { id segment } product(sku: $sku) { price { price { amount } } } }";

fn body(query: &str, sku: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "query": query, "variables": { "sku": sku } })).unwrap()
}

/// The stored answer for `segment` to `query`, if any.
fn stored(moat: &Moat, query: &str, sku: &str, segment: &str) -> Option<String> {
    let key = Asked::new(
        Sent::Post(body(query, sku).into()),
        Audience::Segment(segment.into()),
    );
    let answer = moat.state().responses.get(&key)?;
    Some(String::from_utf8(answer.body.to_vec()).unwrap())
}

async fn post(moat: &Moat, token: Option<&str>, query: &str, sku: &str) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", moat.url))
        .header("content-type", "application/json")
        .body(body(query, sku));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("graphql request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Stored answers served, from the process's metrics.
async fn served_stored(moat: &Moat) -> f64 {
    moat.metric(r#"moat_cache_requests_total{entity="query",tier="response",result="hit"}"#)
        .await
}

fn amount(answer: &str) -> String {
    let v: Value = serde_json::from_str(answer).unwrap();
    assert!(v.get("errors").is_none(), "{v}");
    v["data"]["product"]["price"]["price"]["amount"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_segments_answer_is_shared_within_it_and_nothing_personal_is() {
    let sim = Sim::start().await;
    let mut settings = config(&sim.url);
    settings.server.full_path_nice = 7;
    let moat = Moat::start(settings).await;
    let vips: Vec<Value> = sim
        .customers()
        .await
        .into_iter()
        .filter(|c| c["segment"] == "vip")
        .collect();
    let token = |c: &Value| c["token"].as_str().unwrap().to_string();
    let (first, second) = (token(&vips[0]), token(&vips[1]));
    let (_, wholesale, _) = customer_in(&sim, "wholesale").await;
    let sku = "SKU-000011";

    // The first vip shopper's page, until it is stored for vip.
    let (status, theirs) = post(&moat, Some(&first), PAGE, sku).await;
    assert_eq!(status, 200, "{theirs}");
    let held = eventually(Duration::from_secs(5), || async {
        post(&moat, Some(&first), PAGE, sku).await;
        stored(&moat, PAGE, sku, "vip").is_some()
    })
    .await;
    assert!(held, "the vip answer is stored");
    assert_eq!(stored(&moat, PAGE, sku, "vip").as_deref(), Some(&*theirs));

    // Another vip shopper (whose token the gateway learns first) is
    // served those very bytes from the store, with no CRM call once known.
    post(&moat, Some(&second), "{ __typename }", sku).await;
    let (hits, crm) = (
        served_stored(&moat).await,
        sim.requests("crm.customers").await,
    );
    let (status, served) = post(&moat, Some(&second), PAGE, sku).await;
    assert_eq!(status, 200, "{served}");
    assert_eq!(served, theirs);
    assert_eq!(served_stored(&moat).await, hits + 1.0, "served stored");
    assert_eq!(
        sim.requests("crm.customers").await,
        crm,
        "no CRM call on a hit"
    );

    // Another segment, and anonymous shoppers, get their own prices.
    let before = served_stored(&moat).await;
    let (_, other) = post(&moat, Some(&wholesale), PAGE, sku).await;
    let (_, anonymous) = post(&moat, None, PAGE, sku).await;
    assert_eq!(
        served_stored(&moat).await,
        before,
        "neither was the vip answer"
    );
    let (vip, whole, default) = (amount(&theirs), amount(&other), amount(&anonymous));
    assert_ne!(vip, whole, "wholesale is priced apart");
    assert_ne!(vip, default, "anonymous shoppers see default prices");
    let held = eventually(Duration::from_secs(5), || async {
        post(&moat, Some(&wholesale), PAGE, sku).await;
        stored(&moat, PAGE, sku, "wholesale").is_some()
    })
    .await;
    assert!(held, "the wholesale answer is stored for wholesale");
    assert_eq!(
        stored(&moat, PAGE, sku, "wholesale").map(|a| amount(&a)),
        Some(whole)
    );
    assert_eq!(
        stored(&moat, PAGE, sku, "vip").map(|a| amount(&a)),
        Some(vip)
    );

    // An answer that reads who is asking is never stored: each shopper
    // sees themselves, however often they ask.
    for _ in 0..3 {
        let (_, me) = post(&moat, Some(&first), PERSONAL, sku).await;
        let (_, them) = post(&moat, Some(&second), PERSONAL, sku).await;
        let id =
            |a: &str| serde_json::from_str::<Value>(a).unwrap()["data"]["viewer"]["id"].clone();
        assert_eq!(id(&me), vips[0]["id"], "{me}");
        assert_eq!(id(&them), vips[1]["id"], "{them}");
    }
    assert!(stored(&moat, PERSONAL, sku, "vip").is_none());

    // Those answers were built on threads below the door's: each
    // `moat-full-path` thread's nice is `server.full_path_nice` above the
    // process's own.
    let nice_of = |stat: &str| -> i64 {
        // Past the command's closing parenthesis, nice is the 17th field.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    };
    let own = nice_of(&std::fs::read_to_string("/proc/self/stat").unwrap());
    let mut lane = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == "moat-full-path" {
            lane.push(nice_of(
                &std::fs::read_to_string(path.join("stat")).unwrap(),
            ));
        }
    }
    assert!(!lane.is_empty(), "the full path has threads of its own");
    assert!(
        lane.iter().all(|n| *n == (own + 7).min(19)),
        "nice {lane:?}, the process {own}"
    );
    moat.stop().await;
}
