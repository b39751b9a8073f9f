//! What an answer was built from: every record a request read (entity and
//! id) and how long each stays fresh, whether it came from L1 or a fetch.
//! HTTP caches in front of Moat are told as much (`edge`): the answer may
//! be kept as long as its least fresh record, and is tagged with the
//! records so a change to any of them purges it.
//!
//! Unlike `responses::Reads`, a miss or a stale read does not spoil the
//! record: it only shortens how long the answer may be kept.

use std::sync::Mutex;
use std::time::Duration;

use crate::domain::Timestamp;
use crate::vocab::Entity;

/// One record read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub entity: Entity,
    /// What a purge names it by (`Key::id`: a price's sku).
    pub id: String,
    /// When it stops being fresh; now or earlier for a stale read.
    pub fresh_until: Timestamp,
    /// How long past that Moat itself serves it while refreshing (its hard
    /// TTL less its soft TTL).
    pub stale_while_revalidate: Duration,
    /// How long past that Moat serves it when its source fails (max-stale
    /// less the soft TTL).
    pub stale_if_error: Duration,
}

/// Everything one request read, in the order read.
#[derive(Debug, Default)]
pub struct Sources {
    /// `None`: not recorded (a signed-in request: never shared).
    read: Mutex<Option<Vec<Source>>>,
}

impl Sources {
    pub fn recording() -> Sources {
        Sources {
            read: Mutex::new(Some(Vec::new())),
        }
    }

    pub fn ignored() -> Sources {
        Sources::default()
    }

    pub fn wanted(&self) -> bool {
        self.lock().is_some()
    }

    pub fn record(&self, source: Source) {
        if let Some(list) = self.lock().as_mut() {
            // Resolvers read the same record many times (a price per
            // field): keep the first, or the one fresh for less time.
            match list
                .iter_mut()
                .find(|s| s.entity == source.entity && s.id == source.id)
            {
                Some(known) if source.fresh_until < known.fresh_until => *known = source,
                Some(_) => {}
                None => list.push(source),
            }
        }
    }

    /// What was read, once the request is done.
    pub fn take(&self) -> Option<Vec<Source>> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Source>>> {
        self.read.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What HTTP caches are told of one shareable answer, worked out once
/// (by `edge`, when the answer is first built) and kept with it in the
/// response cache, so a stored answer's hit at most formats its `max-age`.
#[derive(Debug)]
pub struct Shareable {
    /// Strong validators of the bytes, one per media type they are served
    /// as (the same bytes as `application/json` and as
    /// `application/graphql-response+json` are two representations).
    pub etags: [(&'static str, axum::http::HeaderValue); 2],
    /// When the answer stops being fresh (its least fresh record, within
    /// the `[edge.ENTITY] max_age` caps).
    pub fresh_until: Timestamp,
    /// Seconds a cache may serve it stale while it revalidates.
    pub stale_while_revalidate: u64,
    /// Seconds a cache may serve it stale when Moat fails.
    pub stale_if_error: u64,
    /// `Surrogate-Key` (space-separated) and `Cache-Tag` (comma-separated),
    /// when keys are sent.
    pub surrogate_key: Option<axum::http::HeaderValue>,
    pub cache_tag: Option<axum::http::HeaderValue>,
    /// The last `Cache-Control` sent, with the `max-age` it says: that
    /// changes once a second, and a hot answer is served thousands of
    /// times in between.
    pub cache_control: arc_swap::ArcSwapOption<(u64, axum::http::HeaderValue)>,
}

impl Shareable {
    /// The validator of the representation in `media` (a `Media::name`).
    pub fn etag(&self, media: &str) -> &axum::http::HeaderValue {
        let [first, second] = &self.etags;
        if second.0 == media {
            &second.1
        } else {
            &first.1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(id: &str, until: i64) -> Source {
        Source {
            entity: Entity::Price,
            id: id.into(),
            fresh_until: Timestamp(until),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
        }
    }

    #[test]
    fn a_record_read_twice_is_kept_once_at_its_shortest() {
        let sources = Sources::recording();
        sources.record(source("A", 50));
        sources.record(source("B", 70));
        sources.record(source("A", 40));
        sources.record(source("A", 60));
        let read = sources.take().unwrap();
        assert_eq!(read, [source("A", 40), source("B", 70)]);
        let ignored = Sources::ignored();
        ignored.record(source("A", 1));
        assert!(ignored.take().is_none());
    }
}
