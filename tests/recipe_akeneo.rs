//! The Akeneo recipe (`config/connectors/akeneo.toml`) end to end against
//! `moat sim --dialect akeneo` (in process): products and categories from
//! the PIM's REST API v1, through its token flow, everything else from a
//! protocol v1 simulator with the same seeded catalog, so every answer
//! can be compared with protocol v1's.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use moat::config::{Config, Secrets, SystemSecrets};
use moat::sim::{Dialect, SimConfig};
use support::process::{config_file, moat};
use support::{EVENTS_SECRET, Moat, Sim, eventually};

const RECIPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/connectors/akeneo.toml");
const PRODUCTS: usize = 200;

const PAGE: &str = r#"query($sku: String!) { product(sku: $sku) {
    sku name description attributes { name value } categories { id name parent { id } }
    price { price { amount currencyCode } } availability { quantity } } }"#;

/// A Connection's four values: any will do for the simulator, which
/// insists on the flow only.
const CREDENTIALS: [(&str, &str); 4] = [
    ("MOAT_AKENEO_CLIENT_ID", "moat-connection"),
    ("MOAT_AKENEO_CLIENT_SECRET", "connection-secret"),
    ("MOAT_AKENEO_USER", "moat_api_user"),
    ("MOAT_AKENEO_PASSWORD", "api-password"),
];

async fn akeneo_sim(events_to: Option<String>) -> Sim {
    Sim::start_with(SimConfig {
        products: PRODUCTS,
        dialect: Dialect::Akeneo,
        events_to,
        events_secret: Some(EVENTS_SECRET.into()),
        ..SimConfig::default()
    })
    .await
}

async fn v1_sim() -> Sim {
    Sim::start_with(SimConfig {
        products: PRODUCTS,
        ..SimConfig::default()
    })
    .await
}

/// The test config (protocol v1 at `v1`) with the recipe on top, the PIM
/// at `akeneo`.
fn config(v1: &Sim, akeneo: &Sim) -> Config {
    let recipe = Config::from_files(&[Path::new(RECIPE)], false).expect("the recipe loads");
    let mut config = support::config(&v1.url);
    config.systems = recipe.systems;
    config.entities = recipe.entities;
    config
        .systems
        .get_mut("akeneo")
        .expect("[systems.akeneo]")
        .url = Some(akeneo.url.clone());
    config.reconcile.enabled = false;
    config
}

fn secrets() -> Secrets {
    let mut secrets = support::secrets();
    let [id, secret, user, password] = CREDENTIALS.map(|(_, v)| Some(v.to_string()));
    secrets.systems.insert(
        "akeneo".into(),
        SystemSecrets {
            client_id: id,
            client_secret: secret,
            user,
            password,
            ..SystemSecrets::default()
        },
    );
    secrets
}

async fn page(moat: &Moat, sku: &str) -> Value {
    let page = moat.query(PAGE, json!({ "sku": sku })).await;
    assert!(page.get("errors").is_none(), "{sku}: {page}");
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recipe_serves_what_protocol_v1_serves() {
    let (v1, akeneo) = (v1_sim().await, akeneo_sim(None).await);
    let reference = Moat::start(support::config(&v1.url)).await;
    let moat = Moat::start_with_secrets(config(&v1, &akeneo), secrets()).await;

    // Product pages: name, description, attributes, categories from
    // Akeneo; price and stock from the ERP; all as protocol v1 has them.
    let skus: Vec<String> = [1, 2, 3, 17, 42, 199].map(|n| format!("SKU-{n:06}")).into();
    let mut pages = Vec::new();
    for sku in &skus {
        pages.push(page(&moat, sku).await);
    }
    assert_eq!(v1.requests("pim.products").await, 0, "the PIM is Akeneo");
    let stats = akeneo.stats().await;
    assert_eq!(stats["tokens_issued"], 1, "one token, reused: {stats}");
    assert_eq!(stats["unauthorized"], 0, "{stats}");
    assert!(
        stats["requests"]["pim.products"].as_u64() > Some(0),
        "{stats}"
    );
    for (sku, got) in skus.iter().zip(pages) {
        assert_eq!(got, page(&reference, sku).await, "{sku}");
    }

    // Prices per segment: the ERP's, for the product Akeneo describes.
    let priced = r#"query($sku: String!) { product(sku: $sku) { name
        price(currencyCode: "USD") { price { amount currencyCode } } } }"#;
    for segment in ["wholesale", "vip"] {
        let (_, token, _) = support::customer_in(&v1, segment).await;
        let vars = json!({ "sku": "SKU-000005" });
        let got = moat.query_with_token(&token, priced, vars.clone()).await;
        let want = reference.query_with_token(&token, priced, vars).await;
        assert!(got.get("errors").is_none(), "{got}");
        assert_eq!(got, want, "{segment}");
    }

    // Listings: the catalog and a category, page by page, and the tree.
    let list = r#"query($after: String, $cat: ID) { products(first: 7, after: $after, categoryId: $cat) {
        nodes { sku name } pageInfo { hasNextPage endCursor } } }"#;
    for category in [Value::Null, json!("cat-09"), json!("cat-01")] {
        let (mut got, mut want) = (Vec::new(), Vec::new());
        for (moat, into) in [(&moat, &mut got), (&reference, &mut want)] {
            let mut after = Value::Null;
            for _ in 0..3 {
                let page = moat
                    .query(list, json!({ "after": after, "cat": category }))
                    .await;
                assert!(page.get("errors").is_none(), "{page}");
                let products = &page["data"]["products"];
                into.extend(products["nodes"].as_array().unwrap().iter().cloned());
                if products["pageInfo"]["hasNextPage"] != true {
                    break;
                }
                after = products["pageInfo"]["endCursor"].clone();
            }
        }
        assert!(!got.is_empty(), "{category}");
        assert_eq!(got, want, "{category}");
    }
    let tree = "{ categories { id name parent { id } } }";
    assert_eq!(
        moat.query(tree, json!({})).await,
        reference.query(tree, json!({})).await
    );

    // Checkout: prices and stock read fresh from the ERP.
    let amount = page(&moat, "SKU-000004").await["data"]["product"]["price"]["price"]["amount"]
        .as_str()
        .unwrap()
        .to_string();
    let verified = moat
        .query(
            r#"mutation($price: Decimal!) { verifyCheckout(input: {
                currencyCode: "EUR", displayedTotal: {amount: $price, currencyCode: "EUR"},
                lines: [{sku: "SKU-000004", quantity: 1,
                         displayedUnitPrice: {amount: $price, currencyCode: "EUR"}}] }) {
                ok total { amount } } }"#,
            json!({ "price": amount }),
        )
        .await;
    assert_eq!(verified["data"]["verifyCheckout"]["ok"], true, "{verified}");

    let (_, status) = moat.admin_get("/admin/status").await;
    assert_eq!(
        status["upstreams"]["akeneo"]["protocol"], "rest",
        "{status}"
    );

    // The PIM ends every token: Moat's next call meets Akeneo's 401, asks
    // for a new token and is answered.
    let expired = reqwest::Client::new()
        .post(format!("{}/_sim/oauth/expire", akeneo.url))
        .send()
        .await
        .unwrap();
    assert!(expired.status().is_success());
    assert_eq!(
        page(&moat, "SKU-000150").await,
        page(&reference, "SKU-000150").await
    );
    let stats = akeneo.stats().await;
    assert_eq!(
        (
            stats["tokens_issued"].as_u64(),
            stats["unauthorized"].as_u64()
        ),
        (Some(2), Some(1)),
        "{stats}"
    );
    reference.stop().await;
    moat.stop().await;
}

/// `PUT /_sim/products/{id}` on a simulator.
async fn write_product(sim: &Sim, id: &str, body: Value) {
    let r = reqwest::Client::new()
        .put(format!("{}/_sim/products/{id}", sim.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{id}: {}", r.status());
}

async fn name(moat: &Moat, sku: &str) -> String {
    page(moat, sku).await["data"]["product"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn akeneo_events_apply_once_and_reconciliation_finds_silent_changes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let v1 = v1_sim().await;
    let akeneo = akeneo_sim(Some(format!("http://127.0.0.1:{port}"))).await;
    let mut c = config(&v1, &akeneo);
    c.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let moat = Moat::start_with_secrets(c, secrets()).await;
    let sku = "SKU-000005";
    let before = name(&moat, sku).await;
    assert!(!before.is_empty());

    // A forged delivery is refused: the signature covers timestamp and body.
    let forged = moat
        .http
        .post(format!("{}/events/akeneo", moat.url))
        .header("content-type", "application/json")
        .header("x-akeneo-request-timestamp", "1765000000")
        .header("x-akeneo-request-signature", "00".repeat(32))
        .body(r#"{"events":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    // Every event delivered twice: applied once, the copy a duplicate.
    let chaos = reqwest::Client::new()
        .post(format!("{}/_sim/events", akeneo.url))
        .json(&json!({ "chaos": true }))
        .send()
        .await
        .unwrap();
    assert!(chaos.status().is_success());
    write_product(
        &akeneo,
        "prod-000005",
        json!({ "name": "Renamed Lamp", "emit_event": true }),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            name(&moat, sku).await == "Renamed Lamp"
        })
        .await,
        "the event was applied"
    );
    let outcome = |o: &str| format!(r#"moat_events_total{{source="akeneo",outcome="{o}"}}"#);
    assert!(
        eventually(Duration::from_secs(5), || async {
            moat.metric(&outcome("duplicate")).await == 1.0
        })
        .await,
        "the redelivery is a duplicate"
    );
    assert_eq!(moat.metric(&outcome("applied")).await, 1.0);

    // A removed product, as the Events API announces it: by its uuid.
    let id_of = r#"query($sku: String!) { product(sku: $sku) { id } }"#;
    let id = moat.query(id_of, json!({ "sku": "SKU-000009" })).await["data"]["product"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_id = r#"query($id: ID!) { product(id: $id) { sku } }"#;
    let held = moat.query(by_id, json!({ "id": id })).await;
    assert_eq!(held["data"]["product"]["sku"], "SKU-000009", "{held}");
    let t = support::events::now();
    let removed = json!({ "events": [{
        "action": "product.removed", "event_id": "ak-removed-9",
        "event_datetime": support::events::rfc3339(t).replace('Z', "+00:00"),
        "author": "peter", "author_type": "ui", "pim_source": "https://pim.example",
        "data": { "resource": { "identifier": "SKU-000009", "uuid": id } },
    }] })
    .to_string();
    let signature = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(EVENTS_SECRET.as_bytes()).unwrap();
        mac.update(format!("{t}.{removed}").as_bytes());
        let digest = mac.finalize().into_bytes();
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let receipt: Value = moat
        .http
        .post(format!("{}/events/akeneo", moat.url))
        .header("content-type", "application/json")
        .header("x-akeneo-request-timestamp", t.to_string())
        .header("x-akeneo-request-signature", signature)
        .body(removed)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(receipt["outcome"], "applied", "{receipt}");
    let gone = moat.query(by_id, json!({ "id": id })).await;
    assert_eq!(gone["data"]["product"], Value::Null, "{gone}");

    // A change nobody announced: the reconciliation pass finds it.
    let quiet = "SKU-000007";
    let old = name(&moat, quiet).await;
    write_product(&akeneo, "prod-000007", json!({ "name": "Quietly Renamed" })).await;
    assert_eq!(name(&moat, quiet).await, old, "cached, no event");
    let (status, pass) = moat
        .admin_post("/admin/reconcile/products", json!({}))
        .await;
    assert_eq!(status, 200, "{pass}");
    assert!(pass["drifted"].as_u64() >= Some(1), "{pass}");
    assert!(pass["repaired"].as_u64() >= Some(1), "{pass}");
    assert_eq!(name(&moat, quiet).await, "Quietly Renamed");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_verify_checks_the_pim_through_the_recipe() {
    let (v1, akeneo) = (v1_sim().await, akeneo_sim(None).await);
    let main = config_file(
        "recipe-akeneo",
        &format!("[upstream]\nurl = \"{}\"\n", v1.url),
    );
    let main = main.to_str().unwrap();
    let mut env = CREDENTIALS.to_vec();
    env.push(("MOAT_AKENEO_URL", &akeneo.url));
    // The shipped config with the recipe on top needs nothing but the
    // PIM's URL and a Connection's credentials.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/moat.toml");
    let (code, said) = moat(&["check-config", shipped, RECIPE], &env).await;
    assert_eq!(code, 0, "{said}");

    let verify = [
        "contract", "verify", "--system", "akeneo", "--config", main, "--config", RECIPE,
    ];
    let (code, said) = moat(&verify, &env).await;
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("GET /api/rest/v1/products-uuid"), "{said}");

    // One item of each answer broken in Akeneo's shape: that item fails,
    // named by route, index and the field as mapped.
    akeneo.fault("pim", json!({ "malformed_rate": 1.0 })).await;
    let (code, said) = moat(&verify, &env).await;
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("route product_list, item "), "{said}");
    assert!(said.contains("(route products, item "), "{said}");
    assert!(said.contains(", as mapped)"), "{said}");

    // The gateway serves the others.
    let moat = Moat::start_with_secrets(config(&v1, &akeneo), secrets()).await;
    let five: String = (11..=15)
        .map(|i| format!(r#"p{i}: product(sku: "SKU-{i:06}") {{ name }} "#))
        .collect();
    let got = moat.query(&format!("{{ {five} }}"), json!({})).await;
    let served = (11..=15)
        .filter(|i| got["data"][format!("p{i}")]["name"].is_string())
        .count();
    assert_eq!(served, 4, "{got}");
    moat.stop().await;
}
