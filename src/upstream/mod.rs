//! The systems of record as Moat reaches them. Each protocol family (PIM,
//! ERP, CRM, OMS) has a module with its wire types and their mapping to
//! `domain`; each record goes to the system `[entities]` names as its
//! owner, through that system's `Client`, the outbound stack.
//!
//! A wire type never leaves this module: what comes back is a domain value
//! that passed the contract check, or an `Error`.

mod ask;
pub mod auth;
mod client;
mod contract;
#[cfg(test)]
mod contract_props;
#[cfg(test)]
mod contract_schema;
pub mod crm;
pub mod erp;
pub mod oms;
pub mod pim;
mod pool;
pub mod probe;
pub mod protection;
pub mod rest;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use futures_util::future::join_all;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use ask::Ask;
use auth::Credentials;
pub use client::{Client, PROTOCOL_HEADER, Reply};
pub use crm::Crm;
pub use erp::Erp;
pub use oms::Oms;
pub use pim::Pim;
use pool::Pool;
pub use protection::Protection;

use crate::config::{Config, Secrets};
use crate::error::Error;
use crate::exceptions::Exceptions;
use crate::resilience::ratelimit::SharedBuckets;
use crate::vocab::{CacheMap, Priority, Record, System};

/// A protocol v1 item outside a list: what a change event's `data` holds.
#[derive(Debug, Clone)]
pub enum Item {
    Price(crate::domain::Price),
    Stock(crate::domain::Stock),
    Product(crate::domain::Product),
    Customer(crate::domain::Customer),
    Order(crate::domain::Order),
}

/// Reads `data` as the protocol v1 item of `entity` (`price`, `inventory`,
/// `product`, `customer`, `order`) from `system`: the same wire types and
/// checks as the API, so an event cannot put into the cache what a fetch
/// would refuse. A violation is recorded in `exceptions`; the error is the
/// reason, for the sender.
pub fn item(
    entity: &str,
    system: System,
    data: &[u8],
    exceptions: Option<&Exceptions>,
) -> Result<Item, String> {
    use contract::check_one;
    let at = contract::Boundary { system, exceptions };
    match entity {
        "price" => check_one::<erp::WirePrice>(at, data).map(Item::Price),
        "inventory" => check_one::<erp::WireStock>(at, data).map(Item::Stock),
        "product" => check_one::<pim::WireProduct>(at, data).map(Item::Product),
        "customer" => check_one::<crm::WireCustomer>(at, data).map(Item::Customer),
        "order" => check_one::<oms::WireOrder>(at, data).map(Item::Order),
        other => Err(format!("no protocol v1 item is called {other:?}")),
    }
}

/// One system of record as Moat reaches it.
pub struct Connection {
    pub system: System,
    /// Where it is (the embedded simulator's address when config names
    /// none).
    pub url: String,
    /// The records it owns.
    pub records: Vec<Record>,
    pub owner: Option<String>,
    pub contact: Option<String>,
    /// What it speaks: `v1`, or `rest` (its own API, through routes).
    pub protocol: &'static str,
    /// Its limits, breaker and retry state, for the admin API.
    pub protection: Arc<Protection>,
}

/// Every system of record in use, ready to call, each record through its
/// owner's client.
#[derive(Clone)]
pub struct Upstreams {
    pub pim: Pim,
    pub erp: Erp,
    pub crm: Crm,
    pub oms: Oms,
    pub systems: Vec<Arc<Connection>>,
    /// The connectors of systems that speak their own API, by name.
    pub connectors: HashMap<String, Arc<rest::Connector>>,
}

impl Upstreams {
    /// A client per system `[entities]` names, with its own settings,
    /// credentials and protection. `embedded`: the simulator's URL, for
    /// systems config gives no URL.
    pub fn new(
        config: &Config,
        secrets: &Secrets,
        embedded: Option<&str>,
        shared: Option<Arc<dyn SharedBuckets>>,
        exceptions: Arc<Exceptions>,
    ) -> Result<Upstreams, Error> {
        let owners = config.owners();
        let connectors: HashMap<String, Arc<rest::Connector>> = rest::connectors(config)
            .map_err(|problems| {
                let problems: Vec<String> =
                    problems.iter().map(|(k, m)| format!("{k}: {m}")).collect();
                Error::internal(format!("bad connector config: {}", problems.join("; ")))
            })?
            .into_iter()
            .map(|(name, c)| (name, Arc::new(c)))
            .collect();
        let mut systems = Vec::new();
        let mut clients: Vec<Client> = Vec::new();
        for system in owners.systems() {
            let settings = config.system(system.name());
            let url = settings
                .url
                .as_deref()
                .or(embedded)
                .ok_or_else(|| Error::internal(format!("systems.{system}.url is not set")))?;
            let pool = Pool::new(&settings)?;
            let credentials = Credentials::new(
                system,
                &settings.auth,
                secrets.systems.get(system.name()),
                pool.clone(),
                settings.timeout,
                url,
            )?;
            let protection =
                Protection::new(system, &settings, config.upstream.replicas, shared.clone());
            clients.push(Client::new(
                protection.clone(),
                pool,
                url,
                &settings,
                Arc::new(credentials),
                exceptions.clone(),
                connectors.get(system.name()).cloned(),
            ));
            systems.push(Arc::new(Connection {
                system,
                url: crate::config::redact(url),
                records: owners.records_of(system),
                owner: settings.owner,
                contact: settings.contact,
                protocol: if connectors.contains_key(system.name()) {
                    "rest"
                } else {
                    crate::vocab::PROTOCOL
                },
                protection,
            }));
        }
        let client = |record: Record| {
            let owner = owners.of(record);
            clients
                .iter()
                .find(|c| c.system() == owner)
                .cloned()
                .ok_or_else(|| Error::internal(format!("no client for {owner}")))
        };
        Ok(Upstreams {
            pim: Pim::new(client(Record::Products)?, client(Record::Categories)?),
            erp: Erp::new(
                client(Record::Prices)?,
                client(Record::Inventory)?,
                config.system(owners.of(Record::Prices).name()).offers,
            ),
            crm: Crm::new(client(Record::Customers)?),
            oms: Oms::new(client(Record::Orders)?),
            systems,
            connectors,
        })
    }

    /// A system in use, by name.
    pub fn system(&self, name: &str) -> Option<&Arc<Connection>> {
        self.systems.iter().find(|c| c.system.name() == name)
    }

    /// Each system's protection state.
    pub fn protection(&self) -> impl Iterator<Item = &Arc<Protection>> {
        self.systems.iter().map(|c| &c.protection)
    }
}

/// What a path segment may carry unescaped (RFC 3986 unreserved).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An id or token as one URL path segment, escaped so it can never add a
/// segment or a query. `None` for `.` and `..`, which URL parsing would
/// resolve (even escaped) into another path: no upstream entity has them.
pub(crate) fn path_segment(value: &str) -> Option<String> {
    if value.is_empty() || value == "." || value == ".." {
        return None;
    }
    Some(utf8_percent_encode(value, PATH_SEGMENT).to_string())
}

/// Splits `keys` into calls of at most `max` keys, runs them concurrently and
/// merges the answers. A failed chunk fails only its own keys.
pub(crate) async fn in_chunks<K, V, F, Fut>(
    keys: Vec<K>,
    max: usize,
    call: F,
) -> Result<CacheMap<K, Result<V, Error>>, Error>
where
    K: Eq + Hash + Clone,
    F: Fn(Vec<K>) -> Fut,
    Fut: Future<Output = Result<CacheMap<K, Result<V, Error>>, Error>>,
{
    if keys.len() <= max {
        return call(keys).await;
    }
    let chunks: Vec<Vec<K>> = keys.chunks(max.max(1)).map(|c| c.to_vec()).collect();
    let answers = join_all(chunks.iter().cloned().map(&call)).await;
    if let Some(Err(e)) = answers
        .iter()
        .find(|a| a.is_err())
        .filter(|_| answers.iter().all(Result::is_err))
    {
        return Err(e.clone());
    }
    let mut merged = CacheMap::with_capacity_and_hasher(keys.len(), Default::default());
    for (chunk, answer) in chunks.into_iter().zip(answers) {
        match answer {
            Ok(found) => merged.extend(found),
            Err(e) => merged.extend(chunk.into_iter().map(|k| (k, Err(e.clone())))),
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn path_segments_cannot_escape_their_segment() {
        assert_eq!(path_segment("ord-00001").as_deref(), Some("ord-00001"));
        assert_eq!(
            path_segment("a/b?c#d%").as_deref(),
            Some("a%2Fb%3Fc%23d%25")
        );
        assert_eq!(path_segment(".."), None);
        assert_eq!(path_segment("."), None);
        assert_eq!(path_segment(""), None);
    }
}
