//! Typed configuration. Read once at start (and on SIGHUP) from TOML plus
//! `MOAT_*` environment variables, checked strictly, then turned into the
//! runtime settings each part holds. The doc comments here are the user docs
//! for `config/moat.toml`, which documents every key.
//!
//! One file per section of the file: its types, defaults and checks, and
//! which of its keys a reload applies at once (`Section`). A new key lands
//! in its section's file; until that file says it applies at once, a reload
//! names it as needing a restart and keeps its running value.

mod admin;
mod cache;
mod catalog;
mod checkout;
mod connector;
mod credentials;
mod customers;
mod edge;
mod entities;
mod events;
mod ip_range;
mod load;
mod problems;
mod reconcile;
mod redis;
mod secrets;
mod server;
mod size;
mod systems;
mod telemetry;
mod upstream;

use serde::{Deserialize, Serialize};

pub use admin::{ADMIN, Admin, AdminToken, Role, token_variable};
pub use cache::{Cache, EntityCache, Responses};
pub use catalog::Catalog;
pub use checkout::Checkout;
pub use connector::{BatchStyle, Encoding, ForeignEvents, ROUTES, Route, Signature};
pub use customers::{Customers, JwtAlgorithm, TokenKind};
pub use edge::{Edge, EdgeEntity, PurgeKind, PurgeTarget};
pub use entities::Entities;
pub use events::Events;
pub use ip_range::IpRange;
pub use load::DEFAULT_PATH;
pub use problems::{ConfigError, Problem, Problems};
pub use reconcile::Reconcile;
pub use redis::{Redis, RedisMode};
pub use secrets::{Secrets, SystemSecrets, redact};
pub use server::{ClientLimit, Connections, PersistedMode, PersistedQueries, Server};
pub use size::ByteSize;
pub use systems::{
    Auth, BreakerOverride, ClientAuth, Grant, RetryOverride, SystemConfig, SystemSettings, Systems,
    Tls,
};
pub use telemetry::{LogFormat, OtlpProtocol, Telemetry, Traces};
pub use upstream::{BreakerConfig, Embedded, LimitOverride, Limits, Retry, SystemLimit, Upstream};

use crate::vocab::Owners;

/// One section of the file (or a table inside one): what may be wrong with
/// it, and which of its keys a reload puts in force at once.
pub trait Section: Clone + PartialEq {
    /// Reports every problem of these settings, each under its key.
    fn problems(&self, problems: &mut Problems);

    /// The running settings (`self`) with the keys that apply at once taken
    /// from a reloaded file's `new`. Every other key keeps its running
    /// value until a restart, and the reload names it: a key added later is
    /// named, never silently ignored, until the part that reads it applies
    /// a reload and the key is taken here. By default nothing is taken.
    fn with_live(&self, new: &Self) -> Self {
        let _ = new;
        self.clone()
    }
}

/// The whole configuration. Every section has defaults, so an empty file is
/// a working demo config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub admin: Admin,
    pub upstream: Upstream,
    pub cache: Cache,
    pub redis: Redis,
    pub catalog: Catalog,
    pub checkout: Checkout,
    pub customers: Customers,
    pub events: Events,
    pub reconcile: Reconcile,
    /// HTTP caches and CDNs in front of Moat.
    pub edge: Edge,
    /// The systems of record by name, each overriding `[upstream]`.
    pub systems: Systems,
    /// Which system owns which record.
    pub entities: Entities,
    pub telemetry: Telemetry,
}

/// What a reload puts in force.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The new file's keys that apply at once over the running ones: what
    /// runs from now on.
    pub config: Config,
    /// Every key whose new value waits for a restart (`server.listen`,
    /// `systems.erp.url`), the running value kept meanwhile.
    pub restart: Vec<String>,
}

impl Config {
    /// Every semantic problem of a parsed config (types were checked while
    /// reading it), each with its key; `source` names where it came from.
    pub fn validate(&self, source: &str) -> Vec<Problem> {
        // Destructured, so a section added later cannot go unchecked.
        let Config {
            server,
            admin,
            upstream,
            cache,
            redis,
            catalog,
            checkout,
            customers,
            events,
            reconcile,
            edge,
            systems,
            entities,
            telemetry,
        } = self;
        let mut p = Problems::new(source);
        p.within("server", |p| server.problems(p));
        p.within("admin", |p| admin.problems(p));
        p.within("upstream", |p| upstream.problems(p));
        p.within("systems", |p| {
            systems::problems(upstream, systems, &entities.owners(), p)
        });
        p.within("entities", |p| {
            entities.problems(p);
            entities.problems_with(systems, p);
        });
        p.within("cache", |p| cache.problems(p));
        p.within("redis", |p| redis.problems(p));
        p.within("catalog", |p| catalog.problems(p));
        p.within("checkout", |p| checkout.problems(p));
        p.within("customers", |p| {
            customers.problems(p);
            customers::problems_with(customers, systems, &entities.owners(), p);
        });
        p.within("events", |p| events.problems(p));
        p.within("reconcile", |p| reconcile.problems(p));
        p.within("edge", |p| edge.problems(p));
        p.within("telemetry", |p| telemetry.problems(p));
        p.into_vec()
    }

    /// What a reload of `new` puts in force over this running config: each
    /// section's live keys from `new`, every other key as it runs, named
    /// when `new` changes it.
    pub fn reloaded(&self, new: &Config) -> Reloaded {
        let config = Config {
            server: self.server.with_live(&new.server),
            admin: self.admin.with_live(&new.admin),
            upstream: self.upstream.with_live(&new.upstream),
            cache: self.cache.with_live(&new.cache),
            redis: self.redis.with_live(&new.redis),
            catalog: self.catalog.with_live(&new.catalog),
            checkout: self.checkout.with_live(&new.checkout),
            customers: self.customers.with_live(&new.customers),
            events: self.events.with_live(&new.events),
            reconcile: self.reconcile.with_live(&new.reconcile),
            edge: self.edge.with_live(&new.edge),
            systems: systems::with_live(&self.systems, &new.systems),
            entities: self.entities.with_live(&new.entities),
            telemetry: self.telemetry.with_live(&new.telemetry),
        };
        let mut restart = Vec::new();
        if config != *new {
            // Named by key, from the values as the file would spell them.
            let as_value = |c: &Config| serde_json::to_value(c).unwrap_or_default();
            changed_keys(&as_value(&config), &as_value(new), "", &mut restart);
            restart.sort();
        }
        Reloaded { config, restart }
    }

    /// The ownership map from `[entities]`.
    pub fn owners(&self) -> Owners {
        self.entities.owners()
    }

    /// `name`'s settings: its `[systems.NAME]` over `[upstream]`.
    pub fn system(&self, name: &str) -> SystemSettings {
        self.upstream.settings(name, self.systems.get(name))
    }
}

/// The dotted keys under `at` whose values differ between `a` and `b`; a
/// table only one side has is named as a whole, a list as one value.
fn changed_keys(a: &serde_json::Value, b: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    use serde_json::Value::{Null, Object};
    let key = |name: &str| {
        if at.is_empty() {
            name.to_string()
        } else {
            format!("{at}.{name}")
        }
    };
    match (a, b) {
        (Object(a), Object(b)) => {
            for (name, value) in a {
                changed_keys(value, b.get(name).unwrap_or(&Null), &key(name), out);
            }
            for name in b.keys().filter(|name| !a.contains_key(*name)) {
                out.push(key(name));
            }
        }
        _ if a != b => out.push(at.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_reload_takes_live_keys_and_names_the_rest() {
        let running = Config::default();
        let mut new = running.clone();
        new.upstream.limits.rps = 7;
        new.cache.price.soft_ttl = Duration::from_secs(1);
        new.server.connections.max = 10;
        new.cache.price.l1_max_bytes = ByteSize(1 << 20);
        new.systems.insert(
            "wms".into(),
            SystemConfig {
                url: Some("http://wms.internal".into()),
                ..SystemConfig::default()
            },
        );
        let reloaded = running.reloaded(&new);
        assert_eq!(
            reloaded.restart,
            [
                "cache.price.l1_max_bytes",
                "server.connections.max",
                "systems.wms.url"
            ]
        );
        let config = reloaded.config;
        assert_eq!(config.upstream.limits.rps, 7);
        assert_eq!(config.cache.price.soft_ttl, Duration::from_secs(1));
        assert_eq!(config.server.connections.max, 4096, "kept until a restart");
        assert_eq!(config.system("wms").url, None, "kept until a restart");
        assert!(running.reloaded(&running).restart.is_empty());
    }
}
