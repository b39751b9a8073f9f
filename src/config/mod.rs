//! Typed configuration. Read once at start (and on SIGHUP) from TOML plus
//! `MOAT_*` environment variables, checked strictly, then turned into the
//! runtime settings each part holds. The doc comments here are the user docs
//! for `config/moat.toml`, which documents every key.

mod connector;
mod credentials;
mod load;
mod size;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use connector::{BatchStyle, Encoding, ForeignEvents, ROUTES, Route, Signature};
pub use load::{ConfigError, Problem, Secrets, SystemSecrets, redact};
pub use size::ByteSize;

/// The whole configuration. Every section has defaults, so an empty file is
/// a working demo config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub admin: Admin,
    pub upstream: Upstream,
    pub cache: Cache,
    pub redis: Redis,
    pub catalog: Catalog,
    pub checkout: Checkout,
    pub customers: Customers,
    pub events: Events,
    pub reconcile: Reconcile,
    /// The systems of record by name, each overriding `[upstream]`.
    pub systems: BTreeMap<String, SystemConfig>,
    /// Which system owns which record.
    pub entities: Entities,
    pub telemetry: Telemetry,
}

/// The public listener: GraphQL, health, webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address of the public listener (`MOAT_LISTEN`).
    pub listen: SocketAddr,
    /// Serve GraphiQL on `GET /graphql` for browsers. Off in production.
    /// Needs `introspection`.
    pub graphiql: bool,
    /// Answer introspection (`__schema`, `__type`): GraphiQL, code
    /// generators and client schema checks need it. Off in production.
    pub introspection: bool,
    /// Largest request body accepted; larger gets 413.
    pub max_body_bytes: ByteSize,
    /// Longest a whole HTTP request may take before it is answered 504.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Deepest selection nesting a query may have (`QUERY_TOO_COMPLEX` past it).
    pub max_query_depth: usize,
    /// Deepest nesting under `__schema` or `__type` (the standard
    /// introspection query needs 15).
    pub max_introspection_depth: usize,
    /// Highest query complexity (one per field, fragments included, lists
    /// multiplied by their page size) a query may have.
    pub max_query_complexity: usize,
    /// Most tokens (names, punctuation, values) in a query text, counted
    /// before it is parsed.
    pub max_query_tokens: usize,
    /// Most aliases in a query text.
    pub max_query_aliases: usize,
    /// Deepest chain of fragment spreads.
    pub max_fragment_depth: usize,
    /// Longest a GraphQL request waits on upstream data; fields still
    /// waiting then fail alone with UPSTREAM_UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Longest a shutdown (SIGTERM) may take in all: requests in flight
    /// finish within it, then background work, then the process exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// How long, at shutdown, Moat keeps serving with `/readyz` already
    /// failing, so load balancers stop sending before it stops accepting.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// Per-client limits on the public listener.
    pub client_limit: ClientLimit,
    /// Connection limits and timeouts of the public listener.
    pub connections: Connections,
    /// Queries sent by hash (Apollo's automatic persisted queries), and
    /// the allow-list mode for production.
    pub persisted_queries: PersistedQueries,
}

/// How queries may be sent by their SHA-256 instead of their text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistedQueries {
    /// `auto`: any query may be registered by sending it once with its
    /// hash, then sent by hash alone (APQ); `allow_list`: only the
    /// operations of `manifest` run, by hash or by text; `off`.
    pub mode: PersistedMode,
    /// An Apollo persisted-query manifest (`{"format":
    /// "apollo-persisted-query-manifest", "version": 1, "operations":
    /// [{"id", "body", ...}]}`), read at start and on reload. With
    /// `auto` its operations are known from the start.
    pub manifest: Option<PathBuf>,
    /// Memory for registered queries (`auto`).
    pub max_bytes: ByteSize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersistedMode {
    Off,
    Auto,
    AllowList,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        PersistedQueries {
            mode: PersistedMode::Auto,
            manifest: None,
            max_bytes: ByteSize(4 * 1024 * 1024),
        }
    }
}

/// What one listener allows its connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Connections {
    /// Most connections open at once. At the cap a new connection takes the
    /// place of the one idle longest; when none is idle it is refused
    /// (`moat_connections_refused_total`).
    pub max: usize,
    /// Longest a client may take to send a request's headers (a client
    /// trickling them is closed). At most 10s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may sit without a request. Behind
    /// a load balancer, keep it above the balancer's own idle timeout.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Serve HTTP/2 (cleartext, prior knowledge) beside HTTP/1.1.
    pub http2: bool,
    /// Most concurrent requests (streams) on one HTTP/2 connection.
    pub http2_max_streams: u32,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            max: 4096,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            http2: true,
            http2_max_streams: 100,
        }
    }
}

/// Inbound limits per client: by API key header when sent, else by IP.
/// Over the limit: HTTP 429 with Retry-After and a RATE_LIMITED error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimit {
    pub enabled: bool,
    /// Requests per second per client.
    pub rps: u32,
    pub burst: u32,
    /// Header naming the client; requests without it are limited by IP.
    pub api_key_header: String,
    /// `verifyCheckout` calls per second per client (each one is an ERP
    /// quote on checkout's reserved capacity).
    pub checkout_rps: u32,
    pub checkout_burst: u32,
}

impl Default for ClientLimit {
    fn default() -> Self {
        ClientLimit {
            enabled: false,
            rps: 50,
            burst: 100,
            api_key_header: "x-api-key".into(),
            checkout_rps: 2,
            checkout_burst: 5,
        }
    }
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            graphiql: true,
            introspection: true,
            max_body_bytes: ByteSize(2 * 1024 * 1024),
            request_timeout: Duration::from_secs(10),
            max_query_depth: 12,
            max_introspection_depth: 20,
            max_query_complexity: 5_000,
            max_query_tokens: 5_000,
            max_query_aliases: 100,
            max_fragment_depth: 10,
            deadline: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
            client_limit: ClientLimit::default(),
            connections: Connections::default(),
            persisted_queries: PersistedQueries::default(),
        }
    }
}

/// The admin listener: metrics and the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address of the admin listener (`MOAT_ADMIN_LISTEN`). Keep it private.
    pub listen: SocketAddr,
    /// Connection limits and timeouts of the admin listener.
    pub connections: Connections,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            connections: Connections {
                max: 256,
                ..Connections::default()
            },
        }
    }
}

/// Where the systems of record are and how Moat calls them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// Base URL of a server speaking upstream protocol v1 for every system
    /// (`MOAT_UPSTREAM_URL`). Unset: Moat starts the simulator in-process.
    pub url: Option<String>,
    /// The embedded simulator, used only when `url` is unset.
    pub embedded: Embedded,
    /// Longest one upstream HTTP attempt may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest a TCP connect to an upstream may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Most keys sent in one batch call; larger batches are split.
    pub max_batch: usize,
    /// How many Moat replicas share the upstreams. With Redis the limits
    /// are shared exactly; when Redis is unreachable each replica falls
    /// back to its share, the limit divided by this.
    pub replicas: u32,
    /// Rate limits: defaults, and per-system overrides under
    /// `[upstream.limits.pim]`, `.erp`, `.crm`, `.oms`.
    pub limits: Limits,
    /// Circuit breaker thresholds, the same for every system.
    pub breaker: BreakerConfig,
    /// Retries of idempotent reads and their budget.
    pub retry: Retry,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            url: None,
            embedded: Embedded::default(),
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            max_batch: 100,
            replicas: 1,
            limits: Limits::default(),
            breaker: BreakerConfig::default(),
            retry: Retry::default(),
        }
    }
}

/// Upstream rate limits. The top-level keys are the defaults; a system's
/// table overrides any of them for that system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Calls per second to one system, all priorities together.
    pub rps: u32,
    /// Calls that may go at once after a quiet spell.
    pub burst: u32,
    /// Share (0 to 0.9) of the limit only checkout may use.
    pub checkout_reserve: f64,
    /// Longest a browse miss waits for a permit before it is served stale
    /// or fails with RATE_LIMITED.
    #[serde(with = "humantime_serde")]
    pub browse_wait: Duration,
    pub pim: LimitOverride,
    pub erp: LimitOverride,
    pub crm: LimitOverride,
    pub oms: LimitOverride,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rps: 200,
            burst: 100,
            checkout_reserve: 0.2,
            browse_wait: Duration::from_millis(50),
            pim: LimitOverride::default(),
            erp: LimitOverride::default(),
            crm: LimitOverride::default(),
            oms: LimitOverride::default(),
        }
    }
}

/// One system's limit, the defaults with its overrides applied; what the
/// upstream rate limiter runs on, and what `PUT /admin/limits` changes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, Deserialize)]
pub struct SystemLimit {
    /// Calls per second to the system, all priorities together.
    pub rps: u32,
    /// Calls that may go at once after a quiet spell.
    pub burst: u32,
    /// Fraction (0 to 0.9) of `rps` and `burst` only checkout may use.
    pub checkout_reserve: f64,
    /// Longest a browse miss waits for a permit.
    #[serde(with = "humantime_serde")]
    pub browse_wait: Duration,
}

impl SystemLimit {
    /// What is wrong with these settings, if anything (config and the
    /// admin API both go by this).
    pub fn problem(&self) -> Option<String> {
        if self.rps == 0 {
            Some("rps must be at least 1".into())
        } else if self.burst == 0 {
            Some("burst must be at least 1".into())
        } else if !(0.0..=0.9).contains(&self.checkout_reserve) {
            Some("checkout_reserve must be between 0.0 and 0.9".into())
        } else if self.browse_wait > Duration::from_secs(10) {
            Some("browse_wait must be at most 10s".into())
        } else {
            None
        }
    }
}

/// Any subset of the limit keys, for one system.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitOverride {
    pub rps: Option<u32>,
    pub burst: Option<u32>,
    pub checkout_reserve: Option<f64>,
    #[serde(with = "humantime_serde::option")]
    pub browse_wait: Option<Duration>,
}

/// When a system's breaker opens and how it recovers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Failure fraction over `window` that opens it (once `min_calls` ran).
    pub failure_rate: f64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub min_calls: u32,
    /// Failures in a row that open it regardless of the rate.
    pub consecutive_failures: u32,
    /// How long it stays open before letting probes through.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Probes let through half-open; this many successes close it.
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            min_calls: 20,
            consecutive_failures: 5,
            cooldown: Duration::from_secs(5),
            probes: 3,
        }
    }
}

/// Retries, for idempotent reads only, paid from a budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Attempts per call, the first included (1: never retry).
    pub max_attempts: u32,
    /// First backoff; doubled per retry, with jitter.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Retries allowed as a fraction of recent requests.
    pub budget_ratio: f64,
    /// Retries per second allowed regardless of traffic.
    pub budget_floor: u32,
    /// How far back "recent" reaches.
    #[serde(with = "humantime_serde")]
    pub budget_window: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 3,
            backoff: Duration::from_millis(25),
            budget_ratio: 0.1,
            budget_floor: 5,
            budget_window: Duration::from_secs(10),
        }
    }
}

/// The in-process demo upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Embedded {
    /// Number of products in the seeded catalog.
    pub products: usize,
    /// Seed of the catalog: same seed, same data.
    pub seed: u64,
}

impl Default for Embedded {
    fn default() -> Self {
        Embedded {
            products: 10_000,
            seed: 42,
        }
    }
}

/// Cache settings: jitter for all, freshness and size per entity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    /// Fraction (0 to 0.5) by which each entry's TTLs are shortened at
    /// random, so entries filled together do not all expire together.
    pub jitter: f64,
    pub product: EntityCache,
    pub category: EntityCache,
    pub price: EntityCache,
    pub inventory: EntityCache,
    pub customer: EntityCache,
    pub order: EntityCache,
    pub responses: Responses,
}

/// `[cache.responses]`: whole answers to anonymous queries, served without
/// running GraphQL while every L1 entry they were built from is unchanged
/// and fresh (`cache::responses`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Responses {
    pub enabled: bool,
    pub max_bytes: ByteSize,
}

impl Default for Responses {
    fn default() -> Self {
        Responses {
            enabled: true,
            max_bytes: ByteSize(32 * 1024 * 1024),
        }
    }
}

impl Default for Cache {
    fn default() -> Self {
        let entity = |soft: u64, hard: u64, max_stale: u64, mib: u64| EntityCache {
            soft_ttl: Duration::from_secs(soft),
            hard_ttl: Duration::from_secs(hard),
            max_stale: Duration::from_secs(max_stale),
            negative_ttl: Duration::from_secs(30),
            l1_max_bytes: ByteSize(mib * 1024 * 1024),
        };
        Cache {
            jitter: 0.1,
            product: entity(300, 1_800, 86_400, 128),
            category: entity(300, 1_800, 86_400, 4),
            price: entity(60, 300, 3_600, 160),
            inventory: entity(15, 60, 900, 64),
            customer: entity(60, 300, 900, 16),
            order: entity(30, 120, 600, 16),
            responses: Responses::default(),
        }
    }
}

/// Freshness and size of one entity's cache.
///
/// A value is fresh until `soft_ttl`; until `hard_ttl` it is served stale
/// while one background refresh runs; after that it is fetched before it is
/// served, and only if that fetch fails is it served stale, up to
/// `max_stale`. `soft_ttl <= hard_ttl <= max_stale`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityCache {
    #[serde(with = "humantime_serde")]
    pub soft_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub hard_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
    /// How long "the upstream says this does not exist" is remembered.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Memory budget of the in-process (L1) cache for this entity.
    pub l1_max_bytes: ByteSize,
}

/// The shared Redis tier (L2, invalidation, shared limits). Off unless a URL
/// is set here or in `MOAT_REDIS_URL`. Moat starts and serves without it
/// when it is down, and uses it again by itself when it returns.
#[derive(Debug, Clone, Deserialize)]
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

/// What the storefront sells and how stock is shown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Catalog {
    /// Currency of `Product.price` when the query names none.
    pub default_currency: String,
    /// Currencies a query may ask for (ISO 4217 codes).
    pub currencies: Vec<String>,
    /// Price segment of anonymous shoppers.
    pub default_segment: String,
    /// Stock at or below this is `LOW_STOCK`.
    pub low_stock_threshold: u32,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            default_currency: "EUR".into(),
            currencies: vec!["EUR".into(), "USD".into()],
            default_segment: "default".into(),
            low_stock_threshold: 5,
        }
    }
}

/// `verifyCheckout`: how large a cart may be, and how long a price token
/// Moat issued stays valid. Token secrets come from the environment only
/// (`MOAT_PRICE_TOKEN_SECRET`, `MOAT_PRICE_TOKEN_PREVIOUS_SECRET`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checkout {
    /// Most units one cart line may ask for (1 to 100000).
    pub max_quantity: u32,
    /// Most lines one verification may carry (1 to 500, the most one ERP
    /// quote takes).
    pub max_lines: usize,
    /// How long after Moat showed a price its `priceToken` still verifies;
    /// an older token is an `INVALID_TOKEN` mismatch (1m to 30d).
    #[serde(with = "humantime_serde")]
    pub price_token_max_age: Duration,
    /// Most `verifyCheckout` fields one request may hold (1 to 10): each
    /// is an ERP quote on checkout's reserved capacity.
    pub max_per_request: usize,
}

impl Default for Checkout {
    fn default() -> Self {
        Checkout {
            max_quantity: 999,
            max_lines: 100,
            price_token_max_age: Duration::from_secs(24 * 3600),
            max_per_request: 1,
        }
    }
}

/// Signed-in shoppers (`Authorization: Bearer <customer token>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Customers {
    /// CRM lookups per second (per replica) for tokens never seen before;
    /// tokens already cached are not limited by this. Beyond it, a new
    /// token's customer fields fail with RATE_LIMITED, so a flood of
    /// made-up tokens cannot spend the CRM's limit.
    pub unknown_token_rps: u32,
    pub unknown_token_burst: u32,
}

impl Default for Customers {
    fn default() -> Self {
        Customers {
            unknown_token_rps: 10,
            unknown_token_burst: 20,
        }
    }
}

/// Change events (`POST /events/{source}`). Secrets come from the
/// environment only: `MOAT_EVENTS_SECRET`, `MOAT_EVENTS_SECRET_{SOURCE}`.
#[derive(Debug, Clone, Deserialize)]
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

/// One system of record (`[systems.NAME]`): where it is, how Moat
/// authenticates to it, and anything of `[upstream]` it does differently.
/// Secrets come from the environment only: `MOAT_{NAME}_TOKEN`,
/// `MOAT_{NAME}_USER` and `MOAT_{NAME}_PASSWORD`, `MOAT_{NAME}_CLIENT_ID`
/// and `MOAT_{NAME}_CLIENT_SECRET`; `MOAT_{NAME}_URL` overrides `url`.
/// Without `auth` the variables set choose it; with one, a variable it
/// does not read stops the start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// Base URL of its protocol v1 endpoints; unset: `upstream.url` (or the
    /// embedded simulator).
    pub url: Option<String>,
    /// What it speaks: `v1` (Moat's protocol, the default) or `rest` (its
    /// own API, read through `routes`).
    pub protocol: Option<String>,
    /// With `protocol = "rest"`: how each thing Moat reads from it is asked
    /// for and mapped (`[systems.NAME.routes.ROUTE]`).
    pub routes: std::collections::BTreeMap<String, Route>,
    /// With `protocol = "rest"`: its change events, in its own form.
    pub events: Option<ForeignEvents>,
    #[serde(with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    pub connect_timeout: Option<Duration>,
    pub max_batch: Option<usize>,
    /// Unset: what its credential variables say (a token: bearer, a user
    /// and password: basic; none set: no credentials).
    pub auth: Option<Auth>,
    pub tls: Tls,
    /// Its rate limit (over `[upstream.limits]`).
    pub limits: LimitOverride,
    /// Its breaker thresholds (over `[upstream.breaker]`).
    pub breaker: BreakerOverride,
    /// Its retries (over `[upstream.retry]`).
    pub retry: RetryOverride,
    /// Who owns it, and how to reach them, for the status page and
    /// exceptions.
    pub owner: Option<String>,
    pub contact: Option<String>,
    /// Whether it sends change events to `/events/NAME` (unset: yes), so
    /// its events secret must be set.
    pub sends_events: Option<bool>,
}

/// How Moat proves who it is to a system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    /// `Authorization: Bearer $MOAT_{NAME}_TOKEN`.
    Bearer,
    /// HTTP basic: `$MOAT_{NAME}_USER`, `$MOAT_{NAME}_PASSWORD`.
    Basic,
    /// A header of its own carrying `$MOAT_{NAME}_TOKEN`.
    Header { name: String },
    /// OAuth2: a token from `token_url` (a URL, or a path on the system's
    /// own host; `MOAT_{NAME}_TOKEN_URL` overrides it) for
    /// `$MOAT_{NAME}_CLIENT_ID` / `$MOAT_{NAME}_CLIENT_SECRET`, cached and
    /// refreshed before it expires. `grant = "password"` also sends
    /// `$MOAT_{NAME}_USER` / `$MOAT_{NAME}_PASSWORD` (Akeneo's flow).
    Oauth2 {
        token_url: String,
        scope: Option<String>,
        #[serde(default)]
        grant: Grant,
    },
}

/// The OAuth2 grant Moat uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// RFC 6749 §4.4: the client's own credentials.
    #[default]
    ClientCredentials,
    /// RFC 6749 §4.3: a user's name and password beside the client's.
    Password,
}

/// TLS beyond the system's trust store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// A PEM file of extra CA certificates (a private CA).
    pub ca_file: Option<PathBuf>,
    /// A PEM file holding the client certificate and its key (mutual TLS).
    pub client_identity: Option<PathBuf>,
}

/// Any subset of `[upstream.breaker]`, for one system.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerOverride {
    pub failure_rate: Option<f64>,
    #[serde(with = "humantime_serde::option")]
    pub window: Option<Duration>,
    pub min_calls: Option<u32>,
    pub consecutive_failures: Option<u32>,
    #[serde(with = "humantime_serde::option")]
    pub cooldown: Option<Duration>,
    pub probes: Option<u32>,
}

/// Any subset of `[upstream.retry]`, for one system.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOverride {
    pub max_attempts: Option<u32>,
    #[serde(with = "humantime_serde::option")]
    pub backoff: Option<Duration>,
    pub budget_ratio: Option<f64>,
    pub budget_floor: Option<u32>,
    #[serde(with = "humantime_serde::option")]
    pub budget_window: Option<Duration>,
}

/// The ownership map: the system of record of each record, by name (a
/// `[systems.NAME]`, or one of `pim`, `erp`, `crm`, `oms`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Entities {
    pub products: String,
    pub categories: String,
    pub prices: String,
    pub inventory: String,
    pub customers: String,
    pub orders: String,
}

impl Default for Entities {
    fn default() -> Self {
        Entities {
            products: "pim".into(),
            categories: "pim".into(),
            prices: "erp".into(),
            inventory: "erp".into(),
            customers: "crm".into(),
            orders: "oms".into(),
        }
    }
}

/// One system's settings with every default applied: what its client is
/// built from.
#[derive(Debug, Clone)]
pub struct SystemSettings {
    pub name: String,
    /// `None`: the embedded simulator.
    pub url: Option<String>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_batch: usize,
    pub limit: SystemLimit,
    pub breaker: BreakerConfig,
    pub retry: Retry,
    pub auth: Auth,
    pub tls: Tls,
    pub owner: Option<String>,
    pub contact: Option<String>,
}

/// Scheduled reconciliation: what Moat holds compared with its systems of
/// record, at the lowest upstream priority (idle capacity only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reconcile {
    /// Run passes on a schedule (`POST /admin/reconcile/{entity}` works
    /// either way).
    pub enabled: bool,
    /// How often each entity is checked, fleet-wide.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Which ones: `prices`, `inventory`, `products`, `orders`.
    pub entities: Vec<String>,
    /// Keys re-read per upstream call.
    pub batch_size: usize,
    /// Most upstream calls one pass may make; the rest waits for the next.
    pub max_calls: usize,
    /// Longest one pass may take (it yields to all other traffic, so under
    /// load it is slow); it then reports what it checked.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// How long a replica holds a pass's lease without renewing it; if it
    /// dies, another takes the next pass after this.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for Reconcile {
    fn default() -> Self {
        Reconcile {
            enabled: true,
            interval: Duration::from_secs(15 * 60),
            entities: ["prices", "inventory", "products", "orders"]
                .map(String::from)
                .to_vec(),
            batch_size: 100,
            max_calls: 2_000,
            max_duration: Duration::from_secs(10 * 60),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

/// Logs and traces.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// `pretty` for people, `json` for log pipelines.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `moat=debug,info`; `RUST_LOG` wins.
    pub log_level: String,
    pub traces: Traces,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            traces: Traces::default(),
        }
    }
}

/// `[telemetry.traces]`: OpenTelemetry traces, off unless an endpoint is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traces {
    /// Base URL of an OTLP/HTTP receiver (`http://collector:4318`); spans
    /// go to `{otlp_endpoint}/v1/traces`. Empty: no traces, no propagation.
    pub otlp_endpoint: String,
    pub protocol: OtlpProtocol,
    /// Share of requests without a sampled `traceparent` that are traced
    /// (0.0 to 1.0). A storefront's sampled trace is always followed.
    pub sample_ratio: f64,
    /// `service.name` of every span.
    pub service_name: String,
}

impl Default for Traces {
    fn default() -> Self {
        Traces {
            otlp_endpoint: String::new(),
            protocol: OtlpProtocol::Protobuf,
            sample_ratio: 1.0,
            service_name: "moat".into(),
        }
    }
}

impl Traces {
    pub fn enabled(&self) -> bool {
        !self.otlp_endpoint.trim().is_empty()
    }
}

/// OTLP over HTTP: `http/protobuf` (what collectors expect by default) or
/// `http/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    Protobuf,
    #[serde(rename = "http/json")]
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}
