//! `[upstream]`: what every system of record gets unless its
//! `[systems.NAME]` table says otherwise (where it is, timeouts, batch size,
//! rate limits, breaker, retries), and the embedded simulator.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, Section};

/// Where the systems of record are and how Moat calls them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// Base URL of a server speaking upstream protocol v1 for every system
    /// (`MOAT_UPSTREAM_URL`). Unset: Moat starts the simulator in-process.
    pub url: Option<String>,
    /// The embedded simulator, used only when `url` is unset.
    pub embedded: Embedded,
    /// Longest one upstream HTTP attempt may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest a TCP connect to an upstream may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Most keys sent in one batch call; larger batches are split.
    pub max_batch: usize,
    /// How many Moat replicas share the upstreams. With Redis the limits
    /// are shared exactly; when Redis is unreachable each replica falls
    /// back to its share, the limit divided by this, or by the live
    /// replicas the fleet's heartbeats in Redis last counted.
    pub replicas: u32,
    /// Rate limits: defaults, and per-system overrides under
    /// `[upstream.limits.pim]`, `.erp`, `.crm`, `.oms`.
    pub limits: Limits,
    /// Circuit breaker thresholds, the same for every system.
    pub breaker: BreakerConfig,
    /// Retries of idempotent reads and their budget.
    pub retry: Retry,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            url: None,
            embedded: Embedded::default(),
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            max_batch: 100,
            replicas: 1,
            limits: Limits::default(),
            breaker: BreakerConfig::default(),
            retry: Retry::default(),
        }
    }
}

impl Section for Upstream {
    fn problems(&self, p: &mut Problems) {
        if let Some(url) = &self.url {
            p.check(
                reqwest::Url::parse(url)
                    .map(|u| matches!(u.scheme(), "http" | "https"))
                    .unwrap_or(false),
                "url",
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }
        p.check(
            (1..=10_000_000).contains(&self.embedded.products),
            "embedded.products",
            "must be between 1 and 10000000",
        );
        p.check(self.replicas >= 1, "replicas", "must be at least 1");
        for system in Limits::SYSTEMS {
            if let Some(problem) = self.limits.for_system(system).problem() {
                p.report(&format!("limits.{system}"), problem);
            }
        }
        // What every system gets unless its table says otherwise.
        for (key, message) in self.settings("", None).problems() {
            p.report(key, message);
        }
    }

    /// Limits, breakers and retries are swapped into each system's
    /// protection at once. Where the systems are, the embedded simulator,
    /// timeouts, batch size and the replica count were built into the
    /// clients and limiters at start.
    fn with_live(&self, new: &Self) -> Self {
        Upstream {
            limits: new.limits.clone(),
            breaker: new.breaker.clone(),
            retry: new.retry.clone(),
            ..self.clone()
        }
    }
}

/// The in-process demo upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Embedded {
    /// Number of products in the seeded catalog.
    pub products: usize,
    /// Seed of the catalog: same seed, same data.
    pub seed: u64,
}

impl Default for Embedded {
    fn default() -> Self {
        Embedded {
            products: 10_000,
            seed: 42,
        }
    }
}

/// Upstream rate limits. The top-level keys are the defaults; a system's
/// table overrides any of them for that system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Calls per second to one system, all priorities together.
    pub rps: u32,
    /// Calls that may go at once after a quiet spell.
    pub burst: u32,
    /// Share (0 to 0.9) of the limit only checkout may use.
    pub checkout_reserve: f64,
    /// Longest a browse miss waits for a permit before it is served stale
    /// or fails with RATE_LIMITED.
    #[serde(with = "humantime_serde")]
    pub browse_wait: Duration,
    pub pim: LimitOverride,
    pub erp: LimitOverride,
    pub crm: LimitOverride,
    pub oms: LimitOverride,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rps: 200,
            burst: 100,
            checkout_reserve: 0.2,
            browse_wait: Duration::from_millis(50),
            pim: LimitOverride::default(),
            erp: LimitOverride::default(),
            crm: LimitOverride::default(),
            oms: LimitOverride::default(),
        }
    }
}

impl Limits {
    /// The systems that may have a `[upstream.limits.NAME]` table.
    pub const SYSTEMS: [&'static str; 4] = ["pim", "erp", "crm", "oms"];

    /// `[upstream.limits.NAME]`, for the four names that have one.
    pub fn named(&self, system: &str) -> Option<&LimitOverride> {
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
        let none = LimitOverride::default();
        let o = self.named(system).unwrap_or(&none);
        SystemLimit {
            rps: o.rps.unwrap_or(self.rps),
            burst: o.burst.unwrap_or(self.burst),
            checkout_reserve: o.checkout_reserve.unwrap_or(self.checkout_reserve),
            browse_wait: o.browse_wait.unwrap_or(self.browse_wait),
        }
    }
}

/// One system's limit, the defaults with its overrides applied; what the
/// upstream rate limiter runs on, and what `PUT /admin/limits` changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SystemLimit {
    /// Calls per second to the system, all priorities together.
    pub rps: u32,
    /// Calls that may go at once after a quiet spell.
    pub burst: u32,
    /// Fraction (0 to 0.9) of `rps` and `burst` only checkout may use.
    pub checkout_reserve: f64,
    /// Longest a browse miss waits for a permit.
    #[serde(with = "humantime_serde")]
    pub browse_wait: Duration,
}

impl SystemLimit {
    /// What is wrong with these settings, if anything (config and the
    /// admin API both go by this).
    pub fn problem(&self) -> Option<String> {
        if self.rps == 0 {
            Some("rps must be at least 1".into())
        } else if self.burst == 0 {
            Some("burst must be at least 1".into())
        } else if !(0.0..=0.9).contains(&self.checkout_reserve) {
            Some("checkout_reserve must be between 0.0 and 0.9".into())
        } else if self.browse_wait > Duration::from_secs(10) {
            Some("browse_wait must be at most 10s".into())
        } else {
            None
        }
    }
}

/// Any subset of the limit keys, for one system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitOverride {
    pub rps: Option<u32>,
    pub burst: Option<u32>,
    pub checkout_reserve: Option<f64>,
    #[serde(with = "humantime_serde::option")]
    pub browse_wait: Option<Duration>,
}

/// When a system's breaker opens and how it recovers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Failure fraction over `window` that opens it (once `min_calls` ran).
    pub failure_rate: f64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub min_calls: u32,
    /// Failures in a row that open it regardless of the rate.
    pub consecutive_failures: u32,
    /// How long it stays open before letting probes through.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Probes let through half-open; this many successes close it.
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            min_calls: 20,
            consecutive_failures: 5,
            cooldown: Duration::from_secs(5),
            probes: 3,
        }
    }
}

/// Retries, for idempotent reads only, paid from a budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Attempts per call, the first included (1: never retry).
    pub max_attempts: u32,
    /// First backoff; doubled per retry, with jitter.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Retries allowed as a fraction of recent requests.
    pub budget_ratio: f64,
    /// Retries per second allowed regardless of traffic.
    pub budget_floor: u32,
    /// How far back "recent" reaches.
    #[serde(with = "humantime_serde")]
    pub budget_window: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 3,
            backoff: Duration::from_millis(25),
            budget_ratio: 0.1,
            budget_floor: 5,
            budget_window: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::SystemLimit;

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
}
