//! What search engines read: `Product.structuredData` (schema.org
//! `Product` JSON-LD with an `Offer`) and `Availability.schemaOrg`, for an
//! in-stock, an out-of-stock and a stale-priced product, checked against
//! the schema.org vocabulary: types, the properties a `Product` and an
//! `Offer` need, `ItemAvailability` members, ISO 4217 codes, decimal
//! prices and ISO 8601 dates.

mod support;

use serde_json::{Value, json};
use support::events::{send, thin_price_event};
use support::redis::RedisServer;
use support::{Moat, Sim};

const QUERY: &str = "query($sku: String!) { product(sku: $sku) { sku name structuredData availability { schemaOrg } } }";

/// schema.org's `ItemAvailability` members.
const ITEM_AVAILABILITY: [&str; 10] = [
    "https://schema.org/BackOrder",
    "https://schema.org/Discontinued",
    "https://schema.org/InStock",
    "https://schema.org/InStoreOnly",
    "https://schema.org/LimitedAvailability",
    "https://schema.org/OnlineOnly",
    "https://schema.org/OutOfStock",
    "https://schema.org/PreOrder",
    "https://schema.org/PreSale",
    "https://schema.org/SoldOut",
];

/// Holds `ld` to schema.org `Product` (and its `Offer`), as a validator
/// would: the context and types, a name, properties of the types they
/// belong to and values of the ranges schema.org gives them.
fn check_schema_org(ld: &Value) {
    assert_eq!(ld["@context"], "https://schema.org", "{ld}");
    assert_eq!(ld["@type"], "Product", "{ld}");
    let product_properties = [
        "@context",
        "@type",
        "name",
        "sku",
        "productID",
        "description",
        "offers",
    ];
    for key in ld.as_object().unwrap().keys() {
        assert!(
            product_properties.contains(&key.as_str()),
            "Product has no {key}"
        );
    }
    assert!(ld["name"].as_str().is_some_and(|n| !n.is_empty()), "{ld}");
    let Some(offer) = ld.get("offers") else {
        return;
    };
    assert_eq!(offer["@type"], "Offer", "{ld}");
    let offer_properties = [
        "@type",
        "price",
        "priceCurrency",
        "priceValidUntil",
        "availability",
    ];
    for key in offer.as_object().unwrap().keys() {
        assert!(
            offer_properties.contains(&key.as_str()),
            "Offer has no {key}"
        );
    }
    if let Some(price) = offer.get("price") {
        // Text or Number; Moat sends the exact decimal as text.
        let price = price.as_str().expect("price as text");
        assert!(
            price.split_once('.').is_some_and(|(w, f)| {
                !w.is_empty()
                    && w.chars().all(|c| c.is_ascii_digit())
                    && f.chars().all(|c| c.is_ascii_digit())
            }),
            "{price}"
        );
        let currency = offer["priceCurrency"]
            .as_str()
            .expect("a price has its currency");
        assert!(currency.len() == 3 && currency.chars().all(|c| c.is_ascii_uppercase()));
        let until = offer["priceValidUntil"].as_str().expect("priceValidUntil");
        assert!(
            humantime::parse_rfc3339_weak(&format!("{until}T00:00:00")).is_ok(),
            "{until}"
        );
    } else {
        assert!(offer.get("priceCurrency").is_none() && offer.get("priceValidUntil").is_none());
    }
    if let Some(availability) = offer.get("availability") {
        assert!(
            ITEM_AVAILABILITY.contains(&availability.as_str().unwrap()),
            "{availability}"
        );
    }
}

async fn read(moat: &Moat, sku: &str) -> (Value, Value) {
    let r = moat.query(QUERY, json!({ "sku": sku })).await;
    assert!(r.get("errors").is_none(), "{r}");
    let product = &r["data"]["product"];
    check_schema_org(&product["structuredData"]);
    (
        product["structuredData"].clone(),
        product["availability"]["schemaOrg"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_engines_get_schema_org_products_and_no_price_moat_cannot_vouch_for() {
    // Redis, so a thin event whose refetch fails is parked (and its price
    // held as changed at its source) rather than refused.
    let redis = RedisServer::start();
    let sim = Sim::start().await;
    let mut config = support::config(&sim.url);
    config.redis.url = Some(redis.url());
    let moat = Moat::start(config).await;
    let (in_stock, sold_out, stale) = ("SKU-000011", "SKU-000012", "SKU-000013");
    sim.set_stock(in_stock, 500).await;
    sim.set_stock(sold_out, 0).await;
    sim.set_stock(stale, 500).await;

    let (ld, availability) = read(&moat, in_stock).await;
    assert_eq!(ld["sku"], in_stock);
    let offer = &ld["offers"];
    assert_eq!(offer["availability"], "https://schema.org/InStock");
    assert_eq!(availability, "https://schema.org/InStock");
    assert_eq!(offer["priceCurrency"], "EUR");
    let shown = moat
        .query(
            "query($sku: String!) { product(sku: $sku) { price { price { amount } } } }",
            json!({ "sku": in_stock }),
        )
        .await;
    assert_eq!(
        offer["price"],
        shown["data"]["product"]["price"]["price"]["amount"]
    );

    let (ld, availability) = read(&moat, sold_out).await;
    assert_eq!(
        ld["offers"]["availability"],
        "https://schema.org/OutOfStock"
    );
    assert_eq!(availability, "https://schema.org/OutOfStock");

    // The ERP announces a new price and cannot be asked for it: the held
    // price is no longer published; availability still is.
    let (before, _) = read(&moat, stale).await;
    assert!(before["offers"]["price"].is_string());
    sim.fault("erp", json!({ "down": true })).await;
    let (status, receipt) =
        send(&moat, "erp", &thin_price_event("ld-thin", stale, 1_000_001)).await;
    assert_eq!(
        (status, receipt["outcome"].as_str()),
        (202, Some("dead_lettered")),
        "{receipt}"
    );
    let (after, _) = read(&moat, stale).await;
    assert!(after["offers"].get("price").is_none(), "{after}");
    assert!(after["offers"].get("priceCurrency").is_none(), "{after}");
    assert_eq!(
        after["offers"]["availability"],
        "https://schema.org/InStock"
    );
    sim.fault("erp", json!({ "down": false })).await;
}
