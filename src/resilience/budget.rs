//! The retry budget, in the tower and Finagle sense: retries are paid from
//! a budget that grows with ordinary traffic (`ratio` of the requests in the
//! window) plus a small floor, so when an upstream fails every call, the
//! retries add at most that ratio of traffic instead of multiplying it. A
//! fixed "retry 3 times" turns an outage into three times the load on the
//! system that is already failing.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::window::{SECONDS, Window};

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

pub struct Budget {
    settings: BudgetSettings,
    epoch: Instant,
    /// Requests and retries per second.
    window: Mutex<Window>,
}

impl Budget {
    pub fn new(settings: BudgetSettings) -> Budget {
        Budget {
            settings,
            epoch: Instant::now(),
            window: Mutex::new(Window::default()),
        }
    }

    pub fn settings(&self) -> BudgetSettings {
        self.settings
    }

    /// Records a request (not a retry).
    pub fn deposit(&self) {
        let now = self.now();
        self.lock().add(now, [1, 0]);
    }

    /// Takes a retry from the budget if there is one.
    pub fn withdraw(&self) -> bool {
        let now = self.now();
        let span = self.settings.window;
        let mut window = self.lock();
        let [requests, retries] = window.totals(now, span);
        let seconds = span.as_secs().clamp(1, SECONDS as u64);
        let allowed = self.settings.ratio * requests as f64
            + f64::from(self.settings.floor_per_second) * seconds as f64;
        if (retries as f64) < allowed.floor() {
            window.add(now, [0, 1]);
            true
        } else {
            false
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }
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
