//! What happens to a request between HTTP and execution: the nesting check
//! that must come before the parser (a deeply nested document could exhaust
//! the parser's stack before any depth rule runs), a cache of parsed
//! documents (storefronts send the same few queries over and over, and
//! parsing is the largest single cost of a cache hit), and the checks the
//! spec wants as request errors that async-graphql would only notice
//! mid-execution.

use std::sync::Arc;

use async_graphql::parser::Positioned;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
};
use async_graphql::{Request, ServerError};

use super::errors::too_complex;

/// Brackets that input values may add on top of selection depth.
const NESTING_SLACK: usize = 16;

/// Parsed documents by query text, bounded by the text's size.
pub struct Documents {
    cache: moka::sync::Cache<String, Arc<ExecutableDocument>>,
    max_depth: usize,
}

/// What the handler needs to know about a prepared request.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    /// The selected operation is a mutation (GET may not run one; a
    /// mutation's upstream calls go at checkout priority).
    pub is_mutation: bool,
}

impl Documents {
    pub fn new(max_depth: usize) -> Documents {
        Documents {
            cache: moka::sync::Cache::builder()
                .max_capacity(8 * 1024 * 1024)
                // A parsed document takes several times its text.
                .weigher(|text: &String, _| u32::try_from(text.len() * 8).unwrap_or(u32::MAX))
                .build(),
            max_depth,
        }
    }

    /// Checks nesting, attaches the parsed document (from the cache when
    /// the same text came before), and checks variables. A document that
    /// does not parse is left for execution to report.
    pub fn prepare(&self, request: &mut Request) -> Result<Prepared, ServerError> {
        let nesting = bracket_nesting(&request.query);
        if nesting > self.max_depth + NESTING_SLACK {
            return Err(too_complex(format!(
                "query nests {nesting} levels deep; the limit is {}",
                self.max_depth
            )));
        }
        match self.cache.get(&request.query) {
            Some(doc) => request.set_parsed_query(ExecutableDocument::clone(&doc)),
            None => {
                if let Ok(doc) = request.parsed_query() {
                    let doc = Arc::new(doc.clone());
                    self.cache.insert(request.query.clone(), doc);
                }
            }
        }
        let name = request.operation_name.clone();
        let provided: Vec<String> = request.variables.keys().map(|k| k.to_string()).collect();
        let Ok(doc) = request.parsed_query() else {
            return Ok(Prepared { is_mutation: false });
        };
        let Some(op) = selected_operation(doc, name.as_deref()) else {
            return Ok(Prepared { is_mutation: false });
        };
        // GraphQL's "coerce variable values": a missing non-null variable
        // without a default is a request error, not a field error.
        for def in &op.node.variable_definitions {
            let def = &def.node;
            let required = !def.var_type.node.nullable && def.default_value.is_none();
            if required && !provided.iter().any(|p| p == def.name.node.as_str()) {
                return Err(ServerError::new(
                    format!(
                        "variable ${} of type {} was not provided",
                        def.name.node, def.var_type.node
                    ),
                    None,
                ));
            }
        }
        Ok(Prepared {
            is_mutation: op.node.ty == OperationType::Mutation,
        })
    }
}

fn selected_operation<'a>(
    doc: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a Positioned<OperationDefinition>> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
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
    use super::*;

    #[test]
    fn nesting_ignores_strings_and_comments() {
        assert_eq!(bracket_nesting("{ a { b } }"), 2);
        assert_eq!(bracket_nesting(r#"{ a(x: "{{{{") }"#), 2);
        assert_eq!(bracket_nesting("# {{{{\n{ a }"), 1);
        assert_eq!(bracket_nesting(&"{a".repeat(1000)), 1000);
    }

    #[test]
    fn a_document_is_parsed_once_and_reused() {
        let documents = Documents::new(12);
        let query = "query($id: ID!) { product(id: $id) { name } }";
        let vars = async_graphql::Variables::from_json(serde_json::json!({ "id": "p" }));
        let mut first = Request::new(query).variables(vars.clone());
        assert!(!documents.prepare(&mut first).unwrap().is_mutation);
        assert!(documents.cache.contains_key(query));
        let mut second = Request::new(query).variables(vars);
        documents.prepare(&mut second).unwrap();
        let mut missing = Request::new(query);
        let refused = documents.prepare(&mut missing).unwrap_err();
        assert!(refused.message.contains("$id"), "{}", refused.message);
        let mut mutation = Request::new("mutation { verifyCheckout }");
        assert!(documents.prepare(&mut mutation).unwrap().is_mutation);
        let mut deep = Request::new("{a".repeat(100));
        assert!(documents.prepare(&mut deep).is_err());
    }
}
