//! `[redis]`: the shared tier (L2, invalidations, fill leases, shared
//! limits). The link to it is made at start, so every key needs a restart.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, Section, redact};

/// The shared Redis tier (L2, invalidation, shared limits). Off unless a URL
/// is set here or in `MOAT_REDIS_URL`. Moat starts and serves without it
/// when it is down, and uses it again by itself when it returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Redis {
    /// `redis://host:port/db`; a password belongs in `MOAT_REDIS_URL`, not here.
    pub url: Option<String>,
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
            url: None,
            namespace: "moat".into(),
            timeout: Duration::from_millis(100),
            lease_ttl: Duration::from_secs(2),
            invalidation_stream_len: 100_000,
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
