//! The retry budget, in the tower and Finagle sense: retries are paid from
//! a budget that grows with ordinary traffic (`ratio` of the requests in the
//! window) plus a small floor, so when an upstream fails every call, the
//! retries add at most that ratio of traffic instead of multiplying it. A
//! fixed "retry 3 times" turns an outage into three times the load on the
//! system that is already failing.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Budget settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSettings {
    /// Retries allowed per request in the window (0.1: one in ten).
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic.
    pub floor_per_second: u32,
    /// How far back requests and retries count.
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
struct Second {
    at: u64,
    requests: u32,
    retries: u32,
}

const SLOTS: usize = 60;

pub struct Budget {
    settings: BudgetSettings,
    epoch: Instant,
    seconds: Mutex<[Second; SLOTS]>,
}

impl Budget {
    pub fn new(settings: BudgetSettings) -> Budget {
        Budget {
            settings,
            epoch: Instant::now(),
            seconds: Mutex::new([Second::default(); SLOTS]),
        }
    }

    pub fn settings(&self) -> BudgetSettings {
        self.settings
    }

    /// Records a request (not a retry).
    pub fn deposit(&self) {
        self.with_now(|s| s.requests += 1);
    }

    /// Takes a retry from the budget if there is one.
    pub fn withdraw(&self) -> bool {
        let now = self.now();
        let window = self.settings.window.as_secs().clamp(1, SLOTS as u64);
        let mut seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        let (requests, retries) = seconds
            .iter()
            .filter(|s| now.saturating_sub(s.at) < window && (s.requests > 0 || s.retries > 0))
            .fold((0u64, 0u64), |(q, r), s| {
                (q + u64::from(s.requests), r + u64::from(s.retries))
            });
        let allowed = self.settings.ratio * requests as f64
            + f64::from(self.settings.floor_per_second) * window as f64;
        if (retries as f64) < allowed.floor() {
            slot(&mut seconds, now).retries += 1;
            true
        } else {
            false
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    fn with_now(&self, f: impl FnOnce(&mut Second)) {
        let now = self.now();
        let mut seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        f(slot(&mut seconds, now));
    }
}

fn slot(seconds: &mut [Second; SLOTS], now: u64) -> &mut Second {
    let s = &mut seconds[(now % SLOTS as u64) as usize];
    if s.at != now {
        *s = Second {
            at: now,
            ..Second::default()
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_fraction_of_traffic_plus_a_floor() {
        let budget = Budget::new(BudgetSettings {
            ratio: 0.1,
            floor_per_second: 1,
            window: Duration::from_secs(10),
        });
        for _ in 0..100 {
            budget.deposit();
        }
        let mut retries = 0;
        while budget.withdraw() {
            retries += 1;
        }
        assert_eq!(retries, 10 + 10, "10% of 100 plus 1/s over 10s");

        tokio::time::advance(Duration::from_secs(11)).await;
        let mut later = 0;
        while budget.withdraw() {
            later += 1;
        }
        assert_eq!(later, 10, "old traffic left the window; the floor stays");
    }
}
