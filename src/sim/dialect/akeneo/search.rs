//! The `search` query parameter of product lists: JSON, a property to a
//! list of `{operator, value}` criteria, all of which a product must meet.
//! The simulator knows the criteria a storefront connector needs: products
//! by `uuid` or by identifier (`IN`, `=`), by `categories` (`IN`), and
//! `enabled` (every seeded product is); anything else is Akeneo's 422.

use serde_json::Value;

use super::super::super::catalog::Catalog;
use super::shape::{self, IDENTIFIER};

/// Most values one `IN` may list (the identifier filter's documented cap).
pub const MAX_IN: usize = 100;

/// What a search keeps, each `None` when it does not filter on it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Search {
    pub uuids: Option<Vec<String>>,
    pub skus: Option<Vec<String>>,
    pub categories: Option<Vec<String>>,
}

/// Why a search is refused: a 400 (not JSON) or a 422 (not understood).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub code: u16,
    pub message: String,
}

fn unprocessable(message: String) -> Refused {
    Refused { code: 422, message }
}

pub fn parse(search: &str) -> Result<Search, Refused> {
    let value: Value = serde_json::from_str(search).map_err(|_| Refused {
        code: 400,
        message: "Search query parameter should be valid JSON.".into(),
    })?;
    let Value::Object(properties) = value else {
        return Err(unprocessable(
            "Search query parameter should be an object.".into(),
        ));
    };
    let mut found = Search::default();
    for (property, criteria) in &properties {
        let Some(criteria) = criteria.as_array() else {
            return Err(unprocessable(format!(
                "Structure of filter \"{property}\" should respect this structure: \
                 {{\"{property}\":[{{\"operator\": \"my_operator\", \"value\": \"my_value\"}}]}}"
            )));
        };
        for criterion in criteria {
            let operator = criterion
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let value = criterion.get("value");
            let unsupported = || {
                unprocessable(format!(
                    "Filter on property \"{property}\" is not supported or does not support operator \"{operator}\""
                ))
            };
            let target = match property.as_str() {
                "uuid" => &mut found.uuids,
                p if p == IDENTIFIER || p == "identifier" => &mut found.skus,
                "categories" => &mut found.categories,
                "enabled" if operator == "=" && value == Some(&Value::Bool(true)) => continue,
                _ => return Err(unsupported()),
            };
            let values = match (operator, value) {
                ("IN", Some(Value::Array(list))) => list
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| {
                        unprocessable(format!(
                            "Property \"{property}\" expects an array of strings as data."
                        ))
                    })?,
                ("=", Some(Value::String(one))) if property != "categories" => vec![one.clone()],
                _ => return Err(unsupported()),
            };
            if values.len() > MAX_IN {
                return Err(unprocessable(format!(
                    "Property \"{property}\" accepts at most {MAX_IN} values with the IN operator."
                )));
            }
            // Two criteria on one property must both hold.
            *target = Some(match target.take() {
                Some(before) => before.into_iter().filter(|v| values.contains(v)).collect(),
                None => values,
            });
        }
    }
    Ok(found)
}

/// The products a search keeps, in product order (Akeneo sorts by primary
/// key); a page is a window on it.
pub enum Set<'a> {
    All(usize),
    Members(&'a [u32]),
    Picked(Vec<usize>),
}

impl Set<'_> {
    pub fn len(&self) -> usize {
        match self {
            Set::All(n) => *n,
            Set::Members(m) => m.len(),
            Set::Picked(p) => p.len(),
        }
    }

    pub fn at(&self, position: usize) -> usize {
        match self {
            Set::All(_) => position,
            Set::Members(m) => m[position] as usize,
            Set::Picked(p) => p[position],
        }
    }

    /// The position of the first product at or after `index`.
    pub fn first_at(&self, index: usize) -> usize {
        match self {
            Set::All(n) => index.min(*n),
            Set::Members(m) => m.partition_point(|&x| (x as usize) < index),
            Set::Picked(p) => p.partition_point(|&x| x < index),
        }
    }
}

/// What `search` keeps of the catalog.
pub fn select<'a>(catalog: &'a Catalog, search: &Search) -> Set<'a> {
    let category = |code: &str| catalog.categories.iter().position(|c| c.id == code);
    let in_categories = |index: usize| {
        search.categories.as_ref().is_none_or(|codes| {
            catalog.products[index]
                .category_ids
                .iter()
                .any(|c| codes.iter().any(|code| code == c))
        })
    };
    if search.uuids.is_some() || search.skus.is_some() {
        let mut picked: Vec<usize> = match (&search.uuids, &search.skus) {
            (Some(uuids), _) => uuids
                .iter()
                .filter_map(|u| shape::index_of(catalog, u))
                .collect(),
            (None, Some(skus)) => skus
                .iter()
                .filter_map(|s| catalog.product_by_sku(s))
                .collect(),
            (None, None) => Vec::new(),
        };
        if let (Some(_), Some(skus)) = (&search.uuids, &search.skus) {
            picked.retain(|&i| skus.contains(&catalog.products[i].sku));
        }
        picked.retain(|&i| in_categories(i));
        picked.sort_unstable();
        picked.dedup();
        return Set::Picked(picked);
    }
    match search.categories.as_deref() {
        None => Set::All(catalog.products.len()),
        Some([one]) => match category(one) {
            Some(c) => Set::Members(&catalog.category_members[c]),
            None => Set::Picked(Vec::new()),
        },
        Some(codes) => {
            let mut picked: Vec<usize> = codes
                .iter()
                .filter_map(|code| category(code))
                .flat_map(|c| catalog.category_members[c].iter().map(|&m| m as usize))
                .collect();
            picked.sort_unstable();
            picked.dedup();
            Set::Picked(picked)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_uuids_and_categories_are_read_and_the_rest_refused() {
        let s = parse(r#"{"sku":[{"operator":"IN","value":["A","B"]}],"enabled":[{"operator":"=","value":true}]}"#).unwrap();
        assert_eq!(s.skus, Some(vec!["A".into(), "B".into()]));
        let s = parse(r#"{"uuid":[{"operator":"IN","value":["u"]}],"categories":[{"operator":"IN","value":["c"]}]}"#).unwrap();
        assert_eq!(
            (s.uuids.unwrap(), s.categories.unwrap()),
            (vec!["u".into()], vec!["c".into()])
        );
        assert_eq!(parse("{nope").unwrap_err().code, 400);
        let e = parse(r#"{"family":[{"operator":"IN","value":["x"]}]}"#).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("\"family\""), "{e:?}");
        let many: Vec<String> = (0..=MAX_IN).map(|i| format!("\"S{i}\"")).collect();
        let e = parse(&format!(
            r#"{{"sku":[{{"operator":"IN","value":[{}]}}]}}"#,
            many.join(",")
        ))
        .unwrap_err();
        assert_eq!(e.code, 422);
    }
}
