//! `[systems.NAME]` of a system that does not speak protocol v1
//! (`protocol = "rest"`): a route per thing Moat reads from it, and how its
//! change events are signed and mapped. Plain settings: the templates and
//! jq expressions are compiled by `upstream::rest` when the gateway (or
//! `moat check-config`) starts, which names this file's keys in its errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What Moat reads through routes, each with the placeholders its
/// `request` may use. (Checkout needs no route of its own: for a connector
/// it reads prices and stock fresh from their owners, never the cache.)
pub const ROUTES: [(&str, &str); 10] = [
    ("products", "products by id ({ids} or {id})"),
    ("products_by_sku", "products by sku ({skus} or {sku})"),
    (
        "product_list",
        "a page of the catalog ({cursor} or {page}, {limit})",
    ),
    (
        "category_products",
        "a page of one category ({category}, {cursor} or {page}, {limit})",
    ),
    ("categories", "every category (paged with `next`)"),
    ("prices", "prices ({skus} or {sku}, {segment}, {currency})"),
    ("inventory", "stock levels ({skus} or {sku})"),
    ("customer", "the customer a token belongs to ({token})"),
    (
        "customer_by_id",
        "one customer by id ({id}); needed with [customers] tokens = \"jwt\"",
    ),
    ("order", "one order ({id})"),
];

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `METHOD /path?query` with placeholders: `{sku} {skus} {id} {ids}
    /// {token} {segment} {currency} {cursor} {page} {limit} {category}`;
    /// `{name:json}` writes the value as JSON text (a string, escaped).
    pub request: String,
    /// A jq expression giving a POST's JSON body (the placeholders' values
    /// are its variables: `$keys`, `$segment`, …).
    pub body: Option<String>,
    /// Extra headers; values may hold placeholders (`Bearer {token}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How `{skus}`/`{ids}` carry several keys: `comma` (default),
    /// `repeat` (the parameter once per key), `json` (an array).
    #[serde(default)]
    pub batch: BatchStyle,
    /// Most keys per call (unset: the system's `max_batch`).
    pub max_batch: Option<usize>,
    /// jq selecting the foreign items of an answer (default `.`: the
    /// answer is the item).
    #[serde(default = "whole")]
    pub items: String,
    /// jq turning one foreign item into a protocol v1 item (or several).
    pub map: String,
    /// How to find the next page: a jq expression giving the next cursor
    /// or page (null: none), or `link` for the `Link` header's `next`.
    pub next: Option<String>,
    /// Statuses meaning "no such record" (default 404).
    #[serde(default = "not_found")]
    pub not_found: Vec<u16>,
}

fn whole() -> String {
    ".".to_string()
}

fn not_found() -> Vec<u16> {
    vec![404]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchStyle {
    #[default]
    Comma,
    Repeat,
    Json,
}

/// `[systems.NAME.events]`: change events in the system's own form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignEvents {
    /// How deliveries are signed (the secret: `MOAT_EVENTS_SECRET_{NAME}`).
    pub signature: Signature,
    /// jq turning one delivery into Moat envelopes (`{id, type,
    /// occurredAt, entity?, version?, data?, item?}`): `data` is a protocol
    /// v1 item, `item` a foreign one mapped by the record's route. It reads
    /// the body as `.` and the headers (lowercase names) as `$headers`.
    pub map: String,
}

/// Signature schemes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Signature {
    /// `Moat-Signature: t=…,v1=…`.
    Moat,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`).
    StandardWebhooks,
    /// `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body.
    Shopify,
    /// An HMAC-SHA256 in a header of the system's choosing.
    Hmac {
        header: String,
        #[serde(default)]
        encoding: Encoding,
        /// A header holding a Unix timestamp to sign as `{timestamp}.{body}`
        /// (and hold to `[events] tolerance`); unset: the body alone.
        timestamp_header: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}
