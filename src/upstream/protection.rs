//! One system's protection state: its rate limiter, breaker, retry budget
//! and retry settings, plus recent latency for the status page. Everything
//! here can be changed while running (admin API, SIGHUP); a change swaps
//! whole values, so a call in flight finishes under the settings it began
//! with.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::json;

use super::System;
use crate::config::{SystemLimit, SystemSettings};
use crate::resilience::breaker::{self, Breaker, Forced};
use crate::resilience::budget::{Budget, BudgetSettings};
use crate::resilience::ratelimit::{Limiter, SharedBuckets};
use crate::telemetry;

/// Retry behaviour of one system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub backoff: Duration,
}

/// How many recent call latencies the status page summarises.
const RECENT: usize = 256;

pub struct Protection {
    pub system: System,
    limiter: ArcSwap<Limiter>,
    /// The limit config gives, which an operator's change overrides until
    /// `reset_limit`.
    configured: ArcSwap<SystemLimit>,
    pub breaker: Arc<Breaker>,
    budget: ArcSwap<Budget>,
    retry: ArcSwap<RetrySettings>,
    /// For rebuilding the limiter: the shared store and the replica count
    /// (configured, then as fleet heartbeats count them).
    shared: Option<Arc<dyn SharedBuckets>>,
    replicas: AtomicU32,
    recent: Mutex<VecDeque<f64>>,
}

impl Protection {
    /// `replicas`: how many Moat processes share the system's limit.
    pub fn new(
        system: System,
        settings: &SystemSettings,
        replicas: u32,
        shared: Option<Arc<dyn SharedBuckets>>,
    ) -> Arc<Protection> {
        let protection = Arc::new(Protection {
            system,
            limiter: ArcSwap::from_pointee(Limiter::new(
                system.name(),
                settings.limit,
                shared.clone(),
                replicas,
            )),
            configured: ArcSwap::from_pointee(settings.limit),
            breaker: Breaker::new(system.name(), breaker_settings(settings)),
            budget: ArcSwap::from_pointee(Budget::new(budget_settings(settings))),
            retry: ArcSwap::from_pointee(retry_settings(settings)),
            shared,
            replicas: AtomicU32::new(replicas.max(1)),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        });
        protection.publish_limit();
        protection
    }

    pub fn limiter(&self) -> Arc<Limiter> {
        self.limiter.load_full()
    }

    pub fn budget(&self) -> Arc<Budget> {
        self.budget.load_full()
    }

    pub fn retry(&self) -> RetrySettings {
        **self.retry.load()
    }

    pub fn limit(&self) -> SystemLimit {
        self.limiter.load().settings()
    }

    /// Replaces the rate limit (a fresh limiter: governor cannot change a
    /// quota in place, and rebuilding from the old state would read old
    /// arrivals under the new quota).
    pub fn set_limit(&self, settings: SystemLimit) {
        self.limiter.store(Arc::new(Limiter::new(
            self.system.name(),
            settings,
            self.shared.clone(),
            self.replicas.load(Ordering::Acquire),
        )));
        self.publish_limit();
    }

    /// How many replicas share the limit now (from fleet heartbeats): when
    /// the shared store is away, each takes this share of it.
    pub fn set_replicas(&self, replicas: u32) {
        let replicas = replicas.max(1);
        if self.replicas.swap(replicas, Ordering::AcqRel) != replicas {
            tracing::info!(upstream = %self.system.name(), replicas, "replicas sharing the limit");
            self.set_limit(self.limit());
        }
    }

    /// How many replicas share the limit, as last known.
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Acquire)
    }

    /// Back to the configured limit.
    pub fn reset_limit(&self) {
        let configured = **self.configured.load();
        if configured != self.limit() {
            self.set_limit(configured);
        }
    }

    /// Applies reloaded settings: limits, breaker thresholds, retries.
    pub fn reload(&self, settings: &SystemSettings) {
        self.configured.store(Arc::new(settings.limit));
        if settings.limit != self.limit() {
            self.set_limit(settings.limit);
        }
        self.breaker.set_settings(breaker_settings(settings));
        let budget = budget_settings(settings);
        if budget != self.budget.load().settings() {
            self.budget.store(Arc::new(Budget::new(budget)));
        }
        self.retry.store(Arc::new(retry_settings(settings)));
    }

    /// An operator's breaker action.
    pub fn force_breaker(&self, forced: Option<Forced>) {
        self.breaker.force(forced);
    }

    pub fn record_latency(&self, took: Duration) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(took.as_secs_f64() * 1000.0);
    }

    /// For `/admin/status`.
    pub fn status(&self) -> serde_json::Value {
        let mut recent: Vec<f64> = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        recent.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            (!recent.is_empty()).then(|| recent[((recent.len() - 1) as f64 * p).round() as usize])
        };
        json!({
            "breaker": self.breaker.report(),
            "limit": self.limit(),
            // Replicas sharing the limit: each takes limit / this while
            // the shared store is away.
            "replicas": self.replicas(),
            "latency_ms": { "calls": recent.len(), "p50": pct(0.5), "p99": pct(0.99) },
        })
    }

    fn publish_limit(&self) {
        metrics::gauge!(telemetry::RATELIMIT_LIMIT, "upstream" => self.system.name())
            .set(f64::from(self.limit().rps));
    }
}

fn breaker_settings(settings: &SystemSettings) -> breaker::Settings {
    let b = &settings.breaker;
    breaker::Settings {
        failure_rate: b.failure_rate,
        window: b.window,
        min_calls: b.min_calls,
        consecutive_failures: b.consecutive_failures,
        cooldown: b.cooldown,
        probes: b.probes,
    }
}

fn budget_settings(settings: &SystemSettings) -> BudgetSettings {
    let r = &settings.retry;
    BudgetSettings {
        ratio: r.budget_ratio,
        floor_per_second: r.budget_floor,
        window: r.budget_window,
    }
}

fn retry_settings(settings: &SystemSettings) -> RetrySettings {
    RetrySettings {
        max_attempts: settings.retry.max_attempts,
        backoff: settings.retry.backoff,
    }
}
