//! `moat admin …`: a command-line client of the admin API, so an SRE can
//! tune a running gateway without writing curl lines. The token comes from
//! `MOAT_ADMIN_TOKEN`, or `MOAT_ADMIN_TOKEN_{NAME}` with `--as NAME` (never
//! the token itself as a flag: flags end up in shell history).

use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Upstreams (breakers, limits, latency), cache tiers, Redis.
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
    /// Drop cached entries on every replica: an entity, optionally only some ids.
    Purge { entity: String, ids: Vec<String> },
    /// List dead-lettered events, or replay or discard them.
    Dlq {
        #[command(subcommand)]
        action: Option<DlqCommand>,
    },
    /// Run a reconciliation pass now (prices, inventory, products, orders),
    /// or show the last reports.
    Reconcile { entity: Option<String> },
    /// Drift, checkout mismatches and contract violations, for their owners.
    Exceptions,
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

/// How an answer is shown.
#[derive(Clone, Copy)]
enum Shape {
    Json,
    Reports,
    Exceptions,
}

/// Runs one command against `url`; the text to print, or why it failed.
pub async fn run(url: &str, token: Option<&str>, command: AdminCommand) -> Result<String, String> {
    let shape = match &command {
        AdminCommand::Reconcile { .. } => Shape::Reports,
        AdminCommand::Exceptions => Shape::Exceptions,
        _ => Shape::Json,
    };
    let (method, path, body) = match command {
        AdminCommand::Status => (Method::GET, "/admin/status".to_string(), None),
        AdminCommand::Limits { change: None } => (Method::GET, "/admin/limits".into(), None),
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
                return Err(
                    "give at least one of --rps, --burst, --checkout-reserve, --browse-wait".into(),
                );
            }
            (
                Method::PUT,
                format!("/admin/limits/{upstream}"),
                Some(Value::Object(body)),
            )
        }
        AdminCommand::Limits {
            change: Some(LimitsCommand::Reset { upstream }),
        } => (Method::DELETE, format!("/admin/limits/{upstream}"), None),
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
            )
        }
        AdminCommand::Purge { entity, ids } => {
            let body = if ids.is_empty() {
                json!({ "entity": entity })
            } else {
                json!({ "entity": entity, "ids": ids })
            };
            (Method::POST, "/admin/cache/purge".into(), Some(body))
        }
        AdminCommand::Dlq { action: None } => (Method::GET, "/admin/dlq".into(), None),
        AdminCommand::Dlq {
            action: Some(DlqCommand::Replay { ids }),
        } => {
            let body = if ids.is_empty() {
                json!({})
            } else {
                json!({ "ids": ids })
            };
            (Method::POST, "/admin/dlq/replay".into(), Some(body))
        }
        AdminCommand::Dlq {
            action: Some(DlqCommand::Discard { id }),
        } => (Method::DELETE, format!("/admin/dlq/{id}"), None),
        AdminCommand::Reconcile {
            entity: Some(entity),
        } => (Method::POST, format!("/admin/reconcile/{entity}"), None),
        AdminCommand::Reconcile { entity: None } => {
            (Method::GET, "/admin/reconcile/last".into(), None)
        }
        AdminCommand::Exceptions => (Method::GET, "/admin/exceptions".into(), None),
    };

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut request = http
        .request(method, format!("{}{path}", url.trim_end_matches('/')))
        .header("x-moat-actor", actor());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let value = serde_json::from_str::<Value>(&text).ok();
    let pretty = value
        .as_ref()
        .and_then(|v| serde_json::to_string_pretty(v).ok())
        .unwrap_or(text);
    if status.is_success() {
        Ok(match (shape, &value) {
            (Shape::Reports, Some(v)) => reports_table(v),
            (Shape::Exceptions, Some(v)) => exceptions_table(v),
            _ => pretty,
        })
    } else {
        let code = value.as_ref().and_then(|v| v["code"].as_str());
        let hint = match status.as_u16() {
            401 => {
                " (is MOAT_ADMIN_TOKEN, or MOAT_ADMIN_TOKEN_{NAME} with --as, set to one of the gateway's tokens?)"
            }
            403 if code == Some("FORBIDDEN_FOR_ROLE") => {
                " (this token is a viewer: a change needs an operator's token)"
            }
            403 => " (the gateway has no admin token: its admin API is disabled)",
            404 => " (unknown upstream, entity or route)",
            409 => " (already running)",
            _ => "",
        };
        Err(format!("{status}{hint}\n{pretty}"))
    }
}

/// Reconciliation reports (one, or `{"reports": [...]}`) as a table, and
/// a single report's examples under it.
fn reports_table(value: &Value) -> String {
    let reports: Vec<&Value> = match value.get("reports").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![value],
    };
    let text = |v: &Value, k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut out = format!(
        "{:<10} {:<25} {:<25} {:>8} {:>8} {:>8} {:>6} {:>9}\n",
        "entity", "started", "finished", "checked", "drifted", "repaired", "calls", "complete"
    );
    for r in &reports {
        out.push_str(&format!(
            "{:<10} {:<25} {:<25} {:>8} {:>8} {:>8} {:>6} {:>9}\n",
            text(r, "entity"),
            text(r, "startedAt"),
            text(r, "finishedAt"),
            text(r, "checked"),
            text(r, "drifted"),
            text(r, "repaired"),
            text(r, "calls"),
            text(r, "complete"),
        ));
        if let Some(e) = r.get("error").and_then(Value::as_str) {
            out.push_str(&format!("  stopped: {e}\n"));
        }
    }
    if let [single] = reports.as_slice() {
        for e in single["examples"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {}: cached {} ({} s old), owner says {}\n",
                text(e, "key"),
                text(e, "cached"),
                text(e, "ageSeconds"),
                text(e, "authoritative")
            ));
        }
    }
    out.trim_end().to_string()
}

/// `{"exceptions": [...]}` as one line each.
fn exceptions_table(value: &Value) -> String {
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("-").to_string();
    let mut out = format!(
        "{:<25} {:<7} {:<10} {:<10} {:<24} held -> owner says\n",
        "at", "system", "entity", "found by", "key"
    );
    for e in value["exceptions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<25} {:<7} {:<10} {:<10} {:<24} {} -> {}\n",
            text(e, "at"),
            text(e, "system"),
            text(e, "entity"),
            text(e, "foundBy"),
            text(e, "key"),
            text(e, "held"),
            text(e, "ownerSays")
        ));
    }
    out.trim_end().to_string()
}

/// Who is making the change, for the gateway's audit line.
fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}
