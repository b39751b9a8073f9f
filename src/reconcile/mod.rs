//! Reconciliation: drift between what Moat holds and what the systems of
//! record say is found, counted, repaired and reported, on a schedule and
//! on demand (`POST /admin/reconcile/{entity}`).
//!
//! - `pass`: one pass over one entity's cache;
//! - here: which entity is which tier, the fleet-wide schedule (a pass is
//!   due when the last one, by any replica, finished an interval ago), the
//!   lease that lets one replica run a given pass at a time (it expires if
//!   its holder dies), and the reports (the last ones kept in Redis, in
//!   memory without it).

mod pass;

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::background::Background;
use crate::cache::Invalidator;
use crate::catalog::Catalog;
use crate::config;
use crate::customers::Customers;
use crate::domain::Timestamp;
use crate::error::{Error, Kind};
use crate::events::SeenVersions;
use crate::exceptions::Exceptions;
use crate::redis_link::RedisLink;
use crate::telemetry;
use crate::vocab::{Entity, Owners, Record};

/// What can be reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Prices,
    Inventory,
    Products,
    Orders,
}

impl Subject {
    pub const ALL: [Subject; 4] = [
        Subject::Prices,
        Subject::Inventory,
        Subject::Products,
        Subject::Orders,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Subject::Prices => "prices",
            Subject::Inventory => "inventory",
            Subject::Products => "products",
            Subject::Orders => "orders",
        }
    }

    pub fn from_name(name: &str) -> Option<Subject> {
        Subject::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The subject `name` spells, plural (its name) or singular (the
    /// entity it walks: `price`, `product`, `order`).
    pub fn from_spelling(name: &str) -> Option<Subject> {
        Subject::ALL
            .into_iter()
            .find(|s| s.name() == name || s.cache().0.name() == name)
    }

    /// The cache it walks, and who owns what is in it.
    fn cache(self) -> (Entity, Record) {
        match self {
            Subject::Prices => (Entity::Price, Record::Prices),
            Subject::Inventory => (Entity::Inventory, Record::Inventory),
            Subject::Products => (Entity::Product, Record::Products),
            Subject::Orders => (Entity::Order, Record::Orders),
        }
    }
}

/// One drifted key, as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Example {
    pub key: String,
    pub cached: String,
    pub authoritative: String,
    /// How old the cached value was.
    pub age_seconds: u64,
}

/// What one pass found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub entity: Subject,
    pub started_at: String,
    pub finished_at: String,
    /// Keys compared with their owner.
    pub checked: u64,
    pub drifted: u64,
    pub repaired: u64,
    pub examples: Vec<Example>,
    /// Every held key was checked (false: the budget, the time limit or
    /// the lease ran out first; the next pass starts again).
    pub complete: bool,
    /// Upstream calls made.
    pub calls: u64,
    /// Why it stopped early, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The replica that ran it.
    pub replica: String,
}

/// How many reports are kept.
const REPORTS: usize = 50;

/// Extends a lease if this replica still holds it. KEYS[1] the lease;
/// ARGV[1] the replica; ARGV[2] ms.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
          return 0",
    )
});

/// Deletes a lease if this replica still holds it.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('DEL', KEYS[1]) end
          return 0",
    )
});

pub struct Reconciler {
    settings: ArcSwap<config::Reconcile>,
    /// Whom drift is reported to.
    owners: Owners,
    catalog: Arc<Catalog>,
    customers: Arc<Customers>,
    invalidator: Arc<Invalidator>,
    exceptions: Arc<Exceptions>,
    /// What events announced, lowered where it ran ahead of the owner.
    versions: SeenVersions,
    redis: Option<Arc<RedisLink>>,
    replica: String,
    /// Reports, newest last, when Redis is not there to keep them.
    reports: Mutex<VecDeque<Report>>,
    /// Passes running here (each subject at most once per replica).
    running: Mutex<Vec<Subject>>,
    /// When each subject's last pass finished, as this replica knows.
    last_local: Mutex<Vec<(Subject, Timestamp)>>,
}

/// Who holds a pass's lease.
enum Lease {
    Ours,
    Theirs,
}

impl Reconciler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: &config::Reconcile,
        owners: Owners,
        catalog: Arc<Catalog>,
        customers: Arc<Customers>,
        invalidator: Arc<Invalidator>,
        exceptions: Arc<Exceptions>,
        versions: SeenVersions,
        redis: Option<Arc<RedisLink>>,
        replica: String,
    ) -> Arc<Reconciler> {
        Arc::new(Reconciler {
            settings: ArcSwap::from_pointee(settings.clone()),
            owners,
            catalog,
            customers,
            invalidator,
            exceptions,
            versions,
            redis,
            replica,
            reports: Mutex::new(VecDeque::new()),
            running: Mutex::new(Vec::new()),
            last_local: Mutex::new(Vec::new()),
        })
    }

    pub fn reload(&self, settings: &config::Reconcile) {
        self.settings.store(Arc::new(settings.clone()));
    }

    /// Runs a pass of `subject` now, unless one is running (here or on
    /// another replica): then `Err` with a conflict.
    pub async fn run(&self, subject: Subject) -> Result<Report, Error> {
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.contains(&subject) {
                return Err(busy(subject, "this replica"));
            }
            running.push(subject);
        }
        let result = self.leased(subject).await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| *s != subject);
        result
    }

    async fn leased(&self, subject: Subject) -> Result<Report, Error> {
        if let Lease::Theirs = self.lease(subject).await {
            return Err(busy(subject, "another replica"));
        }
        let report = self.pass(subject).await;
        self.release(subject).await;
        self.keep(&report).await;
        Ok(report)
    }

    async fn pass(&self, subject: Subject) -> Report {
        let settings = self.settings.load_full();
        let started = Instant::now();
        let mut report = Report {
            entity: subject,
            started_at: Timestamp::now().to_string(),
            finished_at: String::new(),
            checked: 0,
            drifted: 0,
            repaired: 0,
            examples: Vec::new(),
            complete: true,
            calls: 0,
            error: None,
            replica: self.replica.clone(),
        };
        let budget = pass::Budget {
            batch_size: settings.batch_size,
            max_calls: settings.max_calls,
            deadline: started + settings.max_duration,
        };
        let keep_going = || self.renew(subject).boxed();
        let sinks = pass::Sinks {
            invalidator: &self.invalidator,
            exceptions: &self.exceptions,
            versions: &self.versions,
            keep_going: &keep_going,
        };
        let (entity, record) = subject.cache();
        let owner = self.owners.of(record);
        let c = &self.catalog;
        let outcome = match subject {
            Subject::Prices => {
                pass::run(&c.prices, entity, owner, budget, &sinks, &mut report).await
            }
            Subject::Inventory => {
                pass::run(&c.stock, entity, owner, budget, &sinks, &mut report).await
            }
            Subject::Products => {
                pass::run(&c.products, entity, owner, budget, &sinks, &mut report).await
            }
            Subject::Orders => {
                let orders = &self.customers.orders;
                pass::run(orders, entity, owner, budget, &sinks, &mut report).await
            }
        };
        if let Err(e) = outcome {
            report.complete = false;
            report.error = Some(e.message().to_string());
        }
        report.finished_at = Timestamp::now().to_string();
        let name = subject.name();
        metrics::counter!(telemetry::RECONCILE_CHECKED, "entity" => name).increment(report.checked);
        metrics::counter!(telemetry::RECONCILE_DRIFT, "entity" => name).increment(report.drifted);
        metrics::histogram!(telemetry::RECONCILE_DURATION, "entity" => name)
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            entity = name,
            checked = report.checked,
            drifted = report.drifted,
            repaired = report.repaired,
            complete = report.complete,
            "reconciliation pass"
        );
        report
    }

    /// The newest reports first.
    pub async fn last(&self) -> Vec<Report> {
        if let Some(redis) = &self.redis {
            let key = redis.key(&["reconcile", "reports"]);
            let stored: Result<Vec<String>, _> = redis
                .run("reconcile.reports", |mut c| async move {
                    redis::cmd("LRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(REPORTS - 1)
                        .query_async(&mut c)
                        .await
                })
                .await;
            if let Ok(stored) = stored {
                return stored
                    .iter()
                    .filter_map(|r| serde_json::from_str(r).ok())
                    .collect();
            }
        }
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Runs due passes as background work: each configured subject once
    /// an interval, fleet-wide.
    pub fn schedule(self: Arc<Self>, background: &Background) {
        background.spawn_loop(async move {
            loop {
                let settings = self.settings.load_full();
                let tick =
                    (settings.interval / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
                tokio::time::sleep(tick).await;
                if !settings.enabled {
                    continue;
                }
                for name in &settings.entities {
                    let Some(subject) = Subject::from_name(name) else {
                        continue;
                    };
                    if self.due(subject, settings.interval).await {
                        let _ = self.run(subject).await;
                    }
                }
            }
        });
    }

    /// Whether `subject`'s last pass, by any replica, finished an interval
    /// ago or more.
    async fn due(&self, subject: Subject, interval: Duration) -> bool {
        let last = match &self.redis {
            Some(redis) => {
                let key = redis.key(&["reconcile", "last", subject.name()]);
                let shared: Result<Option<i64>, _> = redis
                    .run("reconcile.last", |mut c| async move {
                        redis::cmd("GET").arg(&key).query_async(&mut c).await
                    })
                    .await;
                match shared {
                    Ok(last) => last.map(Timestamp),
                    Err(_) => self.last_here(subject),
                }
            }
            None => self.last_here(subject),
        };
        last.is_none_or(|t| t.age(Timestamp::now()) >= interval)
    }

    fn last_here(&self, subject: Subject) -> Option<Timestamp> {
        self.last_local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(s, _)| *s == subject)
            .map(|(_, t)| *t)
    }

    /// Keeps a report (and when its pass finished, for the schedule).
    async fn keep(&self, report: &Report) {
        let now = Timestamp::now();
        {
            let mut last = self.last_local.lock().unwrap_or_else(|p| p.into_inner());
            last.retain(|(s, _)| *s != report.entity);
            last.push((report.entity, now));
        }
        {
            let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
            if reports.len() >= REPORTS {
                reports.pop_front();
            }
            reports.push_back(report.clone());
        }
        let (Some(redis), Ok(json)) = (&self.redis, serde_json::to_string(report)) else {
            return;
        };
        let (reports, last) = (
            redis.key(&["reconcile", "reports"]),
            redis.key(&["reconcile", "last", report.entity.name()]),
        );
        let _ = redis
            .run("reconcile.keep", |mut c| async move {
                redis::pipe()
                    .cmd("LPUSH")
                    .arg(&reports)
                    .arg(&json)
                    .ignore()
                    .cmd("LTRIM")
                    .arg(&reports)
                    .arg(0)
                    .arg(REPORTS - 1)
                    .ignore()
                    .cmd("SET")
                    .arg(&last)
                    .arg(now.millis())
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    fn lease_key(redis: &RedisLink, subject: Subject) -> String {
        redis.key(&["reconcile", "lease", subject.name()])
    }

    /// Takes `subject`'s lease. Without Redis (or with it away) every
    /// replica is on its own: the pass runs on what it holds.
    async fn lease(&self, subject: Subject) -> Lease {
        let Some(redis) = &self.redis else {
            return Lease::Ours;
        };
        let key = Self::lease_key(redis, subject);
        let (me, ms) = (self.replica.clone(), self.lease_ms());
        let taken: Result<Option<String>, _> = redis
            .run("reconcile.lease", |mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&me)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await;
        match taken {
            Ok(Some(_)) | Err(_) => Lease::Ours,
            Ok(None) => Lease::Theirs,
        }
    }

    /// Extends the lease; false when another replica holds it now (this
    /// one was too slow, and its pass must stop).
    async fn renew(&self, subject: Subject) -> bool {
        let Some(redis) = &self.redis else {
            return true;
        };
        let key = Self::lease_key(redis, subject);
        let (me, ms) = (self.replica.clone(), self.lease_ms());
        let renewed: Result<i64, _> = redis
            .run("reconcile.lease", |mut c| async move {
                RENEW.key(&key).arg(&me).arg(ms).invoke_async(&mut c).await
            })
            .await;
        // Redis away: go on alone rather than stop for nothing.
        renewed.map_or(true, |n| n == 1)
    }

    async fn release(&self, subject: Subject) {
        let Some(redis) = &self.redis else {
            return;
        };
        let key = Self::lease_key(redis, subject);
        let me = self.replica.clone();
        let _ = redis
            .run("reconcile.lease", |mut c| async move {
                RELEASE.key(&key).arg(&me).invoke_async::<i64>(&mut c).await
            })
            .await;
    }

    fn lease_ms(&self) -> u64 {
        self.settings.load().lease_ttl.as_millis() as u64
    }
}

fn busy(subject: Subject, where_: &str) -> Error {
    Error::new(
        Kind::Conflict,
        format!("a {} pass is already running on {where_}", subject.name()),
    )
}
