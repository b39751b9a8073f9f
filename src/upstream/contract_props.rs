//! Property tests of the wire decoders: whatever an upstream sends (bytes
//! that are not JSON, JSON of any shape, items with the right field names
//! and wrong values), decoding never panics, and every refusal is an
//! `UPSTREAM_UNAVAILABLE` contract violation, never a value.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::System;
use super::contract::{Boundary, Checked, Wire, parse_apart, parse_list, parse_one};
use super::crm::WireCustomer;
use super::erp::{WirePrice, WireQuote, WireStock};
use super::oms::WireOrder;
use super::pim::{WireCategory, WireProduct};
use crate::error::Kind;

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("2026-01-01T00:00:00Z")),
        Just(json!("EUR")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names of protocol v1 items, and a few others.
fn field_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "id",
        "sku",
        "name",
        "description",
        "attributes",
        "value",
        "categoryIds",
        "version",
        "updatedAt",
        "segment",
        "currency",
        "amount",
        "compareAtAmount",
        "available",
        "parentId",
        "customerId",
        "status",
        "totalAmount",
        "lines",
        "quantity",
        "unitAmount",
        "placedAt",
        "email",
        "items",
        "nextCursor",
        "lineAmount",
        "priceVersion",
        "inventoryVersion",
        "quotedAt",
        "extra",
    ])
    .prop_map(str::to_string)
}

/// An item object with protocol field names and values of any type.
fn item() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(field_name(), json_value(), 0..12)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// A stock item, mostly well formed: the one-pass read meets good lists.
fn stock_item() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("SKU-1")), Just(json!("SKU-2")), Just(json!("")), Just(json!(7))],
        prop_oneof![Just(json!(3)), Just(json!(0)), Just(json!(-1)), Just(json!("3"))],
        prop_oneof![Just(json!("2026-01-01T00:00:00Z")), Just(json!("yesterday"))],
    )
        .prop_map(|(sku, available, at)| {
            json!({ "sku": sku, "available": available, "version": 1, "updatedAt": at })
        })
}

/// What a list endpoint might answer.
fn list_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (prop::collection::vec(item(), 0..4), json_value()).prop_map(|(items, cursor)| {
            json!({ "items": items, "nextCursor": cursor })
                .to_string()
                .into_bytes()
        }),
    ]
}

fn list_never_panics<W: Wire>(body: &[u8]) {
    let at = Boundary {
        system: System::ERP,
        exceptions: None,
    };
    match parse_list::<W, String>(at, body, "sku", |_| String::new(), str::to_string) {
        Ok(checked) => {
            for (_, item) in checked.items {
                if let Err(e) = item {
                    assert_eq!(e.kind(), Kind::UpstreamUnavailable);
                }
            }
        }
        Err(e) => assert_eq!(e.kind(), Kind::UpstreamUnavailable),
    }
}

/// What a decoded list says to its reader: each key and whether it was a
/// value, and the cursor.
type Seen = (Vec<(String, bool)>, Option<String>);

/// `Seen`, or the kind of error that refused the whole list.
fn seen<D>(decoded: Result<Checked<String, D>, crate::error::Error>) -> Result<Seen, Kind> {
    decoded
        .map(|c| {
            (
                c.items.into_iter().map(|(k, v)| (k, v.is_ok())).collect(),
                c.next_cursor,
            )
        })
        .map_err(|e| e.kind())
}

/// The one-pass read of a list tells its reader what the item-by-item one
/// does, whatever the payload.
fn one_pass_agrees(body: &[u8]) {
    let at = Boundary {
        system: System::ERP,
        exceptions: None,
    };
    let sku = |s: &crate::domain::Stock| s.sku.clone();
    assert_eq!(
        seen(parse_list::<WireStock, String>(
            at,
            body,
            "sku",
            sku,
            str::to_string
        )),
        seen(parse_apart::<WireStock, String>(
            at,
            body,
            "sku",
            sku,
            str::to_string
        )),
    );
}

fn one_never_panics<W: Wire>(body: &[u8]) {
    let at = Boundary {
        system: System::ERP,
        exceptions: None,
    };
    if let Err(e) = parse_one::<W>(at, body) {
        assert_eq!(e.kind(), Kind::UpstreamUnavailable);
        assert!(!e.is_retryable(), "the same payload would come back");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn list_payloads_of_any_shape_are_decoded_or_refused(body in list_body()) {
        list_never_panics::<WireProduct>(&body);
        list_never_panics::<WireCategory>(&body);
        list_never_panics::<WirePrice>(&body);
        list_never_panics::<WireStock>(&body);
        one_pass_agrees(&body);
    }

    #[test]
    fn stock_lists_read_in_one_pass_as_item_by_item(
        items in prop::collection::vec(stock_item(), 0..4),
        cursor in prop_oneof![Just(Value::Null), Just(json!("c1")), Just(json!("\u{7}"))],
    ) {
        let body = json!({ "items": items, "nextCursor": cursor }).to_string();
        one_pass_agrees(body.as_bytes());
    }

    #[test]
    fn single_payloads_of_any_shape_are_decoded_or_refused(value in item()) {
        let body = value.to_string().into_bytes();
        one_never_panics::<WireQuote>(&body);
        one_never_panics::<WireCustomer>(&body);
        one_never_panics::<WireOrder>(&body);
    }
}
