//! `[edge]`: what HTTP caches and CDNs in front of Moat are told about its
//! answers (how long to keep them, which records they name), and
//! `[[edge.purge]]`: where purges go when those records change.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, Section};

/// Caching headers for answers HTTP caches may share (anonymous GET
/// queries, persisted ones included), and purges of the edge.
///
/// A shareable answer gets `Cache-Control: public, max-age=N,
/// stale-while-revalidate=M, stale-if-error=K`: N is the least remaining
/// freshness of the records it was built from, M and K the shortest
/// windows their `[cache.ENTITY]` sections leave past it (`hard_ttl` and
/// `max_stale`, each less `soft_ttl`); an `ETag` (`If-None-Match` answered
/// 304), `Vary: Accept, Authorization`, and `Surrogate-Key` / `Cache-Tag`
/// naming its records. Every other answer (signed-in, mutations, POST,
/// errors) is `Cache-Control: private, no-store`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Edge {
    /// Send caching headers at all (off: none, as if no cache were in front).
    pub enabled: bool,
    /// Name the records of a shareable answer in `Surrogate-Key` (Fastly,
    /// Varnish xkey) and `Cache-Tag` (Cloudflare).
    pub surrogate_keys: bool,
    /// Longest either header may be. Past it, the records of the entity
    /// with the most of them are named by one coarser key (`price:all`),
    /// until it fits (counted in `moat_edge_surrogate_keys_capped_total`).
    pub surrogate_keys_max_bytes: usize,
    /// Per entity: whether answers holding its records may be shared, and
    /// how long at most.
    pub product: EdgeEntity,
    pub category: EdgeEntity,
    pub price: EdgeEntity,
    pub inventory: EdgeEntity,
    /// First wait before a failed purge is sent again; it doubles per
    /// failure up to `purge_retry_max` (a 429's `Retry-After` is honoured).
    #[serde(with = "humantime_serde")]
    pub purge_retry: Duration,
    #[serde(with = "humantime_serde")]
    pub purge_retry_max: Duration,
    /// Every change is purged twice: at once, and again this long after
    /// (0s: once). The second catches an edge that refetched in between
    /// from a replica that had not yet heard of the change (replicas hear
    /// within a second), and cached the old value again.
    #[serde(with = "humantime_serde")]
    pub purge_again_after: Duration,
    /// Most purges waiting per target (in Redis, or in memory without it);
    /// past it the oldest are dropped, and counted.
    pub purge_backlog_max: usize,
    /// Where purges go (`[[edge.purge]]`, any number).
    pub purge: Vec<PurgeTarget>,
}

impl Default for Edge {
    fn default() -> Self {
        Edge {
            enabled: true,
            surrogate_keys: true,
            surrogate_keys_max_bytes: 8 * 1024,
            product: EdgeEntity::default(),
            category: EdgeEntity::default(),
            price: EdgeEntity::default(),
            inventory: EdgeEntity::default(),
            purge_retry: Duration::from_secs(1),
            purge_retry_max: Duration::from_secs(60),
            purge_again_after: Duration::from_secs(2),
            purge_backlog_max: 100_000,
            purge: Vec::new(),
        }
    }
}

impl Edge {
    /// Each purge target's name in metrics, status and Redis: its kind,
    /// numbered from the second of a kind (`varnish`, `varnish2`).
    pub fn purge_labels(&self) -> Vec<String> {
        let mut seen: Vec<PurgeKind> = Vec::new();
        self.purge
            .iter()
            .map(|t| {
                seen.push(t.kind);
                match seen.iter().filter(|k| **k == t.kind).count() {
                    1 => t.kind.name().to_string(),
                    n => format!("{}{n}", t.kind.name()),
                }
            })
            .collect()
    }

    /// The section of a `[cache.NAME]` entity, when answers holding it can
    /// be shared at all (customers and orders never are).
    pub fn entity(&self, cache_section: &str) -> Option<&EdgeEntity> {
        match cache_section {
            "product" => Some(&self.product),
            "category" => Some(&self.category),
            "price" => Some(&self.price),
            "inventory" => Some(&self.inventory),
            _ => None,
        }
    }
}

/// `[edge.ENTITY]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeEntity {
    /// Off: an answer holding any of these records is `private, no-store`.
    pub shared: bool,
    /// Caps `max-age` of answers holding these records (unset: their
    /// freshness alone decides).
    #[serde(with = "humantime_serde::option")]
    pub max_age: Option<Duration>,
}

impl Default for EdgeEntity {
    fn default() -> Self {
        EdgeEntity {
            shared: true,
            max_age: None,
        }
    }
}

/// `[[edge.purge]]`: one edge that caches Moat's answers. Its secret, where
/// it needs one, is `MOAT_EDGE_{KIND}_TOKEN` (`MOAT_EDGE_FASTLY_TOKEN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeTarget {
    pub kind: PurgeKind,
    /// Varnish: where it listens (required). Fastly and Cloudflare: their
    /// API base, by default the public one.
    #[serde(default)]
    pub url: Option<String>,
    /// Fastly: the service whose cache is purged (required).
    #[serde(default)]
    pub service_id: Option<String>,
    /// Cloudflare: the zone id (required).
    #[serde(default)]
    pub zone: Option<String>,
    /// Fastly and Varnish: mark purged answers stale rather than drop them
    /// (served while refetched, and if Moat fails).
    #[serde(default)]
    pub soft: bool,
    /// Most keys per purge request (default: Varnish 256, Fastly 256, its
    /// documented batch limit; Cloudflare 30, the smallest plan's).
    #[serde(default)]
    pub max_keys: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgeKind {
    Varnish,
    Fastly,
    Cloudflare,
}

impl PurgeKind {
    pub fn name(self) -> &'static str {
        match self {
            PurgeKind::Varnish => "varnish",
            PurgeKind::Fastly => "fastly",
            PurgeKind::Cloudflare => "cloudflare",
        }
    }

    /// `MOAT_EDGE_{KIND}_TOKEN`.
    pub fn token_variable(self) -> String {
        format!("MOAT_EDGE_{}_TOKEN", self.name().to_ascii_uppercase())
    }

    /// Whether its API refuses purges without a token.
    pub fn needs_token(self) -> bool {
        !matches!(self, PurgeKind::Varnish)
    }
}

impl PurgeTarget {
    /// Where purge requests go.
    pub fn base_url(&self) -> String {
        let default = match self.kind {
            PurgeKind::Varnish => "http://127.0.0.1:6081",
            PurgeKind::Fastly => "https://api.fastly.com",
            PurgeKind::Cloudflare => "https://api.cloudflare.com/client/v4",
        };
        self.url
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_string()
    }

    pub fn max_keys(&self) -> usize {
        self.max_keys.unwrap_or(match self.kind {
            PurgeKind::Varnish | PurgeKind::Fastly => 256,
            PurgeKind::Cloudflare => 30,
        })
    }
}

impl Section for Edge {
    fn problems(&self, p: &mut Problems) {
        p.check(
            (256..=16 * 1024).contains(&self.surrogate_keys_max_bytes),
            "surrogate_keys_max_bytes",
            "must be between 256 and 16384 (what Fastly and Cloudflare take)",
        );
        p.check(
            !self.purge_retry.is_zero() && self.purge_retry <= self.purge_retry_max,
            "purge_retry",
            "must be more than 0s and at most purge_retry_max",
        );
        p.check(
            self.purge_again_after <= Duration::from_secs(60),
            "purge_again_after",
            "must be at most 1m",
        );
        p.check(
            self.purge_backlog_max >= 1,
            "purge_backlog_max",
            "must be at least 1",
        );
        for (i, target) in self.purge.iter().enumerate() {
            p.within(&format!("purge[{i}]"), |p| target.problems(p));
        }
    }

    /// Headers and retry timing apply at once (read per answer and per
    /// attempt); the purge targets were connected at start.
    fn with_live(&self, new: &Self) -> Self {
        Edge {
            purge: self.purge.clone(),
            purge_backlog_max: self.purge_backlog_max,
            ..new.clone()
        }
    }
}

impl PurgeTarget {
    fn problems(&self, p: &mut Problems) {
        let kind = self.kind.name();
        if let Some(url) = &self.url {
            p.check(
                reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
                "url",
                format!("{url:?} is not an http(s) URL"),
            );
        }
        p.check(
            self.kind != PurgeKind::Varnish || self.url.is_some(),
            "url",
            "a varnish target needs the url it listens on",
        );
        p.check(
            (self.kind == PurgeKind::Fastly) == self.service_id.is_some(),
            "service_id",
            format!("fastly targets need a service_id, and only they take one (this is {kind})"),
        );
        p.check(
            (self.kind == PurgeKind::Cloudflare) == self.zone.is_some(),
            "zone",
            format!("cloudflare targets need a zone, and only they take one (this is {kind})"),
        );
        p.check(
            !self.soft || self.kind != PurgeKind::Cloudflare,
            "soft",
            "cloudflare has no soft purge",
        );
        p.check(
            self.max_keys.is_none_or(|n| (1..=1000).contains(&n)),
            "max_keys",
            "must be between 1 and 1000",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_for_what_their_vendor_needs() {
        use figment::providers::Format;
        let parse = |text: &str| {
            figment::Figment::from(figment::providers::Toml::string(text))
                .extract::<Edge>()
                .map_err(Box::new)
        };
        let edge = parse(
            r#"
            [[purge]]
            kind = "fastly"
            [[purge]]
            kind = "cloudflare"
            zone = "z"
            service_id = "s"
            soft = true
            [[purge]]
            kind = "varnish"
            url = "ftp://x"
            "#,
        )
        .unwrap();
        let mut p = Problems::new("test");
        edge.problems(&mut p);
        let keys: Vec<String> = p.into_vec().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "purge[0].service_id",
                "purge[1].service_id",
                "purge[1].soft",
                "purge[2].url"
            ]
        );
        assert!(parse("[[purge]]\nkind = \"akamai\"").is_err());
    }
}
