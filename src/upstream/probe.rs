//! `moat contract verify` and the doctor's sampled check: the calls Moat
//! makes to one system, made once, with its real credentials, and every
//! answer held to the contract: the status, the declared protocol, the JSON
//! Schema of `schema/upstream/` (open: extra fields are allowed) and Moat's
//! own checks (what a schema cannot say: a total that is the sum of its
//! lines, a price in the segment asked for).

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde_json::Value;

use super::auth::Credentials;
use super::contract::{Boundary, Wire, check_one};
use super::pool::{self, Pool};
use super::rest::{Connector, Outbound, Translation, Transport};
use super::{Ask, PROTOCOL_HEADER, Reply, crm, erp, oms, pim};
use crate::config::{Config, Secrets};
use crate::error::Error;
use crate::schema::{self, Properties, Violation};
use crate::vocab::{Currency, PROTOCOL, Record, System};

/// One system to probe.
pub struct Target {
    pub system: System,
    pub url: String,
    /// What it is probed for: the records it owns (by `[entities]`), or,
    /// for a name config does not use, the records of the protocol family
    /// it is named after.
    pub records: Vec<Record>,
    pool: Pool,
    credentials: Credentials,
    /// For a system that speaks its own API: its routes, which every ask
    /// goes through (and what they map is what is checked).
    pub connector: Option<Connector>,
    /// It is configured to answer `GET /erp/v1/offers` too.
    offers: bool,
}

impl Target {
    /// `name` as config describes it (auth, TLS, timeouts), at `url` when
    /// given (else its configured URL).
    pub fn new(
        config: &Config,
        secrets: &Secrets,
        name: &str,
        url: Option<&str>,
    ) -> Result<Target, Error> {
        let system = System::named(name);
        let settings = config.system(name);
        let url = url
            .map(str::to_string)
            .or(settings.url.clone())
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "{name} has no URL: pass --url or set systems.{name}.url"
                ))
            })?;
        let mut records = config.owners().records_of(system);
        if records.is_empty() {
            records = Record::ALL
                .into_iter()
                .filter(|r| r.default_owner() == system)
                .collect();
        }
        if records.is_empty() {
            return Err(Error::bad_request(format!(
                "{name} owns nothing in [entities] and is not one of pim, erp, crm, oms"
            )));
        }
        let pool = Pool::new(&settings)?;
        let credentials = Credentials::new(
            system,
            &settings.auth,
            secrets.systems.get(name),
            pool.clone(),
            settings.timeout,
            &url,
        )?;
        let connector = match config.systems.get(name) {
            Some(own) if own.protocol.as_deref() == Some("rest") => {
                Some(Connector::compile(system, own).map_err(|problems| {
                    let problems: Vec<String> =
                        problems.iter().map(|(k, m)| format!("{k}: {m}")).collect();
                    Error::bad_request(problems.join("; "))
                })?)
            }
            _ => None,
        };
        Ok(Target {
            system,
            url: url.trim_end_matches('/').to_string(),
            records,
            pool,
            credentials,
            offers: settings.offers && connector.is_none(),
            connector,
        })
    }
}

/// What to ask for. Keys a system cannot be asked to list (skus for an
/// ERP, a customer token, an order id) come from here.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Skus to price and stock; empty: the first page of products at the
    /// same URL, when it serves them.
    pub skus: Vec<String>,
    pub customer_token: Option<String>,
    pub order_id: Option<String>,
    pub segment: String,
    pub currency: Currency,
    /// Items per page asked for.
    pub page: usize,
    pub timeout: Duration,
}

impl Sample {
    pub fn from_config(config: &Config) -> Sample {
        Sample {
            skus: Vec::new(),
            customer_token: None,
            order_id: None,
            segment: config.catalog.default_segment.clone(),
            currency: Currency::from_code(&config.catalog.default_currency)
                .unwrap_or(Currency::EUR),
            page: 5,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One call and what was wrong with its answer.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// `GET /erp/v1/prices?skus=…`
    pub request: String,
    pub status: Option<u16>,
    /// Items in the answer.
    pub items: usize,
    #[serde(serialize_with = "shown")]
    pub violations: Vec<Violation>,
}

fn shown<S: serde::Serializer>(v: &[Violation], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        v.iter()
            .map(|v| serde_json::json!({ "path": v.path, "rule": v.rule, "found": v.found })),
    )
}

/// Everything a probe found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub system: String,
    pub url: String,
    pub records: Vec<&'static str>,
    pub calls: Vec<Call>,
    /// What could not be sampled, and how to sample it.
    pub notes: Vec<String>,
    /// Skus seen or used, for probing the next system.
    #[serde(skip)]
    pub skus: Vec<String>,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.calls.iter().map(|c| c.violations.len()).sum()
    }

    /// The report as lines for a terminal.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} at {} ({})\n",
            self.system,
            self.url,
            self.records.join(", ")
        );
        for call in &self.calls {
            let status = call.status.map_or("---".to_string(), |s| s.to_string());
            let verdict = if call.violations.is_empty() {
                "ok"
            } else {
                "FAIL"
            };
            let plural = if call.items == 1 { "" } else { "s" };
            let _ = writeln!(
                out,
                "  {verdict:<4} {status} {} ({} item{plural})",
                call.request, call.items
            );
            for v in &call.violations {
                let _ = writeln!(out, "       {}: {}  [{}]", v.path, v.found, v.rule);
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        let _ = write!(
            out,
            "{} calls, {} violations",
            self.calls.len(),
            self.violations()
        );
        out
    }
}

/// Makes Moat's calls to `target` and checks every answer.
pub async fn verify(target: &Target, sample: &Sample) -> Report {
    let mut probe = Probe {
        target,
        sample,
        calls: Vec::new(),
        notes: Vec::new(),
    };
    let mut skus = sample.skus.clone();
    for record in &target.records {
        match record {
            Record::Products => {
                let found = probe.products().await;
                if skus.is_empty() {
                    skus = found;
                }
            }
            Record::Categories => probe.categories().await,
            Record::Prices => {
                if skus.is_empty() {
                    skus = probe.discover_skus().await;
                }
                probe.prices(&skus).await;
                if skus != [UNKNOWN] {
                    probe.quote(&skus).await;
                }
            }
            Record::Inventory => {
                if skus.is_empty() {
                    skus = probe.discover_skus().await;
                }
                probe.inventory(&skus).await;
                if target.offers {
                    probe.offers(&skus).await;
                }
            }
            Record::Customers => probe.customer().await,
            Record::Orders => probe.order().await,
        }
    }
    Report {
        system: target.system.name().to_string(),
        url: crate::config::redact(&target.url),
        records: target.records.iter().map(|r| r.name()).collect(),
        calls: probe.calls,
        notes: probe.notes,
        skus: skus.into_iter().filter(|s| s != UNKNOWN).collect(),
    }
}

/// A key no system has: what is asked for when there is nothing better, to
/// check the route, the credentials and the empty answer.
const UNKNOWN: &str = "moat-contract-probe-unknown";

struct Probe<'a> {
    target: &'a Target,
    sample: &'a Sample,
    calls: Vec<Call>,
    notes: Vec<String>,
}

/// An answer with the expected status.
struct Answer {
    body: Bytes,
}

impl Probe<'_> {
    fn boundary(&self) -> Boundary<'_> {
        Boundary {
            system: self.target.system,
            exceptions: None,
        }
    }

    /// Sends one request; the call is recorded with whatever was wrong
    /// with the transport, status or protocol, and the answer returned for
    /// the body checks.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        expect: &[StatusCode],
    ) -> Option<Answer> {
        let url = pool::with_query(format!("{}{path}", self.target.url), query);
        let mut shown_query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        if !shown_query.is_empty() {
            shown_query.insert(0, '?');
        }
        let mut call = Call {
            request: format!("{method} {path}{shown_query}"),
            status: None,
            items: 0,
            violations: Vec::new(),
        };
        let broken = |rule: &str, found: String| Violation {
            path: "$".into(),
            rule: rule.into(),
            found,
        };
        let answer = async {
            let json = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
            let mut request =
                pool::request(method.clone(), &url, json).map_err(|e| broken("HTTP", e))?;
            let headers = request.headers_mut();
            headers.insert(PROTOCOL_HEADER, HeaderValue::from_static(PROTOCOL));
            if body.is_some() {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            self.target
                .credentials
                .apply(headers)
                .await
                .map_err(|e| broken("auth", e.message().to_string()))?;
            let answer = self
                .target
                .pool
                .exchange(request, self.sample.timeout)
                .await
                .map_err(|e| broken("HTTP", e.to_string()))?;
            let declared = answer.headers.get(PROTOCOL_HEADER).cloned();
            Ok::<_, Violation>((answer.status, declared, answer.body))
        }
        .await;
        let answer = match answer {
            Ok((status, declared, body)) => {
                call.status = Some(status.as_u16());
                if let Some(declared) = declared.filter(|v| v != PROTOCOL) {
                    call.violations.push(broken(
                        "protocol",
                        format!(
                            "declares {PROTOCOL_HEADER}: {}; Moat speaks {PROTOCOL}",
                            String::from_utf8_lossy(declared.as_bytes())
                        ),
                    ));
                }
                if expect.contains(&status) {
                    Some(Answer { body })
                } else {
                    let why = match status {
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            "Moat's credentials were not accepted".to_string()
                        }
                        _ => String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned(),
                    };
                    let expected: Vec<String> =
                        expect.iter().map(|s| s.as_u16().to_string()).collect();
                    call.violations.push(broken(
                        "status",
                        format!("{status}, expected {}: {why}", expected.join(" or ")),
                    ));
                    None
                }
            }
            Err(v) => {
                call.violations.push(v);
                None
            }
        };
        self.calls.push(call);
        answer
    }

    /// Asks what Moat asks, as Moat would: by protocol v1's route, or
    /// through the system's connector (its requests and the foreign
    /// answers are the call; what its routes map is what is checked).
    async fn ask(&mut self, ask: Ask<'_>, expect: &[StatusCode]) -> Option<Answer> {
        let Some(connector) = &self.target.connector else {
            let (_, path, query) = ask.v1()?;
            let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            return self.send(Method::GET, &path, &query, None, expect).await;
        };
        let direct = Direct {
            target: self.target,
            timeout: self.sample.timeout,
        };
        let mut call = Call {
            request: String::new(),
            status: None,
            items: 0,
            violations: Vec::new(),
        };
        let translated = connector.translate(&direct, ask).await;
        let answer = match translated {
            Ok(translation) => {
                call.request = requests(&translation);
                call.status = translation.exchanges.last().map(|e| e.status.as_u16());
                let answer = translation.into_answer(&ask);
                if expect.contains(&answer.status) {
                    Some(Answer { body: answer.body })
                } else {
                    call.violations.push(Violation {
                        path: "$".into(),
                        rule: "status".into(),
                        found: format!(
                            "mapped to {}, expected {}",
                            answer.status,
                            expect
                                .iter()
                                .map(|s| s.as_u16().to_string())
                                .collect::<Vec<_>>()
                                .join(" or ")
                        ),
                    });
                    None
                }
            }
            Err(e) => {
                call.request = format!("route {}", ask.route());
                call.violations.push(Violation {
                    path: "$".into(),
                    rule: "route".into(),
                    found: e.message().to_string(),
                });
                None
            }
        };
        self.calls.push(call);
        answer
    }

    fn last(&mut self) -> &mut Call {
        self.calls.last_mut().expect("a call was just made")
    }

    /// The answer's JSON, or a violation recorded.
    fn json(&mut self, answer: &Answer) -> Option<Value> {
        serde_json::from_slice(&answer.body)
            .map_err(|e| {
                self.last().violations.push(Violation {
                    path: "$".into(),
                    rule: "JSON".into(),
                    found: format!("not JSON: {e}"),
                });
            })
            .ok()
    }

    /// What is wrong with one item: its schema first, and when that holds,
    /// Moat's own check.
    fn item<W: Wire>(&self, file: &str, item: &Value) -> Vec<Violation> {
        // A connector's item: a foreign one its map failed on, or one it
        // mapped, whose violations name the route and foreign index.
        if let Some(broken) = item.get("moat:broken").and_then(Value::as_str) {
            return vec![Violation {
                path: "$".into(),
                rule: "map".into(),
                found: broken.to_string(),
            }];
        }
        let origin = item.get("moat:origin").and_then(Value::as_str);
        let found = self.checked::<W>(file, item);
        match origin {
            None => found,
            Some(origin) => found
                .into_iter()
                .map(|v| Violation {
                    found: format!("{} ({origin}, as mapped)", v.found),
                    ..v
                })
                .collect(),
        }
    }

    fn checked<W: Wire>(&self, file: &str, item: &Value) -> Vec<Violation> {
        let mut found = schema::validate(file, item, Properties::Open);
        if found.is_empty()
            && let Err(reason) = check_one::<W>(self.boundary(), item.to_string().as_bytes())
        {
            found.push(Violation {
                path: "$".into(),
                rule: format!("moat: {}", W::ENTITY),
                found: reason,
            });
        }
        found
    }

    /// Checks a `{"items": [...], "nextCursor"?}` answer item by item;
    /// returns the items that passed.
    fn list<W: Wire>(&mut self, answer: &Answer, file: &str) -> Vec<Value> {
        match self.json(answer) {
            Some(root) => self.list_at::<W>(&root, "$", file),
            None => Vec::new(),
        }
    }

    /// `list` of the list at `at` (`$`, or `$.prices` in an offers answer).
    fn list_at<W: Wire>(&mut self, root: &Value, at: &str, file: &str) -> Vec<Value> {
        let mut good = Vec::new();
        let Some(items) = root.get("items").and_then(Value::as_array) else {
            self.last().violations.push(Violation {
                path: format!("{at}.items"),
                rule: "list".into(),
                found: "a list is {\"items\": [...], \"nextCursor\"?}".into(),
            });
            return good;
        };
        let mut violations = Vec::new();
        if let Some(cursor) = root.get("nextCursor")
            && !(cursor.is_null() || cursor.as_str().is_some_and(|c| !c.is_empty()))
        {
            violations.push(Violation {
                path: format!("{at}.nextCursor"),
                rule: "list".into(),
                found: format!("{cursor} is not a non-empty string or null"),
            });
        }
        for (i, item) in items.iter().enumerate() {
            let found = self.item::<W>(file, item);
            if found.is_empty() {
                good.push(item.clone());
            }
            violations.extend(found.into_iter().map(|v| Violation {
                path: v.path.replacen('$', &format!("{at}.items[{i}]"), 1),
                ..v
            }));
        }
        let call = self.last();
        call.items += items.len();
        call.violations.extend(violations);
        good
    }

    /// Checks a single-entity answer; the entity, if it passed.
    fn one<W: Wire>(&mut self, answer: &Answer, file: &str) -> Option<Value> {
        let item = self.json(answer)?;
        let found = self.item::<W>(file, &item);
        let call = self.last();
        call.items = 1;
        let ok = found.is_empty();
        call.violations.extend(found);
        ok.then_some(item)
    }

    /// A violation of "answers what was asked".
    fn unanswered(&mut self, path: &str, found: String) {
        self.last().violations.push(Violation {
            path: path.into(),
            rule: "answers the request".into(),
            found,
        });
    }

    /// A page of products, then the same products by id and by sku, and
    /// the next page: the calls a storefront's listing and look-ups make.
    /// Returns the skus seen.
    async fn products(&mut self) -> Vec<String> {
        let limit = self.sample.page;
        let first = Ask::ProductPage {
            cursor: None,
            limit,
            category: None,
        };
        let Some(answer) = self.ask(first, &[StatusCode::OK]).await else {
            return Vec::new();
        };
        let cursor = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("nextCursor")?.as_str().map(str::to_string));
        let products = self.list::<pim::WireProduct>(&answer, "product.json");
        let field = |name: &str| -> Vec<String> {
            products
                .iter()
                .filter_map(|p| p.get(name)?.as_str().map(str::to_string))
                .collect()
        };
        let (ids, skus) = (field("id"), field("sku"));
        for (keys, field) in [(&ids, "id"), (&skus, "sku")] {
            if keys.is_empty() {
                continue;
            }
            let ask = match field {
                "id" => Ask::ProductsById(keys),
                _ => Ask::ProductsBySku(keys),
            };
            let Some(answer) = self.ask(ask, &[StatusCode::OK]).await else {
                continue;
            };
            let got = self.list::<pim::WireProduct>(&answer, "product.json");
            for key in keys {
                if !got
                    .iter()
                    .any(|p| p.get(field).and_then(Value::as_str) == Some(key))
                {
                    self.unanswered(
                        "$.items",
                        format!("{field} {key:?} was listed but is missing"),
                    );
                }
            }
        }
        if let Some(cursor) = cursor {
            let next = Ask::ProductPage {
                cursor: Some(&cursor),
                limit,
                category: None,
            };
            if let Some(answer) = self.ask(next, &[StatusCode::OK]).await {
                self.list::<pim::WireProduct>(&answer, "product.json");
            }
        }
        skus
    }

    /// Skus from the first products page at the same URL, for a system
    /// that prices or stocks but does not list. Not a call under test.
    async fn discover_skus(&mut self) -> Vec<String> {
        if let Some(connector) = &self.target.connector {
            return self.discover_through(connector).await;
        }
        let page = self.sample.page.to_string();
        let url = pool::with_query(
            format!("{}/pim/v1/products", self.target.url),
            &[("limit", page.as_str())],
        );
        let Ok(mut request) = pool::request(Method::GET, &url, Bytes::new()) else {
            return Vec::new();
        };
        if self
            .target
            .credentials
            .apply(request.headers_mut())
            .await
            .is_err()
        {
            return Vec::new();
        }
        let answer = self
            .target
            .pool
            .exchange(request, self.sample.timeout)
            .await;
        let skus: Vec<String> = match answer {
            Ok(answer) if answer.status.is_success() => {
                serde_json::from_slice::<Value>(&answer.body)
                    .ok()
                    .and_then(|v| {
                        v.get("items")?.as_array().map(|items| {
                            items
                                .iter()
                                .filter_map(|i| i.get("sku")?.as_str().map(str::to_string))
                                .collect()
                        })
                    })
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        if skus.is_empty() {
            self.notes.push(
                "no skus to sample (this URL lists no products): prices and stock were asked \
                 for an unknown sku only, and no quote; pass --skus to check their payloads"
                    .into(),
            );
            return vec![UNKNOWN.to_string()];
        }
        skus
    }

    /// `discover_skus` for a connector: its catalog page, if it lists.
    async fn discover_through(&mut self, connector: &Connector) -> Vec<String> {
        let direct = Direct {
            target: self.target,
            timeout: self.sample.timeout,
        };
        let page = Ask::ProductPage {
            cursor: None,
            limit: self.sample.page,
            category: None,
        };
        let skus: Vec<String> = match connector.translate(&direct, page).await {
            Ok(t) => t
                .items
                .iter()
                .filter_map(|i| match &i.value {
                    jaq_json::Val::Obj(map) => map
                        .get(&super::rest::jq::text("sku"))
                        .and_then(super::rest::jq::as_text),
                    _ => None,
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        if skus.is_empty() {
            self.notes.push(
                "no skus to sample (its routes list no products): prices and stock were asked \
                 for an unknown sku only; pass --skus to check their payloads"
                    .into(),
            );
            return vec![UNKNOWN.to_string()];
        }
        skus
    }

    async fn categories(&mut self) {
        if let Some(answer) = self.ask(Ask::Categories, &[StatusCode::OK]).await {
            self.list::<pim::WireCategory>(&answer, "category.json");
        }
    }

    async fn prices(&mut self, skus: &[String]) {
        if skus.is_empty() {
            return;
        }
        let (segment, currency) = (self.sample.segment.clone(), self.sample.currency.code());
        let ask = Ask::Prices {
            skus,
            segment: &segment,
            currency,
        };
        let Some(answer) = self.ask(ask, &[StatusCode::OK]).await else {
            return;
        };
        let prices = self.list::<erp::WirePrice>(&answer, "price.json");
        self.as_asked(&prices, "$", &segment, currency);
    }

    /// A violation for each of `prices` (listed at `at`) in another
    /// segment or currency than asked.
    fn as_asked(&mut self, prices: &[Value], at: &str, segment: &str, currency: &str) {
        for (i, price) in prices.iter().enumerate() {
            let (s, c) = (&price["segment"], &price["currency"]);
            if s.as_str() != Some(segment) || c.as_str() != Some(currency) {
                self.unanswered(
                    &format!("{at}.items[{i}]"),
                    format!("asked for {segment}/{currency}, got {s}/{c}"),
                );
            }
        }
    }

    async fn inventory(&mut self, skus: &[String]) {
        if skus.is_empty() {
            return;
        }
        if let Some(answer) = self.ask(Ask::Inventory(skus), &[StatusCode::OK]).await {
            self.list::<erp::WireStock>(&answer, "inventory.json");
        }
    }

    /// `systems.NAME.offers`: the combined route, each list as its own
    /// route's.
    async fn offers(&mut self, skus: &[String]) {
        if skus.is_empty() {
            return;
        }
        let (segment, currency) = (self.sample.segment.clone(), self.sample.currency.code());
        let ask = Ask::Offers {
            skus,
            segment: &segment,
            currency,
        };
        let Some(answer) = self.ask(ask, &[StatusCode::OK]).await else {
            return;
        };
        let Some(root) = self.json(&answer) else {
            return;
        };
        let prices = self.list_at::<erp::WirePrice>(&root["prices"], "$.prices", "price.json");
        self.as_asked(&prices, "$.prices", &segment, currency);
        self.list_at::<erp::WireStock>(&root["inventory"], "$.inventory", "inventory.json");
    }

    /// The checkout call: a quote for one of each of a few skus.
    async fn quote(&mut self, skus: &[String]) {
        if self.target.connector.is_some() {
            self.notes.push(
                "no quote route: checkout against this system reads its prices and stock fresh, \
                 which were checked above"
                    .into(),
            );
            return;
        }
        let lines: Vec<(String, u32)> = skus.iter().take(3).map(|s| (s.clone(), 1)).collect();
        if lines.is_empty() {
            return;
        }
        let (segment, currency) = (self.sample.segment.clone(), self.sample.currency);
        let request = serde_json::json!({
            "segment": segment,
            "currency": currency.code(),
            "lines": lines.iter().map(|(sku, q)| serde_json::json!({ "sku": sku, "quantity": q })).collect::<Vec<_>>(),
        });
        let Some(answer) = self
            .send(
                Method::POST,
                "/erp/v1/quote",
                &[],
                Some(&request),
                &[StatusCode::OK],
            )
            .await
        else {
            return;
        };
        if self.one::<erp::WireQuote>(&answer, "quote.json").is_some() {
            let checked = check_one::<erp::WireQuote>(self.boundary(), &answer.body);
            if let Ok(quote) = checked
                && let Err(reason) = quote.answers(&segment, currency, &lines)
            {
                self.unanswered("$", reason);
            }
        }
    }

    /// A single-entity read: of `key` when given (its payload checked),
    /// else of an unknown key, which must be a plain 404: Moat reads that
    /// as "there is none", anything else as an outage.
    async fn single<W: Wire>(
        &mut self,
        ask: for<'k> fn(&'k String) -> Ask<'k>,
        key: Option<&str>,
        file: &str,
        flag: &str,
    ) -> Option<Value> {
        let Some(key) = key else {
            let unknown = UNKNOWN.to_string();
            self.ask(ask(&unknown), &[StatusCode::NOT_FOUND]).await;
            self.notes.push(format!(
                "{} payloads were not sampled: pass {flag}",
                W::ENTITY
            ));
            return None;
        };
        let key = key.to_string();
        let answer = self.ask(ask(&key), &[StatusCode::OK]).await?;
        self.one::<W>(&answer, file)
    }

    /// The customer a token belongs to, then the same customer by id, as
    /// Moat asks with JWT customer tokens (a connector without that route
    /// is not asked).
    async fn customer(&mut self) {
        let token = self.sample.customer_token.clone();
        let customer = self
            .single::<crm::WireCustomer>(
                |key| Ask::Customer(key),
                token.as_deref(),
                "customer.json",
                "--customer-token",
            )
            .await;
        let by_id =
            (self.target.connector.as_ref()).is_none_or(|c| c.route("customer_by_id").is_some());
        let Some(id) = customer
            .as_ref()
            .and_then(|c| c["id"].as_str())
            .filter(|_| by_id)
            .map(str::to_string)
        else {
            return;
        };
        if let Some(answer) = self.ask(Ask::CustomerById(&id), &[StatusCode::OK]).await
            && let Some(found) = self.one::<crm::WireCustomer>(&answer, "customer.json")
            && found["id"].as_str() != Some(id.as_str())
        {
            self.unanswered("$.id", format!("asked for {id:?}, got {}", found["id"]));
        }
    }

    async fn order(&mut self) {
        let id = self.sample.order_id.clone();
        let order = self
            .single::<oms::WireOrder>(
                |key| Ask::Order(key),
                id.as_deref(),
                "order.json",
                "--order-id",
            )
            .await;
        if let (Some(order), Some(id)) = (order, id)
            && order["id"].as_str() != Some(id.as_str())
        {
            self.unanswered("$.id", format!("asked for {id:?}, got {}", order["id"]));
        }
    }
}

/// A connector's requests sent straight, with the system's credentials,
/// outside the stack: what `contract verify` and `connector try` make.
struct Direct<'a> {
    target: &'a Target,
    timeout: Duration,
}

impl Transport for Direct<'_> {
    async fn send(&self, _route: &'static str, request: Outbound) -> Result<Reply, Error> {
        let url = if request.target.starts_with('/') {
            format!("{}{}", self.target.url, request.target)
        } else {
            request.target.clone()
        };
        let mut built = request
            .to(&url)
            .map_err(|e| Error::bad_request(format!("cannot build the request: {e}")))?;
        self.target.credentials.apply(built.headers_mut()).await?;
        let answer = self
            .target
            .pool
            .exchange(built, self.timeout)
            .await
            .map_err(|e| Error::unavailable(e.to_string()))?;
        let link_next = answer
            .headers
            .get_all(http::header::LINK)
            .iter()
            .find_map(|v| super::client::next_link(v.to_str().ok()?));
        Ok(Reply {
            status: answer.status,
            body: answer.body,
            link_next,
        })
    }
}

/// A translation's requests as one line: the first, and how many more.
fn requests(translation: &Translation) -> String {
    let mut line = translation
        .exchanges
        .first()
        .map(|e| e.request.clone())
        .unwrap_or_default();
    if translation.exchanges.len() > 1 {
        let _ = write!(line, " (+{} pages)", translation.exchanges.len() - 1);
    }
    line
}

/// What `moat connector try` shows: each request a route made, the raw
/// answers, and each mapped item with what is wrong with it.
pub struct Tried {
    pub translation: Translation,
    /// Per mapped item: the item (as JSON) and its violations.
    pub items: Vec<(String, Value, Vec<Violation>)>,
}

impl Tried {
    pub fn violations(&self) -> usize {
        self.items.iter().map(|(_, _, v)| v.len()).sum::<usize>() + self.translation.broken.len()
    }

    /// For a terminal: requests and answers (bodies cut at `max` bytes),
    /// then every mapped item.
    pub fn render(&self, max: usize) -> String {
        let t = &self.translation;
        let mut out = format!("route {}\n", t.route);
        for exchange in &t.exchanges {
            let _ = writeln!(out, "> {}", exchange.request);
            let _ = writeln!(out, "< {} ({} bytes)", exchange.status, exchange.body.len());
            let text = match serde_json::from_slice::<Value>(&exchange.body) {
                Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
                Err(_) => String::from_utf8_lossy(&exchange.body).into_owned(),
            };
            let cut: String = text.chars().take(max).collect();
            let more = if cut.len() < text.len() { "\n…" } else { "" };
            let _ = writeln!(out, "{cut}{more}");
        }
        if t.not_found {
            let _ = writeln!(out, "= no such record");
        }
        for (origin, item, violations) in &self.items {
            let pretty = serde_json::to_string_pretty(item).unwrap_or_default();
            let verdict = if violations.is_empty() { "ok" } else { "FAIL" };
            let _ = writeln!(out, "= {verdict} {origin}:\n{pretty}");
            for v in violations {
                let _ = writeln!(out, "    {}: {}  [{}]", v.path, v.found, v.rule);
            }
        }
        for broken in &t.broken {
            let _ = writeln!(out, "= FAIL {}: {}", broken.origin, broken.reason);
        }
        let _ = write!(
            out,
            "{} mapped items, {} violations",
            self.items.len(),
            self.violations()
        );
        out
    }
}

/// Asks a connector's system for one record (or a page, without a key),
/// straight and with its credentials, and checks what its route maps:
/// the JSON Schema of the protocol v1 item and Moat's own checks.
pub async fn try_route(
    target: &Target,
    record: Record,
    key: Option<&str>,
    sample: &Sample,
) -> Result<Tried, Error> {
    let connector = target.connector.as_ref().ok_or_else(|| {
        Error::bad_request(format!(
            "{} speaks protocol v1; connector try is for protocol = \"rest\" systems \
             (moat contract verify checks a protocol v1 system)",
            target.system
        ))
    })?;
    let keys: Vec<String> = key.map(str::to_string).into_iter().collect();
    let currency = sample.currency.code();
    let needs =
        |what: &str| Error::bad_request(format!("--record {} needs --key ({what})", record.name()));
    let ask = match (record, key) {
        (Record::Products, Some(_)) => Ask::ProductsBySku(&keys),
        (Record::Products, None) => Ask::ProductPage {
            cursor: None,
            limit: sample.page,
            category: None,
        },
        (Record::Categories, _) => Ask::Categories,
        (Record::Prices, Some(_)) => Ask::Prices {
            skus: &keys,
            segment: &sample.segment,
            currency,
        },
        (Record::Inventory, Some(_)) => Ask::Inventory(&keys),
        (Record::Customers, Some(_)) => Ask::Customer(&keys[0]),
        (Record::Orders, Some(_)) => Ask::Order(&keys[0]),
        (Record::Prices | Record::Inventory, None) => return Err(needs("a sku")),
        (Record::Customers, None) => return Err(needs("a customer token")),
        (Record::Orders, None) => return Err(needs("an order id")),
    };
    let direct = Direct {
        target,
        timeout: sample.timeout,
    };
    let translation = connector.translate(&direct, ask).await?;
    let file = match record {
        Record::Products => "product.json",
        Record::Categories => "category.json",
        Record::Prices => "price.json",
        Record::Inventory => "inventory.json",
        Record::Customers => "customer.json",
        Record::Orders => "order.json",
    };
    let probe = Probe {
        target,
        sample,
        calls: Vec::new(),
        notes: Vec::new(),
    };
    let items = translation
        .items
        .iter()
        .map(|item| {
            let value: Value = serde_json::from_str(&item.value.to_string()).unwrap_or(Value::Null);
            let violations = match record {
                Record::Products => probe.checked::<pim::WireProduct>(file, &value),
                Record::Categories => probe.checked::<pim::WireCategory>(file, &value),
                Record::Prices => probe.checked::<erp::WirePrice>(file, &value),
                Record::Inventory => probe.checked::<erp::WireStock>(file, &value),
                Record::Customers => probe.checked::<crm::WireCustomer>(file, &value),
                Record::Orders => probe.checked::<oms::WireOrder>(file, &value),
            };
            (item.origin.clone(), value, violations)
        })
        .collect();
    Ok(Tried { translation, items })
}
