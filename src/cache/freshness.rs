//! Freshness: how old a cached value is and what that allows. Computed from
//! the time Moat fetched the value from its source of truth, never guessed,
//! so a value another replica fetched reports its true age.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::EntityCache;
use crate::domain::Timestamp;

/// One entity's freshness rules (hot-reloadable; see `Tier::set_policy`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub soft_ttl: Duration,
    pub hard_ttl: Duration,
    pub max_stale: Duration,
    pub negative_ttl: Duration,
    /// Fraction by which an entry's TTLs are shortened at most (0..=0.5).
    pub jitter: f64,
}

impl Policy {
    pub fn from_config(c: &EntityCache, jitter: f64) -> Policy {
        Policy {
            soft_ttl: c.soft_ttl,
            hard_ttl: c.hard_ttl,
            max_stale: c.max_stale,
            negative_ttl: c.negative_ttl,
            jitter,
        }
    }

    /// What `entry` may be used for at `now`. An entry its source said has
    /// changed is never fresh, but is served stale until the new value lands.
    pub fn state<V>(&self, entry: &Cached<V>, now: Timestamp) -> State {
        let age = entry.fetched_at.age(now);
        let shrink = |ttl: Duration| ttl.mul_f64(1.0 - self.jitter * f64::from(entry.jitter));
        if now < self.fresh_until(entry) && !entry.changed() {
            State::Fresh
        } else if entry.value.is_none() {
            // "Does not exist" is never served stale: after its short TTL
            // the upstream is asked again.
            State::Expired
        } else if age < shrink(self.hard_ttl) {
            State::Stale
        } else if age < self.max_stale {
            State::Expired
        } else {
            State::Dead
        }
    }

    /// When `entry` stops being fresh (its soft TTL, or its negative TTL
    /// for "does not exist", shortened by its jitter).
    pub fn fresh_until<V>(&self, entry: &Cached<V>) -> Timestamp {
        let ttl = if entry.value.is_some() {
            self.soft_ttl
        } else {
            self.negative_ttl
        };
        let shrunk = ttl.mul_f64(1.0 - self.jitter * f64::from(entry.jitter));
        entry.fetched_at.plus(shrunk)
    }

    /// Why `entry` is served as it is at `now` (for `Freshness.reason`).
    pub fn reason<V>(&self, entry: &Cached<V>, now: Timestamp) -> Reason {
        if entry.changed() {
            return Reason::ChangedAtSource;
        }
        match self.state(entry, now) {
            State::Fresh => Reason::Fresh,
            State::Stale if !entry.unanswered() => Reason::Expired,
            // Past its hard TTL it is served only because a fetch failed.
            _ => Reason::SourceUnavailable,
        }
    }

    /// How long L1 (and L2) should keep an entry at all: long enough to
    /// serve it stale when the upstream fails.
    pub fn retention<V>(&self, entry: &Cached<V>, now: Timestamp) -> Duration {
        let keep = if entry.value.is_some() {
            self.max_stale
        } else {
            self.negative_ttl
        };
        keep.saturating_sub(entry.fetched_at.age(now))
    }
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Serve as is.
    Fresh,
    /// Serve, and refresh in the background (stale-while-revalidate).
    Stale,
    /// Fetch before serving; serve only if that fetch fails (stale-if-error).
    Expired,
    /// Past max-stale: never served.
    Dead,
}

/// Why a value is served as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Within its soft TTL, and nothing said it changed.
    Fresh,
    /// Past its soft TTL: served while it is refreshed.
    Expired,
    /// Its source announced a change whose new value has not landed yet.
    ChangedAtSource,
    /// Served because its source could not answer for it.
    SourceUnavailable,
}

/// A cached value with what is needed to judge it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Cached<V> {
    /// `None` when the upstream said the key does not exist.
    pub value: Option<V>,
    /// When Moat got this from the source of truth (another replica, maybe).
    pub fetched_at: Timestamp,
    /// This entry's share of the policy's jitter, 0..1, drawn once.
    #[serde(skip, default = "fastrand::f32")]
    pub jitter: f32,
    /// Approximate size in bytes, for the L1 byte budget.
    #[serde(skip)]
    pub weight: u32,
    /// Set once L1 has let go of this entry (replaced, dropped, evicted):
    /// what a stored response checks instead of looking the key up again.
    #[serde(skip)]
    retired: AtomicBool,
    /// Its source announced a change (a thin event) that has not been
    /// fetched yet: kept in L2 too, so every replica serves it as stale.
    #[serde(skip)]
    changed: AtomicBool,
    /// A fetch meant to replace it failed: it is served because the source
    /// could not answer. A fetch that succeeds makes a new entry.
    #[serde(skip)]
    unanswered: AtomicBool,
}

impl<V> Cached<V> {
    pub fn new(value: Option<V>, fetched_at: Timestamp, weight: usize) -> Cached<V> {
        Cached {
            value,
            fetched_at,
            jitter: fastrand::f32(),
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            retired: AtomicBool::new(false),
            changed: AtomicBool::new(false),
            unanswered: AtomicBool::new(false),
        }
    }

    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub fn mark_changed(&self) {
        self.changed.store(true, Ordering::Release);
    }

    pub fn changed(&self) -> bool {
        self.changed.load(Ordering::Acquire)
    }

    pub fn mark_unanswered(&self) {
        self.unanswered.store(true, Ordering::Release);
    }

    pub fn unanswered(&self) -> bool {
        self.unanswered.load(Ordering::Acquire)
    }
}

/// What GraphQL's `Freshness` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub as_of: Timestamp,
    pub age: Duration,
    pub stale: bool,
    pub reason: Reason,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            soft_ttl: Duration::from_secs(10),
            hard_ttl: Duration::from_secs(60),
            max_stale: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(5),
            jitter: 0.0,
        }
    }

    #[test]
    fn ages_through_the_states() {
        let p = policy();
        let t0 = Timestamp(1_000_000);
        let e = Cached::new(Some(1), t0, 8);
        let at = |s| t0.plus(Duration::from_secs(s));
        assert_eq!(p.state(&e, at(0)), State::Fresh);
        assert_eq!(p.state(&e, at(9)), State::Fresh);
        assert_eq!(p.state(&e, at(10)), State::Stale);
        assert_eq!(p.state(&e, at(59)), State::Stale);
        assert_eq!(p.state(&e, at(60)), State::Expired);
        assert_eq!(p.state(&e, at(600)), State::Dead);
        assert_eq!(p.retention(&e, at(100)), Duration::from_secs(500));
    }

    #[test]
    fn a_change_at_the_source_ends_freshness_and_says_why() {
        let p = policy();
        let t0 = Timestamp(1_000_000);
        let at = |s| t0.plus(Duration::from_secs(s));
        let e = Cached::new(Some(1), t0, 8);
        assert_eq!(p.reason(&e, at(1)), Reason::Fresh);
        assert_eq!(p.reason(&e, at(11)), Reason::Expired);
        e.mark_unanswered();
        assert_eq!(p.reason(&e, at(11)), Reason::SourceUnavailable);
        e.mark_changed();
        assert_eq!(p.state(&e, at(1)), State::Stale, "never fresh once changed");
        assert_eq!(p.reason(&e, at(1)), Reason::ChangedAtSource);
        assert_eq!(
            p.state(&e, at(60)),
            State::Expired,
            "its hard TTL still holds"
        );
    }

    #[test]
    fn negative_entries_expire_and_are_never_stale() {
        let p = policy();
        let t0 = Timestamp(1_000_000);
        let e: Cached<u8> = Cached::new(None, t0, 0);
        assert_eq!(p.state(&e, t0.plus(Duration::from_secs(4))), State::Fresh);
        assert_eq!(p.state(&e, t0.plus(Duration::from_secs(5))), State::Expired);
    }

    #[test]
    fn jitter_only_shortens() {
        let p = Policy {
            jitter: 0.5,
            ..policy()
        };
        let t0 = Timestamp(0);
        let mut e = Cached::new(Some(1), t0, 8);
        e.jitter = 1.0;
        assert_eq!(p.state(&e, t0.plus(Duration::from_secs(5))), State::Stale);
        assert_eq!(p.state(&e, t0.plus(Duration::from_secs(4))), State::Fresh);
    }
}
