//! `moat admin` as people use it, against a running gateway: tables that
//! fit 100 columns with the columns they promise, `--json` giving the API's
//! answer unchanged, options anywhere on the line, entities in either
//! spelling, one-sentence refusals with an exit code per kind (the DLQ
//! without Redis its own), exceptions filtered (an unknown filter refused
//! by name), and dead letters naming their record.

mod support;

use std::process::Output;

use serde_json::{Value, json};

use support::events::{send, shown_price, thin_price_event};
use support::redis::RedisServer;
use support::{ADMIN_TOKEN, Moat, Sim, config};

/// Runs `moat admin ARGS` with the admin token (unless `token` says
/// otherwise).
fn admin(args: &[&str], token: Option<&str>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_moat"));
    command
        .arg("admin")
        .args(args)
        .env_remove("MOAT_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("MOAT_ADMIN_TOKEN", token);
    }
    command.output().expect("moat admin")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Runs it and expects success: its output.
fn table(args: &[&str]) -> String {
    let out = admin(args, Some(ADMIN_TOKEN));
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let text = stdout(&out);
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "{args:?}: wider than 100:\n{text}"
        );
    }
    text
}

fn json_of(args: &[&str]) -> Value {
    let text = table(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_json_spellings_filters_and_dead_letters() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let mut c = config(&sim.url);
    c.redis.url = Some(redis.url());
    let moat = Moat::start(c).await;
    let url = moat.admin_url.clone();
    let url = url.as_str();

    // Status: each system's breaker, reason, limit, p99 and errors, the
    // cache tiers, Redis; --url after the subcommand works as well.
    let status = table(&["status", "--url", url]);
    let header = status.lines().next().unwrap_or_default();
    for column in ["system", "breaker", "reason", "limit", "p99", "errors"] {
        assert!(header.contains(column), "{column}: {status}");
    }
    for system in ["pim", "erp", "crm", "oms"] {
        assert!(status.lines().any(|l| l.starts_with(system)), "{status}");
    }
    assert!(
        status.contains("cache tier") && status.contains("price"),
        "{status}"
    );
    assert!(
        status.contains("redis") && status.contains("reachable"),
        "{status}"
    );

    // --json: the API's answer as it is, the flag anywhere.
    let (_, api_limits) = moat.admin_get("/admin/limits").await;
    assert_eq!(json_of(&["--url", url, "--json", "limits"]), api_limits);
    assert_eq!(json_of(&["limits", "--json", "--url", url]), api_limits);
    let limits = table(&["limits", "--url", url]);
    assert!(
        limits.starts_with("system") && limits.contains("checkout reserve"),
        "{limits}"
    );
    let (_, api_status) = moat.admin_get("/admin/status").await;
    let cli_status = json_of(&["status", "--json", "--url", url]);
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&cli_status), keys(&api_status));
    assert_eq!(
        cli_status["upstreams"]["erp"]["limit"],
        api_status["upstreams"]["erp"]["limit"]
    );

    // Either spelling, in purge and reconcile alike.
    for entity in ["price", "prices"] {
        let purged = table(&["purge", entity, "SKU-000001", "--url", url]);
        assert!(purged.starts_with("purged price"), "{purged}");
    }
    shown_price(&moat, "SKU-000002").await;
    for entity in ["price", "prices", "product"] {
        let report = table(&["reconcile", entity, "--url", url]);
        assert!(
            report.starts_with("entity") && report.contains("checked"),
            "{report}"
        );
    }
    let out = admin(&["--url", url, "purge", "pricez"], Some(ADMIN_TOKEN));
    assert_eq!(out.status.code(), Some(2), "usage: {}", stderr(&out));
    assert!(
        stderr(&out).contains("\"pricez\" is not an entity"),
        "{}",
        stderr(&out)
    );

    // A checkout shown a wrong price: an exception found by checkout.
    let cart = json!({
        "currencyCode": "EUR",
        "lines": [{ "sku": "SKU-000005", "quantity": 1, "priceToken": "forged",
                    "displayedUnitPrice": { "amount": "1.00", "currencyCode": "EUR" } }],
        "displayedTotal": { "amount": "1.00", "currencyCode": "EUR" },
    });
    let verified = moat
        .query(
            "mutation($input: VerifyCheckoutInput!) { verifyCheckout(input: $input) { ok mismatches { kind } } }",
            json!({ "input": cart }),
        )
        .await;
    assert_eq!(
        verified["data"]["verifyCheckout"]["ok"], false,
        "{verified}"
    );
    let found = table(&[
        "exceptions",
        "--found-by",
        "checkout",
        "--since",
        "1h",
        "--url",
        url,
    ]);
    let header = found.lines().next().unwrap_or_default();
    for column in [
        "at",
        "system",
        "entity",
        "kind",
        "found by",
        "key",
        "held",
        "owner says",
    ] {
        assert!(header.contains(column), "{column}: {found}");
    }
    assert!(
        found.contains("SKU-000005") && found.contains("1.00 EUR"),
        "{found}"
    );
    let none = table(&["exceptions", "--found-by", "contract", "--url", url]);
    assert!(none.trim_end().ends_with("(none)"), "{none}");
    let listed = json_of(&[
        "exceptions",
        "--kind",
        "price",
        "--entity",
        "prices",
        "--json",
        "--url",
        url,
    ]);
    let first = &listed["exceptions"][0];
    assert_eq!(first["foundBy"], "checkout", "{listed}");
    assert_eq!(
        first["held"],
        json!({ "amount": "1.00", "currencyCode": "EUR" }),
        "{listed}"
    );
    let (status, refused) = moat.admin_get("/admin/exceptions?foundBy=checkout").await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown filter \"foundBy\"")),
        "{refused}"
    );
    let out = admin(
        &["exceptions", "--since", "last tuesday", "--url", url],
        Some(ADMIN_TOKEN),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A dead letter names the record its event is about.
    let sku = "SKU-000011";
    shown_price(&moat, sku).await;
    sim.set_price(sku, json!({ "amount": "55.55", "segment": "default" }))
        .await;
    let prices = sim
        .get_json(&format!(
            "/erp/v1/prices?skus={sku}&segment=default&currency=EUR"
        ))
        .await;
    let version = prices["items"][0]["version"].as_u64().expect("version");
    sim.fault("erp", json!({ "down": true })).await;
    let (status, r) = send(&moat, "erp", &thin_price_event("cli-1", sku, version)).await;
    assert_eq!(status, 202, "{r}");
    let (_, dlq) = moat.admin_get("/admin/dlq").await;
    assert_eq!(
        dlq["items"][0]["record"],
        json!({ "kind": "price", "id": sku, "segment": "default", "currency": "EUR" }),
        "{dlq}"
    );
    let letters = table(&["dlq", "--url", url]);
    let header = letters.lines().next().unwrap_or_default();
    for column in ["id", "source", "type", "record", "tries", "parked"] {
        assert!(header.contains(column), "{column}: {letters}");
    }
    assert!(
        letters.contains("price SKU-000011 (default, EUR)"),
        "{letters}"
    );
    assert!(letters.contains("\n  reason: "), "{letters}");
    assert!(letters.contains("1 waiting"), "{letters}");
    sim.fault("erp", json!({ "down": false })).await;
    table(&["breaker", "erp", "reset", "--url", url]);
    let replayed = table(&["dlq", "replay", "--url", url]);
    assert!(
        replayed.starts_with("replayed 1, 0 still parked"),
        "{replayed}"
    );

    // Refusals: one sentence each, an exit code per kind.
    let out = admin(
        &["--url", url, "limits", "set", "nowhere", "--rps", "1"],
        Some(ADMIN_TOKEN),
    );
    assert_eq!(out.status.code(), Some(1), "refused: {}", stderr(&out));
    let out = admin(&["--url", url, "status"], Some("not-the-token"));
    assert_eq!(out.status.code(), Some(3), "auth: {}", stderr(&out));
    assert!(
        stderr(&out).contains("MOAT_ADMIN_TOKEN"),
        "{}",
        stderr(&out)
    );
    let out = admin(
        &["--url", url, "breaker", "erp", "sideways"],
        Some(ADMIN_TOKEN),
    );
    assert_eq!(out.status.code(), Some(2), "usage: {}", stderr(&out));
    let nowhere = format!("http://127.0.0.1:{}", support::free_port());
    let out = admin(&["status", "--url", &nowhere], Some(ADMIN_TOKEN));
    assert_eq!(out.status.code(), Some(4), "unreachable: {}", stderr(&out));
    for out in [
        admin(
            &["--url", url, "limits", "set", "nowhere", "--rps", "1"],
            Some(ADMIN_TOKEN),
        ),
        admin(&["--url", url, "status"], Some("not-the-token")),
        admin(&["status", "--url", &nowhere], Some(ADMIN_TOKEN)),
    ] {
        let said = stderr(&out);
        assert_eq!(said.lines().count(), 1, "one sentence: {said}");
        assert!(
            said.starts_with("moat admin: ") && said.trim_end().ends_with('.'),
            "{said}"
        );
        assert!(!said.contains('{'), "no JSON: {said}");
    }
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_dead_letter_queue_says_it_needs_redis() {
    let sim = Sim::start().await;
    let moat = Moat::start(config(&sim.url)).await;
    let (status, answer) = moat.admin_get("/admin/dlq").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("REDIS_UNAVAILABLE")),
        "{answer}"
    );
    let (status, answer) = moat.admin_post("/admin/dlq/replay", json!({})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("REDIS_UNAVAILABLE")),
        "{answer}"
    );
    let out = admin(&["dlq", "--url", &moat.admin_url], Some(ADMIN_TOKEN));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("needs Redis") && said.contains("MOAT_REDIS_URL"),
        "{said}"
    );
    assert!(!said.contains("UPSTREAM"), "{said}");
    // The status says so too, without failing.
    let status = table(&["status", "--url", &moat.admin_url]);
    assert!(status.contains("no queue (it needs Redis)"), "{status}");
    moat.stop().await;
}
