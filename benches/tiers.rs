//! L1 hit against L2 hit, through the same read path (`Tier::get_many`):
//!
//! - `l1_hit`: the product is in this replica's L1;
//! - `l2_hit`: L1 is dropped before each read (only L1: `Tier::invalidate`
//!   does not touch Redis), so the read leads a flight that finds the
//!   product in Redis and fills L1 again, as a replica does for a value
//!   another replica fetched.
//!
//! A throwaway redis-server on a free loopback port, the simulator and a
//! gateway, as the integration tests start them. Needs redis-server on PATH.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use moat::vocab::Priority;
use support::redis::RedisServer;
use support::{Moat, Sim, config};

fn tiers(c: &mut Criterion) {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (_sim, moat) = runtime.block_on(async {
        let sim = Sim::start().await;
        let mut config = config(&sim.url);
        config.redis.url = Some(redis.url());
        config.cache.product.soft_ttl = Duration::from_secs(3600);
        config.cache.product.hard_ttl = Duration::from_secs(7200);
        config.cache.product.max_stale = Duration::from_secs(14400);
        let moat = Moat::start(config).await;
        (sim, moat)
    });
    let products = moat.state().catalog.products.clone();
    let id = "prod-000007".to_string();
    let read = || {
        let products = products.clone();
        let id = id.clone();
        async move {
            let mut found = products.get_many(vec![id.clone()], Priority::Browse).await;
            let hit = found.remove(&id).expect("a result").expect("a hit");
            assert!(hit.value().is_some());
            black_box(hit)
        }
    };
    // The first read fetches from the simulator and fills L1 and L2.
    runtime.block_on(read());

    let mut group = c.benchmark_group("tiers");
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("l1_hit", |b| b.to_async(&runtime).iter(read));
    group.bench_function("l2_hit", |b| {
        b.to_async(&runtime).iter(|| {
            products.invalidate(std::slice::from_ref(&id));
            read()
        })
    });
    group.finish();
    runtime.block_on(moat.stop());
}

criterion_group!(benches, tiers);
criterion_main!(benches);
