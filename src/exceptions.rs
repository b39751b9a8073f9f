//! The mismatch path: every difference Moat finds between what it held and
//! what a system of record says (reconciliation drift, a checkout
//! mismatch, a payload that broke the contract) is recorded as an
//! exception, with both values, who found it and when, so the team that
//! owns the system can see exactly what went wrong. Kept in a bounded
//! Redis stream shared by the fleet (in memory while Redis is away), and
//! listed by `GET /admin/exceptions` and `moat admin exceptions`.
//!
//! Recording never waits: it queues, and a background flush appends to
//! the stream, so a contract check on the request path costs nothing more.
//!
//! Values are kept and listed in their outside form, as the storefront
//! and the owner's team read them: `held` and `ownerSays` are JSON
//! objects, money a decimal string beside its `currencyCode`, times RFC
//! 3339 ([`outside`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use redis::streams::StreamRangeReply;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::domain::Timestamp;
use crate::redis_link::RedisLink;
use crate::telemetry;
use crate::vocab::Currency;

/// Who found a mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    Reconcile,
    Checkout,
    Contract,
}

impl FoundBy {
    pub const ALL: [FoundBy; 3] = [FoundBy::Reconcile, FoundBy::Checkout, FoundBy::Contract];

    pub fn name(self) -> &'static str {
        match self {
            FoundBy::Reconcile => "reconcile",
            FoundBy::Checkout => "checkout",
            FoundBy::Contract => "contract",
        }
    }

    pub fn from_name(name: &str) -> Option<FoundBy> {
        FoundBy::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// What kind of difference it is, per finder: reconciliation's `drift`
/// (the values differ), `missing` (the owner has none) and `version` (a
/// version announced ahead of the owner's); checkout's mismatch kinds in
/// lower case (`price`, `availability`, `total`, `unknown_sku`,
/// `currency`, `invalid_token`); the contract's `violation`.
pub const KINDS: [&str; 10] = [
    "drift",
    "missing",
    "version",
    "price",
    "availability",
    "total",
    "unknown_sku",
    "currency",
    "invalid_token",
    "violation",
];

/// One mismatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exception {
    /// When it was found (RFC 3339).
    pub at: String,
    /// The system of record that owns the entity.
    pub system: String,
    pub entity: String,
    /// One of [`KINDS`] (empty in entries recorded before kinds were).
    #[serde(default)]
    pub kind: String,
    /// Which one (a sku, an id, a cache key).
    pub key: String,
    /// What Moat held (or was shown to the shopper), when there was one:
    /// an object in outside form.
    pub held: Option<Value>,
    /// What the owner says now (or why its payload was refused): an
    /// object in outside form.
    pub owner_says: Option<Value>,
    pub found_by: FoundBy,
}

impl Exception {
    pub fn new(
        system: &str,
        entity: &str,
        key: &str,
        held: Option<Value>,
        owner_says: Option<Value>,
        found_by: FoundBy,
    ) -> Exception {
        Exception {
            at: Timestamp::now().to_string(),
            system: system.to_string(),
            entity: entity.to_string(),
            kind: String::new(),
            key: key.to_string(),
            held: held.map(outside),
            owner_says: owner_says.map(outside),
            found_by,
        }
    }

    /// The same, of kind `kind` (one of [`KINDS`]).
    pub fn of_kind(mut self, kind: &str) -> Exception {
        self.kind = kind.to_string();
        self
    }

    /// As listed: entries recorded before values were kept in outside
    /// form (JSON text inside JSON, internal units) are shown in it too.
    fn shown(mut self) -> Exception {
        self.held = self.held.map(outside);
        self.owner_says = self.owner_says.map(outside);
        self
    }
}

/// Which exceptions a listing wants; every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub system: Option<String>,
    /// An entity name, singular (`price`) as recorded.
    pub entity: Option<String>,
    pub kind: Option<String>,
    pub found_by: Option<FoundBy>,
    /// Found at or after.
    pub since: Option<Timestamp>,
    /// Found before.
    pub until: Option<Timestamp>,
}

impl Filter {
    pub fn wants(&self, e: &Exception) -> bool {
        let at = || Timestamp::parse_rfc3339(&e.at);
        self.system.as_ref().is_none_or(|s| e.system == *s)
            && self.entity.as_ref().is_none_or(|n| e.entity == *n)
            && self
                .kind
                .as_ref()
                .is_none_or(|k| e.kind.eq_ignore_ascii_case(k))
            && self.found_by.is_none_or(|f| e.found_by == f)
            && self.since.is_none_or(|t| at().is_some_and(|at| at >= t))
            && self.until.is_none_or(|t| at().is_some_and(|at| at < t))
    }
}

/// A value in its outside form, as an object: a domain value's JSON
/// (snake case, money in minor units, times in Unix milliseconds) gets
/// camel-case keys, each amount as a decimal string with `currencyCode`
/// beside it, each `…_at` time as RFC 3339; JSON text is read first (how
/// entries were once kept); anything else that is not an object is
/// wrapped as `{"value": …}`.
pub fn outside(value: Value) -> Value {
    let value = match value {
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => return json!({ "value": text }),
        },
        other => other,
    };
    match value {
        Value::Object(fields) => Value::Object(outside_fields(fields, None)),
        other => json!({ "value": other }),
    }
}

/// A checkout mismatch's side (`text`: a decimal amount, a quantity or a
/// currency code, by `kind` as the schema names it) as an object: money
/// with its currency, stock as a quantity.
pub fn mismatched(kind: &str, text: &str, currency: Currency) -> Value {
    match kind {
        "PRICE" | "TOTAL" => json!({ "amount": text, "currencyCode": currency.code() }),
        "AVAILABILITY" => match text.parse::<u64>() {
            Ok(quantity) => json!({ "quantity": quantity }),
            Err(_) => json!({ "value": text }),
        },
        "CURRENCY" => json!({ "currencyCode": text }),
        _ => json!({ "value": text }),
    }
}

/// Fields holding minor units of the object's (or its parent's) currency.
const AMOUNTS: [&str; 5] = [
    "amount",
    "compare_at",
    "total_amount",
    "unit_amount",
    "line_amount",
];

fn outside_fields(fields: Map<String, Value>, inherited: Option<Currency>) -> Map<String, Value> {
    let currency = fields
        .get("currency")
        .and_then(Value::as_str)
        .and_then(Currency::from_code)
        .or(inherited);
    let mut out = Map::new();
    for (key, value) in fields {
        let value = match (key.as_str(), value) {
            ("currency", v) => {
                out.insert("currencyCode".into(), v);
                continue;
            }
            (name, Value::Number(n)) if AMOUNTS.contains(&name) => match (n.as_i64(), currency) {
                (Some(minor), Some(c)) => Value::String(c.format_amount(minor)),
                (_, _) => Value::Number(n),
            },
            (name, Value::Number(n)) if name.ends_with("_at") => match n.as_i64() {
                Some(ms) => Value::String(Timestamp(ms).to_string()),
                None => Value::Number(n),
            },
            (_, Value::Object(inner)) => Value::Object(outside_fields(inner, currency)),
            (_, Value::Array(items)) => Value::Array(
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::Object(inner) => Value::Object(outside_fields(inner, currency)),
                        other => other,
                    })
                    .collect(),
            ),
            (_, other) => other,
        };
        out.insert(camel(&key), value);
    }
    if let Some(c) = currency
        && out.contains_key("amount")
        && !out.contains_key("currencyCode")
    {
        out.insert("currencyCode".into(), json!(c.code()));
    }
    out
}

/// `compare_at` → `compareAt`.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// How many exceptions are kept (in the stream, and in memory).
const KEEP: usize = 10_000;

pub struct Exceptions {
    redis: Option<Arc<RedisLink>>,
    /// Recorded, not yet in the stream.
    pending: Mutex<VecDeque<Exception>>,
    /// The newest ones, for listing while Redis is away (or absent).
    recent: Mutex<VecDeque<Exception>>,
}

impl Exceptions {
    pub fn new(redis: Option<Arc<RedisLink>>) -> Arc<Exceptions> {
        Arc::new(Exceptions {
            redis,
            pending: Mutex::new(VecDeque::new()),
            recent: Mutex::new(VecDeque::new()),
        })
    }

    /// Records one (and counts it in `moat_exceptions_total`).
    pub fn record(&self, exception: Exception) {
        metrics::counter!(
            telemetry::EXCEPTIONS,
            "system" => exception.system.clone(),
            "entity" => exception.entity.clone(),
            "found_by" => exception.found_by.name(),
        )
        .increment(1);
        push_bounded(&self.recent, exception.clone());
        if self.redis.is_some() {
            push_bounded(&self.pending, exception);
        }
    }

    /// Appends what is queued to the shared stream; what Redis does not
    /// take waits for the next flush.
    pub async fn flush(&self) {
        let Some(redis) = &self.redis else {
            return;
        };
        let queued: Vec<Exception> = lock(&self.pending).drain(..).collect();
        if queued.is_empty() {
            return;
        }
        let key = redis.key(&["exceptions"]);
        let payloads: Vec<String> = queued
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .collect();
        let written = redis
            .run("exceptions", |mut c| async move {
                let mut pipe = redis::pipe();
                for payload in &payloads {
                    pipe.cmd("XADD")
                        .arg(&key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(KEEP)
                        .arg("*")
                        .arg("e")
                        .arg(payload)
                        .ignore();
                }
                pipe.query_async::<()>(&mut c).await
            })
            .await;
        if written.is_err() {
            let mut pending = lock(&self.pending);
            for e in queued.into_iter().rev() {
                pending.push_front(e);
            }
            pending.truncate(KEEP);
        }
    }

    /// The newest exceptions first, up to `limit`, those `filter` wants:
    /// the fleet's (from Redis), else this replica's.
    pub async fn list(&self, filter: &Filter, limit: usize) -> Vec<Exception> {
        let wanted = |e: &Exception| filter.wants(e);
        if let Some(redis) = &self.redis {
            self.flush().await;
            let key = redis.key(&["exceptions"]);
            let shared: Result<StreamRangeReply, _> = redis
                .run("exceptions", |mut c| async move {
                    redis::cmd("XREVRANGE")
                        .arg(&key)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(KEEP)
                        .query_async(&mut c)
                        .await
                })
                .await;
            if let Ok(shared) = shared {
                return shared
                    .ids
                    .iter()
                    .filter_map(|entry| entry.get::<String>("e"))
                    .filter_map(|text| serde_json::from_str::<Exception>(&text).ok())
                    .filter(|e| wanted(e))
                    .take(limit)
                    .map(Exception::shown)
                    .collect();
            }
        }
        lock(&self.recent)
            .iter()
            .rev()
            .filter(|e| wanted(e))
            .take(limit)
            .cloned()
            .map(Exception::shown)
            .collect()
    }
}

fn lock(queue: &Mutex<VecDeque<Exception>>) -> std::sync::MutexGuard<'_, VecDeque<Exception>> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

fn push_bounded(queue: &Mutex<VecDeque<Exception>>, exception: Exception) {
    let mut queue = lock(queue);
    if queue.len() >= KEEP {
        queue.pop_front();
    }
    queue.push_back(exception);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recorded_exceptions_are_listed_newest_first_and_filtered() {
        let exceptions = Exceptions::new(None);
        for (system, entity, key) in [
            ("erp", "price", "a"),
            ("pim", "product", "b"),
            ("erp", "inventory", "c"),
        ] {
            exceptions.record(
                Exception::new(
                    system,
                    entity,
                    key,
                    Some(json!("held")),
                    Some(json!("owner")),
                    FoundBy::Reconcile,
                )
                .of_kind("drift"),
            );
        }
        exceptions.record(
            Exception::new("erp", "price", "d", None, None, FoundBy::Checkout).of_kind("price"),
        );
        let shared = &exceptions;
        let list = |filter: Filter| async move { shared.list(&filter, 10).await };
        let keys = |found: Vec<Exception>| found.into_iter().map(|e| e.key).collect::<Vec<_>>();
        assert_eq!(keys(list(Filter::default()).await), ["d", "c", "b", "a"]);
        let erp = Filter {
            system: Some("erp".into()),
            ..Filter::default()
        };
        assert_eq!(keys(list(erp.clone()).await), ["d", "c", "a"]);
        let prices = Filter {
            entity: Some("price".into()),
            ..erp.clone()
        };
        let found = list(prices.clone()).await;
        assert_eq!(keys(found.clone()), ["d", "a"]);
        assert_eq!(found[1].owner_says, Some(json!({ "value": "owner" })));
        let at_checkout = Filter {
            found_by: Some(FoundBy::Checkout),
            ..Filter::default()
        };
        assert_eq!(keys(list(at_checkout).await), ["d"]);
        let drift = Filter {
            kind: Some("DRIFT".into()),
            ..prices
        };
        assert_eq!(keys(list(drift).await), ["a"]);
        let later = Filter {
            since: Some(Timestamp::now().plus(std::time::Duration::from_secs(60))),
            ..Filter::default()
        };
        assert!(list(later).await.is_empty());
        let earlier = Filter {
            until: Some(Timestamp::now().plus(std::time::Duration::from_secs(60))),
            ..Filter::default()
        };
        assert_eq!(list(earlier).await.len(), 4);
    }

    #[test]
    fn values_are_shown_in_outside_form() {
        // A price as reconciliation once kept it: JSON text, minor units,
        // Unix milliseconds.
        let held = r#"{"sku":"SKU-1","segment":"default","currency":"EUR","amount":65899,"compare_at":null,"version":3,"updated_at":1767225600000}"#;
        assert_eq!(
            outside(json!(held)),
            json!({
                "sku": "SKU-1", "segment": "default", "currencyCode": "EUR",
                "amount": "658.99", "compareAt": null, "version": 3,
                "updatedAt": "2026-01-01T00:00:00.000Z",
            })
        );
        // An order's lines take the order's currency.
        let order = json!({
            "id": "o1", "currency": "EUR", "total_amount": 1050,
            "lines": [{ "sku": "SKU-1", "quantity": 1, "unit_amount": 1050 }],
            "placed_at": 0,
        });
        assert_eq!(
            outside(order),
            json!({
                "id": "o1", "currencyCode": "EUR", "totalAmount": "10.50",
                "lines": [{ "sku": "SKU-1", "quantity": 1, "unitAmount": "10.50" }],
                "placedAt": "1970-01-01T00:00:00.000Z",
            })
        );
        assert_eq!(outside(json!("not found")), json!({ "value": "not found" }));
        assert_eq!(outside(json!(7)), json!({ "value": 7 }));
        // Already outside: unchanged.
        let shown = json!({ "amount": "10.50", "currencyCode": "EUR" });
        assert_eq!(outside(shown.clone()), shown);
    }
}
