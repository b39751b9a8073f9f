//! The `moat` binary as a user runs it: `moat serve` with the embedded
//! simulator, environment overrides, SIGHUP reloads (a bad file is refused
//! and the old settings stay), and a clean exit on SIGTERM.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::process::Running;
use support::{ADMIN_TOKEN, eventually};

const BASE: &str = "[upstream.embedded]\nproducts = 300\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moat_serve_runs_reloads_on_sighup_and_stops_on_sigterm() {
    support::install_tls_provider();
    let dir = std::env::temp_dir().join(format!("moat-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("moat.toml");
    std::fs::write(&file, BASE).unwrap();
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut moat = Running::start(
        &file,
        &[
            ("MOAT_LISTEN", &listen),
            ("MOAT_UPSTREAM__LIMITS__PIM__RPS", "77"),
        ],
    );
    assert_eq!(
        moat.public,
        format!("http://127.0.0.1:{port}"),
        "MOAT_LISTEN is honoured"
    );

    let http = reqwest::Client::new();
    let r = moat
        .query("{ product(sku: \"SKU-000001\") { name price { price { amount currencyCode } } availability { status } } }")
        .await;
    assert!(
        r["data"]["product"]["price"]["price"]["amount"].is_string(),
        "{r}"
    );

    let rps = |upstream: &'static str| {
        let request = http
            .get(format!("{}/admin/limits", moat.admin))
            .bearer_auth(ADMIN_TOKEN);
        async move {
            let r: Value = request.send().await.unwrap().json().await.unwrap();
            r[upstream]["rps"].as_u64()
        }
    };
    let limits = || rps("erp");
    assert_eq!(limits().await, Some(200));
    assert_eq!(
        rps("pim").await,
        Some(77),
        "MOAT_SECTION__KEY overrides the file"
    );

    std::fs::write(&file, format!("{BASE}[upstream.limits.erp]\nrps = 33\n")).unwrap();
    moat.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || async {
            limits().await == Some(33)
        })
        .await
    );

    std::fs::write(
        &file,
        format!("{BASE}[upstream.limits.erp]\nrps = \"fast\"\n"),
    )
    .unwrap();
    moat.signal("HUP");
    // The refusal spans several log lines: wait for all of them.
    assert!(
        eventually(Duration::from_secs(10), || async {
            moat.logged("reload refused") && moat.logged("upstream.limits.erp.rps")
        })
        .await,
        "the bad file is refused, naming the key"
    );
    assert_eq!(limits().await, Some(33), "the old settings stay");
    assert!(moat.logged("limits.set"), "the change was audited");

    moat.signal("TERM");
    let status = moat
        .wait_exit(Duration::from_secs(15))
        .expect("moat stops on SIGTERM");
    assert!(status.success(), "clean exit: {status}");
}
