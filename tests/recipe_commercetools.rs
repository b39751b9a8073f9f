//! The commercetools recipe (`config/connectors/commercetools.toml`) end
//! to end: Moat reads prices, stock, customers and orders from the
//! simulator speaking commercetools (`--dialect commercetools`), products
//! and categories through the Akeneo recipe from the simulator speaking
//! Akeneo (the two recipes in one config, as a shop running both would
//! have them), and serves what a protocol v1 setup serves for the same
//! seeded catalog; takes commercetools' change messages the way a
//! Subscription's relay posts them; finds silent drift; and `contract
//! verify` checks the answers through the recipe's maps.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use moat::config::{Config, Secrets, SystemSecrets};
use moat::sim::{Dialect, SimConfig};
use support::process::moat;
use support::{EVENTS_SECRET, Moat, Sim, customer_in, error_codes, eventually};

const PROJECT: &str = "moat-demo";

fn recipe() -> PathBuf {
    connectors("commercetools")
}

fn connectors(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config/connectors/{name}.toml"))
}

/// A test gateway with both recipes over it: the PIM (Akeneo) at
/// `akeneo`, the commercetools system at `ct`; anything else at `v1`.
fn config(v1: &Sim, akeneo: &Sim, ct: &Sim) -> Config {
    let loaded = Config::from_files(&[&connectors("akeneo"), &recipe()], false)
        .expect("the recipes load together");
    let mut config = support::config(&v1.url);
    config.systems = loaded.systems;
    config.entities = loaded.entities;
    let system = config.systems.get_mut("commercetools").expect("its system");
    system.url = Some(format!("{}/{PROJECT}", ct.url));
    let pim = config.systems.get_mut("akeneo").expect("the PIM");
    pim.url = Some(akeneo.url.clone());
    config
}

fn secrets() -> Secrets {
    let mut secrets = support::secrets();
    secrets.systems.insert(
        "akeneo".into(),
        SystemSecrets {
            client_id: Some("moat-connection".into()),
            client_secret: Some("connection-secret".into()),
            user: Some("moat_api_user".into()),
            password: Some("api-password".into()),
            ..SystemSecrets::default()
        },
    );
    secrets.systems.insert(
        "commercetools".into(),
        SystemSecrets {
            client_id: Some("moat-client".into()),
            client_secret: Some("moat-secret".into()),
            ..SystemSecrets::default()
        },
    );
    secrets
}

/// The commercetools simulator, sending its change messages to `port`.
async fn commercetools(events_to: Option<u16>) -> Sim {
    Sim::start_with(SimConfig {
        products: 500,
        dialect: Dialect::Commercetools,
        events_to: events_to.map(|port| format!("http://127.0.0.1:{port}")),
        events_secret: Some(EVENTS_SECRET.into()),
        ..SimConfig::default()
    })
    .await
}

const PAGE: &str = r#"query($sku: String!) { product(sku: $sku) { sku name description
    price { price { amount currencyCode } compareAtPrice { amount } }
    usd: price(currencyCode: "USD") { price { amount currencyCode } }
    availability { quantity } } }"#;

async fn page(moat: &Moat, token: Option<&str>, sku: &str) -> Value {
    match token {
        Some(token) => {
            moat.query_with_token(token, PAGE, json!({ "sku": sku }))
                .await
        }
        None => moat.query(PAGE, json!({ "sku": sku })).await,
    }
}

fn amount(page: &Value) -> String {
    page["data"]["product"]["price"]["price"]["amount"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn akeneo_and_commercetools_serve_what_protocol_v1_serves_and_take_their_events() {
    let port = support::free_port();
    let pim = Sim::start().await;
    let ct = commercetools(Some(port)).await;
    let akeneo = Sim::start_with(SimConfig {
        products: 500,
        dialect: Dialect::Akeneo,
        ..SimConfig::default()
    })
    .await;
    let v1 = Moat::start(support::config(&pim.url)).await;
    let mut c = config(&pim, &akeneo, &ct);
    c.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let rest = Moat::start_with_secrets(c, secrets()).await;

    // Product pages, anonymous and per segment: the same as protocol v1.
    let (_, wholesale, _) = customer_in(&pim, "wholesale").await;
    let (_, vip, vip_orders) = customer_in(&pim, "vip").await;
    for token in [None, Some(wholesale.as_str()), Some(vip.as_str())] {
        for sku in ["SKU-000001", "SKU-000002", "SKU-000003", "SKU-000004"] {
            let (want, got) = (page(&v1, token, sku).await, page(&rest, token, sku).await);
            assert!(got.get("errors").is_none(), "{got}");
            assert_eq!(got, want, "{sku} as {token:?}");
        }
    }
    let anonymous = amount(&page(&rest, None, "SKU-000002").await);
    let as_vip = amount(&page(&rest, Some(&vip), "SKU-000002").await);
    assert_ne!(
        anonymous, as_vip,
        "vip is a customer group with its own price"
    );
    let stats = ct.stats().await;
    assert!(
        stats["requests"]["erp.prices"].as_u64() > Some(0),
        "{stats}"
    );
    assert!(stats["tokens_issued"].as_u64() >= Some(1), "{stats}");
    assert_eq!(stats["unauthorized"], 0, "{stats}");
    let pim_read = akeneo.requests("pim.products").await;
    assert!(pim_read > 0, "products came from Akeneo");

    // The signed-in customer and their own order; another's is refused.
    const ME: &str = r#"query($id: ID!) { viewer { email name segment }
        order(id: $id) { id status total { amount currencyCode } lines { sku quantity unitPrice { amount } } placedAt } }"#;
    let mine = json!({ "id": vip_orders[0] });
    let (want, got) = (
        v1.query_with_token(&vip, ME, mine.clone()).await,
        rest.query_with_token(&vip, ME, mine).await,
    );
    assert!(got.get("errors").is_none(), "{got}");
    assert_eq!(got, want);
    assert_eq!(got["data"]["viewer"]["segment"], "vip");
    let (_, _, others) = customer_in(&pim, "wholesale").await;
    let theirs = rest
        .query_with_token(&vip, ME, json!({ "id": others[0] }))
        .await;
    assert_eq!(theirs["data"]["order"], Value::Null, "{theirs}");
    assert_eq!(error_codes(&theirs), ["FORBIDDEN"], "{theirs}");
    let stranger = rest
        .query_with_token(
            "ct_000000000000000000000000",
            ME,
            json!({ "id": "ord-00001" }),
        )
        .await;
    assert!(!error_codes(&stranger).is_empty(), "{stranger}");

    // Checkout reads prices and stock fresh from commercetools.
    let price = amount(&page(&rest, Some(&vip), "SKU-000004").await);
    let fresh = ct.requests("erp.prices").await;
    let verified = rest
        .query_with_token(
            &vip,
            r#"mutation($price: Decimal!) { verifyCheckout(input: {
                currencyCode: "EUR", displayedTotal: {amount: $price, currencyCode: "EUR"},
                lines: [{sku: "SKU-000004", quantity: 1,
                         displayedUnitPrice: {amount: $price, currencyCode: "EUR"}}] }) {
                ok total { amount } } }"#,
            json!({ "price": price }),
        )
        .await;
    assert_eq!(verified["data"]["verifyCheckout"]["ok"], true, "{verified}");
    assert!(ct.requests("erp.prices").await > fresh, "read fresh");

    // A price message (thin: Moat refetches the sku's prices).
    let sku = "SKU-000005";
    let before = amount(&page(&rest, None, sku).await);
    ct.set_price(
        sku,
        json!({ "amount": "43.21", "segment": "default", "emit_event": true }),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            amount(&page(&rest, None, sku).await) == "43.21"
        })
        .await,
        "was {before}, the message should have moved it"
    );

    // A stock message (fat), delivered twice: applied once, then a duplicate.
    let metric = |outcome: &str| {
        format!("moat_events_total{{source=\"commercetools\",outcome=\"{outcome}\"}}")
    };
    let applied = rest.metric(&metric("applied")).await;
    let duplicates = rest.metric(&metric("duplicate")).await;
    let events = ct_post(&ct, "/_sim/events", json!({ "form": "fat", "chaos": true })).await;
    assert!(events.is_success());
    let stock = ct_put(&ct, sku, json!({ "available": 7, "emit_event": true })).await;
    assert!(stock.is_success());
    let quantity = |p: Value| p["data"]["product"]["availability"]["quantity"].clone();
    assert!(
        eventually(Duration::from_secs(5), || async {
            quantity(page(&rest, None, sku).await) == 7
                && rest.metric(&metric("duplicate")).await == duplicates + 1.0
        })
        .await,
        "{:?}",
        rest.admin_get("/admin/status").await
    );
    assert_eq!(rest.metric(&metric("applied")).await, applied + 1.0);

    // A change notification (ResourceUpdated: thin, Moat refetches).
    let thin = ct_post(
        &ct,
        "/_sim/events",
        json!({ "form": "thin", "chaos": false }),
    )
    .await;
    assert!(thin.is_success());
    let stock = ct_put(&ct, sku, json!({ "available": 9, "emit_event": true })).await;
    assert!(stock.is_success());
    assert!(
        eventually(Duration::from_secs(5), || async {
            quantity(page(&rest, None, sku).await) == 9
        })
        .await,
        "a thin inventory-entry change is refetched"
    );

    // A delivery not signed with the relay's secret is refused.
    let forged = json!({"notificationType": "Message", "id": "forged-1",
        "type": "InventoryEntryQuantitySet", "newAvailableQuantity": 999,
        "resourceVersion": 99, "createdAt": support::events::rfc3339(support::events::now()),
        "resourceUserProvidedIdentifiers": {"sku": sku}});
    let headers = [
        ("webhook-id", "forged-1".to_string()),
        ("webhook-timestamp", support::events::now().to_string()),
        (
            "webhook-signature",
            "v1,bm90IHRoZSBzaWduYXR1cmU=".to_string(),
        ),
    ];
    let body = forged.to_string().into_bytes();
    let (status, refused) =
        support::events::post(&rest, "commercetools", body, &headers, "application/json").await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(quantity(page(&rest, None, sku).await), 9);

    // Silent drift: reconciliation finds it and repairs it.
    let drifted = "SKU-000003";
    let held = amount(&page(&rest, None, drifted).await);
    ct.set_price(drifted, json!({ "amount": "11.11", "segment": "default" }))
        .await;
    assert_eq!(amount(&page(&rest, None, drifted).await), held, "no event");
    let (status, pass) = rest.admin_post("/admin/reconcile/prices", json!({})).await;
    assert!(status < 300, "{status} {pass}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            amount(&page(&rest, None, drifted).await) == "11.11"
        })
        .await,
        "{pass}"
    );
    let (_, exceptions) = rest
        .admin_get("/admin/exceptions?system=commercetools")
        .await;
    assert!(
        exceptions.to_string().contains(drifted),
        "the drift is an exception for its owner: {exceptions}"
    );

    // A malformed answer: its broken resource fails its own sku only. The
    // products are read first, so the three prices are asked in one call
    // (products landing in L1 at different moments would split it).
    let names: String = (21..=23)
        .map(|i| format!(r#"p{i}: product(sku: "SKU-{i:06}") {{ name }} "#))
        .collect();
    let named = rest.query(&format!("{{ {names} }}"), json!({})).await;
    assert!(named.get("errors").is_none(), "{named}");
    ct.fault("erp", json!({ "malformed_rate": 1.0 })).await;
    let aliases: String = (21..=23)
        .map(|i| {
            format!(r#"p{i}: product(sku: "SKU-{i:06}") {{ price {{ price {{ amount }} }} }} "#)
        })
        .collect();
    let three = rest.query(&format!("{{ {aliases} }}"), json!({})).await;
    let priced = (21..=23)
        .filter(|i| three["data"][format!("p{i}")]["price"]["price"]["amount"].is_string())
        .count();
    assert_eq!(priced, 2, "{three}");
    assert!(!error_codes(&three).is_empty(), "{three}");
    v1.stop().await;
    rest.stop().await;
}

async fn ct_post(ct: &Sim, path: &str, body: Value) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{}{path}", ct.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
}

async fn ct_put(ct: &Sim, sku: &str, body: Value) -> reqwest::StatusCode {
    reqwest::Client::new()
        .put(format!("{}/_sim/inventory/{sku}", ct.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_verify_checks_commercetools_through_the_recipe() {
    let ct = commercetools(None).await;
    let recipe = recipe();
    let url = format!("{}/{PROJECT}", ct.url);
    let env = [
        ("MOAT_COMMERCETOOLS_URL", url.as_str()),
        ("MOAT_COMMERCETOOLS_CLIENT_ID", "moat-client"),
        ("MOAT_COMMERCETOOLS_CLIENT_SECRET", "moat-secret"),
        ("MOAT_EVENTS_SECRET_COMMERCETOOLS", EVENTS_SECRET),
    ];
    let (_, token, orders) = customer_in(&ct, "wholesale").await;
    let args = [
        "contract",
        "verify",
        "--system",
        "commercetools",
        "--config",
        recipe.to_str().unwrap(),
        "--skus",
        "SKU-000001,SKU-000002,SKU-000003",
        "--customer-token",
        &token,
        "--order-id",
        &orders[0],
    ];
    let (code, said) = moat(&args, &env).await;
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("/product-projections"), "{said}");

    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/moat.toml");
    let files = [site.to_str().unwrap(), recipe.to_str().unwrap()];
    let (code, said) = moat(&["check-config", files[0], files[1]], &env).await;
    assert_eq!(code, 0, "{said}");

    // One resource per answer broken: that one is named, by route, index
    // in commercetools' answer and the field as mapped; the rest pass.
    ct.fault("erp", json!({ "malformed_rate": 1.0 })).await;
    let (code, said) = moat(&args, &env).await;
    assert_eq!(code, 1, "{said}");
    for route in ["route prices, item ", "route inventory, item "] {
        assert_eq!(said.matches(route).count(), 1, "{route}: {said}");
    }
    assert!(said.contains("$.items["), "{said}");
}
