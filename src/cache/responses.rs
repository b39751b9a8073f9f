//! Whole responses to queries, served again without running GraphQL: the
//! bytes, keyed by the request as sent (a POST's body, a GET's query
//! string) and by who may be given them (`Audience`), with the L1 entries
//! the answer was built from. Keyed so, a repeated request is answered
//! before it is even decoded: an answer is stored only for bytes that
//! decoded into that very request, and the same bytes decode the same way.
//! GET and POST are separate key spaces, so no body is ever taken for a
//! query string.
//!
//! A signed-in shopper's answer is shared with every shopper of the same
//! price segment, as long as nothing in it depended on who they are: a
//! field that reads the customer (`viewer`, `order`) spoils the reads, so
//! such an answer is never stored (`Scope::viewer`).
//!
//! A stored response is served only while every one of those entries is
//! still the very one in L1 and still fresh. So it needs no invalidation of
//! its own: whatever changes the data (a purge, an event, a checkout or
//! reconciliation repair, another replica's invalidation, a TTL) replaces
//! or drops an L1 entry, and every response built from it stops being
//! served at once. Answers that depend on the clock (`freshness`,
//! `priceToken`), on who asks, or that carry errors are never stored.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use metrics::Counter;

use super::sources::Shareable;
use crate::domain::Timestamp;
use crate::telemetry;
use crate::vocab::CacheHasher;

/// One L1 entry a response was built from.
pub trait Read: Send + Sync {
    /// Whether the entry read is still in L1, unchanged and fresh (a read
    /// that says yes counts as an L1 hit: it is one).
    fn still_fresh(&self, now: Timestamp) -> bool;
}

/// What one request read, while it may still be stored.
pub struct Reads {
    /// `None` once something made the answer unfit to store.
    reads: Mutex<Option<Vec<Box<dyn Read>>>>,
}

impl Reads {
    /// Reads to record (an anonymous query that may be stored).
    pub fn recording() -> Reads {
        Reads {
            reads: Mutex::new(Some(Vec::new())),
        }
    }

    /// Nothing recorded: this request's answer is never stored.
    pub fn ignored() -> Reads {
        Reads {
            reads: Mutex::new(None),
        }
    }

    pub fn wanted(&self) -> bool {
        self.lock().is_some()
    }

    /// Records a read; `None` (a stale entry, say) spoils the answer.
    pub fn record(&self, read: Option<Box<dyn Read>>) {
        let mut reads = self.lock();
        match (reads.as_mut(), read) {
            (Some(list), Some(read)) => list.push(read),
            (Some(_), None) => *reads = None,
            (None, _) => {}
        }
    }

    /// The answer depends on who asked (it read the customer): it is
    /// never stored, not even for their segment.
    pub fn spoil(&self) {
        *self.lock() = None;
    }

    pub(super) fn take(&self) -> Option<Vec<Box<dyn Read>>> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Box<dyn Read>>>> {
        self.reads.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Stored {
    body: Bytes,
    reads: Vec<Box<dyn Read>>,
    /// What HTTP caches are told of it (a GET's answer, shareable).
    shareable: Option<Arc<Shareable>>,
}

/// A stored answer, as served again.
pub struct Answer {
    pub body: Bytes,
    pub shareable: Option<Arc<Shareable>>,
}

/// A request as it came: a GET's query string or a POST's body.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Sent {
    Get(Bytes),
    Post(Bytes),
}

/// Who a stored answer may be given to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Anonymous shoppers (no `Authorization`).
    Anyone,
    /// Signed-in shoppers priced in this segment.
    Segment(Arc<str>),
}

/// A stored answer's key: the request as sent, and who asked.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Asked {
    sent: Sent,
    audience: Audience,
}

impl Asked {
    /// The key of a request whose answer may be stored (`ResponseCache::key`
    /// checks that first; a lookup may use this directly).
    pub fn new(sent: Sent, audience: Audience) -> Asked {
        Asked { sent, audience }
    }
}

impl Sent {
    fn bytes(&self) -> &Bytes {
        match self {
            Sent::Get(b) | Sent::Post(b) => b,
        }
    }
}

/// Roughly what one recorded read holds (a tier handle, a key, an entry).
const READ_WEIGHT: usize = 96;

pub struct ResponseCache {
    entries: Option<moka::sync::Cache<Asked, Arc<Stored>, CacheHasher>>,
    hits: Counter,
    misses: Counter,
}

impl ResponseCache {
    /// A cache of up to `max_bytes`; `None`: off.
    pub fn new(max_bytes: Option<u64>) -> ResponseCache {
        let counter = |result: &'static str| metrics::counter!(telemetry::CACHE_REQUESTS, "entity" => "query", "tier" => "response", "result" => result);
        ResponseCache {
            hits: counter("hit"),
            misses: counter("miss"),
            entries: max_bytes.map(|max| {
                moka::sync::Cache::builder()
                    .max_capacity(max)
                    .weigher(|key: &Asked, stored: &Arc<Stored>| {
                        let segment = match &key.audience {
                            Audience::Anyone => 0,
                            Audience::Segment(s) => s.len(),
                        };
                        let bytes = key.sent.bytes().len()
                            + segment
                            + stored.body.len()
                            + stored.reads.len() * READ_WEIGHT
                            + size_of::<Bytes>()
                            + size_of::<Stored>()
                            + super::ENTRY_BYTES;
                        u32::try_from(bytes).unwrap_or(u32::MAX)
                    })
                    .build_with_hasher(CacheHasher::default())
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The key of a request whose answer may be stored for `audience`: not
    /// asking for anything that changes with the clock (a superset check
    /// on the decoded text: a mere mention only costs the shortcut).
    pub fn key(&self, query: &str, sent: Sent, audience: Audience) -> Option<Asked> {
        if self.entries.is_none() || CLOCK_FIELDS.iter().any(|f| query.contains(f)) {
            return None;
        }
        Some(Asked { sent, audience })
    }

    /// The stored answer, if every entry it was built from is still the
    /// one in L1 and fresh (counted as a hit); else it is dropped. The
    /// caller counts a miss with `missed`, once it knows the request was
    /// one that could have been stored.
    pub fn get(&self, key: &Asked) -> Option<Answer> {
        let entries = self.entries.as_ref()?;
        let stored = entries.get(key)?;
        let now = Timestamp::now();
        if stored.reads.iter().all(|r| r.still_fresh(now)) {
            self.hits.increment(1);
            Some(Answer {
                body: stored.body.clone(),
                shareable: stored.shareable.clone(),
            })
        } else {
            entries.invalidate(key);
            None
        }
    }

    pub fn missed(&self) {
        self.misses.increment(1);
    }

    /// Stores an answer built from `reads`, unless something spoiled them,
    /// with what HTTP caches are told of it.
    pub fn put(&self, key: Asked, body: Bytes, reads: &Reads, shareable: Option<Arc<Shareable>>) {
        let (Some(entries), Some(reads)) = (&self.entries, reads.take()) else {
            return;
        };
        // Copies, so an entry holds its own bytes and no more: the key is
        // often a slice of a connection's read buffer (kilobytes, kept
        // alive for as long as the slice is), the body a grown Vec.
        let own = |b: &Bytes| Bytes::copy_from_slice(b);
        let sent = match &key.sent {
            Sent::Get(b) => Sent::Get(own(b)),
            Sent::Post(b) => Sent::Post(own(b)),
        };
        let key = Asked { sent, ..key };
        let body = own(&body);
        entries.insert(
            key,
            Arc::new(Stored {
                body,
                reads,
                shareable,
            }),
        );
    }

    /// Drops everything (the config changed what answers look like).
    pub fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }
}

/// Fields whose value changes with time even when the data does not.
const CLOCK_FIELDS: [&str; 2] = ["freshness", "priceToken"];

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flag(Arc<AtomicBool>);

    impl Read for Flag {
        fn still_fresh(&self, _: Timestamp) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn an_answer_is_served_while_what_it_read_holds() {
        let cache = ResponseCache::new(Some(1 << 20));
        let key = cache.key("{ a }", sent("{ a }"), Audience::Anyone).unwrap();
        let valid = Arc::new(AtomicBool::new(true));
        let reads = Reads::recording();
        reads.record(Some(Box::new(Flag(valid.clone()))));
        cache.put(
            key.clone(),
            Bytes::from_static(b"{\"data\":1}"),
            &reads,
            None,
        );
        let body = cache.get(&key).map(|a| a.body);
        assert_eq!(body.as_deref(), Some(&b"{\"data\":1}"[..]));
        valid.store(false, Ordering::Relaxed);
        assert!(cache.get(&key).is_none());
        valid.store(true, Ordering::Relaxed);
        assert!(cache.get(&key).is_none(), "dropped once it failed");
    }

    #[test]
    fn spoiled_ignored_and_clock_dependent_answers_are_not_stored() {
        let cache = ResponseCache::new(Some(1 << 20));
        let spoiled = Reads::recording();
        spoiled.record(None);
        spoiled.record(Some(Box::new(Flag(Arc::new(AtomicBool::new(true))))));
        let key = cache.key("{ b }", sent("{ b }"), Audience::Anyone).unwrap();
        cache.put(key.clone(), Bytes::from_static(b"x"), &spoiled, None);
        assert!(cache.get(&key).is_none());
        cache.put(
            key.clone(),
            Bytes::from_static(b"x"),
            &Reads::ignored(),
            None,
        );
        assert!(cache.get(&key).is_none());
        let clock = "{ p { freshness { stale } } }";
        assert!(cache.key(clock, sent(clock), Audience::Anyone).is_none());
        let token = "{ p { priceToken } }";
        assert!(cache.key(token, sent(token), Audience::Anyone).is_none());
        assert!(
            ResponseCache::new(None)
                .key("{ b }", sent("{ b }"), Audience::Anyone)
                .is_none()
        );
    }

    fn sent(query: &str) -> Sent {
        Sent::Post(Bytes::from(
            serde_json::json!({ "query": query }).to_string(),
        ))
    }

    #[test]
    fn a_body_is_never_taken_for_a_query_string() {
        let cache = ResponseCache::new(Some(1 << 20));
        let text = Bytes::from_static(b"query=%7B%20a%20%7D");
        let key = cache
            .key("{ a }", Sent::Get(text.clone()), Audience::Anyone)
            .unwrap();
        let reads = Reads::recording();
        reads.record(Some(Box::new(Flag(Arc::new(AtomicBool::new(true))))));
        cache.put(key, Bytes::from_static(b"{\"data\":1}"), &reads, None);
        let anyone = |sent| Asked::new(sent, Audience::Anyone);
        assert!(cache.get(&anyone(Sent::Get(text.clone()))).is_some());
        assert!(cache.get(&anyone(Sent::Post(text))).is_none());
    }

    #[test]
    fn an_answer_is_given_only_to_its_audience() {
        let cache = ResponseCache::new(Some(1 << 20));
        let vip = Audience::Segment(Arc::from("vip"));
        let key = cache.key("{ a }", sent("{ a }"), vip.clone()).unwrap();
        let reads = Reads::recording();
        reads.record(Some(Box::new(Flag(Arc::new(AtomicBool::new(true))))));
        cache.put(key, Bytes::from_static(b"{\"data\":1}"), &reads, None);
        assert!(cache.get(&Asked::new(sent("{ a }"), vip)).is_some());
        for other in [Audience::Anyone, Audience::Segment(Arc::from("default"))] {
            assert!(cache.get(&Asked::new(sent("{ a }"), other)).is_none());
        }
        // An answer that read the customer is stored for no one.
        let personal = Reads::recording();
        personal.record(Some(Box::new(Flag(Arc::new(AtomicBool::new(true))))));
        personal.spoil();
        let key = cache
            .key("{ b }", sent("{ b }"), Audience::Segment(Arc::from("vip")))
            .unwrap();
        cache.put(key.clone(), Bytes::from_static(b"x"), &personal, None);
        assert!(cache.get(&key).is_none());
    }
}
