//! Moat: a storefront isolation layer. A GraphQL gateway between storefronts
//! and the systems of record (PIM, ERP, CRM, OMS) that serves products,
//! prices and availability from a tiered cache and reads upstream only
//! through limits and breakers.
//!
//! # Layout
//! A storefront read, from the socket to the upstream:
//!
//! - [`http`]: the public listener (`/graphql` over HTTP, health) and its
//!   inbound layers;
//! - [`graphql`]: schema and resolvers; per-request loaders batch keys;
//! - [`catalog`]: which entities are cached under which keys, and how each
//!   cache fills itself; [`customers`]: customer tokens (CRM) and orders
//!   (OMS), resolved and cached the same way;
//! - [`checkout`]: `verifyCheckout` against an authoritative ERP quote, and
//!   the signed price tokens it checks;
//! - [`cache`]: per entity L1 (moka), single-flight, freshness;
//! - [`upstream`]: the outbound stack per system and the contract check;
//!   wire types stay there, [`domain`] types come out.
//!
//! Beside the path: [`shared`] (the Redis link, with its own timeout and
//! breaker), [`resilience`] (breakers, limits, retry budget), [`config`] (strict TOML + env), [`admin`] (metrics and
//! the admin API), [`app`] (wiring and shutdown), [`sim`] (the upstream
//! simulator), [`telemetry`] (logs and metric names), [`error`] (the one
//! error type).

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod cache;
pub mod catalog;
pub mod checkout;
pub mod config;
pub mod customers;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod listener;
pub mod resilience;
pub mod shared;
pub mod sim;
pub mod telemetry;
pub mod upstream;
