//! Contract-breaking payloads for `malformed_rate`: a 200 whose body a
//! gateway must refuse at its boundary (never serve, never cache).
//!
//! One defect per response, chosen from those that fit the entity: a
//! required field removed, a field of the wrong type, negative stock, an
//! unknown currency, or a body that is not JSON at all. A vendor dialect
//! breaks its own shapes the same way, described by a [`Breakage`]: where
//! its list of items is, which fields its items need (nested ones by
//! JSON pointer), and which values have the wrong type.

use fastrand::Rng;
use serde::Serialize;
use serde_json::Value;

/// The entity a response carries, which decides how it can be broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Products,
    Categories,
    Prices,
    Inventory,
    /// Prices and stock together; a defect lands on a price.
    Offers,
    Quote,
    Order,
    Customer,
    /// A vendor's own shape.
    Foreign(&'static Breakage),
}

/// How a vendor's answer can be broken: a missing field, a wrong type, or
/// no JSON at all.
#[derive(Debug, PartialEq, Eq)]
pub struct Breakage {
    /// JSON pointer to the list of items (`/_embedded/items`); `None`: the
    /// answer is one item.
    pub list: Option<&'static str>,
    /// Fields an item needs, as JSON pointers within it (`/values/name`).
    pub required: &'static [&'static str],
    /// `(pointer within an item, a value of the wrong type)`.
    pub wrong_types: &'static [(&'static str, &'static str)],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    MissingField,
    WrongType,
    NegativeStock,
    UnknownCurrency,
    NotJson,
}

use Defect::*;

impl Shape {
    fn defects(self) -> &'static [Defect] {
        match self {
            Shape::Products | Shape::Categories | Shape::Customer | Shape::Foreign(_) => {
                &[MissingField, WrongType, NotJson]
            }
            Shape::Prices | Shape::Offers | Shape::Order => {
                &[MissingField, WrongType, UnknownCurrency, NotJson]
            }
            Shape::Inventory => &[MissingField, WrongType, NegativeStock, NotJson],
            Shape::Quote => &[
                MissingField,
                WrongType,
                NegativeStock,
                UnknownCurrency,
                NotJson,
            ],
        }
    }

    /// Required fields of the object the defect lands on.
    fn required(self) -> &'static [&'static str] {
        match self {
            Shape::Products => &[
                "id",
                "sku",
                "name",
                "description",
                "attributes",
                "categoryIds",
                "version",
                "updatedAt",
            ],
            // Not parentId: absent means a root category.
            Shape::Categories => &["id", "name", "version", "updatedAt"],
            Shape::Prices | Shape::Offers => &[
                "sku",
                "segment",
                "currency",
                "amount",
                "version",
                "updatedAt",
            ],
            Shape::Inventory => &["sku", "available", "version", "updatedAt"],
            Shape::Quote => &[
                "segment",
                "currency",
                "lines",
                "unknownSkus",
                "totalAmount",
                "quotedAt",
            ],
            Shape::Order => &[
                "id",
                "customerId",
                "status",
                "currency",
                "totalAmount",
                "lines",
                "placedAt",
                "version",
                "updatedAt",
            ],
            Shape::Customer => &["id", "email", "name", "segment", "version", "updatedAt"],
            Shape::Foreign(breakage) => breakage.required,
        }
    }

    /// `(field, value of the wrong type)`.
    fn wrong_types(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Shape::Products => &[
                ("version", "\"seven\""),
                ("name", "42"),
                ("categoryIds", "\"cat-01\""),
            ],
            Shape::Categories => &[("name", "false"), ("parentId", "12")],
            Shape::Prices | Shape::Offers => &[("amount", "\"abc\""), ("version", "\"1\"")],
            Shape::Inventory => &[("available", "\"lots\""), ("version", "[1]")],
            Shape::Quote => &[("totalAmount", "\"abc\""), ("lines", "{}")],
            Shape::Order => &[("totalAmount", "\"abc\""), ("lines", "\"none\"")],
            Shape::Customer => &[("version", "\"one\""), ("segment", "3")],
            Shape::Foreign(breakage) => breakage.wrong_types,
        }
    }

    /// JSON pointer to the list of items, for a list answer.
    fn list(self) -> Option<&'static str> {
        match self {
            Shape::Products | Shape::Categories | Shape::Prices | Shape::Inventory => {
                Some("/items")
            }
            Shape::Offers => Some("/prices/items"),
            Shape::Foreign(breakage) => breakage.list,
            _ => None,
        }
    }
}

/// Serialises `payload`, breaking it when `corrupt` carries a seed.
pub fn render<T: Serialize>(
    payload: &T,
    shape: Shape,
    corrupt: Option<u64>,
) -> Result<Vec<u8>, serde_json::Error> {
    let Some(seed) = corrupt else {
        return serde_json::to_vec(payload);
    };
    let mut rng = Rng::with_seed(seed);
    let mut value = serde_json::to_value(payload)?;
    let defect = shape.defects()[rng.usize(..shape.defects().len())];
    if defect != NotJson && break_value(&mut value, shape, defect, &mut rng) {
        return serde_json::to_vec(&value);
    }
    // Cut a valid object in half: realistic (a proxy truncating a body) and
    // never parseable, since the root's only closing brace is the last byte.
    let mut bytes = serde_json::to_vec(&value)?;
    bytes.truncate(bytes.len() / 2);
    Ok(bytes)
}

/// Applies `defect` to the target object; false when there is nothing it
/// can land on (an empty list, a quote without lines), and the caller falls
/// back to a body that is not JSON.
fn break_value(root: &mut Value, shape: Shape, defect: Defect, rng: &mut Rng) -> bool {
    let target = if let Some(list) = shape.list() {
        match root.pointer_mut(list).and_then(Value::as_array_mut) {
            Some(items) if !items.is_empty() => {
                let i = rng.usize(..items.len());
                &mut items[i]
            }
            _ => return false,
        }
    } else {
        root
    };
    let Some(object) = target.as_object_mut() else {
        return false;
    };
    match defect {
        MissingField => {
            let fields = shape.required();
            let field = fields[rng.usize(..fields.len())];
            match field.rsplit_once('/') {
                Some((parent, name)) => {
                    let Some(parent) = target.pointer_mut(parent).and_then(Value::as_object_mut)
                    else {
                        return false;
                    };
                    parent.remove(name);
                }
                None => {
                    object.remove(field);
                }
            }
        }
        WrongType => {
            let choices = shape.wrong_types();
            let (field, raw) = choices[rng.usize(..choices.len())];
            let bad = serde_json::from_str(raw).unwrap_or(Value::Null);
            match field.rsplit_once('/') {
                Some((parent, name)) => {
                    let Some(parent) = target.pointer_mut(parent).and_then(Value::as_object_mut)
                    else {
                        return false;
                    };
                    parent.insert(name.to_owned(), bad);
                }
                None => {
                    object.insert(field.to_owned(), bad);
                }
            }
        }
        NegativeStock => {
            let negative = Value::from(-rng.i64(1..=50));
            if shape == Shape::Quote {
                match object.get_mut("lines").and_then(Value::as_array_mut) {
                    Some(lines) if !lines.is_empty() => {
                        let i = rng.usize(..lines.len());
                        if let Some(line) = lines[i].as_object_mut() {
                            line.insert("available".into(), negative);
                        }
                    }
                    _ => return false,
                }
            } else {
                object.insert("available".into(), negative);
            }
        }
        UnknownCurrency => {
            object.insert("currency".into(), Value::from("XXX"));
        }
        NotJson => return false,
    }
    true
}
