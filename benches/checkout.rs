//! `verifyCheckout` latency as a checkout service sees it: one mutation over
//! loopback HTTP, a three-line cart with price tokens, against the
//! simulator at its default latency (20 ms per upstream call). Every
//! verification asks the ERP for a quote (never the cache), so the floor is
//! one upstream round trip.
//!
//! Criterion reports the mean and median; p50 and p99 come from a separate
//! run of sequential verifications timed one by one, printed at the end.
//!
//! Real pieces only: the simulator and a gateway on loopback ports 0.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::{Value, json};

use moat::config::Secrets;
use support::shop::{cart, shown, verify};
use support::{Moat, Sim, config};

const SKUS: [&str; 3] = ["SKU-000011", "SKU-000012", "SKU-000013"];
/// Timed verifications for the percentiles.
const RUNS: usize = 400;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn verify_checkout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (_sim, moat, input) = runtime.block_on(async {
        let sim = Sim::start().await;
        // The simulator's default latency: 20 ms on every system.
        for system in ["pim", "erp", "crm", "oms"] {
            sim.fault(system, json!({ "latency_ms": 20 })).await;
        }
        let secrets = Secrets {
            price_token_secret: Some("bench-price-token-secret-0123456789abcdef".into()),
            ..Secrets::default()
        };
        let moat = Moat::start_with_secrets(config(&sim.url), secrets).await;
        let mut shown_prices = Vec::new();
        for sku in SKUS {
            shown_prices.push(shown(&moat, None, sku).await);
        }
        let lines: Vec<_> = shown_prices.iter().map(|s| (s, 1)).collect();
        let input = cart(&lines);
        (sim, moat, input)
    });
    let first = runtime.block_on(verify(&moat, None, input.clone()));
    assert_eq!(
        first["data"]["verifyCheckout"]["ok"], true,
        "the bench cart must verify: {first}"
    );

    let mut group = c.benchmark_group("verify_checkout");
    // ~25 ms per call: flat sampling keeps the run to seconds.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("http_3_lines", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(verify(&moat, None, input.clone()).await) })
    });
    group.finish();

    let mut took: Vec<Duration> = runtime.block_on(async {
        let mut took = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let r: Value = verify(&moat, None, input.clone()).await;
            took.push(started.elapsed());
            assert_eq!(r["data"]["verifyCheckout"]["ok"], true, "{r}");
        }
        took
    });
    took.sort();
    println!(
        "verify_checkout/http_3_lines over {RUNS} sequential runs (upstream latency 20 ms): \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&took, 0.50).as_secs_f64() * 1e3,
        percentile(&took, 0.99).as_secs_f64() * 1e3,
        took.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );

    runtime.block_on(moat.stop());
}

criterion_group!(benches, verify_checkout);
criterion_main!(benches);
