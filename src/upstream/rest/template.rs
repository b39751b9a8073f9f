//! Request templates: `GET /api/rest/v1/products?search=…{skus}…&limit=100`.
//! A placeholder is one of the names below in braces; any other brace is
//! text (JSON in a query parameter stays JSON). Values are encoded where
//! they land: a path placeholder as one escaped segment, a query value by
//! the URL encoder, so nothing a key holds can add a segment or a
//! parameter.
//!
//! The keys of a call fill `{skus}`/`{ids}` (all of them, rendered as the
//! route's `batch` style says) or `{sku}`/`{id}`/`{token}` (one: the route
//! is then called once per key).
//!
//! `{name:json}` writes the value as JSON text: a string in quotes, with
//! whatever it holds escaped (keys: an array of them), so a value lands
//! in a JSON filter (Akeneo's `search`) as one string however it is
//! spelled, never as JSON of its own.

use std::fmt;

/// Placeholder names, and what fills them.
pub const NAMES: [&str; 11] = [
    "sku", "skus", "id", "ids", "token", "segment", "currency", "cursor", "page", "limit",
    "category",
];

/// How several keys go into one placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// `A,B`.
    Comma,
    /// The parameter repeated: `sku=A&sku=B`.
    Repeat,
    /// A JSON array: `["A","B"]`.
    Json,
}

/// Values for the placeholders of one request.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub keys: &'a [String],
    pub segment: Option<&'a str>,
    pub currency: Option<&'a str>,
    pub cursor: Option<&'a str>,
    pub page: Option<u64>,
    pub limit: Option<usize>,
    pub category: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Hole(&'static str, Form),
}

/// How a placeholder's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// As it is (then encoded where it lands).
    Plain,
    /// As JSON text (`{category:json}`).
    Json,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    pub method: http::Method,
    path: Vec<Part>,
    query: Vec<(String, Vec<Part>)>,
}

/// A text with placeholders outside a URL (a header value): rendered as
/// is, keys joined by commas.
#[derive(Debug, Clone)]
pub struct Text(Vec<Part>);

impl Text {
    pub fn parse(text: &str) -> Result<Text, TemplateError> {
        parts(text).map(Text)
    }

    pub fn render(&self, values: &Values<'_>) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Hole(h, form) => fill(h, *form, values, Batch::Comma),
            })
            .collect()
    }

    pub fn holes(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().filter_map(|p| match p {
            Part::Hole(h, _) => Some(*h),
            Part::Text(_) => None,
        })
    }
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Template {
    /// Parses `METHOD /path?query`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let err = |m: String| Err(TemplateError(m));
        let Some((method, target)) = text.trim().split_once(' ') else {
            return err(format!(
                "{text:?} is not `METHOD /path?query` (e.g. `GET /products?ids={{ids}}`)"
            ));
        };
        let method = match method {
            "GET" => http::Method::GET,
            "POST" => http::Method::POST,
            other => return err(format!("method {other:?}: only GET and POST read data")),
        };
        let target = target.trim();
        if !target.starts_with('/') {
            return err(format!(
                "{target:?} must be a path starting with `/` (the system's URL is its base)"
            ));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = parts(path)?;
        let mut params = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if parts(name)?.iter().any(|p| matches!(p, Part::Hole(..))) {
                return err(format!(
                    "a parameter name cannot be a placeholder: {name:?}"
                ));
            }
            params.push((name.to_string(), parts(value)?));
        }
        Ok(Template {
            method,
            path,
            query: params,
        })
    }

    /// Whether the template names one key (`{sku}`, `{id}`, `{token}`):
    /// then each key is a call of its own.
    pub fn per_key(&self) -> bool {
        self.holes().any(|h| matches!(h, "sku" | "id" | "token"))
    }

    /// Whether it takes keys at all.
    pub fn takes_keys(&self) -> bool {
        self.holes()
            .any(|h| matches!(h, "sku" | "id" | "token" | "skus" | "ids"))
    }

    /// Every placeholder it names.
    pub fn holes(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.path
            .iter()
            .chain(self.query.iter().flat_map(|(_, v)| v.iter()))
            .filter_map(|p| match p {
                Part::Hole(h, _) => Some(*h),
                Part::Text(_) => None,
            })
    }

    /// The path (escaped) and query parameters (not yet encoded) for
    /// `values`. A placeholder without a value renders empty; a query
    /// parameter made only of such placeholders is left out.
    pub fn render(&self, values: &Values<'_>, batch: Batch) -> (String, Vec<(String, String)>) {
        let mut path = String::new();
        for part in &self.path {
            match part {
                Part::Text(t) => path.push_str(t),
                Part::Hole(h, form) => {
                    let filled = fill(h, *form, values, batch);
                    path.push_str(&super::super::path_segment(&filled).unwrap_or_default());
                }
            }
        }
        let mut query = Vec::new();
        for (name, value) in &self.query {
            if batch == Batch::Repeat
                && matches!(value.as_slice(), [Part::Hole("skus" | "ids", Form::Plain)])
            {
                query.extend(values.keys.iter().map(|k| (name.clone(), k.clone())));
                continue;
            }
            let holes_only = value.iter().all(|p| matches!(p, Part::Hole(..)));
            let mut rendered = String::new();
            for part in value {
                match part {
                    Part::Text(t) => rendered.push_str(t),
                    Part::Hole(h, form) => rendered.push_str(&fill(h, *form, values, batch)),
                }
            }
            if holes_only && rendered.is_empty() {
                continue;
            }
            query.push((name.clone(), rendered));
        }
        (path, query)
    }
}

/// One placeholder's text.
fn fill(hole: &str, form: Form, values: &Values<'_>, batch: Batch) -> String {
    if form == Form::Json {
        let plain = fill(hole, Form::Plain, values, batch);
        return match hole {
            "skus" | "ids" => serde_json::to_string(values.keys).unwrap_or_default(),
            _ if plain.is_empty() => "null".to_string(),
            "page" | "limit" => plain,
            _ => serde_json::to_string(&plain).unwrap_or_default(),
        };
    }
    match hole {
        "sku" | "id" | "token" => values.keys.first().cloned().unwrap_or_default(),
        "skus" | "ids" => match batch {
            Batch::Comma | Batch::Repeat => values.keys.join(","),
            Batch::Json => serde_json::to_string(values.keys).unwrap_or_default(),
        },
        "segment" => values.segment.unwrap_or_default().to_string(),
        "currency" => values.currency.unwrap_or_default().to_string(),
        "cursor" => values.cursor.unwrap_or_default().to_string(),
        "page" => values.page.map(|p| p.to_string()).unwrap_or_default(),
        "limit" => values.limit.map(|l| l.to_string()).unwrap_or_default(),
        "category" => values.category.unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

/// Splits text into literal parts and placeholders.
fn parts(text: &str) -> Result<Vec<Part>, TemplateError> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        literal.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let tail = &after[name.len()..];
        let (closed, form, end) = if tail.starts_with('}') {
            (true, Form::Plain, name.len() + 1)
        } else if tail.starts_with(":json}") {
            (true, Form::Json, name.len() + ":json}".len())
        } else {
            (false, Form::Plain, 0)
        };
        match NAMES.iter().find(|n| **n == name) {
            Some(known) if closed => {
                if !literal.is_empty() {
                    out.push(Part::Text(std::mem::take(&mut literal)));
                }
                out.push(Part::Hole(known, form));
                rest = &after[end..];
            }
            None if closed && !name.is_empty() => {
                return Err(TemplateError(format!(
                    "{{{name}}} is not a placeholder; use one of {}",
                    NAMES.map(|n| format!("{{{n}}}")).join(" ")
                )));
            }
            _ => {
                literal.push('{');
                rest = after;
            }
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        out.push(Part::Text(literal));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_are_rendered_as_the_batch_style_says_and_json_stays_json() {
        let t = Template::parse(
            r#"GET /api/rest/v1/products?search={"identifier":[{"operator":"IN","value":{skus}}]}&limit=100"#,
        )
        .unwrap();
        let ks = keys(&["A", "B,C"]);
        let values = Values {
            keys: &ks,
            ..Values::default()
        };
        let (path, query) = t.render(&values, Batch::Json);
        assert_eq!(path, "/api/rest/v1/products");
        assert_eq!(
            query,
            [
                (
                    "search".to_string(),
                    r#"{"identifier":[{"operator":"IN","value":["A","B,C"]}]}"#.to_string()
                ),
                ("limit".to_string(), "100".to_string())
            ]
        );
        assert!(!t.per_key() && t.takes_keys());

        let t = Template::parse("GET /inventory?where=sku in :skus&var.skus={skus}").unwrap();
        let (_, query) = t.render(&values, Batch::Repeat);
        assert_eq!(
            query.iter().filter(|(n, _)| n == "var.skus").count(),
            2,
            "{query:?}"
        );
        let (_, query) = t.render(&values, Batch::Comma);
        assert_eq!(query[1], ("var.skus".to_string(), "A,B,C".to_string()));
    }

    #[test]
    fn a_json_placeholder_is_one_json_value_however_it_is_spelled() {
        let t = Template::parse(
            r#"GET /products?search={"categories":[{"operator":"IN","value":[{category:json}]}],"sku":[{"operator":"IN","value":{skus:json}}]}&limit={limit:json}&after={cursor:json}"#,
        )
        .unwrap();
        let ks = keys(&["A\"B"]);
        let values = Values {
            keys: &ks,
            category: Some(r#"x"]}],"enabled":[{"#),
            limit: Some(20),
            ..Values::default()
        };
        let (_, query) = t.render(&values, Batch::Comma);
        let search: serde_json::Value = serde_json::from_str(&query[0].1).unwrap();
        assert_eq!(
            search["categories"][0]["value"][0], r#"x"]}],"enabled":[{"#,
            "{search}"
        );
        assert_eq!(search["sku"][0]["value"], serde_json::json!(["A\"B"]));
        assert_eq!(search.as_object().unwrap().len(), 2, "{search}");
        assert_eq!(query[1], ("limit".to_string(), "20".to_string()));
        assert_eq!(query[2], ("after".to_string(), "null".to_string()));
        assert!(t.takes_keys() && !t.per_key());
        assert!(
            Template::parse("GET /p?c={category:xml}").is_ok(),
            "other text stays text"
        );
    }

    #[test]
    fn a_key_in_the_path_is_one_escaped_segment() {
        let t = Template::parse("GET /orders/{id}?expand=lineItems").unwrap();
        assert!(t.per_key());
        let ks = keys(&["../admin?x=1"]);
        let values = Values {
            keys: &ks,
            ..Values::default()
        };
        let (path, _) = t.render(&values, Batch::Comma);
        assert_eq!(path, "/orders/..%2Fadmin%3Fx%3D1");
    }

    #[test]
    fn unset_optional_parameters_are_left_out() {
        let t = Template::parse("GET /products?limit={limit}&cursor={cursor}&category={category}")
            .unwrap();
        let values = Values {
            limit: Some(20),
            ..Values::default()
        };
        let (_, query) = t.render(&values, Batch::Comma);
        assert_eq!(query, [("limit".to_string(), "20".to_string())]);
    }

    #[test]
    fn bad_templates_are_refused_by_name() {
        for (text, why) in [
            ("/products", "METHOD /path"),
            ("DELETE /products", "only GET and POST"),
            ("GET products", "must be a path"),
            ("GET /products?ids={idz}", "{idz} is not a placeholder"),
            ("GET /products?{ids}=1", "parameter name"),
        ] {
            let e = Template::parse(text).unwrap_err();
            assert!(e.0.contains(why), "{text}: {e}");
        }
    }
}
