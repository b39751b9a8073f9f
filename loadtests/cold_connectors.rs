//! Scenario "cold-connectors": what a cold product page costs through each
//! recipe (`config/connectors/`) next to protocol v1: the upstream calls
//! it makes and the gateway's CPU time.
//!
//! For each setup, simulators with the same seeded catalog play the
//! systems (`--dialect …` for a recipe's vendor, protocol v1 for the rest)
//! in this process, and the release binary serves with the main config and
//! the recipes; then 200 product pages, each of a product never read
//! before, one after another. The figures are per page: calls counted by
//! the simulators, and the gateway process's user + system CPU time (from
//! `/proc`). Run by `loadtests/run cold-connectors`, or directly:
//! `cargo build --release --bin moat --example cold_connectors &&
//! target/release/examples/cold_connectors`.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "process_cpu.rs"]
mod process_cpu;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use moat::sim::{Dialect, SimConfig};
use support::Sim;

const PAGE: &str = "query($sku: String!) { product(sku: $sku) { name description attributes { name value } categories { name } price { price { amount } } availability { quantity } } }";
const PAGES: usize = 200;
const PRODUCTS: usize = 2_000;

/// A vendor a setup reads through its recipe.
struct Vendor {
    name: &'static str,
    dialect: Dialect,
    prefix: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const AKENEO: Vendor = Vendor {
    name: "akeneo",
    dialect: Dialect::Akeneo,
    prefix: "",
    env: &[
        ("MOAT_AKENEO_CLIENT_ID", "moat"),
        ("MOAT_AKENEO_CLIENT_SECRET", "secret"),
        ("MOAT_AKENEO_USER", "api"),
        ("MOAT_AKENEO_PASSWORD", "password"),
    ],
};
const COMMERCETOOLS: Vendor = Vendor {
    name: "commercetools",
    dialect: Dialect::Commercetools,
    prefix: "/moat-demo",
    env: &[
        ("MOAT_COMMERCETOOLS_CLIENT_ID", "moat"),
        ("MOAT_COMMERCETOOLS_CLIENT_SECRET", "secret"),
    ],
};
const SHOPIFY: Vendor = Vendor {
    name: "shopify",
    dialect: Dialect::Shopify,
    prefix: "/admin/api/2025-07",
    env: &[
        ("MOAT_SHOPIFY_CLIENT_ID", "moat"),
        ("MOAT_SHOPIFY_CLIENT_SECRET", "secret"),
    ],
};

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    println!(
        "scenario: cold-connectors — {PAGES} cold product pages, one after another, per setup"
    );
    println!(
        "{:<32} {:>12} {:>14} {:>10}",
        "setup", "calls/page", "cpu_ms/page", "cpu/v1"
    );
    let setups: [(&str, &[&Vendor]); 4] = [
        ("protocol v1", &[]),
        ("akeneo pim + v1", &[&AKENEO]),
        ("akeneo pim + commercetools", &[&AKENEO, &COMMERCETOOLS]),
        ("shopify alone", &[&SHOPIFY]),
    ];
    let mut v1_cpu = None;
    for (name, vendors) in setups {
        let (calls, cpu) = runtime.block_on(measure(vendors));
        let base = *v1_cpu.get_or_insert(cpu);
        println!("{name:<32} {calls:>12.2} {cpu:>14.3} {:>10.2}", cpu / base);
    }
}

/// Calls per page and CPU milliseconds per page for one setup.
async fn measure(vendors: &[&Vendor]) -> (f64, f64) {
    let v1 = Sim::start_with(SimConfig {
        products: PRODUCTS,
        ..SimConfig::default()
    })
    .await;
    let mut sims = Vec::new();
    for vendor in vendors {
        sims.push(
            Sim::start_with(SimConfig {
                products: PRODUCTS,
                dialect: vendor.dialect,
                ..SimConfig::default()
            })
            .await,
        );
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let port = support::free_port();
    let mut command = Command::new(format!("{root}/target/release/moat"));
    command
        .current_dir(root)
        .args(["serve", "--config", "config/moat.toml"])
        .env("MOAT_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "MOAT_ADMIN_LISTEN",
            format!("127.0.0.1:{}", support::free_port()),
        )
        .env("MOAT_UPSTREAM_URL", &v1.url)
        .env_remove("MOAT_REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (vendor, sim) in vendors.iter().zip(&sims) {
        command
            .arg("--config")
            .arg(format!("config/connectors/{}.toml", vendor.name))
            .env(
                format!("MOAT_{}_URL", vendor.name.to_uppercase()),
                format!("{}{}", sim.url, vendor.prefix),
            )
            .envs(vendor.env.iter().copied());
    }
    let mut moat = Gateway(command.spawn().expect("start target/release/moat"));
    let url = format!("http://127.0.0.1:{port}/graphql");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "moat did not start");
        assert!(moat.0.try_wait().unwrap().is_none(), "moat exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all: Vec<&Sim> = std::iter::once(&v1).chain(&sims).collect();
    let (calls_before, cpu_before) = (calls(&all).await, cpu_ms(moat.0.id()));
    for n in 0..PAGES {
        let sku = format!("SKU-{:06}", 1 + n * (PRODUCTS / PAGES));
        let r: Value = http
            .post(&url)
            .json(&json!({ "query": PAGE, "variables": { "sku": sku } }))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert!(
            r.get("errors").is_none() && r["data"]["product"]["name"].is_string(),
            "{r}"
        );
    }
    let (calls_after, cpu_after) = (calls(&all).await, cpu_ms(moat.0.id()));
    let pages = PAGES as f64;
    (
        (calls_after - calls_before) as f64 / pages,
        (cpu_after - cpu_before) / pages,
    )
}

/// Every accepted request the simulators counted (`/_sim/stats`).
async fn calls(sims: &[&Sim]) -> u64 {
    let mut total = 0;
    for sim in sims {
        total += count(&sim.stats().await);
    }
    total
}

/// Every accepted request a simulator counted.
fn count(stats: &Value) -> u64 {
    stats["requests"]
        .as_object()
        .map(|by| by.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// User + system CPU time of process `pid`, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    process_cpu::cpu_seconds(pid) * 1000.0
}

/// Stops the gateway when the setup ends, however it ends.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
