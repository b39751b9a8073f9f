//! The seeded catalog as commercetools resources: product projections
//! with embedded prices (one per customer group and currency), inventory
//! entries, customer groups, customers, orders and categories, in the
//! shapes of the HTTP API (`types/*` of its API reference).
//!
//! Ids are UUIDs, as the platform issues them, derived from the record's
//! place in the catalog so they can be read back: protocol v1's ids live
//! on as the user-provided identifiers (`key`, `customerNumber`,
//! `orderNumber`). The `default` segment is "no customer group", which is
//! what a price without `customerGroup` means; `wholesale` and `vip` are
//! customer groups with those keys.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::sim::catalog::Catalog;
use crate::sim::wire::{CURRENCIES, SEGMENTS};

/// What a UUID is of; its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Product = 1,
    Price = 2,
    Inventory = 3,
    Customer = 4,
    Group = 5,
    Order = 6,
    LineItem = 7,
    Category = 8,
    ProductType = 9,
    Discount = 10,
}

/// A UUID (version 4 layout) naming record `n` of `kind`.
pub fn uuid(kind: Kind, n: usize) -> String {
    format!("c7{:06x}-5e1d-4000-8000-{n:012x}", kind as u32)
}

/// The record a [`uuid`] of `kind` names.
pub fn index_of(kind: Kind, id: &str) -> Option<usize> {
    let rest = id.strip_prefix(&format!("c7{:06x}-5e1d-4000-8000-", kind as u32))?;
    (rest.len() == 12)
        .then(|| usize::from_str_radix(rest, 16).ok())
        .flatten()
}

/// `Money` as the API writes it: centPrecision, two fraction digits (EUR
/// and USD).
pub fn money(currency: &str, cents: u64) -> Value {
    json!({"type": "centPrecision", "currencyCode": currency,
           "centAmount": cents, "fractionDigits": 2})
}

pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn seeded() -> String {
    time(crate::sim::seed::seeded_at())
}

/// A `Reference`, with the referenced resource as `obj` when expanded.
fn reference(type_id: &str, id: String, obj: Option<Value>) -> Value {
    let mut r = json!({"typeId": type_id, "id": id});
    if let Some(obj) = obj {
        r["obj"] = obj;
    }
    r
}

/// The customer group of a segment; `default` has none.
pub fn customer_group(segment: usize) -> Option<Value> {
    let key = SEGMENTS.get(segment).filter(|_| segment > 0)?;
    let name = match *key {
        "vip" => "VIP".to_string(),
        other => format!("{}{}", other[..1].to_uppercase(), &other[1..]),
    };
    Some(
        json!({"id": uuid(Kind::Group, segment), "version": 1, "key": key,
                "name": name, "createdAt": seeded(), "lastModifiedAt": seeded()}),
    )
}

fn group_reference(segment: usize, expand: bool) -> Option<Value> {
    let group = customer_group(segment)?;
    let id = uuid(Kind::Group, segment);
    Some(reference("customer-group", id, expand.then_some(group)))
}

/// The Product's version: it counts every update, so each price write
/// (embedded prices share their Product's version) moves it up.
pub fn product_version(c: &Catalog, i: usize) -> u64 {
    c.products[i].version + c.prices[i].iter().map(|p| p.version - 1).sum::<u64>()
}

pub fn product_modified(c: &Catalog, i: usize) -> SystemTime {
    c.prices[i]
        .iter()
        .map(|p| p.updated_at)
        .fold(c.products[i].updated_at, SystemTime::max)
}

/// One embedded Price. A price with a compare-at amount is the regular
/// `value` with the lower one `discounted` (commercetools' way round).
pub fn price(c: &Catalog, i: usize, segment: usize, currency: usize, expand: bool) -> Value {
    let slot = segment * CURRENCIES.len() + currency;
    let cell = &c.prices[i][slot];
    let code = CURRENCIES[currency];
    let mut p = json!({
        "id": uuid(Kind::Price, i * 6 + slot),
        "value": money(code, cell.compare_at.unwrap_or(cell.amount)),
    });
    if cell.compare_at.is_some() {
        p["discounted"] = json!({
            "value": money(code, cell.amount),
            "discount": reference("product-discount", uuid(Kind::Discount, 1), None),
        });
    }
    if let Some(group) = group_reference(segment, expand) {
        p["customerGroup"] = group;
    }
    p
}

/// What `where` is evaluated against for product projections: the fields
/// a query by id, key or sku reads.
pub fn product_view(c: &Catalog, i: usize) -> Value {
    let p = &c.products[i];
    json!({"id": uuid(Kind::Product, i), "key": p.sku,
           "masterVariant": {"id": 1, "sku": p.sku, "key": p.sku}, "variants": []})
}

/// How a product projection is asked for: expansions and price selection.
#[derive(Default)]
pub struct Projection {
    pub expand_groups: bool,
    /// `priceCurrency` and `priceCustomerGroup` (an id): the selected
    /// price becomes `masterVariant.price`.
    pub select: Option<(String, Option<String>)>,
}

fn category_index(id: &str) -> Option<usize> {
    id.strip_prefix("cat-")?.parse::<usize>().ok()
}

/// A ProductProjection (current, published).
pub fn product(c: &Catalog, i: usize, how: &Projection) -> Value {
    let p = &c.products[i];
    let stock = &c.stock[i];
    let mut prices = Vec::with_capacity(6);
    for s in 0..SEGMENTS.len() {
        for cur in 0..CURRENCIES.len() {
            prices.push(price(c, i, s, cur, how.expand_groups));
        }
    }
    let mut variant = json!({
        "id": 1, "sku": p.sku, "key": p.sku, "prices": prices, "images": [],
        "attributes": p.attributes.iter()
            .map(|a| json!({"name": a.name, "value": a.value})).collect::<Vec<_>>(),
        "assets": [],
        "availability": {"isOnStock": stock.available > 0,
                          "availableQuantity": stock.available, "version": stock.version,
                          "id": uuid(Kind::Inventory, i)},
    });
    if let Some((currency, group)) = &how.select
        && let Some(cur) = CURRENCIES.iter().position(|c| c == currency)
    {
        // The group's price, else the one for no group.
        let segment = group
            .as_deref()
            .and_then(|g| index_of(Kind::Group, g))
            .filter(|s| (1..SEGMENTS.len()).contains(s))
            .unwrap_or(0);
        variant["price"] = price(c, i, segment, cur, how.expand_groups);
    }
    let slug = p.name.to_lowercase().replace(' ', "-");
    json!({
        "id": uuid(Kind::Product, i),
        "version": product_version(c, i),
        "key": p.sku,
        "productType": reference("product-type", uuid(Kind::ProductType, 1), None),
        "name": {"en": p.name},
        "description": {"en": p.description},
        "slug": {"en": format!("{slug}-{}", i + 1)},
        "categories": p.category_ids.iter().filter_map(|id| category_index(id))
            .map(|n| reference("category", uuid(Kind::Category, n), None)).collect::<Vec<_>>(),
        "categoryOrderHints": {},
        "masterVariant": variant,
        "variants": [],
        "searchKeywords": {},
        "hasStagedChanges": false,
        "published": true,
        "priceMode": "Embedded",
        "createdAt": seeded(),
        "lastModifiedAt": time(product_modified(c, i)),
    })
}

pub fn inventory_view(c: &Catalog, i: usize) -> Value {
    json!({"id": uuid(Kind::Inventory, i), "sku": c.products[i].sku})
}

/// An InventoryEntry without a supply channel: the one stock level.
pub fn inventory(c: &Catalog, i: usize) -> Value {
    let stock = &c.stock[i];
    json!({
        "id": uuid(Kind::Inventory, i), "version": stock.version,
        "sku": c.products[i].sku,
        "quantityOnStock": stock.available, "availableQuantity": stock.available,
        "createdAt": seeded(), "lastModifiedAt": time(stock.updated_at),
    })
}

/// A Customer; `expand` puts the customer group in the reference.
pub fn customer(c: &Catalog, i: usize, expand: bool) -> Value {
    let customer = &c.customers[i];
    let (first, last) = customer
        .name
        .split_once(' ')
        .unwrap_or((customer.name.as_str(), ""));
    let segment = SEGMENTS
        .iter()
        .position(|s| *s == customer.segment)
        .unwrap_or(0);
    let mut out = json!({
        "id": uuid(Kind::Customer, i), "version": customer.version,
        "customerNumber": customer.id, "email": customer.email,
        "firstName": first, "lastName": last,
        "addresses": [], "shippingAddressIds": [], "billingAddressIds": [],
        "isEmailVerified": true, "stores": [], "authenticationMode": "Password",
        "customerGroupAssignments": [],
        "createdAt": seeded(), "lastModifiedAt": time(customer.updated_at),
    });
    if let Some(group) = group_reference(segment, expand) {
        out["customerGroupAssignments"] =
            json!([{"customerGroup": group_reference(segment, false)}]);
        out["customerGroup"] = group;
    }
    out
}

pub fn customer_view(c: &Catalog, i: usize) -> Value {
    let customer = &c.customers[i];
    json!({"id": uuid(Kind::Customer, i), "email": customer.email,
           "customerNumber": customer.id})
}

/// Customer index of protocol v1's `cust-007`.
pub fn customer_index(c: &Catalog, id: &str) -> Option<usize> {
    c.customers.iter().position(|x| x.id == id)
}

/// An Order: protocol v1's status as `orderState` and `shipmentState`.
pub fn order(c: &Catalog, i: usize) -> Value {
    let o = &c.orders[i];
    let (state, shipment) = match o.status {
        "SHIPPED" => ("Confirmed", Some("Shipped")),
        "DELIVERED" => ("Complete", Some("Delivered")),
        "CANCELLED" => ("Cancelled", None),
        _ => ("Open", Some("Pending")),
    };
    let lines: Vec<Value> = o
        .lines
        .iter()
        .enumerate()
        .map(|(n, line)| {
            let product = c.product_by_sku(&line.sku);
            json!({
                "id": uuid(Kind::LineItem, i * 16 + n),
                "productId": product.map(|p| uuid(Kind::Product, p)),
                "name": {"en": product.map(|p| c.products[p].name.clone())},
                "variant": {"id": 1, "sku": line.sku},
                "price": {"id": uuid(Kind::Price, 0), "value": money(o.currency, line.unit_amount)},
                "quantity": line.quantity,
                "totalPrice": money(o.currency, line.unit_amount * u64::from(line.quantity)),
                "lineItemMode": "Standard", "priceMode": "Platform",
                "perMethodTaxRate": [], "state": [], "discountedPricePerQuantity": [],
            })
        })
        .collect();
    let customer = customer_index(c, &o.customer_id);
    let mut out = json!({
        "id": uuid(Kind::Order, i), "version": o.version, "orderNumber": o.id,
        "customerId": customer.map(|n| uuid(Kind::Customer, n)),
        "customerEmail": customer.map(|n| c.customers[n].email.clone()),
        "orderState": state, "totalPrice": money(o.currency, o.total_amount),
        "lineItems": lines, "customLineItems": [],
        "taxMode": "Platform", "inventoryMode": "None", "origin": "Customer",
        "shippingMode": "Single", "shipping": [], "syncInfo": [], "returnInfo": [],
        "refusedGifts": [], "discountCodes": [], "directDiscounts": [],
        "itemShippingAddresses": [], "lastMessageSequenceNumber": 1,
        "createdAt": time(o.placed_at), "lastModifiedAt": time(o.updated_at),
    });
    if let Some(shipment) = shipment {
        out["shipmentState"] = Value::from(shipment);
    }
    out
}

pub fn order_view(c: &Catalog, i: usize) -> Value {
    let o = &c.orders[i];
    let customer = customer_index(c, &o.customer_id).map(|n| uuid(Kind::Customer, n));
    json!({"id": uuid(Kind::Order, i), "orderNumber": o.id, "customerId": customer})
}

/// A Category; its tree from `parent` and `ancestors`.
pub fn category(c: &Catalog, i: usize) -> Value {
    let cat = &c.categories[i];
    let parent = cat.parent_id.and_then(category_index);
    let mut out = json!({
        "id": uuid(Kind::Category, i + 1), "version": cat.version, "key": cat.id,
        "name": {"en": cat.name}, "slug": {"en": cat.name.to_lowercase().replace(' ', "-")},
        "ancestors": parent.map(|p| vec![reference("category", uuid(Kind::Category, p), None)])
            .unwrap_or_default(),
        "orderHint": format!("0.{}", i + 1), "assets": [],
        "createdAt": seeded(), "lastModifiedAt": time(cat.updated_at),
    });
    if let Some(p) = parent {
        out["parent"] = reference("category", uuid(Kind::Category, p), None);
    }
    out
}

pub fn category_view(c: &Catalog, i: usize) -> Value {
    json!({"id": uuid(Kind::Category, i + 1), "key": c.categories[i].id})
}

/// What a malformed answer breaks, by resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Products,
    Inventory,
    Customers,
    Orders,
    Categories,
}

/// Breaks one resource of `body` (a page's `results`, or the resource
/// itself) the way a faulty system would: a required field gone, of the
/// wrong type, or money or stock that cannot be. Every defect lands on
/// what a connector's map reads, so its check sees it through the map.
/// An empty page is cut in half instead (not JSON).
pub fn corrupt(mut body: Value, shape: Shape, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let target = match body.get_mut("results").and_then(Value::as_array_mut) {
        Some(items) if !items.is_empty() => {
            let i = rng.usize(..items.len());
            items.get_mut(i)
        }
        Some(_) => None,
        None => Some(&mut body),
    };
    let Some(Value::Object(resource)) = target else {
        let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
        bytes.truncate(bytes.len() / 2);
        return bytes;
    };
    let defect = rng.usize(..4);
    match (shape, defect) {
        (_, 0) => {
            resource.remove("lastModifiedAt");
        }
        (Shape::Products, 1) => prices(resource, |v| v["centAmount"] = json!("abc")),
        (Shape::Products, 2) => prices(resource, |v| {
            v.as_object_mut().map(|m| m.remove("fractionDigits"));
        }),
        (Shape::Inventory, 1) => {
            resource.insert("availableQuantity".into(), json!(-rng.i64(1..=50)));
        }
        (Shape::Inventory, 2) => {
            resource.insert("availableQuantity".into(), json!("lots"));
        }
        (Shape::Customers, 1) => {
            resource.remove("email");
        }
        (Shape::Customers, 2) => {
            resource.insert("version".into(), json!("one"));
        }
        (Shape::Orders, 1) => {
            if let Some(total) = resource.get_mut("totalPrice") {
                total["centAmount"] = json!("abc");
            }
        }
        (Shape::Orders, 2) => {
            if let Some(line) = resource
                .get_mut("lineItems")
                .and_then(|l| l.get_mut(0))
                .and_then(Value::as_object_mut)
            {
                line.remove("quantity");
            }
        }
        (Shape::Categories, 1 | 2) => {
            resource.insert("name".into(), json!(false));
        }
        _ => {
            resource.remove("version");
        }
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Applies `broken` to the value of every embedded price (whichever one
/// a reader picks, it is broken).
fn prices(product: &mut Map<String, Value>, broken: impl Fn(&mut Value)) {
    if let Some(list) = product
        .get_mut("masterVariant")
        .and_then(|v| v.get_mut("prices"))
        .and_then(Value::as_array_mut)
    {
        for p in list {
            broken(&mut p["value"]);
            if let Some(d) = p.get_mut("discounted") {
                broken(&mut d["value"]);
            }
        }
    }
}
