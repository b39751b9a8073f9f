//! Where a gateway `Error` becomes a GraphQL error, with its stable
//! `extensions.code` from the error table, and where the errors the
//! library raises on its own (validation, input coercion) get one too: a
//! client never sees an error without a code.

use async_graphql::{ErrorExtensionValues, Response, ServerError};

use crate::error::{Error, Kind};

impl From<Error> for async_graphql::Error {
    fn from(e: Error) -> Self {
        if e.kind() == Kind::Internal {
            tracing::error!(error = %e, "internal error");
        }
        async_graphql::Error {
            message: e.public_message().to_string(),
            source: None,
            extensions: Some(extensions(e.kind())),
        }
    }
}

/// A gateway error as a GraphQL request error (no path, no data).
pub fn request_error(e: &Error) -> ServerError {
    if e.kind() == Kind::Internal {
        tracing::error!(error = %e, "internal error");
    }
    let mut error = ServerError::new(e.public_message(), None);
    error.extensions = Some(extensions(e.kind()));
    error
}

fn extensions(kind: Kind) -> ErrorExtensionValues {
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", kind.code());
    extensions
}

/// Gives every error of `response` that the library raised without a code
/// the one it stands for: before execution (no path) the document failed
/// validation; during execution, an argument failed to coerce to its type
/// (our resolvers always set a code).
pub fn code_every_error(response: &mut Response) {
    for error in &mut response.errors {
        let coded = error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if coded {
            continue;
        }
        let kind = if error.path.is_empty() {
            Kind::ValidationFailed
        } else {
            Kind::BadUserInput
        };
        error
            .extensions
            .get_or_insert_with(ErrorExtensionValues::default)
            .set("code", kind.code());
    }
}
