//! The load generator of scenario "events": signed fat `price.updated`
//! events, as fast as one gateway takes them, from `--connections`
//! concurrent senders for `--seconds`, over `--skus` skus with versions
//! that only go up. Prints one line of JSON: events sent, how each was
//! answered, and the rate. Run by `loadtests/run events`, or:
//!
//! `cargo run --release --example event_load -- --url http://127.0.0.1:8080 --secret S`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

struct Args {
    url: String,
    secret: String,
    seconds: u64,
    connections: usize,
    skus: u64,
}

fn args() -> Args {
    let mut args = Args {
        url: String::new(),
        secret: String::new(),
        seconds: 10,
        connections: 32,
        skus: 1_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => args.url = value,
            "--secret" => args.secret = value,
            "--seconds" => args.seconds = value.parse().expect("--seconds"),
            "--connections" => args.connections = value.parse().expect("--connections"),
            "--skus" => args.skus = value.parse().expect("--skus"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !args.url.is_empty() && !args.secret.is_empty(),
        "--url and --secret are needed"
    );
    args
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    applied: AtomicU64,
    other_2xx: AtomicU64,
    failed: AtomicU64,
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Arc::new(args());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()
        .expect("client");
    let counts = Arc::new(Counts::default());
    // Each event gets the next number: it picks the sku (round robin) and,
    // with the lap, a version newer than any sent before for that sku.
    let next = Arc::new(AtomicU64::new(0));
    let boot = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let senders: Vec<_> = (0..args.connections)
        .map(|_| {
            let (client, counts, next, args) =
                (client.clone(), counts.clone(), next.clone(), args.clone());
            tokio::spawn(async move {
                let url = format!("{}/events/erp", args.url.trim_end_matches('/'));
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let sku = format!("SKU-{:06}", n % args.skus + 1);
                    let version = 1_000_000 + n / args.skus;
                    let now = SystemTime::now();
                    let body = json!({
                        "id": format!("load-{boot}-{n}"),
                        "type": "price.updated",
                        "occurredAt": humantime::format_rfc3339_millis(now).to_string(),
                        "data": {
                            "sku": sku, "segment": "default", "currency": "EUR",
                            "amount": 1_000 + (n % 9_000) as i64, "version": version,
                            "updatedAt": humantime::format_rfc3339_millis(now).to_string(),
                        },
                    })
                    .to_string();
                    let t = now.duration_since(UNIX_EPOCH).expect("clock").as_secs();
                    let signature = moat::events::moat_signature_for(
                        args.secret.as_bytes(),
                        t,
                        body.as_bytes(),
                    );
                    counts.sent.fetch_add(1, Ordering::Relaxed);
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("moat-signature", signature)
                        .body(body)
                        .send()
                        .await;
                    let slot = match answer {
                        Ok(r) if r.status().is_success() => {
                            let text = r.text().await.unwrap_or_default();
                            if text.contains("\"applied\"") {
                                &counts.applied
                            } else {
                                &counts.other_2xx
                            }
                        }
                        _ => &counts.failed,
                    };
                    slot.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for sender in senders {
        let _ = sender.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let applied = counts.applied.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "seconds": seconds,
            "connections": args.connections,
            "sent": counts.sent.load(Ordering::Relaxed),
            "applied": applied,
            "other_2xx": counts.other_2xx.load(Ordering::Relaxed),
            "failed": counts.failed.load(Ordering::Relaxed),
            "applied_per_second": applied as f64 / seconds,
        })
    );
}
