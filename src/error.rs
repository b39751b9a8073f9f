//! The gateway's one error type. Every failure on the request path becomes an
//! [`Error`] with a [`Kind`]; it is turned into a GraphQL `extensions.code` or
//! an HTTP status in exactly one place (`graphql::errors` and `http`).

use std::fmt;
use std::sync::Arc;

/// What went wrong, as a caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An upstream could not answer: down, timed out, breaker open, or sent a
    /// payload that broke the contract.
    UpstreamUnavailable,
    /// A rate limit (ours towards an upstream, or ours towards a client) said no.
    RateLimited,
    /// The request itself is wrong; the message names the field.
    BadUserInput,
    /// A customer token was given and is not valid.
    Unauthenticated,
    /// The caller is known but may not see this.
    Forbidden,
    /// The query is too deep, too complex or too large.
    QueryTooComplex,
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
    /// The stable `extensions.code` clients match on.
    pub fn code(self) -> &'static str {
        match self {
            Kind::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            Kind::RateLimited => "RATE_LIMITED",
            Kind::BadUserInput => "BAD_USER_INPUT",
            Kind::Unauthenticated => "UNAUTHENTICATED",
            Kind::Forbidden => "FORBIDDEN",
            Kind::QueryTooComplex => "QUERY_TOO_COMPLEX",
            Kind::Internal => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn origin(self) -> Origin {
        match self {
            Kind::UpstreamUnavailable | Kind::RateLimited => Origin::Upstream,
            Kind::BadUserInput
            | Kind::Unauthenticated
            | Kind::Forbidden
            | Kind::QueryTooComplex => Origin::Downstream,
            Kind::Internal => Origin::Internal,
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
    /// Whether trying the same call again may succeed (timeouts, 5xx), as
    /// opposed to failures that will repeat (a contract violation, a 4xx).
    retryable: bool,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<Arc<str>>) -> Error {
        Error {
            kind,
            message: message.into(),
            retryable: false,
        }
    }

    /// An upstream failure that a retry may cure (timeout, connection, 5xx).
    pub fn transient(message: impl Into<Arc<str>>) -> Error {
        Error {
            retryable: true,
            ..Error::new(Kind::UpstreamUnavailable, message)
        }
    }

    pub fn unavailable(message: impl Into<Arc<str>>) -> Error {
        Error::new(Kind::UpstreamUnavailable, message)
    }

    pub fn bad_input(field: &str, problem: impl fmt::Display) -> Error {
        Error::new(Kind::BadUserInput, format!("{field}: {problem}"))
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

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
