//! The systems of record as Moat reaches them. Each system (PIM, ERP, CRM,
//! OMS) has a folder-free module with its wire types and their mapping to
//! `domain`; all of them call out through one `Client`, the outbound stack.
//!
//! A wire type never leaves this module: what comes back is a domain value
//! that passed the contract check, or an `Error`.

mod client;
mod contract;
#[cfg(test)]
mod contract_props;
pub mod crm;
pub mod erp;
pub mod oms;
pub mod pim;
pub mod protection;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use client::Client;
pub use crm::Crm;
pub use erp::Erp;
pub use oms::Oms;
pub use pim::Pim;
pub use protection::Protection;

use crate::error::Error;
use crate::exceptions::Exceptions;
use crate::vocab::{Priority, System};

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

/// Settings every system's client shares.
#[derive(Debug, Clone)]
pub struct Settings {
    pub base_url: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_batch: usize,
}

/// Every system of record, ready to call.
#[derive(Clone)]
pub struct Upstreams {
    pub pim: Pim,
    pub erp: Erp,
    pub crm: Crm,
    pub oms: Oms,
    /// Each system's limits, breaker and retry state, for the admin API.
    pub protection: Vec<Arc<Protection>>,
}

impl Upstreams {
    pub fn new(
        settings: &Settings,
        config: &crate::config::Upstream,
        shared: Option<Arc<dyn crate::resilience::ratelimit::SharedBuckets>>,
        exceptions: Arc<Exceptions>,
    ) -> Result<Upstreams, Error> {
        // reqwest is built without a default TLS provider (ring is lighter
        // than aws-lc); it panics at build unless one is installed first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        let protection: Vec<Arc<Protection>> = System::ALL
            .into_iter()
            .map(|system| Protection::new(system, config, shared.clone()))
            .collect();
        let client = |system: System| {
            let p = protection.iter().find(|p| p.system == system).cloned();
            p.map(|p| Client::new(p, http.clone(), settings, exceptions.clone()))
                .ok_or_else(|| Error::internal(format!("no protection for {system}")))
        };
        Ok(Upstreams {
            pim: Pim::new(client(System::Pim)?),
            erp: Erp::new(client(System::Erp)?),
            crm: Crm::new(client(System::Crm)?),
            oms: Oms::new(client(System::Oms)?),
            protection,
        })
    }

    /// One system's protection state.
    pub fn protection(&self, system: System) -> Option<&Arc<Protection>> {
        self.protection.iter().find(|p| p.system == system)
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
) -> Result<HashMap<K, Result<V, Error>>, Error>
where
    K: Eq + Hash + Clone,
    F: Fn(Vec<K>) -> Fut,
    Fut: Future<Output = Result<HashMap<K, Result<V, Error>>, Error>>,
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
    let mut merged = HashMap::with_capacity(keys.len());
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
