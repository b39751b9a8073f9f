//! What happens to a request between HTTP and execution, in order:
//!
//! 1. the guard (`guard`): the raw text is lexed once and refused if it
//!    nests, or holds tokens or aliases, past the limits, so nothing
//!    recursive ever sees an unbounded document;
//! 2. the parser (`reader`, or the library's for what it declines), whose
//!    result is cached by query text (storefronts send the same few
//!    queries over and over, and parsing is the largest single cost of a
//!    cache hit); a document is cached only once its
//!    whole expansion (every operation and fragment) fits the budget, so
//!    the library's own validation, which expands every fragment, never
//!    meets an exponential document;
//! 3. the selected operation's cost (`cost`), with this request's
//!    variables: depth, complexity and `verifyCheckout` count;
//! 4. the checks the spec wants as request errors that async-graphql would
//!    only notice mid-execution (a missing required variable).
//!
//! The library validates every request against the schema (about a tenth
//! of a miss's CPU). Once a text's shape (`shape`: its tokens, strings
//! numbered by content) has passed that, every text of that shape passes
//! all of it but the rules that look at values, whatever the variables, so
//! `Prepared::known_valid` lets the handler run it with only those
//! (`ValidationMode::Values`).

use std::hash::RandomState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::Request;
use async_graphql::parser::Positioned;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
};

use super::cost::{self, Cost};
use super::guard::{self, Bounds, Refusal};
use super::reader;
use super::shape;
use crate::error::{Error, Kind};
use crate::vocab::CacheHasher;

/// Every bound a query is held to before it runs.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub text: Bounds,
    pub cost: cost::Limits,
}

/// Parsed documents by query text, bounded by the text's size, and the
/// shapes that passed the library's full validation.
pub struct Documents {
    cache: moka::sync::Cache<String, Arc<Parsed>, CacheHasher>,
    valid_shapes: moka::sync::Cache<u64, (), CacheHasher>,
    /// The key of every shape's hash.
    shape_keys: RandomState,
    limits: QueryLimits,
}

/// A parsed document, its shape, and whether that has passed the library's
/// full validation (then only values can make it fail).
struct Parsed {
    /// Handed to each request as it is: execution reads it, never copies it.
    doc: Arc<ExecutableDocument>,
    /// `None`: validated in full every time.
    shape: Option<u64>,
    /// Remembered here once known, so a repeated text skips the lookup.
    valid_shape: AtomicBool,
}

/// What the handler needs to know about a prepared request.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    /// The selected operation is a mutation (GET may not run one; a
    /// mutation's upstream calls go at checkout priority).
    pub is_mutation: bool,
    pub cost: Cost,
    /// A text of this one's shape passed full validation before: the rules
    /// that look at values are all it needs.
    pub known_valid: bool,
}

impl Documents {
    pub fn new(limits: QueryLimits) -> Documents {
        Documents {
            cache: moka::sync::Cache::builder()
                .max_capacity(8 * 1024 * 1024)
                // A parsed document takes several times its text.
                .weigher(|text: &String, _| u32::try_from(text.len() * 8).unwrap_or(u32::MAX))
                .build_with_hasher(CacheHasher::default()),
            // A few dozen bytes each: far more shapes than any storefront has.
            valid_shapes: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .build_with_hasher(CacheHasher::default()),
            shape_keys: RandomState::new(),
            limits,
        }
    }

    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// Guards and parses the text (or takes the cached document), attaches
    /// it to the request, and measures the selected operation.
    pub fn prepare(&self, request: &mut Request) -> Result<Prepared, Error> {
        let parsed = match self.cache.get(&request.query) {
            Some(parsed) => parsed,
            None => {
                let (doc, shape) = self.parse(&request.query)?;
                let parsed = Arc::new(Parsed {
                    doc: Arc::new(doc),
                    shape,
                    valid_shape: AtomicBool::new(false),
                });
                self.cache.insert(request.query.clone(), parsed.clone());
                parsed
            }
        };
        let doc = &parsed.doc;
        request.set_shared_query(doc.clone());
        let known_valid = parsed.valid_shape.load(Ordering::Relaxed)
            || parsed.shape.is_some_and(|shape| {
                let valid = self.valid_shapes.contains_key(&shape);
                if valid {
                    parsed.valid_shape.store(true, Ordering::Relaxed);
                }
                valid
            });
        let Some(op) = selected_operation(doc, request.operation_name.as_deref()) else {
            // No such operation, or several without a name: the library
            // reports it as a request error.
            return Ok(Prepared {
                is_mutation: false,
                cost: Cost {
                    complexity: 0,
                    depth: 0,
                    verifications: 0,
                },
                known_valid: false,
            });
        };
        let cost = cost::measure(doc, &op.node, &request.variables, self.limits.cost)?;
        // GraphQL's "coerce variable values": a missing non-null variable
        // without a default is a request error, not a field error.
        for def in &op.node.variable_definitions {
            let def = &def.node;
            let required = !def.var_type.node.nullable && def.default_value.is_none();
            if required && !request.variables.contains_key(&def.name.node) {
                return Err(Error::bad_input(
                    &format!("${}", def.name.node),
                    format!("variable of type {} was not provided", def.var_type.node),
                ));
            }
        }
        Ok(Prepared {
            is_mutation: op.node.ty == OperationType::Mutation,
            cost,
            known_valid,
        })
    }

    /// `query` passed the library's full validation: the texts of its shape
    /// need only the rules that look at values from now on.
    pub fn passed_validation(&self, query: &str) {
        if let Some(parsed) = self.cache.get(query)
            && let Some(shape) = parsed.shape
        {
            self.valid_shapes.insert(shape, ());
            parsed.valid_shape.store(true, Ordering::Relaxed);
        }
    }

    /// The document, and its shape when the reader read it (what the
    /// library parses instead has escapes, block strings or an error).
    fn parse(&self, text: &str) -> Result<(ExecutableDocument, Option<u64>), Error> {
        guard::check(text, self.limits.text).map_err(|refusal| match refusal {
            Refusal::TooLarge(message) => Error::too_complex(message),
            Refusal::Syntax(message) => Error::new(Kind::ParseFailed, message),
        })?;
        let (doc, shape) = match reader::read(text) {
            Some(doc) => (doc, shape::of(text, &self.shape_keys)),
            // What the reader leaves (syntax errors among it) the library
            // parses, so its errors read as they always have.
            None => (
                async_graphql::parser::parse_query(text)
                    .map_err(|e| Error::new(Kind::ParseFailed, e.to_string()))?,
                None,
            ),
        };
        cost::check_expansion(&doc, self.limits.cost)?;
        Ok((doc, shape))
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const LIMITS: QueryLimits = QueryLimits {
        text: Bounds {
            max_nesting: 28,
            max_tokens: 5_000,
            max_aliases: 100,
        },
        cost: cost::Limits {
            max_depth: 12,
            max_introspection_depth: 20,
            max_complexity: 5_000,
            max_fragment_depth: 10,
            max_verifications: 1,
            introspection: true,
        },
    };

    #[test]
    fn a_document_is_parsed_once_and_reused() {
        let documents = Documents::new(LIMITS);
        let query = "query($id: ID!) { product(id: $id) { name } }";
        let vars = async_graphql::Variables::from_json(serde_json::json!({ "id": "p" }));
        let mut first = Request::new(query).variables(vars.clone());
        assert!(!documents.prepare(&mut first).unwrap().is_mutation);
        assert!(documents.cache.contains_key(query));
        let mut second = Request::new(query).variables(vars);
        documents.prepare(&mut second).unwrap();
        let mut missing = Request::new(query);
        let refused = documents.prepare(&mut missing).unwrap_err();
        assert_eq!(refused.kind(), Kind::BadUserInput);
        assert!(refused.message().starts_with("$id"), "{refused}");
        let mut mutation = Request::new("mutation { verifyCheckout }");
        assert!(documents.prepare(&mut mutation).unwrap().is_mutation);
    }

    #[test]
    fn a_shape_that_passed_validation_needs_only_the_value_rules() {
        let documents = Documents::new(LIMITS);
        let prepare = |query: &str, vars: serde_json::Value| {
            let mut request =
                Request::new(query).variables(async_graphql::Variables::from_json(vars));
            documents.prepare(&mut request).unwrap().known_valid
        };
        let none = serde_json::json!({});
        let page = r#"{ product(id: "prod-1") { name } }"#;
        assert!(!prepare(page, none.clone()));
        assert!(!prepare(page, none.clone()), "not until validation passed");
        documents.passed_validation(page);
        assert!(prepare(page, none.clone()));
        assert!(
            prepare(r#"{ product(id: "prod-2") { name } }"#, none.clone()),
            "another text of the same shape"
        );
        assert!(!prepare(
            r#"{ product(sku: "prod-2") { name } }"#,
            none.clone()
        ));

        let by_variable = "query($id: ID!) { product(id: $id) { name } }";
        assert!(!prepare(by_variable, serde_json::json!({ "id": "a" })));
        documents.passed_validation(by_variable);
        assert!(
            prepare(by_variable, serde_json::json!({ "id": "b" })),
            "variables are for the value rules"
        );

        // Without a shape (an escape), validated in full every time.
        let escaped = r#"{ product(id: "prod-\u0031") { name } }"#;
        assert!(!prepare(escaped, none.clone()));
        documents.passed_validation(escaped);
        assert!(!prepare(escaped, none));

        documents.passed_validation("{ never prepared }");
        assert!(!documents.cache.contains_key("{ never prepared }"));
    }

    #[test]
    fn refusals_are_coded_and_never_cached() {
        let documents = Documents::new(LIMITS);
        let deep = "{a".repeat(100);
        let refused = documents
            .prepare(&mut Request::new(deep.clone()))
            .unwrap_err();
        assert_eq!(refused.kind(), Kind::QueryTooComplex);
        assert!(!documents.cache.contains_key(&deep));
        let refused = documents
            .prepare(&mut Request::new("{ product(id: "))
            .unwrap_err();
        assert_eq!(refused.kind(), Kind::ParseFailed);
        let refused = documents
            .prepare(&mut Request::new("{ a(x: \"open\n) }"))
            .unwrap_err();
        assert_eq!(refused.kind(), Kind::ParseFailed);
    }

    #[test]
    fn unused_exponential_fragments_are_refused_too() {
        // The library's validation expands every fragment definition, used
        // or not: the budget covers them all.
        let query = super::super::cost::tests::fragment_chain("{ __typename }", "__typename", 9, 4);
        let refused = Documents::new(LIMITS)
            .prepare(&mut Request::new(query))
            .unwrap_err();
        assert_eq!(refused.kind(), Kind::QueryTooComplex, "{refused}");
    }

    /// Whatever the guard lets through, parsing, validation, execution and
    /// dropping it fit in a small stack: a quarter of a tokio worker's.
    #[test]
    fn the_deepest_admitted_document_runs_on_a_small_stack() {
        let n = 64 + 16; // the deepest `max_query_depth` plus value slack
        let limits = QueryLimits {
            text: Bounds {
                max_nesting: n,
                ..LIMITS.text
            },
            cost: cost::Limits {
                max_depth: 64,
                ..LIMITS.cost
            },
        };
        let list = format!("{}1{}", "[".repeat(n - 2), "]".repeat(n - 2));
        let object = format!("{}1{}", "{a: ".repeat(n - 2), "}".repeat(n - 2));
        let selections = format!("{}id{}", "{ parent ".repeat(n - 1), " }".repeat(n - 1));
        let texts = [
            format!("{{ product(sku: {list}) {{ id }} }}"),
            format!("{{ product(sku: {object}) {{ id }} }}"),
            format!("query($v: [Int] = {list}) {{ categories {{ id }} }}"),
            format!("{{ categories @include(if: {list}) {{ id }} }}"),
            selections,
        ];
        let schema = super::super::schema_for_tests();
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || {
                let documents = Documents::new(limits);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                for text in texts {
                    let mut request = Request::new(text);
                    if documents.prepare(&mut request).is_ok() {
                        // Validation and execution recurse over the same tree.
                        let _ = runtime.block_on(schema.execute(request));
                    }
                }
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
    }
}
