//! The outbound stack of one system. Every upstream call goes through
//! `Client::call`, layer by layer, each attempt:
//!
//! 1. credentials (`auth`): a header, or a shared OAuth2 token;
//! 2. rate limit, by priority: a permit per attempt, since a retry is
//!    traffic too (a browse miss waits briefly, checkout longest);
//! 3. circuit breaker: while open nothing is sent and the call fails at
//!    once, so nothing waits on a dead upstream;
//! 4. timeout per attempt: a slow upstream costs at most its `timeout`;
//! 5. HTTP (`pool`, one per system), and classification of the answer
//!    into a reply or an `Error` that says whether a retry may help; an
//!    answer declaring another protocol version than Moat's is a contract
//!    violation;
//!
//! and around the attempts, retries for idempotent reads only, with
//! jittered backoff, each paid from the retry budget so that an outage
//! cannot multiply traffic, plus one more try with a new OAuth2 token when
//! the system refuses the old one. The contract check of the body is the
//! caller's (`contract::parse_list`), because only it knows the entity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, StatusCode};
use serde::Serialize;
use tracing::Instrument;

use super::ask::Ask;
use super::auth::Credentials;
use super::contract::{self, Boundary};
use super::pool::{self, Failed, Outgoing, Pool};
use super::protection::Protection;
use super::rest::{Connector, Outbound, Transport};
use super::{Priority, System};
use crate::config::SystemSettings;
use crate::error::{Error, Kind};
use crate::exceptions::Exceptions;
use crate::telemetry;
use crate::telemetry::traces::{self, trace_span};
use crate::vocab::PROTOCOL;

/// An upstream's answer that is worth reading: 2xx, 404 (for
/// single-entity routes "does not exist" is an answer, not a failure), a
/// status a connector's route says means "no such record", or 401 (the
/// credentials need renewing; `Client::call` does that).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    /// The `Link` header's `rel="next"` URL, for a connector that pages so.
    pub link_next: Option<String>,
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
    pool: Pool,
    /// A call's URL is its path after this. Shared: a client is cloned
    /// into every batch of reads.
    base_url: Arc<str>,
    timeout: Duration,
    max_batch: usize,
    credentials: Arc<Credentials>,
    /// Where contract violations are recorded for the system's owner.
    exceptions: Arc<Exceptions>,
    /// For a system that speaks its own API: its routes. Asks go through
    /// them, and what comes back is protocol v1's.
    connector: Option<Arc<Connector>>,
}

impl Client {
    /// `pool` is the system's own (its TLS and connect timeout).
    pub fn new(
        protection: Arc<Protection>,
        pool: Pool,
        base_url: &str,
        settings: &SystemSettings,
        credentials: Arc<Credentials>,
        exceptions: Arc<Exceptions>,
        connector: Option<Arc<Connector>>,
    ) -> Client {
        Client {
            system: protection.system,
            protection,
            pool,
            base_url: Arc::from(base_url.trim_end_matches('/')),
            timeout: settings.timeout,
            max_batch: settings.max_batch,
            credentials,
            exceptions,
            connector,
        }
    }

    /// Where the system is.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn system(&self) -> System {
        self.system
    }

    /// This system's side of the contract check.
    pub fn boundary(&self) -> Boundary<'_> {
        Boundary {
            system: self.system,
            exceptions: Some(&self.exceptions),
        }
    }

    /// Most keys one call of `route` (an `Ask::route`) may carry.
    pub fn max_batch(&self, route: &str) -> usize {
        match &self.connector {
            Some(connector) => connector.max_batch(route, self.max_batch),
            None => self.max_batch,
        }
    }

    /// What it speaks: `v1`, or `rest` through a connector.
    pub fn protocol(&self) -> &'static str {
        if self.connector.is_some() {
            "rest"
        } else {
            PROTOCOL
        }
    }

    pub fn connector(&self) -> Option<&Arc<Connector>> {
        self.connector.as_ref()
    }

    /// Asks the system for `ask`, whatever it speaks: the reply is protocol
    /// v1's, for the families' contract check.
    pub async fn read(&self, ask: Ask<'_>, priority: Priority) -> Result<Reply, Error> {
        if let Some(connector) = &self.connector {
            let stack = Stack {
                client: self,
                priority,
            };
            // Boxed: a connector's exchange (its calls, paging, translation)
            // is a large future, which every protocol v1 read would
            // otherwise carry, and copy wherever it is moved or boxed.
            return Box::pin(connector.ask(&stack, ask)).await;
        }
        let Some((endpoint, path, query)) = ask.v1() else {
            // A key no URL can carry belongs to no record.
            return Ok(Reply {
                status: StatusCode::NOT_FOUND,
                body: Bytes::new(),
                link_next: None,
            });
        };
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.get(endpoint, &path, &query, priority).await
    }

    /// A connector's request, through the whole stack (credentials, limit,
    /// breaker, retries of GETs, timeout). A link to follow (a next page)
    /// must stay on the system's own origin.
    async fn send(
        &self,
        route: &'static str,
        request: Outbound,
        priority: Priority,
    ) -> Result<Reply, Error> {
        let url = if request.target.starts_with('/') {
            format!("{}{}", self.base_url, request.target)
        } else {
            let base = reqwest::Url::parse(&self.base_url).ok();
            let link = reqwest::Url::parse(&request.target).ok();
            match (base, link) {
                (Some(base), Some(link)) if base.origin() == link.origin() => link.into(),
                _ => {
                    return Err(contract::violation(
                        self.boundary(),
                        route,
                        None,
                        "its next-page link leaves the system's own origin".into(),
                    ));
                }
            }
        };
        let idempotent = request.method == Method::GET;
        self.call(route, priority, idempotent, &request.answers, || {
            request.to(&url)
        })
        .await
    }

    /// `GET {base}{path}?{query}`.
    pub async fn get(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
        priority: Priority,
    ) -> Result<Reply, Error> {
        let url = pool::with_query(format!("{}{path}", self.base_url), query);
        self.call(endpoint, priority, true, &[], || {
            let mut request = pool::request(Method::GET, &url, Bytes::new())?;
            declare(&mut request);
            Ok(request)
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
        let body = serde_json::to_vec(body).map(Bytes::from);
        // A POST may not be idempotent: it is never retried.
        self.call(endpoint, priority, false, &[], || {
            let body = body.as_ref().map_err(|e| e.to_string())?;
            let mut request = pool::request(Method::POST, &url, body.clone())?;
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            declare(&mut request);
            Ok(request)
        })
        .await
    }

    async fn call(
        &self,
        endpoint: &'static str,
        priority: Priority,
        idempotent: bool,
        answers: &[StatusCode],
        request: impl Fn() -> Result<Outgoing, String>,
    ) -> Result<Reply, Error> {
        let retry = self.protection.retry();
        let budget = self.protection.budget();
        let mut attempt = 1;
        let mut reauthorized = false;
        loop {
            // A request Moat cannot build is no upstream's failure: it is
            // refused before any permit, breaker or budget sees it.
            let mut request = self.buildable(endpoint, request())?;
            let token = self.credentials.apply(request.headers_mut()).await?;
            if attempt == 1 && !reauthorized {
                budget.deposit();
            }
            let span = trace_span!(
                "upstream",
                otel.name = %format_args!("{} {endpoint}", self.system),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                moat.upstream.system = %self.system,
                moat.upstream.endpoint = endpoint,
                moat.upstream.attempt = attempt,
                moat.upstream.outcome = tracing::field::Empty,
                http.request.method = %request.method(),
                url.full = %request.uri(),
                http.response.status_code = tracing::field::Empty,
            );
            let attempted = self
                .guarded(endpoint, priority, answers, request)
                .instrument(span);
            let result = match attempted.await {
                Ok(reply)
                    if reply.status == StatusCode::UNAUTHORIZED
                        && !answers.contains(&StatusCode::UNAUTHORIZED) =>
                {
                    // An OAuth2 token may have been revoked or expired early:
                    // one new token, one more try. A 401 means nothing was
                    // done, so this is safe for a POST too.
                    if let Some(token) = token.filter(|_| !reauthorized) {
                        self.credentials.retire(&token);
                        reauthorized = true;
                        continue;
                    }
                    Err(self.not_accepted(endpoint, reply.status))
                }
                other => other,
            };
            let retry_may_help = matches!(&result, Err(e) if e.is_retryable());
            if !(retry_may_help && idempotent && attempt < retry.max_attempts && budget.withdraw())
            {
                return result;
            }
            tokio::time::sleep(backoff(retry.backoff, attempt)).await;
            attempt += 1;
        }
    }

    /// The system refused Moat's credentials.
    fn not_accepted(&self, endpoint: &'static str, status: StatusCode) -> Error {
        let system = self.system;
        tracing::warn!(upstream = %system, endpoint, %status, "upstream refused Moat's credentials; check systems.{system}.auth and its secrets");
        Error::unavailable(format!(
            "{system} did not accept Moat's credentials ({status})"
        ))
    }

    /// The built request, or the client error it is: a URL that cannot be
    /// made, or one longer than an HTTP server takes (what a client's
    /// oversized cursor or key list would produce).
    fn buildable(
        &self,
        endpoint: &'static str,
        request: Result<Outgoing, String>,
    ) -> Result<Outgoing, Error> {
        let system = self.system;
        request.map_err(|why| {
            tracing::warn!(upstream = %system, endpoint, error = %why, "cannot build an upstream request; not sent");
            telemetry::upstream_request(system, endpoint, "not_sent", Duration::ZERO);
            too_big_to_send(system)
        })
    }

    /// One attempt through limit, breaker and timeout.
    async fn guarded(
        &self,
        endpoint: &'static str,
        priority: Priority,
        answers: &[StatusCode],
        request: Outgoing,
    ) -> Result<Reply, Error> {
        let system = self.system;
        if let Err(limited) = self.protection.limiter().acquire(priority).await {
            telemetry::upstream_request(system, endpoint, "rate_limited", Duration::ZERO);
            traced("rate_limited", None);
            return Err(Error::held_back(
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
                traced("breaker_open", None);
                return Err(Error::held_back(Kind::UpstreamUnavailable, refused.reason));
            }
        };
        let started = Instant::now();
        let result = self.attempt(endpoint, answers, request).await;
        let took = started.elapsed();
        let outcome = match &result {
            Ok(reply) if reply.is_not_found() => "not_found",
            Ok(reply) if reply.status == StatusCode::UNAUTHORIZED => "unauthorized",
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
        traced(outcome, result.as_ref().ok().map(|r| r.status));
        result
    }

    /// One HTTP exchange, bounded by the per-attempt timeout. What went
    /// wrong in detail goes to the log; the error says only what a client
    /// may know.
    async fn attempt(
        &self,
        endpoint: &'static str,
        answers: &[StatusCode],
        mut request: Outgoing,
    ) -> Result<Reply, Error> {
        let system = self.system;
        let timed_out =
            || Error::transient(format!("{system} did not answer within {:?}", self.timeout));
        traces::inject(request.headers_mut());
        // One deadline for the whole exchange, body included.
        let answer = match self.pool.exchange(request, self.timeout).await {
            Ok(answer) => answer,
            Err(Failed::TimedOut) => return Err(timed_out()),
            Err(Failed::Unreachable(why)) => {
                tracing::warn!(upstream = %system, endpoint, error = %why, "upstream unreachable");
                return Err(Error::transient(format!("{system} is unreachable")));
            }
            Err(Failed::BrokeOff(why)) => {
                tracing::warn!(upstream = %system, endpoint, error = %why, "upstream broke off its answer");
                return Err(Error::transient(format!("{system} broke off its answer")));
            }
        };
        let pool::Answer {
            status,
            headers,
            body,
        } = answer;
        // A connector's system speaks its own API: it declares nothing.
        let declared = headers
            .get(PROTOCOL_HEADER)
            .filter(|_| self.connector.is_none());
        let link_next = headers
            .get_all(http::header::LINK)
            .iter()
            .find_map(|v| next_link(v.to_str().ok()?));
        if let Some(declared) = declared.filter(|v| *v != PROTOCOL) {
            // Whatever it sent is another protocol's: not one field of it
            // is read.
            let declared = String::from_utf8_lossy(declared.as_bytes()).into_owned();
            return Err(contract::violation(
                self.boundary(),
                endpoint,
                None,
                format!("it declares protocol {declared:?}; Moat speaks {PROTOCOL}"),
            ));
        }
        if status.is_success() || status == StatusCode::NOT_FOUND || answers.contains(&status) {
            Ok(Reply {
                status,
                body,
                link_next,
            })
        } else if status == StatusCode::UNAUTHORIZED {
            // Not a failure of the system: the caller renews credentials.
            Ok(Reply {
                status,
                body,
                link_next,
            })
        } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(Error::transient(format!("{system} failed ({status})")))
        } else {
            // A 4xx other than 404 means Moat sent something the upstream
            // does not accept; repeating it will not help. Its text may say
            // why, for the logs only.
            if status == StatusCode::FORBIDDEN {
                return Err(self.not_accepted(endpoint, status));
            }
            let detail = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            tracing::warn!(upstream = %system, endpoint, %status, %detail, "upstream refused a request");
            Err(Error::unavailable(format!(
                "{system} refused the request ({status})"
            )))
        }
    }
}

/// A connector's requests go through the stack at the priority of the ask.
struct Stack<'a> {
    client: &'a Client,
    priority: Priority,
}

impl Transport for Stack<'_> {
    async fn send(&self, route: &'static str, request: Outbound) -> Result<Reply, Error> {
        self.client.send(route, request, self.priority).await
    }
}

/// The URL of a `Link` header value's `rel="next"` entry (RFC 8288).
pub(super) fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|entry| {
        let (target, params) = entry.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// How each side declares the protocol version it speaks.
pub const PROTOCOL_HEADER: &str = "moat-protocol";

/// Says which protocol version the request speaks.
fn declare(request: &mut Outgoing) {
    request
        .headers_mut()
        .insert(PROTOCOL_HEADER, HeaderValue::from_static(PROTOCOL));
}

fn too_big_to_send(system: System) -> Error {
    Error::new(
        Kind::BadUserInput,
        format!("the request asks {system} for more than one call can carry; ask for less"),
    )
}

/// `base` doubled per retry, with ±50 % jitter so retries from many
/// callers do not arrive together.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << (attempt - 1).min(10));
    exp.mul_f64(0.5 + fastrand::f64())
}

/// An attempt's outcome on its span (`guarded` runs inside it).
fn traced(outcome: &'static str, status: Option<StatusCode>) {
    if !traces::on() {
        return;
    }
    let span = tracing::Span::current();
    span.record("moat.upstream.outcome", outcome);
    if let Some(status) = status {
        span.record("http.response.status_code", status.as_u16());
    }
    if !matches!(outcome, "ok" | "not_found") {
        span.record("otel.status_code", "ERROR");
    }
}
