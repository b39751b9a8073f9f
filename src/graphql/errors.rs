//! Where a gateway `Error` becomes a GraphQL error (with its stable
//! `extensions.code`), and the query limits that answer
//! `QUERY_TOO_COMPLEX` before anything runs.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextValidation,
};
use async_graphql::{ErrorExtensionValues, Request, ServerError, ServerResult, ValidationResult};

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

fn too_complex(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", Kind::QueryTooComplex.code());
    error.extensions = Some(extensions);
    error
}

/// Limits on query shape. Depth and complexity come from async-graphql's
/// own validation pass; the nesting pre-check runs on the raw text first,
/// because a deeply nested document could exhaust the parser's stack before
/// any depth rule ever runs.
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

/// Brackets that input values may add on top of selection depth.
const NESTING_SLACK: usize = 16;

#[async_trait::async_trait]
impl Extension for QueryLimits {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let nesting = bracket_nesting(&request.query);
        if nesting > self.max_depth + NESTING_SLACK {
            return Err(too_complex(format!(
                "query nests {nesting} levels deep; the limit is {}",
                self.max_depth
            )));
        }
        next.run(ctx, request).await
    }

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

/// Deepest nesting of `{`, `[` and `(` outside strings and comments.
fn bracket_nesting(query: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut chars = query.chars();
    while let Some(c) = chars.next() {
        match c {
            '{' | '[' | '(' => {
                depth += 1;
                max = max.max(depth);
            }
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::bracket_nesting;

    #[test]
    fn nesting_ignores_strings_and_comments() {
        assert_eq!(bracket_nesting("{ a { b } }"), 2);
        assert_eq!(bracket_nesting(r#"{ a(x: "{{{{") }"#), 2);
        assert_eq!(bracket_nesting("# {{{{\n{ a }"), 1);
        assert_eq!(bracket_nesting(&"{a".repeat(1000)), 1000);
    }
}
