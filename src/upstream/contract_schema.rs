//! Moat's wire types (the contract check at the upstream boundary) against
//! the schema files in `schema/upstream/`, in both directions: the fields
//! they read, the example each file documents, and what each rejects. The
//! files are what integration teams build against, so when one side
//! changes without the other, a test here fails and names the spot.

use std::collections::BTreeSet;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::{Value, json};

use super::contract::{Boundary, Wire, check_one};
use super::crm::WireCustomer;
use super::erp::{QuoteRequest, WirePrice, WireQuote, WireQuoteLine, WireStock};
use super::oms::{WireOrder, WireOrderLine};
use super::pim::{WireAttribute, WireCategory, WireProduct};
use super::{System, item};
use crate::schema::{self, Properties, validate};
use crate::vocab::Currency;

/// One schema file and the wire type that reads it.
struct Pair {
    file: &'static str,
    /// The JSON names the wire type reads.
    fields: BTreeSet<&'static str>,
    /// Array properties whose items have a wire type of their own, with the
    /// names that type reads.
    items: Vec<(&'static str, BTreeSet<&'static str>)>,
    /// Moat's whole check of one payload: serde, then `Wire::check`.
    accepts: fn(&[u8]) -> Result<(), String>,
}

impl Pair {
    fn of<W: Wire>(file: &'static str) -> Pair {
        Pair {
            file,
            fields: fields_of::<W>(),
            items: Vec::new(),
            accepts: accepts::<W>,
        }
    }

    fn items<T: DeserializeOwned>(mut self, property: &'static str) -> Pair {
        self.items.push((property, fields_of::<T>()));
        self
    }
}

fn pairs() -> Vec<Pair> {
    vec![
        Pair::of::<WireProduct>("product.json").items::<WireAttribute>("attributes"),
        Pair::of::<WireCategory>("category.json"),
        Pair::of::<WirePrice>("price.json"),
        Pair::of::<WireStock>("inventory.json"),
        Pair::of::<WireCustomer>("customer.json"),
        Pair::of::<WireOrder>("order.json").items::<WireOrderLine>("lines"),
        Pair::of::<WireQuote>("quote.json").items::<WireQuoteLine>("lines"),
    ]
}

/// Schema files with no wire type to pair: what Moat sends (checked in
/// `what_moat_sends_for_a_quote_is_a_valid_quote_request`) and the event
/// envelope, which `events::envelope` reads field by field and tests
/// against its example itself; what of it this floor decides (each type's
/// `data`, who may send it, the ids it names) is held to it in
/// `the_event_schema_takes_what_moat_reads_from_any_system`; and the
/// offers answer, two lists of paired items
/// (`the_offers_lists_hold_what_their_own_routes_answer`).
const UNPAIRED: [&str; 3] = ["quote-request.json", "event.json", "offers.json"];

#[test]
fn the_offers_lists_hold_what_their_own_routes_answer() {
    let offers = &schema_of("offers.json")["properties"];
    for (list, file) in [("prices", "price.json"), ("inventory", "inventory.json")] {
        let items = &offers[list]["properties"]["items"]["items"];
        assert_eq!(items["$ref"], file, "{list}");
        let pair = pairs().into_iter().find(|p| p.file == file).unwrap();
        for item in example("offers.json")[list]["items"].as_array().unwrap() {
            let body = serde_json::to_vec(item).unwrap();
            assert_eq!((pair.accepts)(&body), Ok(()), "{list}: {item}");
        }
    }
}

fn accepts<W: Wire>(body: &[u8]) -> Result<(), String> {
    let at = Boundary {
        system: System::ERP,
        exceptions: None,
    };
    check_one::<W>(at, body).map(drop)
}

/// Records the field names a derived `Deserialize` asks for. serde hands
/// them, renamed, to `deserialize_struct`, so the wire type itself says
/// what it reads and nobody lists the names by hand.
struct FieldNames<'a>(&'a mut Vec<&'static str>);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(de::Error::custom("only the field names were wanted"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

fn fields_of<T: DeserializeOwned>() -> BTreeSet<&'static str> {
    let mut fields = Vec::new();
    let _ = T::deserialize(FieldNames(&mut fields));
    assert!(
        !fields.is_empty(),
        "{} is not a struct with a derived Deserialize",
        std::any::type_name::<T>()
    );
    fields.into_iter().collect()
}

fn schema_of(file: &str) -> &'static Value {
    schema::schema(file).unwrap_or_else(|| panic!("no schema file {file}"))
}

fn properties(schema: &Value) -> impl Iterator<Item = (&str, &Value)> {
    let listed = schema.get("properties").and_then(Value::as_object);
    listed.into_iter().flatten().map(|(k, v)| (k.as_str(), v))
}

fn names(schema: &Value) -> BTreeSet<&str> {
    properties(schema).map(|(name, _)| name).collect()
}

/// The item schema of an array property whose items are objects.
fn object_items(property: &Value) -> Option<&Value> {
    property
        .get("items")
        .filter(|items| items.get("type") == Some(&json!("object")))
}

fn example(file: &str) -> &'static Value {
    &schema_of(file)["examples"][0]
}

#[test]
fn every_schema_file_documents_one_valid_example() {
    let paired: Vec<&str> = pairs().iter().map(|p| p.file).collect();
    for file in schema::names() {
        assert!(
            paired.contains(&file) || UNPAIRED.contains(&file),
            "{file} has no wire type to be checked against"
        );
        let examples = schema_of(file)["examples"].as_array();
        assert_eq!(examples.map(Vec::len), Some(1), "{file}: examples");
        let example = example(file);
        assert_eq!(validate(file, example, Properties::Closed), [], "{file}");
        // Complete, so it documents every property, optional ones too.
        let missing: Vec<&str> = names(schema_of(file))
            .into_iter()
            .filter(|name| example.get(name).is_none())
            .collect();
        assert_eq!(missing, Vec::<&str>::new(), "{file}: example lacks");
    }
}

#[test]
fn wire_types_read_exactly_the_fields_the_schemas_define() {
    for pair in pairs() {
        let schema = schema_of(pair.file);
        assert_eq!(pair.fields, names(schema), "{}: properties", pair.file);
        let arrays_of_objects: BTreeSet<&str> = properties(schema)
            .filter(|(_, p)| object_items(p).is_some())
            .map(|(name, _)| name)
            .collect();
        let paired: BTreeSet<&str> = pair.items.iter().map(|(p, _)| *p).collect();
        assert_eq!(paired, arrays_of_objects, "{}: item types", pair.file);
        for (property, fields) in &pair.items {
            let items = object_items(&schema["properties"][property]);
            assert_eq!(
                Some(fields.clone()),
                items.map(names),
                "{}: {property} items",
                pair.file
            );
        }
    }
}

#[test]
fn moat_accepts_every_example() {
    for pair in pairs() {
        let body = example(pair.file).to_string();
        assert_eq!((pair.accepts)(body.as_bytes()), Ok(()), "{}", pair.file);
    }
}

/// One change to an example; `at` and `what` name it when a test fails.
struct Mutation {
    at: String,
    what: String,
    instance: Value,
}

/// The changes the schema's keywords call for, to each top-level property
/// and to each property of the first item of an array of objects.
fn mutations(schema: &Value, example: &Value) -> Vec<Mutation> {
    let mut found = Vec::new();
    for (name, property) in properties(schema) {
        mutate(
            example,
            "",
            name,
            &format!("$.{name}"),
            property,
            &mut found,
        );
        if let Some(items) = object_items(property) {
            for (inner, sub) in properties(items) {
                let at = format!("$.{name}[0].{inner}");
                mutate(example, &format!("/{name}/0"), inner, &at, sub, &mut found);
            }
        }
    }
    found
}

/// Mutations of `key` in the object at JSON pointer `parent`.
fn mutate(
    example: &Value,
    parent: &str,
    key: &str,
    at: &str,
    schema: &Value,
    found: &mut Vec<Mutation>,
) {
    let mut push = |what: String, change: Option<Value>| {
        let mut instance = example.clone();
        let Some(object) = instance.pointer_mut(parent).and_then(Value::as_object_mut) else {
            return;
        };
        match change {
            Some(value) => object.insert(key.to_string(), value),
            None => object.remove(key),
        };
        found.push(Mutation {
            at: at.to_string(),
            what,
            instance,
        });
    };
    push("removed".into(), None);
    let kinds: Vec<&str> = match schema.get("type") {
        Some(Value::String(kind)) => vec![kind.as_str()],
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !kinds.is_empty() {
        // Never null here: a wire `Option` reads null as absent, and null is
        // its own mutation below where the schema allows it.
        let wrong = [json!("7"), json!(42), json!(true), json!({}), json!([])]
            .into_iter()
            .find(|v| !kinds.iter().any(|k| crate::schema::type_matches(k, v)));
        if let Some(wrong) = wrong {
            push(format!("wrong type {wrong}"), Some(wrong));
        }
    }
    if kinds.contains(&"null") {
        push("null".into(), Some(Value::Null));
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_i64) {
        push(format!("minimum {min} - 1"), Some(json!(min - 1)));
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        // The first value in lower case: the likeliest near miss.
        let near = options
            .first()
            .and_then(Value::as_str)
            .map(|s| json!(s.to_lowercase()))
            .filter(|v| !options.contains(v))
            .unwrap_or_else(|| json!("none of these"));
        push(format!("not in enum: {near}"), Some(near));
    }
    if schema
        .get("minLength")
        .and_then(Value::as_u64)
        .is_some_and(|n| n >= 1)
    {
        push("empty string".into(), Some(json!("")));
    }
    if schema.get("format") == Some(&json!("date-time")) {
        push("date-time \"yesterday\"".into(), Some(json!("yesterday")));
    }
}

fn verdict(accepted: bool) -> &'static str {
    if accepted { "accepts" } else { "rejects" }
}

#[test]
fn schema_and_moat_agree_on_every_mutation_of_the_examples() {
    let mut disagreements = Vec::new();
    for pair in pairs() {
        let file = pair.file;
        for m in mutations(schema_of(file), example(file)) {
            let by_schema = validate(file, &m.instance, Properties::Closed);
            let by_moat = (pair.accepts)(m.instance.to_string().as_bytes());
            if by_schema.is_empty() != by_moat.is_ok() {
                let why = match (by_schema.first(), &by_moat) {
                    (Some(v), _) => v.to_string(),
                    (None, Err(reason)) => reason.clone(),
                    (None, Ok(())) => String::new(),
                };
                disagreements.push(format!(
                    "{file} {}: {}: the schema {}, Moat {} ({why})",
                    m.at,
                    m.what,
                    verdict(by_schema.is_empty()),
                    verdict(by_moat.is_ok()),
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "schema and wire check disagree:\n{}",
        disagreements.join("\n")
    );
}

#[test]
fn mutations_follow_the_schema_keywords() {
    let mut described: Vec<String> = mutations(schema_of("order.json"), example("order.json"))
        .iter()
        .filter(|m| m.at.starts_with("$.lines") || m.at == "$.status")
        .map(|m| format!("{}: {}", m.at, m.what))
        .collect();
    described.sort();
    assert_eq!(
        described,
        [
            "$.lines: removed",
            "$.lines: wrong type \"7\"",
            "$.lines[0].quantity: minimum 1 - 1",
            "$.lines[0].quantity: removed",
            "$.lines[0].quantity: wrong type \"7\"",
            "$.lines[0].sku: empty string",
            "$.lines[0].sku: removed",
            "$.lines[0].sku: wrong type 42",
            "$.lines[0].unitAmount: minimum 0 - 1",
            "$.lines[0].unitAmount: removed",
            "$.lines[0].unitAmount: wrong type \"7\"",
            "$.status: not in enum: \"placed\"",
            "$.status: removed",
            "$.status: wrong type 42",
        ]
    );
    let nested = mutations(schema_of("order.json"), example("order.json"))
        .into_iter()
        .find(|m| m.at == "$.lines[0].quantity" && m.what.starts_with("minimum"))
        .map(|m| m.instance);
    assert_eq!(
        nested.as_ref().map(|i| &i["lines"][0]["quantity"]),
        Some(&json!(0))
    );
}

/// Each conditional part of event.json: the type it is for, the entity
/// kind and the item schema of `data` it asks for. (A part without `if`
/// holds for every type.)
fn event_types() -> Vec<(&'static str, &'static str, &'static str)> {
    let parts = schema_of("event.json")["allOf"].as_array();
    parts
        .into_iter()
        .flatten()
        .filter(|part| part.get("if").is_some())
        .map(|part| {
            let of = |pointer: &str| {
                part.pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("event.json allOf: no {pointer} in {part}"))
            };
            (
                of("/if/properties/type/const"),
                of("/then/properties/entity/properties/kind/const"),
                of("/then/properties/data/$ref"),
            )
        })
        .collect()
}

#[test]
fn the_event_schema_takes_what_moat_reads_from_any_system() {
    let schema = schema_of("event.json");
    let texts = |pointer: &str| -> BTreeSet<&str> {
        let values = schema.pointer(pointer).and_then(Value::as_array);
        values
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    };
    let types = event_types();
    assert_eq!(
        types.iter().map(|(t, _, _)| *t).collect::<BTreeSet<_>>(),
        texts("/properties/type/enum"),
        "one conditional part per type"
    );
    assert_eq!(
        types.iter().map(|(_, k, _)| *k).collect::<BTreeSet<_>>(),
        texts("/properties/entity/properties/kind/enum"),
        "every entity kind is some type's"
    );
    // A fat event's data is read as its entity's item, from whichever
    // system sends it: exactly the item schema the type names, of the
    // example files, is what Moat reads as that entity.
    let wms = System::named("wms");
    for (kind, entity, file) in &types {
        let read_as: Vec<&str> = pairs()
            .iter()
            .map(|p| p.file)
            .filter(|f| item(entity, wms, example(f).to_string().as_bytes(), None).is_ok())
            .collect();
        assert_eq!(read_as, [*file], "{kind}: data is read as {entity}");
    }
    let allows = |pointer: &str, value: &str| {
        let mut event = example("event.json").clone();
        if let Some(slot) = event.pointer_mut(pointer) {
            *slot = json!(value);
        }
        validate("event.json", &event, Properties::Closed).is_empty()
    };
    // Any system config can name may send events; no type is tied to one.
    let long = "w".repeat(32);
    let longer = "w".repeat(33);
    for name in [
        "erp", "wms", "wms2", "a", &long, "", "Wms", "2wms", "w-ms", "wms_eu", &longer,
    ] {
        assert_eq!(
            allows("/source", name),
            System::valid_name(name),
            "source {name:?}"
        );
    }
    // The ids an event names are keys Moat can look up.
    let long = "K".repeat(128);
    let longer = "K".repeat(129);
    for id in ["SKU-000042", "prod/7", &long, "", "A,B", "A B", &longer] {
        assert_eq!(
            allows("/entity/id", id),
            crate::domain::check_key(id).is_ok(),
            "entity.id {id:?}"
        );
    }
}

/// The `(sku, quantity)` lines of a quote request.
fn requested(request: &Value) -> Vec<(String, u32)> {
    let lines = request["lines"].as_array().into_iter().flatten();
    lines
        .filter_map(|l| {
            let quantity = u32::try_from(l["quantity"].as_u64()?).ok()?;
            Some((l["sku"].as_str()?.to_string(), quantity))
        })
        .collect()
}

#[test]
fn what_moat_sends_for_a_quote_is_a_valid_quote_request() {
    let example = example("quote-request.json");
    let (segment, lines) = (example["segment"].as_str(), requested(example));
    let currency = example["currency"].as_str().and_then(Currency::from_code);
    let (segment, currency) = segment.zip(currency).expect("segment and a known currency");
    let sent = serde_json::to_value(QuoteRequest::new(segment, currency, &lines));
    assert_eq!(sent.as_ref().ok(), Some(example), "Moat sends the example");
    for currency in Currency::all() {
        let sent = serde_json::to_value(QuoteRequest::new("vip", *currency, &lines));
        let sent = sent.expect("a quote request serialises");
        assert_eq!(
            validate("quote-request.json", &sent, Properties::Closed),
            [],
            "{currency}"
        );
    }
}

#[test]
fn the_quote_example_answers_the_quote_request_example() {
    let (request, quote) = (example("quote-request.json"), example("quote.json"));
    let segment = request["segment"].as_str().unwrap_or_default();
    let currency = request["currency"].as_str().and_then(Currency::from_code);
    let at = Boundary {
        system: System::ERP,
        exceptions: None,
    };
    let answered = check_one::<WireQuote>(at, quote.to_string().as_bytes()).and_then(|q| {
        let currency = currency.ok_or("the request's currency is unknown")?;
        q.answers(segment, currency, &requested(request))
    });
    assert!(answered.is_ok(), "{:?}", answered.err());
}

/// Every `properties.currency.enum` anywhere in `schema`.
fn currency_enums(schema: &Value, found: &mut Vec<BTreeSet<String>>) {
    if let Some(options) = schema.pointer("/properties/currency/enum") {
        let codes = options.as_array().into_iter().flatten();
        found.push(
            codes
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        );
    }
    match schema {
        Value::Object(map) => map.values().for_each(|v| currency_enums(v, found)),
        Value::Array(values) => values.iter().for_each(|v| currency_enums(v, found)),
        _ => {}
    }
}

#[test]
fn every_currency_enum_lists_the_currencies_moat_knows() {
    let known: BTreeSet<String> = Currency::all().iter().map(|c| c.code().into()).collect();
    let mut with_currency = Vec::new();
    for file in schema::names() {
        let mut enums = Vec::new();
        currency_enums(schema_of(file), &mut enums);
        for codes in &enums {
            assert_eq!(codes, &known, "{file}: currency enum");
        }
        if !enums.is_empty() {
            with_currency.push(file);
        }
    }
    assert_eq!(
        with_currency,
        [
            "price.json",
            "order.json",
            "quote-request.json",
            "quote.json"
        ]
    );
}
