//! The seeded catalog as the Admin GraphQL API's objects: one
//! `ProductVariant` per product (its sku), its `Product` (title,
//! description, collections), an `InventoryItem` with one level at one
//! location, `Collection`s for categories (no tree: Shopify has none),
//! `Customer`s with their segment as a tag and their sign-in token as an
//! `id` metafield, and `Order`s.
//!
//! Ids are GIDs whose number is the record's place in the catalog, plus
//! one (`prod-000042` is `gid://shopify/ProductVariant/42`). Money is a
//! decimal string (`"12.90"`); times have whole seconds, as Shopify's do.
//! The shop's currency is EUR; the market of the United States sells in
//! USD (`contextualPricing(context: {country: US})`). Shopify has one
//! price per variant and market, so only the `default` segment's prices
//! are served; wholesale and vip prices would come from B2B catalogs.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::super::super::catalog::Catalog;
use super::super::super::wire::{CURRENCIES, Customer, Order};

pub const VARIANT: &str = "gid://shopify/ProductVariant/";
pub const PRODUCT: &str = "gid://shopify/Product/";
pub const INVENTORY_ITEM: &str = "gid://shopify/InventoryItem/";
pub const COLLECTION: &str = "gid://shopify/Collection/";
pub const CUSTOMER: &str = "gid://shopify/Customer/";
pub const ORDER: &str = "gid://shopify/Order/";
pub const LOCATION: &str = "gid://shopify/Location/1";

/// Where a customer's sign-in token is kept: an `id` metafield, unique
/// per customer, found with `customerByIdentifier`.
pub const TOKEN_NAMESPACE: &str = "moat";
pub const TOKEN_KEY: &str = "token";

/// A time as Shopify writes it: RFC 3339, whole seconds, UTC.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Minor units (two digits, as EUR and USD have) as a decimal string.
pub fn money(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// The index a GID of `kind` names, if it is one and within `len`.
pub fn index_of(gid: &str, kind: &str, len: usize) -> Option<usize> {
    let digits = gid.strip_prefix(kind)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    (n >= 1 && n <= len).then(|| n - 1)
}

/// The currency a buyer in `country` pays in: USD in the United States,
/// the shop's EUR elsewhere.
pub fn currency_of(country: Option<&str>) -> usize {
    match country {
        Some("US") => 1,
        _ => 0,
    }
}

/// When a variant last changed: its product or its default prices.
fn variant_updated(catalog: &Catalog, i: usize) -> SystemTime {
    let cells = &catalog.prices[i][..CURRENCIES.len()];
    cells
        .iter()
        .map(|c| c.updated_at)
        .fold(catalog.products[i].updated_at, SystemTime::max)
}

/// `ProductVariant` `i`, with `contextualPricing` for `country` when a
/// country is given.
pub fn variant(catalog: &Catalog, i: usize, country: Option<&str>) -> Value {
    let product = &catalog.products[i];
    let shop = &catalog.prices[i][0];
    let n = i + 1;
    let collections: Vec<Value> = product
        .category_ids
        .iter()
        .filter_map(|id| catalog.categories.iter().position(|c| c.id == *id))
        .map(|c| json!({ "id": format!("{COLLECTION}{}", c + 1), "handle": catalog.categories[c].id }))
        .collect();
    let metafields: Vec<Value> = product
        .attributes
        .iter()
        .map(|a| json!({ "namespace": "attributes", "key": a.name, "value": a.value }))
        .collect();
    let mut node = json!({
        "id": format!("{VARIANT}{n}"),
        "legacyResourceId": n.to_string(),
        "sku": product.sku,
        "title": "Default Title",
        "price": money(shop.amount),
        "compareAtPrice": shop.compare_at.map(money),
        "updatedAt": time(variant_updated(catalog, i)),
        "inventoryQuantity": catalog.stock[i].available,
        "inventoryItem": { "id": format!("{INVENTORY_ITEM}{n}") },
        "metafields": { "nodes": metafields },
        "product": {
            "id": format!("{PRODUCT}{n}"),
            "handle": product.id,
            "title": product.name,
            "description": product.description,
            "descriptionHtml": format!("<p>{}</p>", product.description),
            "updatedAt": time(product.updated_at),
            "collections": { "nodes": collections },
        },
    });
    if let Some(country) = country {
        let c = currency_of(Some(country));
        let cell = &catalog.prices[i][c];
        let code = CURRENCIES[c];
        node["contextualPricing"] = json!({
            "price": { "amount": money(cell.amount), "currencyCode": code },
            "compareAtPrice": cell.compare_at.map(|a| json!({ "amount": money(a), "currencyCode": code })),
        });
    }
    node
}

/// `InventoryItem` `i`: its sku and its one level's `available`.
pub fn inventory_item(catalog: &Catalog, i: usize) -> Value {
    let stock = &catalog.stock[i];
    json!({
        "id": format!("{INVENTORY_ITEM}{}", i + 1),
        "sku": catalog.products[i].sku,
        "tracked": true,
        "updatedAt": time(stock.updated_at),
        "inventoryLevels": { "nodes": [{
            "location": { "id": LOCATION },
            "quantities": [{ "name": "available", "quantity": stock.available }],
            "updatedAt": time(stock.updated_at),
        }] },
    })
}

/// `Collection` `c`.
pub fn collection(catalog: &Catalog, c: usize) -> Value {
    let category = &catalog.categories[c];
    json!({
        "id": format!("{COLLECTION}{}", c + 1),
        "handle": category.id,
        "title": category.name,
        "updatedAt": time(category.updated_at),
    })
}

/// `Customer` `c`: names split at the first space, the segment as a tag
/// (none for the default segment).
pub fn customer(c: usize, customer: &Customer) -> Value {
    let (first, last) = customer
        .name
        .split_once(' ')
        .unwrap_or((customer.name.as_str(), ""));
    let tags: Vec<&str> = match customer.segment {
        "default" => Vec::new(),
        segment => vec![segment],
    };
    json!({
        "id": format!("{CUSTOMER}{}", c + 1),
        "firstName": first,
        "lastName": last,
        "defaultEmailAddress": { "emailAddress": customer.email },
        "tags": tags,
        "updatedAt": time(customer.updated_at),
    })
}

/// `Order` `o`, its customer found by id.
pub fn order(catalog: &Catalog, o: usize, order: &Order) -> Value {
    let customer = catalog
        .customers
        .iter()
        .position(|c| c.id == order.customer_id)
        .map_or(
            Value::Null,
            |c| json!({ "id": format!("{CUSTOMER}{}", c + 1) }),
        );
    let set = |minor: u64| json!({ "shopMoney": { "amount": money(minor), "currencyCode": order.currency } });
    let lines: Vec<Value> = order
        .lines
        .iter()
        .map(|l| json!({ "sku": l.sku, "quantity": l.quantity, "originalUnitPriceSet": set(l.unit_amount) }))
        .collect();
    // Shopify has no "delivered" order state: a delivered order is fulfilled.
    let (fulfillment, cancelled) = match order.status {
        "SHIPPED" | "DELIVERED" => ("FULFILLED", false),
        "CANCELLED" => ("UNFULFILLED", true),
        _ => ("UNFULFILLED", false),
    };
    json!({
        "id": format!("{ORDER}{}", o + 1),
        "name": format!("#{}", 1000 + o + 1),
        "customer": customer,
        "currencyCode": order.currency,
        "displayFinancialStatus": if cancelled { "VOIDED" } else { "PAID" },
        "displayFulfillmentStatus": fulfillment,
        "cancelledAt": cancelled.then(|| time(order.updated_at)),
        "createdAt": time(order.placed_at),
        "processedAt": time(order.placed_at),
        "updatedAt": time(order.updated_at),
        "totalPriceSet": set(order.total_amount),
        "lineItems": { "nodes": lines },
    })
}
