//! The outbound stack of one system. Every upstream call goes through
//! `Client::call`, layer by layer:
//!
//! 1. timeout per attempt: a slow upstream costs at most `upstream.timeout`;
//! 2. HTTP (pooled reqwest);
//! 3. classification of the answer into a reply or an `Error` that says
//!    whether a retry may help.
//!
//! The contract check is the caller's (`contract::parse_list`), because
//! only it knows the entity.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;

use super::{Priority, Settings, System};
use crate::error::Error;
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
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
    max_batch: usize,
}

impl Client {
    pub fn new(system: System, http: reqwest::Client, settings: &Settings) -> Client {
        Client {
            system,
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
        self.call(endpoint, priority, || {
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
        self.call(endpoint, priority, || {
            self.http.request(Method::POST, &url).json(body)
        })
        .await
    }

    async fn call(
        &self,
        endpoint: &'static str,
        _priority: Priority,
        request: impl Fn() -> RequestBuilder,
    ) -> Result<Reply, Error> {
        let started = Instant::now();
        let result = self.attempt(request()).await;
        let outcome = match &result {
            Ok(reply) if reply.is_not_found() => "not_found",
            Ok(_) => "ok",
            Err(e) if e.is_retryable() => "error",
            Err(_) => "rejected",
        };
        telemetry::upstream_request(self.system, endpoint, outcome, started.elapsed());
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

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
