//! The link to the Redis that replicas share: L2, invalidation broadcast,
//! fill leases, the shared rate-limit buckets (and, later, event dedupe and
//! dead letters) all go through it.
//!
//! Redis is an accelerator, not a dependency: the connection is made lazily
//! (Moat starts with Redis down), every call has a short timeout and goes
//! through a breaker of its own, and a failed call is an `Unavailable` the
//! caller answers by going on without Redis.
//!
//! Redis is one server, a Redis Cluster or a Sentinel-watched primary
//! (`[redis] mode`); callers see one [`Conn`] whichever it is. On a
//! cluster, pipelines are split by slot here and multi-key commands
//! (`MGET`, `DEL`, `UNLINK`, `EXISTS`) by the client; scripts that take
//! several independent keys are called once per slot ([`RedisLink::by_slot`]).
//! No script needs two keys atomically, so no key carries a hash tag. With
//! Sentinels, a failed call has the primary looked up again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::error::Error;
use crate::resilience::breaker::{self, Breaker, Report};
use crate::resilience::ratelimit::SharedBuckets;
use crate::telemetry;

/// Redis could not be used for this call; carry on without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable;

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server.
    Single(String),
    /// A Redis Cluster, found from these seed nodes.
    Cluster(Vec<String>),
    /// The primary these Sentinels name `master`.
    Sentinel { nodes: Vec<String>, master: String },
}

impl Target {
    /// The target `[redis]` names; `None` when the tier is off.
    pub fn of(config: &crate::config::Redis) -> Option<Target> {
        use crate::config::RedisMode;
        if !config.enabled() {
            return None;
        }
        Some(match config.mode {
            RedisMode::Single => Target::Single(config.url.clone()?),
            RedisMode::Cluster => Target::Cluster(config.nodes.clone()),
            RedisMode::Sentinel => Target::Sentinel {
                nodes: config.nodes.clone(),
                master: config.master.clone()?,
            },
        })
    }

    fn mode(&self) -> &'static str {
        match self {
            Target::Single(_) => "single",
            Target::Cluster(_) => "cluster",
            Target::Sentinel { .. } => "sentinel",
        }
    }
}

/// Settings from `[redis]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: Target,
    /// Prefix of every key and channel, so environments can share a server.
    pub namespace: String,
    /// Longest one Redis call may take.
    pub timeout: Duration,
}

impl Settings {
    /// The link `[redis]` asks for; `None` when the tier is off.
    pub fn of(config: &crate::config::Redis) -> Option<Settings> {
        Some(Settings {
            target: Target::of(config)?,
            namespace: config.namespace.clone(),
            timeout: config.timeout,
        })
    }
}

/// Bump when the layout or encoding of anything stored changes, so a new
/// build never reads an old shape.
pub const LAYOUT_VERSION: &str = "v1";

/// A connection to whatever Redis is: a server (kept by a connection
/// manager, or a plain one for blocking reads) or a cluster, whose
/// pipelines are split by slot here (each slot's commands in order), so a
/// pipeline naming keys on several slots never fails with `CROSSSLOT`.
#[derive(Clone)]
pub enum Conn {
    Managed(ConnectionManager),
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            // A transaction must be on one slot anyway.
            Conn::Cluster(c) if !pipeline.is_transaction() => {
                Box::pin(by_slot(c.clone(), pipeline))
            }
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

/// The slot of a command's key, for one naming a single slot; `None` for
/// one without keys, or whose keys the cluster client splits itself
/// (`MGET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH` of several keys), or which
/// names its keys elsewhere (`XREAD`): those go alone.
fn slot_of(cmd: &Cmd) -> Option<Slot> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"MGET" | b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" | b"WATCH" if args.len() > 2 => {
            return None;
        }
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let keys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            if keys == 0 {
                return None;
            }
            args.get(3)?
        }
        b"XREAD" | b"XREADGROUP" | b"PING" | b"INFO" | b"SCRIPT" | b"CLUSTER" | b"SCAN"
        | b"KEYS" | b"DBSIZE" | b"FLUSHALL" | b"FLUSHDB" | b"CONFIG" | b"CLIENT" => return None,
        _ => args.get(1)?,
    };
    Some(Slot::for_key(key))
}

/// A pipeline on a cluster: one sub-pipeline per slot (its commands in
/// their order), and each multi-slot command alone (the client splits it),
/// all at once; the replies in the pipeline's order. A sub-pipeline that
/// fails fails the whole: nothing is dropped silently.
async fn by_slot(conn: ClusterConnection, pipeline: &Pipeline) -> redis::RedisResult<Vec<Value>> {
    let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let mut groups: Vec<(Option<Slot>, Vec<usize>)> = Vec::new();
    for (i, cmd) in cmds.iter().enumerate() {
        match slot_of(cmd) {
            Some(slot) => match groups.iter_mut().find(|(s, _)| *s == Some(slot)) {
                Some((_, members)) => members.push(i),
                None => groups.push((Some(slot), vec![i])),
            },
            None => groups.push((None, vec![i])),
        }
    }
    let sent = groups.iter().map(|(slot, members)| {
        let mut conn = conn.clone();
        let cmds = &cmds;
        async move {
            if slot.is_none() {
                return Ok(vec![conn.req_packed_command(cmds[members[0]]).await?]);
            }
            let mut sub = redis::pipe();
            for &i in members {
                sub.add_command(cmds[i].clone());
            }
            conn.req_packed_commands(&sub, 0, members.len()).await
        }
    });
    let replies = futures_util::future::try_join_all(sent).await?;
    let mut out = vec![Value::Nil; cmds.len()];
    for ((_, members), values) in groups.iter().zip(replies) {
        for (&i, value) in members.iter().zip(values) {
            out[i] = value;
        }
    }
    Ok(out)
}

/// The primaries' addresses in a `CLUSTER SLOTS` reply.
fn primaries(slots: &Value) -> Vec<(String, u16)> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut out: Vec<(String, u16)> = Vec::new();
    let Value::Array(ranges) = slots else {
        return out;
    };
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let Some(Value::Array(primary)) = parts.get(2) else {
            continue;
        };
        let host = primary.first().and_then(text);
        let port = match primary.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).ok(),
            _ => None,
        };
        if let (Some(host), Some(port)) = (host, port)
            && !out.iter().any(|(h, p)| *h == host && *p == port)
        {
            out.push((host, port));
        }
    }
    out
}

/// The primary a set of Sentinels names, found again after a failover.
struct Sentinels {
    sentinel: tokio::sync::Mutex<redis::sentinel::Sentinel>,
    master: String,
    /// Credentials for the primary (those of the Sentinels' URLs).
    node: redis::sentinel::SentinelNodeConnectionInfo,
    manager: ConnectionManagerConfig,
    /// The primary last found: its address, client and connection.
    current: ArcSwapOption<(String, redis::Client, ConnectionManager)>,
    /// A search is under way.
    searching: AtomicBool,
    /// When the last search started, so failures do not start one each.
    last_search: Mutex<Option<Instant>>,
}

impl Sentinels {
    /// Asks the Sentinels for the primary, and connects to it when it moved.
    async fn search(&self) -> redis::RedisResult<()> {
        let started = Instant::now();
        let client = self
            .sentinel
            .lock()
            .await
            .async_master_for(&self.master, Some(&self.node))
            .await?;
        let addr = client.get_connection_info().addr().to_string();
        let moved = self
            .current
            .load()
            .as_ref()
            .is_none_or(|current| current.0 != addr);
        if moved {
            let conn =
                ConnectionManager::new_lazy_with_config(client.clone(), self.manager.clone())?;
            self.current
                .store(Some(Arc::new((addr.clone(), client, conn))));
            tracing::info!(primary = %addr, master = %self.master, "Redis primary found from the Sentinels");
        }
        metrics::histogram!(telemetry::REDIS_REFRESH_DURATION, "mode" => "sentinel")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Starts a search in the background, unless one runs or just ran.
    fn search_soon(self: &Arc<Self>) {
        {
            let mut last = self.last_search.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_millis(200)) {
                return;
            }
            if self.searching.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let this = self.clone();
        // Bounded: every Sentinel and primary call has its own timeout.
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(Duration::from_secs(5), this.search())
                .await
                .unwrap_or_else(|_| {
                    Err(redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::TimedOut,
                    )))
                })
            {
                tracing::debug!(error = %e, master = %this.master, "no Redis primary from the Sentinels");
            }
            this.searching.store(false, Ordering::Release);
        });
    }
}

enum Backend {
    Single {
        client: redis::Client,
        conn: ConnectionManager,
    },
    Cluster(Arc<Cluster>),
    Sentinel(Arc<Sentinels>),
}

/// A Redis Cluster: the client (also for blocking reads, which need
/// connections of their own) and the shared connection, made afresh from
/// the seeds when calls keep failing.
///
/// The cluster client mends its slot map and node connections only from
/// the answers to calls: a redirect or a dropped connection makes it look
/// again. After a primary dies that is not enough here: with the breaker
/// open only a probe a second reaches it, each cut at `timeout`, and a
/// call whose caller gave up never starts the repair its error asked for.
/// A fleet run saw a replica stay without Redis long after the cluster
/// had failed over. A new connection asks the cluster for its slots as
/// it connects.
struct Cluster {
    client: redis::cluster::ClusterClient,
    config: redis::cluster::ClusterConfig,
    conn: ArcSwap<ClusterConnection>,
    /// A new connection is being made.
    rebuilding: AtomicBool,
    /// When the last one was started, so failures do not start one each.
    last_rebuild: Mutex<Option<Instant>>,
}

impl Cluster {
    /// Makes a new connection in the background (bounded in time) and
    /// puts it in place when it has the cluster's slots; unless one is
    /// being made or was started within the last second.
    fn rebuild_soon(self: &Arc<Self>) {
        {
            let mut last = self.last_rebuild.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            if self.rebuilding.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let this = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            match tokio::time::timeout(
                Duration::from_secs(5),
                this.client
                    .get_async_connection_with_config(this.config.clone()),
            )
            .await
            {
                Ok(Ok(conn)) => {
                    this.conn.store(Arc::new(conn));
                    metrics::histogram!(telemetry::REDIS_REFRESH_DURATION, "mode" => "cluster")
                        .record(started.elapsed().as_secs_f64());
                    tracing::info!("Redis Cluster connection made afresh from the seeds");
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "no new Redis Cluster connection");
                }
                Err(_) => tracing::debug!("no new Redis Cluster connection: timed out"),
            }
            this.rebuilding.store(false, Ordering::Release);
        });
    }
}

/// Whether Redis answered last, and since when it has not.
struct Health {
    up: AtomicBool,
    down_since: Mutex<Option<Instant>>,
}

pub struct RedisLink {
    backend: Backend,
    mode: &'static str,
    breaker: Arc<Breaker>,
    timeout: Duration,
    prefix: String,
    health: Health,
}

fn unusable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what} is not usable: {e}"))
}

impl RedisLink {
    /// Prepares the link; fails only for settings that cannot be right.
    /// Nothing is connected yet: Moat starts with Redis down.
    pub fn connect(settings: &Settings) -> Result<Arc<RedisLink>, Error> {
        let connect_timeout = settings.timeout.max(Duration::from_millis(250));
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let backend = match &settings.target {
            Target::Single(url) => {
                let client =
                    redis::Client::open(url.as_str()).map_err(|e| unusable("redis.url", e))?;
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
                    .map_err(|e| {
                        Error::internal(format!("cannot set up the Redis connection: {e}"))
                    })?;
                Backend::Single { client, conn }
            }
            Target::Cluster(nodes) => {
                let client =
                    redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                        .connection_timeout(connect_timeout)
                        .response_timeout(settings.timeout)
                        .retries(2)
                        .min_retry_wait(10)
                        .max_retry_wait(200)
                        .build()
                        .map_err(|e| unusable("redis.nodes", e))?;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(connect_timeout)
                    .set_response_timeout(settings.timeout);
                let conn = client.get_pending_async_connection_with_config(config.clone());
                Backend::Cluster(Arc::new(Cluster {
                    client,
                    config,
                    conn: ArcSwap::from_pointee(conn),
                    rebuilding: AtomicBool::new(false),
                    last_rebuild: Mutex::new(None),
                }))
            }
            Target::Sentinel { nodes, master } => {
                let infos: Vec<redis::ConnectionInfo> = nodes
                    .iter()
                    .map(|n| redis::IntoConnectionInfo::into_connection_info(n.as_str()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| unusable("redis.nodes", e))?;
                let redis_info = infos[0].redis_settings().clone();
                let node = redis::sentinel::SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(redis_info);
                let sentinel = redis::sentinel::Sentinel::build(infos)
                    .map_err(|e| unusable("redis.nodes", e))?;
                let sentinels = Arc::new(Sentinels {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    master: master.clone(),
                    node,
                    manager,
                    current: ArcSwapOption::empty(),
                    searching: AtomicBool::new(false),
                    last_search: Mutex::new(None),
                });
                if tokio::runtime::Handle::try_current().is_ok() {
                    sentinels.search_soon();
                }
                Backend::Sentinel(sentinels)
            }
        };
        let breaker = Breaker::new(
            "redis",
            breaker::Settings {
                failure_rate: 0.5,
                window: Duration::from_secs(10),
                min_calls: 20,
                consecutive_failures: 3,
                cooldown: Duration::from_secs(1),
                probes: 1,
            },
        );
        let mode = settings.target.mode();
        metrics::gauge!(telemetry::REDIS_STATE, "mode" => mode).set(0.0);
        Ok(Arc::new(RedisLink {
            backend,
            mode,
            breaker,
            timeout: settings.timeout,
            prefix: format!("{}:{LAYOUT_VERSION}", settings.namespace),
            health: Health {
                up: AtomicBool::new(false),
                down_since: Mutex::new(None),
            },
        }))
    }

    /// A namespaced key or channel: `moat:v1:<parts joined by ':'>`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// `keys` grouped by the cluster slot they live on (indexes into
    /// `keys`, in order), for scripts that take several keys: on one
    /// server, a single group.
    pub fn by_slot<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Vec<usize>> {
        if !matches!(self.backend, Backend::Cluster(_)) {
            return if keys.is_empty() {
                Vec::new()
            } else {
                vec![(0..keys.len()).collect()]
            };
        }
        let mut groups: Vec<(Slot, Vec<usize>)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let slot = Slot::for_key(key.as_ref());
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, members)) => members.push(i),
                None => groups.push((slot, vec![i])),
            }
        }
        groups.into_iter().map(|(_, members)| members).collect()
    }

    /// The connection for one call; `None` while no Sentinel has named
    /// the primary yet.
    fn conn(&self) -> Option<Conn> {
        match &self.backend {
            Backend::Single { conn, .. } => Some(Conn::Managed(conn.clone())),
            Backend::Cluster(cluster) => Some(Conn::Cluster((**cluster.conn.load()).clone())),
            Backend::Sentinel(sentinels) => {
                let current = sentinels.current.load();
                match current.as_ref() {
                    Some(c) => Some(Conn::Managed(c.2.clone())),
                    None => {
                        sentinels.search_soon();
                        None
                    }
                }
            }
        }
    }

    /// Runs one command or pipeline with the timeout and the breaker.
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, Unavailable>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let Ok(permit) = self.breaker.try_acquire() else {
            self.went(false);
            return Err(Unavailable);
        };
        let Some(conn) = self.conn() else {
            permit.failure();
            self.went(false);
            return Err(Unavailable);
        };
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(value)) => {
                permit.success();
                self.went(true);
                Ok(value)
            }
            Ok(Err(e)) => {
                permit.failure();
                tracing::debug!(op, error = %e, "redis call failed");
                self.failed();
                Err(Unavailable)
            }
            Err(_) => {
                permit.failure();
                tracing::debug!(op, "redis call timed out");
                self.failed();
                Err(Unavailable)
            }
        }
    }

    fn failed(&self) {
        match &self.backend {
            // The primary may have moved (or become a replica): ask again.
            Backend::Sentinel(sentinels) => sentinels.search_soon(),
            // Failing again after the breaker tripped (a probe, or the
            // calls that tripped it): the client may not mend itself.
            Backend::Cluster(cluster) if self.breaker.position() != breaker::Position::Closed => {
                cluster.rebuild_soon()
            }
            _ => {}
        }
        self.went(false);
    }

    /// Notes whether Redis answered: `moat_redis_state`, and on a return,
    /// a reconnect and how long it was away.
    fn went(&self, up: bool) {
        if self.health.up.swap(up, Ordering::AcqRel) == up {
            return;
        }
        let mut since = self
            .health
            .down_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        metrics::gauge!(telemetry::REDIS_STATE, "mode" => self.mode).set(if up {
            1.0
        } else {
            0.0
        });
        if up {
            if let Some(since) = since.take() {
                metrics::counter!(telemetry::REDIS_RECONNECTS, "mode" => self.mode).increment(1);
                if !matches!(self.backend, Backend::Sentinel(_)) {
                    metrics::histogram!(telemetry::REDIS_REFRESH_DURATION, "mode" => self.mode)
                        .record(since.elapsed().as_secs_f64());
                }
                tracing::info!(mode = self.mode, away = ?since.elapsed(), "Redis answers again");
            }
        } else {
            *since = Some(Instant::now());
            tracing::warn!(
                mode = self.mode,
                "Redis does not answer: going on without it"
            );
        }
    }

    /// A connection of its own, for blocking reads (they would hold up
    /// every other command on the shared one); replies may take
    /// `response_timeout`.
    pub async fn dedicated(&self, response_timeout: Duration) -> redis::RedisResult<Conn> {
        let connect_timeout = self.timeout.max(Duration::from_millis(250));
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        match &self.backend {
            Backend::Single { client, .. } => Ok(Conn::Plain(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            )),
            Backend::Cluster(cluster) => {
                let client = &cluster.client;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(connect_timeout)
                    .set_response_timeout(response_timeout);
                Ok(Conn::Cluster(
                    client.get_async_connection_with_config(config).await?,
                ))
            }
            Backend::Sentinel(sentinels) => {
                let current = sentinels.current.load_full();
                let Some(current) = current else {
                    sentinels.search_soon();
                    return Err(redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "no Redis primary known yet",
                    )));
                };
                let conn = current
                    .1
                    .get_multiplexed_async_connection_with_config(&config)
                    .await;
                if conn.is_err() {
                    sentinels.search_soon();
                }
                Ok(Conn::Plain(conn?))
            }
        }
    }

    /// Every key matching `pattern`, walked with SCAN (never KEYS: Redis
    /// serves everyone else between the steps), on every primary of a
    /// cluster. Only for an operator's whole-entity purge and the
    /// reconciler's walk: traffic and events find keys through indexes.
    pub async fn scan(&self, pattern: &str) -> Result<Vec<String>, Unavailable> {
        let nodes: Vec<Option<(String, u16)>> = match &self.backend {
            Backend::Cluster(_) => self
                .run("scan", |mut c| async move {
                    let slots: Value = redis::cmd("CLUSTER")
                        .arg("SLOTS")
                        .query_async(&mut c)
                        .await?;
                    Ok(primaries(&slots))
                })
                .await?
                .into_iter()
                .map(Some)
                .collect(),
            _ => vec![None],
        };
        let mut found = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let node = node.clone();
                let (next, keys): (u64, Vec<String>) = self
                    .run("scan", |c| async move {
                        let reply = match (c, node) {
                            (Conn::Cluster(mut c), Some((host, port))) => {
                                let to = SingleNodeRoutingInfo::ByAddress { host, port };
                                c.route_command(cmd, RoutingInfo::SingleNode(to)).await?
                            }
                            (mut c, _) => cmd.query_async::<Value>(&mut c).await?,
                        };
                        Ok(redis::from_redis_value(reply)?)
                    })
                    .await?;
                found.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(found)
    }

    /// With Sentinels, asks them for the primary now (else it is looked
    /// up in the background); nothing to do otherwise.
    pub async fn find_primary(&self) -> redis::RedisResult<()> {
        match &self.backend {
            Backend::Sentinel(sentinels) => sentinels.search().await,
            _ => Ok(()),
        }
    }

    /// `single`, `cluster` or `sentinel`.
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// Whether Redis answered this replica's last call (what
    /// `moat_redis_state` shows, but per replica where tests share a
    /// process's metrics).
    pub fn answering(&self) -> bool {
        self.health.up.load(Ordering::Acquire)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn report(&self) -> Report {
        self.breaker.report()
    }
}

/// GCRA over a theoretical arrival time kept in Redis: the same algorithm
/// governor runs locally, so a replica sees the same limit either way.
/// KEYS[1] the bucket; ARGV[1] ms per permit; ARGV[2] burst.
/// Returns 0 when a permit was taken, else ms until one is due.
/// Hashed once: `Script::new` computes the SHA every time it is called.
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local ahead = tat + interval - now
local allowed = interval * burst
if ahead > allowed then
  return math.ceil(ahead - allowed)
end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(ahead) + 1000)
return 0
",
    )
});

/// The rate limiter's shared buckets, one Redis key each.
impl SharedBuckets for RedisLink {
    fn take<'a>(
        &'a self,
        system: &'a str,
        bucket: &'a str,
        interval_ms: f64,
        burst: u32,
    ) -> BoxFuture<'a, Option<u64>> {
        let key = self.key(&["ratelimit", system, bucket]);
        async move {
            self.run("ratelimit", |mut c| async move {
                GCRA.key(key)
                    .arg(interval_ms)
                    .arg(burst)
                    .invoke_async::<u64>(&mut c)
                    .await
            })
            .await
            .ok()
        }
        .boxed()
    }
}
