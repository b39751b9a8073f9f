//! A circuit breaker: a small state machine fed by call outcomes.
//!
//! Closed, it lets every call through and watches two signals: the failure
//! rate over a rolling window (once the window holds enough calls) and the
//! run of consecutive failures. Either one past its threshold trips it open,
//! and the reason is kept. Open, it refuses calls at once (nothing waits on
//! a dead upstream) until the cooldown ends; then, half-open, it lets a few
//! probes through: enough successes close it, one failure opens it again.
//! An SRE can force it open or closed, and reset it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::time::Instant;

use super::window::Window;

/// Thresholds; hot-swappable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Failure fraction over `window` that trips the breaker.
    pub failure_rate: f64,
    pub window: Duration,
    /// Calls the window must hold before the rate counts.
    pub min_calls: u32,
    /// Failures in a row that trip it regardless of the rate.
    pub consecutive_failures: u32,
    /// How long it stays open before probing.
    pub cooldown: Duration,
    /// Probes let through half-open; this many successes close it.
    pub probes: u32,
}

/// The state as `/admin/status` and `moat_breaker_state` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Closed,
    HalfOpen,
    Open,
}

impl Position {
    /// 0 closed, 1 half-open, 2 open (the metric's encoding).
    pub fn gauge(self) -> f64 {
        match self {
            Position::Closed => 0.0,
            Position::HalfOpen => 1.0,
            Position::Open => 2.0,
        }
    }
}

/// What an SRE forced, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forced {
    Open,
    Closed,
}

/// A refusal: the breaker is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: String,
    /// When a probe may next go through (None when forced open).
    pub retry_in: Option<Duration>,
}

/// A snapshot for status pages.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub state: Position,
    pub forced: Option<Forced>,
    /// Why it last tripped.
    pub trip_reason: Option<String>,
    /// Seconds since it last tripped.
    pub tripped_seconds_ago: Option<u64>,
    pub window_calls: u64,
    pub window_failures: u64,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: u32, succeeded: u32 },
}

#[derive(Debug)]
struct Inner {
    state: State,
    forced: Option<Forced>,
    /// Calls and failures per second.
    window: Window,
    consecutive: u32,
    trip_reason: Option<String>,
    tripped_at: Option<Instant>,
}

/// One breaker (per upstream system, and one for Redis).
pub struct Breaker {
    name: &'static str,
    settings: ArcSwap<Settings>,
    inner: Mutex<Inner>,
    epoch: Instant,
}

/// Permission for one call. Record its outcome with [`Permit::success`] or
/// [`Permit::failure`]; dropped unrecorded (the caller was cancelled), it
/// frees its probe slot without counting as either.
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    done: bool,
}

impl Permit {
    pub fn success(mut self) {
        self.done = true;
        self.breaker.record(self.probe, true);
    }

    pub fn failure(mut self) {
        self.done = true;
        self.breaker.record(self.probe, false);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            let mut inner = self.breaker.lock();
            if let State::HalfOpen { probing, .. } = &mut inner.state {
                *probing = probing.saturating_sub(1);
            }
        }
    }
}

impl Breaker {
    pub fn new(name: &'static str, settings: Settings) -> Arc<Breaker> {
        let breaker = Arc::new(Breaker {
            name,
            settings: ArcSwap::from_pointee(settings),
            inner: Mutex::new(Inner {
                state: State::Closed,
                forced: None,
                window: Window::default(),
                consecutive: 0,
                trip_reason: None,
                tripped_at: None,
            }),
            epoch: Instant::now(),
        });
        breaker.publish(Position::Closed);
        breaker
    }

    pub fn set_settings(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }

    pub fn settings(&self) -> Settings {
        **self.settings.load()
    }

    /// Asks to make a call.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Refused> {
        let settings = self.settings();
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.forced {
            Some(Forced::Open) => {
                return Err(Refused {
                    reason: format!("{} breaker is forced open by an operator", self.name),
                    retry_in: None,
                });
            }
            Some(Forced::Closed) => return Ok(self.permit(false)),
            None => {}
        }
        match inner.state {
            State::Closed => Ok(self.permit(false)),
            State::Open { until } if now < until => Err(Refused {
                reason: format!(
                    "{} breaker is open ({})",
                    self.name,
                    inner.trip_reason.as_deref().unwrap_or("tripped")
                ),
                retry_in: Some(until - now),
            }),
            State::Open { .. } => {
                inner.state = State::HalfOpen {
                    probing: 1,
                    succeeded: 0,
                };
                drop(inner);
                self.publish(Position::HalfOpen);
                Ok(self.permit(true))
            }
            State::HalfOpen {
                ref mut probing,
                succeeded,
            } => {
                if *probing + succeeded < settings.probes {
                    *probing += 1;
                    Ok(self.permit(true))
                } else {
                    Err(Refused {
                        reason: format!(
                            "{} breaker is half-open and its probes are out",
                            self.name
                        ),
                        retry_in: Some(Duration::from_millis(100)),
                    })
                }
            }
        }
    }

    /// Forces the breaker (`Some`) or lets it decide again (`None` resets it
    /// to closed with an empty window).
    pub fn force(&self, forced: Option<Forced>) {
        let mut inner = self.lock();
        inner.forced = forced;
        if forced.is_none() {
            inner.state = State::Closed;
            inner.window.clear();
            inner.consecutive = 0;
        }
        let position = match forced {
            Some(Forced::Open) => Position::Open,
            Some(Forced::Closed) | None => Position::Closed,
        };
        drop(inner);
        self.publish(position);
    }

    pub fn position(&self) -> Position {
        let inner = self.lock();
        match (inner.forced, &inner.state) {
            (Some(Forced::Open), _) => Position::Open,
            (Some(Forced::Closed), _) => Position::Closed,
            (None, State::Closed) => Position::Closed,
            (None, State::Open { .. }) => Position::Open,
            (None, State::HalfOpen { .. }) => Position::HalfOpen,
        }
    }

    pub fn report(&self) -> Report {
        let position = self.position();
        let settings = self.settings();
        let second = self.second(Instant::now());
        let inner = self.lock();
        let [calls, failures] = inner.window.totals(second, settings.window);
        Report {
            state: position,
            forced: inner.forced,
            trip_reason: inner.trip_reason.clone(),
            tripped_seconds_ago: inner.tripped_at.map(|t| t.elapsed().as_secs()),
            window_calls: calls,
            window_failures: failures,
        }
    }

    fn permit(self: &Arc<Self>, probe: bool) -> Permit {
        Permit {
            breaker: self.clone(),
            probe,
            done: false,
        }
    }

    fn record(&self, probe: bool, ok: bool) {
        let settings = self.settings();
        let now = Instant::now();
        let second = self.second(now);
        let mut inner = self.lock();
        if inner.forced.is_some() {
            return;
        }
        inner.window.add(second, [1, u32::from(!ok)]);
        inner.consecutive = if ok { 0 } else { inner.consecutive + 1 };

        let mut changed = None;
        match &mut inner.state {
            State::HalfOpen { probing, succeeded } if probe => {
                *probing = probing.saturating_sub(1);
                if !ok {
                    changed = Some(("a probe failed".to_string(), true));
                } else {
                    *succeeded += 1;
                    if *succeeded >= settings.probes {
                        changed = Some((String::new(), false));
                    }
                }
            }
            State::Closed if !ok => {
                let [calls, failures] = inner.window.totals(second, settings.window);
                if inner.consecutive >= settings.consecutive_failures {
                    changed = Some((format!("{} consecutive failures", inner.consecutive), true));
                } else if calls >= u64::from(settings.min_calls)
                    && failures as f64 >= settings.failure_rate * calls as f64
                {
                    changed = Some((
                        format!(
                            "{failures} of {calls} calls failed in the last {}s",
                            settings.window.as_secs()
                        ),
                        true,
                    ));
                }
            }
            _ => {}
        }
        match changed {
            Some((reason, true)) => {
                tracing::warn!(breaker = self.name, %reason, "breaker opened");
                inner.state = State::Open {
                    until: now + settings.cooldown,
                };
                inner.trip_reason = Some(reason);
                inner.tripped_at = Some(now);
                drop(inner);
                self.publish(Position::Open);
            }
            Some((_, false)) => {
                tracing::info!(
                    breaker = self.name,
                    "breaker closed after successful probes"
                );
                inner.state = State::Closed;
                inner.window.clear();
                inner.consecutive = 0;
                drop(inner);
                self.publish(Position::Closed);
            }
            None => {}
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.duration_since(self.epoch).as_secs()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, position: Position) {
        metrics::gauge!(crate::telemetry::BREAKER_STATE, "upstream" => self.name)
            .set(position.gauge());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            min_calls: 10,
            consecutive_failures: 5,
            cooldown: Duration::from_secs(5),
            probes: 2,
        }
    }

    fn call(b: &Arc<Breaker>, ok: bool) -> bool {
        match b.try_acquire() {
            Ok(p) => {
                if ok {
                    p.success()
                } else {
                    p.failure()
                }
                true
            }
            Err(_) => false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn trips_on_consecutive_failures_then_probes_and_closes() {
        let b = Breaker::new("test", settings());
        for _ in 0..5 {
            assert!(call(&b, false));
        }
        assert_eq!(b.position(), Position::Open);
        assert!(b.report().trip_reason.unwrap().contains("5 consecutive"));
        assert!(!call(&b, true), "open refuses");

        tokio::time::advance(Duration::from_secs(5)).await;
        let p1 = b.try_acquire().expect("first probe");
        let p2 = b.try_acquire().expect("second probe");
        assert!(b.try_acquire().is_err(), "only two probes");
        assert_eq!(b.position(), Position::HalfOpen);
        p1.success();
        p2.success();
        assert_eq!(b.position(), Position::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn trips_on_failure_rate_over_the_window() {
        let b = Breaker::new("test", settings());
        for i in 0..20 {
            call(&b, i % 2 == 0); // alternate: never 5 in a row
        }
        assert_eq!(b.position(), Position::Open);
        assert!(b.report().trip_reason.unwrap().contains("calls failed"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_a_cancelled_one_frees_its_slot() {
        let b = Breaker::new("test", settings());
        for _ in 0..5 {
            call(&b, false);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(b.try_acquire().expect("probe")); // cancelled
        let p = b.try_acquire().expect("slot freed");
        p.failure();
        assert_eq!(b.position(), Position::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window() {
        let b = Breaker::new("test", settings());
        for _ in 0..4 {
            call(&b, false);
        }
        call(&b, true);
        tokio::time::advance(Duration::from_secs(11)).await;
        for _ in 0..9 {
            call(&b, true);
        }
        call(&b, false);
        assert_eq!(b.position(), Position::Closed);
    }

    #[test]
    fn operators_can_force_and_reset() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = Breaker::new("test", settings());
            b.force(Some(Forced::Open));
            assert!(b.try_acquire().is_err());
            b.force(Some(Forced::Closed));
            for _ in 0..10 {
                assert!(call(&b, false), "forced closed lets everything through");
            }
            b.force(None);
            assert_eq!(b.position(), Position::Closed);
        });
    }
}
