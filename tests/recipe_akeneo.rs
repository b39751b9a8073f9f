//! The Akeneo recipe (`config/connectors/akeneo.toml`) end to end against
//! `moat sim --dialect akeneo` (in process): products and categories from
//! the PIM's REST API v1, through its token flow, everything else from a
//! protocol v1 simulator with the same seeded catalog, so every answer
//! can be compared with protocol v1's.

mod support;

use std::path::Path;

use serde_json::{Value, json};

use moat::config::{Config, Secrets, SystemSecrets};
use moat::sim::{Dialect, SimConfig};
use support::{EVENTS_SECRET, Moat, Sim};

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
    reference.stop().await;
    moat.stop().await;
}
