//! The README's demos as written, with the real binary: `moat sim
//! --change-rate 5 --events-to …` beside a gateway reading it changes the
//! prices and stock of the first products with nothing else typed (each
//! change applied from its signed event); `moat sim --help` lists the
//! `/_sim` control calls; the startup lines name only what listens.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::process::Running;
use support::{eventually, free_port};

const PAGE: &str =
    "{ products(first: 5) { nodes { sku price { price { amount } } availability { quantity } } } }";

/// `moat sim ARGS` with `env`, killed when dropped; ready once its
/// startup line is out.
struct SimProcess(Child);

impl SimProcess {
    fn start(args: &[&str], env: &[(&str, &str)]) -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .arg("sim")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moat sim");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("moat sim: http://") => break,
                Some(Ok(_)) => {}
                _ => panic!("moat sim stopped before it started"),
            }
        }
        // Keep reading, so the simulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        SimProcess(child)
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_demo_changes_prices_with_nothing_else_typed() {
    support::install_tls_provider();
    let (sim_port, public_port) = (free_port(), free_port());
    let sim_listen = format!("127.0.0.1:{sim_port}");
    let events_to = format!("http://127.0.0.1:{public_port}");
    let secret = [("MOAT_EVENTS_SECRET", "demo-secret")];
    let _sim = SimProcess::start(
        &[
            "--listen",
            &sim_listen,
            "--change-rate",
            "5",
            "--events-to",
            &events_to,
        ],
        &secret,
    );
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/moat.toml");
    let upstream = format!("http://{sim_listen}");
    let listen = format!("127.0.0.1:{public_port}");
    let moat = Running::start(
        &config,
        &[
            ("MOAT_UPSTREAM_URL", &upstream),
            ("MOAT_LISTEN", &listen),
            ("MOAT_EVENTS_SECRET", "demo-secret"),
        ],
    );
    let first: Value = moat.query(PAGE).await;
    assert!(
        first["data"]["products"]["nodes"][4]["sku"].is_string(),
        "{first}"
    );
    let changed = eventually(Duration::from_secs(10), || async {
        let now = moat.query(PAGE).await;
        now["data"].is_object() && now["data"] != first["data"]
    })
    .await;
    assert!(changed, "the page never changed: {first}");
    let applied = eventually(Duration::from_secs(10), || async {
        let text = reqwest::get(format!("{}/metrics", moat.admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| l.starts_with("moat_events_total{") && l.contains("outcome=\"applied\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            > 0.0
    })
    .await;
    assert!(
        applied,
        "the changes came as applied events: {:?}",
        moat.log()
    );
}

#[test]
fn sim_help_lists_the_control_calls() {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["sim", "--help"])
        .output()
        .expect("moat sim --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for call in [
        "--change-rate",
        "POST /_sim/faults/{system}",
        "PUT  /_sim/prices/{sku}",
        "PUT  /_sim/inventory/{sku}",
        "PUT  /_sim/products/{id}",
        "GET  /_sim/stats",
        "POST /_sim/reset",
        "emit_event",
    ] {
        assert!(help.contains(call), "{call}: {help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_names_only_what_listens_and_logs_to_a_file_have_no_colour() {
    support::install_tls_provider();
    let file = support::process::config_file("banner", "[upstream.embedded]\nproducts = 50\n");
    // No admin token: metrics only, and the banner says the API is off.
    let moat = Running::start(&file, &[("MOAT_ADMIN_TOKEN", "")]);
    let log = moat.log();
    let metrics_line = log
        .iter()
        .find(|l| l.starts_with("moat: metrics on"))
        .expect("metrics line");
    assert!(
        metrics_line.contains("admin API and console off")
            && metrics_line.contains("MOAT_ADMIN_TOKEN"),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("/healthz") && l.contains("/readyz")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.starts_with("moat: no Redis")),
        "{log:?}"
    );
    // Its log lines went to a pipe, not a terminal: no escape codes.
    assert!(moat.logged("moat is serving"), "{log:?}");
    assert!(!log.iter().any(|l| l.contains('\u{1b}')), "{log:?}");
    let with_token = Running::start(&file, &[]);
    assert!(
        with_token
            .log()
            .iter()
            .any(|l| l.starts_with("moat: metrics on") && l.contains("console on http://")),
        "{:?}",
        with_token.log()
    );
}
