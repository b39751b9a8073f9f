//! Every series whose labels are known at start, registered at 0 when a
//! gateway starts: a panel or a `rate()` alert over a counter that has not
//! moved yet reads 0, not "no data", and an absent series means something
//! is wrong, not that nothing happened.
//!
//! The label values here are the ones the code sends (its tests hold them
//! to this list). Two families register themselves where their values are
//! made: `moat_cache_requests_total` (each cache tier, when built) and
//! `moat_ratelimit_limit_rps` (each system's limiter, with its rate).

use crate::config::Config;
use crate::vocab::{Entity, Priority, Record, System};

use super::{
    ANSWERS_UNREAD_REFUSED, BREAKER_STATE, CHECKOUT_MISMATCHES, CHECKOUT_VERIFICATIONS,
    CONNECTIONS_CLOSED, CONNECTIONS_OPEN, CONNECTIONS_REFUSED, CONTRACT_VIOLATIONS, DLQ_DEPTH,
    DLQ_TRIMMED, EDGE_KEYS_CAPPED, EDGE_PURGE_BACKLOG, EDGE_PURGES, EVENT_VISIBLE, EVENTS,
    EXCEPTIONS, GRAPHQL_DURATION, GRAPHQL_REQUESTS, RATELIMIT_REJECTED, RECONCILE_CHECKED,
    RECONCILE_DRIFT, RECONCILE_DURATION, REDIS_RECONNECTS, REDIS_REFRESH_DURATION, REDIS_STATE,
    SIGN_INS_REFUSED, SIGN_INS_SHARED, TOKEN_FETCHES, TOKEN_REFUSAL_REASONS, TOKENS_REFUSED,
    UPSTREAM_DURATION, UPSTREAM_REQUESTS,
};

/// `moat_upstream_requests_total{outcome}`.
pub const UPSTREAM_OUTCOMES: [&str; 8] = [
    "ok",
    "not_found",
    "unauthorized",
    "error",
    "rejected",
    "not_sent",
    "rate_limited",
    "breaker_open",
];
/// `moat_graphql_requests_total{outcome}`.
pub const GRAPHQL_OUTCOMES: [&str; 2] = ["ok", "error"];
/// `moat_upstream_token_fetches_total{outcome}`.
pub const TOKEN_OUTCOMES: [&str; 2] = ["ok", "error"];
/// `moat_checkout_verifications_total{outcome}`.
pub const CHECKOUT_OUTCOMES: [&str; 4] = ["ok", "mismatch", "unavailable", "bad_input"];
/// `moat_checkout_mismatches_total{kind}`, with the entity each kind is
/// recorded under as an exception.
pub const MISMATCH_KINDS: [(&str, &str); 6] = [
    ("PRICE", "price"),
    ("AVAILABILITY", "inventory"),
    ("TOTAL", "total"),
    ("UNKNOWN_SKU", "product"),
    ("CURRENCY", "currency"),
    ("INVALID_TOKEN", "price"),
];
/// `moat_events_total{outcome}`.
pub const EVENT_OUTCOMES: [&str; 5] =
    ["applied", "duplicate", "stale", "rejected", "dead_lettered"];
/// `moat_event_visible_seconds{where}`.
pub const EVENT_PLACES: [&str; 2] = ["origin", "peer"];
/// `moat_reconcile_*{entity}`: what a pass walks, the cache it reads and
/// the record whose owner answers.
pub const RECONCILED: [(&str, Entity, Record); 4] = [
    ("prices", Entity::Price, Record::Prices),
    ("inventory", Entity::Inventory, Record::Inventory),
    ("products", Entity::Product, Record::Products),
    ("orders", Entity::Order, Record::Orders),
];
/// `moat_edge_purges_total{outcome}`.
pub const PURGE_OUTCOMES: [&str; 3] = ["sent", "failed", "dropped"];
/// `moat_edge_surrogate_keys_capped_total{entity}`: the entities a
/// shareable answer can hold.
pub const SHARED_ENTITIES: [Entity; 6] = [
    Entity::Product,
    Entity::ProductSku,
    Entity::ProductPage,
    Entity::Category,
    Entity::Price,
    Entity::Inventory,
];
/// `moat_connections_*{listener}`.
pub const LISTENERS: [&str; 2] = ["public", "admin"];
/// `moat_connections_closed_total{reason}`.
pub const CLOSE_REASONS: [&str; 4] = ["header_timeout", "idle_timeout", "evicted", "unread"];

/// The endpoints (`endpoint` label) a record is read through, each with
/// the entity its payloads are checked as (`entity` of contract
/// violations). Quotes come from the prices owner.
pub fn endpoints(record: Record) -> &'static [(&'static str, &'static str)] {
    match record {
        Record::Products => &[("products", "product")],
        Record::Categories => &[("categories", "category")],
        Record::Prices => &[("prices", "price"), ("quote", "quote")],
        Record::Inventory => &[("inventory", "inventory")],
        Record::Customers => &[("customers", "customer")],
        Record::Orders => &[("orders", "order")],
    }
}

/// Registers every series `config`'s systems and records can produce, at
/// 0 (moved by 0, so one already counting or set keeps its value).
pub fn register_at_zero(config: &Config) {
    use metrics::{counter, gauge, histogram};
    let owners = config.owners();
    let systems = owners.systems();

    for system in &systems {
        let upstream = system.name();
        for record in owners.records_of(*system) {
            for (endpoint, entity) in endpoints(record) {
                for outcome in UPSTREAM_OUTCOMES {
                    counter!(UPSTREAM_REQUESTS, "upstream" => upstream, "endpoint" => *endpoint, "outcome" => outcome).increment(0);
                }
                let _ =
                    histogram!(UPSTREAM_DURATION, "upstream" => upstream, "endpoint" => *endpoint);
                counter!(CONTRACT_VIOLATIONS, "upstream" => upstream, "entity" => *entity)
                    .increment(0);
                exceptions_at_zero(*system, entity, "contract");
            }
        }
        for priority in Priority::ALL {
            counter!(RATELIMIT_REJECTED, "upstream" => upstream, "priority" => priority.name())
                .increment(0);
        }
        for outcome in TOKEN_OUTCOMES {
            counter!(TOKEN_FETCHES, "upstream" => upstream, "outcome" => outcome).increment(0);
        }
        // Only a record's owner may send events about it: every system in
        // use is a source.
        for outcome in EVENT_OUTCOMES {
            counter!(EVENTS, "source" => upstream, "outcome" => outcome).increment(0);
        }
        gauge!(BREAKER_STATE, "upstream" => upstream).increment(0.0);
    }
    if config.redis.enabled() {
        gauge!(BREAKER_STATE, "upstream" => "redis").increment(0.0);
        let mode = config.redis.mode.name();
        gauge!(REDIS_STATE, "mode" => mode).increment(0.0);
        counter!(REDIS_RECONNECTS, "mode" => mode).increment(0);
        let _ = histogram!(REDIS_REFRESH_DURATION, "mode" => mode);
    } else {
        // No Redis, no dead-letter queue: nothing waits. With Redis the
        // gateway reads the depth at once (it may hold letters from before).
        gauge!(DLQ_DEPTH).set(0.0);
    }

    let quoting = owners.of(Record::Prices);
    for outcome in CHECKOUT_OUTCOMES {
        counter!(CHECKOUT_VERIFICATIONS, "outcome" => outcome).increment(0);
    }
    for (kind, entity) in MISMATCH_KINDS {
        counter!(CHECKOUT_MISMATCHES, "kind" => kind).increment(0);
        exceptions_at_zero(quoting, entity, "checkout");
    }
    counter!(SIGN_INS_REFUSED).increment(0);
    counter!(SIGN_INS_SHARED).increment(0);
    for reason in TOKEN_REFUSAL_REASONS {
        counter!(TOKENS_REFUSED, "reason" => reason).increment(0);
    }
    counter!(DLQ_TRIMMED).increment(0);
    for place in EVENT_PLACES {
        let _ = histogram!(EVENT_VISIBLE, "where" => place);
    }
    for (subject, entity, record) in RECONCILED {
        counter!(RECONCILE_CHECKED, "entity" => subject).increment(0);
        counter!(RECONCILE_DRIFT, "entity" => subject).increment(0);
        let _ = histogram!(RECONCILE_DURATION, "entity" => subject);
        exceptions_at_zero(owners.of(record), entity.name(), "reconcile");
    }
    let _ = histogram!(GRAPHQL_DURATION);
    for outcome in GRAPHQL_OUTCOMES {
        counter!(GRAPHQL_REQUESTS, "outcome" => outcome).increment(0);
    }
    for entity in SHARED_ENTITIES {
        counter!(EDGE_KEYS_CAPPED, "entity" => entity.name()).increment(0);
    }
    // Every kind, configured or not (so panels and the alert read 0), and
    // any second target of a kind.
    let mut targets: Vec<String> = ["varnish", "fastly", "cloudflare"]
        .map(String::from)
        .to_vec();
    targets.extend(config.edge.purge_labels());
    targets.sort();
    targets.dedup();
    for target in targets {
        for outcome in PURGE_OUTCOMES {
            counter!(EDGE_PURGES, "target" => target.clone(), "outcome" => outcome).increment(0);
        }
        gauge!(EDGE_PURGE_BACKLOG, "target" => target).increment(0.0);
    }
    for listener in LISTENERS {
        gauge!(CONNECTIONS_OPEN, "listener" => listener).increment(0.0);
        counter!(CONNECTIONS_REFUSED, "listener" => listener).increment(0);
        counter!(ANSWERS_UNREAD_REFUSED, "listener" => listener).increment(0);
        for reason in CLOSE_REASONS {
            counter!(CONNECTIONS_CLOSED, "listener" => listener, "reason" => reason).increment(0);
        }
    }
}

fn exceptions_at_zero(system: System, entity: &'static str, found_by: &'static str) {
    metrics::counter!(EXCEPTIONS, "system" => system.name(), "entity" => entity, "found_by" => found_by)
        .increment(0);
}
