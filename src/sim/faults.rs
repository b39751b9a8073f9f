//! Injected misbehaviour per upstream system: latency, outages, 500s and
//! contract-breaking payloads, set through `POST /_sim/faults/{system}`.
//!
//! The dice come from one seeded `fastrand::Rng`, so a test that sends the
//! same requests in the same order sees the same failures.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use fastrand::Rng;
use serde::{Deserialize, Serialize};

/// An upstream system, as named in `/_sim/faults/{system}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Pim,
    Erp,
    Crm,
    Oms,
}

impl System {
    pub const ALL: [System; 4] = [System::Pim, System::Erp, System::Crm, System::Oms];

    pub fn name(self) -> &'static str {
        match self {
            System::Pim => "pim",
            System::Erp => "erp",
            System::Crm => "crm",
            System::Oms => "oms",
        }
    }

    pub fn parse(name: &str) -> Option<System> {
        System::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Faults of one system, as reported and set over the control API.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaultState {
    /// Added to every request, so a gateway's timeouts and coalescing are
    /// exercised the way a real network would.
    pub latency_ms: u64,
    /// Probability of a 500.
    pub error_rate: f64,
    /// Every request gets a 503.
    pub down: bool,
    /// Probability of a 200 whose body breaks the contract.
    pub malformed_rate: f64,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState {
            latency_ms: 20,
            error_rate: 0.0,
            down: false,
            malformed_rate: 0.0,
        }
    }
}

/// A partial update; fields left out keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPatch {
    pub latency_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub down: Option<bool>,
    pub malformed_rate: Option<f64>,
}

/// Above this a test has a bug; a latency that long would look like a hang.
const MAX_LATENCY_MS: u64 = 600_000;

impl FaultPatch {
    /// Every problem at once, so a caller fixes its request in one go.
    fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.latency_ms.is_some_and(|l| l > MAX_LATENCY_MS) {
            problems.push(format!("latency_ms must be at most {MAX_LATENCY_MS}"));
        }
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("malformed_rate", self.malformed_rate),
        ] {
            if rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                problems.push(format!("{name} must be between 0.0 and 1.0"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// What to do with a request once its latency has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 503: the system is down.
    Down,
    /// 500: an injected error.
    Error,
    /// Serve it; with a seed, break the payload (the seed picks how).
    Serve { corrupt: Option<u64> },
}

struct Table {
    states: [FaultState; 4],
    rng: Rng,
}

pub struct Faults {
    seed: u64,
    table: Mutex<Table>,
}

impl Faults {
    pub fn new(seed: u64) -> Faults {
        Faults {
            seed,
            table: Mutex::new(Table {
                states: [FaultState::default(); 4],
                rng: Rng::with_seed(seed),
            }),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic elsewhere while holding the lock cannot leave the table
        // half-written (every write is one assignment), so poison is moot.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn all(&self) -> [FaultState; 4] {
        self.table().states
    }

    pub fn apply(&self, system: System, patch: &FaultPatch) -> Result<FaultState, String> {
        patch.validate()?;
        let mut table = self.table();
        let state = &mut table.states[system as usize];
        if let Some(v) = patch.latency_ms {
            state.latency_ms = v;
        }
        if let Some(v) = patch.error_rate {
            state.error_rate = v;
        }
        if let Some(v) = patch.down {
            state.down = v;
        }
        if let Some(v) = patch.malformed_rate {
            state.malformed_rate = v;
        }
        Ok(*state)
    }

    pub fn reset(&self) {
        let mut table = self.table();
        table.states = [FaultState::default(); 4];
        table.rng = Rng::with_seed(self.seed);
    }

    /// Rolls the dice for one request on arrival, then waits out the
    /// latency (without holding the lock) and returns what to do.
    pub async fn admit(&self, system: System) -> Verdict {
        let (latency, verdict) = {
            let mut table = self.table();
            let state = table.states[system as usize];
            let verdict = if state.down {
                Verdict::Down
            } else if state.error_rate > 0.0 && table.rng.f64() < state.error_rate {
                Verdict::Error
            } else if state.malformed_rate > 0.0 && table.rng.f64() < state.malformed_rate {
                Verdict::Serve {
                    corrupt: Some(table.rng.u64(..)),
                }
            } else {
                Verdict::Serve { corrupt: None }
            };
            (state.latency_ms, verdict)
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        verdict
    }
}
