//! The outbound stack of one system. Every upstream call goes through
//! `Client::call`, layer by layer, each attempt:
//!
//! 1. rate limit, by priority: a permit per attempt, since a retry is
//!    traffic too (a browse miss waits briefly, checkout longest);
//! 2. circuit breaker: while open nothing is sent and the call fails at
//!    once, so nothing waits on a dead upstream;
//! 3. timeout per attempt: a slow upstream costs at most `upstream.timeout`;
//! 4. HTTP (pooled reqwest), and classification of the answer into a reply
//!    or an `Error` that says whether a retry may help;
//!
//! and around the attempts, retries for idempotent reads only, with
//! jittered backoff, each paid from the retry budget so that an outage
//! cannot multiply traffic. The contract check is the caller's
//! (`contract::parse_list`), because only it knows the entity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;

use super::protection::Protection;
use super::{Priority, Settings, System};
use crate::error::{Error, Kind};
use crate::telemetry;

/// An upstream's answer that is worth reading: 2xx, or 404 (for
/// single-entity routes "does not exist" is an answer, not a failure).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn is_not_found(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }
}

/// Calls one system of record.
#[derive(Clone)]
pub struct Client {
    system: System,
    protection: Arc<Protection>,
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
    max_batch: usize,
}

impl Client {
    pub fn new(protection: Arc<Protection>, http: reqwest::Client, settings: &Settings) -> Client {
        Client {
            system: protection.system,
            protection,
            http,
            base_url: settings.base_url.trim_end_matches('/').to_string(),
            timeout: settings.timeout,
            max_batch: settings.max_batch,
        }
    }

    pub fn system(&self) -> System {
        self.system
    }

    /// Most keys one batch call may carry.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// `GET {base}{path}?{query}`.
    pub async fn get(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
        priority: Priority,
    ) -> Result<Reply, Error> {
        let url = format!("{}{path}", self.base_url);
        self.call(endpoint, priority, true, || {
            self.http.request(Method::GET, &url).query(query)
        })
        .await
    }

    /// `POST {base}{path}` with a JSON body.
    pub async fn post<B: Serialize>(
        &self,
        endpoint: &'static str,
        path: &str,
        body: &B,
        priority: Priority,
    ) -> Result<Reply, Error> {
        let url = format!("{}{path}", self.base_url);
        // A POST may not be idempotent: it is never retried.
        self.call(endpoint, priority, false, || {
            self.http.request(Method::POST, &url).json(body)
        })
        .await
    }

    async fn call(
        &self,
        endpoint: &'static str,
        priority: Priority,
        idempotent: bool,
        request: impl Fn() -> RequestBuilder,
    ) -> Result<Reply, Error> {
        let retry = self.protection.retry();
        let budget = self.protection.budget();
        budget.deposit();
        let mut attempt = 1;
        loop {
            let result = self.guarded(endpoint, priority, request()).await;
            let retry_may_help = matches!(&result, Err(e) if e.is_retryable());
            if !(retry_may_help && idempotent && attempt < retry.max_attempts && budget.withdraw())
            {
                return result;
            }
            tokio::time::sleep(backoff(retry.backoff, attempt)).await;
            attempt += 1;
        }
    }

    /// One attempt through limit, breaker and timeout.
    async fn guarded(
        &self,
        endpoint: &'static str,
        priority: Priority,
        request: RequestBuilder,
    ) -> Result<Reply, Error> {
        let system = self.system;
        if let Err(limited) = self.protection.limiter().acquire(priority).await {
            telemetry::upstream_request(system, endpoint, "rate_limited", Duration::ZERO);
            return Err(Error::new(
                Kind::RateLimited,
                format!(
                    "{system} is at its rate limit; retry in {} ms",
                    limited.retry_in.as_millis().max(1)
                ),
            ));
        }
        let permit = match self.protection.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(refused) => {
                telemetry::upstream_request(system, endpoint, "breaker_open", Duration::ZERO);
                return Err(Error::unavailable(refused.reason));
            }
        };
        let started = Instant::now();
        let result = self.attempt(request).await;
        let took = started.elapsed();
        let outcome = match &result {
            Ok(reply) if reply.is_not_found() => "not_found",
            Ok(_) => "ok",
            Err(e) if e.is_retryable() => "error",
            Err(_) => "rejected",
        };
        // Only failures that say the upstream is unwell count against it:
        // a 4xx means it is up and answering.
        match &result {
            Err(e) if e.is_retryable() => permit.failure(),
            _ => permit.success(),
        }
        self.protection.record_latency(took);
        telemetry::upstream_request(system, endpoint, outcome, took);
        result
    }

    /// One HTTP exchange, bounded by the per-attempt timeout.
    async fn attempt(&self, request: RequestBuilder) -> Result<Reply, Error> {
        let system = self.system;
        let response = request.timeout(self.timeout).send().await.map_err(|e| {
            if e.is_timeout() {
                Error::transient(format!("{system} did not answer within {:?}", self.timeout))
            } else {
                Error::transient(format!("{system} is unreachable: {}", root_cause(&e)))
            }
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            Error::transient(format!("{system} broke off its answer: {}", root_cause(&e)))
        })?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(Reply { status, body })
        } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(Error::transient(format!("{system} failed ({status})")))
        } else {
            // A 4xx other than 404 means Moat sent something the upstream
            // does not accept; repeating it will not help.
            let detail = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            Err(Error::unavailable(format!(
                "{system} refused the request ({status}): {detail}"
            )))
        }
    }
}

/// `base` doubled per retry, with ±50 % jitter so retries from many
/// callers do not arrive together.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << (attempt - 1).min(10));
    exp.mul_f64(0.5 + fastrand::f64())
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
