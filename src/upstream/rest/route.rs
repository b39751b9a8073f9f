//! One compiled route: how to ask (the request template, its body and
//! headers, how keys are batched) and how to read the answer (jq selecting
//! the foreign items, mapping each to protocol v1 items, finding the next
//! page).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use jaq_json::Val;

use super::jq::{self, Jq};
use super::template::{Batch, Template, Text, Values};
use crate::config::{BatchStyle, Route as RouteConfig};
use crate::upstream::pool::{self, Outgoing};

/// The variables every route expression may read.
pub const VARS: &[&str] = &[
    "$keys",
    "$key",
    "$segment",
    "$currency",
    "$cursor",
    "$page",
    "$limit",
    "$category",
];

/// How the next page is found.
enum Next {
    Jq(Jq),
    /// The `Link` header's `rel="next"` URL.
    Link,
}

pub struct Route {
    pub name: &'static str,
    template: Template,
    body: Option<Jq>,
    headers: Vec<(HeaderName, Text)>,
    batch: Batch,
    pub max_batch: Option<usize>,
    items: Jq,
    map: Jq,
    next: Option<Next>,
    not_found: Vec<StatusCode>,
}

/// A request to send, before the system's credentials and stack.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub method: http::Method,
    /// A path below the system's URL, or (a page link) an absolute URL.
    pub target: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Vec<u8>>,
    /// Statuses that are answers ("no such record"), not failures.
    pub answers: Vec<StatusCode>,
}

impl Outbound {
    /// The request to send to `url` (its target, resolved by the
    /// sender), with its query, headers and body.
    pub fn to(&self, url: &str) -> Result<Outgoing, String> {
        let url = pool::with_query(url.to_string(), &self.query);
        let body = self.body.clone().map(Bytes::from).unwrap_or_default();
        let mut request = pool::request(self.method.clone(), &url, body)?;
        request.headers_mut().extend(self.headers.iter().cloned());
        Ok(request)
    }

    /// `GET /path?query` as shown to people (values decoded).
    pub fn shown(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let sep = if query.is_empty() { "" } else { "?" };
        format!("{} {}{sep}{}", self.method, self.target, query.join("&"))
    }
}

/// One foreign item and what the map made of it: the protocol v1 items
/// (several, for one price per currency), or why it could not be mapped.
pub struct Mapped {
    /// Its place in the foreign answer's item list.
    pub index: usize,
    pub items: Result<Vec<Val>, String>,
}

/// What an answer holds, read through the route.
pub struct Read {
    pub items: Vec<Mapped>,
    /// The next page's cursor (or page number, or link), if any.
    pub next: Option<String>,
    /// The system said there is no such record.
    pub not_found: bool,
}

impl Route {
    /// Compiles `config` of route `name`; each problem is its key (under
    /// `at`: `systems.akeneo.routes.products`) and what is wrong there.
    /// `defs`: the system's own jq definitions, before each expression.
    pub fn compile(
        name: &'static str,
        at: &str,
        config: &RouteConfig,
        defs: &str,
    ) -> Result<Route, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let key = |k: &str| format!("{at}.{k}");
        let jq = |k: &str, code: &str, problems: &mut Vec<(String, String)>| {
            Jq::compile_after(defs, code, VARS)
                .map_err(|e| problems.push((key(k), e.to_string())))
                .ok()
        };
        let template = Template::parse(&config.request)
            .map_err(|e| problems.push((key("request"), e.to_string())))
            .ok();
        let body = config
            .body
            .as_deref()
            .and_then(|b| jq("body", b, &mut problems));
        let items = jq("items", &config.items, &mut problems);
        let map = jq("map", &config.map, &mut problems);
        let next = match config.next.as_deref() {
            None => None,
            Some("link") => Some(Next::Link),
            Some(code) => jq("next", code, &mut problems).map(Next::Jq),
        };
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            match (HeaderName::from_bytes(name.as_bytes()), Text::parse(value)) {
                (Ok(header), Ok(text)) => headers.push((header, text)),
                (Err(_), _) => {
                    problems.push((key("headers"), format!("{name:?} is not a header name")))
                }
                (_, Err(e)) => problems.push((key(&format!("headers.{name}")), e.to_string())),
            }
        }
        let mut not_found = Vec::new();
        for code in &config.not_found {
            match StatusCode::from_u16(*code) {
                Ok(s) if s.is_client_error() => not_found.push(s),
                _ => problems.push((key("not_found"), format!("{code} is not a 4xx status"))),
            }
        }
        if config.max_batch == Some(0) {
            problems.push((key("max_batch"), "must be at least 1".into()));
        }
        if template
            .as_ref()
            .is_some_and(|t| t.method == http::Method::POST && config.body.is_none())
        {
            problems.push((key("body"), "a POST route needs a body".into()));
        }
        match (template, items, map) {
            (Some(template), Some(items), Some(map)) if problems.is_empty() => Ok(Route {
                name,
                template,
                body,
                headers,
                batch: match config.batch {
                    BatchStyle::Comma => Batch::Comma,
                    BatchStyle::Repeat => Batch::Repeat,
                    BatchStyle::Json => Batch::Json,
                },
                max_batch: config.max_batch,
                items,
                map,
                next,
                not_found,
            }),
            _ => Err(problems),
        }
    }

    /// Whether each key is a call of its own.
    pub fn per_key(&self) -> bool {
        self.template.per_key()
    }

    /// The placeholders its request names.
    pub fn holes(&self) -> Vec<&'static str> {
        let mut holes: Vec<&'static str> = self.template.holes().collect();
        holes.extend(self.headers.iter().flat_map(|(_, t)| t.holes()));
        holes
    }

    /// The request for `values`; a cursor that is a link (an absolute URL
    /// or a path) is followed as it is.
    pub fn request(&self, values: &Values<'_>) -> Result<Outbound, String> {
        let link = values.cursor.filter(|c| {
            c.starts_with('/') || c.starts_with("http://") || c.starts_with("https://")
        });
        let (target, query) = match link {
            Some(link) => (link.to_string(), Vec::new()),
            None => self.template.render(values, self.batch),
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, text) in &self.headers {
            let mut value = HeaderValue::from_str(&text.render(values))
                .map_err(|_| format!("the {name} header cannot carry this value"))?;
            value.set_sensitive(true);
            headers.push((name.clone(), value));
        }
        let body = match &self.body {
            Some(body) => {
                let json = body.run_one(Val::Null, &vars(values))?;
                headers.push((
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ));
                Some(json.to_string().into_bytes())
            }
            None => None,
        };
        Ok(Outbound {
            method: self.template.method.clone(),
            target,
            query,
            headers,
            body,
            answers: self.not_found.clone(),
        })
    }

    /// Reads an answer: its items through `items` and `map`, and the next
    /// page. `Err`: the answer as a whole cannot be read (not JSON, or
    /// `items` failed on it).
    pub fn read(
        &self,
        status: StatusCode,
        body: &[u8],
        link_next: Option<&str>,
        values: &Values<'_>,
    ) -> Result<Read, String> {
        if self.not_found.contains(&status) {
            return Ok(Read {
                items: Vec::new(),
                next: None,
                not_found: true,
            });
        }
        let vars = vars(values);
        let answer = jq::read(body)?;
        let foreign = self
            .items
            .run(answer.clone(), &vars)
            .map_err(|e| format!("items: {e}"))?;
        let items = foreign
            .into_iter()
            .enumerate()
            .map(|(index, item)| Mapped {
                index,
                items: self
                    .map
                    .run(item, &vars)
                    .map(|items| items.into_iter().map(without_nulls).collect())
                    .map_err(|e| format!("map: {e}")),
            })
            .collect();
        let next = match &self.next {
            None => None,
            Some(Next::Link) => link_next.map(str::to_string),
            Some(Next::Jq(next)) => {
                let found = next.run(answer, &vars).map_err(|e| format!("next: {e}"))?;
                found.into_iter().find_map(|v| cursor(&v))
            }
        };
        Ok(Read {
            items,
            next,
            not_found: false,
        })
    }

    /// Maps one foreign item (a change event's) as this route's `map` does.
    pub fn map_one(&self, item: Val, values: &Values<'_>) -> Result<Vec<Val>, String> {
        self.map
            .run(item, &vars(values))
            .map(|items| items.into_iter().map(without_nulls).collect())
            .map_err(|e| format!("map: {e}"))
    }
}

/// A mapped item without its null fields: `{compareAtAmount: .x}` on an
/// item without `x` means "none", which protocol v1 writes by leaving the
/// field out.
fn without_nulls(item: Val) -> Val {
    match item {
        Val::Obj(map) if map.values().any(|v| matches!(v, Val::Null)) => Val::obj(
            map.iter()
                .filter(|(_, v)| !matches!(v, Val::Null))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other,
    }
}

/// A next-page value as a cursor: a string, or a whole number.
fn cursor(v: &Val) -> Option<String> {
    match v {
        Val::Null | Val::Bool(false) => None,
        Val::Num(n) if n.as_isize().is_some() => Some(n.to_string()),
        other => jq::as_text(other).filter(|t| !t.is_empty()),
    }
}

/// The jq variables for `values`, in the order of `VARS`.
fn vars(values: &Values<'_>) -> Vec<Val> {
    let opt = |v: Option<&str>| v.map_or(Val::Null, jq::text);
    let keys: Val = values.keys.iter().map(|k| jq::text(k)).collect();
    let key = match values.keys {
        [one] => jq::text(one),
        _ => Val::Null,
    };
    let number =
        |n: Option<u64>| n.map_or(Val::Null, |n| Val::Num(jaq_json::Num::from_integral(n)));
    vec![
        keys,
        key,
        opt(values.segment),
        opt(values.currency),
        opt(values.cursor),
        number(values.page),
        number(values.limit.map(|l| l as u64)),
        opt(values.category),
    ]
}
