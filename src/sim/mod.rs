//! The upstream simulator: one HTTP server speaking upstream protocol v1 for
//! the four systems of record (PIM, ERP, OMS, CRM) or some of them, with
//! optional bearer or OAuth2 client-credentials auth, plus a `/_sim` control
//! API to inject faults, change data and read traffic counters. Moat talks
//! to it over real HTTP in tests, load tests and the default demo.
//!
//! It shares nothing with the rest of the crate but the wire protocol
//! (`schema/upstream/*.json`), so a gateway bug cannot hide behind a shared
//! type.
//!
//! # Layout
//! - `mod.rs`: [`SimConfig`], [`Simulator`], the router and [`serve`].
//! - `upstream`: the protocol v1 routes a real upstream would have, each
//!   system's behind a door that checks it is served and authorised.
//! - `auth`: bearer tokens, fixed or issued, and their expiry.
//! - `oauth`: `POST /oauth/token`, the client-credentials grant.
//! - `jwt`: customer tokens as signed JWTs, and the keys that sign them.
//! - `control`: the `/_sim` routes.
//! - `catalog`: the state of record, its look-ups and writes.
//! - `seed`: the deterministic catalog builder.
//! - `wire`: protocol v1 shapes.
//! - `faults` and `corrupt`: injected latency, outages, errors and broken
//!   payloads.
//! - `events`: signed change events pushed to Moat (`sign`: their HMACs).
//! - `stats`: request and item counters, and the trace context of calls.
//!
//! # Seeded catalog
//! Everything comes from one `fastrand::Rng::with_seed(seed)` drawn in a
//! fixed order, and every seeded timestamp is 2026-01-01T00:00:00Z, so one
//! `(products, seed)` gives byte-identical responses on any machine:
//! - product `i` (1-based) is `prod-{i:06}` / `SKU-{i:06}`, with a name built
//!   from a kind ("Desk Lamp"), a material fitting it ("Brass") and, half the
//!   time, a style ("Nordic"); a one-sentence description; attributes
//!   `material` plus one to three of `color`, `size`, `finish`, `weight`; a
//!   leaf category and, 40 % of the time, its parent too.
//! - 24 categories `cat-01`..`cat-24`: eight roots, sixteen leaves under them.
//! - prices per sku in segments `default`, `wholesale` (85 %), `vip` (92 %)
//!   and currencies `EUR`, `USD` (108 % of EUR), integer arithmetic rounding
//!   down; the default EUR amount ends in 99 and lies in 199..=99 999; 20 %
//!   have a `compareAtAmount` 10–50 % higher. Version 1.
//! - stock: 10 % out (0), 10 % low (1–5), the rest 6–500.
//! - 30 customers `cust-001`.. with token `ct_` + 24 hex digits, segments
//!   cycling default, wholesale, vip; each has 3 orders `ord-{n:05}` of 1–3
//!   lines priced at the customer's segment, 20 % of them in USD.
//!
//! # Customer tokens
//! Opaque by default: the CRM resolves `ct_…` tokens (`by-token`). With
//! `customer_tokens` = JWT, the simulator also plays the shop's identity
//! provider (`jwt`): `/_sim/customers` shows a freshly signed JWT per
//! customer (`iss` [`JWT_ISSUER`], `aud` [`JWT_AUDIENCE`], `sub` the
//! customer id, an hour to live), its public keys are at
//! `/.well-known/jwks.json` (counted as `crm.jwks`, and subject to the
//! CRM's faults), `POST /_sim/jwt` mints a token with any claims and
//! `POST /_sim/jwks/rotate` moves to a new key. The CRM answers a customer
//! by id (`GET /crm/v1/customers/{id}`) in either mode.
//!
//! # Request handling
//! One process can play all four systems or, with `systems`, only some, so
//! tests can run one simulator per system; a route of a system it does not
//! play is a 404 naming the system, and is not counted. With
//! `require_token` or `oauth_client`, a call must then carry an acceptable
//! `Authorization: Bearer` token or get a 401 with `WWW-Authenticate`,
//! counted only as `unauthorized`: auth is checked on arrival, before
//! counting and faults, so `requests` holds only calls the system accepted.
//! An accepted call is counted, then its system's faults decide: wait
//! `latency_ms`, then 503 when down, else 500 with `error_rate`, else a 200
//! that breaks the contract with `malformed_rate`, else the real answer.
//! Faults apply before the request is validated, as a network would. Every
//! response of a served system, 401s included, carries `Moat-Protocol`
//! (`protocol`, `v1` unless a test wants another). Errors are
//! `{"error": "message"}`.

mod auth;
mod catalog;
mod control;
mod corrupt;
mod dialect;
mod events;
mod faults;
mod jwt;
mod oauth;
mod seed;
mod sign;
mod stats;
mod upstream;
mod wire;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Serialize;

use auth::Auth;
use catalog::Catalog;
use corrupt::Shape;
pub use dialect::{DIALECTS, Dialect};
use events::Emitter;
pub use events::{EventForm, EventMode};
use faults::{Faults, System, Verdict};
pub use jwt::{AUDIENCE as JWT_AUDIENCE, CustomerTokens, ISSUER as JWT_ISSUER, JwtAlg};
use stats::{Endpoint, Stats};

/// How many products (from the first) `change_rate` walks through.
pub const CHANGING: usize = 20;

/// The systems a simulator can play, as `systems` names them.
pub const SYSTEMS: [&str; 4] = ["pim", "erp", "crm", "oms"];

/// Settings for one simulator instance.
#[derive(Clone)]
pub struct SimConfig {
    /// How many products (and so skus) the catalog has.
    pub products: usize,
    /// Seed of the catalog and of the fault dice.
    pub seed: u64,
    /// Base URL of a Moat public listener that receives change events, e.g.
    /// `http://127.0.0.1:8080`; without it `emit_event` is ignored.
    pub events_to: Option<String>,
    /// HMAC secret for `Moat-Signature`; without it events go unsigned.
    pub events_secret: Option<String>,
    /// Fat or thin events, and whether each is delivered twice, out of
    /// order (changeable at run time: `POST /_sim/events`).
    pub event_mode: EventMode,
    /// Share of the products whose prices and stock change silently every
    /// `drift_every` (no event): drift for reconciliation to find.
    pub drift_rate: f64,
    pub drift_every: Duration,
    /// Products a second whose prices and stock change as announced
    /// writes (with `events_to`, each sends its events), walking the
    /// first [`CHANGING`] products in turn so a page of them shows it; 0:
    /// none.
    pub change_rate: u32,
    /// The systems (among [`SYSTEMS`]) whose protocol routes are served;
    /// None: all four. One simulator per system makes each see only its
    /// own calls, as separate systems of record would. Unknown names are
    /// ignored with a warning.
    pub systems: Option<Vec<String>>,
    /// A bearer token every protocol call must carry (also accepted next
    /// to issued tokens when `oauth_client` is set).
    pub require_token: Option<String>,
    /// Client id and secret for `POST /oauth/token`; with it, protocol
    /// calls need a token the simulator issued and that has not expired.
    pub oauth_client: Option<(String, String)>,
    /// Lifetime of an issued token.
    pub token_ttl: Duration,
    /// The `Moat-Protocol` value declared on protocol responses; another
    /// than `v1` lets a test see a gateway refuse an unknown protocol.
    pub protocol: String,
    /// Whose API it speaks: protocol v1, or a vendor's (`dialect`).
    pub dialect: Dialect,
    /// Opaque customer tokens the CRM resolves, or JWTs the simulator
    /// signs as the shop's identity provider (`jwt`).
    pub customer_tokens: CustomerTokens,
}

/// Hand-written so the token and the client secret never reach a log.
impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |set: bool| if set { Some("<hidden>") } else { None };
        f.debug_struct("SimConfig")
            .field("products", &self.products)
            .field("seed", &self.seed)
            .field("events_to", &self.events_to)
            .field("events_secret", &hidden(self.events_secret.is_some()))
            .field("event_mode", &self.event_mode)
            .field("drift_rate", &self.drift_rate)
            .field("drift_every", &self.drift_every)
            .field("change_rate", &self.change_rate)
            .field("systems", &self.systems)
            .field("require_token", &hidden(self.require_token.is_some()))
            .field(
                "oauth_client",
                &self.oauth_client.as_ref().map(|(id, _)| (id, "<hidden>")),
            )
            .field("token_ttl", &self.token_ttl)
            .field("protocol", &self.protocol)
            .field("dialect", &self.dialect)
            .field("customer_tokens", &self.customer_tokens)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            products: 10_000,
            seed: 42,
            events_to: None,
            events_secret: None,
            event_mode: EventMode::default(),
            drift_rate: 0.0,
            drift_every: Duration::from_secs(60),
            change_rate: 0,
            systems: None,
            require_token: None,
            oauth_client: None,
            token_ttl: Duration::from_secs(3600),
            protocol: "v1".to_owned(),
            dialect: Dialect::V1,
            customer_tokens: CustomerTokens::Opaque,
        }
    }
}

/// A running-state simulator; cheap to clone (Arc inside).
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    /// Kept so `/_sim/reset` can rebuild the same catalog.
    config: SimConfig,
    /// Read by every upstream call, written by `/_sim` writes and reset.
    /// Never held across an `.await`: handlers render under the lock.
    catalog: RwLock<Catalog>,
    /// Per-system latency, outages and breakage, with their seeded dice.
    faults: Faults,
    /// Lock-free counters, bumped on every upstream call.
    stats: Stats,
    /// Delivers change events to Moat when a write asks for one.
    events: Emitter,
    /// Per [`System`]: whether its protocol routes are served.
    served: [bool; 4],
    /// Bearer tokens accepted on protocol routes, and the ones issued.
    auth: Auth,
    /// `Moat-Protocol` on every protocol response.
    protocol: HeaderValue,
    /// With JWT customer tokens: the keys that sign them.
    jwt: Option<jwt::Issuer>,
}

impl Simulator {
    /// Builds the seeded catalog (about 0.1 s for 100 000 products in a
    /// release build).
    pub fn new(config: SimConfig) -> Simulator {
        let catalog = seed::build(config.products, config.seed);
        let events = Emitter::new(
            config.events_to.as_deref(),
            config.events_secret.as_deref(),
            config.event_mode,
            config.dialect,
        );
        Simulator {
            inner: Arc::new(Inner {
                faults: Faults::new(config.seed),
                catalog: RwLock::new(catalog),
                stats: Stats::default(),
                events,
                served: served(config.systems.as_deref()),
                auth: Auth::new(&config),
                protocol: declared(&config.protocol),
                jwt: match config.customer_tokens {
                    CustomerTokens::Opaque => None,
                    CustomerTokens::Jwt(alg) => Some(jwt::Issuer::new(alg)),
                },
                config,
            }),
        }
    }

    /// With a drift rate, changes that share of prices and stock silently
    /// every `drift_every`, until the returned task is stopped.
    fn drift(&self) -> Option<tokio::task::JoinHandle<()>> {
        let (rate, every) = (self.inner.config.drift_rate, self.inner.config.drift_every);
        if rate <= 0.0 {
            return None;
        }
        let sim = self.clone();
        Some(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(sim.inner.config.seed ^ 0xd41f7);
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let changed = sim.write().drift(rate, &mut rng);
                tracing::info!(changed, "simulator drifted silently");
            }
        }))
    }

    /// With a change rate, changes that many products' prices (EUR, every
    /// segment) and stock a second, each change announced by its events
    /// when `events_to` is set, until the returned task is stopped.
    fn change(&self) -> Option<tokio::task::JoinHandle<()>> {
        let rate = self.inner.config.change_rate;
        let changing = self.read().products.len().min(CHANGING);
        if rate == 0 || changing == 0 {
            return None;
        }
        // Spread over the second: a change every 1/rate s, or a few at a
        // time every 20 ms when that is shorter.
        let period = Duration::from_secs(1)
            .checked_div(rate)
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(20));
        let per_tick = ((f64::from(rate) * period.as_secs_f64()).round() as usize).max(1);
        let sim = self.clone();
        Some(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(sim.inner.config.seed ^ 0xc4a96e);
            let mut tick = tokio::time::interval(period);
            let mut next = 0;
            loop {
                tick.tick().await;
                for _ in 0..per_tick {
                    let changed = sim.write().change(next % changing, 0, &mut rng);
                    next += 1;
                    if let Some((prices, stock)) = changed {
                        sim.inner.events.emit(&sim, "erp", "price.updated", &prices);
                        sim.inner
                            .events
                            .emit(&sim, "erp", "inventory.updated", &[stock]);
                    }
                }
            }
        }))
    }

    /// Every upstream and control route, with JSON 404/405 fallbacks.
    /// Systems not served keep their routes, so their 404 can say why.
    pub fn router(&self) -> Router {
        let mut router = Router::new().route("/healthz", get(healthz));
        match self.inner.config.dialect {
            Dialect::V1 => {
                for system in System::ALL {
                    router = router.merge(upstream::routes(self, system));
                }
                if self.inner.auth.client().is_some() {
                    router = router.route("/oauth/token", post(oauth::token));
                }
            }
            dialect => router = router.merge(dialect::routes(self, dialect)),
        }
        if self.inner.jwt.is_some() {
            router = router.route("/.well-known/jwks.json", get(control::jwks));
        }
        router
            .route("/_sim/faults", get(control::faults))
            .route("/_sim/faults/{system}", post(control::set_faults))
            .route("/_sim/prices/{sku}", put(control::set_price))
            .route("/_sim/inventory/{sku}", put(control::set_inventory))
            .route("/_sim/products/{id}", put(control::update_product))
            .route("/_sim/customers", get(control::customers))
            .route("/_sim/jwt", post(control::mint_jwt))
            .route("/_sim/jwks/rotate", post(control::rotate_jwks))
            .route(
                "/_sim/events",
                get(control::event_mode).post(control::set_event_mode),
            )
            .route("/_sim/stats", get(control::stats))
            .route("/_sim/traces", get(control::traces))
            .route("/_sim/reset", post(control::reset))
            .route("/_sim/oauth/expire", post(control::expire_tokens))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(self.clone())
    }

    fn read(&self) -> RwLockReadGuard<'_, Catalog> {
        // Writes are single field assignments; a panicking writer cannot
        // leave the catalog inconsistent enough to stop serving.
        self.inner
            .catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.inner
            .catalog
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts an upstream call and applies its system's faults; `Err` is the
    /// refusal to send instead of the real answer.
    async fn arrive(&self, endpoint: Endpoint) -> Result<Option<u64>, Refusal> {
        self.inner.stats.arrived(endpoint);
        let system = endpoint.system();
        match self.inner.faults.admit(system).await {
            Verdict::Down => Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{} is down (simulated)", system.name()),
            )),
            Verdict::Error => Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{} failed (simulated)", system.name()),
            )),
            Verdict::Serve { corrupt } => Ok(corrupt),
        }
    }

    /// A 200 carrying `payload` (broken when `corrupt` says so), counting
    /// `items` served.
    fn reply<T: Serialize>(
        &self,
        endpoint: Endpoint,
        shape: Shape,
        corrupt: Option<u64>,
        items: usize,
        payload: &T,
    ) -> Result<Response, Refusal> {
        let body = corrupt::render(payload, shape, corrupt).map_err(Refusal::internal)?;
        self.inner.stats.served(endpoint, items);
        Ok(json(StatusCode::OK, body))
    }
}

/// Which systems' routes are served, from `SimConfig::systems`.
fn served(systems: Option<&[String]>) -> [bool; 4] {
    let Some(names) = systems else {
        return [true; 4];
    };
    let mut served = [false; 4];
    for name in names {
        match System::parse(name) {
            Some(system) => served[system as usize] = true,
            None => tracing::warn!(name, known = ?SYSTEMS, "simulator ignores an unknown system"),
        }
    }
    served
}

/// The `Moat-Protocol` value; one that cannot be a header value (the CLI
/// refuses those) is declared as `invalid`, which no gateway speaks.
fn declared(protocol: &str) -> HeaderValue {
    HeaderValue::from_str(protocol).unwrap_or_else(|_| {
        tracing::warn!(
            protocol,
            "simulator protocol is no header value; declaring `invalid`"
        );
        HeaderValue::from_static("invalid")
    })
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sim: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let drifting = sim.drift();
    let changing = sim.change();
    let served = axum::serve(listener, sim.router())
        .with_graceful_shutdown(shutdown)
        .await;
    for task in [drifting, changing].into_iter().flatten() {
        task.abort();
    }
    served
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// `{"error": message}` with `status`.
fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error: message })
        .unwrap_or_else(|_| br#"{"error":"unprintable error"}"#.to_vec());
    json(status, body)
}

/// A request the simulator will not answer as asked; it becomes
/// `{"error": message}` with `status`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::NOT_FOUND, message)
    }

    /// A response that could not be encoded: a simulator bug, not the caller's.
    fn internal(cause: impl std::fmt::Display) -> Refusal {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode response: {cause}"),
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, &self.message)
    }
}

/// Serialises a control-route answer.
fn ok_json<T: Serialize>(payload: &T) -> Result<Response, Refusal> {
    let body = serde_json::to_vec(payload).map_err(Refusal::internal)?;
    Ok(json(StatusCode::OK, body))
}

async fn healthz() -> Response {
    json(StatusCode::OK, br#"{"ok":true}"#.to_vec())
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}
