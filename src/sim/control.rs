//! The `/_sim` control routes: not part of any real upstream, they let tests,
//! load runs and demos inject faults, change data (optionally pushing a
//! change event to Moat), sign in as a customer, read counters and reset.
//!
//! Bodies are strict (unknown fields are a 400): a typo in a test should
//! fail loudly, not silently set nothing.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::faults::{FaultPatch, System};
use super::seed;
use super::stats::Endpoint;
use super::upstream::path;
use super::wire::{Items, currency_index, default_currency, segment_index};
use super::{Refusal, Simulator, ok_json};

/// A JSON body, or a JSON 400 instead of axum's plain-text rejection.
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Refusal> {
    body.map(|Json(b)| b)
        .map_err(|e| Refusal::bad_request(e.body_text()))
}

/// `GET /_sim/faults`: `{"pim": {...}, "erp": {...}, "crm": {...}, "oms": {...}}`.
pub async fn faults(State(sim): State<Simulator>) -> Result<Response, Refusal> {
    let states = sim.inner.faults.all();
    let mut all = Map::new();
    for system in System::ALL {
        let state = serde_json::to_value(states[system as usize]).map_err(Refusal::internal)?;
        all.insert(system.name().into(), state);
    }
    ok_json(&all)
}

/// `POST /_sim/faults/{system}`: changes the given fields, answers with the
/// system's whole fault state.
pub async fn set_faults(
    State(sim): State<Simulator>,
    system: Result<Path<String>, PathRejection>,
    patch: Result<Json<FaultPatch>, JsonRejection>,
) -> Result<Response, Refusal> {
    let name = path(system)?;
    let system = System::parse(&name).ok_or_else(|| {
        Refusal::bad_request(format!(
            "unknown system {name:?}; known: pim, erp, crm, oms"
        ))
    })?;
    let patch = body(patch)?;
    let state = sim
        .inner
        .faults
        .apply(system, &patch)
        .map_err(Refusal::bad_request)?;
    tracing::info!(system = system.name(), ?state, "simulator faults changed");
    ok_json(&state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceWrite {
    /// Decimal string with exactly the currency's two minor digits.
    amount: String,
    #[serde(default = "default_currency")]
    currency: String,
    /// None: every segment.
    segment: Option<String>,
    #[serde(default)]
    emit_event: bool,
}

/// `"12.34"` → 1234. Exactly two minor digits (both currencies have two),
/// no sign, no exponent: a price a test writes is a price a shop would show.
pub fn parse_amount(amount: &str) -> Result<u64, String> {
    let bad = || {
        format!("amount {amount:?} must be a decimal string with 2 minor digits, like \"12.34\"")
    };
    let (units, minor) = amount.split_once('.').ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(units) || minor.len() != 2 || !digits(minor) {
        return Err(bad());
    }
    let units: u64 = units.parse().map_err(|_| bad())?;
    let minor: u64 = minor.parse().map_err(|_| bad())?;
    units
        .checked_mul(100)
        .and_then(|u| u.checked_add(minor))
        .ok_or_else(bad)
}

/// `PUT /_sim/prices/{sku}`.
pub async fn set_price(
    State(sim): State<Simulator>,
    sku: Result<Path<String>, PathRejection>,
    write: Result<Json<PriceWrite>, JsonRejection>,
) -> Result<Response, Refusal> {
    let sku = path(sku)?;
    let write = body(write)?;
    let amount = parse_amount(&write.amount).map_err(Refusal::bad_request)?;
    let currency = currency_index(&write.currency).ok_or_else(|| {
        Refusal::bad_request(format!(
            "unknown currency {:?}; known: EUR, USD",
            write.currency
        ))
    })?;
    let segment = match write.segment.as_deref() {
        None => None,
        Some(name) => Some(segment_index(name).ok_or_else(|| {
            Refusal::bad_request(format!(
                "unknown segment {name:?}; known: default, wholesale, vip"
            ))
        })?),
    };
    let changed = sim.write().set_price(&sku, amount, currency, segment);
    let items = changed.map_err(|_| Refusal::not_found(format!("no sku {sku:?}")))?;
    if write.emit_event {
        sim.inner.events.emit(&sim, "erp", "price.updated", &items);
    }
    ok_json(&Items { items })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockWrite {
    available: i64,
    #[serde(default)]
    emit_event: bool,
}

/// `PUT /_sim/inventory/{sku}`.
pub async fn set_inventory(
    State(sim): State<Simulator>,
    sku: Result<Path<String>, PathRejection>,
    write: Result<Json<StockWrite>, JsonRejection>,
) -> Result<Response, Refusal> {
    let sku = path(sku)?;
    let write = body(write)?;
    let available = u64::try_from(write.available)
        .map_err(|_| Refusal::bad_request("available must not be negative"))?;
    let changed = sim.write().set_stock(&sku, available);
    let items = [changed.map_err(|_| Refusal::not_found(format!("no sku {sku:?}")))?];
    if write.emit_event {
        sim.inner
            .events
            .emit(&sim, "erp", "inventory.updated", &items);
    }
    ok_json(&Items { items })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductWrite {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    emit_event: bool,
}

/// `PUT /_sim/products/{id}`: changes the given fields; with none it still
/// bumps the version (a touch).
pub async fn update_product(
    State(sim): State<Simulator>,
    id: Result<Path<String>, PathRejection>,
    write: Result<Json<ProductWrite>, JsonRejection>,
) -> Result<Response, Refusal> {
    let id = path(id)?;
    let write = body(write)?;
    if write.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(Refusal::bad_request("name must not be empty"));
    }
    let changed = sim
        .write()
        .update_product(&id, write.name, write.description);
    let items = [changed.ok_or_else(|| Refusal::not_found(format!("no product {id:?}")))?];
    if write.emit_event {
        sim.inner
            .events
            .emit(&sim, "pim", "product.updated", &items);
    }
    ok_json(&Items { items })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignIn<'a> {
    id: &'a str,
    token: String,
    segment: &'a str,
    order_ids: &'a [String],
}

/// `GET /_sim/customers`: ids, tokens, segments and orders, so demos and
/// tests can sign in. With JWT customer tokens, each token is a JWT signed
/// now, valid for an hour.
pub async fn customers(State(sim): State<Simulator>) -> Result<Response, Refusal> {
    let catalog = sim.read();
    let items: Vec<SignIn<'_>> = catalog
        .customers
        .iter()
        .map(|c| SignIn {
            id: &c.id,
            token: match &sim.inner.jwt {
                Some(issuer) => issuer.token_for(&c.id),
                None => c.token.clone(),
            },
            segment: c.segment,
            order_ids: &c.order_ids,
        })
        .collect();
    ok_json(&Items { items })
}

/// The JWT issuer, or a 400 saying the simulator has none.
fn issuer(sim: &Simulator) -> Result<&super::jwt::Issuer, Refusal> {
    sim.inner.jwt.as_ref().ok_or_else(|| {
        Refusal::bad_request(
            "this simulator's customer tokens are opaque; start it with --customer-tokens jwt",
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mint {
    /// The customer id (`sub`); any text, known to the CRM or not.
    sub: String,
    /// Seconds from now to `exp`; negative: already expired.
    #[serde(default = "default_expiry")]
    expires_in: i64,
    /// Seconds from now to `nbf`; none: no `nbf`.
    not_before_in: Option<i64>,
    /// Claims added or replaced (`iss`, `aud`, …); a null removes one.
    #[serde(default)]
    claims: Map<String, Value>,
    /// The `kid` the header names instead of the signing key's.
    kid: Option<String>,
}

fn default_expiry() -> i64 {
    super::jwt::TOKEN_TTL_SECS
}

/// `POST /_sim/jwt` `{sub, expires_in?, not_before_in?, claims?, kid?}`:
/// `{"token": JWT}` signed with the current key, so tests can present
/// tokens that are expired, for another audience or issuer, or name a
/// key nobody published, each with a good signature.
pub async fn mint_jwt(
    State(sim): State<Simulator>,
    mint: Result<Json<Mint>, JsonRejection>,
) -> Result<Response, Refusal> {
    let issuer = issuer(&sim)?;
    let mint = body(mint)?;
    let token = issuer.mint(
        &mint.sub,
        mint.expires_in,
        mint.not_before_in,
        &mint.claims,
        mint.kid.as_deref(),
    );
    ok_json(&Value::Object(Map::from_iter([(
        "token".to_owned(),
        Value::String(token),
    )])))
}

/// `POST /_sim/jwks/rotate`: a new signing key, served beside the previous
/// one; `{"kid": new key id}`.
pub async fn rotate_jwks(State(sim): State<Simulator>) -> Result<Response, Refusal> {
    let kid = issuer(&sim)?.rotate();
    tracing::info!(kid, "simulator rotated its JWT signing key");
    ok_json(&Value::Object(Map::from_iter([(
        "kid".to_owned(),
        Value::String(kid),
    )])))
}

/// `GET /.well-known/jwks.json`: the public keys, counted and subject to
/// the CRM's faults (the CRM plays the identity provider here).
pub async fn jwks(State(sim): State<Simulator>) -> Result<Response, Refusal> {
    const ENDPOINT: Endpoint = Endpoint::CrmJwks;
    let _ = sim.arrive(ENDPOINT).await?;
    let keys = issuer(&sim)?.jwks();
    sim.inner
        .stats
        .served(ENDPOINT, keys["keys"].as_array().map_or(0, Vec::len));
    ok_json(&keys)
}

/// `GET /_sim/stats`.
pub async fn stats(State(sim): State<Simulator>) -> Result<Response, Refusal> {
    ok_json(&sim.inner.stats.to_json())
}

/// `GET /_sim/traces`: the trace context of recent upstream calls.
pub async fn traces(State(sim): State<Simulator>) -> Result<Response, Refusal> {
    ok_json(&sim.inner.stats.traces_json())
}

/// `POST /_sim/reset`: seeded catalog, default faults, zero counters.
/// Issued tokens stay valid: reset is about data, and a gateway holding a
/// token should not see a 401 because a test reset the data.
pub async fn reset(State(sim): State<Simulator>) -> Result<Response, Refusal> {
    let (products, seed) = (sim.inner.config.products, sim.inner.config.seed);
    // Building 100 000 products is CPU work worth keeping off the reactor.
    let fresh = tokio::task::spawn_blocking(move || seed::build(products, seed))
        .await
        .map_err(|e| {
            Refusal::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("reset failed: {e}"),
            )
        })?;
    let stale = std::mem::replace(&mut *sim.write(), fresh);
    // Freed outside the lock: dropping 100 000 products is not free either.
    drop(stale);
    sim.inner.faults.reset();
    sim.inner.stats.reset();
    tracing::info!("simulator reset to its seeded state");
    ok_json(&Value::Object(Map::from_iter([(
        "ok".to_owned(),
        Value::Bool(true),
    )])))
}

/// `POST /_sim/oauth/expire`: every token issued so far expires now, so a
/// test can watch a gateway refresh its token. `{"expired": n}` counts the
/// ones that were still valid.
pub async fn expire_tokens(State(sim): State<Simulator>) -> Result<Response, Refusal> {
    let expired = sim.inner.auth.expire_all();
    tracing::info!(expired, "simulator expired its issued tokens");
    ok_json(&Value::Object(Map::from_iter([(
        "expired".to_owned(),
        Value::from(expired),
    )])))
}

/// `GET /_sim/events`: how events are sent.
pub async fn event_mode(State(sim): State<Simulator>) -> Result<Response, Refusal> {
    ok_json(&sim.inner.events.mode())
}

/// `POST /_sim/events` `{"form": "fat" | "thin", "chaos": bool}`.
pub async fn set_event_mode(
    State(sim): State<Simulator>,
    mode: Result<Json<super::EventMode>, JsonRejection>,
) -> Result<Response, Refusal> {
    let mode = body(mode)?;
    sim.inner.events.set_mode(mode);
    tracing::info!(?mode, "simulator event mode changed");
    ok_json(&mode)
}
