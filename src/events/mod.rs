//! Change events from the systems of record, `POST /events/{source}`:
//! signed webhooks applied once and in order, with a dead-letter queue.
//!
//! One event goes through, in order:
//! 1. `verify`: the source's signature over everything Moat acts on
//!    (refused: 401, no secret: 403);
//! 2. `envelope`: Moat's envelope or a CloudEvent, checked against the
//!    protocol, its time against Moat's clock (refused: 400 naming the
//!    field);
//! 3. `ledger`: an id already handled is a `duplicate`, on any replica
//!    (with Redis configured but not answering, a fat event is 503:
//!    applied here, it could be applied twice and would not reach the
//!    other replicas; a thin one, which only refetches, goes ahead);
//! 4. `apply`: a version not newer than the one held or seen is `stale`;
//!    otherwise the caches change (retried a few times when a refetch
//!    fails);
//! 5. `dead_letters`: what still cannot be applied is parked for an
//!    operator.
//!
//! The sender gets 2xx only once the event is applied or parked; if Moat
//! can do neither it answers 503 with `Retry-After`, and the event is not
//! marked seen, so the redelivery is applied.

mod apply;
pub mod dead_letters;
mod envelope;
mod foreign;
mod ledger;
mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderMap;
use serde::Serialize;

use crate::cache::Invalidator;
use crate::catalog::Catalog;
use crate::config;
use crate::customers::Customers;
use crate::domain::Timestamp;
use crate::error::{Error, Kind};
use crate::exceptions::Exceptions;
use crate::redis_link::RedisLink;
use crate::telemetry;
use crate::upstream::rest::Connector;
use crate::vocab::{Owners, System};

use apply::{Applied, Applier};
pub use dead_letters::{DeadLetter, DeadLetters};
use envelope::Clock;
pub use envelope::{Event, EventType, MAX_VERSION};
pub use ledger::SeenVersions;
use ledger::{Claim, Ledger};
pub use verify::{moat_signature_for, signed_content};

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    Duplicate,
    Stale,
    DeadLettered,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// The answer to a sender.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub id: String,
    pub outcome: Outcome,
    /// Why it was parked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Replayed {
    /// Queue ids applied (or found stale) and removed from the queue.
    pub replayed: Vec<String>,
    /// Queue ids still parked, with why.
    pub failed: Vec<ReplayFailure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayFailure {
    pub id: String,
    pub reason: String,
}

pub struct Events {
    settings: ArcSwap<config::Events>,
    /// Who may announce what: a record's owner only.
    owners: Owners,
    secrets: verify::Secrets,
    ledger: Arc<Ledger>,
    applier: Applier,
    dead_letters: DeadLetters,
    /// Where events whose data breaks the contract are recorded.
    exceptions: Arc<Exceptions>,
    /// Systems that send events in their own form, by name.
    connectors: HashMap<String, Arc<Connector>>,
}

impl Events {
    /// `config`: its `[events]` and who owns what (`[entities]`).
    /// `connectors`: the systems that speak their own API (`Upstreams`),
    /// some of which send events in their own form.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &config::Config,
        secrets: &config::Secrets,
        catalog: Arc<Catalog>,
        customers: Arc<Customers>,
        invalidator: Arc<Invalidator>,
        redis: Option<Arc<RedisLink>>,
        exceptions: Arc<Exceptions>,
        connectors: HashMap<String, Arc<Connector>>,
    ) -> Events {
        Events {
            settings: ArcSwap::from_pointee(config.events.clone()),
            owners: config.owners(),
            secrets: verify::Secrets::new(&secrets.events_secrets),
            ledger: Arc::new(Ledger::new(redis.clone(), config.events.dedupe_retention)),
            applier: Applier {
                catalog,
                customers,
                invalidator,
            },
            dead_letters: DeadLetters::new(redis),
            exceptions,
            connectors,
        }
    }

    /// Applies reloaded `[events]` settings (the dedupe window applies to
    /// ids seen from now on).
    pub fn reload(&self, config: &config::Events) {
        self.settings.store(Arc::new(config.clone()));
    }

    pub fn settings(&self) -> Arc<config::Events> {
        self.settings.load_full()
    }

    pub fn dead_letters(&self) -> &DeadLetters {
        &self.dead_letters
    }

    /// The newest versions seen of each entity, for reconciliation to
    /// correct to what the owner says.
    pub fn seen_versions(&self) -> SeenVersions {
        SeenVersions::new(self.ledger.clone())
    }

    /// Handles one delivery to `/events/{source}`: one event in Moat's
    /// form, or (from a connector's system) as many as its map makes of it,
    /// each with its receipt. Any event that can be neither applied nor
    /// parked makes the whole delivery 503: its sender delivers it again,
    /// and what was applied already is a duplicate then.
    pub async fn receive(
        &self,
        source: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<Receipt>, Error> {
        let Some(system) = self.source(source) else {
            let known: Vec<&str> = self.owners.systems().iter().map(|s| s.name()).collect();
            return Err(Error::new(
                Kind::NotFound,
                format!(
                    "no source {source:?}; events come from {}",
                    known.join(", ")
                ),
            ));
        };
        let settings = self.settings();
        let clock = Clock {
            now: Timestamp::now(),
            tolerance: settings.tolerance,
        };
        let exceptions = Some(&*self.exceptions);
        let foreign = self
            .connectors
            .get(system.name())
            .and_then(|c| Some((c, c.events()?)));
        let events = match foreign {
            Some((connector, own)) => self
                .secrets
                .verify_as(system, &own.signature, headers, body, settings.tolerance)
                .and_then(|()| {
                    foreign::events(connector, system, headers, body, clock, exceptions)
                }),
            None => self
                .secrets
                .verify(system, headers, body, settings.tolerance)
                .and_then(|()| {
                    let at = envelope::Reading {
                        source: system,
                        clock,
                        exceptions,
                    };
                    envelope::decode(at, headers, body)
                })
                .map(|event| vec![event]),
        }
        .and_then(|events| {
            events
                .into_iter()
                .map(|e| self.owned(e))
                .collect::<Result<Vec<_>, _>>()
        })
        .inspect_err(|_| telemetry::event(system.name(), "rejected"));
        let mut receipts = Vec::new();
        for event in events? {
            let receipt = self.handle(&event, &settings).await?;
            telemetry::event(system.name(), receipt.outcome.name());
            receipts.push(receipt);
        }
        Ok(receipts)
    }

    /// The system `/events/{name}` is from: one that owns a record.
    pub fn source(&self, name: &str) -> Option<System> {
        System::find(name).filter(|s| self.owners.systems().contains(s))
    }

    /// `event`, if its source owns what it changes.
    fn owned(&self, event: Event) -> Result<Event, Error> {
        let owner = self.owners.of(event.kind.record());
        if owner == event.source {
            Ok(event)
        } else {
            Err(Error::bad_request(format!(
                "type: {} events come from {owner} (the owner of {} in [entities]), not {}",
                event.kind.name(),
                event.kind.record(),
                event.source
            )))
        }
    }

    async fn handle(&self, event: &Event, settings: &config::Events) -> Result<Receipt, Error> {
        let source = event.source.name();
        let receipt = |outcome, reason| Receipt {
            id: event.id.clone(),
            outcome,
            reason,
        };
        match self.ledger.claim_patiently(source, &event.id).await {
            Claim::Done => return Ok(receipt(Outcome::Duplicate, None)),
            Claim::Busy => {
                return Err(Error::unavailable(
                    "this event is still being applied by another delivery; retry shortly",
                ));
            }
            // A thin event only marks and refetches the owner's truth,
            // which may safely happen twice: this replica goes ahead.
            Claim::Unavailable if event.item.is_none() => {}
            Claim::Unavailable => {
                self.ledger.release(source, &event.id).await;
                return Err(Error::new(
                    Kind::RedisUnavailable,
                    "Redis, where replicas record which events they have applied, is not \
                     answering; retry later",
                ));
            }
            Claim::New => {}
        }
        let (outcome, reason) = match self.apply_with_retries(event, settings).await {
            Ok(Applied::Applied) => (Outcome::Applied, None),
            Ok(Applied::Stale) => (Outcome::Stale, None),
            Err((e, attempts)) => {
                let reason = e.message().to_string();
                let letter = dead_letters::Letter {
                    event_id: &event.id,
                    source,
                    kind: event.kind.name(),
                    envelope: &event.to_json(),
                    reason: &reason,
                    attempts,
                };
                let parked = self.dead_letters.park(letter, settings.dlq_max_len).await;
                if parked.is_err() {
                    // Neither applied nor parked: the sender must try again.
                    self.ledger.release(source, &event.id).await;
                    // Debug-formatted: what a sender wrote never starts a
                    // log line of its own.
                    tracing::warn!(event = ?event.id, %source, error = ?e.message(), "event neither applied nor parked");
                    return Err(Error::unavailable(format!(
                        "the event cannot be applied now ({reason}) and the dead-letter queue \
                         is unavailable; retry later"
                    )));
                }
                tracing::warn!(event = ?event.id, %source, attempts, ?reason, "event dead-lettered");
                (Outcome::DeadLettered, Some(reason))
            }
        };
        self.ledger.settle(source, &event.id).await;
        if outcome == Outcome::Applied {
            telemetry::event_visible("origin", event.occurred_at.age(Timestamp::now()));
        }
        Ok(receipt(outcome, reason))
    }

    /// Applies, retrying what a retry may cure; the last error and the
    /// attempts made when it never worked.
    async fn apply_with_retries(
        &self,
        event: &Event,
        settings: &config::Events,
    ) -> Result<Applied, (Error, u32)> {
        let mut attempt = 1;
        loop {
            match self.applier.apply(event, &self.ledger).await {
                Ok(applied) => return Ok(applied),
                // What failed for now (down, slow, limited, breaker open)
                // may pass; what would fail again (a contract violation, a
                // refusal) is parked at once.
                Err(e) if attempt < settings.apply_attempts && e.may_pass_later() => {
                    let pause = settings
                        .apply_backoff
                        .saturating_mul(1 << (attempt - 1).min(8));
                    tokio::time::sleep(pause.min(Duration::from_secs(5))).await;
                    attempt += 1;
                }
                Err(e) => return Err((e, attempt)),
            }
        }
    }

    /// Replays parked events (all when `ids` is `None`): each applied (or
    /// found stale by now) leaves the queue; the rest stay, with why.
    pub async fn replay(&self, ids: Option<Vec<String>>) -> Result<Replayed, Error> {
        let unavailable = |_| Error::unavailable("the dead-letter queue is unavailable (Redis)");
        let letters = match ids {
            Some(ids) => self.dead_letters.get(&ids).await.map_err(unavailable)?,
            None => self.dead_letters.all().await.map_err(unavailable)?,
        };
        let settings = self.settings();
        let mut report = Replayed::default();
        for letter in letters {
            let clock = Clock {
                now: Timestamp::now(),
                tolerance: settings.tolerance,
            };
            let stored = envelope::stored(&letter.envelope, clock, Some(&self.exceptions));
            let applied = match stored {
                Ok(event) => self
                    .apply_with_retries(&event, &settings)
                    .await
                    .map(|a| (event, a))
                    .map_err(|(e, _)| e),
                Err(e) => Err(e),
            };
            match applied {
                Ok((event, applied)) => {
                    self.ledger.settle(event.source.name(), &event.id).await;
                    let outcome = match applied {
                        Applied::Applied => Outcome::Applied,
                        Applied::Stale => Outcome::Stale,
                    };
                    telemetry::event(event.source.name(), outcome.name());
                    let _ = self.dead_letters.remove(&letter.id).await;
                    report.replayed.push(letter.id);
                }
                Err(e) => report.failed.push(ReplayFailure {
                    id: letter.id,
                    reason: e.message().to_string(),
                }),
            }
        }
        Ok(report)
    }
}
