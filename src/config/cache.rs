//! `[cache]`: TTL jitter, freshness and memory of each entity's cache, and
//! the response cache.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ByteSize, Problems, Section};

/// Cache settings: jitter for all, freshness and size per entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    /// Fraction (0 to 0.5) by which each entry's TTLs are shortened at
    /// random, so entries filled together do not all expire together.
    pub jitter: f64,
    pub product: EntityCache,
    pub category: EntityCache,
    pub price: EntityCache,
    pub inventory: EntityCache,
    pub customer: EntityCache,
    pub order: EntityCache,
    pub responses: Responses,
}

impl Default for Cache {
    fn default() -> Self {
        let entity = |soft: u64, hard: u64, max_stale: u64, mib: u64| EntityCache {
            soft_ttl: Duration::from_secs(soft),
            hard_ttl: Duration::from_secs(hard),
            max_stale: Duration::from_secs(max_stale),
            negative_ttl: Duration::from_secs(30),
            l1_max_bytes: ByteSize(mib * 1024 * 1024),
        };
        Cache {
            jitter: 0.1,
            product: entity(300, 1_800, 86_400, 128),
            category: entity(300, 1_800, 86_400, 4),
            price: entity(60, 300, 3_600, 160),
            inventory: entity(15, 60, 900, 64),
            customer: entity(60, 300, 900, 16),
            order: entity(30, 120, 600, 16),
            responses: Responses::default(),
        }
    }
}

impl Cache {
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

impl Section for Cache {
    fn problems(&self, p: &mut Problems) {
        p.check(
            (0.0..=0.5).contains(&self.jitter),
            "jitter",
            "must be between 0.0 and 0.5",
        );
        for (name, entity) in self.entities() {
            p.within(name, |p| entity.problems(p));
        }
    }

    /// Jitter and every entity's freshness apply at once (each tier swaps
    /// its policy); the memory of L1 and of the response cache was sized at
    /// start.
    fn with_live(&self, new: &Self) -> Self {
        Cache {
            jitter: new.jitter,
            product: self.product.with_live(&new.product),
            category: self.category.with_live(&new.category),
            price: self.price.with_live(&new.price),
            inventory: self.inventory.with_live(&new.inventory),
            customer: self.customer.with_live(&new.customer),
            order: self.order.with_live(&new.order),
            ..self.clone()
        }
    }
}

/// Freshness and size of one entity's cache.
///
/// A value is fresh until `soft_ttl`; until `hard_ttl` it is served stale
/// while one background refresh runs; after that it is fetched before it is
/// served, and only if that fetch fails is it served stale, up to
/// `max_stale`. `soft_ttl <= hard_ttl <= max_stale`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityCache {
    #[serde(with = "humantime_serde")]
    pub soft_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub hard_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
    /// How long "the upstream says this does not exist" is remembered.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Memory budget of the in-process (L1) cache for this entity.
    pub l1_max_bytes: ByteSize,
}

impl Section for EntityCache {
    fn problems(&self, p: &mut Problems) {
        p.check(!self.soft_ttl.is_zero(), "soft_ttl", "must be more than 0s");
        p.check(
            self.hard_ttl >= self.soft_ttl,
            "hard_ttl",
            "must be at least soft_ttl",
        );
        p.check(
            self.max_stale >= self.hard_ttl,
            "max_stale",
            "must be at least hard_ttl",
        );
        p.check(
            self.l1_max_bytes.bytes() >= 64 * 1024,
            "l1_max_bytes",
            "must be at least 64KiB",
        );
    }

    /// The TTLs apply at once; the L1 budget was its size at start.
    fn with_live(&self, new: &Self) -> Self {
        EntityCache {
            soft_ttl: new.soft_ttl,
            hard_ttl: new.hard_ttl,
            max_stale: new.max_stale,
            negative_ttl: new.negative_ttl,
            ..self.clone()
        }
    }
}

/// `[cache.responses]`: whole answers to anonymous queries, served without
/// running GraphQL while every L1 entry they were built from is unchanged
/// and fresh (`cache::responses`). Built at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Responses {
    pub enabled: bool,
    pub max_bytes: ByteSize,
}

impl Default for Responses {
    fn default() -> Self {
        Responses {
            enabled: true,
            max_bytes: ByteSize(32 * 1024 * 1024),
        }
    }
}
