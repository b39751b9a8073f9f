//! The contract check at the boundary: a payload that breaks upstream
//! protocol v1 (missing fields, wrong types, negative stock, unknown
//! currency, not JSON at all) is rejected here, counted, logged, and never
//! reaches the cache. The last good value stays.

use std::hash::Hash;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::System;
use crate::error::Error;
use crate::exceptions::{Exception, Exceptions, FoundBy};
use crate::telemetry;
use crate::vocab::CacheMap;

/// Where a payload crossed into Moat: the system that sent it, and where
/// its contract violations are recorded for their owner.
#[derive(Clone, Copy)]
pub struct Boundary<'a> {
    pub system: System,
    pub exceptions: Option<&'a Exceptions>,
}

/// Longest paging cursor an upstream may hand out.
const MAX_CURSOR: usize = 512;

/// A wire item: how to read it and how to check it into a domain value.
pub trait Wire: DeserializeOwned {
    type Domain;
    /// The entity name in metrics (`product`, `price`, …).
    const ENTITY: &'static str;
    /// Checks what serde cannot (ranges, known codes, timestamps) and maps.
    fn check(self) -> Result<Self::Domain, String>;
}

/// `{"items": [...], "nextCursor": ...}` read in one pass, every item typed:
/// what a system that keeps its contract sends.
#[derive(Deserialize)]
#[serde(bound = "W: Wire")]
pub(super) struct TypedList<W> {
    items: Vec<W>,
    #[serde(rename = "nextCursor", default)]
    next_cursor: Option<String>,
}

/// The same list with items kept raw, so one bad item does not hide the
/// good ones.
#[derive(Deserialize)]
struct RawList<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
    #[serde(rename = "nextCursor", default)]
    next_cursor: Option<String>,
}

/// A checked list: each item keyed by `key_field`, plus the paging cursor.
pub struct Checked<K, D> {
    pub items: Vec<(K, Result<D, Error>)>,
    pub next_cursor: Option<String>,
}

impl<K: Eq + Hash, D> Checked<K, D> {
    pub fn into_map(self) -> CacheMap<K, Result<D, Error>> {
        self.items.into_iter().collect()
    }
}

/// Parses a list payload. `key_of` reads an item's key from the checked
/// value; `key_field` reads it from the raw item when the item is broken, so
/// the failure is charged to that key alone. A broken item whose key cannot
/// be read fails the whole payload: otherwise its key would look absent,
/// and "absent" means "does not exist".
pub fn parse_list<W: Wire, K>(
    at: Boundary<'_>,
    body: &[u8],
    key_field: &str,
    key_of: impl Fn(&W::Domain) -> K,
    key_from_str: impl Fn(&str) -> K,
) -> Result<Checked<K, W::Domain>, Error> {
    match parse_whole::<W, K>(at, body, &key_of) {
        Some(checked) => checked,
        None => parse_apart::<W, K>(at, body, key_field, key_of, key_from_str),
    }
}

/// The list in one pass, when every item reads and checks; `None` when one
/// does not, for `parse_apart` to find which (the payload is read again,
/// which only a broken one pays).
fn parse_whole<W: Wire, K>(
    at: Boundary<'_>,
    body: &[u8],
    key_of: &impl Fn(&W::Domain) -> K,
) -> Option<Result<Checked<K, W::Domain>, Error>> {
    let list: TypedList<W> = serde_json::from_slice(body).ok()?;
    list.checked(at, key_of)
}

impl<W: Wire> TypedList<W> {
    /// Every item checked, or `None` when one breaks the contract.
    pub(super) fn checked<K>(
        self,
        at: Boundary<'_>,
        key_of: &impl Fn(&W::Domain) -> K,
    ) -> Option<Result<Checked<K, W::Domain>, Error>> {
        let items = self
            .items
            .into_iter()
            .map(|wire| wire.check().map(|value| (key_of(&value), Ok(value))))
            .collect::<Result<Vec<_>, String>>()
            .ok()?;
        Some(
            checked_cursor::<W>(at, self.next_cursor)
                .map(|next_cursor| Checked { items, next_cursor }),
        )
    }
}

/// The list item by item.
pub(super) fn parse_apart<W: Wire, K>(
    at: Boundary<'_>,
    body: &[u8],
    key_field: &str,
    key_of: impl Fn(&W::Domain) -> K,
    key_from_str: impl Fn(&str) -> K,
) -> Result<Checked<K, W::Domain>, Error> {
    let list: RawList = serde_json::from_slice(body)
        .map_err(|e| violation(at, W::ENTITY, None, format!("the list is not valid: {e}")))?;
    let next_cursor = checked_cursor::<W>(at, list.next_cursor)?;
    let mut items = Vec::with_capacity(list.items.len());
    for raw in list.items {
        let checked = checked_item::<W>(raw.get());
        match checked {
            Ok(value) => items.push((key_of(&value), Ok(value))),
            Err(reason) => {
                let key = key_in(raw, key_field);
                let error = violation(at, W::ENTITY, key.as_deref(), reason);
                match key {
                    Some(key) => items.push((key_from_str(&key), Err(error))),
                    None => return Err(error),
                }
            }
        }
    }
    Ok(Checked { items, next_cursor })
}

/// The paging cursor, which goes back out in a URL and into a cache key.
fn checked_cursor<W: Wire>(
    at: Boundary<'_>,
    cursor: Option<String>,
) -> Result<Option<String>, Error> {
    match cursor {
        Some(cursor) if cursor.len() > MAX_CURSOR || cursor.chars().any(char::is_control) => {
            Err(violation(
                at,
                W::ENTITY,
                None,
                format!("nextCursor is longer than {MAX_CURSOR} bytes or holds control characters"),
            ))
        }
        cursor => Ok(cursor),
    }
}

/// Parses a single-entity payload.
pub fn parse_one<W: Wire>(at: Boundary<'_>, body: &[u8]) -> Result<W::Domain, Error> {
    check_one::<W>(at, body).map_err(|_| {
        Error::unavailable(format!(
            "{} sent a {} that breaks the contract",
            at.system,
            W::ENTITY
        ))
    })
}

/// Parses a single-entity payload; a violation is counted and logged, and
/// its reason returned (an event's sender is told what was wrong).
pub fn check_one<W: Wire>(at: Boundary<'_>, body: &[u8]) -> Result<W::Domain, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string());
    text.and_then(checked_item::<W>).inspect_err(|reason| {
        let _ = violation(at, W::ENTITY, None, reason.clone());
    })
}

/// One item read and checked. An item a connector mapped carries where it
/// came from (`moat:origin`), named with any violation; one it could not
/// map is `moat:broken`, with why (`upstream::rest`).
fn checked_item<W: Wire>(raw: &str) -> Result<W::Domain, String> {
    let checked = serde_json::from_str::<W>(raw)
        .map_err(|e| e.to_string())
        .and_then(W::check);
    match checked {
        Err(reason) if raw.contains("\"moat:") => {
            #[derive(Deserialize)]
            struct Mapped {
                #[serde(rename = "moat:origin")]
                origin: Option<String>,
                #[serde(rename = "moat:broken")]
                broken: Option<String>,
            }
            match serde_json::from_str::<Mapped>(raw) {
                Ok(Mapped {
                    broken: Some(broken),
                    ..
                }) => Err(broken),
                Ok(Mapped {
                    origin: Some(origin),
                    ..
                }) => Err(format!("{origin}, as mapped: {reason}")),
                _ => Err(reason),
            }
        }
        other => other,
    }
}

/// Counts, logs and records a contract violation (for the system's owner)
/// and turns it into the error the caller sees (not retryable: the same
/// payload would come back).
pub fn violation(
    at: Boundary<'_>,
    entity: &'static str,
    key: Option<&str>,
    reason: String,
) -> Error {
    let system = at.system;
    telemetry::contract_violation(system, entity);
    tracing::warn!(upstream = %system, entity, %reason, "upstream payload breaks protocol v1; not cached");
    if let Some(exceptions) = at.exceptions {
        exceptions.record(
            Exception::new(
                system.name(),
                entity,
                key.unwrap_or("-"),
                None,
                Some(serde_json::json!({ "violation": reason })),
                FoundBy::Contract,
            )
            .of_kind("violation"),
        );
    }
    Error::unavailable(format!("{system} sent a {entity} that breaks the contract"))
}

fn key_in(raw: &RawValue, field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    value.get(field)?.as_str().map(str::to_string)
}

/// RFC 3339 or a contract violation.
pub fn timestamp(field: &str, text: &str) -> Result<crate::domain::Timestamp, String> {
    crate::domain::Timestamp::parse_rfc3339(text)
        .ok_or_else(|| format!("{field} {text:?} is not an RFC 3339 timestamp"))
}

/// A non-empty string or a contract violation.
pub fn non_empty(field: &str, text: String) -> Result<String, String> {
    if text.trim().is_empty() {
        Err(format!("{field} is empty"))
    } else {
        Ok(text)
    }
}
