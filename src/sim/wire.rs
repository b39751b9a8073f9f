//! Protocol v1 shapes as the simulator sends them: the only thing it shares
//! with the gateway, mirrored in `schema/upstream/*.json`.
//!
//! Prices and stock are stored without their sku (a product owns six prices
//! and one stock level), so their wire forms are views that borrow the sku.

use std::time::SystemTime;

use serde::{Deserialize, Serialize, Serializer};

/// Segments every product is priced in, in storage order.
pub const SEGMENTS: [&str; 3] = ["default", "wholesale", "vip"];
/// Currencies every product is priced in, in storage order; both have two
/// minor digits, which `control` relies on when parsing amounts.
pub const CURRENCIES: [&str; 2] = ["EUR", "USD"];

/// Serialises a timestamp as RFC 3339 with milliseconds, UTC.
pub fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribute {
    pub name: &'static str,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub attributes: Vec<Attribute>,
    pub category_ids: Vec<&'static str>,
    pub version: u64,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Category {
    pub id: &'static str,
    pub name: &'static str,
    pub parent_id: Option<&'static str>,
    pub version: u64,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: SystemTime,
}

/// One stored price; which sku, segment and currency it belongs to is given
/// by where it sits in the catalog.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceCell {
    pub amount: u64,
    pub compare_at: Option<u64>,
    pub version: u64,
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Price<'a> {
    pub sku: &'a str,
    pub segment: &'static str,
    pub currency: &'static str,
    pub amount: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare_at_amount: Option<u64>,
    pub version: u64,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StockCell {
    pub available: u64,
    pub version: u64,
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory<'a> {
    pub sku: &'a str,
    pub available: u64,
    pub version: u64,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub id: String,
    pub email: String,
    pub name: String,
    pub segment: &'static str,
    pub version: u64,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: SystemTime,
    /// Sign-in secret; only `/_sim/customers` reveals it.
    #[serde(skip)]
    pub token: String,
    #[serde(skip)]
    pub order_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: &'static str,
    pub currency: &'static str,
    pub total_amount: u64,
    pub lines: Vec<OrderLine>,
    #[serde(serialize_with = "rfc3339")]
    pub placed_at: SystemTime,
    pub version: u64,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: SystemTime,
}

/// `POST /erp/v1/quote` body. Strict, so a gateway that sends something the
/// protocol does not define hears about it instead of being half-understood.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    #[serde(default = "default_segment")]
    pub segment: String,
    #[serde(default = "default_currency")]
    pub currency: String,
    pub lines: Vec<QuoteRequestLine>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequestLine {
    pub sku: String,
    pub quantity: u32,
}

pub fn default_segment() -> String {
    SEGMENTS[0].to_owned()
}

pub fn default_currency() -> String {
    CURRENCIES[0].to_owned()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuoteLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_amount: u64,
    pub line_amount: u64,
    pub available: u64,
    pub price_version: u64,
    pub inventory_version: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    pub segment: &'static str,
    pub currency: &'static str,
    pub lines: Vec<QuoteLine>,
    pub unknown_skus: Vec<String>,
    pub total_amount: u64,
    #[serde(serialize_with = "rfc3339")]
    pub quoted_at: SystemTime,
}

/// A list response.
#[derive(Serialize)]
pub struct Items<T> {
    pub items: T,
}

/// A page of a list; `next_cursor` is null on the last page.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: T,
    pub next_cursor: Option<String>,
}

/// Index of a segment name in [`SEGMENTS`].
pub fn segment_index(name: &str) -> Option<usize> {
    SEGMENTS.iter().position(|s| *s == name)
}

/// Index of a currency code in [`CURRENCIES`].
pub fn currency_index(code: &str) -> Option<usize> {
    CURRENCIES.iter().position(|c| *c == code)
}
