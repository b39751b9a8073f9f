//! `[redis]`: the shared tier (L2, invalidations, fill leases, shared
//! limits). The link to it is made at start, so every key needs a restart.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, Section, redact};

/// How Moat reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server at `url`.
    #[default]
    Single,
    /// A Redis Cluster, discovered from the seed `nodes`.
    Cluster,
    /// The primary the Sentinels at `nodes` name `master`.
    Sentinel,
}

impl RedisMode {
    pub fn name(self) -> &'static str {
        match self {
            RedisMode::Single => "single",
            RedisMode::Cluster => "cluster",
            RedisMode::Sentinel => "sentinel",
        }
    }
}

/// The shared Redis tier (L2, invalidation, shared limits). Off unless a URL
/// is set here or in `MOAT_REDIS_URL` (mode `single`), or `nodes` are
/// (modes `cluster` and `sentinel`). Moat starts and serves without it
/// when it is down, and uses it again by itself when it returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Redis {
    /// `single` (the default), `cluster` or `sentinel`.
    pub mode: RedisMode,
    /// `redis://host:port/db` (mode `single`); a password belongs in
    /// `MOAT_REDIS_URL`, not here.
    pub url: Option<String>,
    /// Mode `cluster`: seed nodes; mode `sentinel`: the Sentinels. Each
    /// `redis://host:port` (`rediss://` for TLS); in `MOAT_REDIS__NODES`
    /// a comma-separated list, which is where credentials belong.
    #[serde(deserialize_with = "nodes")]
    pub nodes: Vec<String>,
    /// Mode `sentinel`: the name the Sentinels know the primary by.
    pub master: Option<String>,
    /// Prefix of every key and channel, so environments can share a server.
    pub namespace: String,
    /// Longest one Redis call may take before Moat goes on without it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long one replica may hold the lease to fill a key; the others
    /// wait at most this long before fetching themselves.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Most entries the invalidation stream keeps. A replica away for
    /// longer than this many changes drops its L1 when it returns.
    pub invalidation_stream_len: usize,
}

impl Default for Redis {
    fn default() -> Self {
        Redis {
            mode: RedisMode::Single,
            url: None,
            nodes: Vec::new(),
            master: None,
            namespace: "moat".into(),
            timeout: Duration::from_millis(100),
            lease_ttl: Duration::from_secs(2),
            invalidation_stream_len: 100_000,
        }
    }
}

/// `nodes` as a list, or (from the environment) as one comma-separated
/// string.
fn nodes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Nodes {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Nodes::deserialize(d)? {
        Nodes::List(list) => list,
        Nodes::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

impl Redis {
    /// Whether the shared tier is configured at all.
    pub fn enabled(&self) -> bool {
        match self.mode {
            RedisMode::Single => self.url.is_some(),
            RedisMode::Cluster | RedisMode::Sentinel => !self.nodes.is_empty(),
        }
    }

    /// Where Redis is, for messages: the URL or the nodes, without
    /// credentials.
    pub fn shown(&self) -> String {
        match self.mode {
            RedisMode::Single => self.url.as_deref().map(redact).unwrap_or_default(),
            RedisMode::Cluster | RedisMode::Sentinel => {
                let nodes: Vec<String> = self.nodes.iter().map(|n| redact(n)).collect();
                let master = self.master.as_deref().map(|m| format!(" (master {m})"));
                format!(
                    "{} {}{}",
                    self.mode.name(),
                    nodes.join(","),
                    master.unwrap_or_default()
                )
            }
        }
    }
}

impl Section for Redis {
    fn problems(&self, p: &mut Problems) {
        if let Some(url) = &self.url {
            p.check(
                ["redis://", "rediss://", "unix://", "redis+unix://"]
                    .iter()
                    .any(|prefix| url.starts_with(prefix)),
                "url",
                format!(
                    "{:?} must start with redis://, rediss:// or unix://",
                    redact(url)
                ),
            );
            p.check(
                self.mode == RedisMode::Single,
                "url",
                format!(
                    "is for mode = \"single\"; with mode = \"{}\" Redis is found from nodes (unset url and MOAT_REDIS_URL)",
                    self.mode.name()
                ),
            );
        }
        match self.mode {
            RedisMode::Single => p.check(
                self.nodes.is_empty(),
                "nodes",
                "is for mode = \"cluster\" or \"sentinel\"; mode \"single\" uses url",
            ),
            RedisMode::Cluster | RedisMode::Sentinel => p.check(
                !self.nodes.is_empty(),
                "nodes",
                format!(
                    "mode = \"{}\" needs at least one node (redis://host:port)",
                    self.mode.name()
                ),
            ),
        }
        for node in &self.nodes {
            let rest = node
                .strip_prefix("redis://")
                .or_else(|| node.strip_prefix("rediss://"));
            let authority = rest.map(|r| r.rsplit('@').next().unwrap_or(r));
            let path = authority.and_then(|a| a.split_once('/').map(|(_, path)| path));
            let hostport = authority.map(|a| a.split('/').next().unwrap_or(a));
            p.check(
                hostport.is_some_and(|h| {
                    h.rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                }),
                "nodes",
                format!(
                    "{:?} must be redis://host:port or rediss://host:port",
                    redact(node)
                ),
            );
            p.check(
                self.mode != RedisMode::Cluster || path.is_none_or(|p| p.is_empty() || p == "0"),
                "nodes",
                format!("{:?}: a cluster has only database 0", redact(node)),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for node in &self.nodes {
            p.check(
                seen.insert(node),
                "nodes",
                format!("{:?} is listed twice", redact(node)),
            );
        }
        match self.mode {
            RedisMode::Sentinel => p.check(
                self.master
                    .as_deref()
                    .is_some_and(|m| !m.trim().is_empty() && !m.contains(char::is_whitespace)),
                "master",
                "mode = \"sentinel\" needs master, the name the Sentinels know the primary by",
            ),
            _ => p.check(
                self.master.is_none(),
                "master",
                "is only for mode = \"sentinel\"",
            ),
        }
        p.check(
            !self.namespace.is_empty() && !self.namespace.contains([':', ' ', '*']),
            "namespace",
            "must be non-empty, without ':', spaces or '*'",
        );
        p.check(
            (Duration::from_millis(1)..=Duration::from_secs(5)).contains(&self.timeout),
            "timeout",
            "must be between 1ms and 5s",
        );
        p.check(
            (1_000..=10_000_000).contains(&self.invalidation_stream_len),
            "invalidation_stream_len",
            "must be between 1000 and 10000000",
        );
        p.check(
            self.lease_ttl >= Duration::from_millis(100),
            "lease_ttl",
            "must be at least 100ms",
        );
    }
}
