//! Scenario "cold-page": what one cold product page (product, price and
//! stock, each a miss; upstream latency 0) costs the gateway in CPU, on one
//! core, and how many upstream calls it makes.
//!
//! Starts the release binary twice: `moat sim` with a large catalog and no
//! injected latency, and `moat serve` (the main config, no Redis, upstream
//! rate limits raised out of the way) pinned to CPU 0 when `taskset`
//! exists, this driver and the simulator on CPU 1. After a short warm-up it
//! sends `COLD_PAGES` (2000) product pages, each of a product never read
//! before, over `COLD_CONNECTIONS` (4) concurrent connections, checks every
//! answer, and prints one line for the load-test runner:
//!
//! ```text
//! cold-page: pages=N cpu_us_per_page=X upstream_calls_per_page=Y pages_per_s=Z user_us_per_page=U system_us_per_page=S
//! ```
//!
//! CPU is the serve process's user + system time (`/proc/PID/stat`) over
//! the measured pages, and each apart (system time is the kernel's work for
//! it: sockets, wake-ups, page faults); calls are the simulator's own counts
//! (`/_sim/stats`). Each page's query names its product in the text, so
//! every page is a new text to parse and validate; `COLD_VARIABLES=1`
//! sends one text with the id as a variable, as storefronts mostly do.
//! The serve process inherits this one's environment, so
//! `MOAT_SYSTEMS__ERP__OFFERS=true` measures pages whose price and stock
//! come in one ERP call (`loadtests/run paths` runs both). `COLD_PAGE_WRAP` (e.g. `valgrind --tool=callgrind`)
//! runs the serve process under that command, for a profile of the miss
//! path; it is stopped with SIGTERM so the wrapper can write its output.
//!
//! `cargo build --release --bin moat --example cold_page &&
//! target/release/examples/cold_page`

#[path = "process_cpu.rs"]
mod process_cpu;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The page as a storefront sending variables asks it: one text for every
/// product (`COLD_VARIABLES=1`), parsed and validated once.
const BY_VARIABLE: &str = "query($id: ID!) { product(id: $id) { name price { price { amount } } availability { status } } }";

/// Pages read before measuring (connections, allocator, lazy statics).
const WARM_UP: usize = 50;
/// The whole run, start to stop, however slow the machine.
const BOUND: Duration = Duration::from_secs(600);

fn main() {
    let pages = env_number("COLD_PAGES", 2000);
    let connections = env_number("COLD_CONNECTIONS", 4).max(1);
    // reqwest is built without a TLS provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pinned = has_taskset();
    if pinned {
        // The driver (and the runtime threads it is about to start) on the
        // other CPU than the gateway.
        pin(std::process::id(), "1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let measured = runtime.block_on(run(pages, connections, pinned));
    let Measured {
        user_us,
        system_us,
        calls,
        took,
    } = measured;
    let n = pages as f64;
    println!(
        "cold-page: pages={pages} cpu_us_per_page={:.1} upstream_calls_per_page={:.2} pages_per_s={:.0} user_us_per_page={:.1} system_us_per_page={:.1}",
        (user_us + system_us) / n,
        calls as f64 / n,
        n / took.as_secs_f64(),
        user_us / n,
        system_us / n
    );
}

struct Measured {
    user_us: f64,
    system_us: f64,
    calls: u64,
    took: Duration,
}

async fn run(pages: usize, connections: usize, pinned: bool) -> Measured {
    let started = Instant::now();
    let binary = moat_binary();
    let root = env!("CARGO_MANIFEST_DIR");
    let products = (pages + WARM_UP + 1000).max(10_000);

    let sim_port = free_port();
    let mut sim = Command::new(&binary);
    sim.args(["sim", "--listen", &format!("127.0.0.1:{sim_port}")])
        .args(["--products", &products.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let sim = Stopped::new(sim.spawn().expect("start moat sim"), false);
    if pinned {
        pin(sim.0.id(), "1");
    }
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    wait_ready(&http, &format!("{sim_url}/_sim/stats"), started).await;
    for system in ["pim", "erp", "crm", "oms"] {
        let r = http
            .post(format!("{sim_url}/_sim/faults/{system}"))
            .json(&json!({ "latency_ms": 0 }))
            .send()
            .await
            .expect("sim faults");
        assert!(r.status().is_success(), "faults {system}: {}", r.status());
    }

    let port = free_port();
    let wrap: Vec<String> = std::env::var("COLD_PAGE_WRAP")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut argv: Vec<String> = Vec::new();
    if pinned {
        argv.extend(["taskset", "-c", "0"].map(str::to_string));
    }
    argv.extend(wrap.iter().cloned());
    argv.push(binary.display().to_string());
    argv.extend(["serve", "--config", "config/moat.toml"].map(str::to_string));
    let mut serve = Command::new(&argv[0]);
    serve
        .args(&argv[1..])
        .current_dir(root)
        .env("MOAT_LISTEN", format!("127.0.0.1:{port}"))
        .env("MOAT_ADMIN_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("MOAT_UPSTREAM_URL", &sim_url)
        .env_remove("MOAT_REDIS_URL")
        // Out of the way: this measures the gateway, not its protection.
        .env("MOAT_UPSTREAM__LIMITS__RPS", "1000000")
        .env("MOAT_UPSTREAM__LIMITS__BURST", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(if wrap.is_empty() {
            Stdio::null()
        } else {
            Stdio::inherit()
        });
    let serve = Stopped::new(serve.spawn().expect("start moat serve"), !wrap.is_empty());
    let url = format!("http://127.0.0.1:{port}/graphql");
    wait_ready(&http, &format!("http://127.0.0.1:{port}/readyz"), started).await;

    // Warm-up pages: products past the measured ones.
    send_pages(
        &http,
        &url,
        pages + 1..=pages + WARM_UP,
        connections,
        started,
    )
    .await;

    let (calls_before, cpu_before) = (calls(&http, &sim_url).await, cpu_us(serve.0.id()));
    let t0 = Instant::now();
    send_pages(&http, &url, 1..=pages, connections, started).await;
    let took = t0.elapsed();
    let (calls_after, cpu_after) = (calls(&http, &sim_url).await, cpu_us(serve.0.id()));
    drop(serve);
    drop(sim);
    Measured {
        user_us: cpu_after.0 - cpu_before.0,
        system_us: cpu_after.1 - cpu_before.1,
        calls: calls_after - calls_before,
        took,
    }
}

/// Product pages for the products numbered `range`, over `connections`
/// concurrent clients; each answer must be whole.
async fn send_pages(
    http: &reqwest::Client,
    url: &str,
    range: std::ops::RangeInclusive<usize>,
    connections: usize,
    started: Instant,
) {
    let next = Arc::new(AtomicUsize::new(*range.start()));
    let last = *range.end();
    let variables = env_number("COLD_VARIABLES", 0) != 0;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, url, next) = (http.clone(), url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n > last {
                    return;
                }
                assert!(started.elapsed() < BOUND, "the run took too long");
                let id = format!("prod-{n:06}");
                let body = if variables {
                    json!({ "query": BY_VARIABLE, "variables": { "id": id } })
                } else {
                    let query = format!(
                        "{{ product(id: \"{id}\") {{ name price {{ price {{ amount }} }} availability {{ status }} }} }}"
                    );
                    json!({ "query": query })
                };
                let r: Value = http
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("request")
                    .json()
                    .await
                    .expect("json answer");
                let product = &r["data"]["product"];
                assert!(
                    r.get("errors").is_none()
                        && product["name"].is_string()
                        && product["price"]["price"]["amount"].is_string()
                        && !product["availability"].is_null(),
                    "prod-{n:06}: {r}"
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("a page failed");
    }
}

/// Every request the simulator counted (`/_sim/stats`).
async fn calls(http: &reqwest::Client, sim_url: &str) -> u64 {
    let stats: Value = http
        .get(format!("{sim_url}/_sim/stats"))
        .send()
        .await
        .expect("sim stats")
        .json()
        .await
        .expect("stats json");
    stats["requests"]
        .as_object()
        .map(|by| by.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

async fn wait_ready(http: &reqwest::Client, url: &str, started: Instant) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline && started.elapsed() < BOUND,
            "{url} did not answer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `target/release/moat`, beside this example's directory.
fn moat_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .expect("target/release");
    dir.join("moat")
}

/// User and system CPU time of process `pid`, in microseconds.
fn cpu_us(pid: u32) -> (f64, f64) {
    let (user, system) = process_cpu::user_and_system_seconds(pid);
    (user * 1_000_000.0, system * 1_000_000.0)
}

fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Pins every thread of `pid` to `cpus`.
fn pin(pid: u32, cpus: &str) {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process stopped when dropped, however the run ends: SIGTERM
/// first when asked (a profiler writes its output on exit), then kill.
struct Stopped(Child, bool);

impl Stopped {
    fn new(child: Child, gently: bool) -> Stopped {
        Stopped(child, gently)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
