//! Builds a running gateway from a `Config`: the upstream (embedded
//! simulator or a URL), the catalog caches, the GraphQL schema, and both
//! listeners; and stops it again, draining in-flight requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::{Invalidator, L2};
use crate::catalog::Catalog;
use crate::checkout::{Checkout, PriceTokens};
use crate::config::{Config, Secrets};
use crate::error::Error;
use crate::graphql::{self, Documents, Schema};
use crate::http::client_limit::ClientLimits;
use crate::shared::{self, Redis};
use crate::upstream::{Settings, Upstreams};
use crate::{admin, http, listener, sim, telemetry};

/// What every handler shares.
pub struct AppState {
    /// The settings in force; swapped whole on reload.
    config: ArcSwap<Config>,
    pub secrets: Secrets,
    pub schema: Schema,
    /// Parsed documents by query text (see `graphql::prepare`).
    pub documents: Documents,
    pub catalog: Arc<Catalog>,
    pub invalidator: Arc<Invalidator>,
    pub upstreams: Upstreams,
    pub client_limits: Arc<ClientLimits>,
    /// `verifyCheckout`, and the price token signer it trusts.
    pub checkout: Arc<Checkout>,
    /// The shared Redis, when configured.
    pub redis: Option<Arc<Redis>>,
    /// The upstream base URL in use (the embedded simulator's, by default).
    pub upstream_url: String,
    /// False once shutdown begins, so `/readyz` turns load balancers away.
    pub ready: AtomicBool,
}

impl AppState {
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }
}

/// A running gateway.
pub struct Gateway {
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// How long in-flight requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

impl Gateway {
    /// Starts everything and returns once both listeners are bound.
    pub async fn start(config: Config, secrets: Secrets) -> Result<Gateway, Error> {
        // Metric handles made before the recorder exists would be no-ops.
        telemetry::prometheus();
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();

        let upstream_url = match &config.upstream.url {
            Some(url) => url.clone(),
            None => {
                let (url, task) = start_embedded_sim(&config, stopped.clone()).await?;
                tasks.push(task);
                url
            }
        };
        // Names this process in leases and broadcasts.
        let replica = format!("{:016x}", fastrand::u64(..));
        let redis = match &config.redis.url {
            Some(url) => Some(Redis::connect(&shared::Settings {
                url: url.clone(),
                namespace: config.redis.namespace.clone(),
                timeout: config.redis.timeout,
            })?),
            None => None,
        };
        let upstreams = Upstreams::new(
            &Settings {
                base_url: upstream_url.clone(),
                timeout: config.upstream.timeout,
                connect_timeout: config.upstream.connect_timeout,
                max_batch: config.upstream.max_batch,
            },
            &config.upstream,
            redis.clone(),
        )?;
        let l2 = redis
            .as_ref()
            .map(|r| Arc::new(L2::new(r.clone(), replica.clone(), config.redis.lease_ttl)));
        let catalog = Arc::new(Catalog::new(&config, &upstreams, l2.clone()));
        let invalidator = Invalidator::new(
            replica,
            catalog.tiers(),
            redis.clone().zip(l2),
            config.upstream.timeout + Duration::from_millis(500),
        );
        if let Some(listener) = invalidator.clone().listen(stopped.clone()) {
            tasks.push(listener);
        }
        let tokens = Arc::new(PriceTokens::from_secrets(
            &secrets,
            config.checkout.price_token_max_age,
        )?);
        let checkout = Arc::new(Checkout::new(
            &config,
            upstreams.erp.clone(),
            catalog.clone(),
            invalidator.clone(),
            tokens,
        ));
        let state = Arc::new(AppState {
            schema: graphql::schema(&config.server, checkout.clone()),
            documents: Documents::new(graphql::query_limits(&config.server, &config.checkout)),
            catalog,
            invalidator,
            upstreams,
            client_limits: ClientLimits::new(&config.server.client_limit),
            checkout,
            redis,
            upstream_url,
            secrets,
            ready: AtomicBool::new(true),
            config: ArcSwap::from_pointee(config),
        });

        let config = state.config();
        let public = bind(config.server.listen, "server.listen").await?;
        let admin = bind(config.admin.listen, "admin.listen").await?;
        let public_addr = public
            .local_addr()
            .map_err(|e| Error::internal(e.to_string()))?;
        let admin_addr = admin
            .local_addr()
            .map_err(|e| Error::internal(e.to_string()))?;
        tasks.push(listener::serve(
            "public",
            public,
            http::router(state.clone()),
            config.server.connections.clone(),
            stopped.clone(),
        ));
        tasks.push(listener::serve(
            "admin",
            admin,
            admin::router(state.clone()),
            config.admin.connections.clone(),
            stopped.clone(),
        ));
        tasks.push(housekeeping(state.clone(), stopped));
        tracing::info!(%public_addr, %admin_addr, upstream = %state.upstream_url, "moat is serving");
        Ok(Gateway {
            public_addr,
            admin_addr,
            state,
            stop,
            tasks,
        })
    }

    /// Applies a new config (SIGHUP): upstream limits, breaker thresholds,
    /// retries, cache freshness, client limits, and the per-request
    /// settings take effect at once. Settings that shape what was built at
    /// start (listen addresses, the upstream URL, Redis, query limits) are
    /// reported as needing a restart and otherwise ignored.
    pub fn reload(&self, new: Config) -> Vec<&'static str> {
        let old = self.state.config();
        let s = &self.state;
        for p in &s.upstreams.protection {
            let (before, after) = (p.limit(), new.upstream.limits.for_system(p.system));
            p.reload(&new.upstream);
            if before != after {
                admin::audit(
                    "reload",
                    "limits.set",
                    p.system.name(),
                    serde_json::json!(before),
                    serde_json::json!(after),
                );
            }
        }
        s.catalog.set_freshness(&new.cache);
        s.catalog.customers.apply(&new.customers);
        s.client_limits.apply(&new.server.client_limit);
        let mut restart = Vec::new();
        let query_limits = |c: &Config| {
            let s = &c.server;
            (
                s.max_query_depth,
                s.max_query_complexity,
                s.max_query_tokens,
                s.max_query_aliases,
                s.max_introspection_depth,
                s.max_fragment_depth,
                s.introspection,
                c.checkout.max_per_request,
            )
        };
        let connections = |c: &Config| {
            [&c.server.connections, &c.admin.connections].map(|k| {
                (
                    k.max,
                    k.header_read_timeout,
                    k.idle_timeout,
                    k.http2,
                    k.http2_max_streams,
                )
            })
        };
        let checks: [(&'static str, bool); 7] = [
            ("server.listen", old.server.listen != new.server.listen),
            ("admin.listen", old.admin.listen != new.admin.listen),
            ("upstream.url", old.upstream.url != new.upstream.url),
            ("redis.url", old.redis.url != new.redis.url),
            (
                "server.max_query_* and introspection, checkout.max_per_request",
                query_limits(&old) != query_limits(&new),
            ),
            (
                "server.connections, admin.connections",
                connections(&old) != connections(&new),
            ),
            ("cache.*.l1_max_bytes", {
                let sizes = |c: &Config| c.cache.entities().map(|(_, e)| e.l1_max_bytes);
                sizes(&old) != sizes(&new)
            }),
        ];
        for (key, changed) in checks {
            if changed {
                restart.push(key);
            }
        }
        s.config.store(Arc::new(new));
        restart
    }

    /// Stops accepting, lets in-flight requests finish (up to a deadline),
    /// then stops background work.
    pub async fn stop(self) {
        self.state.ready.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(DRAIN, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// Periodic upkeep: forget idle clients of the inbound limiter.
fn housekeeping(state: Arc<AppState>, mut stopped: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => state.client_limits.forget_idle(),
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    })
}

async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {addr} ({key}): {e}")))
}

/// The demo upstream, in process, on a loopback port of its own: Moat still
/// talks to it over HTTP, exactly as to a real upstream.
async fn start_embedded_sim(
    config: &Config,
    mut stopped: watch::Receiver<bool>,
) -> Result<(String, JoinHandle<()>), Error> {
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), "upstream.embedded").await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal(e.to_string()))?;
    let simulator = sim::Simulator::new(sim::SimConfig {
        products: config.upstream.embedded.products,
        seed: config.upstream.embedded.seed,
        ..sim::SimConfig::default()
    });
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = sim::serve(listener, simulator, shutdown).await {
            tracing::error!(error = %e, "embedded simulator failed");
        }
    });
    tracing::info!(%addr, "embedded upstream simulator started (set MOAT_UPSTREAM_URL to use a real one)");
    Ok((format!("http://{addr}"), task))
}
