//! The gateway's one error type, and the one table that turns an error's
//! [`Kind`] into what a client sees: a stable `extensions.code` and an HTTP
//! status. The GraphQL layer, the public listener and the admin API all go
//! through [`Kind::code`] and [`Kind::status`]; nothing else names a code.
//!
//! A leaf: it imports nothing of the crate.

use std::fmt;
use std::sync::Arc;

use http::StatusCode;

/// What went wrong, as a caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An upstream could not answer: down, timed out, breaker open, or sent a
    /// payload that broke the contract.
    UpstreamUnavailable,
    /// A rate limit (ours towards an upstream, or ours towards a client) said no.
    RateLimited,
    /// A value in the request is wrong; the message names the field.
    BadUserInput,
    /// A customer token was given and is not valid.
    Unauthenticated,
    /// The caller is known but may not see this.
    Forbidden,
    /// An admin token whose role may not do this (a viewer changing
    /// something).
    ForbiddenForRole,
    /// The query is too deep, too complex or too large.
    QueryTooComplex,
    /// The query text is not GraphQL.
    ParseFailed,
    /// The query is GraphQL but not valid against the schema.
    ValidationFailed,
    /// The HTTP request is not a GraphQL request (body not a JSON object,
    /// no `query`, parameters of the wrong type, a batch).
    BadRequest,
    /// The method is not allowed here (a mutation over GET).
    MethodNotAllowed,
    /// No media type the client accepts can be produced.
    NotAcceptable,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// The request body's media type is not one this endpoint reads.
    UnsupportedMediaType,
    /// No such route or resource.
    NotFound,
    /// The request conflicts with work already under way (a pass running).
    Conflict,
    /// The request outlived its deadline.
    Timeout,
    /// A persisted query's hash Moat does not know (yet): the client sends
    /// the query with its hash once, then the hash alone.
    PersistedQueryNotFound,
    /// Persisted queries are off.
    PersistedQueryNotSupported,
    /// Only the operations of the manifest run (allow-list mode).
    PersistedQueryNotInList,
    /// What was asked needs Redis (the dead-letter queue lives there), and
    /// Redis is not configured or not reachable.
    RedisUnavailable,
    /// A bug or an impossible state inside Moat.
    Internal,
}

/// Where the failure came from: decides logging level and who is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A system of record (PIM, ERP, CRM, OMS) or Redis.
    Upstream,
    /// The client calling Moat.
    Downstream,
    /// Moat itself.
    Internal,
}

impl Kind {
    /// Every kind, for the table's test and the docs.
    pub const ALL: [Kind; 22] = [
        Kind::UpstreamUnavailable,
        Kind::RateLimited,
        Kind::BadUserInput,
        Kind::Unauthenticated,
        Kind::Forbidden,
        Kind::ForbiddenForRole,
        Kind::QueryTooComplex,
        Kind::ParseFailed,
        Kind::ValidationFailed,
        Kind::BadRequest,
        Kind::MethodNotAllowed,
        Kind::NotAcceptable,
        Kind::PayloadTooLarge,
        Kind::UnsupportedMediaType,
        Kind::NotFound,
        Kind::Conflict,
        Kind::Timeout,
        Kind::PersistedQueryNotFound,
        Kind::PersistedQueryNotSupported,
        Kind::PersistedQueryNotInList,
        Kind::RedisUnavailable,
        Kind::Internal,
    ];

    /// The table: the stable `extensions.code` clients match on, and the
    /// HTTP status of a response that is this error alone.
    fn row(self) -> (&'static str, StatusCode) {
        match self {
            Kind::UpstreamUnavailable => ("UPSTREAM_UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE),
            Kind::RateLimited => ("RATE_LIMITED", StatusCode::TOO_MANY_REQUESTS),
            Kind::BadUserInput => ("BAD_USER_INPUT", StatusCode::BAD_REQUEST),
            Kind::Unauthenticated => ("UNAUTHENTICATED", StatusCode::UNAUTHORIZED),
            Kind::Forbidden => ("FORBIDDEN", StatusCode::FORBIDDEN),
            Kind::ForbiddenForRole => ("FORBIDDEN_FOR_ROLE", StatusCode::FORBIDDEN),
            Kind::QueryTooComplex => ("QUERY_TOO_COMPLEX", StatusCode::BAD_REQUEST),
            Kind::ParseFailed => ("GRAPHQL_PARSE_FAILED", StatusCode::BAD_REQUEST),
            Kind::ValidationFailed => ("GRAPHQL_VALIDATION_FAILED", StatusCode::BAD_REQUEST),
            Kind::BadRequest => ("BAD_REQUEST", StatusCode::BAD_REQUEST),
            Kind::MethodNotAllowed => ("METHOD_NOT_ALLOWED", StatusCode::METHOD_NOT_ALLOWED),
            Kind::NotAcceptable => ("NOT_ACCEPTABLE", StatusCode::NOT_ACCEPTABLE),
            Kind::PayloadTooLarge => ("PAYLOAD_TOO_LARGE", StatusCode::PAYLOAD_TOO_LARGE),
            Kind::UnsupportedMediaType => {
                ("UNSUPPORTED_MEDIA_TYPE", StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            Kind::NotFound => ("NOT_FOUND", StatusCode::NOT_FOUND),
            Kind::Conflict => ("CONFLICT", StatusCode::CONFLICT),
            Kind::Timeout => ("TIMEOUT", StatusCode::GATEWAY_TIMEOUT),
            // 200: APQ clients (Apollo's link among them) stop using
            // persisted queries after a 4xx, and this one is routine.
            Kind::PersistedQueryNotFound => ("PERSISTED_QUERY_NOT_FOUND", StatusCode::OK),
            Kind::PersistedQueryNotSupported => {
                ("PERSISTED_QUERY_NOT_SUPPORTED", StatusCode::BAD_REQUEST)
            }
            Kind::PersistedQueryNotInList => {
                ("PERSISTED_QUERY_NOT_IN_LIST", StatusCode::BAD_REQUEST)
            }
            Kind::RedisUnavailable => ("REDIS_UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE),
            Kind::Internal => ("INTERNAL_SERVER_ERROR", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// The stable `extensions.code` clients match on.
    pub fn code(self) -> &'static str {
        self.row().0
    }

    /// The HTTP status when this error is the whole answer. (GraphQL over
    /// HTTP answers legacy `application/json` clients 200 for a GraphQL
    /// request error; `http::graphql` applies that rule on top.)
    pub fn status(self) -> StatusCode {
        self.row().1
    }

    pub fn origin(self) -> Origin {
        match self {
            Kind::UpstreamUnavailable | Kind::RateLimited | Kind::RedisUnavailable => {
                Origin::Upstream
            }
            Kind::Internal | Kind::Timeout => Origin::Internal,
            _ => Origin::Downstream,
        }
    }
}

/// A gateway error: a kind plus a message fit to show a client.
///
/// Cheap to clone, because one upstream failure is handed to every request
/// that was waiting on the same fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
    message: Arc<str>,
    retry: Retry,
}

/// Whether trying the same thing again may succeed, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// The same failure would come back (a contract violation, a 4xx).
    Never,
    /// At once, within a request's own retries (a timeout, a 5xx).
    Now,
    /// Once Moat's own protection lets the call through again (a rate
    /// limit, an open breaker): not within a request, but work that can
    /// wait, such as applying an event, may try again.
    Later,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<Arc<str>>) -> Error {
        Error {
            kind,
            message: message.into(),
            retry: Retry::Never,
        }
    }

    /// An upstream failure that a retry may cure (timeout, connection, 5xx).
    pub fn transient(message: impl Into<Arc<str>>) -> Error {
        Error {
            retry: Retry::Now,
            ..Error::new(Kind::UpstreamUnavailable, message)
        }
    }

    /// A call Moat held back to protect an upstream (its limit, its
    /// breaker): nothing was asked, and the same call may pass later.
    pub fn held_back(kind: Kind, message: impl Into<Arc<str>>) -> Error {
        Error {
            retry: Retry::Later,
            ..Error::new(kind, message)
        }
    }

    pub fn unavailable(message: impl Into<Arc<str>>) -> Error {
        Error::new(Kind::UpstreamUnavailable, message)
    }

    pub fn bad_input(field: &str, problem: impl fmt::Display) -> Error {
        Error::new(Kind::BadUserInput, format!("{field}: {problem}"))
    }

    pub fn bad_request(message: impl Into<Arc<str>>) -> Error {
        Error::new(Kind::BadRequest, message)
    }

    pub fn too_complex(message: impl Into<Arc<str>>) -> Error {
        Error::new(Kind::QueryTooComplex, message)
    }

    pub fn internal(message: impl Into<Arc<str>>) -> Error {
        Error::new(Kind::Internal, message)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// What a client may be shown: the message, except for Moat's own
    /// failures, whose details are for the logs only.
    pub fn public_message(&self) -> &str {
        match self.kind {
            Kind::Internal => "internal error; the details are in the gateway's logs",
            _ => &self.message,
        }
    }

    /// Whether the same call, made again now, may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retry == Retry::Now
    }

    /// Whether the same call may succeed if made again a little later:
    /// what is retryable now, and what Moat's own protection held back.
    pub fn may_pass_later(&self) -> bool {
        self.retry != Retry::Never
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code and status a client of either listener can see. A new
    /// kind must be added here on purpose.
    #[test]
    fn the_table_lists_every_code_once() {
        let table: Vec<(&str, u16)> = Kind::ALL
            .iter()
            .map(|k| (k.code(), k.status().as_u16()))
            .collect();
        assert_eq!(
            table,
            [
                ("UPSTREAM_UNAVAILABLE", 503),
                ("RATE_LIMITED", 429),
                ("BAD_USER_INPUT", 400),
                ("UNAUTHENTICATED", 401),
                ("FORBIDDEN", 403),
                ("FORBIDDEN_FOR_ROLE", 403),
                ("QUERY_TOO_COMPLEX", 400),
                ("GRAPHQL_PARSE_FAILED", 400),
                ("GRAPHQL_VALIDATION_FAILED", 400),
                ("BAD_REQUEST", 400),
                ("METHOD_NOT_ALLOWED", 405),
                ("NOT_ACCEPTABLE", 406),
                ("PAYLOAD_TOO_LARGE", 413),
                ("UNSUPPORTED_MEDIA_TYPE", 415),
                ("NOT_FOUND", 404),
                ("CONFLICT", 409),
                ("TIMEOUT", 504),
                ("PERSISTED_QUERY_NOT_FOUND", 200),
                ("PERSISTED_QUERY_NOT_SUPPORTED", 400),
                ("PERSISTED_QUERY_NOT_IN_LIST", 400),
                ("REDIS_UNAVAILABLE", 503),
                ("INTERNAL_SERVER_ERROR", 500),
            ]
        );
        let mut codes: Vec<&str> = table.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Kind::ALL.len(), "a code stands for one kind");
    }

    #[test]
    fn internal_details_stay_in_the_logs() {
        let e = Error::internal("batch lost key \"p-1\" in flight 7");
        assert!(!e.public_message().contains("flight"));
        assert!(e.message().contains("flight"));
        let e = Error::bad_input("first", "must be between 0 and 100");
        assert_eq!(e.public_message(), "first: must be between 0 and 100");
    }
}
