//! The inbound per-client limits on `/graphql` (see
//! `resilience::client_limit`): over the limit a client gets HTTP 429 with
//! `Retry-After` and a GraphQL `RATE_LIMITED` error, and other clients are
//! served as before. The client is set as a request extension, for the
//! handler's `verifyCheckout` limit.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::client_addr::ClientAddr;
use super::reply::{Media, problem};
use crate::error::{Error, Kind};
use crate::resilience::client_limit::ClientLimits;

pub async fn limit(
    State(limits): State<Arc<ClientLimits>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(client) = limits.identify(request.headers(), addr) else {
        return next.run(request).await;
    };
    match limits.request(&client) {
        Ok(()) => {
            request.extensions_mut().insert(client);
            next.run(request).await
        }
        Err(wait) => too_many(wait, "this client is over its request limit"),
    }
}

/// 429 with `Retry-After`, as a GraphQL `RATE_LIMITED` request error.
pub(super) fn too_many(wait: Duration, why: &str) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let error = Error::new(Kind::RateLimited, format!("{why}; retry in {seconds} s"));
    let mut response = problem(Media::Json, &error);
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}
