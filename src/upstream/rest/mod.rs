//! Connectors for systems that do not speak protocol v1 (`protocol =
//! "rest"`): each thing Moat reads from such a system goes through a route
//! of its own (`[systems.NAME.routes.ROUTE]`: a request template, jq that
//! selects the foreign items and maps each to protocol v1 items, paging),
//! and what comes back is written as a protocol v1 answer before anything
//! else sees it. So the rest of `upstream` (the families, the contract
//! check, the outbound stack) does not know a connector is there, and a
//! mapped item is held to exactly the checks a protocol v1 item is.
//!
//! A mapped item carries where it came from (`moat:origin`: the route and
//! the foreign item's index), so a violation names it; a foreign item the
//! map fails on becomes `moat:broken` for the keys it may have been, so it
//! fails those keys only, and is never taken for "no such record".

pub mod jq;
mod route;
pub mod template;

use std::collections::HashMap;
use std::fmt::Write as _;

use bytes::Bytes;
use http::StatusCode;
use jaq_json::Val;

use super::Reply;
use super::ask::Ask;
use jq::Jq;
pub use route::{Outbound, Route, VARS};
use template::Values;

use crate::config::{Config, Signature, SystemConfig};
use crate::vocab::{Record, System};

/// Pages of one listing followed at most (`categories`).
const MAX_PAGES: usize = 100;

/// One system's routes, and how its own change events become Moat's.
pub struct Connector {
    system: System,
    routes: HashMap<&'static str, Route>,
    events: Option<Events>,
}

/// `[systems.NAME.events]`, compiled.
pub struct Events {
    pub signature: Signature,
    /// From one delivery (`.`, with `$headers`) to Moat envelopes.
    pub map: Jq,
}

/// The variables an event map may read.
pub const EVENT_VARS: &[&str] = &["$headers"];

/// How a connector's requests are sent: the outbound stack at run time,
/// a plain client for `contract verify` and `connector try`.
pub trait Transport {
    fn send(
        &self,
        route: &'static str,
        request: Outbound,
    ) -> impl Future<Output = Result<Reply, crate::error::Error>> + Send;
}

/// One request made and what came back.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `GET /path?query` as shown to people.
    pub request: String,
    pub status: StatusCode,
    pub body: Bytes,
}

/// A mapped protocol v1 item and where it came from.
#[derive(Debug, Clone)]
pub struct Item {
    /// `route prices, item 3`.
    pub origin: String,
    pub value: Val,
}

/// A foreign item that could not be mapped.
#[derive(Debug, Clone)]
pub struct Broken {
    pub origin: String,
    pub reason: String,
}

/// Everything one ask did: for `connector try`, `contract verify`, and the
/// protocol v1 answer the families read (`into_answer`).
#[derive(Debug, Clone)]
pub struct Translation {
    pub route: &'static str,
    pub exchanges: Vec<Exchange>,
    pub items: Vec<Item>,
    pub broken: Vec<Broken>,
    pub next: Option<String>,
    pub not_found: bool,
}

impl Connector {
    /// The routes of `system` (its `[systems.NAME]`, protocol `rest`);
    /// every problem names its key.
    pub fn compile(
        system: System,
        config: &SystemConfig,
    ) -> Result<Connector, Vec<(String, String)>> {
        let mut routes = HashMap::new();
        let mut problems = Vec::new();
        let defs = config.defs.as_deref().unwrap_or_default();
        // Defs see no variables, so each compiles alike under a route and
        // under the event map: what one needs is passed as an argument.
        if let Err(e) = Jq::compile(&format!("{defs}\n."), &[]) {
            problems.push((format!("systems.{system}.defs"), e.to_string()));
            return Err(problems);
        }
        for (name, route) in &config.routes {
            let at = format!("systems.{system}.routes.{name}");
            let Some((known, _)) = crate::config::ROUTES.iter().find(|(n, _)| n == name) else {
                let names: Vec<&str> = crate::config::ROUTES.iter().map(|(n, _)| *n).collect();
                problems.push((
                    at,
                    format!("no such route; routes are {}", names.join(", ")),
                ));
                continue;
            };
            match Route::compile(known, &at, route, defs) {
                Ok(route) => {
                    routes.insert(*known, route);
                }
                Err(found) => problems.extend(found),
            }
        }
        let events = match &config.events {
            None => None,
            Some(events) => match Jq::compile_after(defs, &events.map, EVENT_VARS) {
                Ok(map) => Some(Events {
                    signature: events.signature.clone(),
                    map,
                }),
                Err(e) => {
                    problems.push((format!("systems.{system}.events.map"), e.to_string()));
                    None
                }
            },
        };
        if problems.is_empty() {
            Ok(Connector {
                system,
                routes,
                events,
            })
        } else {
            Err(problems)
        }
    }

    /// How its change events are signed and mapped, if it sends its own.
    pub fn events(&self) -> Option<&Events> {
        self.events.as_ref()
    }

    /// A foreign item of `record` (a change event's) as protocol v1 items,
    /// by the route that reads that record; `segment` and `currency` for
    /// a route whose map reads them.
    pub fn map_item(
        &self,
        record: Record,
        item: Val,
        segment: Option<&str>,
        currency: Option<&str>,
    ) -> Result<Vec<Val>, String> {
        let name = match record {
            Record::Products => "products",
            Record::Categories => "categories",
            Record::Prices => "prices",
            Record::Inventory => "inventory",
            Record::Customers => "customer",
            Record::Orders => "order",
        };
        let route = self
            .routes
            .get(name)
            .ok_or_else(|| format!("{} has no route {name} to map the item with", self.system))?;
        let values = Values {
            segment,
            currency,
            ..Values::default()
        };
        route.map_one(item, &values)
    }

    pub fn system(&self) -> System {
        self.system
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.get(name)
    }

    /// Most keys one call of `route` may carry: one for a route that takes
    /// a single key, else its own `max_batch` or `default`.
    pub fn max_batch(&self, route: &str, default: usize) -> usize {
        match self.routes.get(route) {
            Some(r) if r.per_key() => 1,
            Some(r) => r.max_batch.unwrap_or(default),
            None => default,
        }
    }

    /// Asks through the route that answers `ask`.
    pub async fn translate(
        &self,
        transport: &impl Transport,
        ask: Ask<'_>,
    ) -> Result<Translation, crate::error::Error> {
        let name = ask.route();
        let route = self.routes.get(name).ok_or_else(|| {
            crate::error::Error::unavailable(format!(
                "{} has no route {name} (systems.{}.routes.{name})",
                self.system, self.system
            ))
        })?;
        let mut translation = Translation {
            route: name,
            exchanges: Vec::new(),
            items: Vec::new(),
            broken: Vec::new(),
            next: None,
            not_found: false,
        };
        let follow = matches!(ask, Ask::Categories);
        let (mut cursor, mut page): (Option<String>, Option<u64>) = (None, None);
        for _ in 0..MAX_PAGES {
            let mut values = ask.values();
            if cursor.is_some() {
                values.cursor = cursor.as_deref();
                values.page = page;
            }
            let request = route
                .request(&values)
                .map_err(|e| crate::error::Error::bad_request(format!("{name}: {e}")))?;
            let shown = request.shown();
            let answer = transport.send(name, request).await?;
            let at = translation.exchanges.len();
            let read = route.read(
                answer.status,
                &answer.body,
                answer.link_next.as_deref(),
                &values,
            );
            translation.exchanges.push(Exchange {
                request: shown,
                status: answer.status,
                body: answer.body,
            });
            let read = read.map_err(|reason| {
                crate::error::Error::unavailable(format!(
                    "{} answered {name} with what its route cannot read: {reason}",
                    self.system
                ))
            })?;
            translation.not_found |= read.not_found;
            for mapped in read.items {
                let origin = if at == 0 {
                    format!("route {name}, item {}", mapped.index)
                } else {
                    format!("route {name}, page {}, item {}", at + 1, mapped.index)
                };
                match mapped.items {
                    Ok(items) => translation
                        .items
                        .extend(items.into_iter().map(|value| Item {
                            origin: origin.clone(),
                            value,
                        })),
                    Err(reason) => translation.broken.push(Broken { origin, reason }),
                }
            }
            let next_page = values.page.unwrap_or(1) + 1;
            translation.next = read.next;
            match (&translation.next, follow) {
                (Some(next), true) => {
                    cursor = Some(next.clone());
                    page = Some(next_page);
                }
                _ => break,
            }
        }
        if follow {
            translation.next = None;
        }
        Ok(translation)
    }

    /// Asks, and writes what came back as protocol v1 would have it.
    pub async fn ask(
        &self,
        transport: &impl Transport,
        ask: Ask<'_>,
    ) -> Result<Reply, crate::error::Error> {
        let translation = self.translate(transport, ask).await?;
        Ok(translation.into_answer(&ask))
    }
}

impl Translation {
    /// The protocol v1 answer: a list `{"items": [...], "nextCursor"}`, or
    /// for a single record the item (404 when there is none).
    pub fn into_answer(self, ask: &Ask<'_>) -> Reply {
        let mut body = String::new();
        let tagged = |item: &Item, body: &mut String| match &item.value {
            Val::Obj(_) => {
                let json = item.value.to_string();
                let _ = write!(
                    body,
                    "{{\"moat:origin\":{},{}",
                    json_text(&item.origin),
                    &json[1..]
                );
            }
            other => body.push_str(&other.to_string()),
        };
        let broken = |field: Option<(&str, &str)>, reason: &str, body: &mut String| {
            body.push('{');
            if let Some((name, key)) = field {
                let _ = write!(body, "{}:{},", json_text(name), json_text(key));
            }
            let _ = write!(body, "\"moat:broken\":{}}}", json_text(reason));
        };
        if ask.single() {
            let status = match (self.items.as_slice(), self.broken.first()) {
                (_, Some(b)) => {
                    broken(None, &format!("{}: {}", b.origin, b.reason), &mut body);
                    StatusCode::OK
                }
                ([one], None) => {
                    tagged(one, &mut body);
                    StatusCode::OK
                }
                ([], None) => StatusCode::NOT_FOUND,
                (several, None) => {
                    let reason = format!(
                        "route {}: {} items where one record was asked for",
                        self.route,
                        several.len()
                    );
                    broken(None, &reason, &mut body);
                    StatusCode::OK
                }
            };
            return Reply {
                status,
                body: Bytes::from(body),
                link_next: None,
            };
        }
        body.push_str("{\"items\":[");
        let mut first = true;
        let mut sep = |body: &mut String| {
            if !std::mem::take(&mut first) {
                body.push(',');
            }
        };
        for item in &self.items {
            sep(&mut body);
            tagged(item, &mut body);
        }
        if !self.broken.is_empty() {
            let reason: Vec<String> = self
                .broken
                .iter()
                .map(|b| format!("{}: {}", b.origin, b.reason))
                .collect();
            let reason = reason.join("; ");
            match (ask.key_field(), ask.values().keys) {
                // Each key asked that no good item answers may be the broken
                // one: it fails, rather than look like "no such record".
                (Some(field), keys) if !keys.is_empty() => {
                    for key in keys {
                        let answered = self.items.iter().any(|i| field_is(&i.value, field, key));
                        if !answered {
                            sep(&mut body);
                            broken(Some((field, key)), &reason, &mut body);
                        }
                    }
                }
                _ => {
                    sep(&mut body);
                    broken(None, &reason, &mut body);
                }
            }
        }
        body.push(']');
        if let Some(next) = &self.next {
            let _ = write!(body, ",\"nextCursor\":{}", json_text(next));
        }
        body.push('}');
        Reply {
            status: StatusCode::OK,
            body: Bytes::from(body),
            link_next: None,
        }
    }
}

/// Whether a mapped item's `field` is `key`.
fn field_is(item: &Val, field: &str, key: &str) -> bool {
    match item {
        Val::Obj(map) => map
            .get(&jq::text(field))
            .and_then(jq::as_text)
            .is_some_and(|v| v == key),
        _ => false,
    }
}

/// The routes a record is read through.
fn needed(record: Record) -> &'static [&'static str] {
    match record {
        Record::Products => &[
            "products",
            "products_by_sku",
            "product_list",
            "category_products",
        ],
        Record::Categories => &["categories"],
        Record::Prices => &["prices"],
        Record::Inventory => &["inventory"],
        Record::Customers => &["customer"],
        Record::Orders => &["order"],
    }
}

fn json_text(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// The connectors of every system `config` uses with `protocol = "rest"`;
/// every problem names its key. `moat check-config` and the gateway's
/// start both run it, so a bad template or jq expression never starts.
pub fn connectors(config: &Config) -> Result<HashMap<String, Connector>, Vec<(String, String)>> {
    let mut built = HashMap::new();
    let mut problems = Vec::new();
    let owners = config.owners();
    for (name, system) in &config.systems {
        if system.protocol.as_deref() != Some("rest") {
            continue;
        }
        let at = System::named(name);
        for record in owners.records_of(at) {
            for route in needed(record) {
                if !system.routes.contains_key(*route) {
                    problems.push((
                        format!("systems.{name}.routes.{route}"),
                        format!(
                            "{name} owns {record} in [entities], which are read through this route"
                        ),
                    ));
                }
            }
        }
        match Connector::compile(at, system) {
            Ok(connector) => {
                built.insert(name.clone(), connector);
            }
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() {
        Ok(built)
    } else {
        Err(problems)
    }
}
