//! Caching headers: what an HTTP cache or CDN in front of Moat may do with
//! an answer. A shareable answer (anonymous, a GET query, no errors) may
//! be kept for as long as the least fresh record it holds, and names those
//! records for purges; everything else is `private, no-store`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use sha2::{Digest, Sha256};

use super::keys;
use crate::cache::{Shareable, Source};
use crate::config;
use crate::domain::Timestamp;
use crate::hex;
use crate::telemetry;

pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// `Cache-Control` of every answer no other client may be given.
pub const PRIVATE: HeaderValue = HeaderValue::from_static("private, no-store");
/// The request headers a shareable answer depends on: the media type
/// negotiated, and whether anyone is signed in (a signed-in request must
/// never be answered from an anonymous copy).
const VARY: HeaderValue = HeaderValue::from_static("accept, authorization");

/// The media types an answer is served as (`http`'s `Media::name`), each
/// its own representation with its own `ETag`.
pub const MEDIA: [&str; 2] = ["json", "graphql-response"];

/// What caches are told of an answer built from `sources`, or `None` when
/// it may not be shared (a record whose `[edge.ENTITY]` says no, or one
/// never shared: customers, orders).
pub fn shareable(
    edge: &config::Edge,
    sources: &[Source],
    body: &[u8],
    now: Timestamp,
) -> Option<Shareable> {
    if !edge.enabled {
        return None;
    }
    let mut fresh_until: Option<Timestamp> = None;
    let (mut swr, mut sie) = (Duration::MAX, Duration::MAX);
    for source in sources {
        let settings = edge.entity(source.entity.cache_section())?;
        if !settings.shared {
            return None;
        }
        let mut until = source.fresh_until;
        if let Some(cap) = settings.max_age {
            until = until.min(now.plus(cap));
        }
        fresh_until = Some(fresh_until.map_or(until, |f| f.min(until)));
        swr = swr.min(source.stale_while_revalidate);
        sie = sie.min(source.stale_if_error);
    }
    let (surrogate_key, cache_tag) = if edge.surrogate_keys && !sources.is_empty() {
        let (keys, capped) = keys::answer_keys(sources, edge.surrogate_keys_max_bytes);
        for entity in capped {
            telemetry::edge_keys_capped(entity.name());
        }
        (
            HeaderValue::from_str(&keys.join(" ")).ok(),
            HeaderValue::from_str(&keys.join(",")).ok(),
        )
    } else {
        (None, None)
    };
    let secs = |d: Duration| if d == Duration::MAX { 0 } else { d.as_secs() };
    Some(Shareable {
        etags: MEDIA.map(|media| (media, etag(body, media))),
        // Nothing read (`{ __typename }`): no record says how long.
        fresh_until: fresh_until.unwrap_or(now),
        stale_while_revalidate: secs(swr),
        stale_if_error: secs(sie),
        surrogate_key,
        cache_tag,
        cache_control: Default::default(),
    })
}

/// A strong validator: a digest of the media type and the bytes, the same
/// on every replica for the same answer.
fn etag(body: &[u8], media: &str) -> HeaderValue {
    let mut digest = Sha256::new();
    digest.update(media.as_bytes());
    digest.update([0]);
    digest.update(body);
    let digest = digest.finalize();
    let text = format!("\"{}\"", hex::encode(&digest[..16]));
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Puts `shareable`'s headers on an answer served in `media` at `now`.
pub fn apply(shareable: &Shareable, media: &str, headers: &mut HeaderMap, now: Timestamp) {
    let max_age = u64::try_from(shareable.fresh_until.0 - now.0).unwrap_or(0) / 1000;
    let last = shareable.cache_control.load();
    let control = match last.as_deref() {
        Some((age, value)) if *age == max_age => Some(value.clone()),
        _ => {
            let text = format!(
                "public, max-age={max_age}, stale-while-revalidate={}, stale-if-error={}",
                shareable.stale_while_revalidate, shareable.stale_if_error
            );
            let value = HeaderValue::from_str(&text).ok();
            if let Some(value) = &value {
                let kept = Arc::new((max_age, value.clone()));
                shareable.cache_control.store(Some(kept));
            }
            value
        }
    };
    if let Some(control) = control {
        headers.insert(header::CACHE_CONTROL, control);
    }
    headers.insert(header::ETAG, shareable.etag(media).clone());
    headers.insert(header::VARY, VARY);
    if let Some(keys) = &shareable.surrogate_key {
        headers.insert(SURROGATE_KEY, keys.clone());
    }
    if let Some(tags) = &shareable.cache_tag {
        headers.insert(CACHE_TAG, tags.clone());
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`): the cache's copy is
/// current, and a 304 says so. Weak comparison, as RFC 9110 asks of it.
pub fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> bool {
    if !request.contains_key(header::IF_NONE_MATCH) {
        return false;
    }
    let Ok(ours) = etag.to_str() else {
        return false;
    };
    let ours = ours.trim_start_matches("W/");
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Entity;

    fn read(entity: Entity, id: &str, fresh_for: i64) -> Source {
        Source {
            entity,
            id: id.into(),
            fresh_until: Timestamp(1_000_000 + fresh_for * 1000),
            stale_while_revalidate: Duration::from_secs(240),
            stale_if_error: Duration::from_secs(3540),
        }
    }

    #[test]
    fn max_age_is_the_least_remaining_freshness_within_the_caps() {
        let now = Timestamp(1_000_000);
        let mut edge = config::Edge::default();
        let sources = [
            read(Entity::Product, "P1", 290),
            read(Entity::Price, "S1", 42),
            read(Entity::Inventory, "S1", 12),
        ];
        let s = shareable(&edge, &sources, b"{}", now).unwrap();
        let mut headers = HeaderMap::new();
        apply(&s, "json", &mut headers, now);
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "public, max-age=12, stale-while-revalidate=240, stale-if-error=3540"
        );
        apply(&s, "json", &mut headers, Timestamp(now.0 + 5_000));
        assert!(
            headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .starts_with("public, max-age=7,")
        );
        assert_eq!(
            headers[SURROGATE_KEY],
            "product price inventory product:P1 price:S1 inventory:S1"
        );
        assert_eq!(
            headers[CACHE_TAG],
            "product,price,inventory,product:P1,price:S1,inventory:S1"
        );
        edge.inventory.max_age = Some(Duration::from_secs(3));
        let capped = shareable(&edge, &sources, b"{}", now).unwrap();
        apply(&capped, "json", &mut headers, now);
        assert!(
            headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .starts_with("public, max-age=3,")
        );
        edge.inventory.shared = false;
        assert!(shareable(&edge, &sources, b"{}", now).is_none());
        let order = [read(Entity::Order, "o1", 10)];
        assert!(shareable(&config::Edge::default(), &order, b"{}", now).is_none());
    }

    #[test]
    fn if_none_match_is_compared_weakly_and_in_lists() {
        let tag = etag(b"{\"data\":1}", "json");
        assert_ne!(tag, etag(b"{\"data\":1}", "graphql-response"));
        let mut request = HeaderMap::new();
        assert!(!not_modified(&request, &tag));
        let list = format!("\"other\", W/{}", tag.to_str().unwrap());
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&list).unwrap());
        assert!(not_modified(&request, &tag));
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&request, &tag));
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&request, &tag));
    }
}
