//! Background work the gateway owns: fetches that outlive the request that
//! started them, stale refreshes, checkout repairs, delayed L2 deletes, the
//! invalidation listener and housekeeping. Everything is spawned through a
//! [`Background`], so shutdown can wait for it, and stop what is still
//! running, instead of leaving detached tasks behind. A leaf: it imports
//! nothing of the crate.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A handle to the gateway's background work; cheap to clone.
#[derive(Clone, Default)]
pub struct Background {
    tracker: TaskTracker,
    /// Cancelled when stopping begins: loops end at once.
    winding_down: CancellationToken,
    /// Cancelled when the grace is over: whatever still runs is dropped.
    stop: CancellationToken,
}

impl Background {
    pub fn new() -> Background {
        Background::default()
    }

    /// Runs `work` until it ends, or until background work is stopped.
    /// Once stopping has begun, new work is dropped.
    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.winding_down.is_cancelled() {
            return;
        }
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = work => {}
                _ = stop.cancelled() => {}
            }
        });
    }

    /// Runs a service loop (a subscription, housekeeping): unlike finite
    /// work it ends as soon as stopping begins, without waiting out the
    /// grace.
    pub fn spawn_loop<F>(&self, service: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let winding_down = self.winding_down.clone();
        self.spawn(async move {
            tokio::select! {
                _ = service => {}
                _ = winding_down.cancelled() => {}
            }
        });
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Lets running work finish for up to `grace`, then stops what is left
    /// and waits for it to unwind. Returns how many tasks had to be stopped.
    pub async fn stop(&self, grace: Duration) -> usize {
        self.winding_down.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            self.stop.cancel();
            return 0;
        }
        let left = self.tracker.len();
        self.stop.cancel();
        self.tracker.wait().await;
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn finished_work_is_waited_for_and_the_rest_stopped() {
        let background = Background::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        background.spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = done_tx.send(());
        });
        background.spawn(std::future::pending());
        background.spawn_loop(std::future::pending());
        assert_eq!(background.running(), 3);
        let stopped = background.stop(Duration::from_secs(1)).await;
        assert_eq!(stopped, 1, "the endless task was stopped; the loop ended");
        assert!(done_rx.await.is_ok(), "the short task finished first");
        assert_eq!(background.running(), 0);
        background.spawn(std::future::pending());
        assert_eq!(background.running(), 0, "nothing starts after stop");
    }
}
