//! What the upstream routes were asked and served, so tests and load runs
//! can assert how much traffic Moat let through (`GET /_sim/stats`), and
//! the trace context each call carried (`GET /_sim/traces`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value, json};

use super::faults::System;

/// An upstream route, as counted in the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    PimProducts,
    PimCategories,
    ErpPrices,
    ErpInventory,
    ErpQuote,
    /// Prices and stock together.
    ErpOffers,
    OmsOrders,
    /// Both customer look-ups: by token and by id.
    CrmCustomers,
    /// `/.well-known/jwks.json`, served with JWT customer tokens (the CRM
    /// plays the identity provider).
    CrmJwks,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::PimProducts,
        Endpoint::PimCategories,
        Endpoint::ErpPrices,
        Endpoint::ErpInventory,
        Endpoint::ErpQuote,
        Endpoint::ErpOffers,
        Endpoint::OmsOrders,
        Endpoint::CrmCustomers,
        Endpoint::CrmJwks,
    ];

    /// The key in `/_sim/stats`.
    pub fn key(self) -> &'static str {
        match self {
            Endpoint::PimProducts => "pim.products",
            Endpoint::PimCategories => "pim.categories",
            Endpoint::ErpPrices => "erp.prices",
            Endpoint::ErpInventory => "erp.inventory",
            Endpoint::ErpQuote => "erp.quote",
            Endpoint::ErpOffers => "erp.offers",
            Endpoint::OmsOrders => "oms.orders",
            Endpoint::CrmCustomers => "crm.customers",
            Endpoint::CrmJwks => "crm.jwks",
        }
    }

    /// The system whose faults apply to this route.
    pub fn system(self) -> System {
        match self {
            Endpoint::PimProducts | Endpoint::PimCategories => System::Pim,
            Endpoint::ErpPrices
            | Endpoint::ErpInventory
            | Endpoint::ErpQuote
            | Endpoint::ErpOffers => System::Erp,
            Endpoint::OmsOrders => System::Oms,
            Endpoint::CrmCustomers | Endpoint::CrmJwks => System::Crm,
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// How many calls' trace context `/_sim/traces` keeps (the most recent).
const TRACES_KEPT: usize = 1000;

/// Counters per endpoint. Relaxed atomics: each counter is independent and
/// read only for reporting.
#[derive(Default)]
pub struct Stats {
    /// The W3C trace context of recent calls, oldest first.
    traces: Mutex<VecDeque<Value>>,
    requests: [AtomicU64; Endpoint::ALL.len()],
    items: [AtomicU64; Endpoint::ALL.len()],
    /// Protocol calls refused for a missing or bad bearer token. Kept apart
    /// from `requests`, which count only calls a system was let to answer.
    unauthorized: AtomicU64,
    /// Successful `/oauth/token` answers, so a test can assert that a
    /// gateway reuses its token instead of asking for one per call.
    tokens_issued: AtomicU64,
}

impl Stats {
    /// Called on arrival, before latency or faults, so failed calls count.
    pub fn arrived(&self, endpoint: Endpoint) {
        self.requests[endpoint.slot()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    pub fn token_issued(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// Entities in a 200 response (a quote counts its lines).
    pub fn served(&self, endpoint: Endpoint, items: usize) {
        self.items[endpoint.slot()].fetch_add(items as u64, Ordering::Relaxed);
    }

    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.requests[endpoint.slot()].load(Ordering::Relaxed)
    }

    pub fn items(&self, endpoint: Endpoint) -> u64 {
        self.items[endpoint.slot()].load(Ordering::Relaxed)
    }

    /// Keeps the `traceparent` and `tracestate` a call to `system` carried
    /// (null when absent), so a test can follow one trace through Moat.
    pub fn trace_context<B>(&self, system: &str, request: &axum::http::Request<B>) {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let call = json!({
            "system": system,
            "method": request.method().as_str(),
            "path": request.uri().path(),
            "traceparent": header("traceparent"),
            "tracestate": header("tracestate"),
        });
        let mut traces = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        if traces.len() == TRACES_KEPT {
            traces.pop_front();
        }
        traces.push_back(call);
    }

    /// `{"calls": [{system, method, path, traceparent, tracestate}]}`.
    pub fn traces_json(&self) -> Value {
        let traces = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        json!({ "calls": traces.iter().collect::<Vec<_>>() })
    }

    pub fn reset(&self) {
        self.traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let totals = [&self.unauthorized, &self.tokens_issued];
        for counter in self.requests.iter().chain(&self.items).chain(totals) {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// `{"requests": {key: n}, "items": {key: n}, "unauthorized": n,
    /// "tokens_issued": n}`.
    pub fn to_json(&self) -> Value {
        let mut requests = Map::new();
        let mut items = Map::new();
        for endpoint in Endpoint::ALL {
            requests.insert(endpoint.key().into(), self.requests(endpoint).into());
            items.insert(endpoint.key().into(), self.items(endpoint).into());
        }
        let mut root = Map::new();
        root.insert("requests".into(), Value::Object(requests));
        root.insert("items".into(), Value::Object(items));
        let total = |counter: &AtomicU64| Value::from(counter.load(Ordering::Relaxed));
        root.insert("unauthorized".into(), total(&self.unauthorized));
        root.insert("tokens_issued".into(), total(&self.tokens_issued));
        Value::Object(root)
    }
}
