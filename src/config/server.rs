//! `[server]`: the public listener (GraphQL, health, webhooks), its query
//! limits, connections, per-client limits and persisted queries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ByteSize, IpRange, Problems, Section};

/// The public listener: GraphQL, health, webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The header a trusted proxy names the client's address in: one
    /// address, or a list (`X-Forwarded-For`: client, then each proxy),
    /// read from the right past every trusted proxy. Read only on requests
    /// whose peer is in `trusted_proxies`; from anyone else it is ignored.
    pub client_ip_header: String,
    /// Peers (addresses or CIDR ranges) whose `client_ip_header` is
    /// believed: the load balancers and CDNs in front of Moat. Empty: the
    /// client is always the peer address.
    pub trusted_proxies: Vec<IpRange>,
    /// Per-client limits on the public listener.
    pub client_limit: ClientLimit,
    /// Connection limits and timeouts of the public listener.
    pub connections: Connections,
    /// Queries sent by hash (Apollo's automatic persisted queries), and
    /// the allow-list mode for production.
    pub persisted_queries: PersistedQueries,
    /// How much lower (a nice increment, 0 to 19) the threads that build
    /// answers run than those answering stored ones at the door, so a
    /// storm of misses does not delay hits. 0: the same priority (still
    /// apart, so hits never queue behind misses).
    pub full_path_nice: i32,
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
            client_ip_header: "x-forwarded-for".into(),
            trusted_proxies: Vec::new(),
            client_limit: ClientLimit::default(),
            connections: Connections::default(),
            persisted_queries: PersistedQueries::default(),
            full_path_nice: 10,
        }
    }
}

impl Section for Server {
    fn problems(&self, p: &mut Problems) {
        p.check(
            self.max_body_bytes.bytes() >= 1024,
            "max_body_bytes",
            "must be at least 1KiB",
        );
        p.check(
            !self.request_timeout.is_zero(),
            "request_timeout",
            "must be more than 0s",
        );
        p.check(
            !self.deadline.is_zero() && self.deadline <= self.request_timeout,
            "deadline",
            "must be more than 0s and at most server.request_timeout",
        );
        p.check(
            (Duration::from_millis(100)..=Duration::from_secs(300))
                .contains(&self.shutdown_timeout),
            "shutdown_timeout",
            "must be between 100ms and 5m",
        );
        p.check(
            self.shutdown_delay < self.shutdown_timeout,
            "shutdown_delay",
            "must be shorter than server.shutdown_timeout",
        );
        p.check(
            axum::http::HeaderName::from_bytes(self.client_ip_header.as_bytes()).is_ok(),
            "client_ip_header",
            "must be an HTTP header name (x-forwarded-for)",
        );
        p.check(
            !self.graphiql || self.introspection,
            "graphiql",
            "GraphiQL needs server.introspection = true (its docs are built from it)",
        );
        p.check(
            (0..=19).contains(&self.full_path_nice),
            "full_path_nice",
            "must be between 0 and 19",
        );
        self.query_limit_problems(p);
        p.within("client_limit", |p| self.client_limit.problems(p));
        p.within("connections", |p| self.connections.problems(p));
        p.within("persisted_queries", |p| self.persisted_queries.problems(p));
    }

    /// What each request reads as it comes applies at once: body size,
    /// timeouts, the deadline, how long shutdown takes, client limits and
    /// which persisted queries run. The address, connections, GraphiQL and
    /// the query limits shape what was built at start (the listener, the
    /// schema, the document cache).
    fn with_live(&self, new: &Self) -> Self {
        Server {
            max_body_bytes: new.max_body_bytes,
            request_timeout: new.request_timeout,
            deadline: new.deadline,
            shutdown_timeout: new.shutdown_timeout,
            shutdown_delay: new.shutdown_delay,
            client_limit: new.client_limit.clone(),
            client_ip_header: new.client_ip_header.clone(),
            trusted_proxies: new.trusted_proxies.clone(),
            persisted_queries: self.persisted_queries.with_live(&new.persisted_queries),
            ..self.clone()
        }
    }
}

impl Server {
    fn query_limit_problems(&self, p: &mut Problems) {
        p.check(
            (2..=64).contains(&self.max_query_depth),
            "max_query_depth",
            "must be between 2 and 64",
        );
        p.check(
            self.max_query_complexity >= 10,
            "max_query_complexity",
            "must be at least 10",
        );
        p.check(
            (15..=100).contains(&self.max_introspection_depth),
            "max_introspection_depth",
            "must be between 15 (the standard introspection query) and 100",
        );
        p.check(
            (100..=100_000).contains(&self.max_query_tokens),
            "max_query_tokens",
            "must be between 100 and 100000",
        );
        p.check(
            (1..=10_000).contains(&self.max_query_aliases),
            "max_query_aliases",
            "must be between 1 and 10000",
        );
        p.check(
            (1..=64).contains(&self.max_fragment_depth),
            "max_fragment_depth",
            "must be between 1 and 64",
        );
    }
}

/// How queries may be sent by their SHA-256 instead of their text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl Section for PersistedQueries {
    fn problems(&self, p: &mut Problems) {
        p.check(
            self.mode != PersistedMode::AllowList || self.manifest.is_some(),
            "manifest",
            "allow_list needs a manifest: the operations that may run",
        );
        if let Some(file) = &self.manifest {
            p.check(
                file.is_file(),
                "manifest",
                format!("{}: no such file", file.display()),
            );
        }
        p.check(
            self.max_bytes.bytes() >= 64 * 1024,
            "max_bytes",
            "must be at least 64KiB",
        );
    }

    /// The mode and the manifest are read again; the registered queries'
    /// memory was sized at start.
    fn with_live(&self, new: &Self) -> Self {
        PersistedQueries {
            mode: new.mode,
            manifest: new.manifest.clone(),
            ..self.clone()
        }
    }
}

/// What one listener allows its connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Most bytes of answers a connection may hold unread by its client
    /// (HTTP/2 streams whose window the client keeps shut): an answer
    /// past it is replaced by a 503, so a client that does not read
    /// cannot make the process hold its answers.
    pub max_unread: ByteSize,
    /// How long an answer may wait for its client to read any of it
    /// before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub unread_timeout: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            max: 4096,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            http2: true,
            http2_max_streams: 100,
            max_unread: ByteSize(4 * 1024 * 1024),
            unread_timeout: Duration::from_secs(10),
        }
    }
}

/// The listener holds its connections to these from its start.
impl Section for Connections {
    fn problems(&self, p: &mut Problems) {
        p.check(
            (1..=1_000_000).contains(&self.max),
            "max",
            "must be between 1 and 1000000",
        );
        p.check(
            (Duration::from_millis(100)..=Duration::from_secs(10))
                .contains(&self.header_read_timeout),
            "header_read_timeout",
            "must be between 100ms and 10s",
        );
        p.check(
            (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.idle_timeout),
            "idle_timeout",
            "must be between 100ms and 1h",
        );
        p.check(
            (1..=1000).contains(&self.http2_max_streams),
            "http2_max_streams",
            "must be between 1 and 1000",
        );
        p.check(
            self.max_unread.bytes() >= 64 * 1024,
            "max_unread",
            "must be at least 64KiB",
        );
        p.check(
            (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.unread_timeout),
            "unread_timeout",
            "must be between 100ms and 1h",
        );
    }
}

/// Inbound limits per client: by API key header when sent, else by IP.
/// Over the limit: HTTP 429 with Retry-After and a RATE_LIMITED error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Every key applies at once (the limiter is rebuilt).
impl Section for ClientLimit {
    fn problems(&self, p: &mut Problems) {
        p.check(self.rps >= 1, "rps", "must be at least 1");
        p.check(self.burst >= 1, "burst", "must be at least 1");
        p.check(
            self.checkout_rps >= 1 && self.checkout_burst >= 1,
            "checkout_rps",
            "checkout_rps and checkout_burst must be at least 1",
        );
        p.check(
            axum::http::HeaderName::from_bytes(self.api_key_header.as_bytes()).is_ok(),
            "api_key_header",
            format!("{:?} is not a valid header name", self.api_key_header),
        );
    }

    fn with_live(&self, new: &Self) -> Self {
        new.clone()
    }
}
