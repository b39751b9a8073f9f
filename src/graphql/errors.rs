//! Where a gateway `Error` becomes a GraphQL error (with its stable
//! `extensions.code`), and the query limits that answer
//! `QUERY_TOO_COMPLEX` before anything runs.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::{ErrorExtensionValues, ServerError, ValidationResult};

use crate::error::{Error, Kind};

impl From<Error> for async_graphql::Error {
    fn from(e: Error) -> Self {
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", e.kind().code());
        async_graphql::Error {
            message: e.message().to_string(),
            source: None,
            extensions: Some(extensions),
        }
    }
}

pub(super) fn too_complex(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", Kind::QueryTooComplex.code());
    error.extensions = Some(extensions);
    error
}

/// Limits on query shape, from async-graphql's own validation pass (the
/// nesting pre-check on the raw text is in `prepare`, before the parser).
pub struct QueryLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

impl ExtensionFactory for QueryLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QueryLimits {
            max_depth: self.max_depth,
            max_complexity: self.max_complexity,
        })
    }
}

#[async_trait::async_trait]
impl Extension for QueryLimits {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if result.depth > self.max_depth {
            return Err(vec![too_complex(format!(
                "query depth {} exceeds the limit of {}",
                result.depth, self.max_depth
            ))]);
        }
        if result.complexity > self.max_complexity {
            return Err(vec![too_complex(format!(
                "query complexity {} exceeds the limit of {}",
                result.complexity, self.max_complexity
            ))]);
        }
        Ok(result)
    }
}
