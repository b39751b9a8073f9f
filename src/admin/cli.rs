//! `moat admin …`: a command-line client of the admin API, so an SRE can
//! tune a running gateway without writing curl lines. The token comes from
//! `MOAT_ADMIN_TOKEN`, or `MOAT_ADMIN_TOKEN_{NAME}` with `--as NAME` (never
//! the token itself as a flag: flags end up in shell history).
//!
//! Every answer is shown as aligned tables that fit 100 columns (`--json`:
//! the API's answer as it is, for scripts); a refusal is one sentence
//! saying what to do, and its exit code says its kind ([`Exit`]).

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use super::table::{Table, compact};
use crate::domain::Timestamp;
use crate::reconcile::Subject;
use crate::vocab::Entity;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Systems (breaker, limit, p99, errors), cache tiers, Redis, dead
    /// letters, the last reconciliation.
    Status,
    /// Show upstream rate limits, or change one.
    Limits {
        #[command(subcommand)]
        change: Option<LimitsCommand>,
    },
    /// Force an upstream's breaker open or closed, or hand it back to its thresholds.
    Breaker {
        upstream: String,
        action: BreakerAction,
    },
    /// Drop cached entries on every replica: an entity (singular or
    /// plural: price or prices), optionally only some ids.
    Purge { entity: String, ids: Vec<String> },
    /// List dead-lettered events (with the record each is about), or
    /// replay or discard them. Needs Redis.
    Dlq {
        #[command(subcommand)]
        action: Option<DlqCommand>,
    },
    /// Run a reconciliation pass now (prices, inventory, products, orders;
    /// singular works too), or show the last reports.
    Reconcile { entity: Option<String> },
    /// Drift, checkout mismatches and contract violations, for their
    /// owners, newest first; every filter given must match.
    Exceptions(ExceptionFilter),
}

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Change an upstream's limit (on every replica sharing Redis); unset
    /// flags keep their value.
    Set {
        upstream: String,
        #[arg(long)]
        rps: Option<u32>,
        #[arg(long)]
        burst: Option<u32>,
        #[arg(long)]
        checkout_reserve: Option<f64>,
        /// e.g. 50ms
        #[arg(long)]
        browse_wait: Option<String>,
    },
    /// Hand an upstream's limit back to config (on every replica).
    Reset { upstream: String },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Replay dead letters (all when no ids are given).
    Replay { ids: Vec<String> },
    /// Discard one dead letter.
    Discard { id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BreakerAction {
    Open,
    Close,
    Reset,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FoundByArg {
    Reconcile,
    Checkout,
    Contract,
}

/// `moat admin exceptions` filters (`GET /admin/exceptions`).
#[derive(Debug, Default, Args)]
pub struct ExceptionFilter {
    /// The system that owns the record (e.g. erp).
    #[arg(long)]
    system: Option<String>,
    /// price, inventory, product, order, … (singular or plural).
    #[arg(long)]
    entity: Option<String>,
    /// drift, missing, version, price, availability, total, unknown_sku,
    /// currency, invalid_token, violation.
    #[arg(long)]
    kind: Option<String>,
    /// Who found it.
    #[arg(long, value_enum)]
    found_by: Option<FoundByArg>,
    /// Found at or after: RFC 3339 (2026-12-01T00:00:00Z) or a time ago (90m, 2h, 1d).
    #[arg(long)]
    since: Option<String>,
    /// Found before: RFC 3339 or a time ago.
    #[arg(long)]
    until: Option<String>,
    /// At most this many.
    #[arg(long)]
    limit: Option<usize>,
}

/// What kind of refusal a command met, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The gateway refused what was asked (a bad value, an unknown
    /// upstream, a pass already running).
    Refused = 1,
    /// The command line is wrong (clap's own errors exit 2 too).
    Usage = 2,
    /// No token, a wrong token, or a viewer's token for a change.
    Auth = 3,
    /// The gateway, or what the command needs (Redis), cannot be reached.
    Unavailable = 4,
    /// The gateway failed (5xx).
    Server = 5,
}

/// Why a command did not work: one sentence, and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub exit: Exit,
    pub message: String,
}

impl Refusal {
    fn new(exit: Exit, message: impl Into<String>) -> Refusal {
        Refusal {
            exit,
            message: message.into(),
        }
    }

    pub fn code(&self) -> u8 {
        self.exit as u8
    }
}

/// How an answer is shown.
#[derive(Clone, Copy)]
enum Shape {
    Status,
    Limits,
    Limit,
    Breaker,
    Purge,
    Letters,
    Replayed,
    Discarded,
    Reports,
    Exceptions,
}

/// Runs one command against `url`; the text to print (the API's JSON with
/// `json`), or the refusal.
pub async fn run(
    url: &str,
    token: Option<&str>,
    json: bool,
    command: AdminCommand,
) -> Result<String, Refusal> {
    let (method, path, body, shape) = request(command)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Refusal::new(Exit::Server, format!("cannot build an HTTP client: {e}")))?;
    let mut request = http
        .request(method, format!("{}{path}", url.trim_end_matches('/')))
        .header("x-moat-actor", actor());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|_| {
        Refusal::new(
            Exit::Unavailable,
            format!(
                "cannot reach the admin API at {url}: start the gateway, or point --url (MOAT_ADMIN_URL) at its admin listener"
            ),
        )
    })?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let value = serde_json::from_str::<Value>(&text).ok();
    if !(200..300).contains(&status) {
        return Err(refusal(status, value.as_ref(), &text));
    }
    let Some(value) = value else {
        return Ok(text);
    };
    if json {
        return Ok(serde_json::to_string_pretty(&value).unwrap_or(text));
    }
    Ok(show(shape, &value))
}

/// The call a command makes, and how its answer is shown; a command line
/// that cannot be right is refused here, before anything is sent.
fn request(command: AdminCommand) -> Result<(Method, String, Option<Value>, Shape), Refusal> {
    let usage = |m: String| Refusal::new(Exit::Usage, m);
    Ok(match command {
        AdminCommand::Status => (Method::GET, "/admin/status".into(), None, Shape::Status),
        AdminCommand::Limits { change: None } => {
            (Method::GET, "/admin/limits".into(), None, Shape::Limits)
        }
        AdminCommand::Limits {
            change:
                Some(LimitsCommand::Set {
                    upstream,
                    rps,
                    burst,
                    checkout_reserve,
                    browse_wait,
                }),
        } => {
            let mut body = serde_json::Map::new();
            if let Some(v) = rps {
                body.insert("rps".into(), json!(v));
            }
            if let Some(v) = burst {
                body.insert("burst".into(), json!(v));
            }
            if let Some(v) = checkout_reserve {
                body.insert("checkout_reserve".into(), json!(v));
            }
            if let Some(v) = browse_wait {
                body.insert("browse_wait".into(), json!(v));
            }
            if body.is_empty() {
                return Err(usage(
                    "limits set needs at least one of --rps, --burst, --checkout-reserve, --browse-wait".into(),
                ));
            }
            (
                Method::PUT,
                format!("/admin/limits/{upstream}"),
                Some(Value::Object(body)),
                Shape::Limit,
            )
        }
        AdminCommand::Limits {
            change: Some(LimitsCommand::Reset { upstream }),
        } => (
            Method::DELETE,
            format!("/admin/limits/{upstream}"),
            None,
            Shape::Limit,
        ),
        AdminCommand::Breaker { upstream, action } => {
            let action = match action {
                BreakerAction::Open => "open",
                BreakerAction::Close => "close",
                BreakerAction::Reset => "reset",
            };
            (
                Method::POST,
                format!("/admin/breakers/{upstream}"),
                Some(json!({ "action": action })),
                Shape::Breaker,
            )
        }
        AdminCommand::Purge { entity, ids } => {
            let entity = Entity::from_spelling(&entity).ok_or_else(|| {
                let names: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
                usage(format!(
                    "{entity:?} is not an entity to purge: use one of {} (or their plurals)",
                    names.join(", ")
                ))
            })?;
            let body = if ids.is_empty() {
                json!({ "entity": entity.name() })
            } else {
                json!({ "entity": entity.name(), "ids": ids })
            };
            (
                Method::POST,
                "/admin/cache/purge".into(),
                Some(body),
                Shape::Purge,
            )
        }
        AdminCommand::Dlq { action: None } => {
            (Method::GET, "/admin/dlq".into(), None, Shape::Letters)
        }
        AdminCommand::Dlq {
            action: Some(DlqCommand::Replay { ids }),
        } => {
            let body = if ids.is_empty() {
                json!({})
            } else {
                json!({ "ids": ids })
            };
            (
                Method::POST,
                "/admin/dlq/replay".into(),
                Some(body),
                Shape::Replayed,
            )
        }
        AdminCommand::Dlq {
            action: Some(DlqCommand::Discard { id }),
        } => (
            Method::DELETE,
            format!("/admin/dlq/{id}"),
            None,
            Shape::Discarded,
        ),
        AdminCommand::Reconcile {
            entity: Some(entity),
        } => {
            let subject = Subject::from_spelling(&entity).ok_or_else(|| {
                usage(format!(
                    "{entity:?} cannot be reconciled: use prices, inventory, products or orders (or the singular)"
                ))
            })?;
            (
                Method::POST,
                format!("/admin/reconcile/{}", subject.name()),
                None,
                Shape::Reports,
            )
        }
        AdminCommand::Reconcile { entity: None } => (
            Method::GET,
            "/admin/reconcile/last".into(),
            None,
            Shape::Reports,
        ),
        AdminCommand::Exceptions(filter) => (
            Method::GET,
            format!("/admin/exceptions{}", query(&filter, Timestamp::now())?),
            None,
            Shape::Exceptions,
        ),
    })
}

/// The query string of an exceptions filter (`since` and `until` given as
/// a time ago are made times, counted back from `now`).
fn query(filter: &ExceptionFilter, now: Timestamp) -> Result<String, Refusal> {
    let time = |flag: &str, text: &str| -> Result<String, Refusal> {
        if Timestamp::parse_rfc3339(text).is_some() {
            return Ok(text.to_string());
        }
        let ago = humantime::parse_duration(text).map_err(|_| {
            Refusal::new(
                Exit::Usage,
                format!("--{flag} {text:?} is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a time ago (90m, 2h, 1d)"),
            )
        })?;
        let ms = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        Ok(Timestamp(now.millis().saturating_sub(ms)).to_string())
    };
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(v) = &filter.system {
        pairs.push(("system", v.clone()));
    }
    if let Some(v) = &filter.entity {
        let entity = Entity::from_spelling(v).map_or(v.as_str(), |e| e.name());
        pairs.push(("entity", entity.to_string()));
    }
    if let Some(v) = &filter.kind {
        pairs.push(("kind", v.clone()));
    }
    if let Some(v) = filter.found_by {
        let name = match v {
            FoundByArg::Reconcile => "reconcile",
            FoundByArg::Checkout => "checkout",
            FoundByArg::Contract => "contract",
        };
        pairs.push(("found_by", name.to_string()));
    }
    if let Some(v) = &filter.since {
        pairs.push(("since", time("since", v)?));
    }
    if let Some(v) = &filter.until {
        pairs.push(("until", time("until", v)?));
    }
    if let Some(v) = filter.limit {
        pairs.push(("limit", v.to_string()));
    }
    if pairs.is_empty() {
        return Ok(String::new());
    }
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
            format!("{k}={v}")
        })
        .collect();
    Ok(format!("?{}", encoded.join("&")))
}

/// A refused call as one sentence with what to do, and its kind.
fn refusal(status: u16, body: Option<&Value>, text: &str) -> Refusal {
    let code = body.and_then(|v| v["code"].as_str()).unwrap_or("");
    let said = body
        .and_then(|v| v["error"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| text.trim().chars().take(200).collect());
    let said = said.trim().trim_end_matches('.').to_string();
    let (exit, message) = match (status, code) {
        (401, _) => (
            Exit::Auth,
            "the gateway refused the admin token: set MOAT_ADMIN_TOKEN (or a named token with --as NAME) to one of its tokens".to_string(),
        ),
        (403, "FORBIDDEN_FOR_ROLE") => (
            Exit::Auth,
            format!("{said}; sign in with an operator's token to change it"),
        ),
        (403, _) => (
            Exit::Auth,
            "the gateway's admin API is disabled: start it with MOAT_ADMIN_TOKEN set".to_string(),
        ),
        (503, "REDIS_UNAVAILABLE") => (Exit::Unavailable, said),
        (503 | 504, _) => (
            Exit::Unavailable,
            format!("{said}; try again once it is back"),
        ),
        (404, _) if said.is_empty() => (
            Exit::Refused,
            "the gateway has no such route: is --url its admin listener?".to_string(),
        ),
        (409, _) => (Exit::Refused, format!("{said}; wait for it to finish")),
        (500.., _) => (
            Exit::Server,
            format!("the gateway failed ({status}): {said}; its logs say more"),
        ),
        _ => (Exit::Refused, said),
    };
    Refusal::new(exit, message)
}

/// An answer as people read it.
fn show(shape: Shape, value: &Value) -> String {
    let out = match shape {
        Shape::Status => status(value),
        Shape::Limits => limits(value),
        Shape::Limit => format!("{}.", limit_line(value)),
        Shape::Breaker => format!("breaker {}{}.", breaker_state(value), fleet(value)),
        Shape::Purge => {
            let ids = value["ids"].as_array().map_or_else(
                || "every entry".to_string(),
                |ids| format!("{} id(s)", ids.len()),
            );
            format!("purged {} ({ids}).", text(value, "purged"))
        }
        Shape::Letters => letters(value),
        Shape::Replayed => replayed(value),
        Shape::Discarded => format!("discarded {}.", text(value, "discarded")),
        Shape::Reports => reports(value),
        Shape::Exceptions => exceptions(value),
    };
    out.trim_end().to_string()
}

/// A field as text: strings as they are, null as `-`.
fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn fleet(v: &Value) -> &'static str {
    match v["fleet"].as_bool() {
        Some(true) => ", on every replica",
        Some(false) => ", on this replica only (no shared Redis)",
        None => "",
    }
}

fn breaker_state(b: &Value) -> String {
    let state = text(b, "state");
    match b["forced"].as_str() {
        Some(forced) => format!("{state} (held {forced})"),
        None => state,
    }
}

/// Why a breaker tripped, only while it is not closed.
fn breaker_reason(b: &Value) -> String {
    match (b["state"].as_str(), b["trip_reason"].as_str()) {
        (Some("closed") | None, _) | (_, None) => "-".into(),
        (_, Some(reason)) => reason.to_string(),
    }
}

fn limit_cells(l: &Value) -> [String; 4] {
    let reserve = l["checkout_reserve"]
        .as_f64()
        .map_or("-".into(), |r| format!("{} %", (r * 100.0).round()));
    [
        format!("{} rps", text(l, "rps")),
        text(l, "burst"),
        reserve,
        text(l, "browse_wait"),
    ]
}

fn limit_line(l: &Value) -> String {
    let [rps, burst, reserve, wait] = limit_cells(l);
    format!(
        "{rps}, burst {burst}, {reserve} for checkout, browse wait {wait}{}",
        fleet(l)
    )
}

fn millis(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |ms| format!("{ms:.1} ms"))
}

fn status(v: &Value) -> String {
    let mut systems = Table::new(&["system", "breaker", "reason", "limit", "p99", "errors"]);
    systems.shrink("reason");
    for (name, s) in v["upstreams"].as_object().into_iter().flatten() {
        let b = &s["breaker"];
        let errors = match (b["window_failures"].as_u64(), b["window_calls"].as_u64()) {
            (Some(failed), Some(calls)) => format!("{failed} of {calls}"),
            _ => "-".into(),
        };
        let l = &s["limit"];
        systems.row(vec![
            name.clone(),
            breaker_state(b),
            breaker_reason(b),
            format!("{} rps, burst {}", text(l, "rps"), text(l, "burst")),
            millis(&s["latency_ms"]["p99"]),
            errors,
        ]);
    }
    let mut cache = Table::new(&["cache tier", "entries", "size", "budget"]);
    for (entity, t) in v["cache"]["l1"].as_object().into_iter().flatten() {
        cache.row(vec![
            entity.clone(),
            text(t, "entries"),
            bytes(t["bytes"].as_u64()),
            bytes(t["max_bytes"].as_u64()),
        ]);
    }
    let redis = &v["redis"];
    let redis = if redis["configured"] == json!(false) {
        "not configured: each replica caches and limits alone".to_string()
    } else {
        match redis["breaker"]["state"].as_str() {
            Some("closed") => "reachable".to_string(),
            other => format!("unreachable (breaker {})", other.unwrap_or("-")),
        }
    };
    let dlq = match v["dlq"]["depth"].as_u64() {
        Some(n) => format!("{n} waiting"),
        None => "no queue (it needs Redis)".into(),
    };
    let last = &v["reconciliation"]["last"];
    let reconciled = if last.is_object() {
        format!(
            "{}, finished {}: {} checked, {} drifted",
            text(last, "entity"),
            text(last, "finishedAt"),
            text(last, "checked"),
            text(last, "drifted")
        )
    } else {
        "none yet".into()
    };
    let mut facts = Table::new(&["fact", "value"]);
    facts.headless();
    facts.shrink("value");
    for (k, val) in [
        ("redis", redis),
        ("dead letters", dlq),
        ("last reconciliation", reconciled),
        ("replica", text(v, "replica")),
    ] {
        facts.row(vec![k.to_string(), val]);
    }
    format!(
        "{}\n\n{}\n\n{}",
        systems.render(),
        cache.render(),
        facts.render()
    )
}

fn bytes(n: Option<u64>) -> String {
    match n {
        None => "-".into(),
        Some(n) if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        Some(n) => format!("{:.1} KiB", n as f64 / 1024.0),
    }
}

fn limits(v: &Value) -> String {
    let mut t = Table::new(&["system", "rps", "burst", "checkout reserve", "browse wait"]);
    for (name, l) in v.as_object().into_iter().flatten() {
        let [rps, burst, reserve, wait] = limit_cells(l);
        t.row(vec![name.clone(), rps, burst, reserve, wait]);
    }
    t.render()
}

/// A dead letter's record: `price SKU-1 (vip, EUR)`.
fn record(r: &Value) -> String {
    if !r.is_object() {
        return "-".into();
    }
    let detail: Vec<&str> = ["segment", "currency"]
        .iter()
        .filter_map(|k| r[*k].as_str())
        .collect();
    let mut out = format!("{} {}", text(r, "kind"), text(r, "id"));
    if !detail.is_empty() {
        out.push_str(&format!(" ({})", detail.join(", ")));
    }
    out
}

/// Dead letters, a line each, with its reason on the line under it.
fn letters(v: &Value) -> String {
    let mut t = Table::new(&["id", "source", "type", "record", "tries", "parked"]);
    t.shrink("record");
    let mut reasons = Vec::new();
    for l in v["items"].as_array().into_iter().flatten() {
        t.row(vec![
            text(l, "id"),
            text(l, "source"),
            text(l, "type"),
            record(&l["record"]),
            text(l, "attempts"),
            minutes(&text(l, "parkedAt")),
        ]);
        reasons.push(text(l, "reason"));
    }
    let mut out = String::new();
    let rendered = t.render();
    let mut lines = rendered.lines();
    if let Some(header) = lines.next() {
        out.push_str(header);
    }
    for (line, reason) in lines.zip(
        reasons
            .iter()
            .map(String::as_str)
            .chain(std::iter::repeat("")),
    ) {
        out.push_str(&format!("\n{line}"));
        if !reason.is_empty() {
            let reason: String = format!("  reason: {reason}");
            out.push_str(&format!(
                "\n{}",
                super::table::fit(&reason, super::table::WIDTH)
            ));
        }
    }
    out.push_str(&format!("\n{} waiting", text(v, "depth")));
    if let Some(next) = v["next"].as_str() {
        out.push_str(&format!(" (more after {next})"));
    }
    out
}

fn replayed(v: &Value) -> String {
    let done = v["replayed"].as_array().map_or(0, Vec::len);
    let failed = v["failed"].as_array().cloned().unwrap_or_default();
    let mut out = format!("replayed {done}, {} still parked.", failed.len());
    if !failed.is_empty() {
        let mut t = Table::new(&["id", "reason"]);
        t.shrink("reason");
        for f in &failed {
            t.row(vec![text(f, "id"), text(f, "reason")]);
        }
        out.push_str(&format!("\n{}", t.render()));
    }
    out
}

/// `2026-12-06T17:55:37.123Z` → `2026-12-06 17:55`.
fn minutes(t: &str) -> String {
    shortened(t, 16, "")
}

/// `2026-12-06T17:55:37.123Z` → `2026-12-06 17:55:37Z`: seconds are
/// plenty in a table.
fn short_time(t: &str) -> String {
    shortened(t, 19, "Z")
}

/// An RFC 3339 time cut at byte `end` of its clock, the `T` a space; any
/// other text as it is.
fn shortened(t: &str, end: usize, suffix: &str) -> String {
    match (t.get(..10), t.get(11..end)) {
        (Some(day), Some(time)) if t.len() >= 20 => format!("{day} {time}{suffix}"),
        _ => t.to_string(),
    }
}

/// Reconciliation reports (one, or `{"reports": [...]}`) as a table, and
/// a single report's examples under it.
fn reports(value: &Value) -> String {
    let reports: Vec<&Value> = match value.get("reports").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![value],
    };
    let mut t = Table::new(&[
        "entity", "started", "finished", "checked", "drifted", "repaired", "calls", "complete",
    ]);
    let mut stopped = Vec::new();
    for r in &reports {
        t.row(vec![
            text(r, "entity"),
            short_time(&text(r, "startedAt")),
            short_time(&text(r, "finishedAt")),
            text(r, "checked"),
            text(r, "drifted"),
            text(r, "repaired"),
            text(r, "calls"),
            text(r, "complete"),
        ]);
        if let Some(e) = r.get("error").and_then(Value::as_str) {
            stopped.push(format!("{} stopped: {e}", text(r, "entity")));
        }
    }
    let mut out = t.render();
    for line in stopped {
        out.push_str(&format!("\n{line}"));
    }
    if let [single] = reports.as_slice()
        && let Some(examples) = single["examples"].as_array()
        && !examples.is_empty()
    {
        let mut e = Table::new(&["key", "age", "cached", "owner says"]);
        e.shrink("cached");
        e.shrink("owner says");
        for x in examples {
            e.row(vec![
                text(x, "key"),
                format!("{} s", text(x, "ageSeconds")),
                text(x, "cached"),
                text(x, "authoritative"),
            ]);
        }
        out.push_str(&format!("\n\n{}", e.render()));
    }
    out
}

fn exceptions(value: &Value) -> String {
    let mut t = Table::new(&[
        "at",
        "system",
        "entity",
        "kind",
        "found by",
        "key",
        "held",
        "owner says",
    ]);
    t.shrink("held");
    t.shrink("owner says");
    t.shrink("key");
    for e in value["exceptions"].as_array().into_iter().flatten() {
        t.row(vec![
            short_time(&text(e, "at")),
            text(e, "system"),
            text(e, "entity"),
            text(e, "kind"),
            text(e, "foundBy"),
            text(e, "key"),
            compact(&e["held"]),
            compact(&e["ownerSays"]),
        ]);
    }
    t.render()
}

/// Who is making the change, for the gateway's audit line.
fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widest(text: &str) -> usize {
        text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
    }

    #[test]
    fn status_shows_every_system_and_tier_within_100_columns() {
        let answer = json!({
            "upstreams": {
                "erp": {
                    "breaker": { "state": "open", "forced": null, "trip_reason": "5 consecutive failures (timeouts talking to https://erp.example.com/erp/v1/prices and more)", "window_calls": 40, "window_failures": 7 },
                    "limit": { "rps": 50, "burst": 100, "checkout_reserve": 0.2, "browse_wait": "50ms" },
                    "latency_ms": { "calls": 40, "p50": 3.2, "p99": 41.5 },
                },
                "pim": {
                    "breaker": { "state": "closed", "forced": null, "trip_reason": "an old reason", "window_calls": 3, "window_failures": 0 },
                    "limit": { "rps": 100, "burst": 200, "checkout_reserve": 0.0, "browse_wait": "50ms" },
                    "latency_ms": { "calls": 0, "p50": null, "p99": null },
                },
            },
            "cache": { "l1": { "price": { "entries": 12, "bytes": 4096, "max_bytes": 134217728 } } },
            "redis": { "configured": false },
            "dlq": { "depth": null },
            "reconciliation": { "last": { "entity": "prices", "finishedAt": "2026-12-06T10:00:00.000Z", "checked": 50, "drifted": 2 } },
            "replica": "r-1",
        });
        let shown = show(Shape::Status, &answer);
        assert!(widest(&shown) <= 100, "{shown}");
        for column in [
            "system",
            "breaker",
            "reason",
            "limit",
            "p99",
            "errors",
            "cache tier",
        ] {
            assert!(shown.contains(column), "{column}: {shown}");
        }
        assert!(shown.contains("5 consecutive failures"), "{shown}");
        assert!(
            !shown.contains("an old reason"),
            "closed: no reason\n{shown}"
        );
        assert!(
            shown.contains("41.5 ms") && shown.contains("7 of 40"),
            "{shown}"
        );
        assert!(shown.contains("128.0 MiB"), "{shown}");
        assert!(shown.contains("no queue (it needs Redis)"), "{shown}");
    }

    #[test]
    fn dead_letters_and_exceptions_fit_and_name_their_record() {
        let letters = json!({
            "depth": 1,
            "items": [{ "id": "1765000000000-0", "eventId": "evt-1", "source": "erp", "type": "price.updated",
                        "record": { "kind": "price", "id": "SKU-000001", "segment": "vip", "currency": "EUR" },
                        "reason": "erp is unavailable: breaker open after 5 consecutive failures, retried 3 times over 2 s",
                        "attempts": 3, "parkedAt": "2026-12-06T10:00:00.000Z" }],
            "next": null,
        });
        let shown = show(Shape::Letters, &letters);
        assert!(widest(&shown) <= 100, "{shown}");
        assert!(shown.contains("price SKU-000001 (vip, EUR)"), "{shown}");
        assert!(shown.contains("1 waiting"), "{shown}");

        let listed = json!({ "exceptions": [{
            "at": "2026-12-06T10:00:00.000Z", "system": "erp", "entity": "price", "kind": "drift",
            "key": "SKU-000001|default|EUR", "foundBy": "reconcile",
            "held": { "sku": "SKU-000001", "amount": "658.99", "currencyCode": "EUR", "version": 3, "updatedAt": "2026-01-01T00:00:00.000Z" },
            "ownerSays": { "sku": "SKU-000001", "amount": "612.00", "currencyCode": "EUR", "version": 4, "updatedAt": "2026-01-02T00:00:00.000Z" },
        }]});
        let shown = show(Shape::Exceptions, &listed);
        assert!(widest(&shown) <= 100, "{shown}");
        assert!(
            shown.contains("658.99 EUR") && shown.contains("612.00 EUR"),
            "{shown}"
        );
        for column in [
            "at",
            "system",
            "entity",
            "kind",
            "found by",
            "key",
            "held",
            "owner says",
        ] {
            assert!(shown.contains(column), "{column}: {shown}");
        }
    }

    #[test]
    fn entities_are_taken_in_either_spelling() {
        for spelling in ["price", "prices"] {
            let (_, _, body, _) = request(AdminCommand::Purge {
                entity: spelling.into(),
                ids: vec![],
            })
            .expect("known");
            assert_eq!(body, Some(json!({ "entity": "price" })));
            let (_, path, _, _) = request(AdminCommand::Reconcile {
                entity: Some(spelling.into()),
            })
            .expect("known");
            assert_eq!(path, "/admin/reconcile/prices");
        }
        let refused = request(AdminCommand::Purge {
            entity: "pricez".into(),
            ids: vec![],
        })
        .err()
        .expect("refused");
        assert_eq!(refused.exit, Exit::Usage);
        assert!(refused.message.contains("\"pricez\""), "{refused:?}");
    }

    #[test]
    fn exception_filters_become_the_query_string() {
        let now = Timestamp::parse_rfc3339("2026-12-06T12:00:00Z").unwrap();
        let filter = ExceptionFilter {
            found_by: Some(FoundByArg::Checkout),
            entity: Some("prices".into()),
            since: Some("2h".into()),
            ..ExceptionFilter::default()
        };
        assert_eq!(
            query(&filter, now).unwrap(),
            "?entity=price&found_by=checkout&since=2026%2D12%2D06T10%3A00%3A00%2E000Z"
        );
        let bad = ExceptionFilter {
            until: Some("yesterday-ish".into()),
            ..ExceptionFilter::default()
        };
        assert_eq!(query(&bad, now).unwrap_err().exit, Exit::Usage);
    }

    #[test]
    fn refusals_are_one_sentence_with_an_exit_code_per_kind() {
        let body = |code: &str, error: &str| json!({ "code": code, "error": error });
        let cases = [
            (
                401,
                body("UNAUTHENTICATED", "a valid admin bearer token is required"),
                Exit::Auth,
            ),
            (
                403,
                body("FORBIDDEN_FOR_ROLE", "the admin token \"ro\" is a viewer"),
                Exit::Auth,
            ),
            (
                503,
                body(
                    "REDIS_UNAVAILABLE",
                    "the dead-letter queue needs Redis: set [redis] url",
                ),
                Exit::Unavailable,
            ),
            (
                400,
                body("BAD_USER_INPUT", "rps must be at least 1"),
                Exit::Refused,
            ),
            (
                404,
                body("NOT_FOUND", "no upstream \"xyz\"; use one of pim, erp"),
                Exit::Refused,
            ),
            (500, body("INTERNAL_SERVER_ERROR", "boom"), Exit::Server),
        ];
        for (status, body, exit) in cases {
            let r = refusal(status, Some(&body), "");
            assert_eq!(r.exit, exit, "{status}: {r:?}");
            assert!(
                !r.message.contains('\n') && !r.message.contains('{'),
                "{r:?}"
            );
            assert!(
                !r.message.contains(&status.to_string()) || status == 500,
                "{r:?}"
            );
        }
        let redis = refusal(
            503,
            Some(&body(
                "REDIS_UNAVAILABLE",
                "the dead-letter queue needs Redis: set [redis] url.",
            )),
            "",
        );
        assert!(redis.message.contains("needs Redis"), "{redis:?}");
    }
}
