//! Loading: TOML file, then `MOAT_*` environment, then `validate()`, with
//! every problem reported at once and named by file and key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use super::{Config, EntityCache, SystemConfig, SystemLimit, SystemSettings};
use crate::vocab::{Currency, Owners, PROTOCOL, Record, System};

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
        Config::load_all(path.map(Path::to_path_buf).as_slice())
    }

    /// `load` with several files, each adding to and overriding the ones
    /// before it (a recipe from `config/connectors/` over a site's file).
    pub fn load_all(paths: &[PathBuf]) -> Result<Config, ConfigError> {
        let default = PathBuf::from(DEFAULT_PATH);
        let paths: Vec<&Path> = if paths.is_empty() {
            [default.as_path()]
                .into_iter()
                .filter(|p| p.exists())
                .collect()
        } else {
            paths.iter().map(PathBuf::as_path).collect()
        };
        Config::from_files(&paths, true)
    }

    /// Reads `path` (if any) and, when `with_env`, the `MOAT_*` variables;
    /// then validates.
    pub fn from_sources(path: Option<&Path>, with_env: bool) -> Result<Config, ConfigError> {
        Config::from_files(path.as_slice(), with_env)
    }

    /// `from_sources` with several files, later ones over earlier ones.
    pub fn from_files(paths: &[&Path], with_env: bool) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        let source = (!paths.is_empty()).then(|| {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            shown.join(" + ")
        });
        for path in paths {
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
        let mut config: Config = figment.extract().map_err(|e| ConfigError {
            problems: e
                .into_iter()
                .map(|e| problem_from_figment(e, &source))
                .collect(),
        })?;
        let mut problems = Vec::new();
        if with_env {
            config.system_urls_from_env();
            problems = config.auth_from_env(&Secrets::from_env().systems);
            config.token_urls_from_env();
        }
        problems.splice(
            0..0,
            config.validate(source.as_deref().unwrap_or("defaults")),
        );
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
        let pq = &s.persisted_queries;
        check(
            pq.mode != super::PersistedMode::AllowList || pq.manifest.is_some(),
            "server.persisted_queries.manifest",
            "allow_list needs a manifest: the operations that may run".into(),
        );
        if let Some(file) = &pq.manifest {
            check(
                file.is_file(),
                "server.persisted_queries.manifest",
                format!("{}: no such file", file.display()),
            );
        }
        check(
            pq.max_bytes.bytes() >= 64 * 1024,
            "server.persisted_queries.max_bytes",
            "must be at least 64KiB".into(),
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
        // The shared defaults, then each system's merged settings; a key
        // already wrong in `[upstream]` is reported there only.
        let defaults = outbound_problems(&self.system(""));
        for (key, message) in &defaults {
            check(false, &format!("upstream.{key}"), message.clone());
        }
        for (name, own) in &self.systems {
            let prefix = format!("systems.{name}");
            for (key, message) in outbound_problems(&self.system(name)) {
                if !defaults.iter().any(|(k, _)| *k == key) {
                    check(false, &format!("{prefix}.{key}"), message);
                }
            }
            for (key, message) in system_problems(name, own) {
                check(false, &format!("{prefix}{key}"), message);
            }
        }
        let owners = self.owners();
        for (record, owner) in Record::ALL.map(|r| (r, owners.of(r))) {
            check(
                self.systems.contains_key(owner.name()) || System::DEFAULTS.contains(&owner),
                &format!("entities.{record}"),
                format!(
                    "{:?} is neither a [systems.NAME] table nor one of pim, erp, crm, oms",
                    owner.name()
                ),
            );
        }
        for name in self.systems.keys() {
            check(
                owners.systems().iter().any(|s| s.name() == name),
                &format!("systems.{name}"),
                "owns nothing: name it in [entities] (or remove the table)".into(),
            );
        }
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
        check(
            (1..=10_000_000).contains(&ev.dlq_max_len),
            "events.dlq_max_len",
            "must be between 1 and 10000000".into(),
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
        let tr = &self.telemetry.traces;
        check(
            !tr.enabled()
                || reqwest::Url::parse(&tr.otlp_endpoint)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
            "telemetry.traces.otlp_endpoint",
            format!(
                "{:?} is not an http:// or https:// URL (or empty: traces off)",
                redact(&tr.otlp_endpoint)
            ),
        );
        check(
            (0.0..=1.0).contains(&tr.sample_ratio),
            "telemetry.traces.sample_ratio",
            "must be between 0.0 and 1.0".into(),
        );
        check(
            !tr.service_name.trim().is_empty(),
            "telemetry.traces.service_name",
            "must not be empty".into(),
        );
        problems
    }
}

impl Config {
    /// The ownership map from `[entities]`.
    pub fn owners(&self) -> Owners {
        let e = &self.entities;
        Owners::new(|record| {
            System::named(match record {
                Record::Products => &e.products,
                Record::Categories => &e.categories,
                Record::Prices => &e.prices,
                Record::Inventory => &e.inventory,
                Record::Customers => &e.customers,
                Record::Orders => &e.orders,
            })
        })
    }

    /// `MOAT_{NAME}_URL` of every system named in `[entities]` or
    /// `[systems]`: the environment says where a system is, per
    /// deployment, over the file.
    fn system_urls_from_env(&mut self) {
        let mut names: Vec<String> = self.systems.keys().cloned().collect();
        names.extend(self.owners().systems().iter().map(|s| s.name().to_string()));
        for name in names {
            let var = format!("MOAT_{}_URL", name.to_ascii_uppercase());
            if let Some(url) = std::env::var(&var).ok().filter(|v| !v.is_empty()) {
                self.systems.entry(name).or_default().url = Some(url);
            }
        }
    }

    /// `MOAT_{NAME}_TOKEN_URL`: where an OAuth2 system's token endpoint is,
    /// per deployment, over the file (after `auth_from_env`, which may have
    /// chosen OAuth2 because of it).
    fn token_urls_from_env(&mut self) {
        for (name, system) in &mut self.systems {
            let var = format!("MOAT_{}_TOKEN_URL", name.to_ascii_uppercase());
            let Some(url) = std::env::var(&var).ok().filter(|v| !v.is_empty()) else {
                continue;
            };
            if let Some(super::Auth::Oauth2 { token_url, .. }) = &mut system.auth {
                *token_url = url;
            }
        }
    }

    /// `name`'s settings: its `[systems.NAME]` over `[upstream]`.
    pub fn system(&self, name: &str) -> SystemSettings {
        let none = SystemConfig::default();
        let own = self.systems.get(name).unwrap_or(&none);
        let u = &self.upstream;
        let mut limit = u.limits.for_system(name);
        let o = &own.limits;
        limit.rps = o.rps.unwrap_or(limit.rps);
        limit.burst = o.burst.unwrap_or(limit.burst);
        limit.checkout_reserve = o.checkout_reserve.unwrap_or(limit.checkout_reserve);
        limit.browse_wait = o.browse_wait.unwrap_or(limit.browse_wait);
        let (b, ob) = (&u.breaker, &own.breaker);
        let (r, or) = (&u.retry, &own.retry);
        SystemSettings {
            name: name.to_string(),
            url: own.url.clone().or_else(|| u.url.clone()),
            timeout: own.timeout.unwrap_or(u.timeout),
            connect_timeout: own.connect_timeout.unwrap_or(u.connect_timeout),
            max_batch: own.max_batch.unwrap_or(u.max_batch),
            limit,
            breaker: super::BreakerConfig {
                failure_rate: ob.failure_rate.unwrap_or(b.failure_rate),
                window: ob.window.unwrap_or(b.window),
                min_calls: ob.min_calls.unwrap_or(b.min_calls),
                consecutive_failures: ob.consecutive_failures.unwrap_or(b.consecutive_failures),
                cooldown: ob.cooldown.unwrap_or(b.cooldown),
                probes: ob.probes.unwrap_or(b.probes),
            },
            retry: super::Retry {
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
        }
    }
}

impl super::Limits {
    /// The systems that may have a `[upstream.limits.NAME]` table.
    pub const SYSTEMS: [&'static str; 4] = ["pim", "erp", "crm", "oms"];

    /// `[upstream.limits.NAME]`, for the four names that have one.
    pub fn named(&self, system: &str) -> Option<&super::LimitOverride> {
        match system {
            "pim" => Some(&self.pim),
            "erp" => Some(&self.erp),
            "crm" => Some(&self.crm),
            "oms" => Some(&self.oms),
            _ => None,
        }
    }

    /// The defaults with `system`'s overrides applied (the defaults alone
    /// for a name without a table).
    pub fn for_system(&self, system: &str) -> SystemLimit {
        let none = super::LimitOverride::default();
        let o = self.named(system).unwrap_or(&none);
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

/// What one system's outbound settings (merged over `[upstream]`) may
/// not be, by key under its table.
fn outbound_problems(s: &SystemSettings) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut check = |ok: bool, key: &'static str, message: &str| {
        if !ok {
            out.push((key, message.to_string()));
        }
    };
    check(!s.timeout.is_zero(), "timeout", "must be more than 0s");
    check(
        !s.connect_timeout.is_zero(),
        "connect_timeout",
        "must be more than 0s",
    );
    check(
        (1..=500).contains(&s.max_batch),
        "max_batch",
        "must be between 1 and 500",
    );
    let b = &s.breaker;
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
    let r = &s.retry;
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
    if let Some(problem) = s.limit.problem() {
        out.push(("limits", problem));
    }
    out
}

/// Names a system may not take: their `MOAT_{NAME}_*` variables mean
/// something else already.
const RESERVED_NAMES: [&str; 6] = ["admin", "upstream", "redis", "events", "price", "sim"];

/// What a `[systems.NAME]` table may not hold beyond its outbound settings;
/// keys are relative to the table (`""` for the name itself).
fn system_problems(name: &str, own: &SystemConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut check = |ok: bool, key: &str, message: String| {
        if !ok {
            out.push((key.to_string(), message));
        }
    };
    check(
        System::valid_name(name),
        "",
        "a system name is a lowercase letter, then letters and digits, at most 32 \
         (it names MOAT_{NAME}_* variables and metric labels)"
            .into(),
    );
    check(
        !RESERVED_NAMES.contains(&name),
        "",
        format!(
            "{name:?} is reserved: MOAT_{}_* means something else",
            name.to_ascii_uppercase()
        ),
    );
    let http_url =
        |url: &str| reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if let Some(url) = &own.url {
        check(
            http_url(url),
            ".url",
            format!("{:?} is not an http:// or https:// URL", redact(url)),
        );
    }
    let rest = own.protocol.as_deref() == Some("rest");
    if let Some(protocol) = &own.protocol {
        check(
            protocol == PROTOCOL || rest,
            ".protocol",
            format!(
                "{protocol:?}: `{PROTOCOL}` (Moat's protocol) or `rest` (its own API, mapped by routes)"
            ),
        );
    }
    check(
        rest || own.routes.is_empty(),
        ".routes",
        "routes are for protocol = \"rest\"; a protocol v1 system has its routes built in".into(),
    );
    check(
        rest || own.events.is_none(),
        ".events",
        "events in the system's own form are for protocol = \"rest\"".into(),
    );
    match &own.auth {
        Some(super::Auth::Header { name }) => check(
            axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
            ".auth.name",
            format!("{name:?} is not a valid header name"),
        ),
        Some(super::Auth::Oauth2 { token_url, .. }) => check(
            http_url(token_url) || token_url.starts_with('/'),
            ".auth.token_url",
            format!(
                "{:?} is not an http:// or https:// URL, or a path on the system's host",
                redact(token_url)
            ),
        ),
        _ => {}
    }
    for (key, file) in [
        (".tls.ca_file", &own.tls.ca_file),
        (".tls.client_identity", &own.tls.client_identity),
    ] {
        if let Some(file) = file {
            check(
                file.is_file(),
                key,
                format!("{}: no such file", file.display()),
            );
        }
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
pub fn redact(url: &str) -> String {
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
    /// Credentials of each system, by lowercase name, from
    /// `MOAT_{NAME}_TOKEN`, `_USER`, `_PASSWORD`, `_CLIENT_ID` and
    /// `_CLIENT_SECRET`; which ones a system needs, its `auth` says.
    pub systems: BTreeMap<String, SystemSecrets>,
}

/// One system's credentials as the environment gives them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SystemSecrets {
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

impl SystemSecrets {
    /// The field a `MOAT_{NAME}{suffix}` variable fills, longest suffix
    /// first (`_CLIENT_SECRET` before `_SECRET`-like endings).
    const SUFFIXES: [&'static str; 5] = [
        "_CLIENT_SECRET",
        "_CLIENT_ID",
        "_PASSWORD",
        "_TOKEN",
        "_USER",
    ];

    fn slot(&mut self, suffix: &str) -> &mut Option<String> {
        match suffix {
            "_CLIENT_SECRET" => &mut self.client_secret,
            "_CLIENT_ID" => &mut self.client_id,
            "_PASSWORD" => &mut self.password,
            "_TOKEN" => &mut self.token,
            _ => &mut self.user,
        }
    }
}

impl fmt::Debug for SystemSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("SystemSecrets")
            .field("token", &set(&self.token))
            .field("user", &self.user)
            .field("password", &set(&self.password))
            .field("client_id", &self.client_id)
            .field("client_secret", &set(&self.client_secret))
            .finish()
    }
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
        let mut systems: BTreeMap<String, SystemSecrets> = BTreeMap::new();
        for (name, value) in std::env::vars() {
            let Some(rest) = name.strip_prefix("MOAT_").filter(|_| !value.is_empty()) else {
                continue;
            };
            let found = SystemSecrets::SUFFIXES
                .iter()
                .find_map(|suffix| Some((rest.strip_suffix(suffix)?, *suffix)));
            if let Some((system, suffix)) = found.filter(|(system, _)| !system.is_empty()) {
                let entry = systems.entry(system.to_ascii_lowercase()).or_default();
                *entry.slot(suffix) = Some(value);
            }
        }
        Secrets {
            systems,
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
            .field("systems", &self.systems)
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
    fn trace_settings_are_validated_with_their_keys() {
        let mut config = Config::default();
        assert!(!config.telemetry.traces.enabled(), "off by default");
        config.telemetry.traces.otlp_endpoint = "collector:4318".into();
        config.telemetry.traces.sample_ratio = 1.5;
        config.telemetry.traces.service_name = " ".into();
        let keys: Vec<String> = config.validate("test").into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "telemetry.traces.otlp_endpoint",
                "telemetry.traces.sample_ratio",
                "telemetry.traces.service_name"
            ]
        );
        config.telemetry.traces = Default::default();
        config.telemetry.traces.otlp_endpoint = "https://collector.internal:4318".into();
        assert!(config.validate("test").is_empty());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let secrets = Secrets {
            admin_token: Some("admin-123".into()),
            price_token_secret: Some("current-456".into()),
            price_token_previous_secret: Some("previous-789".into()),
            events_secrets: [("erp".to_string(), vec!["events-000".to_string()])].into(),
            systems: [(
                "erp".to_string(),
                super::SystemSecrets {
                    token: Some("token-111".into()),
                    password: Some("password-222".into()),
                    client_secret: Some("client-333".into()),
                    ..Default::default()
                },
            )]
            .into(),
        };
        let shown = format!("{secrets:?}");
        for secret in [
            "admin-123",
            "current-456",
            "previous-789",
            "events-000",
            "token-111",
            "password-222",
            "client-333",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
