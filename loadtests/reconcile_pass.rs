//! Scenario "reconcile": how long one reconciliation pass over 100,000
//! cached prices takes at a given ERP limit, and how many upstream calls it
//! makes. A gateway fills its cache from a 100,000-product simulator (at a
//! generous limit), 1,000 prices then change silently, the ERP limit is set
//! to `RECONCILE_ERP_RPS` (100) and a pass runs. Run by
//! `loadtests/run reconcile`, or:
//! `cargo run --release --example reconcile_pass` (needs nothing else).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use serde_json::{Value, json};
use support::{Moat, Sim, config};

const PRODUCTS: usize = 100_000;
const DRIFTED: usize = 1_000;

#[tokio::main]
async fn main() {
    let rps: u32 = std::env::var("RECONCILE_ERP_RPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let sim = Sim::start_with(moat::sim::SimConfig {
        products: PRODUCTS,
        ..Default::default()
    })
    .await;
    let mut c = config(&sim.url);
    c.reconcile.enabled = false;
    c.reconcile.max_calls = 10_000;
    c.reconcile.max_duration = std::time::Duration::from_secs(3_600);
    c.upstream.limits.rps = 100_000;
    c.upstream.limits.burst = 10_000;
    let moat = Moat::start(c).await;

    let filled = Instant::now();
    let query = "query($after: String) { products(first: 100, after: $after) { nodes { price { price { amount } } } pageInfo { endCursor hasNextPage } } }";
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let page = moat.query(query, json!({ "after": after })).await;
        pages += 1;
        let info = &page["data"]["products"]["pageInfo"];
        if info["hasNextPage"] != true {
            break;
        }
        after = info["endCursor"].clone();
    }
    eprintln!(
        "filled {pages} pages ({PRODUCTS} prices) in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    for i in (1..=PRODUCTS).step_by(PRODUCTS / DRIFTED).take(DRIFTED) {
        sim.set_price(
            &format!("SKU-{i:06}"),
            json!({ "amount": "9.99", "segment": "default" }),
        )
        .await;
    }
    let r = moat
        .http
        .put(format!("{}/admin/limits/erp", moat.admin_url))
        .bearer_auth(support::ADMIN_TOKEN)
        .json(&json!({ "rps": rps, "burst": rps, "checkout_reserve": 0.2 }))
        .send()
        .await
        .expect("limit");
    assert!(r.status().is_success());

    let calls = sim.requests("erp.prices").await;
    let started = Instant::now();
    let (status, report) = moat.admin_post("/admin/reconcile/prices", json!({})).await;
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(status, 200, "{report}");
    let made = sim.requests("erp.prices").await - calls;
    println!(
        "scenario: reconcile — one pass over {PRODUCTS} cached prices, {DRIFTED} changed silently"
    );
    println!(
        "ERP limit {rps} rps (checkout reserve 20 %), batch {} keys",
        moat.state().config().reconcile.batch_size
    );
    println!(
        "pass: {seconds:.1} s, {made} ERP calls; checked {}, drifted {}, repaired {}, complete {}",
        report["checked"], report["drifted"], report["repaired"], report["complete"]
    );
    println!(
        "rate: {:.0} keys/s, {:.1} calls/s",
        report["checked"].as_f64().unwrap_or(0.0) / seconds,
        made as f64 / seconds
    );
    moat.stop().await;
}
