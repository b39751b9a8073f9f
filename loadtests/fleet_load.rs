//! The load of scenario "fleet": product pages and signed price events sent
//! through the load balancer in front of several replicas, for `--seconds`,
//! while the runner may kill a Redis node in the middle. Run by
//! `loadtests/run fleet`, or alone:
//!
//! `cargo run --release --example fleet_load -- --url http://127.0.0.1:8080
//!  --replicas http://127.0.0.1:8081,http://127.0.0.1:8082 --sim http://127.0.0.1:7070
//!  --secret S --marks /tmp/marks`
//!
//! - Pages: `--rate` product queries per second in all, paced over
//!   `--connections` connections; a `--cold` share asks for a product of the
//!   whole `--products` catalog (cold misses: upstream demand above the
//!   shared ERP limit), the rest one of the first `--hot` products.
//! - Events: `--event-rate` price changes per second over `--event-skus`
//!   skus, each sku owned by one sender so its changes stay in order: the
//!   simulator's price is changed first (as an ERP changes its record, then
//!   announces it), then the signed fat `price.updated` event is delivered,
//!   retried on a failure or a 5xx as an event mesh does (at least once), and
//!   a `--redeliver` share is delivered a second time: it must come back
//!   `duplicate`.
//! - ERP calls: the simulator's counters, read every second.
//! - At the end, each replica (asked directly, not through the balancer) is
//!   read for every changed price until all show the last amount, for at
//!   most 20 s.
//!
//! The runner writes `kill <unix ms>` and `recovered <unix ms>` to the
//! `--marks` file when it kills a Redis node and when Redis has recovered;
//! the report splits the run there: before, during (kill to recovery plus
//! `--settle` seconds) and after. Without a kill it is one window.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

struct Args {
    url: String,
    replicas: Vec<String>,
    sim: String,
    secret: String,
    marks: String,
    report: String,
    seconds: u64,
    warmup: u64,
    rate: u64,
    connections: u64,
    products: u64,
    hot: u64,
    cold: f64,
    event_rate: u64,
    event_skus: u64,
    event_senders: u64,
    redeliver: f64,
    settle: u64,
    erp_limit: f64,
    browse_share: f64,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        replicas: Vec::new(),
        sim: String::new(),
        secret: String::new(),
        marks: String::new(),
        report: String::new(),
        seconds: 45,
        warmup: 8,
        rate: 400,
        connections: 32,
        products: 10_000,
        hot: 500,
        cold: 0.2,
        event_rate: 20,
        event_skus: 100,
        event_senders: 4,
        redeliver: 0.2,
        settle: 3,
        erp_limit: 0.0,
        browse_share: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        let num = |what: &str| -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{what}: {value:?}"))
        };
        let share = |what: &str| -> f64 {
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("{what}: {value:?}"));
            assert!((0.0..=1.0).contains(&v), "{what} must be between 0 and 1");
            v
        };
        match flag.as_str() {
            "--url" => a.url = value.trim_end_matches('/').to_string(),
            "--replicas" => {
                a.replicas = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim_end_matches('/').to_string())
                    .collect()
            }
            "--sim" => a.sim = value.trim_end_matches('/').to_string(),
            "--secret" => a.secret = value,
            "--marks" => a.marks = value,
            "--report" => a.report = value,
            "--seconds" => a.seconds = num("--seconds"),
            "--warmup" => a.warmup = num("--warmup"),
            "--rate" => a.rate = num("--rate"),
            "--connections" => a.connections = num("--connections").max(1),
            "--products" => a.products = num("--products").max(1),
            "--hot" => a.hot = num("--hot").max(1),
            "--cold" => a.cold = share("--cold"),
            "--event-rate" => a.event_rate = num("--event-rate"),
            "--event-skus" => a.event_skus = num("--event-skus").max(1),
            "--event-senders" => a.event_senders = num("--event-senders").max(1),
            "--redeliver" => a.redeliver = share("--redeliver"),
            "--settle" => a.settle = num("--settle"),
            "--browse-share" => a.browse_share = share("--browse-share"),
            "--erp-limit" => {
                a.erp_limit = value
                    .parse()
                    .unwrap_or_else(|_| panic!("--erp-limit: {value:?}"))
            }
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !a.url.is_empty() && !a.sim.is_empty() && !a.secret.is_empty(),
        "--url, --sim and --secret are needed"
    );
    a
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// How a page request went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    /// Answered, with only `RATE_LIMITED` errors: a cold read the shared
    /// ERP limit refused, by design.
    RateLimited,
    /// Not answered (transport error, timeout, status other than 200) or
    /// answered with any other error.
    Failed,
}

/// One page request: when it started (unix ms), how long it took, how it went.
struct Sample {
    at: u64,
    micros: u32,
    answer: Answer,
}

#[derive(Default)]
struct EventCounts {
    /// Distinct events (a redelivery is not one).
    sent: AtomicU64,
    /// First acknowledged `applied`.
    applied: AtomicU64,
    /// Acknowledged `duplicate` after an earlier attempt failed: applied
    /// by that attempt (its answer lost).
    applied_unseen: AtomicU64,
    /// Deliveries that failed and were retried.
    retried: AtomicU64,
    /// Never acknowledged within the retries: lost unless the final read
    /// shows them anyway.
    unacknowledged: AtomicU64,
    stale: AtomicU64,
    dead_lettered: AtomicU64,
    /// Answered `duplicate` on their first attempt: never expected (ids are
    /// unique).
    unexpected_duplicate: AtomicU64,
    redelivered: AtomicU64,
    redelivered_duplicate: AtomicU64,
    /// A redelivery answered `applied`: applied twice.
    doubled: AtomicU64,
    redelivered_other: AtomicU64,
}

/// What one delivery came back with: the outcome, or None when it failed
/// (after every retry).
async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: &str,
    counts: &EventCounts,
) -> (Option<String>, u32) {
    let mut pause = Duration::from_millis(100);
    for attempt in 0..12u32 {
        if attempt > 0 {
            counts.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        let t = unix_ms() / 1000;
        let signature = moat::events::moat_signature_for(secret.as_bytes(), t, body.as_bytes());
        let answer = client
            .post(url)
            .header("content-type", "application/json")
            .header("moat-signature", signature)
            .body(body.to_string())
            .send()
            .await;
        let Ok(response) = answer else { continue };
        if !response.status().is_success() {
            continue;
        }
        let receipt: Value = response.json().await.unwrap_or_default();
        let outcome = receipt["outcome"].as_str().unwrap_or("unknown").to_string();
        return (Some(outcome), attempt);
    }
    (None, 12)
}

fn amount_text(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Arc::new(args());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections as usize + 16)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    // Warm-up first (hot pages only, unmeasured), then the measured run.
    let started = Instant::now() + Duration::from_secs(args.warmup);
    let start_ms = unix_ms() + args.warmup * 1000;
    let deadline = started + Duration::from_secs(args.seconds);
    tokio::spawn(async move {
        tokio::time::sleep_until(started.into()).await;
        eprintln!("fleet_load: measuring");
    });
    // Diagnostics of failures, the first few only.
    let noted = Arc::new(AtomicU64::new(0));
    let note = move |what: String| {
        if noted.fetch_add(1, Ordering::Relaxed) < 20 {
            eprintln!("fleet_load: {what}");
        }
    };

    // Pages.
    let query = "query($id: ID!) { product(id: $id) { name price { price { amount } } availability { status } } }";
    let pages: Vec<_> = (0..args.connections)
        .map(|k| {
            let (client, args, note) = (client.clone(), args.clone(), note.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut rng = fastrand::Rng::with_seed(k + 1);
                let every =
                    Duration::from_secs_f64(args.connections as f64 / args.rate.max(1) as f64);
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + every.mul_f64(k as f64 / args.connections as f64),
                    every,
                );
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let url = format!("{}/graphql", args.url);
                loop {
                    tick.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                    let measured = Instant::now() >= started;
                    let n = if measured && rng.f64() < args.cold {
                        rng.u64(1..=args.products)
                    } else {
                        rng.u64(1..=args.hot.min(args.products))
                    };
                    let body =
                        json!({ "query": query, "variables": { "id": format!("prod-{n:06}") } });
                    let at = unix_ms();
                    let t0 = Instant::now();
                    let answer = match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                            Ok(v) => match v.get("errors").and_then(Value::as_array) {
                                None => Answer::Ok,
                                Some(errors)
                                    if v["data"]["product"]["name"].is_string()
                                        && errors
                                            .iter()
                                            .all(|e| e["extensions"]["code"] == "RATE_LIMITED") =>
                                {
                                    Answer::RateLimited
                                }
                                Some(errors) => {
                                    note(format!(
                                        "page prod-{n:06}: {}",
                                        Value::from(errors.clone())
                                    ));
                                    Answer::Failed
                                }
                            },
                            Err(_) => Answer::Failed,
                        },
                        Ok(r) => {
                            note(format!("page prod-{n:06}: HTTP {}", r.status()));
                            Answer::Failed
                        }
                        Err(e) => {
                            note(format!("page prod-{n:06}: {e}"));
                            Answer::Failed
                        }
                    };
                    let micros = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    if measured {
                        samples.push(Sample { at, micros, answer });
                    }
                }
                samples
            })
        })
        .collect();

    // Events: sender k owns the skus whose number is k modulo the senders.
    let counts = Arc::new(EventCounts::default());
    let last: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let redeliveries: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
    let senders: Vec<_> = (0..args.event_senders)
        .filter(|_| args.event_rate > 0)
        .map(|k| {
            let (client, args, counts, last, redeliveries) =
                (client.clone(), args.clone(), counts.clone(), last.clone(), redeliveries.clone());
            tokio::spawn(async move {
                let mine: Vec<u64> = (1..=args.event_skus)
                    .filter(|n| n % args.event_senders == k)
                    .collect();
                if mine.is_empty() {
                    return;
                }
                let mut rng = fastrand::Rng::with_seed(1_000 + k);
                tokio::time::sleep_until(started.into()).await;
                let every = Duration::from_secs_f64(args.event_senders as f64 / args.event_rate as f64);
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let events_url = format!("{}/events/erp", args.url);
                for round in 0.. {
                    tick.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                    let sku = format!("SKU-{:06}", mine[round % mine.len()]);
                    let amount = rng.u64(1_000..100_000);
                    // The ERP's record first.
                    let written = client
                        .put(format!("{}/_sim/prices/{sku}", args.sim))
                        .json(&json!({ "amount": amount_text(amount), "currency": "EUR", "segment": "default" }))
                        .send()
                        .await;
                    let item = match written {
                        Ok(r) if r.status().is_success() => {
                            let v: Value = r.json().await.unwrap_or_default();
                            v["items"][0].clone()
                        }
                        _ => Value::Null,
                    };
                    if item.is_null() {
                        eprintln!("fleet_load: the simulator refused a price write for {sku}");
                        continue;
                    }
                    let id = format!("fleet-{start_ms}-{k}-{round}");
                    let body = json!({
                        "id": id, "source": "erp", "type": "price.updated",
                        "occurredAt": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                        "version": item["version"], "data": item,
                    })
                    .to_string();
                    counts.sent.fetch_add(1, Ordering::Relaxed);
                    let (outcome, attempts) =
                        deliver(&client, &events_url, &args.secret, &body, &counts).await;
                    match outcome.as_deref() {
                        Some("applied") => {
                            counts.applied.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("duplicate") if attempts > 0 => {
                            counts.applied_unseen.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("duplicate") => {
                            counts.unexpected_duplicate.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("stale") => {
                            counts.stale.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("dead_lettered") => {
                            counts.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(other) => eprintln!("fleet_load: event {id}: outcome {other}"),
                        None => {
                            eprintln!("fleet_load: event {id}: never acknowledged");
                            counts.unacknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    last.lock().expect("lock").insert(sku, amount);
                    if rng.f64() < args.redeliver {
                        let (client, args, counts, body) =
                            (client.clone(), args.clone(), counts.clone(), body.clone());
                        let pause = Duration::from_millis(rng.u64(20..200));
                        let url = events_url.clone();
                        redeliveries.lock().expect("lock").push(tokio::spawn(async move {
                            tokio::time::sleep(pause).await;
                            counts.redelivered.fetch_add(1, Ordering::Relaxed);
                            match deliver(&client, &url, &args.secret, &body, &counts).await.0.as_deref() {
                                Some("duplicate") => &counts.redelivered_duplicate,
                                Some("applied") => &counts.doubled,
                                _ => &counts.redelivered_other,
                            }
                            .fetch_add(1, Ordering::Relaxed);
                        }));
                    }
                }
            })
        })
        .collect();

    // ERP calls the simulator saw, every second: (unix ms, calls so far).
    let erp_calls = {
        let (client, args) = (client.clone(), args.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            tokio::time::sleep_until(started.into()).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let at = unix_ms();
                if let Ok(r) = client.get(format!("{}/_sim/stats", args.sim)).send().await
                    && let Ok(v) = r.json::<Value>().await
                {
                    let calls: u64 = ["erp.prices", "erp.inventory", "erp.quote"]
                        .iter()
                        .filter_map(|e| v["requests"][e].as_u64())
                        .sum();
                    seen.push((at, calls));
                }
                if Instant::now() >= deadline + Duration::from_secs(1) {
                    break;
                }
            }
            seen
        })
    };

    let mut samples = Vec::new();
    for page in pages {
        samples.extend(page.await.expect("pages"));
    }
    for sender in senders {
        sender.await.expect("events");
    }
    let pending: Vec<_> = std::mem::take(&mut *redeliveries.lock().expect("lock"));
    for r in pending {
        r.await.expect("redelivery");
    }
    let erp = erp_calls.await.expect("erp");
    let end_ms = unix_ms();
    let mut out = String::new();
    macro_rules! say {
        ($($t:tt)*) => {{
            use std::fmt::Write as _;
            let _ = writeln!(out, $($t)*);
        }};
    }

    // Windows from the marks.
    let marks = std::fs::read_to_string(&args.marks).unwrap_or_default();
    let mark = |name: &str| {
        marks
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
    };
    let mut windows: Vec<(&str, u64, u64)> = Vec::new();
    match (mark("kill"), mark("recovered")) {
        (Some(kill), recovered) => {
            let until = recovered.map_or(end_ms, |r| (r + args.settle * 1000).min(end_ms));
            windows.push(("before", start_ms, kill));
            windows.push(("during", kill, until));
            windows.push(("after", until, end_ms));
            say!(
                "failover: a Redis node killed at {:.1} s; Redis whole again {} (the window 'during' runs to that plus {} s)",
                (kill - start_ms) as f64 / 1000.0,
                recovered.map_or("never within the run".to_string(), |r| format!(
                    "{:.1} s later",
                    (r - kill) as f64 / 1000.0
                )),
                args.settle
            );
        }
        (None, _) => {
            say!("no failure injected: one window");
            windows.push(("whole", start_ms, end_ms));
        }
    }
    say!();
    say!(
        "{:<8} {:>6} {:>9} {:>7} {:>7} {:>12} {:>8} {:>8} {:>8} {:>9} {:>10} {:>11}",
        "window",
        "secs",
        "requests",
        "rps",
        "failed",
        "rate_limited",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "erp_rps",
        "erp/limit",
        "erp/browse"
    );
    let share = |rate: f64, of: f64| {
        if of > 0.0 && rate.is_finite() {
            format!("{:.2}", rate / of)
        } else {
            "-".to_string()
        }
    };
    let mut total_failed = 0;
    for (name, from, to) in &windows {
        let mut lat: Vec<u32> = Vec::new();
        let (mut failed, mut limited) = (0u64, 0u64);
        for s in samples.iter().filter(|s| s.at >= *from && s.at < *to) {
            lat.push(s.micros);
            match s.answer {
                Answer::Failed => failed += 1,
                Answer::RateLimited => limited += 1,
                Answer::Ok => {}
            }
        }
        total_failed += failed;
        lat.sort_unstable();
        let q = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i] as f64 / 1000.0
        };
        let secs = (to.saturating_sub(*from)) as f64 / 1000.0;
        // ERP rate: between the first and last counter readings inside the window.
        let inside: Vec<&(u64, u64)> = erp
            .iter()
            .filter(|(at, _)| at >= from && at <= to)
            .collect();
        let erp_rps = match (inside.first(), inside.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 * 1000.0 / (b.0 - a.0) as f64,
            _ => f64::NAN,
        };
        say!(
            "{:<8} {:>6.1} {:>9} {:>7.0} {:>7} {:>12} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>10} {:>11}",
            name,
            secs,
            lat.len(),
            lat.len() as f64 / secs.max(0.001),
            failed,
            limited,
            q(0.5),
            q(0.99),
            lat.last().map_or(0.0, |m| *m as f64 / 1000.0),
            erp_rps,
            share(erp_rps, args.erp_limit),
            share(erp_rps, args.erp_limit * args.browse_share),
        );
    }
    say!(
        "(failed: not answered, or an error other than RATE_LIMITED; rate_limited: a cold read the shared ERP limit refused, by design; erp_rps: calls the simulator's ERP saw, all replicas; the shared limit is {} rps, of which browsing may use {} rps: erp/browse)",
        args.erp_limit,
        args.erp_limit * args.browse_share
    );

    // Events.
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let changed: BTreeMap<String, u64> = last.lock().expect("lock").clone();
    say!();
    say!(
        "events: {} sent ({} skus changed); applied {} (+{} applied by an attempt whose answer was lost), {} deliveries retried, unacknowledged {}, stale {}, dead-lettered {}, duplicate on first delivery {}",
        c(&counts.sent),
        changed.len(),
        c(&counts.applied),
        c(&counts.applied_unseen),
        c(&counts.retried),
        c(&counts.unacknowledged),
        c(&counts.stale),
        c(&counts.dead_lettered),
        c(&counts.unexpected_duplicate),
    );
    say!(
        "redeliveries: {} sent again, {} answered duplicate, doubled (applied twice) {}, other {}",
        c(&counts.redelivered),
        c(&counts.redelivered_duplicate),
        c(&counts.doubled),
        c(&counts.redelivered_other),
    );

    // Each replica's final view of the changed prices.
    let skus: Vec<&String> = changed.keys().collect();
    let mut views = Vec::new();
    let view_started = Instant::now();
    for replica in &args.replicas {
        let mut wrong = BTreeMap::new();
        loop {
            wrong.clear();
            for chunk in skus.chunks(20) {
                let fields: String = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, sku)| {
                        format!(
                            "p{i}: product(sku: \"{sku}\") {{ price {{ price {{ amount }} }} }} "
                        )
                    })
                    .collect();
                let answer = client
                    .post(format!("{replica}/graphql"))
                    .json(&json!({ "query": format!("{{ {fields}}}") }))
                    .send()
                    .await;
                let v: Value = match answer {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => Value::Null,
                };
                for (i, sku) in chunk.iter().enumerate() {
                    let want = amount_text(changed[*sku]);
                    let got = v["data"][format!("p{i}")]["price"]["price"]["amount"]
                        .as_str()
                        .unwrap_or("(none)")
                        .to_string();
                    if got != want {
                        wrong.insert((*sku).clone(), (want, got));
                    }
                }
            }
            if wrong.is_empty() || view_started.elapsed() > Duration::from_secs(20) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        views.push((replica.clone(), wrong));
    }
    say!();
    say!(
        "final view of the {} changed prices, each replica asked directly:",
        skus.len()
    );
    let mut all_right = true;
    for (replica, wrong) in &views {
        say!(
            "  {replica}: {} of {} show the last amount{}",
            skus.len() - wrong.len(),
            skus.len(),
            if wrong.is_empty() {
                String::new()
            } else {
                format!(
                    "; differing: {:?}",
                    wrong.iter().take(5).collect::<Vec<_>>()
                )
            }
        );
        all_right &= wrong.is_empty();
    }
    say!(
        "  (the final reads took {:.1} s: they are repeated until every replica shows every last amount, for at most 20 s)",
        view_started.elapsed().as_secs_f64()
    );
    let lost = c(&counts.unacknowledged);
    say!();
    say!(
        "verdict: failed requests {total_failed}; events lost {}; doubled {}; replicas agreeing on every changed price: {}",
        lost,
        c(&counts.doubled),
        if all_right { "yes" } else { "NO" }
    );
    say!(
        "{}",
        json!({
            "failed": total_failed, "events_sent": c(&counts.sent), "events_lost": lost,
            "doubled": c(&counts.doubled), "views_agree": all_right,
        })
    );
    print!("{out}");
    if !args.report.is_empty() {
        std::fs::write(&args.report, &out).expect("--report");
    }
}
