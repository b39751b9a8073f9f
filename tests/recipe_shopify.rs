//! The Shopify recipe (`config/connectors/shopify.toml`) end to end, over
//! the simulator speaking Shopify's Admin GraphQL API (`--dialect
//! shopify`): Shopify alone owns every record, and a shopper sees what
//! protocol v1's simulator serves for the same catalog; a webhook sent
//! Shopify's way is applied once; reconciliation finds silent drift; and
//! `moat contract verify` checks the mapped items, naming the broken one.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use moat::config::{Config, Secrets, SystemSecrets};
use moat::sim::{Dialect, SimConfig};
use support::process::moat;
use support::shop::{cart, shown, verify};
use support::{EVENTS_SECRET, Moat, Sim, customer_in, decimal, eventually};

const PRODUCTS: usize = 200;
/// The app's client, as the Dev Dashboard gives it.
const CLIENT: (&str, &str) = ("moat-app", "client-secret");
const API: &str = "/admin/api/2025-07";

fn recipe() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/connectors/shopify.toml")
}

async fn shopify(events_to: Option<String>) -> Sim {
    Sim::start_with(SimConfig {
        products: PRODUCTS,
        dialect: Dialect::Shopify,
        events_to,
        events_secret: Some(EVENTS_SECRET.into()),
        oauth_client: Some((CLIENT.0.into(), CLIENT.1.into())),
        ..SimConfig::default()
    })
    .await
}

/// A gateway with the recipe over a test config: every record from the
/// Shopify simulator at `shop`.
async fn gateway(shop: &Sim, listen: Option<u16>) -> Moat {
    let loaded = Config::from_files(&[recipe().as_path()], false).expect("the recipe loads");
    // The v1 upstream is never asked: the recipe owns every record.
    let mut config = support::config("http://127.0.0.1:9");
    config.systems = loaded.systems;
    config.entities = loaded.entities;
    config.reconcile.enabled = false;
    if let Some(port) = listen {
        config.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    }
    let system = config
        .systems
        .get_mut("shopify")
        .expect("[systems.shopify]");
    system.url = Some(format!("{}{API}", shop.url));
    let mut secrets: Secrets = support::secrets();
    secrets.systems.insert(
        "shopify".into(),
        SystemSecrets {
            client_id: Some(CLIENT.0.into()),
            client_secret: Some(CLIENT.1.into()),
            ..SystemSecrets::default()
        },
    );
    Moat::start_with_secrets(config, secrets).await
}

const PAGE: &str = r#"query($sku: String!) { product(sku: $sku) {
    sku name description categories { id }
    eur: price { price { amount currencyCode } }
    usd: price(currencyCode: "USD") { price { amount currencyCode } }
    availability { quantity } } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopify_shop_shows_what_protocol_v1_shows_and_its_customers_their_own() {
    let shop = shopify(None).await;
    let v1 = Sim::start_with(SimConfig {
        products: PRODUCTS,
        ..SimConfig::default()
    })
    .await;
    let moat = gateway(&shop, None).await;
    let reference = Moat::start(support::config(&v1.url)).await;

    for sku in ["SKU-000001", "SKU-000002", "SKU-000017"] {
        let (got, want) = (
            moat.query(PAGE, json!({ "sku": sku })).await,
            reference.query(PAGE, json!({ "sku": sku })).await,
        );
        assert!(got.get("errors").is_none(), "{got}");
        let (got, want) = (&got["data"]["product"], &want["data"]["product"]);
        for field in ["sku", "name", "description", "eur", "usd", "availability"] {
            assert_eq!(got[field], want[field], "{sku} {field}");
        }
        // Collections have no tree: a product is in the collections of
        // its categories, the same ids.
        assert_eq!(got["categories"], want["categories"], "{sku}");
    }
    // One token from the grant served every call.
    let stats = shop.stats().await;
    assert_eq!(stats["tokens_issued"], 1, "{stats}");
    assert_eq!(stats["unauthorized"], 0, "{stats}");
    let categories = moat.query("{ categories { id name } }", json!({})).await;
    assert_eq!(
        categories["data"]["categories"].as_array().map(Vec::len),
        Some(24),
        "{categories}"
    );
    let listed = moat
        .query(
            "{ products(first: 30) { nodes { sku } pageInfo { hasNextPage endCursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["data"]["products"]["nodes"][29]["sku"], "SKU-000030",
        "{listed}"
    );
    assert_eq!(listed["data"]["products"]["pageInfo"]["hasNextPage"], true);
    let next = moat
        .query(
            "query($after: String) { products(first: 30, after: $after) { nodes { sku } } }",
            json!({ "after": listed["data"]["products"]["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(
        next["data"]["products"]["nodes"][0]["sku"], "SKU-000031",
        "{next}"
    );
    // A category's products: its collection's, in the same order.
    let in_category = "{ products(first: 8, categoryId: \"cat-03\") { nodes { sku name } } }";
    let (got, want) = (
        moat.query(in_category, json!({})).await,
        reference.query(in_category, json!({})).await,
    );
    assert!(
        got["data"]["products"]["nodes"]
            .as_array()
            .is_some_and(|n| !n.is_empty()),
        "{got}"
    );
    assert_eq!(got["data"], want["data"]);

    // Checkout reads prices and stock fresh from Shopify.
    let item = shown(&moat, None, "SKU-000004").await;
    let calls = shop.requests("erp.prices").await;
    let verified = verify(&moat, None, cart(&[(&item, 1)])).await;
    assert_eq!(verified["data"]["verifyCheckout"]["ok"], true, "{verified}");
    assert!(shop.requests("erp.prices").await > calls, "read fresh");

    // A wholesale customer: found by their token, segment from their tag;
    // Shopify has one price per market, which every segment pays.
    let (id, token, orders) = customer_in(&shop, "wholesale").await;
    let number = |id: &str| {
        id.rsplit('-')
            .next()
            .unwrap()
            .trim_start_matches('0')
            .to_string()
    };
    let theirs = moat
        .query_with_token(
            &token,
            r#"{ viewer { id segment } product(sku: "SKU-000004") { price { price { amount } segment } } }"#,
            json!({}),
        )
        .await;
    assert!(theirs.get("errors").is_none(), "{theirs}");
    assert_eq!(theirs["data"]["viewer"]["id"], number(&id), "{theirs}");
    assert_eq!(theirs["data"]["viewer"]["segment"], "wholesale");
    let price = &theirs["data"]["product"]["price"];
    assert_eq!(price["segment"], "wholesale", "{theirs}");
    assert_eq!(
        price["price"]["amount"],
        item.amount.as_str(),
        "the market price"
    );

    // Their own order, as v1's simulator has it; another's is forbidden.
    let order_query = r#"query($id: ID!) { order(id: $id) { id status total { amount currencyCode } lines { sku quantity unitPrice { amount } } } }"#;
    let own = moat
        .query_with_token(&token, order_query, json!({ "id": number(&orders[0]) }))
        .await;
    assert!(own.get("errors").is_none(), "{own}");
    let oms = v1.get_json(&format!("/oms/v1/orders/{}", orders[0])).await;
    let order = &own["data"]["order"];
    assert_eq!(
        order["total"]["amount"],
        json!(decimal(oms["totalAmount"].as_i64().unwrap()))
    );
    assert_eq!(order["total"]["currencyCode"], oms["currency"]);
    assert_eq!(order["lines"][0]["sku"], oms["lines"][0]["sku"]);
    let (_, _, others) = customer_in(&shop, "vip").await;
    let other = moat
        .query_with_token(&token, order_query, json!({ "id": number(&others[0]) }))
        .await;
    assert_eq!(other["data"]["order"], Value::Null, "{other}");
    assert_eq!(support::error_codes(&other), ["FORBIDDEN"]);

    // Throttled: the price fails, never taken for "no price".
    shop.fault("erp", json!({ "error_rate": 1.0 })).await;
    let throttled = moat
        .query(
            r#"{ product(sku: "SKU-000050") { sku price { price { amount } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        throttled["data"]["product"]["sku"], "SKU-000050",
        "{throttled}"
    );
    assert_eq!(
        throttled["data"]["product"]["price"],
        Value::Null,
        "{throttled}"
    );
    assert_eq!(
        support::error_codes(&throttled),
        ["UPSTREAM_UNAVAILABLE"],
        "{throttled}"
    );
    moat.stop().await;
    reference.stop().await;
}

/// `products/update` as Shopify sends it: the REST product, signed.
fn products_update(variant: u64, sku: &str, price: &str, updated_at: &str) -> (Vec<u8>, String) {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let body = json!({
        "id": variant, "title": "Any", "body_html": "<p>Any</p>", "updated_at": "2026-01-01T00:00:00Z",
        "variants": [{ "id": variant, "product_id": variant, "sku": sku, "price": price,
                       "inventory_item_id": variant, "updated_at": updated_at }],
    })
    .to_string()
    .into_bytes();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(EVENTS_SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (body, signature)
}

async fn amount(moat: &Moat, sku: &str) -> String {
    shown(moat, None, sku).await.amount
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_applied_once_and_drift_is_found() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let shop = shopify(Some(format!("http://127.0.0.1:{port}"))).await;
    let moat = gateway(&shop, Some(port)).await;

    // The simulator's own webhook for a price change, as Shopify sends it.
    let sku = "SKU-000013";
    amount(&moat, sku).await;
    shop.set_price(
        sku,
        json!({ "amount": "33.30", "segment": "default", "emit_event": true }),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            amount(&moat, sku).await == "33.30"
        })
        .await,
        "products/update from the simulator"
    );

    // A product renamed: products/update, and Moat rereads the variant.
    let name = || async {
        moat.query(r#"{ product(sku: "SKU-000014") { name } }"#, json!({}))
            .await["data"]["product"]["name"]
            .clone()
    };
    assert!(name().await.is_string());
    let renamed = reqwest::Client::new()
        .put(format!("{}/_sim/products/prod-000014", shop.url))
        .json(&json!({ "name": "Renamed Lamp", "emit_event": true }))
        .send()
        .await
        .unwrap();
    assert!(renamed.status().is_success());
    assert!(
        eventually(Duration::from_secs(5), || async {
            name().await == "Renamed Lamp"
        })
        .await,
        "products/update for a new title"
    );

    // One delivered twice (Shopify retries with the same webhook id).
    let sku = "SKU-000021";
    amount(&moat, sku).await;
    shop.set_price(sku, json!({ "amount": "44.40", "segment": "default" }))
        .await;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let (body, signature) = products_update(21, sku, "44.40", &now);
    let deliver = || {
        let (moat, body, signature, now) = (&moat, body.clone(), signature.clone(), now.clone());
        async move {
            let r = moat
                .http
                .post(format!("{}/events/shopify", moat.url))
                .header("content-type", "application/json")
                .header("x-shopify-topic", "products/update")
                .header(
                    "x-shopify-webhook-id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                )
                .header("x-shopify-triggered-at", now)
                .header("x-shopify-hmac-sha256", signature)
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
    let (status, first) = deliver().await;
    assert_eq!(status, 200, "{first}");
    let outcomes = |r: &Value| -> Vec<String> {
        r["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["outcome"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(outcomes(&first).contains(&"applied".to_string()), "{first}");
    assert_eq!(amount(&moat, sku).await, "44.40");
    let (_, again) = deliver().await;
    assert_eq!(outcomes(&again), ["duplicate", "duplicate"], "{again}");

    // A change Shopify sent no webhook for: reconciliation finds it.
    let sku = "SKU-000008";
    let before = amount(&moat, sku).await;
    shop.set_price(sku, json!({ "amount": "1.23", "segment": "default" }))
        .await;
    assert_eq!(amount(&moat, sku).await, before, "cached");
    let (status, report) = moat.admin_post("/admin/reconcile/prices", json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert!(report["drifted"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(amount(&moat, sku).await, "1.23", "repaired");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_verify_checks_the_mapped_items_and_names_a_broken_one() {
    let shop = shopify(None).await;
    let url = format!("{}{API}", shop.url);
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/moat.toml");
    let (base, recipe) = (base.to_str().unwrap().to_string(), recipe());
    let args = [
        "contract",
        "verify",
        "--system",
        "shopify",
        "--config",
        &base,
        "--config",
        recipe.to_str().unwrap(),
        "--skus",
        "SKU-000001,SKU-000002,SKU-000003",
    ];
    let env = [
        ("MOAT_SHOPIFY_URL", url.as_str()),
        ("MOAT_SHOPIFY_CLIENT_ID", CLIENT.0),
        ("MOAT_SHOPIFY_CLIENT_SECRET", CLIENT.1),
        ("MOAT_EVENTS_SECRET_SHOPIFY", EVENTS_SECRET),
    ];
    // The shipped config and the recipe need only these variables.
    let check = ["check-config", &base, recipe.to_str().unwrap()];
    let (code, said) = moat(&check, &env).await;
    assert_eq!(code, 0, "{said}");
    let (code, said) = moat(&args, &env).await;
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("0 violations"), "{said}");

    shop.fault("pim", json!({ "malformed_rate": 1.0 })).await;
    let (code, said) = moat(&args, &env).await;
    assert_eq!(code, 1, "{said}");
    // Each broken answer has one broken variant, named by route, index
    // and mapped path; the other variants of that answer pass.
    let mut answers: Vec<Vec<&str>> = Vec::new();
    for line in said.lines() {
        match answers.last_mut() {
            Some(answer) if line.starts_with("    ") => answer.push(line),
            _ => answers.push(vec![line]),
        }
    }
    let mut broken = 0;
    for answer in answers.iter().filter(|a| a[0].starts_with("  FAIL 200")) {
        let named: Vec<&&str> = answer.iter().filter(|l| l.contains("as mapped)")).collect();
        assert_eq!(named.len(), 1, "one object per answer: {answer:?}");
        assert!(
            named[0].contains("(route ") && named[0].contains(", item "),
            "{answer:?}"
        );
        broken += 1;
    }
    assert!(broken >= 1, "{said}");
}
