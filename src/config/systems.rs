//! `[systems.NAME]`: one table per system of record (where it is, how Moat
//! authenticates to it, and anything of `[upstream]` it does differently),
//! and each system's settings with every default applied.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    BreakerConfig, ForeignEvents, LimitOverride, Problems, Retry, Route, SystemLimit, Upstream,
    redact,
};
use crate::vocab::{Owners, PROTOCOL, Record, System};

/// The tables by system name.
pub type Systems = BTreeMap<String, SystemConfig>;

/// One system of record (`[systems.NAME]`): where it is, how Moat
/// authenticates to it, and anything of `[upstream]` it does differently.
/// Secrets come from the environment only: `MOAT_{NAME}_TOKEN`,
/// `MOAT_{NAME}_USER` and `MOAT_{NAME}_PASSWORD`, `MOAT_{NAME}_CLIENT_ID`
/// and `MOAT_{NAME}_CLIENT_SECRET`; `MOAT_{NAME}_URL` overrides `url`.
/// Without `auth` the variables set choose it; with one, a variable it
/// does not read stops the start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// Base URL of its protocol v1 endpoints; unset: `upstream.url` (or the
    /// embedded simulator).
    pub url: Option<String>,
    /// What it speaks: `v1` (Moat's protocol, the default) or `rest` (its
    /// own API, read through `routes`).
    pub protocol: Option<String>,
    /// With `protocol = "rest"`: how each thing Moat reads from it is asked
    /// for and mapped (`[systems.NAME.routes.ROUTE]`).
    pub routes: std::collections::BTreeMap<String, Route>,
    /// With `protocol = "rest"`: its change events, in its own form.
    pub events: Option<ForeignEvents>,
    /// With `protocol = "rest"`: jq definitions (`def product: {…};`)
    /// every route and event map of this system may call, so a mapping
    /// several routes share is written once. They see no variables: what
    /// one needs is an argument (`def price($currency): …;`).
    pub defs: Option<String>,
    #[serde(with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    pub connect_timeout: Option<Duration>,
    pub max_batch: Option<usize>,
    /// Unset: what its credential variables say (a token: bearer, a user
    /// and password: basic; none set: no credentials).
    pub auth: Option<Auth>,
    pub tls: Tls,
    /// Its rate limit (over `[upstream.limits]`).
    pub limits: LimitOverride,
    /// Its breaker thresholds (over `[upstream.breaker]`).
    pub breaker: BreakerOverride,
    /// Its retries (over `[upstream.retry]`).
    pub retry: RetryOverride,
    /// Who owns it, and how to reach them, for the status page and
    /// exceptions.
    pub owner: Option<String>,
    pub contact: Option<String>,
    /// Whether it sends change events to `/events/NAME` (unset: yes), so
    /// its events secret must be set.
    pub sends_events: Option<bool>,
    /// A protocol v1 system that owns prices and inventory and answers
    /// `GET /erp/v1/offers`: a product's price and stock come in one call
    /// (unset: no, the two routes apart, as every v1 ERP answers them).
    pub offers: Option<bool>,
}

/// Names a system may not take: their `MOAT_{NAME}_*` variables mean
/// something else already.
const RESERVED_NAMES: [&str; 8] = [
    "admin", "upstream", "redis", "events", "price", "sim", "data", "edge",
];

impl SystemConfig {
    /// What the table may not hold beyond its outbound settings, keys
    /// relative to the table (`""`: its name).
    fn problems(&self, name: &str, p: &mut Problems) {
        p.check(
            System::valid_name(name),
            "",
            "a system name is a lowercase letter, then letters and digits, at most 32 \
             (it names MOAT_{NAME}_* variables and metric labels)",
        );
        p.check(
            !RESERVED_NAMES.contains(&name),
            "",
            format!(
                "{name:?} is reserved: MOAT_{}_* means something else",
                name.to_ascii_uppercase()
            ),
        );
        let http_url = |url: &str| {
            reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        };
        if let Some(url) = &self.url {
            p.check(
                http_url(url),
                "url",
                format!("{:?} is not an http:// or https:// URL", redact(url)),
            );
        }
        let rest = self.protocol.as_deref() == Some("rest");
        if let Some(protocol) = &self.protocol {
            p.check(
                protocol == PROTOCOL || rest,
                "protocol",
                format!(
                    "{protocol:?}: `{PROTOCOL}` (Moat's protocol) or `rest` (its own API, mapped by routes)"
                ),
            );
        }
        p.check(
            rest || self.routes.is_empty(),
            "routes",
            "routes are for protocol = \"rest\"; a protocol v1 system has its routes built in",
        );
        p.check(
            rest || self.events.is_none(),
            "events",
            "events in the system's own form are for protocol = \"rest\"",
        );
        p.check(
            rest || self.defs.is_none(),
            "defs",
            "jq definitions are for protocol = \"rest\"",
        );
        p.check(
            !(rest && self.offers == Some(true)),
            "offers",
            "the offers route is protocol v1's; a rest system is read through its routes",
        );
        match &self.auth {
            Some(Auth::Header { name }) => p.check(
                axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                "auth.name",
                format!("{name:?} is not a valid header name"),
            ),
            Some(Auth::Oauth2 { token_url, .. }) => p.check(
                http_url(token_url) || token_url.starts_with('/'),
                "auth.token_url",
                format!(
                    "{:?} is not an http:// or https:// URL, or a path on the system's host",
                    redact(token_url)
                ),
            ),
            _ => {}
        }
        for (key, file) in [
            ("tls.ca_file", &self.tls.ca_file),
            ("tls.client_identity", &self.tls.client_identity),
        ] {
            if let Some(file) = file {
                p.check(
                    file.is_file(),
                    key,
                    format!("{}: no such file", file.display()),
                );
            }
        }
    }

    /// Its limits, breaker and retries apply at once (as `[upstream]`'s
    /// do); `sends_events` is read only by `moat doctor`. Where it is, its
    /// protocol, timeouts, batch size, credentials, TLS, owner and contact
    /// were built into its client at start.
    fn with_live(&self, new: &Self) -> Self {
        SystemConfig {
            limits: new.limits.clone(),
            breaker: new.breaker.clone(),
            retry: new.retry.clone(),
            sends_events: new.sends_events,
            ..self.clone()
        }
    }
}

/// Every table's problems, keys under `systems`: its own, its outbound
/// settings merged over `[upstream]` (a key already wrong in `[upstream]` is
/// reported there only), and a table that owns nothing.
pub(super) fn problems(upstream: &Upstream, systems: &Systems, owners: &Owners, p: &mut Problems) {
    let defaults = upstream.settings("", None).problems();
    for (name, own) in systems {
        p.within(name, |p| {
            for (key, message) in upstream.settings(name, Some(own)).problems() {
                if !defaults.iter().any(|(k, _)| *k == key) {
                    p.report(key, message);
                }
            }
            own.problems(name, p);
            p.check(
                owners.systems().iter().any(|s| s.name() == name),
                "",
                "owns nothing: name it in [entities] (or remove the table)",
            );
            let owns = |record| owners.of(record).name() == name;
            p.check(
                own.offers != Some(true) || (owns(Record::Prices) && owns(Record::Inventory)),
                "offers",
                "offers bring prices and stock together: the system must own both \
                 (entities.prices and entities.inventory)",
            );
        });
    }
}

/// The running tables with each one's live keys taken from `new`. A table
/// only one side has is all defaults on the other, and a table left with
/// nothing but defaults is no table (`Config::system` reads both alike).
pub(super) fn with_live(running: &Systems, new: &Systems) -> Systems {
    let none = SystemConfig::default();
    let mut names: Vec<&String> = running.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let was = running.get(name).unwrap_or(&none);
            let table = was.with_live(new.get(name).unwrap_or(&none));
            (new.contains_key(name) || table != none).then(|| (name.clone(), table))
        })
        .collect()
}

/// How Moat proves who it is to a system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    /// `Authorization: Bearer $MOAT_{NAME}_TOKEN`.
    Bearer,
    /// HTTP basic: `$MOAT_{NAME}_USER`, `$MOAT_{NAME}_PASSWORD`.
    Basic,
    /// A header of its own carrying `$MOAT_{NAME}_TOKEN`.
    Header { name: String },
    /// OAuth2: a token from `token_url` (a URL, or a path on the system's
    /// own host; `MOAT_{NAME}_TOKEN_URL` overrides it) for
    /// `$MOAT_{NAME}_CLIENT_ID` / `$MOAT_{NAME}_CLIENT_SECRET`, cached and
    /// refreshed before it expires. `grant = "password"` also sends
    /// `$MOAT_{NAME}_USER` / `$MOAT_{NAME}_PASSWORD` (Akeneo's flow).
    /// `client_auth = "body"` sends the client's id and secret as form
    /// fields instead of HTTP Basic; `header` names the header the token
    /// goes in as it is, instead of `Authorization: Bearer` (Shopify's
    /// `X-Shopify-Access-Token`), and then the answer need not name a
    /// token type.
    Oauth2 {
        token_url: String,
        scope: Option<String>,
        #[serde(default)]
        grant: Grant,
        #[serde(default)]
        client_auth: ClientAuth,
        header: Option<String>,
    },
}

/// How an OAuth2 client proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic (RFC 6749 §2.3.1, which every server must accept).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form (§2.3.1's alternative,
    /// for servers that read nothing else).
    Body,
}

/// The OAuth2 grant Moat uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// RFC 6749 §4.4: the client's own credentials.
    #[default]
    ClientCredentials,
    /// RFC 6749 §4.3: a user's name and password beside the client's.
    Password,
}

/// TLS beyond the system's trust store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// A PEM file of extra CA certificates (a private CA).
    pub ca_file: Option<PathBuf>,
    /// A PEM file holding the client certificate and its key (mutual TLS).
    pub client_identity: Option<PathBuf>,
}

/// Any subset of `[upstream.breaker]`, for one system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerOverride {
    pub failure_rate: Option<f64>,
    #[serde(with = "humantime_serde::option")]
    pub window: Option<Duration>,
    pub min_calls: Option<u32>,
    pub consecutive_failures: Option<u32>,
    #[serde(with = "humantime_serde::option")]
    pub cooldown: Option<Duration>,
    pub probes: Option<u32>,
}

/// Any subset of `[upstream.retry]`, for one system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOverride {
    pub max_attempts: Option<u32>,
    #[serde(with = "humantime_serde::option")]
    pub backoff: Option<Duration>,
    pub budget_ratio: Option<f64>,
    pub budget_floor: Option<u32>,
    #[serde(with = "humantime_serde::option")]
    pub budget_window: Option<Duration>,
}

/// One system's settings with every default applied: what its client is
/// built from.
#[derive(Debug, Clone)]
pub struct SystemSettings {
    pub name: String,
    /// `None`: the embedded simulator.
    pub url: Option<String>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_batch: usize,
    pub limit: SystemLimit,
    pub breaker: BreakerConfig,
    pub retry: Retry,
    pub auth: Auth,
    pub tls: Tls,
    pub owner: Option<String>,
    pub contact: Option<String>,
    /// Prices and stock in one call (`GET /erp/v1/offers`).
    pub offers: bool,
}

impl SystemSettings {
    /// What these outbound settings may not be, by key under the system's
    /// table (or `[upstream]`).
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut check = |ok: bool, key: &'static str, message: &str| {
            if !ok {
                out.push((key, message.to_string()));
            }
        };
        check(!self.timeout.is_zero(), "timeout", "must be more than 0s");
        check(
            !self.connect_timeout.is_zero(),
            "connect_timeout",
            "must be more than 0s",
        );
        check(
            (1..=500).contains(&self.max_batch),
            "max_batch",
            "must be between 1 and 500",
        );
        let b = &self.breaker;
        check(
            b.failure_rate > 0.0 && b.failure_rate <= 1.0,
            "breaker.failure_rate",
            "must be above 0.0 and at most 1.0",
        );
        check(
            (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&b.window),
            "breaker.window",
            "must be between 1s and 60s",
        );
        check(
            b.consecutive_failures >= 1,
            "breaker.consecutive_failures",
            "must be at least 1",
        );
        check(b.probes >= 1, "breaker.probes", "must be at least 1");
        check(
            !b.cooldown.is_zero(),
            "breaker.cooldown",
            "must be more than 0s",
        );
        let r = &self.retry;
        check(
            (1..=10).contains(&r.max_attempts),
            "retry.max_attempts",
            "must be between 1 and 10",
        );
        check(
            (0.0..=1.0).contains(&r.budget_ratio),
            "retry.budget_ratio",
            "must be between 0.0 and 1.0",
        );
        check(
            (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&r.budget_window),
            "retry.budget_window",
            "must be between 1s and 60s",
        );
        if let Some(problem) = self.limit.problem() {
            out.push(("limits", problem));
        }
        out
    }
}

impl Upstream {
    /// System `name`'s settings: its table (`own`) over these defaults.
    pub fn settings(&self, name: &str, own: Option<&SystemConfig>) -> SystemSettings {
        let none = SystemConfig::default();
        let own = own.unwrap_or(&none);
        let mut limit = self.limits.for_system(name);
        let o = &own.limits;
        limit.rps = o.rps.unwrap_or(limit.rps);
        limit.burst = o.burst.unwrap_or(limit.burst);
        limit.checkout_reserve = o.checkout_reserve.unwrap_or(limit.checkout_reserve);
        limit.browse_wait = o.browse_wait.unwrap_or(limit.browse_wait);
        let (b, ob) = (&self.breaker, &own.breaker);
        let (r, or) = (&self.retry, &own.retry);
        SystemSettings {
            name: name.to_string(),
            url: own.url.clone().or_else(|| self.url.clone()),
            timeout: own.timeout.unwrap_or(self.timeout),
            connect_timeout: own.connect_timeout.unwrap_or(self.connect_timeout),
            max_batch: own.max_batch.unwrap_or(self.max_batch),
            limit,
            breaker: BreakerConfig {
                failure_rate: ob.failure_rate.unwrap_or(b.failure_rate),
                window: ob.window.unwrap_or(b.window),
                min_calls: ob.min_calls.unwrap_or(b.min_calls),
                consecutive_failures: ob.consecutive_failures.unwrap_or(b.consecutive_failures),
                cooldown: ob.cooldown.unwrap_or(b.cooldown),
                probes: ob.probes.unwrap_or(b.probes),
            },
            retry: Retry {
                max_attempts: or.max_attempts.unwrap_or(r.max_attempts),
                backoff: or.backoff.unwrap_or(r.backoff),
                budget_ratio: or.budget_ratio.unwrap_or(r.budget_ratio),
                budget_floor: or.budget_floor.unwrap_or(r.budget_floor),
                budget_window: or.budget_window.unwrap_or(r.budget_window),
            },
            auth: own.auth.clone().unwrap_or_default(),
            tls: own.tls.clone(),
            owner: own.owner.clone(),
            contact: own.contact.clone(),
            offers: own.offers.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rps: Option<u32>, url: Option<&str>) -> SystemConfig {
        SystemConfig {
            url: url.map(String::from),
            limits: LimitOverride {
                rps,
                ..LimitOverride::default()
            },
            ..SystemConfig::default()
        }
    }

    #[test]
    fn a_table_takes_its_live_keys_and_keeps_the_rest() {
        let running: Systems = [
            ("erp".into(), table(Some(50), None)),
            ("wms".into(), table(None, Some("http://wms:1"))),
        ]
        .into();
        let new: Systems = [
            ("erp".into(), table(Some(60), Some("http://erp:1"))),
            ("pim".into(), table(Some(5), None)),
        ]
        .into();
        let live = with_live(&running, &new);
        // erp: its new limit, its old (default) url; pim: a new table of
        // limits only; wms: gone from the file, but its url is running.
        assert_eq!(live["erp"], table(Some(60), None));
        assert_eq!(live["pim"], table(Some(5), None));
        assert_eq!(live["wms"], table(None, Some("http://wms:1")));
        // A table of limits only, removed: no table.
        let gone = with_live(&[("erp".into(), table(Some(50), None))].into(), &new);
        assert!(!gone.contains_key("wms") && gone.len() == 2, "{gone:?}");
        let empty = with_live(
            &[("erp".into(), table(Some(50), None))].into(),
            &Systems::new(),
        );
        assert!(empty.is_empty(), "{empty:?}");
    }
}
