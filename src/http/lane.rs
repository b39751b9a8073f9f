//! The full path's own threads. Requests the door cannot answer from a
//! stored answer (misses, checkout, events) run on a second tokio runtime
//! whose worker threads run at a lower OS priority (`server.full_path_nice`)
//! than the listener's, where the door answers. So a hit is never queued
//! behind misses on a worker, and the kernel lets it preempt a miss being
//! built: a storm of misses costs hits little but the CPU it takes.
//!
//! It also makes concurrent misses share upstream calls: the door, which
//! outranks the lane, hands it every request it has read before the lane
//! runs any, so their loaders meet in one flight (`cache::tier`). Run
//! inline with a flight's usual single look for new work, a cold page at
//! 4 connections made half as many calls again (0.91 against 0.59).
//!
//! The hand-over is paid in the kernel (a wake-up of each thread and a
//! switch between them, twice a request): a fifth of a cold page's CPU.
//! So it is paid only while there are hits to protect: when the door has
//! answered nothing from a stored answer for `QUIET`, requests run inline
//! on the door's own threads, whose flights look longer for the requests
//! arriving meanwhile (`cache::looks_before_take_off`) and so share their
//! upstream calls as the lane's do. The first stored answer sends the
//! next request to the lane again.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::response::Response;
use futures_util::FutureExt;
use tokio::runtime::{Builder, Runtime};

use crate::error::Error;

/// A runtime for the full path; shut down (without waiting) when dropped,
/// after the listener has drained and background work has finished (its
/// upstream connections may live on it).
pub struct Lane {
    runtime: Option<Runtime>,
    /// Since `started`, in milliseconds: when the door last answered from
    /// a stored answer (0: never).
    door_answered: AtomicU64,
    started: Instant,
}

/// How long after the door's last stored answer requests still go to the
/// lane: past it there are no hits to keep ahead of misses.
const QUIET: Duration = Duration::from_secs(1);

impl Lane {
    /// Worker threads as many as the CPUs this process may use, each
    /// `nice` below the caller's.
    pub fn new(nice: i32) -> Result<Lane, Error> {
        let runtime = Builder::new_multi_thread()
            .thread_name("moat-full-path")
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()
            .map_err(|e| Error::internal(format!("cannot start the full path's threads: {e}")))?;
        Ok(Lane {
            runtime: Some(runtime),
            door_answered: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// The door answered a request from a stored answer: hits are being
    /// served, and misses run on the lane for `QUIET` at least. Written
    /// once a millisecond at most, since every hit calls it.
    pub fn answered_at_door(&self) {
        let now = self.millis();
        if self.door_answered.load(Ordering::Relaxed) != now {
            self.door_answered.store(now, Ordering::Relaxed);
        }
    }

    fn millis(&self) -> u64 {
        // From 1, so that 0 is "never".
        u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Whether a request now would share the door's threads with no hits.
    fn quiet(&self) -> bool {
        let last = self.door_answered.load(Ordering::Relaxed);
        last == 0 || self.millis().saturating_sub(last) > QUIET.as_millis() as u64
    }

    /// Runs `answer` on the lane and waits for it, or inline while the
    /// door serves no hits.
    pub async fn run<F>(&self, answer: F) -> Response
    where
        F: Future<Output = Response> + Send + 'static,
    {
        // A panic (or the lane shutting down) loses this request only.
        let Some(runtime) = self.runtime.as_ref().filter(|_| !self.quiet()) else {
            return match AssertUnwindSafe(answer).catch_unwind().await {
                Ok(response) => response,
                Err(_) => failed("it panicked"),
            };
        };
        match runtime.spawn(answer).await {
            Ok(response) => response,
            Err(e) => failed(&e.to_string()),
        }
    }
}

fn failed(why: &str) -> Response {
    super::reply::problem(
        super::reply::Media::Json,
        &Error::internal(format!("the request failed: {why}")),
    )
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority by `nice` (Linux keeps one per
/// thread). Lowering needs no privilege; raising it back would.
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice != 0
        && let Err(e) = rustix::process::nice(nice)
    {
        tracing::warn!(error = %e, "cannot lower the full path's thread priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `lane` ran a request: the name of its thread.
    async fn ran_on(lane: &Lane) -> String {
        let response = lane
            .run(async {
                let name = std::thread::current().name().unwrap_or("").to_string();
                Response::new(axum::body::Body::from(name))
            })
            .await;
        let body = axum::body::to_bytes(response.into_body(), 1024).await;
        String::from_utf8(body.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn requests_go_to_the_lane_only_while_the_door_serves_hits() {
        let mut lane = Lane::new(0).unwrap();
        // Started a while ago, so that "before `QUIET`" can be said.
        lane.started -= QUIET * 2;
        let door = std::thread::current().name().unwrap().to_string();
        assert_eq!(ran_on(&lane).await, door, "no hits yet: inline");

        lane.answered_at_door();
        assert_eq!(ran_on(&lane).await, "moat-full-path");
        lane.answered_at_door();
        assert_eq!(ran_on(&lane).await, "moat-full-path");

        // The last hit longer than `QUIET` ago: inline again.
        let long_ago = lane.millis() - QUIET.as_millis() as u64 - 1;
        lane.door_answered.store(long_ago, Ordering::Relaxed);
        assert_eq!(ran_on(&lane).await, door);
    }

    #[tokio::test]
    async fn a_request_that_panics_is_answered_500_inline_and_on_the_lane() {
        let lane = Lane::new(0).unwrap();
        let panics = || async {
            if std::hint::black_box(true) {
                panic!("a bug");
            }
            Response::new(axum::body::Body::empty())
        };
        let inline = lane.run(panics()).await;
        assert_eq!(inline.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        lane.answered_at_door();
        let on_the_lane = lane.run(panics()).await;
        assert_eq!(
            on_the_lane.status(),
            http::StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
