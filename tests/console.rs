//! The SRE console in headless Chromium: sign in, see every system's
//! breaker, change the ERP limit inline, and find the new value on a
//! second replica (through the fleet); then sign in as a viewer and find
//! the same tables with no control to change anything. Needs Node.js and
//! Debian's `chromium` (skipped without it, except in CI: `MOAT_CI=1`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use support::redis::RedisServer;
use support::{ADMIN_TOKEN, Moat, Sim, eventually};

const VIEWER_TOKEN: &str = "test-viewer-token";

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sre_signs_in_sees_the_breakers_and_changes_a_limit_fleet_wide() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        assert!(
            std::env::var_os("MOAT_CI").is_none(),
            "{chromium} is missing"
        );
        eprintln!("no {chromium}: the console is not tested in a browser here");
        return;
    }
    if !js_dir().join("node_modules/puppeteer-core").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(js_dir())
            .status()
            .expect("npm (Node.js) is needed for this test");
        assert!(status.success());
    }
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let config = || {
        let mut c = support::config(&sim.url);
        c.redis.url = Some(redis.url());
        c.redis.timeout = Duration::from_millis(200);
        c
    };
    let mut with_viewer = config();
    with_viewer.admin.tokens.insert(
        "support".into(),
        moat::config::AdminToken {
            role: moat::config::Role::Viewer,
        },
    );
    let mut secrets = support::secrets();
    secrets.admin_tokens = [("support".to_string(), VIEWER_TOKEN.to_string())].into();
    let a = Moat::start_with_secrets(with_viewer, secrets).await;
    let b = Moat::start(config()).await;
    let shots = std::env::temp_dir().join(format!("moat-console-{}", std::process::id()));
    std::fs::create_dir_all(&shots).expect("screenshot dir");

    let console = format!("{}/admin/", a.admin_url);
    let dir = shots.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args([
                "console.mjs",
                &console,
                ADMIN_TOKEN,
                "erp",
                "42",
                &dir,
                VIEWER_TOKEN,
            ])
            .current_dir(js_dir())
            .output()
            .expect("node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let page: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{page:#}");
    assert_eq!(page["offsite"], serde_json::json!([]), "{page:#}");
    assert_eq!(page["errors"], serde_json::json!([]), "{page:#}");
    assert!(
        page["refused"].as_str().is_some_and(|r| !r.is_empty()),
        "{page:#}"
    );
    for system in ["pim", "erp", "crm", "oms"] {
        assert_eq!(page["breakers"][system], "closed", "{page:#}");
    }
    // Each tier's size beside its budget (the default product budget).
    assert!(
        page["cache"]["product"]
            .as_str()
            .is_some_and(|size| size.ends_with(" of 128.0 MiB")),
        "{page:#}"
    );
    assert!(
        page["message"]
            .as_str()
            .unwrap_or("")
            .contains("every replica"),
        "{page:#}"
    );
    // The second replica took the change.
    let erp_rps = |m: &Moat| {
        let m = m.http.clone();
        let url = format!("{}/admin/limits", b.admin_url);
        async move {
            let limits: Value = m
                .get(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("limits")
                .json()
                .await
                .expect("json");
            limits["erp"]["rps"].as_u64()
        }
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            erp_rps(&b).await == Some(42)
        })
        .await,
        "replica b's erp limit: {:?}",
        erp_rps(&b).await
    );
    // The viewer sees every system and the new limit, and no control.
    let viewer = &page["viewer"];
    assert_eq!(viewer["whoami"], "support (viewer)", "{page:#}");
    assert_eq!(viewer["systems"], 4, "{page:#}");
    assert_eq!(viewer["rps"], "42 rps", "{page:#}");
    assert_eq!(viewer["controls"], 0, "{page:#}");
    assert_eq!(viewer["signedIn"], true, "{page:#}");
    for shot in [
        "console-desktop.png",
        "console-phone.png",
        "console-viewer.png",
    ] {
        assert!(shots.join(shot).is_file(), "{shot}");
    }
    a.stop().await;
    b.stop().await;
}
