//! Loading: TOML file, then `MOAT_*` environment, then `validate()`, with
//! every problem reported at once and named by file and key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use super::{Config, EntityCache, SystemLimit};
use crate::vocab::Currency;

/// The file `moat serve` reads when no `--config` is given.
pub const DEFAULT_PATH: &str = "config/moat.toml";

/// Environment variables that always work, whatever the file says, and the
/// key each one sets. Any other `MOAT_SECTION__KEY` sets `section.key`.
const FIXED_ENV: &[(&str, &str)] = &[
    ("listen", "server.listen"),
    ("admin_listen", "admin.listen"),
    ("upstream_url", "upstream.url"),
    ("redis_url", "redis.url"),
];

/// One thing wrong with a config: where, which key, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub source: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.source, self.key, self.message)
    }
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// What `moat serve` uses: the given file (or `config/moat.toml` when it
    /// exists, else built-in defaults), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
        };
        Config::from_sources(path.as_deref(), true)
    }

    /// Reads `path` (if any) and, when `with_env`, the `MOAT_*` variables;
    /// then validates.
    pub fn from_sources(path: Option<&Path>, with_env: bool) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        let source = path.map(|p| p.display().to_string());
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError {
                    problems: vec![Problem {
                        source: path.display().to_string(),
                        key: "-".into(),
                        message: "no such file".into(),
                    }],
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        if with_env {
            figment = figment.merge(Env::prefixed("MOAT_").filter_map(|key| {
                // figment lowercases keys only after this filter runs.
                let key = key.as_str().to_ascii_lowercase();
                let key = key.as_str();
                if let Some((_, to)) = FIXED_ENV.iter().find(|(from, _)| *from == key) {
                    Some((*to).into())
                } else if key.contains("__") {
                    Some(key.replace("__", ".").into())
                } else {
                    // Secrets (MOAT_ADMIN_TOKEN, …) are read by `Secrets`,
                    // never merged into the config.
                    None
                }
            }));
        }
        let config: Config = figment.extract().map_err(|e| ConfigError {
            problems: e
                .into_iter()
                .map(|e| problem_from_figment(e, &source))
                .collect(),
        })?;
        let problems = config.validate(source.as_deref().unwrap_or("defaults"));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every semantic problem a parsed config has (types were checked by
    /// serde already).
    pub fn validate(&self, source: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, message: String| {
            if !ok {
                problems.push(Problem {
                    source: source.to_string(),
                    key: key.to_string(),
                    message,
                });
            }
        };
        let s = &self.server;
        check(
            s.max_body_bytes.bytes() >= 1024,
            "server.max_body_bytes",
            "must be at least 1KiB".into(),
        );
        check(
            (2..=64).contains(&s.max_query_depth),
            "server.max_query_depth",
            "must be between 2 and 64".into(),
        );
        check(
            s.max_query_complexity >= 10,
            "server.max_query_complexity",
            "must be at least 10".into(),
        );
        check(
            !s.request_timeout.is_zero(),
            "server.request_timeout",
            "must be more than 0s".into(),
        );
        check(
            (Duration::from_millis(100)..=Duration::from_secs(300)).contains(&s.shutdown_timeout),
            "server.shutdown_timeout",
            "must be between 100ms and 5m".into(),
        );
        check(
            s.shutdown_delay < s.shutdown_timeout,
            "server.shutdown_delay",
            "must be shorter than server.shutdown_timeout".into(),
        );
        check(
            (15..=100).contains(&s.max_introspection_depth),
            "server.max_introspection_depth",
            "must be between 15 (the standard introspection query) and 100".into(),
        );
        check(
            (100..=100_000).contains(&s.max_query_tokens),
            "server.max_query_tokens",
            "must be between 100 and 100000".into(),
        );
        check(
            (1..=10_000).contains(&s.max_query_aliases),
            "server.max_query_aliases",
            "must be between 1 and 10000".into(),
        );
        check(
            (1..=64).contains(&s.max_fragment_depth),
            "server.max_fragment_depth",
            "must be between 1 and 64".into(),
        );
        check(
            !s.graphiql || s.introspection,
            "server.graphiql",
            "GraphiQL needs server.introspection = true (its docs are built from it)".into(),
        );
        for (section, c) in [
            ("server", &s.connections),
            ("admin", &self.admin.connections),
        ] {
            check(
                (1..=1_000_000).contains(&c.max),
                &format!("{section}.connections.max"),
                "must be between 1 and 1000000".into(),
            );
            check(
                (Duration::from_millis(100)..=Duration::from_secs(10))
                    .contains(&c.header_read_timeout),
                &format!("{section}.connections.header_read_timeout"),
                "must be between 100ms and 10s".into(),
            );
            check(
                (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&c.idle_timeout),
                &format!("{section}.connections.idle_timeout"),
                "must be between 100ms and 1h".into(),
            );
            check(
                (1..=1000).contains(&c.http2_max_streams),
                &format!("{section}.connections.http2_max_streams"),
                "must be between 1 and 1000".into(),
            );
        }

        let u = &self.upstream;
        if let Some(url) = &u.url {
            check(
                reqwest::Url::parse(url)
                    .map(|u| matches!(u.scheme(), "http" | "https"))
                    .unwrap_or(false),
                "upstream.url",
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }
        check(
            !u.timeout.is_zero(),
            "upstream.timeout",
            "must be more than 0s".into(),
        );
        check(
            !u.connect_timeout.is_zero(),
            "upstream.connect_timeout",
            "must be more than 0s".into(),
        );
        check(
            (1..=500).contains(&u.max_batch),
            "upstream.max_batch",
            "must be between 1 and 500".into(),
        );
        check(
            (1..=10_000_000).contains(&u.embedded.products),
            "upstream.embedded.products",
            "must be between 1 and 10000000".into(),
        );

        check(
            u.replicas >= 1,
            "upstream.replicas",
            "must be at least 1".into(),
        );
        for system in super::Limits::SYSTEMS {
            if let Some(problem) = u.limits.for_system(system).problem() {
                check(false, &format!("upstream.limits.{system}"), problem);
            }
        }
        let b = &u.breaker;
        check(
            b.failure_rate > 0.0 && b.failure_rate <= 1.0,
            "upstream.breaker.failure_rate",
            "must be above 0.0 and at most 1.0".into(),
        );
        check(
            (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&b.window),
            "upstream.breaker.window",
            "must be between 1s and 60s".into(),
        );
        check(
            b.consecutive_failures >= 1,
            "upstream.breaker.consecutive_failures",
            "must be at least 1".into(),
        );
        check(
            b.probes >= 1,
            "upstream.breaker.probes",
            "must be at least 1".into(),
        );
        check(
            !b.cooldown.is_zero(),
            "upstream.breaker.cooldown",
            "must be more than 0s".into(),
        );
        let r = &u.retry;
        check(
            (1..=10).contains(&r.max_attempts),
            "upstream.retry.max_attempts",
            "must be between 1 and 10".into(),
        );
        check(
            (0.0..=1.0).contains(&r.budget_ratio),
            "upstream.retry.budget_ratio",
            "must be between 0.0 and 1.0".into(),
        );
        check(
            (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&r.budget_window),
            "upstream.retry.budget_window",
            "must be between 1s and 60s".into(),
        );
        check(
            !s.deadline.is_zero() && s.deadline <= s.request_timeout,
            "server.deadline",
            "must be more than 0s and at most server.request_timeout".into(),
        );
        let cl = &s.client_limit;
        check(
            cl.rps >= 1,
            "server.client_limit.rps",
            "must be at least 1".into(),
        );
        check(
            cl.burst >= 1,
            "server.client_limit.burst",
            "must be at least 1".into(),
        );
        check(
            cl.checkout_rps >= 1 && cl.checkout_burst >= 1,
            "server.client_limit.checkout_rps",
            "checkout_rps and checkout_burst must be at least 1".into(),
        );
        check(
            axum::http::HeaderName::from_bytes(cl.api_key_header.as_bytes()).is_ok(),
            "server.client_limit.api_key_header",
            format!("{:?} is not a valid header name", cl.api_key_header),
        );

        let c = &self.cache;
        check(
            (0.0..=0.5).contains(&c.jitter),
            "cache.jitter",
            "must be between 0.0 and 0.5".into(),
        );
        for (name, e) in c.entities() {
            for (key, message) in entity_problems(e) {
                check(false, &format!("cache.{name}.{key}"), message);
            }
        }

        if let Some(url) = &self.redis.url {
            check(
                ["redis://", "rediss://", "unix://", "redis+unix://"]
                    .iter()
                    .any(|p| url.starts_with(p)),
                "redis.url",
                format!(
                    "{:?} must start with redis://, rediss:// or unix://",
                    redact(url)
                ),
            );
        }

        let r = &self.redis;
        check(
            !r.namespace.is_empty() && !r.namespace.contains([':', ' ', '*']),
            "redis.namespace",
            "must be non-empty, without ':', spaces or '*'".into(),
        );
        check(
            (Duration::from_millis(1)..=Duration::from_secs(5)).contains(&r.timeout),
            "redis.timeout",
            "must be between 1ms and 5s".into(),
        );
        check(
            (1_000..=10_000_000).contains(&r.invalidation_stream_len),
            "redis.invalidation_stream_len",
            "must be between 1000 and 10000000".into(),
        );
        check(
            r.lease_ttl >= Duration::from_millis(100),
            "redis.lease_ttl",
            "must be at least 100ms".into(),
        );

        let cat = &self.catalog;
        for (i, code) in cat.currencies.iter().enumerate() {
            check(
                Currency::from_code(code).is_some(),
                &format!("catalog.currencies[{i}]"),
                format!("{code:?} is not a known ISO 4217 currency code"),
            );
        }
        check(
            !cat.currencies.is_empty(),
            "catalog.currencies",
            "must name at least one currency".into(),
        );
        check(
            cat.currencies.contains(&cat.default_currency),
            "catalog.default_currency",
            format!(
                "{:?} must be one of catalog.currencies {:?}",
                cat.default_currency, cat.currencies
            ),
        );
        check(
            !cat.default_segment.trim().is_empty(),
            "catalog.default_segment",
            "must not be empty".into(),
        );
        let co = &self.checkout;
        check(
            (1..=100_000).contains(&co.max_quantity),
            "checkout.max_quantity",
            "must be between 1 and 100000".into(),
        );
        check(
            (1..=500).contains(&co.max_lines),
            "checkout.max_lines",
            "must be between 1 and 500 (the most one ERP quote takes)".into(),
        );
        check(
            (Duration::from_secs(60)..=Duration::from_secs(30 * 86_400))
                .contains(&co.price_token_max_age),
            "checkout.price_token_max_age",
            "must be between 1m and 30d".into(),
        );
        check(
            (1..=10).contains(&co.max_per_request),
            "checkout.max_per_request",
            "must be between 1 and 10".into(),
        );
        let ev = &self.events;
        check(
            (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&ev.tolerance),
            "events.tolerance",
            "must be between 1s and 1h".into(),
        );
        check(
            ev.max_body_bytes.bytes() >= 1024,
            "events.max_body_bytes",
            "must be at least 1KiB".into(),
        );
        check(
            ev.dedupe_retention >= Duration::from_secs(60),
            "events.dedupe_retention",
            "must be at least 1m".into(),
        );
        check(
            (1..=10).contains(&ev.apply_attempts),
            "events.apply_attempts",
            "must be between 1 and 10".into(),
        );
        check(
            ev.apply_backoff <= Duration::from_secs(5),
            "events.apply_backoff",
            "must be at most 5s".into(),
        );
        let rc = &self.reconcile;
        for (i, name) in rc.entities.iter().enumerate() {
            check(
                ["prices", "inventory", "products", "orders"].contains(&name.as_str()),
                &format!("reconcile.entities[{i}]"),
                format!("{name:?} is not one of prices, inventory, products, orders"),
            );
        }
        check(
            rc.interval >= Duration::from_secs(1),
            "reconcile.interval",
            "must be at least 1s".into(),
        );
        check(
            (1..=500).contains(&rc.batch_size),
            "reconcile.batch_size",
            "must be between 1 and 500".into(),
        );
        check(
            rc.max_calls >= 1,
            "reconcile.max_calls",
            "must be at least 1".into(),
        );
        check(
            rc.max_duration >= Duration::from_secs(1),
            "reconcile.max_duration",
            "must be at least 1s".into(),
        );
        check(
            (Duration::from_secs(1)..=Duration::from_secs(600)).contains(&rc.lease_ttl),
            "reconcile.lease_ttl",
            "must be between 1s and 10m".into(),
        );
        let cu = &self.customers;
        check(
            cu.unknown_token_rps >= 1 && cu.unknown_token_burst >= 1,
            "customers.unknown_token_rps",
            "unknown_token_rps and unknown_token_burst must be at least 1".into(),
        );
        check(
            tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level).is_ok(),
            "telemetry.log_level",
            format!(
                "{:?} is not a tracing filter such as \"info\"",
                self.telemetry.log_level
            ),
        );
        problems
    }
}

impl super::Limits {
    /// The systems that may have a `[upstream.limits.NAME]` table.
    pub const SYSTEMS: [&'static str; 4] = ["pim", "erp", "crm", "oms"];

    /// The defaults with `system`'s overrides applied (the defaults alone
    /// for a name without a table).
    pub fn for_system(&self, system: &str) -> SystemLimit {
        let none = super::LimitOverride::default();
        let o = match system {
            "pim" => &self.pim,
            "erp" => &self.erp,
            "crm" => &self.crm,
            "oms" => &self.oms,
            _ => &none,
        };
        SystemLimit {
            rps: o.rps.unwrap_or(self.rps),
            burst: o.burst.unwrap_or(self.burst),
            checkout_reserve: o.checkout_reserve.unwrap_or(self.checkout_reserve),
            browse_wait: o.browse_wait.unwrap_or(self.browse_wait),
        }
    }
}

impl super::Cache {
    /// The `[cache.NAME]` section (`product` for an unknown name, which
    /// `vocab::Entity::cache_section` never gives).
    pub fn section(&self, name: &str) -> &EntityCache {
        self.entities()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or(&self.product, |(_, e)| e)
    }

    /// Each entity's settings with its config name.
    pub fn entities(&self) -> [(&'static str, &EntityCache); 6] {
        [
            ("product", &self.product),
            ("category", &self.category),
            ("price", &self.price),
            ("inventory", &self.inventory),
            ("customer", &self.customer),
            ("order", &self.order),
        ]
    }
}

fn entity_problems(e: &EntityCache) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if e.soft_ttl.is_zero() {
        out.push(("soft_ttl", "must be more than 0s".into()));
    }
    if e.hard_ttl < e.soft_ttl {
        out.push(("hard_ttl", "must be at least soft_ttl".into()));
    }
    if e.max_stale < e.hard_ttl {
        out.push(("max_stale", "must be at least hard_ttl".into()));
    }
    if e.l1_max_bytes.bytes() < 64 * 1024 {
        out.push(("l1_max_bytes", "must be at least 64KiB".into()));
    }
    out
}

fn problem_from_figment(e: figment::Error, file: &Option<String>) -> Problem {
    // A file's problems name the file; the environment's name themselves.
    let source_of = |md: &figment::Metadata| match &md.source {
        Some(s) => s.to_string(),
        None if md.name.contains("TOML") => file.clone().unwrap_or_else(|| md.name.to_string()),
        None => md.name.to_string(),
    };
    let (source, key) = match (&e.metadata, &e.profile) {
        (Some(md), Some(profile)) if !e.path.is_empty() => {
            (source_of(md), md.interpolate(profile, &e.path))
        }
        (Some(md), _) => (source_of(md), e.path.join(".")),
        (None, _) => (
            file.clone().unwrap_or_else(|| "config".into()),
            e.path.join("."),
        ),
    };
    // figment prefixes file keys with the profile ("default."): users never
    // write that, so it is dropped.
    let key = key.strip_prefix("default.").unwrap_or(&key).to_string();
    Problem {
        source,
        key: if key.is_empty() { "-".into() } else { key },
        message: e.kind.to_string(),
    }
}

/// A URL with any password replaced, for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Secrets, read from the environment only so they never sit in a committed
/// file or in a printed config.
#[derive(Clone, Default)]
pub struct Secrets {
    /// `MOAT_ADMIN_TOKEN`: bearer token of `/admin/*`. None: admin refuses all.
    pub admin_token: Option<String>,
    /// `MOAT_PRICE_TOKEN_SECRET`: signs price tokens and verifies them.
    /// Every replica needs the same one. None: a random key per process
    /// (tokens then verify only on the replica that issued them).
    pub price_token_secret: Option<String>,
    /// `MOAT_PRICE_TOKEN_PREVIOUS_SECRET`: the secret before the last
    /// rotation; tokens it signed still verify until they expire.
    pub price_token_previous_secret: Option<String>,
    /// `MOAT_EVENTS_SECRET` (key `""`, every source) and
    /// `MOAT_EVENTS_SECRET_{SOURCE}` (key: the source, lowercase): the HMAC
    /// secrets change events are signed with. Several, separated by spaces
    /// or commas, are all accepted while a secret is rotated.
    pub events_secrets: BTreeMap<String, Vec<String>>,
}

impl Secrets {
    pub fn from_env() -> Secrets {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let list = |value: String| -> Vec<String> {
            value
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut events_secrets = BTreeMap::new();
        for (name, value) in std::env::vars() {
            let source = match name.strip_prefix("MOAT_EVENTS_SECRET") {
                Some("") => String::new(),
                Some(rest) => match rest.strip_prefix('_') {
                    Some(source) if !source.is_empty() => source.to_ascii_lowercase(),
                    _ => continue,
                },
                None => continue,
            };
            let secrets = list(value);
            if !secrets.is_empty() {
                events_secrets.insert(source, secrets);
            }
        }
        Secrets {
            admin_token: var("MOAT_ADMIN_TOKEN"),
            price_token_secret: var("MOAT_PRICE_TOKEN_SECRET"),
            price_token_previous_secret: var("MOAT_PRICE_TOKEN_PREVIOUS_SECRET"),
            events_secrets,
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("Secrets")
            .field("admin_token", &redacted(&self.admin_token))
            .field("price_token_secret", &redacted(&self.price_token_secret))
            .field(
                "price_token_previous_secret",
                &redacted(&self.price_token_previous_secret),
            )
            .field(
                "events_secrets",
                &self
                    .events_secrets
                    .iter()
                    .map(|(source, list)| (source, list.len()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::SystemLimit;

    #[test]
    fn system_limits_are_checked() {
        let limit = |rps, burst, checkout_reserve| SystemLimit {
            rps,
            burst,
            checkout_reserve,
            browse_wait: Duration::ZERO,
        };
        assert!(limit(0, 1, 0.1).problem().is_some());
        assert!(limit(1, 1, 0.95).problem().is_some());
        assert!(limit(10, 20, 0.2).problem().is_none());
    }

    use std::time::Duration;

    use super::Secrets;
    use crate::config::Config;

    #[test]
    fn checkout_limits_are_validated_with_their_keys() {
        assert!(Config::default().validate("defaults").is_empty());
        let mut config = Config::default();
        config.checkout.max_quantity = 0;
        config.checkout.max_lines = 501;
        config.checkout.price_token_max_age = Duration::from_secs(1);
        let keys: Vec<String> = config.validate("test").into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "checkout.max_quantity",
                "checkout.max_lines",
                "checkout.price_token_max_age"
            ]
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let secrets = Secrets {
            admin_token: Some("admin-123".into()),
            price_token_secret: Some("current-456".into()),
            price_token_previous_secret: Some("previous-789".into()),
            events_secrets: [("erp".to_string(), vec!["events-000".to_string()])].into(),
        };
        let shown = format!("{secrets:?}");
        for secret in ["admin-123", "current-456", "previous-789", "events-000"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
