//! What a GraphQL request asks, read without a GraphQL parser: the root
//! field of its query and the arguments in its `variables`.

use serde_json::Value;

use super::super::super::stats::Endpoint;
use super::nodes;

/// Most objects one connection page holds.
const MAX_FIRST: usize = 250;

/// What a query asks, from its root field and variables.
#[derive(Debug, PartialEq)]
pub enum Op {
    /// Variants by sku; `priced` when the query reads `contextualPricing`.
    VariantsBySku {
        skus: Vec<String>,
        priced: bool,
    },
    VariantsPage {
        first: usize,
        after: Option<String>,
    },
    Nodes(Vec<String>),
    Collections {
        first: usize,
        after: Option<String>,
    },
    CollectionProducts {
        collection: Identifier,
        first: usize,
        after: Option<String>,
    },
    InventoryItems(Vec<String>),
    Customer(Option<String>),
    Order(String),
}

#[derive(Debug, PartialEq)]
pub enum Identifier {
    Handle(String),
    Id(String),
}

impl Op {
    /// The protocol v1 route whose counters and faults it meets.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Op::VariantsBySku { priced: true, .. } => Endpoint::ErpPrices,
            Op::VariantsBySku { .. }
            | Op::VariantsPage { .. }
            | Op::Nodes(_)
            | Op::CollectionProducts { .. } => Endpoint::PimProducts,
            Op::Collections { .. } => Endpoint::PimCategories,
            Op::InventoryItems(_) => Endpoint::ErpInventory,
            Op::Customer(_) => Endpoint::CrmCustomers,
            Op::Order(_) => Endpoint::OmsOrders,
        }
    }
}

/// The first field of the query's selection: `query Q($a: X) { field(` →
/// `field` (an alias is skipped).
pub fn root_field(query: &str) -> Option<&str> {
    let rest = &query[query.find('{')? + 1..];
    let ident = |s: &str| -> Option<(usize, usize)> {
        let start = s.find(|c: char| !c.is_whitespace())?;
        let len = s[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len() - start);
        (len > 0).then_some((start, start + len))
    };
    let (start, end) = ident(rest)?;
    let after = rest[end..].trim_start();
    if let Some(aliased) = after.strip_prefix(':') {
        let (s, e) = ident(aliased)?;
        return Some(&aliased[s..e]);
    }
    Some(&rest[start..end])
}

/// The skus of a search query: `sku:A OR sku:"B C"`.
pub fn skus_of(search: &str) -> Result<Vec<String>, String> {
    let mut skus = Vec::new();
    let mut rest = search.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("OR ") {
            rest = after.trim_start();
            continue;
        }
        let term = rest
            .strip_prefix("sku:")
            .ok_or_else(|| format!("this simulator searches by sku only, not {rest:?}"))?;
        let (sku, after) = match term.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').ok_or("an unclosed quote")?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => term.split_at(term.find(' ').unwrap_or(term.len())),
        };
        if !sku.is_empty() && !skus.iter().any(|s| s == sku) {
            skus.push(sku.to_owned());
        }
        rest = after.trim_start();
    }
    Ok(skus)
}

/// `first` (required, 1..=250) and `after` of a connection.
fn paging(variables: &Value) -> Result<(usize, Option<String>), String> {
    let first = variables["first"]
        .as_u64()
        .ok_or("you must provide one of first or last")?;
    if first == 0 || first as usize > MAX_FIRST {
        return Err(format!("first must be between 1 and {MAX_FIRST}"));
    }
    let after = variables["after"].as_str().map(str::to_owned);
    Ok((first as usize, after))
}

/// Reads the operation a request asks for.
pub fn operation(query: &str, variables: &Value) -> Result<Op, (String, &'static str)> {
    let invalid = |m: String| (m, "BAD_REQUEST");
    let field = root_field(query).ok_or_else(|| invalid("the query has no field".into()))?;
    let text = |name: &str| variables[name].as_str().map(str::to_owned);
    Ok(match field {
        "productVariants" => match text("query") {
            Some(search) => Op::VariantsBySku {
                skus: skus_of(&search).map_err(invalid)?,
                priced: query.contains("contextualPricing"),
            },
            None => {
                let (first, after) = paging(variables).map_err(invalid)?;
                Op::VariantsPage { first, after }
            }
        },
        "nodes" => Op::Nodes(
            variables["ids"]
                .as_array()
                .ok_or_else(|| invalid("ids is required".into()))?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        "collections" => {
            let (first, after) = paging(variables).map_err(invalid)?;
            Op::Collections { first, after }
        }
        "collectionByIdentifier" => {
            let identifier = &variables["identifier"];
            let collection = match (identifier["handle"].as_str(), identifier["id"].as_str()) {
                (Some(handle), _) => Identifier::Handle(handle.to_owned()),
                (None, Some(id)) => Identifier::Id(id.to_owned()),
                _ => return Err(invalid("identifier needs a handle or an id".into())),
            };
            let (first, after) = paging(variables).map_err(invalid)?;
            Op::CollectionProducts {
                collection,
                first,
                after,
            }
        }
        "inventoryItems" => {
            let search = text("query").ok_or_else(|| invalid("query is required".into()))?;
            Op::InventoryItems(skus_of(&search).map_err(invalid)?)
        }
        "customerByIdentifier" => {
            let custom = &variables["identifier"]["customId"];
            let ours =
                custom["namespace"] == nodes::TOKEN_NAMESPACE && custom["key"] == nodes::TOKEN_KEY;
            Op::Customer(custom["value"].as_str().filter(|_| ours).map(str::to_owned))
        }
        "order" => Op::Order(text("id").ok_or_else(|| invalid("id is required".into()))?),
        other => {
            return Err((
                format!("Field '{other}' doesn't exist on type 'QueryRoot'"),
                "undefinedField",
            ));
        }
    })
}
