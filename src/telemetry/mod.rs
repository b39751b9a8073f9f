//! Logs, metrics and traces: the tracing subscriber, the Prometheus
//! recorder, every metric name Moat exports (in `series`, every series
//! known at start, at 0), and (in `traces`) span export and trace context.

pub mod process;
pub mod series;
pub mod traces;

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::Layer;

use crate::config::{LogFormat, Telemetry};
use crate::vocab::{CacheHasher, System};

pub const CACHE_REQUESTS: &str = "moat_cache_requests_total";
pub const UPSTREAM_REQUESTS: &str = "moat_upstream_requests_total";
pub const UPSTREAM_DURATION: &str = "moat_upstream_request_duration_seconds";
pub const CONTRACT_VIOLATIONS: &str = "moat_contract_violations_total";
pub const BREAKER_STATE: &str = "moat_breaker_state";
pub const RATELIMIT_REJECTED: &str = "moat_ratelimit_rejected_total";
pub const RATELIMIT_LIMIT: &str = "moat_ratelimit_limit_rps";
pub const GRAPHQL_DURATION: &str = "moat_graphql_request_duration_seconds";
/// `outcome`: `ok` (an answer without errors), `error` (any error: refused,
/// invalid, or a field that failed).
pub const GRAPHQL_REQUESTS: &str = "moat_graphql_requests_total";
/// `outcome`: `ok`, `mismatch`, `unavailable`, `bad_input`.
pub const CHECKOUT_VERIFICATIONS: &str = "moat_checkout_verifications_total";
/// `kind`: `PRICE`, `AVAILABILITY`, `TOTAL`, `UNKNOWN_SKU`, `CURRENCY`,
/// `INVALID_TOKEN` (as in the schema).
pub const CHECKOUT_MISMATCHES: &str = "moat_checkout_mismatches_total";
/// Sign-ins with never-seen customer tokens refused by the unknown-token limit.
pub const SIGN_INS_REFUSED: &str = "moat_customer_sign_ins_refused_total";
/// Customer tokens refused before any CRM call, by `reason` (one of
/// [`TOKEN_REFUSAL_REASONS`]): a JWT that failed verification, or a token
/// of either kind over `[customers] max_token_bytes` (`oversized`).
pub const TOKENS_REFUSED: &str = "moat_customer_tokens_refused_total";
/// The `reason`s of [`TOKENS_REFUSED`].
pub const TOKEN_REFUSAL_REASONS: [&str; 10] = [
    "oversized",
    "malformed",
    "algorithm",
    "unknown_key",
    "signature",
    "expired",
    "not_yet_valid",
    "issuer",
    "audience",
    "subject",
];
/// Of the sign-ins with never-seen tokens, those from addresses the full
/// table of `[customers] unknown_token_addresses` had no room for: they
/// share one allowance. Rising: a flood rotating through addresses.
pub const SIGN_INS_SHARED: &str = "moat_customer_sign_ins_shared_total";
/// `source`, `outcome`: `applied`, `duplicate`, `stale`, `rejected`,
/// `dead_lettered`.
pub const EVENTS: &str = "moat_events_total";
/// Dead letters waiting for an operator.
pub const DLQ_DEPTH: &str = "moat_dlq_depth";
/// Dead letters dropped, oldest first, because the queue was at
/// `[events] dlq_max_len`.
pub const DLQ_TRIMMED: &str = "moat_dlq_trimmed_total";
/// From a change's time at its source to when a replica serves it:
/// `where`: `origin` (the replica that received the event) or `peer`.
pub const EVENT_VISIBLE: &str = "moat_event_visible_seconds";
/// Keys a reconciliation pass compared with their owner, per `entity`.
pub const RECONCILE_CHECKED: &str = "moat_reconcile_checked_total";
/// Of those, the ones that differed.
pub const RECONCILE_DRIFT: &str = "moat_reconcile_drift_total";
pub const RECONCILE_DURATION: &str = "moat_reconcile_duration_seconds";
/// Mismatches recorded for their owners: `system`, `entity`, `found_by`
/// (`reconcile`, `checkout`, `contract`).
pub const EXCEPTIONS: &str = "moat_exceptions_total";
/// OAuth2 tokens fetched for a system: `upstream`, `outcome` (`ok`, `error`).
pub const TOKEN_FETCHES: &str = "moat_upstream_token_fetches_total";
/// `listener`: `public`, `admin`.
pub const CONNECTIONS_OPEN: &str = "moat_connections_open";
/// New connections refused because every connection was busy at the cap.
pub const CONNECTIONS_REFUSED: &str = "moat_connections_refused_total";
/// `reason`: `header_timeout` (headers too slow), `idle_timeout`,
/// `evicted` (idle longest when the cap was reached), `unread` (its client
/// read none of its answers for `unread_timeout`).
pub const CONNECTIONS_CLOSED: &str = "moat_connections_closed_total";
/// Answers replaced by a 503 because their connection already held
/// `max_unread` bytes its client had not read.
pub const ANSWERS_UNREAD_REFUSED: &str = "moat_unread_answers_refused_total";
/// The shared Redis, per `mode` (`single`, `cluster`, `sentinel`): 1 while
/// it answers, 0 while Moat goes on without it.
pub const REDIS_STATE: &str = "moat_redis_state";
/// Times Redis answered again after it did not.
pub const REDIS_RECONNECTS: &str = "moat_redis_reconnects_total";
/// Finding Redis again: a Sentinel search for the primary (`sentinel`), or
/// from the first failed call to the next answered one (`single`,
/// `cluster`: reconnection and slot-map refresh).
pub const REDIS_REFRESH_DURATION: &str = "moat_redis_topology_refresh_duration_seconds";

/// `version`, `commit`: always 1.
pub const BUILD_INFO: &str = "moat_build_info";
/// The process's own series, under the names every Prometheus client
/// library uses (read from `/proc` at each scrape; Linux only).
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";
pub const PROCESS_RESIDENT: &str = "process_resident_memory_bytes";
pub const PROCESS_VIRTUAL: &str = "process_virtual_memory_bytes";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
pub const PROCESS_START: &str = "process_start_time_seconds";

/// Shareable answers whose surrogate keys passed `[edge]
/// surrogate_keys_max_bytes`, so that `entity`'s records were named by its
/// coarse key (`price:all`) instead.
pub const EDGE_KEYS_CAPPED: &str = "moat_edge_surrogate_keys_capped_total";
/// Purge requests to the edge: `target` (`[[edge.purge]]` by kind),
/// `outcome` (`sent`, `failed`: to be retried, `dropped`: past the backlog).
pub const EDGE_PURGES: &str = "moat_edge_purges_total";
/// Changes waiting to be purged at `target`.
pub const EDGE_PURGE_BACKLOG: &str = "moat_edge_purge_backlog";

/// How a metric is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    /// `_bucket`, `_sum` and `_count` series.
    Histogram,
}

/// Every metric Moat exports, with its `# HELP` text: what dashboards and
/// alert rules may use (`tests/deploy.rs` holds `deploy/` to it).
pub const EXPORTED: [(&str, MetricType, &str); 40] = [
    (
        CACHE_REQUESTS,
        MetricType::Counter,
        "Cache lookups per entity, tier (l1, l2, response) and result (hit, miss, stale, ...).",
    ),
    (
        UPSTREAM_REQUESTS,
        MetricType::Counter,
        "Calls to systems of record per upstream, endpoint and outcome.",
    ),
    (
        UPSTREAM_DURATION,
        MetricType::Histogram,
        "Time of a call to a system of record, per upstream and endpoint.",
    ),
    (
        CONTRACT_VIOLATIONS,
        MetricType::Counter,
        "Upstream payloads refused for breaking protocol v1, per upstream and entity.",
    ),
    (
        BREAKER_STATE,
        MetricType::Gauge,
        "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.",
    ),
    (
        RATELIMIT_REJECTED,
        MetricType::Counter,
        "Upstream calls refused by the rate limit, per upstream and priority.",
    ),
    (
        RATELIMIT_LIMIT,
        MetricType::Gauge,
        "The rate limit in force per upstream, in calls a second.",
    ),
    (
        GRAPHQL_DURATION,
        MetricType::Histogram,
        "Time to answer a storefront GraphQL request.",
    ),
    (
        GRAPHQL_REQUESTS,
        MetricType::Counter,
        "Storefront GraphQL requests answered, per outcome (ok, error).",
    ),
    (
        CHECKOUT_VERIFICATIONS,
        MetricType::Counter,
        "verifyCheckout calls per outcome (ok, mismatch, unavailable, bad_input).",
    ),
    (
        CHECKOUT_MISMATCHES,
        MetricType::Counter,
        "Checkout mismatches per kind, as the schema names them.",
    ),
    (
        SIGN_INS_REFUSED,
        MetricType::Counter,
        "Sign-ins with never-seen customer tokens refused by the unknown-token limit.",
    ),
    (
        SIGN_INS_SHARED,
        MetricType::Counter,
        "Sign-ins with never-seen tokens from addresses with no room of their own (one shared allowance).",
    ),
    (
        TOKENS_REFUSED,
        MetricType::Counter,
        "Customer tokens refused before any CRM call, per reason.",
    ),
    (
        EVENTS,
        MetricType::Counter,
        "Change events per source and outcome (applied, duplicate, stale, rejected, dead_lettered).",
    ),
    (
        DLQ_DEPTH,
        MetricType::Gauge,
        "Dead-lettered events waiting for an operator.",
    ),
    (
        DLQ_TRIMMED,
        MetricType::Counter,
        "Dead letters dropped, oldest first, because the queue was full.",
    ),
    (
        EVENT_VISIBLE,
        MetricType::Histogram,
        "From a change at its source to a replica serving it, per where (origin, peer).",
    ),
    (
        RECONCILE_CHECKED,
        MetricType::Counter,
        "Keys a reconciliation pass compared with their owner, per entity.",
    ),
    (
        RECONCILE_DRIFT,
        MetricType::Counter,
        "Keys a reconciliation pass found different from their owner, per entity.",
    ),
    (
        RECONCILE_DURATION,
        MetricType::Histogram,
        "Time of a reconciliation pass, per entity.",
    ),
    (
        EXCEPTIONS,
        MetricType::Counter,
        "Mismatches recorded for their owners, per system, entity and found_by.",
    ),
    (
        TOKEN_FETCHES,
        MetricType::Counter,
        "OAuth2 tokens fetched for a system, per upstream and outcome.",
    ),
    (
        CONNECTIONS_OPEN,
        MetricType::Gauge,
        "Connections open, per listener.",
    ),
    (
        CONNECTIONS_REFUSED,
        MetricType::Counter,
        "New connections refused because every connection was busy at the cap, per listener.",
    ),
    (
        CONNECTIONS_CLOSED,
        MetricType::Counter,
        "Connections Moat closed, per listener and reason.",
    ),
    (
        REDIS_STATE,
        MetricType::Gauge,
        "The shared Redis per mode (single, cluster, sentinel): 1 while it answers, 0 while replicas go on without it.",
    ),
    (
        REDIS_RECONNECTS,
        MetricType::Counter,
        "Times the shared Redis answered again after it did not, per mode.",
    ),
    (
        REDIS_REFRESH_DURATION,
        MetricType::Histogram,
        "Time to find Redis again after a failure (Sentinel search, reconnection, cluster slot refresh), per mode.",
    ),
    (
        ANSWERS_UNREAD_REFUSED,
        MetricType::Counter,
        "Answers replaced by a 503 because their connection held too many unread bytes, per listener.",
    ),
    (
        BUILD_INFO,
        MetricType::Gauge,
        "Always 1: the version and commit of the running binary.",
    ),
    (
        PROCESS_CPU,
        MetricType::Counter,
        "User and system CPU time the process has spent, in seconds.",
    ),
    (
        PROCESS_RESIDENT,
        MetricType::Gauge,
        "Resident memory of the process, in bytes.",
    ),
    (
        PROCESS_VIRTUAL,
        MetricType::Gauge,
        "Virtual memory of the process, in bytes.",
    ),
    (
        PROCESS_OPEN_FDS,
        MetricType::Gauge,
        "Open file descriptors (sockets included) of the process.",
    ),
    (
        PROCESS_MAX_FDS,
        MetricType::Gauge,
        "The most file descriptors the process may open (its soft limit).",
    ),
    (
        PROCESS_START,
        MetricType::Gauge,
        "When the process started, in Unix seconds.",
    ),
    (
        EDGE_KEYS_CAPPED,
        MetricType::Counter,
        "Shareable answers whose surrogate keys passed the size cap, so an entity was named by its coarse key (price:all), per entity.",
    ),
    (
        EDGE_PURGES,
        MetricType::Counter,
        "Purge requests to the edge per target and outcome (sent, failed: to be retried, dropped: past the backlog).",
    ),
    (
        EDGE_PURGE_BACKLOG,
        MetricType::Gauge,
        "Changes waiting to be purged at each edge target.",
    ),
];

/// Installs the subscriber once: log lines to stderr (`RUST_LOG` wins over
/// the config) and, when configured, span export (`traces`).
pub fn init_logs(config: &Telemetry) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: a file or a log collector
    // gets plain text, not escape codes.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let logs = match config.log_format {
        LogFormat::Json => logs.json().boxed(),
        LogFormat::Pretty => logs.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(traces::layer(&config.traces))
        .with(logs.with_filter(filter))
        .try_init();
}

/// The process-wide Prometheus recorder (metrics are global by nature; an
/// in-process test with two gateways shares one). The first call installs it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let latency_buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_duration_seconds".into()),
                &latency_buckets,
            )
            .expect("bucket list is not empty")
            .set_buckets_for_metric(Matcher::Full(EVENT_VISIBLE.into()), &latency_buckets)
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        handle
    })
}

/// Gives every exported family its `# HELP` line, and sets the build's
/// series, which never changes.
fn describe() {
    for (name, kind, help) in EXPORTED {
        if process::is_process(name) {
            continue;
        }
        match kind {
            MetricType::Counter => metrics::describe_counter!(name, help),
            MetricType::Gauge => metrics::describe_gauge!(name, help),
            MetricType::Histogram => metrics::describe_histogram!(name, help),
        }
    }
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => option_env!("MOAT_COMMIT").unwrap_or("unknown"),
    )
    .set(1.0);
}

/// What `/metrics` shows: every family the recorder holds, then the
/// process's own.
pub fn render() -> String {
    let mut text = prometheus().render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&process::render());
    text
}

/// Drains histograms into what `/metrics` shows. Without the exporter's own
/// listener nothing else does: the gateway's housekeeping calls it, and
/// shutdown once more at the end.
pub fn flush() {
    prometheus().run_upkeep();
}

pub fn upstream_request(
    system: System,
    endpoint: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    let record = |(requests, duration): &(Counter, Histogram)| {
        requests.increment(1);
        duration.record(took.as_secs_f64());
    };
    let key = (system, endpoint, outcome);
    if let Some(made) = UPSTREAM.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return record(made);
    }
    prometheus();
    let upstream = system.name();
    let made = (
        metrics::counter!(UPSTREAM_REQUESTS, "upstream" => upstream, "endpoint" => endpoint, "outcome" => outcome),
        metrics::histogram!(UPSTREAM_DURATION, "upstream" => upstream, "endpoint" => endpoint),
    );
    record(&made);
    UPSTREAM
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, made);
}

/// The upstream series by system, endpoint and outcome, each made once
/// (after the recorder is installed): making one from its labels took
/// about 7,000 instructions a call, more than the rest of its bookkeeping.
type UpstreamSeries =
    HashMap<(System, &'static str, &'static str), (Counter, Histogram), CacheHasher>;
static UPSTREAM: LazyLock<RwLock<UpstreamSeries>> = LazyLock::new(RwLock::default);

pub fn contract_violation(system: System, entity: &'static str) {
    metrics::counter!(CONTRACT_VIOLATIONS, "upstream" => system.name(), "entity" => entity)
        .increment(1);
}

pub fn token_fetch(system: System, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!(TOKEN_FETCHES, "upstream" => system.name(), "outcome" => outcome)
        .increment(1);
}

/// One change made by an operator (or a reload, or the fleet): who, what,
/// where, before and after. Logged (`moat::audit`) and kept, the last
/// [`AUDIT_KEPT`], for the console.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Audit {
    /// Unix seconds.
    pub at: u64,
    /// The admin token that made the change (by its name), or what did
    /// (`reload`, a replica through the fleet).
    pub who: String,
    /// What the caller said it was (`cli:$USER`, `console`), unchecked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub action: String,
    pub target: String,
    /// The replica that made the change.
    pub replica: String,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

/// How many audit entries a process keeps.
pub const AUDIT_KEPT: usize = 200;

static AUDITS: std::sync::Mutex<std::collections::VecDeque<Audit>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Logs `audit` and keeps it.
pub fn audit(audit: Audit) {
    tracing::info!(
        target: "moat::audit",
        who = %audit.who,
        via = audit.via.as_deref().unwrap_or("-"),
        action = %audit.action,
        target_name = %audit.target,
        replica = %audit.replica,
        old = %audit.old,
        new = %audit.new,
        "change"
    );
    let mut kept = AUDITS.lock().unwrap_or_else(|p| p.into_inner());
    if kept.len() == AUDIT_KEPT {
        kept.pop_front();
    }
    kept.push_back(audit);
}

/// The kept audit entries, newest first.
pub fn recent_audits() -> Vec<Audit> {
    let kept = AUDITS.lock().unwrap_or_else(|p| p.into_inner());
    kept.iter().rev().cloned().collect()
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn event_visible(place: &'static str, after: Duration) {
    metrics::histogram!(EVENT_VISIBLE, "where" => place).record(after.as_secs_f64());
}

pub fn event(source: &'static str, outcome: &'static str) {
    metrics::counter!(EVENTS, "source" => source, "outcome" => outcome).increment(1);
}

pub fn edge_keys_capped(entity: &'static str) {
    metrics::counter!(EDGE_KEYS_CAPPED, "entity" => entity).increment(1);
}

pub fn edge_purge(target: &str, outcome: &'static str) {
    metrics::counter!(EDGE_PURGES, "target" => target.to_string(), "outcome" => outcome)
        .increment(1);
}

pub fn edge_purge_backlog(target: &str, waiting: usize) {
    metrics::gauge!(EDGE_PURGE_BACKLOG, "target" => target.to_string()).set(waiting as f64);
}

/// A storefront request answered: how long it took, and whether the
/// answer carried any error.
pub fn graphql_request(took: Duration, ok: bool) {
    let series = &*GRAPHQL;
    series.duration.record(took.as_secs_f64());
    if ok { &series.ok } else { &series.error }.increment(1);
}

/// A storefront request refused before it ran (unparsable, invalid, too
/// complex, unauthenticated): an error answer.
pub fn graphql_refused() {
    GRAPHQL.error.increment(1);
}

/// The storefront's series, made once (as `UPSTREAM`'s are).
struct GraphqlSeries {
    duration: Histogram,
    ok: Counter,
    error: Counter,
}

static GRAPHQL: LazyLock<GraphqlSeries> = LazyLock::new(|| {
    prometheus();
    GraphqlSeries {
        duration: metrics::histogram!(GRAPHQL_DURATION),
        ok: metrics::counter!(GRAPHQL_REQUESTS, "outcome" => "ok"),
        error: metrics::counter!(GRAPHQL_REQUESTS, "outcome" => "error"),
    }
});

pub fn checkout_verification(outcome: &'static str) {
    metrics::counter!(CHECKOUT_VERIFICATIONS, "outcome" => outcome).increment(1);
}

pub fn checkout_mismatch(kind: &'static str) {
    metrics::counter!(CHECKOUT_MISMATCHES, "kind" => kind).increment(1);
}
