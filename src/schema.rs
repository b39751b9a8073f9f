//! Upstream protocol v1 as JSON Schema: the files in `schema/upstream/`,
//! built into the binary, and a validator for the part of JSON Schema
//! 2020-12 they use (`pattern` with the regex crate's syntax, which covers
//! the files' patterns). One contract for everyone who speaks it: the
//! simulator is tested against it, Moat's wire types are tested against it
//! (`upstream::contract_schema`), and `moat contract verify` holds a real
//! upstream to it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use serde_json::Value;

/// Every schema file, by name.
const FILES: [(&str, &str); 10] = [
    (
        "product.json",
        include_str!("../schema/upstream/product.json"),
    ),
    (
        "category.json",
        include_str!("../schema/upstream/category.json"),
    ),
    ("price.json", include_str!("../schema/upstream/price.json")),
    (
        "inventory.json",
        include_str!("../schema/upstream/inventory.json"),
    ),
    (
        "offers.json",
        include_str!("../schema/upstream/offers.json"),
    ),
    (
        "customer.json",
        include_str!("../schema/upstream/customer.json"),
    ),
    ("order.json", include_str!("../schema/upstream/order.json")),
    (
        "quote-request.json",
        include_str!("../schema/upstream/quote-request.json"),
    ),
    ("quote.json", include_str!("../schema/upstream/quote.json")),
    ("event.json", include_str!("../schema/upstream/event.json")),
];

static PARSED: LazyLock<BTreeMap<&'static str, Value>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, text)| {
            // The files are part of the build; a broken one fails its test.
            (*name, serde_json::from_str(text).unwrap_or(Value::Null))
        })
        .collect()
});

/// The schema file `name` (`price.json`, …).
pub fn schema(name: &str) -> Option<&'static Value> {
    PARSED.get(name)
}

/// The names of every schema file.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(name, _)| *name)
}

/// One way a value breaks a schema: where, which rule, what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `$` for the value itself, then `.field` and `[index]`.
    pub path: String,
    /// The schema keyword broken, with the schema file: `price.json: minimum`.
    pub rule: String,
    pub found: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.path, self.found, self.rule)
    }
}

/// Whether properties a schema does not list are violations too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Properties {
    /// Only the listed ones: what the simulator is held to, so the schema
    /// stays complete.
    Closed,
    /// Others are allowed: what a real upstream may send and Moat ignores.
    Open,
}

/// Every violation of `value` against schema file `name`.
pub fn validate(name: &str, value: &Value, properties: Properties) -> Vec<Violation> {
    let mut found = Vec::new();
    match schema(name) {
        Some(schema) => Walk {
            file: name,
            closed: properties == Properties::Closed,
            found: &mut found,
        }
        .walk(schema, value, "$"),
        None => found.push(Violation {
            path: "$".into(),
            rule: name.into(),
            found: "no such schema".into(),
        }),
    }
    found
}

struct Walk<'a> {
    file: &'a str,
    closed: bool,
    found: &'a mut Vec<Violation>,
}

impl Walk<'_> {
    fn report(&mut self, at: &str, keyword: &str, found: String) {
        self.found.push(Violation {
            path: at.to_string(),
            rule: format!("{}: {keyword}", self.file),
            found,
        });
    }

    fn walk(&mut self, schema: &Value, value: &Value, at: &str) {
        if let Some(file) = schema.get("$ref").and_then(Value::as_str) {
            match self::schema(file) {
                Some(referenced) => {
                    let mut inner = Walk {
                        file,
                        closed: self.closed,
                        found: self.found,
                    };
                    inner.walk(referenced, value, at);
                }
                None => self.report(at, "$ref", format!("no schema {file}")),
            }
        }
        if let Some(kind) = schema.get("type") {
            let kinds: Vec<&str> = match kind {
                Value::String(k) => vec![k.as_str()],
                Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !kinds.iter().any(|k| type_matches(k, value)) {
                self.report(
                    at,
                    "type",
                    format!("{} is not {}", brief(value), kinds.join(" or ")),
                );
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            self.report(
                at,
                "enum",
                format!("{} is not one of {}", brief(value), list(options)),
            );
        }
        if let Some(expected) = schema.get("const")
            && expected != value
        {
            self.report(at, "const", format!("{} is not {expected}", brief(value)));
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && let Some(n) = value.as_f64()
            && n < min
        {
            self.report(at, "minimum", format!("{value} is below {min}"));
        }
        if let Some(max) = schema.get("maximum")
            && above(value, max)
        {
            self.report(at, "maximum", format!("{value} is above {max}"));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && let Some(s) = value.as_str()
            && (s.chars().count() as u64) < min
        {
            self.report(at, "minLength", format!("{s:?} is shorter than {min}"));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && let Some(s) = value.as_str()
            && (s.chars().count() as u64) > max
        {
            self.report(
                at,
                "maxLength",
                format!("{} is longer than {max}", brief(value)),
            );
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && let Some(s) = value.as_str()
        {
            match regex::Regex::new(pattern) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => self.report(
                    at,
                    "pattern",
                    format!("{} does not match {pattern}", brief(value)),
                ),
                Err(_) => self.report(at, "pattern", format!("{pattern} is not a pattern")),
            }
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && let Some(s) = value.as_str()
            && !is_rfc3339(s)
        {
            self.report(at, "format", format!("{s:?} is not an RFC 3339 date-time"));
        }
        if let Some(object) = value.as_object() {
            for field in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(field) {
                    self.report(at, "required", format!("{field} is missing"));
                }
            }
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, sub) in properties {
                    if let Some(v) = object.get(key) {
                        self.walk(sub, v, &format!("{at}.{key}"));
                    }
                }
                let closed =
                    schema.get("additionalProperties") == Some(&Value::Bool(false)) || self.closed;
                for key in object
                    .keys()
                    .filter(|k| closed && !properties.contains_key(*k))
                {
                    self.report(at, "properties", format!("{key} is not in the schema"));
                }
            }
        }
        if let Some(items) = value.as_array() {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                self.report(
                    at,
                    "maxItems",
                    format!("{} items, at most {max}", items.len()),
                );
            }
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.walk(sub, item, &format!("{at}[{i}]"));
                }
            }
        }
        // Conditional parts only ever constrain, so they are checked open.
        let closed = std::mem::replace(&mut self.closed, false);
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.walk(part, value, at);
        }
        if let (Some(condition), Some(then)) = (schema.get("if"), schema.get("then")) {
            let mut miss = Vec::new();
            Walk {
                file: self.file,
                closed: false,
                found: &mut miss,
            }
            .walk(condition, value, at);
            if miss.is_empty() {
                self.walk(then, value, at);
            }
        }
        self.closed = closed;
    }
}

/// Whether number `value` is above `max`, exactly: integers as integers
/// (past 2^53 a double cannot tell neighbours apart), others as doubles.
fn above(value: &Value, max: &Value) -> bool {
    if let (Some(v), Some(m)) = (value.as_u64(), max.as_u64()) {
        return v > m;
    }
    if let (Some(v), Some(m)) = (value.as_i64(), max.as_i64()) {
        return v > m;
    }
    match (value.as_f64(), max.as_f64()) {
        (Some(v), Some(m)) => v > m,
        _ => false,
    }
}

/// Whether `value` is of JSON Schema type `kind`.
pub fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => false,
    }
}

/// RFC 3339 `date-time`: `2026-01-01T00:00:00Z`, fraction and offset optional
/// parts as the RFC allows.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// A value as shown in a violation: short.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

fn list(options: &[Value]) -> String {
    options
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_schema_is_draft_2020_12_with_an_id() {
        for name in names() {
            let s = schema(name).expect("listed");
            assert_eq!(
                s["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{name}"
            );
            assert!(
                s["$id"].as_str().is_some_and(|id| id.ends_with(name)),
                "{name}"
            );
            assert_eq!(s["type"], "object", "{name}");
        }
    }

    #[test]
    fn violations_name_the_path_and_the_rule() {
        let good = json!({
            "sku": "SKU-000001", "available": 3, "version": 1, "updatedAt": "2026-01-01T00:00:00.000Z"
        });
        assert_eq!(validate("inventory.json", &good, Properties::Closed), []);
        let mut bad = good.clone();
        bad["available"] = json!(-1);
        bad["updatedAt"] = json!("yesterday");
        bad["extra"] = json!(1);
        bad.as_object_mut().map(|o| o.remove("sku"));
        let found = validate("inventory.json", &bad, Properties::Closed);
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "$: sku is missing (inventory.json: required)",
                "$.available: -1 is below 0 (inventory.json: minimum)",
                "$.updatedAt: \"yesterday\" is not an RFC 3339 date-time (inventory.json: format)",
                "$: extra is not in the schema (inventory.json: properties)",
            ]
        );
        // A real upstream may send more than the schema lists.
        assert_eq!(validate("inventory.json", &bad, Properties::Open).len(), 3);
        let wrong_type = json!({ "sku": 5, "available": "lots", "version": 1, "updatedAt": "2026-01-01T00:00:00Z" });
        let found = validate("inventory.json", &wrong_type, Properties::Open);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|v| v.rule == "inventory.json: type"));
    }

    #[test]
    fn string_lengths_and_patterns_are_checked() {
        let event = &schema("event.json").expect("event.json")["examples"][0];
        let with = |pointer: &str, value: Value| {
            let mut changed = event.clone();
            if let Some(slot) = changed.pointer_mut(pointer) {
                *slot = value;
            }
            let found = validate("event.json", &changed, Properties::Closed);
            found.iter().map(|v| v.rule.clone()).collect::<Vec<_>>()
        };
        assert_eq!(with("/source", json!("wms")), Vec::<String>::new());
        assert_eq!(with("/source", json!("WMS")), ["event.json: pattern"]);
        assert_eq!(
            with("/id", json!("e".repeat(257))),
            ["event.json: maxLength"]
        );
        assert_eq!(with("/id", json!("e\nforged")), ["event.json: pattern"]);
    }

    #[test]
    fn maxima_are_compared_exactly() {
        let event = &schema("event.json").expect("event.json")["examples"][0];
        let with = |version: Value| {
            let mut changed = event.clone();
            changed["version"] = version;
            let found = validate("event.json", &changed, Properties::Closed);
            found.iter().map(|v| v.rule.clone()).collect::<Vec<_>>()
        };
        let max = (1u64 << 53) - 1;
        assert_eq!(with(json!(max)), Vec::<String>::new());
        // Past 2^53 doubles skip integers (2^53 + 1 reads as 2^53): these
        // are compared as integers.
        for above in [max + 1, max + 2, u64::MAX] {
            assert_eq!(with(json!(above)), ["event.json: maximum"], "{above}");
        }
    }

    #[test]
    fn date_times_are_rfc_3339() {
        for good in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.123Z",
            "2026-01-01t00:00:00+02:00",
        ] {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "2026-01-01",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0200",
            "yesterday",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
