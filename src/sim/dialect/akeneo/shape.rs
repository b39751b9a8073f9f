//! The seeded catalog as Akeneo's REST API v1 writes it: products of the
//! UUID-based API (`/api/rest/v1/products-uuid`) with `values` per
//! attribute as `[{locale, scope, data}]`, categories with `labels`, and
//! HAL pages (`_links`, `_embedded.items`).
//!
//! A protocol v1 product becomes: its sku the value of the identifier
//! attribute `sku`; name and description localizable text in `en_US`
//! (no channel); `material`, `color`, `size`, `finish` text attributes;
//! `weight` a metric in kilograms. Product ids are UUIDs, deterministic per
//! product, whose last group is the product's number so a look-up parses
//! it instead of keeping a map.

use std::time::SystemTime;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Value, json};

use super::super::super::catalog::Catalog;
use super::super::super::seed::seeded_at;
use super::super::super::wire::{Category, Product};

/// The only locale the seeded catalog is written in.
pub const LOCALE: &str = "en_US";
/// Code of the catalog's `pim_catalog_identifier` attribute.
pub const IDENTIFIER: &str = "sku";
/// Where the API lives under the PIM's URL.
pub const API: &str = "/api/rest/v1";

/// Akeneo's timestamps: seconds, with an offset (`+00:00`).
pub fn timestamp(t: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(t).to_string();
    match text.strip_suffix('Z') {
        Some(bare) => format!("{bare}+00:00"),
        None => text,
    }
}

/// The UUID of product `index` (0-based): random-looking, but its last
/// group is the product's number.
pub fn uuid(index: usize) -> String {
    let n = index as u64 + 1;
    let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{n:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        0x8000 | ((h >> 4) & 0x3fff),
    )
}

/// The index of the product with `uuid`, checked against the whole UUID.
pub fn index_of(catalog: &Catalog, uuid: &str) -> Option<usize> {
    let last = uuid.rsplit('-').next()?;
    if last.len() != 12 || !last.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let n = usize::try_from(u64::from_str_radix(last, 16).ok()?).ok()?;
    let index = n.checked_sub(1)?;
    (index < catalog.products.len() && self::uuid(index) == uuid).then_some(index)
}

/// `{"self": {"href": …}}`.
fn links(href: String) -> Value {
    json!({ "self": { "href": href } })
}

/// One product as `GET /products-uuid` lists it; `base` is the PIM's URL.
pub struct ProductDoc<'a> {
    /// Without it (an event's resource) the product carries no links.
    pub base: Option<&'a str>,
    pub index: usize,
    pub product: &'a Product,
}

impl Serialize for ProductDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.product;
        let uuid = uuid(self.index);
        let mut map = s.serialize_map(None)?;
        if let Some(base) = self.base {
            map.serialize_entry(
                "_links",
                &links(format!("{base}{API}/products-uuid/{uuid}")),
            )?;
        }
        map.serialize_entry("uuid", &uuid)?;
        map.serialize_entry("enabled", &true)?;
        map.serialize_entry("family", &family(p))?;
        map.serialize_entry("categories", &p.category_ids)?;
        map.serialize_entry("groups", &[] as &[&str])?;
        map.serialize_entry("parent", &None::<&str>)?;
        map.serialize_entry("values", &Values(p))?;
        map.serialize_entry("created", &timestamp(seeded_at()))?;
        map.serialize_entry("updated", &timestamp(p.updated_at))?;
        map.serialize_entry("associations", &json!({}))?;
        map.serialize_entry("quantified_associations", &json!({}))?;
        map.end()
    }
}

/// The family: products of one kind share their leaf category, so its
/// code stands for the family's.
fn family(p: &Product) -> String {
    let leaf = p.category_ids.first().copied().unwrap_or("unclassified");
    leaf.replace('-', "_")
}

/// `values`, in the order protocol v1 lists the attributes (Akeneo keeps
/// no order; this one lets a mapping be compared as it comes).
struct Values<'a>(&'a Product);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = s.serialize_map(None)?;
        let one = |locale: Option<&str>, data: Value, kind: &str| json!([{ "locale": locale, "scope": null, "data": data, "attribute_type": kind }]);
        map.serialize_entry(
            IDENTIFIER,
            &one(None, json!(p.sku), "pim_catalog_identifier"),
        )?;
        map.serialize_entry(
            "name",
            &one(Some(LOCALE), json!(p.name), "pim_catalog_text"),
        )?;
        map.serialize_entry(
            "description",
            &one(Some(LOCALE), json!(p.description), "pim_catalog_textarea"),
        )?;
        for attribute in &p.attributes {
            let value = match metric(&attribute.value) {
                Some(data) => one(None, data, "pim_catalog_metric"),
                None => one(None, json!(attribute.value), "pim_catalog_text"),
            };
            map.serialize_entry(attribute.name, &value)?;
        }
        map.end()
    }
}

/// `"12.3 kg"` as a metric value, with the four decimals Akeneo writes.
fn metric(value: &str) -> Option<Value> {
    let amount = value.strip_suffix(" kg")?;
    let (units, decimals) = amount.split_once('.').unwrap_or((amount, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if units.is_empty() || !digits(units) || !digits(decimals) || decimals.len() > 4 {
        return None;
    }
    Some(json!({ "amount": format!("{units}.{decimals:0<4}"), "unit": "KILOGRAM" }))
}

/// One category as `GET /categories` lists it.
pub fn category(base: &str, c: &Category) -> Value {
    json!({
        "_links": links(format!("{base}{API}/categories/{}", c.id)),
        "code": c.id,
        "parent": c.parent_id,
        "updated": timestamp(c.updated_at),
        "labels": { LOCALE: c.name },
    })
}

/// A HAL page: `_links` (self, first, previous, next) and the items.
#[derive(Serialize)]
pub struct Page<T> {
    #[serde(rename = "_links")]
    pub links: PageLinks,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_page: Option<u64>,
    #[serde(rename = "_embedded")]
    pub embedded: Embedded<T>,
}

#[derive(Serialize)]
pub struct Embedded<T> {
    pub items: T,
}

#[derive(Serialize)]
pub struct PageLinks {
    #[serde(rename = "self")]
    pub this: Href,
    pub first: Href,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Href>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<Href>,
}

#[derive(Serialize)]
pub struct Href {
    pub href: String,
}

/// Akeneo's error body: `{"code": status, "message": …}`.
pub fn error_body(code: u16, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "code": code, "message": message }))
        .unwrap_or_else(|_| br#"{"code":500,"message":"unprintable error"}"#.to_vec())
}
