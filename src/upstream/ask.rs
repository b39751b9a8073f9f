//! What Moat asks a system of record for, whatever protocol it speaks:
//! protocol v1 renders an ask as its route (`GET /erp/v1/prices?…`); a
//! connector (`rest`) through the route its config gives it.

use super::path_segment;

/// A protocol v1 request: the endpoint's metric name, path and query.
pub(super) type V1 = (&'static str, String, Vec<(&'static str, String)>);
use super::rest::template::Values;

/// What Moat asks a system for.
#[derive(Debug, Clone, Copy)]
pub enum Ask<'a> {
    ProductsById(&'a [String]),
    ProductsBySku(&'a [String]),
    ProductPage {
        cursor: Option<&'a str>,
        limit: usize,
        category: Option<&'a str>,
    },
    Categories,
    Prices {
        skus: &'a [String],
        segment: &'a str,
        currency: &'a str,
    },
    Inventory(&'a [String]),
    /// Prices and stock together (protocol v1's `offers`).
    Offers {
        skus: &'a [String],
        segment: &'a str,
        currency: &'a str,
    },
    /// The customer a token belongs to (the token).
    Customer(&'a String),
    /// A customer by id (a verified JWT's `sub`).
    CustomerById(&'a String),
    Order(&'a String),
}

impl Ask<'_> {
    /// The route that answers it.
    pub fn route(&self) -> &'static str {
        match self {
            Ask::ProductsById(_) => "products",
            Ask::ProductsBySku(_) => "products_by_sku",
            Ask::ProductPage { category: None, .. } => "product_list",
            Ask::ProductPage {
                category: Some(_), ..
            } => "category_products",
            Ask::Categories => "categories",
            Ask::Prices { .. } => "prices",
            Ask::Inventory(_) => "inventory",
            Ask::Offers { .. } => "offers",
            Ask::Customer(_) => "customer",
            Ask::CustomerById(_) => "customer_by_id",
            Ask::Order(_) => "order",
        }
    }

    /// The field of a protocol v1 item that holds the key asked for, for
    /// reads by key.
    pub(super) fn key_field(&self) -> Option<&'static str> {
        match self {
            Ask::ProductsById(_) => Some("id"),
            Ask::ProductsBySku(_) | Ask::Prices { .. } | Ask::Inventory(_) | Ask::Offers { .. } => {
                Some("sku")
            }
            _ => None,
        }
    }

    /// Whether the answer is one item (or none), not a list.
    pub(super) fn single(&self) -> bool {
        matches!(
            self,
            Ask::Customer(_) | Ask::CustomerById(_) | Ask::Order(_)
        )
    }

    pub(super) fn values(&self) -> Values<'_> {
        let keys: &[String] = match self {
            Ask::ProductsById(k) | Ask::ProductsBySku(k) | Ask::Inventory(k) => k,
            Ask::Prices { skus, .. } | Ask::Offers { skus, .. } => skus,
            Ask::Customer(key) | Ask::CustomerById(key) | Ask::Order(key) => {
                std::slice::from_ref(*key)
            }
            _ => &[],
        };
        let mut values = Values {
            keys,
            ..Values::default()
        };
        match *self {
            Ask::ProductPage {
                cursor,
                limit,
                category,
            } => {
                values.cursor = cursor;
                values.limit = Some(limit);
                values.category = category;
                values.page = Some(cursor.and_then(|c| c.parse().ok()).unwrap_or(1));
            }
            Ask::Prices {
                segment, currency, ..
            }
            | Ask::Offers {
                segment, currency, ..
            } => {
                values.segment = Some(segment);
                values.currency = Some(currency);
            }
            _ => {}
        }
        values
    }

    /// The protocol v1 request: the metric's endpoint name, the path and
    /// the query. `None` when the key cannot be a path segment (no record
    /// has it).
    pub(super) fn v1(&self) -> Option<V1> {
        Some(match *self {
            Ask::ProductsById(ids) => (
                "products",
                "/pim/v1/products".into(),
                vec![("ids", ids.join(","))],
            ),
            Ask::ProductsBySku(skus) => (
                "products",
                "/pim/v1/products".into(),
                vec![("skus", skus.join(","))],
            ),
            Ask::ProductPage {
                cursor,
                limit,
                category,
            } => {
                let mut query = vec![("limit", limit.to_string())];
                if let Some(cursor) = cursor {
                    query.push(("cursor", cursor.to_string()));
                }
                if let Some(category) = category {
                    query.push(("categoryId", category.to_string()));
                }
                ("products", "/pim/v1/products".into(), query)
            }
            Ask::Categories => ("categories", "/pim/v1/categories".into(), Vec::new()),
            Ask::Prices {
                skus,
                segment,
                currency,
            } => (
                "prices",
                "/erp/v1/prices".into(),
                vec![
                    ("skus", skus.join(",")),
                    ("segment", segment.to_string()),
                    ("currency", currency.to_string()),
                ],
            ),
            Ask::Inventory(skus) => (
                "inventory",
                "/erp/v1/inventory".into(),
                vec![("skus", skus.join(","))],
            ),
            Ask::Offers {
                skus,
                segment,
                currency,
            } => (
                "offers",
                "/erp/v1/offers".into(),
                vec![
                    ("skus", skus.join(",")),
                    ("segment", segment.to_string()),
                    ("currency", currency.to_string()),
                ],
            ),
            Ask::Customer(token) => (
                "customers",
                format!("/crm/v1/customers/by-token/{}", path_segment(token)?),
                Vec::new(),
            ),
            Ask::CustomerById(id) => (
                "customers",
                format!("/crm/v1/customers/{}", path_segment(id)?),
                Vec::new(),
            ),
            Ask::Order(id) => (
                "orders",
                format!("/oms/v1/orders/{}", path_segment(id)?),
                Vec::new(),
            ),
        })
    }
}
