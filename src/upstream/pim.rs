//! PIM: product content and categories. Wire types and their checks.

use serde::Deserialize;

use super::contract::{self, Wire, non_empty, timestamp};
use super::{Ask, Client, Priority, in_chunks};
use crate::domain::{Attribute, Category, Product, ProductPage};
use crate::error::Error;
use crate::vocab::CacheMap;

/// The PIM protocol: products from the owner of products, categories from
/// the owner of categories (usually one PIM, but config may split them).
#[derive(Clone)]
pub struct Pim {
    products: Client,
    categories: Client,
}

/// Which product field a batch lookup goes by.
#[derive(Debug, Clone, Copy)]
pub enum ProductKey {
    Id,
    Sku,
}

impl Pim {
    pub fn new(products: Client, categories: Client) -> Pim {
        Pim {
            products,
            categories,
        }
    }

    /// `GET /pim/v1/products?ids=` (or `?skus=`): the products found, keyed
    /// by the id (or sku) asked for.
    pub async fn products(
        &self,
        by: ProductKey,
        keys: Vec<String>,
        priority: Priority,
    ) -> Result<CacheMap<String, Result<Product, Error>>, Error> {
        let (route, field) = match by {
            ProductKey::Id => ("products", "id"),
            ProductKey::Sku => ("products_by_sku", "sku"),
        };
        in_chunks(keys, self.products.max_batch(route), |chunk| async move {
            let ask = match by {
                ProductKey::Id => Ask::ProductsById(&chunk),
                ProductKey::Sku => Ask::ProductsBySku(&chunk),
            };
            let reply = self.products.read(ask, priority).await?;
            let checked = contract::parse_list::<WireProduct, _>(
                self.products.boundary(),
                &reply.body,
                field,
                |p: &Product| match by {
                    ProductKey::Id => p.id.clone(),
                    ProductKey::Sku => p.sku.clone(),
                },
                str::to_string,
            )?;
            Ok(checked.into_map())
        })
        .await
    }

    /// One page of the catalog, optionally within a category. The products
    /// come back whole, so the caller can cache them as well as the page.
    pub async fn product_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        category_id: Option<&str>,
        priority: Priority,
    ) -> Result<(ProductPage, Vec<Product>), Error> {
        let ask = Ask::ProductPage {
            cursor,
            limit,
            category: category_id,
        };
        let reply = self.products.read(ask, priority).await?;
        let checked = contract::parse_list::<WireProduct, _>(
            self.products.boundary(),
            &reply.body,
            "id",
            |p: &Product| p.id.clone(),
            str::to_string,
        )?;
        // A page with a broken item cannot be served in part: the listing
        // would silently skip a product.
        let next_cursor = checked.next_cursor;
        let products = checked
            .items
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Result<Vec<_>, _>>()?;
        let page = ProductPage {
            ids: products.iter().map(|p| p.id.clone()).collect(),
            next_cursor,
        };
        Ok((page, products))
    }

    /// `GET /pim/v1/categories`: the whole tree, which is small.
    pub async fn categories(&self, priority: Priority) -> Result<Vec<Category>, Error> {
        let reply = self.categories.read(Ask::Categories, priority).await?;
        let checked = contract::parse_list::<WireCategory, _>(
            self.categories.boundary(),
            &reply.body,
            "id",
            |c: &Category| c.id.clone(),
            str::to_string,
        )?;
        checked.items.into_iter().map(|(_, c)| c).collect()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireProduct {
    id: String,
    sku: String,
    name: String,
    description: String,
    attributes: Vec<WireAttribute>,
    category_ids: Vec<String>,
    version: u64,
    updated_at: String,
}

#[derive(Deserialize)]
pub(super) struct WireAttribute {
    name: String,
    value: String,
}

impl Wire for WireProduct {
    type Domain = Product;
    const ENTITY: &'static str = "product";

    fn check(self) -> Result<Product, String> {
        Ok(Product {
            id: non_empty("id", self.id)?,
            sku: non_empty("sku", self.sku)?,
            name: non_empty("name", self.name)?,
            description: self.description,
            attributes: self
                .attributes
                .into_iter()
                .map(|a| {
                    Ok(Attribute {
                        // A storefront shows it as a label; an empty one
                        // is a defect at the source, not a blank to render.
                        name: non_empty("attribute name", a.name)?,
                        value: a.value,
                    })
                })
                .collect::<Result<_, String>>()?,
            category_ids: self.category_ids,
            version: self.version,
            updated_at: timestamp("updatedAt", &self.updated_at)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireCategory {
    id: String,
    name: String,
    /// Absent or null: a root category (producers that skip nulls omit it).
    #[serde(default)]
    parent_id: Option<String>,
    version: u64,
    updated_at: String,
}

impl Wire for WireCategory {
    type Domain = Category;
    const ENTITY: &'static str = "category";

    fn check(self) -> Result<Category, String> {
        // Checked for the contract only: the timestamp is not kept.
        timestamp("updatedAt", &self.updated_at)?;
        Ok(Category {
            id: non_empty("id", self.id)?,
            name: non_empty("name", self.name)?,
            parent_id: self.parent_id,
            version: self.version,
        })
    }
}
