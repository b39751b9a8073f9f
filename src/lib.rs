//! Moat: a storefront isolation layer. A GraphQL gateway between storefronts
//! and the systems of record (PIM, ERP, CRM, OMS) that serves products,
//! prices and availability from a tiered cache and reads upstream only
//! through limits and breakers.
//!
//! # Layout
//! A storefront read, from the socket to the upstream:
//!
//! - [`listener`]: accepts connections and holds them to their limits;
//! - [`http`]: the public listener's routes (`/graphql` over HTTP, health,
//!   `/events/{source}`) and inbound layers;
//! - [`graphql`]: the query guard and cost check, schema and resolvers;
//!   per-request loaders batch keys;
//! - [`catalog`]: which entities are cached under which keys, and how each
//!   cache fills itself; [`customers`], its peer: customer tokens (opaque
//!   ones resolved by the CRM, JWTs verified against the identity
//!   provider's keys) and orders (OMS), cached the same way;
//! - [`checkout`]: `verifyCheckout` against an authoritative ERP quote, and
//!   the signed price tokens it checks;
//! - [`cache`]: per entity L1 (moka), single-flight, L2, freshness,
//!   invalidation;
//! - [`upstream`]: the outbound stack per system and the contract check;
//!   wire types stay there, [`domain`] types come out.
//!
//! # Floors
//! Imports only point down (a test, `tests/architecture.rs`, holds every
//! module to it). From the bottom:
//!
//! 1. [`error`] (the one error type and its code table), [`vocab`]
//!    (systems, priorities, entities, currencies), [`background`] (owned
//!    background work), [`hex`]: leaves, importing nothing of the crate;
//! 2. [`config`] (strict TOML + env, plain settings), [`domain`] (what Moat
//!    serves), [`telemetry`] (logs and metric names);
//! 3. [`resilience`] (breakers, limits, retry budget, client limits), then
//!    [`redis_link`] (the shared Redis, with its own timeout and breaker);
//! 4. [`upstream`], then [`cache`];
//! 5. [`catalog`] and [`customers`], then [`checkout`] and [`events`]
//!    (signed change events, applied once and in order, dead letters);
//!    [`edge`]: caching headers for CDNs in front, and their purges;
//!    [`fleet`]: operators' limit and breaker changes, on every replica;
//! 6. [`graphql`], then [`state`] (what every handler shares);
//! 7. the listeners: [`listener`], [`http`], [`admin`] (metrics, the admin
//!    API and its CLI);
//! 8. [`app`]: wiring, start and ordered shutdown; [`doctor`]: the
//!    readiness checklist (`moat doctor`).
//!
//! Apart: [`schema`], upstream protocol v1 as JSON Schema (a leaf), and
//! [`sim`], the upstream simulator, which shares nothing with the gateway
//! but that protocol.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod background;
pub mod cache;
pub mod catalog;
pub mod checkout;
pub mod config;
pub mod customers;
pub mod data_key;
pub mod doctor;
pub mod domain;
pub mod edge;
pub mod error;
pub mod events;
pub mod exceptions;
pub mod fleet;
pub mod graphql;
pub mod hex;
pub mod http;
pub mod listener;
pub mod reconcile;
pub mod redis_link;
pub mod resilience;
pub mod schema;
pub mod sim;
pub mod state;
pub mod telemetry;
pub mod upstream;
pub mod vocab;
