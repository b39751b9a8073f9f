//! `moat doctor`: the readiness checklist of a storefront integration, as a
//! table. Every record has a system of record with an owner; every system
//! is reachable, accepts Moat's credentials and passes a sampled contract
//! check; Redis is there (and what is lost without it); every source of
//! events has a secret; dead letters and reconciliation are set up; the
//! admin token and the price-token secret are set; each system has limits
//! of its own; traces leave the process. Each line is OK, WARN or FAIL with the fix; FAIL means not
//! ready.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Auth, Config, Secrets};
use crate::redis_link::{self, RedisLink};
use crate::upstream::{auth, probe};
use crate::vocab::{Record, System};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub status: Status,
    /// The config key or variable the line is about.
    pub check: String,
    pub detail: String,
    /// What to do about a WARN or FAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Whether nothing failed.
pub fn ready(lines: &[Line]) -> bool {
    lines.iter().all(|l| l.status != Status::Fail)
}

/// Every check, in checklist order.
pub async fn run(config: &Config, secrets: &Secrets) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut add = |status, check: String, detail: String, fix: Option<String>| {
        lines.push(Line {
            status,
            check,
            detail,
            fix,
        })
    };
    let owners = config.owners();
    for record in Record::ALL {
        let system = owners.of(record);
        let settings = config.system(system.name());
        let who = match (&settings.owner, &settings.contact) {
            (Some(owner), Some(contact)) => format!(" (owner {owner}, {contact})"),
            (Some(owner), None) => format!(" (owner {owner})"),
            _ => String::new(),
        };
        add(
            Status::Ok,
            format!("entities.{record}"),
            format!("{system} is the system of record{who}"),
            None,
        );
    }
    // Skus the products owner lists are what the others are asked about.
    let mut skus = Vec::new();
    for system in owners.systems() {
        for line in system_lines(config, secrets, system, &mut skus).await {
            add(line.status, line.check, line.detail, line.fix);
        }
    }
    for line in shared_lines(config, secrets).await {
        add(line.status, line.check, line.detail, line.fix);
    }
    for line in edge_lines(config, secrets).await {
        add(line.status, line.check, line.detail, line.fix);
    }
    lines
}

/// Each `[[edge.purge]]` target: its token, and whether it answers at all
/// (purges wait in the outbox while it does not).
async fn edge_lines(config: &Config, secrets: &Secrets) -> Vec<Line> {
    let edge = &config.edge;
    if edge.purge.is_empty() {
        return vec![line(
            Status::Ok,
            "edge.purge",
            "no purge targets: caches in front keep an answer until its max-age ends",
        )];
    }
    let mut lines = Vec::new();
    for (target, label) in edge.purge.iter().zip(edge.purge_labels()) {
        let check = format!("edge.purge.{label}");
        let variable = target.kind.token_variable();
        if target.kind.needs_token() && !secrets.edge_tokens.contains_key(target.kind.name()) {
            lines.push(
                line(Status::Fail, &check, format!("{variable} is not set"))
                    .fix(format!("set {variable} to an API token allowed to purge")),
            );
            continue;
        }
        let url = target.base_url();
        let reached = match reqwest::Url::parse(&url).ok().and_then(|u| {
            let port = u.port_or_known_default()?;
            Some(format!("{}:{port}", u.host_str()?))
        }) {
            Some(addr) => matches!(
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                    .await,
                Ok(Ok(_))
            ),
            None => false,
        };
        lines.push(if reached {
            line(Status::Ok, &check, format!("{url} answers"))
        } else {
            line(
                Status::Warn,
                &check,
                format!("{url} cannot be reached: purges wait in the outbox until it can"),
            )
            .fix(format!("start it, or correct the url of {check}"))
        });
    }
    if config.redis.url.is_none() {
        lines.push(
            line(
                Status::Warn,
                "edge.purge",
                "no Redis: purges wait in each replica's memory, lost if it stops",
            )
            .fix("set redis.url so purges wait in a durable outbox"),
        );
    }
    lines
}

fn line(status: Status, check: impl Into<String>, detail: impl Into<String>) -> Line {
    Line {
        status,
        check: check.into(),
        detail: detail.into(),
        fix: None,
    }
}

impl Line {
    fn fix(mut self, fix: impl Into<String>) -> Line {
        self.fix = Some(fix.into());
        self
    }
}

/// Owner, credentials, reachability and contract, limits and events of
/// one system.
async fn system_lines(
    config: &Config,
    secrets: &Secrets,
    system: System,
    skus: &mut Vec<String>,
) -> Vec<Line> {
    let name = system.name();
    let upper = name.to_ascii_uppercase();
    let settings = config.system(name);
    let own = config.systems.get(name).cloned().unwrap_or_default();
    let mut lines = Vec::new();
    let key = |k: &str| format!("systems.{name}.{k}");

    lines.push(match (&settings.owner, &settings.contact) {
        (Some(owner), Some(contact)) => {
            line(Status::Ok, key("owner"), format!("{owner}, {contact}"))
        }
        _ => line(
            Status::Warn,
            key("owner"),
            "nobody is named: exceptions and the status page cannot say whom to call",
        )
        .fix(format!(
            "set systems.{name}.owner and systems.{name}.contact"
        )),
    });

    let missing = auth::missing(name, &settings.auth, secrets.systems.get(name));
    lines.push(match (&settings.auth, missing.is_empty()) {
        (Auth::None, _) => {
            line(Status::Warn, key("auth"), "none: Moat sends no credentials").fix(format!(
                "if {name} wants them, export MOAT_{upper}_TOKEN (bearer) or MOAT_{upper}_USER \
                 and MOAT_{upper}_PASSWORD (basic), or set systems.{name}.auth (header, oauth2)"
            ))
        }
        (auth, true) => line(
            Status::Ok,
            key("auth"),
            format!(
                "{} from {}",
                auth_kind(auth),
                auth::needed(name, auth).join(", ")
            ),
        ),
        (auth, false) => line(
            Status::Fail,
            key("auth"),
            format!(
                "{} is not set ({} auth)",
                missing.join(" and "),
                auth_kind(auth)
            ),
        )
        .fix(format!(
            "export {}",
            missing
                .iter()
                .map(|v| format!("{v}=…"))
                .collect::<Vec<_>>()
                .join(" ")
        )),
    });

    lines.push(match &settings.url {
        None => line(
            Status::Warn,
            key("url"),
            "not set: the embedded demo simulator answers for it",
        )
        .fix(format!("set systems.{name}.url or MOAT_{upper}_URL")),
        Some(_) if !missing.is_empty() => line(
            Status::Fail,
            key("url"),
            "not probed: its credentials are missing",
        )
        .fix(format!("set {} first", missing.join(" and "))),
        Some(url) => probe_line(config, secrets, name, url, skus).await,
    });

    let explicit = own.limits.rps.is_some()
        || config
            .upstream
            .limits
            .named(name)
            .is_some_and(|o| o.rps.is_some());
    let l = settings.limit;
    let b = &settings.breaker;
    let detail = format!(
        "{} rps (burst {}, {:.0}% kept for checkout); breaker opens at {:.0}% failures over {:?} or {} in a row",
        l.rps,
        l.burst,
        l.checkout_reserve * 100.0,
        b.failure_rate * 100.0,
        b.window,
        b.consecutive_failures
    );
    lines.push(if explicit {
        line(Status::Ok, key("limits"), detail)
    } else {
        line(
            Status::Warn,
            key("limits"),
            format!("the defaults: {detail}"),
        )
        .fix(format!(
            "set systems.{name}.limits.rps to what {name} can take"
        ))
    });

    if own.sends_events.unwrap_or(true) {
        let has_secret =
            secrets.events_secrets.contains_key(name) || secrets.events_secrets.contains_key("");
        lines.push(if has_secret {
            line(Status::Ok, format!("MOAT_EVENTS_SECRET_{upper}"), format!("events from {name} are verified"))
        } else {
            line(
                Status::Fail,
                format!("MOAT_EVENTS_SECRET_{upper}"),
                format!("not set (nor MOAT_EVENTS_SECRET): events from {name} are refused with 403"),
            )
            .fix(format!(
                "export MOAT_EVENTS_SECRET_{upper}=… (or MOAT_EVENTS_SECRET for every source), or set systems.{name}.sends_events = false"
            ))
        });
    }
    lines
}

fn auth_kind(auth: &Auth) -> &'static str {
    match auth {
        Auth::None => "none",
        Auth::Bearer => "bearer",
        Auth::Basic => "basic",
        Auth::Header { .. } => "header",
        Auth::Oauth2 { .. } => "oauth2",
    }
}

/// Reachable, authenticated, and a sample passes the contract.
async fn probe_line(
    config: &Config,
    secrets: &Secrets,
    name: &str,
    url: &str,
    skus: &mut Vec<String>,
) -> Line {
    let check = format!("systems.{name}.url");
    let target = match probe::Target::new(config, secrets, name, Some(url)) {
        Ok(t) => t,
        Err(e) => return line(Status::Fail, check, e.message().to_string()),
    };
    let mut sample = probe::Sample::from_config(config);
    sample.page = 3;
    sample.timeout = config.system(name).timeout.max(Duration::from_secs(2));
    sample.skus = skus.clone();
    let report = probe::verify(&target, &sample).await;
    if skus.is_empty() {
        *skus = report.skus.clone();
    }
    let shown = crate::config::redact(url);
    let first = report
        .calls
        .iter()
        .find_map(|c| c.violations.first().map(|v| (c, v)));
    match first {
        None => {
            let credentials = if config.system(name).auth == Auth::None {
                ""
            } else {
                " accepts Moat's credentials,"
            };
            let calls = report.calls.len();
            let plural = if calls == 1 { "" } else { "s" };
            line(
                Status::Ok,
                check,
                format!(
                    "{shown}: reachable,{credentials} the contract holds for {calls} sampled call{plural}"
                ),
            )
        }
        Some((call, v)) if v.rule == "HTTP" => line(
            Status::Fail,
            check,
            format!("{shown} is unreachable: {}", v.found),
        )
        .fix(format!(
            "check systems.{name}.url (or MOAT_{}_URL) and the network",
            name.to_ascii_uppercase()
        ))
        .with_call(call),
        Some((call, v)) if matches!(call.status, Some(401 | 403)) => line(
            Status::Fail,
            check,
            format!("{shown} does not accept Moat's credentials: {}", v.found),
        )
        .fix(format!("check the secrets systems.{name}.auth reads"))
        .with_call(call),
        Some((call, v)) => line(
            Status::Fail,
            check,
            format!(
                "{shown}: {} contract violations, first {}: {} [{}]",
                report.violations(),
                v.path,
                v.found,
                v.rule
            ),
        )
        .fix(format!(
            "moat contract verify --system {name} lists them all; the owner of {name} fixes them"
        ))
        .with_call(call),
    }
}

impl Line {
    fn with_call(mut self, call: &probe::Call) -> Line {
        self.detail = format!("{} ({})", self.detail, call.request);
        self
    }
}

/// Redis, dead letters, reconciliation, admin and price-token secrets.
/// With JWT customer tokens: whether the identity provider's keys can be
/// had (a FAIL: no shopper could sign in).
async fn customer_tokens(customers: &crate::config::Customers) -> Line {
    use crate::config::TokenKind;
    use crate::customers::jwt;
    const KEY: &str = "customers.tokens";
    if customers.tokens == TokenKind::Opaque {
        return line(
            Status::Ok,
            KEY,
            "opaque: the CRM says whose each new token is (limited per client address)",
        );
    }
    let (place, found) = match (&customers.jwks_file, &customers.jwks_url) {
        (Some(path), _) => (path.display().to_string(), jwt::keys_in_file(path)),
        (None, Some(url)) => (crate::config::redact(url), jwt::keys_at(url).await),
        (None, None) => (String::new(), Err("no jwks_url or jwks_file".into())),
    };
    match found {
        Ok(keys) => line(
            Status::Ok,
            KEY,
            format!(
                "jwt: {keys} key(s) from {place}; issuer {:?}, audience {:?}",
                customers.issuer.as_deref().unwrap_or_default(),
                customers.audience.as_deref().unwrap_or_default()
            ),
        ),
        Err(why) => line(
            Status::Fail,
            KEY,
            format!("jwt, but the identity provider's keys cannot be had: {why}"),
        )
        .fix("correct customers.jwks_url or customers.jwks_file (a JWK Set with RSA, EC P-256 or Ed25519 signing keys)"),
    }
}

async fn shared_lines(config: &Config, secrets: &Secrets) -> Vec<Line> {
    let mut lines = Vec::new();
    let without_redis = "each replica caches, rate-limits and de-duplicates events alone, \
                         and there is no dead-letter queue";
    let check = match config.redis.mode {
        crate::config::RedisMode::Single => "redis.url",
        _ => "redis.nodes",
    };
    lines.push(match redis_link::Settings::of(&config.redis) {
        None => line(
            Status::Warn,
            "redis.url",
            format!("not set: {without_redis}"),
        )
        .fix("set redis.url (or MOAT_REDIS_URL) for more than one replica"),
        Some(settings) => match ping(settings).await {
            Ok(()) => line(
                Status::Ok,
                check,
                format!("{} answers", config.redis.shown()),
            ),
            Err(why) => line(
                Status::Fail,
                check,
                format!(
                    "{} does not answer ({why}): {without_redis}",
                    config.redis.shown()
                ),
            )
            .fix(format!("start Redis or correct {check}")),
        },
    });
    lines.push(customer_tokens(&config.customers).await);
    let ev = &config.events;
    lines.push(if config.redis.enabled() {
        line(
            Status::Ok,
            "events.dead_letters",
            format!(
                "an event that fails {} attempts is parked in Redis; `moat admin dlq` lists and replays",
                ev.apply_attempts
            ),
        )
    } else {
        line(
            Status::Warn,
            "events.dead_letters",
            "no queue without Redis: an event that cannot be applied is refused with 503 and its sender must retry",
        )
        .fix("set redis.url")
    });
    let rc = &config.reconcile;
    lines.push(if rc.enabled && !rc.entities.is_empty() {
        line(
            Status::Ok,
            "reconcile",
            format!(
                "{} every {:?}, at most {} calls a pass",
                rc.entities.join(", "),
                rc.interval,
                rc.max_calls
            ),
        )
    } else {
        line(
            Status::Warn,
            "reconcile",
            "no scheduled passes: drift is found only by checkout and events",
        )
        .fix("set reconcile.enabled = true and reconcile.entities")
    });
    let traces = &config.telemetry.traces;
    lines.push(if traces.enabled() {
        line(
            Status::Ok,
            "telemetry.traces",
            format!(
                "spans to {}/v1/traces; traceparent on every upstream call",
                crate::config::redact(traces.otlp_endpoint.trim_end_matches('/'))
            ),
        )
    } else {
        line(
            Status::Warn,
            "telemetry.traces",
            "off: a slow or failed storefront request cannot be followed into PIM, ERP or CRM",
        )
        .fix("set telemetry.traces.otlp_endpoint to an OTLP/HTTP receiver")
    });
    let named = &config.admin.tokens;
    lines.push(match &secrets.admin_token {
        Some(_) => line(Status::Ok, "MOAT_ADMIN_TOKEN", "set (an operator named admin)"),
        None if !named.is_empty() => line(
            Status::Ok,
            "MOAT_ADMIN_TOKEN",
            "not set: the named tokens of [admin.tokens] sign in",
        ),
        None => line(
            Status::Fail,
            "MOAT_ADMIN_TOKEN",
            "not set: the admin API refuses every call, so nobody can tune limits or replay dead letters",
        )
        .fix("export MOAT_ADMIN_TOKEN=… (a long random string)"),
    });
    let problems = config.admin.token_problems(secrets);
    for p in &problems {
        lines.push(
            line(Status::Fail, p.key.clone(), p.message.clone())
                .fix("each MOAT_ADMIN_TOKEN_{NAME} needs its [admin.tokens.NAME] role = \"viewer\" | \"operator\", each table its variable, each its own token"),
        );
    }
    if problems.is_empty() {
        for (name, token) in named {
            lines.push(line(
                Status::Ok,
                format!("admin.tokens.{name}"),
                format!(
                    "{} set: a {}",
                    crate::config::token_variable(name),
                    token.role.name()
                ),
            ));
        }
    }
    lines.push(match &secrets.price_token_secret {
        Some(_) => line(Status::Ok, "MOAT_PRICE_TOKEN_SECRET", "set"),
        None => line(
            Status::Fail,
            "MOAT_PRICE_TOKEN_SECRET",
            "not set: each process signs price tokens with a random key of its own, so checkout on another replica or after a restart refuses them",
        )
        .fix("export MOAT_PRICE_TOKEN_SECRET=… (the same on every replica)"),
    });
    lines.push(data_key_line(config, secrets));
    lines
}

/// Whether customers, orders and token mappings may be shared through
/// Redis: only sealed under a data key.
fn data_key_line(config: &Config, secrets: &Secrets) -> Line {
    let fix = "export MOAT_DATA_KEY=$(openssl rand -base64 32) (the same on every replica; \
               the old one in MOAT_DATA_KEY_PREVIOUS while rotating)";
    match crate::data_key::DataKeys::from_secrets(secrets) {
        Err(why) => line(Status::Fail, "MOAT_DATA_KEY", why).fix(fix),
        Ok(Some(keys)) => line(
            Status::Ok,
            "MOAT_DATA_KEY",
            if keys.previous().is_some() {
                "set, with MOAT_DATA_KEY_PREVIOUS: records sealed under the previous key are read and rewritten under the new one"
            } else {
                "set: customers, orders and token mappings are sealed in Redis"
            },
        ),
        Ok(None) if !config.redis.enabled() => line(
            Status::Warn,
            "MOAT_DATA_KEY",
            "not set: customers and orders are cached in each process only (there is no Redis)",
        )
        .fix(fix),
        Ok(None) => line(
            Status::Warn,
            "MOAT_DATA_KEY",
            "not set: customers, orders and token mappings are never written to Redis, so each replica asks the CRM and OMS for its own",
        )
        .fix(fix),
    }
}

async fn ping(settings: redis_link::Settings) -> Result<(), String> {
    let link = RedisLink::connect(&redis_link::Settings {
        timeout: settings.timeout.max(Duration::from_secs(2)),
        ..settings
    })
    .map_err(|e| e.message().to_string())?;
    link.find_primary()
        .await
        .map_err(|e| format!("no primary from the Sentinels: {e}"))?;
    link.run("ping", |mut c| async move {
        redis::cmd("PING").query_async::<String>(&mut c).await
    })
    .await
    .map(drop)
    .map_err(|_| "no answer".to_string())
}

/// The checklist as a table for a terminal.
pub fn render(lines: &[Line]) -> String {
    let width = lines.iter().map(|l| l.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for l in lines {
        let _ = writeln!(
            out,
            "{:<4}  {:<width$}  {}",
            l.status.label(),
            l.check,
            l.detail
        );
        if let Some(fix) = &l.fix {
            let _ = writeln!(out, "      {:<width$}  fix: {fix}", "");
        }
    }
    let count = |s: Status| lines.iter().filter(|l| l.status == s).count();
    let _ = write!(
        out,
        "{} ok, {} warnings, {} failures: {}",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        if ready(lines) { "ready" } else { "not ready" }
    );
    out
}
