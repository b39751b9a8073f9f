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
//!
//! What an event says is held to what cannot be forged forward: its id is
//! printable (it reaches logs and the dead-letter queue), its versions are
//! integers every JSON parser reads exactly (`0..=2^53-1`), and its time is
//! at most the signature tolerance ahead of Moat's clock and served as no
//! later than now, so a skewed or forged clock cannot pin a value as fresh.

use std::time::Duration;

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

    pub fn from_name(name: &str) -> Option<EventType> {
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

/// The largest version an event may carry: 2^53 - 1, the largest integer
/// every JSON parser (JavaScript's included) reads exactly, so a sender, Moat
/// and Redis all compare the same number.
pub const MAX_VERSION: u64 = (1 << 53) - 1;

/// Moat's clock as an event is read against it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Timestamp,
    /// How far ahead an event's time may be (`[events] tolerance`, the
    /// signature's own window): senders' clocks drift, but no further.
    pub tolerance: Duration,
}

/// What an event is read against: the system it came from, Moat's
/// clock, and where a contract violation in its data is recorded.
#[derive(Clone, Copy)]
pub struct Reading<'a> {
    pub source: System,
    pub clock: Clock,
    pub exceptions: Option<&'a Exceptions>,
}

/// Whether a request is a CloudEvent in binary mode: its attributes in
/// `ce-*` headers (which its signature must then cover too).
pub fn is_binary(headers: &HeaderMap) -> bool {
    headers.contains_key("ce-specversion")
}

/// Reads an event sent to `/events/{source}` in any accepted form.
pub fn decode(at: Reading<'_>, headers: &HeaderMap, body: &[u8]) -> Result<Event, Error> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if is_binary(headers) {
        return cloudevent_binary(at, headers, body);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad("body", format!("is not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(bad("body", "must be a JSON object"));
    };
    if content_type == "application/cloudevents+json" || fields.contains_key("specversion") {
        return cloudevent(at, fields);
    }
    envelope(at, fields)
}

/// An event given as its fields (a connector's events map made them):
/// Moat's envelope, or a CloudEvent's structured form.
pub fn from_fields(at: Reading<'_>, fields: Map<String, Value>) -> Result<Event, Error> {
    if fields.contains_key("specversion") {
        cloudevent(at, fields)
    } else {
        envelope(at, fields)
    }
}

/// Reads a dead letter back (Moat's form). Its time was held to the clock
/// when it arrived; it is held to `clock` again, which can only keep it.
pub fn stored(text: &str, clock: Clock, exceptions: Option<&Exceptions>) -> Result<Event, Error> {
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
    let at = Reading {
        source,
        clock,
        exceptions,
    };
    envelope(at, fields)
}

/// What each form calls the fields a refusal names.
struct Names {
    id: &'static str,
    time: &'static str,
}

const ENVELOPE: Names = Names {
    id: "id",
    time: "occurredAt",
};
const STRUCTURED: Names = Names {
    id: "id",
    time: "time",
};
const BINARY: Names = Names {
    id: "ce-id",
    time: "ce-time",
};

/// What a form says, before it is checked.
struct Said {
    id: String,
    kind: String,
    occurred_at: String,
    entity: Option<EntityRef>,
    version: Option<u64>,
    data: Option<Box<RawValue>>,
}

impl Said {
    /// A form's id and time, read by the names it gives them (a missing or
    /// mistyped one refused by `get`, naming it), with what was read before.
    fn read(
        names: &Names,
        get: impl Fn(&str) -> Result<String, Error>,
        kind: String,
        entity: Option<EntityRef>,
        version: Option<u64>,
        data: Option<Box<RawValue>>,
    ) -> Result<Said, Error> {
        Ok(Said {
            id: get(names.id)?,
            occurred_at: get(names.time)?,
            kind,
            entity,
            version,
            data,
        })
    }
}

fn envelope(at: Reading<'_>, mut fields: Map<String, Value>) -> Result<Event, Error> {
    let source = at.source;
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
        Some(v) => Some(json_version(v, "version")?),
    };
    let kind = text(&fields, "type")?;
    finish(at, &ENVELOPE, &mut fields, kind, entity, version)
}

/// A CloudEvent in structured mode, mapped onto the envelope's fields.
fn cloudevent(at: Reading<'_>, mut fields: Map<String, Value>) -> Result<Event, Error> {
    let spec = text(&fields, "specversion")?;
    if spec != "1.0" {
        return Err(bad("specversion", format!("{spec:?} is not 1.0")));
    }
    let extension = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
    let version = match fields.get("entityversion") {
        None => None,
        Some(Value::String(s)) => Some(text_version(s, "entityversion")?),
        Some(v) => Some(json_version(v, "entityversion")?),
    };
    let kind = text(&fields, "type")?;
    let entity = extension("subject").map(|id| EntityRef {
        kind: entity_of(&kind),
        id,
        segment: extension("segment"),
        currency: extension("currency"),
    });
    finish(at, &STRUCTURED, &mut fields, kind, entity, version)
}

/// The rest of a JSON form (its id, time and data) read, and the event
/// built.
fn finish(
    at: Reading<'_>,
    names: &Names,
    fields: &mut Map<String, Value>,
    kind: String,
    entity: Option<EntityRef>,
    version: Option<u64>,
) -> Result<Event, Error> {
    let data = data_of(fields)?;
    let said = Said::read(
        names,
        |name| text(fields, name),
        kind,
        entity,
        version,
        data,
    )?;
    build(at, said, names)
}

/// A CloudEvent in binary mode: attributes in `ce-*` headers, the body is
/// `data`. Its signature covers the headers (`verify`); each is sent once.
fn cloudevent_binary(at: Reading<'_>, headers: &HeaderMap, body: &[u8]) -> Result<Event, Error> {
    for name in headers.keys().filter(|n| n.as_str().starts_with("ce-")) {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(bad(name.as_str(), "is sent more than once"));
        }
    }
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
        Some(v) => Some(text_version(&v, "ce-entityversion")?),
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
    let header = |name: &str| {
        let value = headers.get(name).and_then(|v| v.to_str().ok());
        value
            .map(str::to_string)
            .ok_or_else(|| bad(name, "is missing"))
    };
    let said = Said::read(&BINARY, header, kind, entity, version, data)?;
    build(at, said, &BINARY)
}

/// A JSON event's `data`, as it was sent (none when absent or null).
fn data_of(fields: &mut Map<String, Value>) -> Result<Option<Box<RawValue>>, Error> {
    match fields.remove("data") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::value::to_raw_value(&v)
            .map(Some)
            .map_err(|e| bad("data", e.to_string())),
    }
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

fn build(at: Reading<'_>, said: Said, names: &Names) -> Result<Event, Error> {
    let Reading {
        source,
        clock,
        exceptions,
    } = at;
    let Said {
        id,
        kind,
        occurred_at,
        entity,
        version,
        data,
    } = said;
    if id.is_empty() || id.len() > MAX_ID {
        return Err(bad(names.id, format!("must be 1 to {MAX_ID} characters")));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            names.id,
            "must be printable ASCII (`!` to `~`): no spaces, control or other characters",
        ));
    }
    let kind = event_type(&kind).ok_or_else(|| {
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
        bad(
            "type",
            format!("{kind:?} is not one of {}", known.join(", ")),
        )
    })?;
    let occurred_at = at_most_now(&occurred_at, names.time, clock)?;
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
    if let Some(item) = &item {
        in_range(item_version(item), "data.version")?;
    }
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

/// The time an event's change is served as of: refused when further ahead
/// of Moat's clock than the tolerance, and never later than now (a value
/// "as of" the future would be fresh for longer than its TTL).
fn at_most_now(text: &str, field: &str, clock: Clock) -> Result<Timestamp, Error> {
    let at = Timestamp::parse_rfc3339(text)
        .ok_or_else(|| bad(field, format!("{text:?} is not an RFC 3339 time")))?;
    let ahead = Duration::from_millis(u64::try_from(at.0.saturating_sub(clock.now.0)).unwrap_or(0));
    if ahead > clock.tolerance {
        return Err(bad(
            field,
            format!(
                "{text:?} is {} s ahead of Moat's clock; at most {} s ([events] tolerance) \
                 are accepted",
                ahead.as_secs(),
                clock.tolerance.as_secs()
            ),
        ));
    }
    Ok(at.min(clock.now))
}

/// A version given as a JSON value: an integer in `0..=MAX_VERSION`.
fn json_version(value: &Value, field: &str) -> Result<u64, Error> {
    let version = value.as_u64().ok_or_else(|| {
        bad(
            field,
            format!("{value} is not a whole number from 0 to {MAX_VERSION}"),
        )
    })?;
    in_range(version, field)
}

/// A version given as text (a CloudEvents attribute): decimal digits only.
fn text_version(text: &str, field: &str) -> Result<u64, Error> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(version) if digits => in_range(version, field),
        _ => Err(bad(
            field,
            format!("{text:?} is not a whole number from 0 to {MAX_VERSION}"),
        )),
    }
}

fn in_range(version: u64, field: &str) -> Result<u64, Error> {
    if version > MAX_VERSION {
        return Err(bad(
            field,
            format!("{version} is beyond {MAX_VERSION} (2^53-1, the largest exact JSON integer)"),
        ));
    }
    Ok(version)
}

fn item_version(item: &Item) -> u64 {
    use crate::domain::Versioned;
    match item {
        Item::Price(v) => v.version(),
        Item::Stock(v) => v.version(),
        Item::Product(v) => v.version(),
        Item::Customer(v) => v.version(),
        Item::Order(v) => v.version(),
    }
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

    /// Moat's clock in these tests: a few minutes after the events' times.
    fn clock() -> Clock {
        Clock {
            now: Timestamp::parse_rfc3339("2026-11-29T10:05:00Z").unwrap(),
            tolerance: Duration::from_secs(300),
        }
    }

    /// `body` sent to the ERP's `/events/erp` with `content_type`.
    fn read_json(content_type: &str, body: &Value) -> Result<Event, Error> {
        decode(
            reading(System::ERP),
            &json_headers(content_type),
            body.to_string().as_bytes(),
        )
    }

    fn reading(source: System) -> Reading<'static> {
        Reading {
            source,
            clock: clock(),
            exceptions: None,
        }
    }

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
            reading(source),
            &json_headers("application/json"),
            body.to_string().as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), Kind::BadRequest);
        e.message().to_string()
    }

    #[test]
    fn fat_and_thin_envelopes_are_read() {
        let fat = json!({ "id": "e1", "type": "price.updated", "occurredAt": "2026-11-29T10:00:01Z",
                          "source": "erp", "data": price(7) });
        let event = read_json("application/json", &fat).unwrap();
        assert!(event.is_fat());
        assert!(matches!(&event.item, Some(Item::Price(p)) if p.version == 7 && p.amount == 1299));
        let back = stored(&event.to_json(), clock(), None).unwrap();
        assert_eq!(back.id, "e1");
        assert!(back.is_fat());

        let thin = json!({ "id": "e2", "type": "inventory.updated", "occurredAt": "2026-11-29T10:00:01Z",
                           "entity": { "kind": "inventory", "id": "SKU-000001" }, "version": 4 });
        let event = read_json("application/json", &thin).unwrap();
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
        let event = read_json("application/json", example).unwrap();
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
            reading(System::ERP),
            &json_headers("application/json"),
            b"{ nope",
        )
        .unwrap_err();
        assert!(e.message().starts_with("body:"));
    }

    #[test]
    fn cloudevents_structured_and_binary_are_read() {
        let structured = json!({ "specversion": "1.0", "id": "ce-1", "source": "/sap/erp",
                                 "type": "com.example.erp.price.updated", "time": "2026-11-29T10:00:01Z",
                                 "datacontenttype": "application/json", "data": price(3) });
        let event = read_json("application/cloudevents+json", &structured).unwrap();
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
        let event = decode(reading(System::ERP), &h, b"").unwrap();
        assert_eq!(event.entity.as_ref().unwrap().id, "SKU-000001");
        assert_eq!(event.version, Some(9));
        h.remove("ce-time");
        assert!(
            decode(reading(System::ERP), &h, b"")
                .unwrap_err()
                .message()
                .starts_with("ce-time:")
        );
    }

    fn binary_headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "ce-3"),
            ("ce-type", "inventory.updated"),
            ("ce-time", "2026-11-29T10:00:01Z"),
            ("ce-subject", "SKU-000001"),
            ("ce-entityversion", "9"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn thin_with(key: &str, value: Value) -> Value {
        let mut event = json!({ "id": "e1", "type": "inventory.updated",
                                "occurredAt": "2026-11-29T10:00:01Z",
                                "entity": { "kind": "inventory", "id": "SKU-1" }, "version": 4 });
        event[key] = value;
        event
    }

    #[test]
    fn times_ahead_of_the_clock_are_refused_past_the_tolerance_and_served_as_now() {
        for (ahead, refused) in [
            ("2026-11-29T10:09:59Z", false),
            ("2026-11-29T10:10:01Z", true),
        ] {
            let envelope = read_json("application/json", &thin_with("occurredAt", json!(ahead)));
            let structured = json!({ "specversion": "1.0", "id": "ce-1", "type": "inventory.updated",
                                     "time": ahead, "subject": "SKU-1", "entityversion": 4 });
            let structured = read_json("application/cloudevents+json", &structured);
            let binary = decode(
                reading(System::ERP),
                &binary_headers(&[("ce-time", ahead)]),
                b"",
            );
            for (field, result) in [
                ("occurredAt", envelope),
                ("time", structured),
                ("ce-time", binary),
            ] {
                match result {
                    Ok(event) => {
                        assert!(!refused, "{field} {ahead}");
                        assert_eq!(event.occurred_at, clock().now, "{field}: served as of now");
                    }
                    Err(e) => {
                        assert!(refused, "{field} {ahead}: {e}");
                        assert!(e.message().starts_with(&format!("{field}: ")), "{e}");
                        assert!(e.message().contains("ahead"), "{e}");
                    }
                }
            }
        }
        let past = decode(
            reading(System::ERP),
            &json_headers("application/json"),
            thin_with("occurredAt", json!("2020-01-01T00:00:00Z"))
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(past.occurred_at.to_string(), "2020-01-01T00:00:00.000Z");
    }

    #[test]
    fn versions_are_integers_every_json_parser_reads_exactly() {
        let read = |version: Value| read_json("application/json", &thin_with("version", version));
        assert_eq!(read(json!(0)).unwrap().version, Some(0));
        assert_eq!(read(json!(MAX_VERSION)).unwrap().version, Some(MAX_VERSION));
        for refused in [
            json!(MAX_VERSION + 1),
            json!(u64::MAX),
            json!(-1),
            json!(1.5),
            json!("4"),
        ] {
            let e = read(refused.clone()).unwrap_err();
            assert!(e.message().starts_with("version: "), "{refused}: {e}");
        }
        let binary = |version: &str| {
            decode(
                reading(System::ERP),
                &binary_headers(&[("ce-entityversion", version)]),
                b"",
            )
        };
        assert_eq!(
            binary("9007199254740991").unwrap().version,
            Some(MAX_VERSION)
        );
        for refused in [
            "9007199254740992",
            "18446744073709551615",
            "18446744073709551616",
            "+5",
            "-1",
            "5.0",
            "",
        ] {
            let e = binary(refused).unwrap_err();
            assert!(
                e.message().starts_with("ce-entityversion: "),
                "{refused:?}: {e}"
            );
        }
        let structured = json!({ "specversion": "1.0", "id": "ce-1", "type": "inventory.updated",
                                 "time": "2026-11-29T10:00:01Z", "subject": "SKU-1",
                                 "entityversion": "9007199254740992" });
        let e = read_json("application/cloudevents+json", &structured).unwrap_err();
        assert!(e.message().starts_with("entityversion: "), "{e}");
        let fat = json!({ "id": "e1", "type": "price.updated", "occurredAt": "2026-11-29T10:00:01Z",
                          "data": price(MAX_VERSION + 1) });
        assert!(refused(System::ERP, fat).starts_with("data.version: "));
    }

    #[test]
    fn ids_are_printable_and_each_attribute_is_sent_once() {
        for id in [
            "evt\nforged: line",
            "a b",
            "caf\u{e9}",
            "tab\there",
            "\u{202e}x",
        ] {
            let e = refused(System::ERP, thin_with("id", json!(id)));
            assert!(e.starts_with("id: must be printable"), "{id:?}: {e}");
        }
        let e = decode(
            reading(System::ERP),
            &binary_headers(&[("ce-id", "a b")]),
            b"",
        )
        .unwrap_err();
        assert!(e.message().starts_with("ce-id: must be printable"), "{e}");
        let mut twice = binary_headers(&[]);
        twice.append("ce-type", "product.deleted".parse().unwrap());
        let e = decode(reading(System::ERP), &twice, b"").unwrap_err();
        assert!(e.message().starts_with("ce-type: "), "{e}");
    }

    /// event.json says exactly what the envelope takes of the rules this
    /// module adds: the id's characters and the version's range.
    #[test]
    fn the_event_schema_states_the_id_and_version_rules_moat_applies() {
        let example =
            crate::schema::schema("event.json").expect("event.json")["examples"][0].clone();
        let both = |event: &Value| {
            let schema =
                crate::schema::validate("event.json", event, crate::schema::Properties::Closed)
                    .is_empty();
            let moat = read_json("application/json", event).is_ok();
            (schema, moat)
        };
        let long = "i".repeat(MAX_ID);
        let longer = "i".repeat(MAX_ID + 1);
        for id in [
            "evt-1",
            "urn:uuid:0b6f/7?x=1#~",
            &long,
            "",
            &longer,
            "a b",
            "a\nb",
            "caf\u{e9}",
            "\u{7f}",
        ] {
            let mut event = example.clone();
            event["id"] = json!(id);
            let (schema, moat) = both(&event);
            assert_eq!(schema, moat, "id {id:?}");
        }
        for version in [
            json!(0),
            json!(4),
            json!(MAX_VERSION),
            json!(MAX_VERSION + 1),
            json!(u64::MAX),
        ] {
            let mut event = example.clone();
            event["version"] = version.clone();
            let (schema, moat) = both(&event);
            assert_eq!(schema, moat, "version {version}");
            let mut event = example.clone();
            event["data"]["version"] = version.clone();
            event["version"] = version.clone();
            let (schema, moat) = both(&event);
            assert_eq!(schema, moat, "data.version {version}");
        }
    }
}
