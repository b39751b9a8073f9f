//! Wiring: builds a running gateway from a `Config` (the upstream, the
//! Redis link, the caches, checkout, the schema, both listeners and the
//! background work) and stops it again, in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::background::Background;
use crate::cache::{Invalidator, L2, ResponseCache, Tiers};
use crate::catalog::Catalog;
use crate::checkout::{Checkout, PriceTokens};
use crate::config::{Config, Reloaded, Secrets};
use crate::customers::Customers;
use crate::data_key::DataKeys;
use crate::edge::Purges;
use crate::error::Error;
use crate::events::Events;
use crate::exceptions::Exceptions;
use crate::fleet::Fleet;
use crate::graphql::{self, Documents, Persisted};
use crate::reconcile::Reconciler;
use crate::redis_link::{self, RedisLink};
use crate::resilience::client_limit::ClientLimits;
use crate::resilience::ratelimit::SharedBuckets;
use crate::state::AppState;
use crate::upstream::Upstreams;
use crate::{admin, http, listener, sim, telemetry};

/// A running gateway.
pub struct Gateway {
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    /// Tells both listeners to stop accepting and drain.
    stop_listening: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    background: Background,
    /// The embedded simulator, stopped last of all.
    simulator: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// The full path's threads (`http::Lane`), let go of with the gateway.
    _lane: Arc<http::Lane>,
}

impl Gateway {
    /// Starts everything and returns once both listeners are bound.
    pub async fn start(config: Config, secrets: Secrets) -> Result<Gateway, Error> {
        // Metric handles made before the recorder exists would be no-ops.
        telemetry::prometheus();
        telemetry::series::register_at_zero(&config);
        let background = Background::new();

        // reqwest (JWKS, edge purges, traces) is built without a TLS
        // provider of its own (ring is lighter than aws-lc), and panics at
        // build unless one is installed first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The demo upstream stands in for every system config gives no URL.
        let needs_sim = config
            .owners()
            .systems()
            .iter()
            .any(|s| config.system(s.name()).url.is_none());
        let (embedded, simulator) = if needs_sim {
            let (url, stop, task) = start_embedded_sim(&config).await?;
            (Some(url), Some((stop, task)))
        } else {
            (None, None)
        };
        // Names this process in leases and broadcasts.
        let replica = format!("{:016x}", fastrand::u64(..));
        let redis = match redis_link::Settings::of(&config.redis) {
            Some(settings) => Some(RedisLink::connect(&settings)?),
            None => None,
        };
        let exceptions = Exceptions::new(redis.clone());
        let upstreams = Upstreams::new(
            &config,
            &secrets,
            embedded.as_deref(),
            redis.clone().map(|r| r as Arc<dyn SharedBuckets>),
            exceptions.clone(),
        )?;
        let data = DataKeys::from_secrets(&secrets)
            .map_err(Error::internal)?
            .map(Arc::new);
        let l2 = redis.as_ref().map(|r| {
            Arc::new(L2::new(
                r.clone(),
                replica.clone(),
                config.redis.lease_ttl,
                data.clone(),
            ))
        });
        let tiers = Tiers::new(&config.cache, l2.clone(), background.clone());
        let catalog = Arc::new(Catalog::new(&config, &upstreams, &tiers));
        let customers = Arc::new(Customers::new(
            &config,
            &upstreams,
            &tiers,
            redis.clone(),
            data,
        )?);
        let mut all_tiers: Vec<_> = catalog.tiers().into();
        all_tiers.extend(customers.tiers());
        let invalidator = Invalidator::new(
            replica.clone(),
            all_tiers,
            redis.clone().zip(l2),
            config.redis.invalidation_stream_len,
            config.upstream.timeout + Duration::from_millis(500),
            background.clone(),
        );
        invalidator.clone().listen();
        // Every change made here also purges the edge, through its outbox.
        let purges = Purges::new(&config.edge, &secrets, redis.clone(), replica.clone())?;
        invalidator.observe(purges.clone());
        purges.start(&background);
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
            background.clone(),
            exceptions.clone(),
        ));
        let events = Arc::new(Events::new(
            &config,
            &secrets,
            catalog.clone(),
            customers.clone(),
            invalidator.clone(),
            redis.clone(),
            exceptions.clone(),
            upstreams.connectors.clone(),
        ));
        let reconciler = Reconciler::new(
            &config.reconcile,
            config.owners(),
            catalog.clone(),
            customers.clone(),
            invalidator.clone(),
            exceptions.clone(),
            events.seen_versions(),
            redis.clone(),
            replica.clone(),
        );
        reconciler.clone().schedule(&background);
        let fleet = Fleet::new(
            replica.clone(),
            redis.clone(),
            upstreams.protection().cloned().collect(),
        );
        fleet.clone().follow(&background);
        let state = Arc::new(AppState {
            schema: graphql::Schemas::new(&config.server, checkout.clone()),
            documents: Documents::new(graphql::query_limits(&config.server, &config.checkout)),
            persisted: Persisted::new(&config.server.persisted_queries)?,
            responses: ResponseCache::new(
                config
                    .cache
                    .responses
                    .enabled
                    .then_some(config.cache.responses.max_bytes.bytes()),
            ),
            catalog,
            customers,
            invalidator,
            purges,
            upstreams,
            client_limits: ClientLimits::new(&config.server.client_limit),
            checkout,
            events,
            exceptions,
            reconciler,
            fleet,
            redis,
            secrets,
            ready: AtomicBool::new(true),
            config: ArcSwap::from_pointee(config),
        });

        let config = state.config();
        let public = bind(config.server.listen, "server.listen").await?;
        let admin = bind(config.admin.listen, "admin.listen").await?;
        let public_addr = local_addr(&public)?;
        let admin_addr = local_addr(&admin)?;
        let (stop_listening, listening) = watch::channel(false);
        let lane = Arc::new(http::Lane::new(config.server.full_path_nice)?);
        let listeners = vec![
            listener::serve(
                "public",
                public,
                http::service(state.clone(), lane.clone()),
                config.server.connections.clone(),
                listening.clone(),
            ),
            listener::serve(
                "admin",
                admin,
                admin::router(state.clone()),
                config.admin.connections.clone(),
                listening,
            ),
        ];
        housekeeping(&state, &background);
        let systems: Vec<String> = state
            .upstreams
            .systems
            .iter()
            .map(|c| format!("{}={}", c.system, c.url))
            .collect();
        tracing::info!(%public_addr, %admin_addr, systems = %systems.join(" "), "moat is serving");
        Ok(Gateway {
            public_addr,
            admin_addr,
            state,
            stop_listening,
            listeners,
            background,
            simulator,
            _lane: lane,
        })
    }

    /// Applies a reloaded config (SIGHUP). The keys each section applies at
    /// once (`config::Section::with_live`: upstream limits, breakers and
    /// retries, cache freshness, client and sign-in limits, events,
    /// reconciliation, persisted queries, the per-request settings) are put
    /// in force. Every other key keeps its running value, in the config
    /// `AppState` holds too, and is returned by name as needing a restart.
    pub fn reload(&self, new: Config) -> Vec<String> {
        let s = &self.state;
        let running = s.config();
        let Reloaded {
            mut config,
            restart,
        } = running.reloaded(&new);
        for p in s.upstreams.protection() {
            let settings = config.system(p.system.name());
            let (before, after) = (p.limit(), settings.limit);
            p.reload(&settings);
            if before != after {
                admin::audit(
                    s,
                    &admin::Who::moat("reload"),
                    "limits.set",
                    p.system.name(),
                    serde_json::json!(before),
                    serde_json::json!(after),
                );
            }
        }
        for tier in s.tiers() {
            tier.reload(&config.cache);
        }
        // Stored answers were let through by the old settings (persisted
        // queries, the body limit): each must pass the new ones once.
        s.responses.clear();
        if let Err(e) = s.customers.apply(&config.customers) {
            tracing::error!(error = %e, "[customers] not reloaded; the running settings stay");
            config.customers = running.customers.clone();
        }
        s.events.reload(&config.events);
        s.reconciler.reload(&config.reconcile);
        s.purges.reload(&config.edge);
        s.client_limits.apply(&config.server.client_limit);
        // Operators' fleet-wide changes stay on top of the file.
        s.fleet.reapply();
        if let Err(e) = s.persisted.reload(&config.server.persisted_queries) {
            tracing::error!(error = %e, "persisted queries not reloaded; the running ones stay");
            config.server.persisted_queries = running.server.persisted_queries.clone();
        }
        s.set_config(config);
        restart
    }

    /// Stops in order, within `server.shutdown_timeout` in all:
    ///
    /// 1. readiness goes false, so load balancers stop sending (and, for
    ///    `server.shutdown_delay`, requests are still served while they
    ///    notice);
    /// 2. both listeners stop accepting and drain: in-flight requests
    ///    finish, idle connections close;
    /// 3. background work (fetches, refreshes, repairs, the invalidation
    ///    listener, housekeeping) finishes or is stopped;
    /// 4. the embedded simulator stops;
    /// 5. metrics are flushed.
    ///
    /// Returns how many connections and tasks had to be cut short.
    pub async fn stop(self) -> Stopped {
        let server = &self.state.config().server;
        let deadline = Instant::now() + server.shutdown_timeout;
        self.state.ready.store(false, Ordering::Relaxed);
        tokio::time::sleep(server.shutdown_delay).await;

        let _ = self.stop_listening.send(true);
        let mut cut_connections = false;
        for task in self.listeners {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                cut_connections = true;
            }
        }
        // Background work gets what is left, but at least a moment.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let cut_tasks = self.background.stop(left).await;

        if let Some((stop, task)) = self.simulator {
            let _ = stop.send(true);
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        telemetry::flush();
        let stopped = Stopped {
            cut_connections,
            cut_tasks,
        };
        tracing::info!(?stopped, "stopped");
        stopped
    }
}

/// What shutdown had to cut short (both zero when everything finished in
/// time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// The listeners were still draining at the deadline.
    pub cut_connections: bool,
    /// Background tasks stopped before they finished.
    pub cut_tasks: usize,
}

/// Periodic upkeep, as background work: drain metric histograms every
/// second, and after the first and every five keep the DLQ depth and
/// exceptions current and forget idle clients of the inbound limiter
/// (every minute).
fn housekeeping(state: &Arc<AppState>, background: &Background) {
    let state = state.clone();
    background.spawn_loop(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for ticks in 1u64.. {
            tick.tick().await;
            // Draining is CPU work proportional to the traffic since the
            // last tick (every request's latency sample): off the workers,
            // so requests do not stall behind it.
            let _ = tokio::task::spawn_blocking(telemetry::flush).await;
            // The first tick too: moat_dlq_depth is not exported before
            // the queue is read (it may hold letters from before a restart).
            if ticks != 1 && !ticks.is_multiple_of(5) {
                continue;
            }
            // Keeps moat_dlq_depth true when another replica changed it.
            let _ = state.events.dead_letters().depth().await;
            state.exceptions.flush().await;
            if ticks.is_multiple_of(60) {
                state.client_limits.forget_idle();
                state.customers.forget_idle();
            }
        }
    });
}

async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {addr} ({key}): {e}")))
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, Error> {
    listener
        .local_addr()
        .map_err(|e| Error::internal(e.to_string()))
}

/// The demo upstream, in process, on a loopback port of its own: Moat still
/// talks to it over HTTP, exactly as to a real upstream.
async fn start_embedded_sim(
    config: &Config,
) -> Result<(String, watch::Sender<bool>, JoinHandle<()>), Error> {
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), "upstream.embedded").await?;
    let addr = local_addr(&listener)?;
    let simulator = sim::Simulator::new(sim::SimConfig {
        products: config.upstream.embedded.products,
        seed: config.upstream.embedded.seed,
        ..sim::SimConfig::default()
    });
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = sim::serve(listener, simulator, shutdown).await {
            tracing::error!(error = %e, "embedded simulator failed");
        }
    });
    tracing::info!(%addr, "embedded upstream simulator started (set MOAT_UPSTREAM_URL to use a real one)");
    Ok((format!("http://{addr}"), stop, task))
}
