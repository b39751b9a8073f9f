//! What an event says, read from any of the forms systems of record send:
//!
//! - Moat's envelope (`application/json`):
//!   `{id, type, occurredAt, source?, entity?: {kind, id, segment?,
//!   currency?}, version?, data?}`;
//! - CloudEvents 1.0, structured (`application/cloudevents+json`) or binary
//!   (`ce-*` headers, the body is `data`): `id`, `type` (ours, or ending in
//!   `.` and ours), `time`, `subject` (the entity id), the extension
//!   attributes `entityversion`, `segment` and `currency`, and `data`.
//!
//! A *fat* event carries `data`, a protocol v1 item checked exactly as the
//! API's; a *thin* one names an entity and its version, and Moat refetches.
//! Every refusal names the field.

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::domain::Timestamp;
use crate::error::Error;
use crate::exceptions::Exceptions;
use crate::upstream::{self, Item};
use crate::vocab::{Record, System};

/// The kinds of change Moat applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    PriceUpdated,
    InventoryUpdated,
    ProductUpdated,
    ProductDeleted,
    CustomerUpdated,
    OrderUpdated,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::PriceUpdated,
        EventType::InventoryUpdated,
        EventType::ProductUpdated,
        EventType::ProductDeleted,
        EventType::CustomerUpdated,
        EventType::OrderUpdated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventType::PriceUpdated => "price.updated",
            EventType::InventoryUpdated => "inventory.updated",
            EventType::ProductUpdated => "product.updated",
            EventType::ProductDeleted => "product.deleted",
            EventType::CustomerUpdated => "customer.updated",
            EventType::OrderUpdated => "order.updated",
        }
    }

    /// The protocol v1 entity it is about (its `data` and `entity.kind`).
    pub fn entity(self) -> &'static str {
        match self {
            EventType::PriceUpdated => "price",
            EventType::InventoryUpdated => "inventory",
            EventType::ProductUpdated | EventType::ProductDeleted => "product",
            EventType::CustomerUpdated => "customer",
            EventType::OrderUpdated => "order",
        }
    }

    /// The record it changes: its owner (`[entities]`) is the only system
    /// that may announce it.
    pub fn record(self) -> Record {
        match self {
            EventType::PriceUpdated => Record::Prices,
            EventType::InventoryUpdated => Record::Inventory,
            EventType::ProductUpdated | EventType::ProductDeleted => Record::Products,
            EventType::CustomerUpdated => Record::Customers,
            EventType::OrderUpdated => Record::Orders,
        }
    }

    fn from_name(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The entity a thin event names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub kind: String,
    pub id: String,
    /// For a price: the segment and currency, when the event is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// An event, read and checked.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: EventType,
    pub source: System,
    pub occurred_at: Timestamp,
    pub entity: Option<EntityRef>,
    pub version: Option<u64>,
    /// What a fat event carries.
    pub item: Option<Item>,
    /// `data` as received, so a dead letter can be replayed as it came.
    data: Option<Box<RawValue>>,
}

/// The envelope as stored in the dead-letter queue (and as Moat's form).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stored<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    occurred_at: String,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity: Option<&'a EntityRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
}

impl Event {
    /// Moat's envelope of this event, as it would be sent again.
    pub fn to_json(&self) -> String {
        let stored = Stored {
            id: &self.id,
            kind: self.kind.name(),
            occurred_at: self.occurred_at.to_string(),
            source: self.source.name(),
            entity: self.entity.as_ref(),
            version: self.version,
            data: self.data.as_deref(),
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Whether it carries the changed entity (else Moat refetches).
    pub fn is_fat(&self) -> bool {
        self.item.is_some()
    }
}

const MAX_ID: usize = 256;

/// Reads an event sent to `/events/{source}` in any accepted form.
pub fn decode(
    source: System,
    headers: &HeaderMap,
    body: &[u8],
    exceptions: Option<&Exceptions>,
) -> Result<Event, Error> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if headers.contains_key("ce-specversion") {
        return cloudevent_binary(source, headers, body, exceptions);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad("body", format!("is not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(bad("body", "must be a JSON object"));
    };
    if content_type == "application/cloudevents+json" || fields.contains_key("specversion") {
        return cloudevent(source, fields, exceptions);
    }
    envelope(source, fields, exceptions)
}

/// Reads a dead letter back (Moat's form).
pub fn stored(text: &str, exceptions: Option<&Exceptions>) -> Result<Event, Error> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) else {
        return Err(Error::internal(
            "a dead letter is not an event this build can read",
        ));
    };
    let source = fields
        .get("source")
        .and_then(Value::as_str)
        .and_then(System::find)
        .ok_or_else(|| Error::internal("a dead letter has no source"))?;
    envelope(source, fields, exceptions)
}

fn envelope(
    source: System,
    mut fields: Map<String, Value>,
    exceptions: Option<&Exceptions>,
) -> Result<Event, Error> {
    if let Some(named) = fields.get("source") {
        match named.as_str() {
            Some(s) if s == source.name() => {}
            Some(s) => {
                return Err(bad(
                    "source",
                    format!("{s:?} does not match the path /events/{source}"),
                ));
            }
            None => return Err(bad("source", "must be a string")),
        }
    }
    let entity = match fields.remove("entity") {
        None | Some(Value::Null) => None,
        Some(v) => Some(serde_json::from_value::<EntityRef>(v).map_err(|e| {
            bad(
                "entity",
                format!("must be {{kind, id, segment?, currency?}}: {e}"),
            )
        })?),
    };
    let version = match fields.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad("version", "must be a whole number of at least 0"))?,
        ),
    };
    let data = match fields.remove("data") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(serde_json::value::to_raw_value(&v).map_err(|e| bad("data", e.to_string()))?)
        }
    };
    build(
        source,
        text(&fields, "id")?,
        text(&fields, "type")?,
        text(&fields, "occurredAt")?,
        "occurredAt",
        entity,
        version,
        data,
        exceptions,
    )
}

/// A CloudEvent in structured mode, mapped onto the envelope's fields.
fn cloudevent(
    source: System,
    mut fields: Map<String, Value>,
    exceptions: Option<&Exceptions>,
) -> Result<Event, Error> {
    let spec = text(&fields, "specversion")?;
    if spec != "1.0" {
        return Err(bad("specversion", format!("{spec:?} is not 1.0")));
    }
    let extension = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
    let version = match fields.get("entityversion") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| bad("entityversion", "must be a whole number"))?,
        ),
    };
    let kind = text(&fields, "type")?;
    let entity = extension("subject").map(|id| EntityRef {
        kind: entity_of(&kind),
        id,
        segment: extension("segment"),
        currency: extension("currency"),
    });
    let data = match fields.remove("data") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(serde_json::value::to_raw_value(&v).map_err(|e| bad("data", e.to_string()))?)
        }
    };
    build(
        source,
        text(&fields, "id")?,
        kind,
        text(&fields, "time")?,
        "time",
        entity,
        version,
        data,
        exceptions,
    )
}

/// A CloudEvent in binary mode: attributes in `ce-*` headers, the body is
/// `data`.
fn cloudevent_binary(
    source: System,
    headers: &HeaderMap,
    body: &[u8],
    exceptions: Option<&Exceptions>,
) -> Result<Event, Error> {
    let attribute = |name: &str| {
        headers
            .get(format!("ce-{name}"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let required =
        |name: &str| attribute(name).ok_or_else(|| bad(&format!("ce-{name}"), "is missing"));
    let spec = required("specversion")?;
    if spec != "1.0" {
        return Err(bad("ce-specversion", format!("{spec:?} is not 1.0")));
    }
    let kind = required("type")?;
    let version = match attribute("entityversion") {
        None => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| bad("ce-entityversion", "must be a whole number"))?,
        ),
    };
    let entity = attribute("subject").map(|id| EntityRef {
        kind: entity_of(&kind),
        id,
        segment: attribute("segment"),
        currency: attribute("currency"),
    });
    let data = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let text = std::str::from_utf8(body).map_err(|_| bad("data", "is not UTF-8"))?;
        Some(
            RawValue::from_string(text.to_string())
                .map_err(|e| bad("data", format!("is not JSON: {e}")))?,
        )
    };
    build(
        source,
        required("id")?,
        kind,
        required("time")?,
        "ce-time",
        entity,
        version,
        data,
        exceptions,
    )
}

/// The entity a CloudEvents type is about, for its `subject`.
fn entity_of(kind: &str) -> String {
    event_type(kind).map_or_else(|| "unknown".into(), |t| t.entity().to_string())
}

/// Our type, or a namespaced one ending in `.` and ours.
fn event_type(name: &str) -> Option<EventType> {
    EventType::from_name(name).or_else(|| {
        EventType::ALL
            .into_iter()
            .find(|t| name.ends_with(&format!(".{}", t.name())))
    })
}

#[allow(clippy::too_many_arguments)]
fn build(
    source: System,
    id: String,
    kind: String,
    occurred_at: String,
    time_field: &str,
    entity: Option<EntityRef>,
    version: Option<u64>,
    data: Option<Box<RawValue>>,
    exceptions: Option<&Exceptions>,
) -> Result<Event, Error> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err(bad("id", format!("must be 1 to {MAX_ID} characters")));
    }
    let kind = event_type(&kind).ok_or_else(|| {
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
        bad(
            "type",
            format!("{kind:?} is not one of {}", known.join(", ")),
        )
    })?;
    let occurred_at = Timestamp::parse_rfc3339(&occurred_at).ok_or_else(|| {
        bad(
            time_field,
            format!("{occurred_at:?} is not an RFC 3339 time"),
        )
    })?;
    if let Some(entity) = &entity {
        if entity.kind != kind.entity() {
            return Err(bad(
                "entity.kind",
                format!(
                    "{:?} is not {:?}, what {} is about",
                    entity.kind,
                    kind.entity(),
                    kind.name()
                ),
            ));
        }
        if crate::domain::check_key(&entity.id).is_err() {
            return Err(bad(
                "entity.id",
                "must be 1 to 128 characters without commas or spaces",
            ));
        }
    }
    let item = match &data {
        Some(raw) => Some(
            upstream::item(kind.entity(), source, raw.get().as_bytes(), exceptions)
                .map_err(|reason| bad("data", reason))?,
        ),
        None => None,
    };
    match (&item, &entity, version) {
        (Some(_), _, _) => {}
        (None, Some(_), Some(_)) => {}
        (None, Some(_), None) if kind == EventType::ProductDeleted => {}
        (None, None, _) => {
            return Err(bad(
                "data",
                "an event carries `data` (the changed item) or `entity` and `version`",
            ));
        }
        (None, Some(_), None) => {
            return Err(bad(
                "version",
                "a thin event (no `data`) needs the entity's version",
            ));
        }
    }
    Ok(Event {
        id,
        kind,
        source,
        occurred_at,
        entity,
        version,
        item,
        data,
    })
}

fn text(fields: &Map<String, Value>, name: &str) -> Result<String, Error> {
    match fields.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(name, "must be a string")),
        None => Err(bad(name, "is missing")),
    }
}

fn bad(field: &str, problem: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("{field}: {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;
    use serde_json::json;

    fn json_headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    fn price(version: u64) -> Value {
        json!({ "sku": "SKU-000001", "segment": "default", "currency": "EUR", "amount": 1299,
                "version": version, "updatedAt": "2026-11-29T10:00:00Z" })
    }

    fn refused(source: System, body: Value) -> String {
        let e = decode(
            source,
            &json_headers("application/json"),
            body.to_string().as_bytes(),
            None,
        )
        .unwrap_err();
        assert_eq!(e.kind(), Kind::BadRequest);
        e.message().to_string()
    }

    #[test]
    fn fat_and_thin_envelopes_are_read() {
        let fat = json!({ "id": "e1", "type": "price.updated", "occurredAt": "2026-11-29T10:00:01Z",
                          "source": "erp", "data": price(7) });
        let event = decode(
            System::ERP,
            &json_headers("application/json"),
            fat.to_string().as_bytes(),
            None,
        )
        .unwrap();
        assert!(event.is_fat());
        assert!(matches!(&event.item, Some(Item::Price(p)) if p.version == 7 && p.amount == 1299));
        let back = stored(&event.to_json(), None).unwrap();
        assert_eq!(back.id, "e1");
        assert!(back.is_fat());

        let thin = json!({ "id": "e2", "type": "inventory.updated", "occurredAt": "2026-11-29T10:00:01Z",
                           "entity": { "kind": "inventory", "id": "SKU-000001" }, "version": 4 });
        let event = decode(
            System::ERP,
            &json_headers("application/json"),
            thin.to_string().as_bytes(),
            None,
        )
        .unwrap();
        assert!(!event.is_fat());
        assert_eq!(event.version, Some(4));
    }

    #[test]
    fn the_documented_example_event_is_read() {
        let example = &crate::schema::schema("event.json").expect("event.json")["examples"][0];
        assert_eq!(
            crate::schema::validate("event.json", example, crate::schema::Properties::Closed),
            []
        );
        let event = decode(
            System::ERP,
            &json_headers("application/json"),
            example.to_string().as_bytes(),
            None,
        )
        .unwrap();
        assert!(matches!(&event.item, Some(Item::Price(p)) if Some(p.version) == event.version));
        assert_eq!(event.entity.map(|e| e.id), Some("SKU-000042".to_string()));
    }

    #[test]
    fn refusals_name_the_field() {
        let base = json!({ "id": "e1", "type": "price.updated", "occurredAt": "2026-11-29T10:00:01Z", "data": price(1) });
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        assert!(refused(System::ERP, with("type", json!("price.changed"))).starts_with("type:"));
        assert!(
            refused(System::ERP, with("occurredAt", json!("yesterday"))).starts_with("occurredAt:")
        );
        assert!(refused(System::ERP, with("source", json!("pim"))).starts_with("source:"));
        assert!(refused(System::ERP, with("id", json!(5))).starts_with("id:"));
        let broken = with("data", json!({ "sku": "SKU-1", "amount": "12.99" }));
        assert!(refused(System::ERP, broken).starts_with("data:"));
        let neither =
            json!({ "id": "e1", "type": "price.updated", "occurredAt": "2026-11-29T10:00:01Z" });
        assert!(refused(System::ERP, neither).starts_with("data:"));
        let unversioned = json!({ "id": "e1", "type": "price.updated", "occurredAt": "2026-11-29T10:00:01Z",
                                  "entity": { "kind": "price", "id": "SKU-1" } });
        assert!(refused(System::ERP, unversioned).starts_with("version:"));
        let e = decode(
            System::ERP,
            &json_headers("application/json"),
            b"{ nope",
            None,
        )
        .unwrap_err();
        assert!(e.message().starts_with("body:"));
    }

    #[test]
    fn cloudevents_structured_and_binary_are_read() {
        let structured = json!({ "specversion": "1.0", "id": "ce-1", "source": "/sap/erp",
                                 "type": "com.example.erp.price.updated", "time": "2026-11-29T10:00:01Z",
                                 "datacontenttype": "application/json", "data": price(3) });
        let event = decode(
            System::ERP,
            &json_headers("application/cloudevents+json"),
            structured.to_string().as_bytes(),
            None,
        )
        .unwrap();
        assert_eq!(event.kind, EventType::PriceUpdated);
        assert!(event.is_fat());

        let mut h = json_headers("application/json");
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "ce-2"),
            ("ce-source", "/sap/erp"),
            ("ce-type", "inventory.updated"),
            ("ce-time", "2026-11-29T10:00:01Z"),
            ("ce-subject", "SKU-000001"),
            ("ce-entityversion", "9"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        let event = decode(System::ERP, &h, b"", None).unwrap();
        assert_eq!(event.entity.as_ref().unwrap().id, "SKU-000001");
        assert_eq!(event.version, Some(9));
        h.remove("ce-time");
        assert!(
            decode(System::ERP, &h, b"", None)
                .unwrap_err()
                .message()
                .starts_with("ce-time:")
        );
    }
}
