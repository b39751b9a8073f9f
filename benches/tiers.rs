//! L1 hit against L2 hit, through the same read path (`Tier::get_many`):
//!
//! - `l1_hit`: the product is in this replica's L1;
//! - `l2_hit`: L1 is dropped before each read (only L1: `Tier::invalidate`
//!   does not touch Redis), so the read leads a flight that finds the
//!   product in Redis and fills L1 again, as a replica does for a value
//!   another replica fetched.
//!
//! A throwaway redis-server on a free loopback port, the simulator and a
//! gateway, as the integration tests run them. Needs redis-server on PATH.

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use moat::app::Gateway;
use moat::config::{Config, Secrets};
use moat::sim::{SimConfig, Simulator};
use moat::upstream::Priority;

struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tiers(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let redis = Redis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let gateway = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let sim_url = format!("http://{}", listener.local_addr().expect("addr"));
        let sim = Simulator::new(SimConfig {
            products: 100,
            ..SimConfig::default()
        });
        tokio::spawn(moat::sim::serve(listener, sim, std::future::pending()));
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().expect("addr");
        config.admin.listen = "127.0.0.1:0".parse().expect("addr");
        config.upstream.url = Some(sim_url);
        config.redis.url = Some(format!("redis://127.0.0.1:{}/0", redis.1));
        config.cache.product.soft_ttl = Duration::from_secs(3600);
        config.cache.product.hard_ttl = Duration::from_secs(7200);
        config.cache.product.max_stale = Duration::from_secs(14400);
        Gateway::start(config, Secrets::default())
            .await
            .expect("gateway")
    });
    let products = gateway.state.catalog.products.clone();
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
    runtime.block_on(gateway.stop());
}

criterion_group!(benches, tiers);
criterion_main!(benches);
