//! Stopping in order: readiness goes false first, requests in flight
//! finish, background work ends, and nothing outlives the gateway; the
//! binary exits on SIGTERM within its configured deadline.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::process::{Running, config_file};
use support::{Moat, Sim, config, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_every_request_and_exits_within_the_deadline() {
    let sim = Sim::start().await;
    sim.fault("pim", json!({ "latency_ms": 600 })).await;
    let file = config_file(
        "shutdown",
        "[server]\nshutdown_timeout = \"5s\"\nshutdown_delay = \"1s\"\n",
    );
    let mut moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    let http = reqwest::Client::new();
    let in_flight: Vec<_> = (1..=20)
        .map(|i| {
            let (http, url) = (http.clone(), format!("{}/graphql", moat.public));
            tokio::spawn(async move {
                let query = format!("{{ product(id: \"prod-{i:06}\") {{ name }} }}");
                let r = http
                    .post(url)
                    .json(&json!({ "query": query }))
                    .send()
                    .await?;
                let status = r.status().as_u16();
                let body: Value = r.json().await?;
                Ok::<_, reqwest::Error>((status, body))
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || async {
            sim.requests("pim.products").await >= 1
        })
        .await,
        "the requests reached the upstream"
    );
    let signalled = Instant::now();
    moat.signal("TERM");

    // Readiness turns first, while requests are still served.
    assert!(
        eventually(Duration::from_secs(1), || async {
            let r = http.get(format!("{}/readyz", moat.public)).send().await;
            matches!(r, Ok(r) if r.status().as_u16() == 503)
        })
        .await,
        "readyz fails during the shutdown delay"
    );
    for request in in_flight {
        let (status, body) = request.await.unwrap().expect("an answer, not a reset");
        assert_eq!(status, 200, "{body}");
        assert!(body["data"]["product"]["name"].is_string(), "{body}");
    }
    let status = moat
        .wait_exit(Duration::from_secs(5 + 3))
        .expect("exits within the shutdown deadline");
    assert!(status.success(), "{status}");
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    assert!(
        moat.logged("cut_connections: false, cut_tasks: 0"),
        "nothing had to be cut short: {:?}",
        moat.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_outlives_a_stopped_gateway() {
    let sim = Sim::start().await;
    let runtime = tokio::runtime::Handle::current().metrics();
    let before = runtime.num_alive_tasks();
    let moat = Moat::start(config(&sim.url)).await;
    // Fetches, refreshes and the listeners' connections all start tasks.
    let page = "{ products(first: 20) { nodes { name price { price { amount } } availability { status } } } }";
    for _ in 0..3 {
        let r = moat.query(page, json!({})).await;
        assert!(r.get("errors").is_none(), "{r}");
    }
    assert!(runtime.num_alive_tasks() > before);
    moat.stop().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            runtime.num_alive_tasks() <= before
        })
        .await,
        "{} tasks alive after stop, {before} before start",
        runtime.num_alive_tasks()
    );
}
