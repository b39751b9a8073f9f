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
//! inline, a cold page at 4 connections made twice the upstream calls.

use std::future::Future;

use axum::response::Response;
use tokio::runtime::{Builder, Runtime};

use crate::error::Error;

/// A runtime for the full path; shut down (without waiting) when dropped,
/// after the listener has drained and background work has finished (its
/// upstream connections may live on it).
pub struct Lane {
    runtime: Option<Runtime>,
}

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
        })
    }

    /// Runs `answer` on the lane and waits for it.
    pub async fn run<F>(&self, answer: F) -> Response
    where
        F: Future<Output = Response> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return answer.await;
        };
        match runtime.spawn(answer).await {
            Ok(response) => response,
            // A panic (or the lane shutting down) loses this request only.
            Err(e) => super::reply::problem(
                super::reply::Media::Json,
                &Error::internal(format!("the request failed: {e}")),
            ),
        }
    }
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
