//! Changes as Shopify's webhooks: a POST of the REST resource (numeric
//! ids, snake_case, money as decimal strings) to `/events/shopify`, with
//! `X-Shopify-Topic`, `X-Shopify-Webhook-Id` (the same on every retry),
//! `X-Shopify-Triggered-At`, `X-Shopify-Event-Id`, the shop and API
//! version, and `X-Shopify-Hmac-Sha256`: the base64 HMAC-SHA256 of the raw
//! body under the app's secret. Shopify sends whole resources only, so a
//! change is never thin here.
//!
//! - A product's name or description, or its variant's own (shop currency,
//!   default segment) price: `products/update`. Other price lists change
//!   without a webhook of the product.
//! - Its stock: `inventory_levels/update`, `{inventory_item_id,
//!   location_id, available, updated_at, admin_graphql_api_id}`, which
//!   names no sku.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::super::super::Simulator;
use super::super::super::catalog::Catalog;
use super::super::super::sign;
use super::super::{Change, Delivery};
use super::nodes::{self, money, time};

/// The API version webhooks are sent in.
const API_VERSION: &str = "2025-07";
const SHOP: &str = "moat-sim.myshopify.com";

/// `change` as Shopify's webhook; `None` for a change Shopify sends none
/// for (a price of another segment or currency than the variant's own).
pub fn event(sim: &Simulator, change: &Change<'_>, secret: Option<&str>) -> Option<Delivery> {
    let item = change.item;
    let catalog = sim.read();
    let (topic, body) = match change.kind {
        "price.updated" => {
            let own = item["segment"] == "default" && item["currency"] == "EUR";
            let i = catalog.product_by_sku(item["sku"].as_str()?)?;
            (own.then_some("products/update")?, product(&catalog, i))
        }
        "product.updated" => {
            let i = catalog.product_by_id(item["id"].as_str()?)?;
            ("products/update", product(&catalog, i))
        }
        "inventory.updated" => {
            let i = catalog.product_by_sku(item["sku"].as_str()?)?;
            ("inventory_levels/update", inventory_level(&catalog, i))
        }
        _ => return None,
    };
    drop(catalog);
    let body = body.to_string().into_bytes();
    let mut headers = vec![
        ("X-Shopify-Topic".to_owned(), topic.to_owned()),
        ("X-Shopify-Shop-Domain".to_owned(), SHOP.to_owned()),
        ("X-Shopify-API-Version".to_owned(), API_VERSION.to_owned()),
        ("X-Shopify-Webhook-Id".to_owned(), change.id.to_owned()),
        (
            "X-Shopify-Event-Id".to_owned(),
            format!("{}-event", change.id),
        ),
        (
            "X-Shopify-Triggered-At".to_owned(),
            humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        ),
    ];
    if let Some(secret) = secret {
        headers.push(("X-Shopify-Hmac-Sha256".to_owned(), sign(secret, &body)));
    }
    Some(Delivery {
        path: "/events/shopify".to_owned(),
        headers,
        body,
    })
}

/// `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body.
pub fn sign(secret: &str, body: &[u8]) -> String {
    STANDARD.encode(sign::hmac(secret.as_bytes(), &[body]))
}

/// Product `i` as the REST Admin API (and `products/update`) has it.
fn product(catalog: &Catalog, i: usize) -> Value {
    let variant = nodes::variant(catalog, i, None);
    let p = &catalog.products[i];
    let n = i + 1;
    let shop = &catalog.prices[i][0];
    json!({
        "id": n,
        "admin_graphql_api_id": format!("{}{n}", nodes::PRODUCT),
        "title": p.name,
        "body_html": format!("<p>{}</p>", p.description),
        "handle": p.id,
        "status": "active",
        "updated_at": time(p.updated_at),
        "variants": [{
            "id": n,
            "admin_graphql_api_id": format!("{}{n}", nodes::VARIANT),
            "product_id": n,
            "title": "Default Title",
            "sku": p.sku,
            "price": money(shop.amount),
            "compare_at_price": shop.compare_at.map(money),
            "inventory_item_id": n,
            "inventory_quantity": catalog.stock[i].available,
            "updated_at": variant["updatedAt"],
        }],
    })
}

/// The stock of product `i` as `inventory_levels/update` carries it.
fn inventory_level(catalog: &Catalog, i: usize) -> Value {
    let stock = &catalog.stock[i];
    let n = i + 1;
    json!({
        "inventory_item_id": n,
        "location_id": 1,
        "available": stock.available,
        "updated_at": time(stock.updated_at),
        "admin_graphql_api_id": format!("gid://shopify/InventoryLevel/1?inventory_item_id={n}"),
    })
}
