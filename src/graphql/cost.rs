//! What a parsed operation would cost, measured on the document before
//! anything runs: depth, complexity and the number of `verifyCheckout`
//! fields, with fragments expanded as execution would expand them, but
//! under a budget. The walk stops the moment the budget is spent, so a
//! chain of fragments that each spread the previous one twice costs the
//! budget, not 2^n.
//!
//! Every field counts, `__typename` and introspection fields included; a
//! `products` page multiplies what it selects by its page size. Fragment
//! spreads and inline fragments are work too: each one visited is charged,
//! so fragments with no fields of their own cannot hide an expansion.
//! Introspection has a depth allowance of its own, because the standard
//! introspection query (GraphiQL's, graphql-js `getIntrospectionQuery`)
//! nests `ofType` well past what a storefront query needs.

use async_graphql::parser::types::{
    ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Variables};
use async_graphql_value::{ConstValue, Value};

use crate::error::{Error, Kind};

/// What one operation may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest field nesting of a storefront query.
    pub max_depth: usize,
    /// Deepest field nesting under `__schema` or `__type`.
    pub max_introspection_depth: usize,
    /// Most fields (lists times their page size) plus fragments visited.
    pub max_complexity: usize,
    /// Deepest chain of fragment spreads.
    pub max_fragment_depth: usize,
    /// Most `verifyCheckout` fields in one request.
    pub max_verifications: usize,
    /// Whether `__schema` and `__type` may be asked at all.
    pub introspection: bool,
}

/// What an operation costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub complexity: usize,
    pub depth: usize,
    pub verifications: usize,
}

/// Measures `operation` of `doc`, refusing with `QUERY_TOO_COMPLEX` (naming
/// the limit) the moment a limit is passed.
pub fn measure(
    doc: &ExecutableDocument,
    operation: &OperationDefinition,
    variables: &Variables,
    limits: Limits,
) -> Result<Cost, Error> {
    let mut walk = Walk::new(doc, variables, limits, false);
    let root = if operation.ty == OperationType::Mutation {
        Root::Mutation
    } else {
        Root::Other
    };
    let complexity =
        walk.selection_set(&operation.selection_set.node, 1, Scope::Storefront, root)?;
    Ok(Cost {
        complexity,
        depth: walk.deepest,
        verifications: walk.verifications,
    })
}

/// Refuses a document whose whole expansion (every operation and every
/// fragment definition, spreads followed) is more work than the budget.
/// The library's validation walks all of it, used or not, before anything
/// else could refuse it; this bounds that walk.
pub fn check_expansion(doc: &ExecutableDocument, limits: Limits) -> Result<(), Error> {
    let variables = Variables::default();
    let mut walk = Walk::new(doc, &variables, limits, true);
    for (_, operation) in doc.operations.iter() {
        walk.selection_set(
            &operation.node.selection_set.node,
            1,
            Scope::Storefront,
            Root::Other,
        )?;
    }
    for (name, fragment) in &doc.fragments {
        walk.fragments.push(name);
        walk.selection_set(
            &fragment.node.selection_set.node,
            1,
            Scope::Storefront,
            Root::Other,
        )?;
        walk.fragments.pop();
    }
    Ok(())
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    /// Only counting work (`check_expansion`): depth, complexity and
    /// verifications belong to the operation that will run.
    expanding: bool,
    variables: &'a Variables,
    limits: Limits,
    /// Fields, spreads and inline fragments visited so far.
    spent: usize,
    deepest: usize,
    verifications: usize,
    /// The fragments being expanded, innermost last.
    fragments: Vec<&'a Name>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Storefront,
    Introspection,
}

/// Whether a selection set is the root of a mutation (where each
/// `verifyCheckout` is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Mutation,
    Other,
}

impl<'a> Walk<'a> {
    fn new(
        doc: &'a ExecutableDocument,
        variables: &'a Variables,
        limits: Limits,
        expanding: bool,
    ) -> Walk<'a> {
        Walk {
            doc,
            expanding,
            variables,
            limits,
            spent: 0,
            deepest: 0,
            verifications: 0,
            fragments: Vec::new(),
        }
    }

    /// The complexity of `set` at `depth`.
    fn selection_set(
        &mut self,
        set: &'a SelectionSet,
        depth: usize,
        scope: Scope,
        root: Root,
    ) -> Result<usize, Error> {
        let mut total = 0usize;
        for item in &set.items {
            self.charge()?;
            let cost = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    let scope = match name {
                        "__schema" | "__type" if !self.limits.introspection && !self.expanding => {
                            return Err(Error::new(
                                Kind::ValidationFailed,
                                "introspection is turned off on this server",
                            ));
                        }
                        "__schema" | "__type" => Scope::Introspection,
                        _ => scope,
                    };
                    self.check_depth(depth, scope)?;
                    if root == Root::Mutation && name == "verifyCheckout" && !self.expanding {
                        self.verifications += 1;
                        if self.verifications > self.limits.max_verifications {
                            return Err(Error::too_complex(format!(
                                "a request may verify at most {} checkout(s); send one \
                                 verifyCheckout per request",
                                self.limits.max_verifications
                            )));
                        }
                    }
                    let children = if field.selection_set.node.items.is_empty() {
                        0
                    } else {
                        self.selection_set(
                            &field.selection_set.node,
                            depth + 1,
                            scope,
                            Root::Other,
                        )?
                    };
                    let per_item = if name == "products" {
                        self.page_size(&field.arguments)
                    } else {
                        1
                    };
                    children.saturating_mul(per_item).saturating_add(1)
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.node.selection_set.node, depth, scope, root)?
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    // A cycle or an unknown fragment is a validation error,
                    // reported after this walk; it costs nothing here.
                    if self.fragments.contains(&name) {
                        continue;
                    }
                    let Some(fragment) = self.doc.fragments.get(name) else {
                        continue;
                    };
                    if self.fragments.len() >= self.limits.max_fragment_depth {
                        return Err(Error::too_complex(format!(
                            "fragment spreads nest more than {} deep",
                            self.limits.max_fragment_depth
                        )));
                    }
                    self.fragments.push(name);
                    let cost =
                        self.selection_set(&fragment.node.selection_set.node, depth, scope, root);
                    self.fragments.pop();
                    cost?
                }
            };
            total = total.saturating_add(cost);
            if !self.expanding {
                self.check_complexity(total)?;
            }
        }
        Ok(total)
    }

    /// One unit of work per selection visited, whatever it is.
    fn charge(&mut self) -> Result<(), Error> {
        self.spent += 1;
        if self.spent > self.limits.max_complexity {
            return Err(Error::too_complex(format!(
                "the query expands to more than {} fields and fragments",
                self.limits.max_complexity
            )));
        }
        Ok(())
    }

    fn check_complexity(&self, cost: usize) -> Result<(), Error> {
        if cost > self.limits.max_complexity {
            return Err(Error::too_complex(format!(
                "the query's complexity exceeds the limit of {} (each field counts, \
                 lists times their page size)",
                self.limits.max_complexity
            )));
        }
        Ok(())
    }

    fn check_depth(&mut self, depth: usize, scope: Scope) -> Result<(), Error> {
        if self.expanding {
            return Ok(());
        }
        let (limit, what) = match scope {
            Scope::Storefront => (self.limits.max_depth, "query"),
            Scope::Introspection => (self.limits.max_introspection_depth, "introspection query"),
        };
        if depth > limit {
            return Err(Error::too_complex(format!(
                "the {what} nests fields more than {limit} deep"
            )));
        }
        self.deepest = self.deepest.max(depth);
        Ok(())
    }

    /// The page size a `products` field asks for (`first`, a literal or a
    /// variable), as the resolver will clamp it.
    fn page_size(&self, arguments: &[(Positioned<Name>, Positioned<Value>)]) -> usize {
        let first = arguments
            .iter()
            .find(|(name, _)| name.node.as_str() == "first")
            .and_then(|(_, value)| match &value.node {
                Value::Number(n) => n.as_i64(),
                Value::Variable(v) => match self.variables.get(v) {
                    Some(ConstValue::Number(n)) => n.as_i64(),
                    _ => None,
                },
                _ => None,
            });
        super::page_size(first)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use async_graphql::parser::parse_query;
    use async_graphql::parser::types::DocumentOperations;

    const LIMITS: Limits = Limits {
        max_depth: 12,
        max_introspection_depth: 20,
        max_complexity: 5_000,
        max_fragment_depth: 10,
        max_verifications: 1,
        introspection: true,
    };

    fn cost(query: &str) -> Result<Cost, Error> {
        cost_with(query, LIMITS)
    }

    fn cost_with(query: &str, limits: Limits) -> Result<Cost, Error> {
        let doc = parse_query(query).expect("parses");
        let op = match &doc.operations {
            DocumentOperations::Single(op) => op.node.clone(),
            DocumentOperations::Multiple(ops) => ops.values().next().unwrap().node.clone(),
        };
        measure(&doc, &op, &Variables::default(), limits)
    }

    #[test]
    fn every_field_counts_lists_times_their_page() {
        assert_eq!(cost("{ __typename }").unwrap().complexity, 1);
        let page = cost("{ products(first: 10) { nodes { id name } } }").unwrap();
        // nodes(1 + 2) per item, times 10, plus the products field.
        assert_eq!(page.complexity, 31);
        assert_eq!(page.depth, 3);
    }

    /// `root`, then fragments F1..Fn each spreading the one before
    /// `spreads` times, over `F0 { base }`.
    pub(in crate::graphql) fn fragment_chain(
        root: &str,
        base: &str,
        n: usize,
        spreads: usize,
    ) -> String {
        let mut text = format!("{root}\nfragment F0 on Query {{ {base} }}\n");
        for i in 1..=n {
            let spread = format!("...F{} ", i - 1).repeat(spreads);
            text.push_str(&format!("fragment F{i} on Query {{ {spread}}}\n"));
        }
        text
    }

    #[test]
    fn a_doubling_fragment_chain_is_refused_within_the_budget() {
        let query = fragment_chain("query { ...F30 }", "__typename", 30, 2);
        let limits = Limits {
            max_fragment_depth: 64,
            ..LIMITS
        };
        // 2^30 expansions would never finish: the budget ends the walk.
        let refused = cost_with(&query, limits).unwrap_err();
        assert!(refused.message().contains("5000"), "{refused}");
        // With the default spread depth it stops even sooner.
        let refused = cost(&query).unwrap_err();
        assert!(refused.message().contains("fragment"), "{refused}");
    }

    #[test]
    fn spreads_without_fields_still_cost() {
        // Self-spreads are skipped (validation reports the cycle), but each
        // visit is charged, so 2^30 of them cannot run.
        let query = fragment_chain("query { ...F20 }", "...F0", 20, 2);
        let limits = Limits {
            max_fragment_depth: 64,
            ..LIMITS
        };
        assert!(cost_with(&query, limits).is_err());
    }

    #[test]
    fn introspection_has_its_own_depth_allowance() {
        let type_ref = format!("{}kind{}", "ofType { ".repeat(9), " }".repeat(9));
        let query = format!(
            "{{ __schema {{ types {{ fields {{ args {{ type {{ {type_ref} }} }} }} }} }} }}"
        );
        let c = cost(&query).unwrap();
        assert_eq!(c.depth, 15);
        let storefront = format!(
            "{{ categories {{ {} id {} }} }}",
            "parent { ".repeat(14),
            "}".repeat(14)
        );
        let refused = cost(&storefront).unwrap_err();
        assert!(refused.message().contains("12"), "{refused}");
    }

    #[test]
    fn verifications_are_counted_through_fragments() {
        let one = "mutation { verifyCheckout(input: {}) { ok } }";
        assert_eq!(cost(one).unwrap().verifications, 1);
        let two = "mutation { a: verifyCheckout(input: {}) { ok } ...M }
                   fragment M on Mutation { b: verifyCheckout(input: {}) { ok } }";
        let refused = cost(two).unwrap_err();
        assert!(refused.message().contains("verifyCheckout"), "{refused}");
    }
}
