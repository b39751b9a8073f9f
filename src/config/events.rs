//! `[events]`: change events pushed to `POST /events/{source}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ByteSize, Problems, Section};

/// Change events (`POST /events/{source}`). Secrets come from the
/// environment only: `MOAT_EVENTS_SECRET`, `MOAT_EVENTS_SECRET_{SOURCE}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Events {
    /// How far a signature's timestamp may be from now (replay protection).
    #[serde(with = "humantime_serde")]
    pub tolerance: Duration,
    /// Largest event body accepted; larger gets 413.
    pub max_body_bytes: ByteSize,
    /// How long an event id is remembered, so a redelivery is a duplicate.
    #[serde(with = "humantime_serde")]
    pub dedupe_retention: Duration,
    /// Attempts to apply an event (a thin event's refetch) before it is
    /// parked in the dead-letter queue.
    pub apply_attempts: u32,
    /// Pause before the second attempt; doubled for each one after.
    #[serde(with = "humantime_serde")]
    pub apply_backoff: Duration,
    /// Most entries the dead-letter queue keeps; past it the oldest are
    /// dropped and counted (`moat_dlq_trimmed_total`), so a long outage
    /// cannot fill Redis.
    pub dlq_max_len: u64,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tolerance: Duration::from_secs(300),
            max_body_bytes: ByteSize(256 * 1024),
            dedupe_retention: Duration::from_secs(24 * 3600),
            apply_attempts: 3,
            apply_backoff: Duration::from_millis(100),
            dlq_max_len: 10_000,
        }
    }
}

impl Section for Events {
    fn problems(&self, p: &mut Problems) {
        p.check(
            (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.tolerance),
            "tolerance",
            "must be between 1s and 1h",
        );
        p.check(
            self.max_body_bytes.bytes() >= 1024,
            "max_body_bytes",
            "must be at least 1KiB",
        );
        p.check(
            self.dedupe_retention >= Duration::from_secs(60),
            "dedupe_retention",
            "must be at least 1m",
        );
        p.check(
            (1..=10).contains(&self.apply_attempts),
            "apply_attempts",
            "must be between 1 and 10",
        );
        p.check(
            self.apply_backoff <= Duration::from_secs(5),
            "apply_backoff",
            "must be at most 5s",
        );
        p.check(
            (1..=10_000_000).contains(&self.dlq_max_len),
            "dlq_max_len",
            "must be between 1 and 10000000",
        );
    }

    /// Each event reads the section as it comes; the ledger of event ids
    /// was built with its retention at start.
    fn with_live(&self, new: &Self) -> Self {
        Events {
            dedupe_retention: self.dedupe_retention,
            ..new.clone()
        }
    }
}
