//! `[reconcile]`: scheduled comparison of what Moat holds with its systems
//! of record.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, Section};

/// Scheduled reconciliation: what Moat holds compared with its systems of
/// record, at the lowest upstream priority (idle capacity only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reconcile {
    /// Run passes on a schedule (`POST /admin/reconcile/{entity}` works
    /// either way).
    pub enabled: bool,
    /// How often each entity is checked, fleet-wide.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Which ones: `prices`, `inventory`, `products`, `orders`.
    pub entities: Vec<String>,
    /// Keys re-read per upstream call.
    pub batch_size: usize,
    /// Most upstream calls one pass may make; the rest waits for the next.
    pub max_calls: usize,
    /// Longest one pass may take (it yields to all other traffic, so under
    /// load it is slow); it then reports what it checked.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// How long a replica holds a pass's lease without renewing it; if it
    /// dies, another takes the next pass after this.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for Reconcile {
    fn default() -> Self {
        Reconcile {
            enabled: true,
            interval: Duration::from_secs(15 * 60),
            entities: ["prices", "inventory", "products", "orders"]
                .map(String::from)
                .to_vec(),
            batch_size: 100,
            max_calls: 2_000,
            max_duration: Duration::from_secs(10 * 60),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

/// Every key applies at once: each tick and each pass read the section.
impl Section for Reconcile {
    fn problems(&self, p: &mut Problems) {
        for (i, name) in self.entities.iter().enumerate() {
            p.check(
                ["prices", "inventory", "products", "orders"].contains(&name.as_str()),
                &format!("entities[{i}]"),
                format!("{name:?} is not one of prices, inventory, products, orders"),
            );
        }
        p.check(
            self.interval >= Duration::from_secs(1),
            "interval",
            "must be at least 1s",
        );
        p.check(
            (1..=500).contains(&self.batch_size),
            "batch_size",
            "must be between 1 and 500",
        );
        p.check(self.max_calls >= 1, "max_calls", "must be at least 1");
        p.check(
            self.max_duration >= Duration::from_secs(1),
            "max_duration",
            "must be at least 1s",
        );
        p.check(
            (Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.lease_ttl),
            "lease_ttl",
            "must be between 1s and 10m",
        );
    }

    fn with_live(&self, new: &Self) -> Self {
        new.clone()
    }
}
