//! Change events in a system's own form, from a connector's
//! `[systems.NAME.events]`: the delivery is verified by the system's
//! signature scheme, then its `map` (jq, reading the body as `.` and the
//! headers as `$headers`) turns it into Moat envelopes, none or several.
//! An envelope's `item` is a foreign record, mapped by the route that reads
//! that record (with the envelope's `segment` and `currency` for a map that
//! reads them), into the protocol v1 `data` of a fat event. From there an
//! envelope is Moat's like any other: decoded and checked the same way.

use http::HeaderMap;
use jaq_json::Val;
use serde_json::{Map, Value};

use super::envelope::{self, Clock, Event, EventType};
use crate::error::Error;
use crate::exceptions::Exceptions;
use crate::upstream::rest::{Connector, jq};
use crate::vocab::System;

/// The events one delivery holds, each decoded (or refused, with why).
pub(super) fn events(
    connector: &Connector,
    source: System,
    headers: &HeaderMap,
    body: &[u8],
    clock: Clock,
    exceptions: Option<&Exceptions>,
) -> Result<Vec<Event>, Error> {
    let Some(events) = connector.events() else {
        return Err(Error::internal("a connector without [events]"));
    };
    let delivery = jq::read(body).map_err(|e| bad("body", e))?;
    let outputs = events
        .map
        .run(delivery, &[headers_value(headers)])
        .map_err(|e| bad("body", format!("the events map failed on it: {e}")))?;
    outputs
        .into_iter()
        .enumerate()
        .map(|(n, out)| {
            let fields = envelope_of(connector, out)
                .map_err(|e| bad(&format!("event {n} of the delivery"), e))?;
            let at = envelope::Reading {
                source,
                clock,
                exceptions,
            };
            envelope::from_fields(at, fields)
        })
        .collect()
}

/// One output of the map as an envelope's fields, its `item` mapped.
fn envelope_of(connector: &Connector, out: Val) -> Result<Map<String, Value>, String> {
    let Value::Object(mut fields) = serde_json::from_str::<Value>(&out.to_string())
        .map_err(|e| format!("the map gave what is not JSON: {e}"))?
    else {
        return Err(format!("the map gave {out}, not an envelope object"));
    };
    let segment = take_text(&mut fields, "segment");
    let currency = take_text(&mut fields, "currency");
    let Some(item) = fields.remove("item") else {
        return Ok(fields);
    };
    let kind = fields
        .get("type")
        .and_then(Value::as_str)
        .and_then(EventType::from_name)
        .ok_or("an envelope with an item needs its type")?;
    let item = jq::read(item.to_string().as_bytes())?;
    let mapped =
        connector.map_item(kind.record(), item, segment.as_deref(), currency.as_deref())?;
    let [one] = mapped.as_slice() else {
        return Err(format!(
            "its item maps to {} items; give one envelope per item",
            mapped.len()
        ));
    };
    let data = serde_json::from_str::<Value>(&one.to_string())
        .map_err(|e| format!("the mapped item is not JSON: {e}"))?;
    fields.insert("data".into(), data);
    Ok(fields)
}

fn take_text(fields: &mut Map<String, Value>, name: &str) -> Option<String> {
    match fields.remove(name) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// The delivery's headers as a jq object, names lowercase (several values
/// of one name joined by commas).
fn headers_value(headers: &HeaderMap) -> Val {
    let mut object = Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        object.insert(name.as_str().to_string(), Value::String(values.join(",")));
    }
    jq::read(Value::Object(object).to_string().as_bytes()).unwrap_or(Val::Null)
}

fn bad(field: &str, why: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("{field}: {why}"))
}
