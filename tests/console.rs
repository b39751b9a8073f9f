//! The SRE console in headless Chromium: sign in, see every system's
//! breaker, change the ERP limit inline, and find the new value on a
//! second replica (through the fleet); see an exception and a dead letter
//! naming its record, replay it, read the storefront's request rate and
//! events by outcome, find no old trip reason on a closed breaker, the
//! audit naming each action, no date that fails to render and nothing
//! wider than a 390 px phone; then sign in as a viewer and find the same
//! tables with no control to change anything. Needs Node.js and Debian's
//! `chromium` (skipped without it, except in CI: `MOAT_CI=1`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use support::events::{send, shown_price, thin_price_event};
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
    let (exception_key, letter_sku) = exception_and_dead_letter(&sim, &a).await;
    // Storefront traffic while the page reads its rates: answers and a few
    // refusals.
    let traffic = {
        let (http, url) = (a.http.clone(), format!("{}/graphql", a.url));
        tokio::spawn(async move {
            for i in 0u64.. {
                let query = if i % 5 == 0 {
                    "{ product(sku: ".to_string()
                } else {
                    format!("{{ product(sku: \"SKU-{:06}\") {{ name }} }}", 1 + i % 50)
                };
                let _ = http
                    .post(&url)
                    .json(&json!({ "query": query }))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
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
    traffic.abort();
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
    // The exception, with both sides in the storefront's terms.
    let shown = page["exceptions"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|e| e["key"] == exception_key && e["kind"] == "price")
        })
        .unwrap_or_else(|| panic!("{exception_key} not listed: {page:#}"));
    assert_eq!(shown["held"], "1.00 EUR", "{page:#}");
    assert!(
        shown["ownerSays"]
            .as_str()
            .is_some_and(|h| h.ends_with(" EUR") && h != "1.00 EUR"),
        "{page:#}"
    );
    // The dead letter named its record, and was replayed.
    assert_eq!(
        page["letter"]["record"],
        format!("price {letter_sku} (default, EUR)"),
        "{page:#}"
    );
    assert!(
        page["replayed"]
            .as_str()
            .is_some_and(|m| m.ends_with(": replayed.")),
        "{page:#}"
    );
    let (_, dlq) = a.admin_get("/admin/dlq").await;
    assert_eq!(dlq["depth"], 0, "{dlq}");
    // Rates: requests a second, errors beside them, events by outcome.
    let rate = |s: &Value| {
        s.as_str()
            .and_then(|r| r.split('/').next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    assert!(
        rate(&page["rates"]["requests"]).is_some_and(|r| r > 0.0),
        "{page:#}"
    );
    assert!(
        rate(&page["rates"]["errors"]).is_some_and(|r| r > 0.0),
        "{page:#}"
    );
    for outcome in ["applied", "dead_lettered", "duplicate", "rejected", "stale"] {
        assert!(page["events"][outcome].is_string(), "{outcome}: {page:#}");
    }
    // The ERP tripped, then was reset: closed, its old reason not shown.
    assert_eq!(page["breakers"]["erp"], "closed", "{page:#}");
    assert_eq!(page["erpReason"], Value::Null, "{page:#}");
    let actions: Vec<&str> = page["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for action in ["breaker.reset", "dlq.replay", "limits.set"] {
        assert!(actions.contains(&action), "{action}: {page:#}");
    }
    assert_eq!(page["invalidDates"], false, "{page:#}");
    // Nothing at phone width is wider than the phone.
    assert_eq!(page["phone"]["width"], 390, "{page:#}");
    assert!(
        page["phone"]["scrollWidth"].as_u64() <= Some(390),
        "{page:#}"
    );
    assert_eq!(page["phone"]["wider"], json!([]), "{page:#}");
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

/// An exception (a checkout shown a wrong price) and a dead letter (a thin
/// price event while the ERP is down, which also trips its breaker; the
/// ERP then comes back and an operator resets the breaker, so its reason
/// stays recorded while it is closed): the exception's key and the
/// parked event's sku.
async fn exception_and_dead_letter(sim: &Sim, moat: &Moat) -> (String, String) {
    let sku = "SKU-000011";
    let checkout = json!({
        "currencyCode": "EUR",
        "lines": [{ "sku": "SKU-000003", "quantity": 1, "priceToken": "forged",
                    "displayedUnitPrice": { "amount": "1.00", "currencyCode": "EUR" } }],
        "displayedTotal": { "amount": "1.00", "currencyCode": "EUR" },
    });
    let r = moat
        .query(
            "mutation($input: VerifyCheckoutInput!) { verifyCheckout(input: $input) { ok } }",
            json!({ "input": checkout }),
        )
        .await;
    assert_eq!(r["data"]["verifyCheckout"]["ok"], false, "{r}");

    shown_price(moat, sku).await;
    sim.set_price(sku, json!({ "amount": "55.55", "segment": "default" }))
        .await;
    let prices = sim
        .get_json(&format!(
            "/erp/v1/prices?skus={sku}&segment=default&currency=EUR"
        ))
        .await;
    let version = prices["items"][0]["version"].as_u64().expect("version");
    sim.fault("erp", json!({ "down": true })).await;
    let (status, r) = send(moat, "erp", &thin_price_event("console-1", sku, version)).await;
    assert_eq!(
        (status, r["outcome"].as_str()),
        (202, Some("dead_lettered")),
        "{r}"
    );
    let erp_breaker = || async {
        let (_, status) = moat.admin_get("/admin/status").await;
        status["upstreams"]["erp"]["breaker"].clone()
    };
    let tripped = eventually(Duration::from_secs(10), || async {
        for n in 100..110 {
            let _ = shown_price(moat, &format!("SKU-{n:06}")).await;
        }
        erp_breaker().await["state"] == "open"
    })
    .await;
    assert!(tripped, "{}", erp_breaker().await);
    sim.fault("erp", json!({ "down": false })).await;
    let (status, _) = moat
        .admin_post("/admin/breakers/erp", json!({ "action": "reset" }))
        .await;
    assert_eq!(status, 200);
    let breaker = erp_breaker().await;
    assert!(breaker["trip_reason"].is_string(), "{breaker}");

    let (_, listed) = moat
        .admin_get("/admin/exceptions?found_by=checkout&kind=price")
        .await;
    let key = listed["exceptions"][0]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no checkout exception: {listed}"))
        .to_string();
    (key, sku.to_string())
}
