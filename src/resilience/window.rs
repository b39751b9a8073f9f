//! A rolling window of per-second counts, two per second: calls and
//! failures for a breaker, requests and retries for a retry budget. Sixty
//! slots on a ring, so any window up to a minute can be summed; a slot
//! left from an earlier lap is reset when its second comes round again.

use std::time::Duration;

/// How many seconds the ring holds.
pub const SECONDS: usize = 60;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    second: u64,
    counts: [u32; 2],
}

#[derive(Debug, Clone)]
pub struct Window {
    slots: [Slot; SECONDS],
}

impl Default for Window {
    fn default() -> Self {
        Window {
            slots: [Slot::default(); SECONDS],
        }
    }
}

impl Window {
    /// Adds `counts` to second `now` (seconds since some epoch).
    pub fn add(&mut self, now: u64, counts: [u32; 2]) {
        let slot = &mut self.slots[(now % SECONDS as u64) as usize];
        if slot.second != now {
            *slot = Slot {
                second: now,
                counts: [0, 0],
            };
        }
        slot.counts[0] += counts[0];
        slot.counts[1] += counts[1];
    }

    /// Both counts summed over the last `span` (1 to 60 seconds), `now`
    /// included.
    pub fn totals(&self, now: u64, span: Duration) -> [u64; 2] {
        let span = span.as_secs().clamp(1, SECONDS as u64);
        self.slots
            .iter()
            .filter(|s| s.counts != [0, 0] && now.saturating_sub(s.second) < span)
            .fold([0, 0], |[a, b], s| {
                [a + u64::from(s.counts[0]), b + u64::from(s.counts[1])]
            })
    }

    pub fn clear(&mut self) {
        *self = Window::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_span_and_forgets_older_laps() {
        let mut w = Window::default();
        w.add(100, [3, 1]);
        w.add(105, [2, 2]);
        assert_eq!(w.totals(105, Duration::from_secs(10)), [5, 3]);
        assert_eq!(w.totals(105, Duration::from_secs(3)), [2, 2]);
        // Second 160 lands on second 100's slot: the old lap is gone,
        // second 105 is still within the minute.
        w.add(160, [1, 0]);
        assert_eq!(w.totals(160, Duration::from_secs(60)), [3, 2]);
    }
}
