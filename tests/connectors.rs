//! Connectors (`protocol = "rest"`): a system read through routes of its
//! own, whatever its API looks like. Here the ERP's API is the simulator's
//! own, reached the way a foreign one is (a route per read, jq to select
//! and map items, the money re-read exactly), so every guarantee can be
//! checked against protocol v1's answers: the same prices, checkout from
//! fresh reads, a broken item failing its key alone and named by route
//! and item.

mod support;

use serde_json::{Value, json};

use moat::config::Config;
use support::process::moat;
use support::{Moat, Sim, error_codes};

const PAGE: &str = r#"query($sku: String!) { product(sku: $sku) {
    price { price { amount currencyCode } } availability { quantity } } }"#;

/// The ERP as a connector over the simulator's routes (`erp_file`),
/// prices asked two skus at a time.
fn erp_connector(sim: &Sim, map_price: &str) -> Config {
    erp_connector_with(sim, map_price, "")
}

/// `erp_connector` with `more` (TOML) after it.
fn erp_connector_with(sim: &Sim, map_price: &str, more: &str) -> Config {
    let file = erp_file(sim, "connector-erp", map_price, more);
    let loaded = Config::from_sources(Some(&file), false).expect("a valid config");
    let mut config = support::config(&sim.url);
    config.systems = loaded.systems;
    if let Some(erp) = config.systems.get_mut("erp") {
        erp.routes
            .get_mut("prices")
            .expect("a prices route")
            .max_batch = Some(2);
    }
    config
}

/// The usual price map: the amount as decimal text, back to minor units.
const PRICE_MAP: &str = r#"{sku, segment: $segment, currency: $currency,
    amount: ((.amount | tostring) as $a | ($a[:-2] + "." + $a[-2:]) | minor_units($currency)),
    compareAtAmount, version, updatedAt}"#;

async fn shown(moat: &Moat, sku: &str) -> Value {
    moat.query(PAGE, json!({ "sku": sku })).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_serves_what_protocol_v1_serves() {
    let sim = Sim::start().await;
    let v1 = Moat::start(support::config(&sim.url)).await;
    let rest = Moat::start(erp_connector(&sim, PRICE_MAP)).await;
    for sku in ["SKU-000001", "SKU-000002", "SKU-000003"] {
        let (want, got) = (shown(&v1, sku).await, shown(&rest, sku).await);
        assert!(got.get("errors").is_none(), "{got}");
        assert_eq!(got, want, "{sku}");
    }

    // Five products never read: their prices in calls of two (the
    // route's max_batch), their stock in one.
    let (prices, stock) = (
        sim.requests("erp.prices").await,
        sim.requests("erp.inventory").await,
    );
    let aliases: String = (11..=15)
        .map(|i| format!(r#"p{i}: product(sku: "SKU-{i:06}") {{ price {{ price {{ amount }} }} availability {{ quantity }} }} "#))
        .collect();
    let five = rest.query(&format!("{{ {aliases} }}"), json!({})).await;
    assert!(five.get("errors").is_none(), "{five}");
    assert_eq!(sim.requests("erp.prices").await - prices, 3, "{five}");
    assert_eq!(sim.requests("erp.inventory").await - stock, 1);

    // Checkout reads prices and stock fresh (no quote route needed).
    let price = shown(&rest, "SKU-000004").await["data"]["product"]["price"]["price"]["amount"]
        .as_str()
        .unwrap()
        .to_string();
    let quote_calls = sim.requests("erp.prices").await;
    let verified = rest
        .query(
            r#"mutation($price: Decimal!) { verifyCheckout(input: {
                currencyCode: "EUR", displayedTotal: {amount: $price, currencyCode: "EUR"},
                lines: [{sku: "SKU-000004", quantity: 1,
                         displayedUnitPrice: {amount: $price, currencyCode: "EUR"}}] }) {
                ok total { amount } } }"#,
            json!({ "price": price }),
        )
        .await;
    assert_eq!(verified["data"]["verifyCheckout"]["ok"], true, "{verified}");
    assert!(sim.requests("erp.prices").await > quote_calls, "read fresh");
    let (_, status) = rest.admin_get("/admin/status").await;
    assert_eq!(status["upstreams"]["erp"]["protocol"], "rest", "{status}");
    assert_eq!(status["upstreams"]["pim"]["protocol"], "v1", "{status}");
    v1.stop().await;
    rest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_the_map_fails_on_fails_alone_and_is_named() {
    let sim = Sim::start().await;
    let map =
        format!(r#"if .sku == "SKU-000007" then error("no such field") else {PRICE_MAP} end"#);
    let mut config = erp_connector(&sim, &map);
    config
        .systems
        .get_mut("erp")
        .unwrap()
        .routes
        .get_mut("prices")
        .unwrap()
        .max_batch = None;
    let moat = Moat::start(config).await;
    let both = moat
        .query(
            r#"{ a: product(sku: "SKU-000006") { price { price { amount } } }
                 b: product(sku: "SKU-000007") { price { price { amount } } } }"#,
            json!({}),
        )
        .await;
    assert!(
        both["data"]["a"]["price"]["price"]["amount"].is_string(),
        "{both}"
    );
    assert_eq!(both["data"]["b"]["price"], Value::Null, "{both}");
    assert_eq!(error_codes(&both), ["UPSTREAM_UNAVAILABLE"], "{both}");
    let (_, exceptions) = moat.admin_get("/admin/exceptions?system=erp").await;
    let found = exceptions["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "SKU-000007")
        .cloned()
        .unwrap_or_default();
    let said = found["ownerSays"].to_string();
    assert!(
        said.contains("route prices, item ") && said.contains("no such field"),
        "{exceptions}"
    );
    moat.stop().await;
}

#[test]
fn a_bad_route_is_a_config_error_naming_its_key_and_position() {
    let file = support::process::config_file(
        "connector-bad",
        r#"
[systems.shop]
url = "http://127.0.0.1:9"
protocol = "rest"

[systems.shop.routes.prices]
request = "GET /prices?skus={skuz}"
items = ".items[]"
map = '''{sku: .sku,
  amount: .amount | minor_units(}'''

[systems.shop.routes.inventory]
request = "GET /stock?skus={skus}"
items = ".stock | nosuch"
map = "."

[entities]
prices = "shop"
inventory = "shop"
"#,
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for named in [
        "`systems.shop.routes.prices.request`: {skuz} is not a placeholder",
        "`systems.shop.routes.prices.map`: line 2, column 33",
        "`systems.shop.routes.inventory.items`: line 1, column 10: nosuch",
    ] {
        assert!(said.contains(named), "{named}: {said}");
    }

    let file = support::process::config_file(
        "connector-bad-defs",
        r#"
[systems.shop]
url = "http://127.0.0.1:9"
protocol = "rest"
defs = "def price: {sku: .sku, segment: $segment};"

[systems.shop.routes.inventory]
request = "GET /stock?skus={skus}"
map = "."

[entities]
inventory = "shop"
"#,
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("`systems.shop.defs`: line 1, column 33: $segment is not defined"),
        "{said}"
    );
}

/// HMAC-SHA256 of `body` with the test secret, hex.
fn signed(body: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(support::EVENTS_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_systems_own_events_are_verified_mapped_and_applied_once() {
    let sim = Sim::start().await;
    let events = r#"
[systems.erp.events]
signature = { scheme = "hmac", header = "x-erp-signature", encoding = "hex" }
map = '''.changes[] | {id: .eventId, type: "price.updated", occurredAt: .at,
    segment: "default", currency: "EUR", item: .price}'''
"#;
    let moat = Moat::start(erp_connector_with(&sim, PRICE_MAP, events)).await;
    let sku = "SKU-000031";
    let before = shown(&moat, sku).await;
    let old = before["data"]["product"]["price"]["price"]["amount"].clone();
    assert!(old.is_string(), "{before}");
    let item = sim
        .get_json(&format!(
            "/erp/v1/prices?skus={sku}&segment=default&currency=EUR"
        ))
        .await["items"][0]
        .clone();
    let mut changed = item.clone();
    changed["amount"] = json!(4321);
    changed["version"] = json!(item["version"].as_u64().unwrap() + 1);
    let body = json!({ "changes": [{ "eventId": "erp-77", "at": support::events::rfc3339(support::events::now()), "price": changed }] }).to_string();

    let post = |body: String, signature: String| {
        let moat = &moat;
        async move {
            let r = moat
                .http
                .post(format!("{}/events/erp", moat.url))
                .header("content-type", "application/json")
                .header("x-erp-signature", signature)
                .body(body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, refused) = post(body.clone(), signed("something else")).await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(shown(&moat, sku).await, before, "nothing applied");

    let (status, receipt) = post(body.clone(), signed(&body)).await;
    assert_eq!(
        (status, receipt["outcome"].as_str()),
        (200, Some("applied")),
        "{receipt}"
    );
    let after = shown(&moat, sku).await;
    assert_eq!(
        after["data"]["product"]["price"]["price"]["amount"], "43.21",
        "{after}"
    );
    let (_, again) = post(body.clone(), signed(&body)).await;
    assert_eq!(again["outcome"], "duplicate", "{again}");
    moat.stop().await;
}

/// The ERP as a connector over the simulator's routes (prices mapped by
/// `map_price`, stock renamed), with `more` after it, as a config file.
fn erp_file(sim: &Sim, name: &str, map_price: &str, more: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[systems.erp]
url = "{url}"
protocol = "rest"
defs = '''def price($segment; $currency): {map_price};'''

[systems.erp.routes.prices]
request = "GET /erp/v1/prices?skus={{skus}}&segment={{segment}}&currency={{currency}}"
items = ".items[]"
map = "price($segment; $currency)"

[systems.erp.routes.inventory]
request = "GET /erp/v1/inventory?skus={{skus}}"
items = ".items[]"
map = "{{sku, available: .available, version, updatedAt}}"
{more}
"#,
        url = sim.url,
    );
    support::process::config_file(name, &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_verify_and_connector_try_go_through_the_mapping() {
    let sim = Sim::start().await;
    let good = erp_file(&sim, "connector-verify-good", PRICE_MAP, "");
    let good = good.to_str().unwrap();
    let skus = "SKU-000001,SKU-000002,SKU-000003";
    let (code, said) = moat(
        &[
            "contract", "verify", "--system", "erp", "--config", good, "--skus", skus,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("GET /erp/v1/prices?skus=SKU-000001,SKU-000002,SKU-000003"),
        "{said}"
    );

    // A map that leaves out the amount of one item: that item, by its
    // index in the system's answer and the field as mapped.
    let broken = format!(
        r#"if .sku == "SKU-000002" then del(.amount) | {{sku, segment: $segment, currency: $currency, version, updatedAt}} else {PRICE_MAP} end"#
    );
    let bad = erp_file(&sim, "connector-verify-bad", &broken, "");
    let bad = bad.to_str().unwrap();
    let (code, said) = moat(
        &[
            "contract", "verify", "--system", "erp", "--config", bad, "--skus", skus,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("amount is missing (route prices, item 1, as mapped)"),
        "{said}"
    );
    assert_eq!(
        said.matches("as mapped").count(),
        1,
        "only that item: {said}"
    );

    let (code, said) = moat(
        &[
            "connector",
            "try",
            "--system",
            "erp",
            "--record",
            "prices",
            "--key",
            "SKU-000003",
            "--config",
            good,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{said}");
    for shown in [
        "> GET /erp/v1/prices?skus=SKU-000003&segment=default&currency=EUR",
        "< 200",
        "= ok route prices, item 0",
        "\"sku\": \"SKU-000003\"",
    ] {
        assert!(said.contains(shown), "{shown}: {said}");
    }
    let (code, said) = moat(
        &[
            "connector",
            "try",
            "--system",
            "erp",
            "--record",
            "customers",
            "--config",
            good,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("needs --key"), "{said}");
}
