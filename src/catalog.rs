//! The storefront read model: which entities Moat caches, under which keys,
//! and how each cache fills itself from the systems of record. GraphQL
//! resolvers read through here; nothing else decides what a key means.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};
use serde::Serialize;

use crate::cache::key::{join, split};
use crate::cache::{AnyTier, Batch, Fetch, Key, Tier, Tiers};
use crate::config::Config;
use crate::domain::{Category, Currency, Price, Product, ProductPage, Stock, Timestamp};
use crate::error::Error;
use crate::upstream::pim::ProductKey;
use crate::upstream::{Erp, Pim, Upstreams};
use crate::vocab::{CacheMap, Entity, Priority};

/// A price is cached per sku, segment and currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PriceKey {
    pub sku: String,
    pub segment: String,
    pub currency: Currency,
}

/// `sku:segment:currency`; purged by sku.
impl Key for PriceKey {
    const COMPOSITE: bool = true;

    fn encode(&self) -> String {
        join(&[&self.sku, &self.segment, self.currency.code()])
    }

    fn decode(text: &str) -> Option<PriceKey> {
        let mut parts = split(text, 3)?.into_iter();
        let (sku, segment, currency) = (parts.next()?, parts.next()?, parts.next()?);
        Some(PriceKey {
            sku,
            segment,
            currency: Currency::from_code(&currency)?,
        })
    }

    fn id(&self) -> &str {
        &self.sku
    }
}

/// A listing page is cached per PIM cursor, size and category.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PageKey {
    pub cursor: Option<String>,
    pub limit: usize,
    pub category_id: Option<String>,
}

/// `limit:category:cursor` (`-` for none); purged only as a whole.
impl Key for PageKey {
    const COMPOSITE: bool = true;

    fn encode(&self) -> String {
        let limit = self.limit.to_string();
        join(&[
            &limit,
            self.category_id.as_deref().unwrap_or("-"),
            self.cursor.as_deref().unwrap_or("-"),
        ])
    }

    fn decode(text: &str) -> Option<PageKey> {
        let mut parts = split(text, 3)?.into_iter();
        let limit = parts.next()?.parse().ok()?;
        let some = |s: String| Some(s).filter(|s| s != "-");
        let category_id = some(parts.next()?);
        let cursor = some(parts.next()?);
        Some(PageKey {
            cursor,
            limit,
            category_id,
        })
    }

    fn id(&self) -> &str {
        self.category_id.as_deref().unwrap_or("-")
    }
}

/// What the storefront sells and shows, from config.
#[derive(Debug, Clone)]
pub struct Selling {
    pub default_currency: Currency,
    pub currencies: Vec<Currency>,
    pub default_segment: String,
    pub low_stock_threshold: u32,
}

impl Selling {
    pub fn from_config(config: &Config) -> Selling {
        let cat = &config.catalog;
        // validate() has checked every code, so unknown ones cannot occur.
        let currencies: Vec<Currency> = cat
            .currencies
            .iter()
            .filter_map(|c| Currency::from_code(c))
            .collect();
        Selling {
            default_currency: Currency::from_code(&cat.default_currency).unwrap_or(Currency::EUR),
            currencies,
            default_segment: cat.default_segment.clone(),
            low_stock_threshold: cat.low_stock_threshold,
        }
    }

    /// The currency a query asked for, if the storefront sells in it.
    pub fn currency(&self, code: Option<&str>) -> Result<Currency, Error> {
        let Some(code) = code else {
            return Ok(self.default_currency);
        };
        Currency::from_code(code)
            .filter(|c| self.currencies.contains(c))
            .ok_or_else(|| {
                let offered: Vec<&str> = self.currencies.iter().map(|c| c.code()).collect();
                Error::bad_input(
                    "currencyCode",
                    format!("{code:?} is not offered; use one of {}", offered.join(", ")),
                )
            })
    }
}

/// Every cache of the read model, and what the storefront sells.
pub struct Catalog {
    pub products: Arc<Tier<String, Product>>,
    /// sku → product id, so `product(sku:)` shares the product cache.
    pub product_ids: Arc<Tier<String, String>>,
    pub pages: Arc<Tier<PageKey, ProductPage>>,
    pub categories: Arc<Tier<(), Vec<Category>>>,
    pub prices: Arc<Tier<PriceKey, Price>>,
    pub stock: Arc<Tier<String, Stock>>,
    pub selling: Selling,
    /// Asked whether stock comes with the prices.
    erp: Erp,
}

impl Catalog {
    pub fn new(config: &Config, upstreams: &Upstreams, tiers: &Tiers) -> Catalog {
        let (pim, erp) = (&upstreams.pim, &upstreams.erp);
        let products = tiers.build(Entity::Product, ProductsById(pim.clone()));
        let by_sku = ProductIdsBySku {
            pim: pim.clone(),
            products: products.clone(),
        };
        let pages = Pages {
            pim: pim.clone(),
            products: products.clone(),
        };
        let stock = tiers.build(Entity::Inventory, Inventory(erp.clone()));
        let prices = Prices {
            erp: erp.clone(),
            stock: stock.clone(),
        };
        Catalog {
            product_ids: tiers.build(Entity::ProductSku, by_sku),
            pages: tiers.build(Entity::ProductPage, pages),
            categories: tiers.build(Entity::Category, Categories(pim.clone())),
            prices: tiers.build(Entity::Price, prices),
            stock,
            products,
            selling: Selling::from_config(config),
            erp: erp.clone(),
        }
    }

    /// Whether fetching prices brings the skus' stock too (`offers`): a
    /// request's stock then waits for its prices rather than asking apart.
    pub fn stock_comes_with_prices(&self) -> bool {
        self.erp.offers_enabled()
    }

    /// The registry: every tier of the catalog, each named once.
    pub fn tiers(&self) -> [Arc<dyn AnyTier>; 6] {
        [
            self.products.clone(),
            self.product_ids.clone(),
            self.pages.clone(),
            self.categories.clone(),
            self.prices.clone(),
            self.stock.clone(),
        ]
    }
}

struct ProductsById(Pim);

impl Fetch<String, Product> for ProductsById {
    fn fetch(
        &self,
        ids: Vec<String>,
        priority: Priority,
    ) -> BoxFuture<'static, Batch<String, Product>> {
        let pim = self.0.clone();
        async move { pim.products(ProductKey::Id, ids, priority).await }.boxed()
    }
}

/// Looks products up by sku and files them in the product cache too, so the
/// id lookup that follows is an L1 hit.
struct ProductIdsBySku {
    pim: Pim,
    products: Arc<Tier<String, Product>>,
}

impl Fetch<String, String> for ProductIdsBySku {
    fn fetch(
        &self,
        skus: Vec<String>,
        priority: Priority,
    ) -> BoxFuture<'static, Batch<String, String>> {
        let pim = self.pim.clone();
        let products = self.products.clone();
        async move {
            let found = pim.products(ProductKey::Sku, skus, priority).await?;
            let mut ids = CacheMap::with_capacity_and_hasher(found.len(), Default::default());
            let mut fills = Vec::with_capacity(found.len());
            for (sku, product) in found {
                ids.insert(
                    sku,
                    product.map(|p| {
                        let id = p.id.clone();
                        fills.push((id.clone(), Some(p)));
                        id
                    }),
                );
            }
            products.insert_many(fills, Timestamp::now()).await;
            Ok(ids)
        }
        .boxed()
    }
}

/// Listing pages; the products on them are filed in the product cache.
struct Pages {
    pim: Pim,
    products: Arc<Tier<String, Product>>,
}

impl Fetch<PageKey, ProductPage> for Pages {
    fn fetch(
        &self,
        keys: Vec<PageKey>,
        priority: Priority,
    ) -> BoxFuture<'static, Batch<PageKey, ProductPage>> {
        let pim = self.pim.clone();
        let products = self.products.clone();
        async move {
            let pages = join_all(keys.into_iter().map(|key| {
                let pim = pim.clone();
                async move {
                    let page = pim
                        .product_page(
                            key.cursor.as_deref(),
                            key.limit,
                            key.category_id.as_deref(),
                            priority,
                        )
                        .await;
                    (key, page)
                }
            }))
            .await;
            let mut out = CacheMap::default();
            let mut fills = Vec::new();
            for (key, page) in pages {
                let page = page.map(|(page, items)| {
                    fills.extend(items.into_iter().map(|p| (p.id.clone(), Some(p))));
                    page
                });
                out.insert(key, page);
            }
            products.insert_many(fills, Timestamp::now()).await;
            Ok(out)
        }
        .boxed()
    }
}

struct Categories(Pim);

impl Fetch<(), Vec<Category>> for Categories {
    fn fetch(
        &self,
        _: Vec<()>,
        priority: Priority,
    ) -> BoxFuture<'static, Batch<(), Vec<Category>>> {
        let pim = self.0.clone();
        async move {
            let all = pim.categories(priority).await?;
            Ok([((), Ok(all))].into_iter().collect())
        }
        .boxed()
    }
}

/// Prices: one ERP call per (segment, currency) in the batch, since the
/// protocol asks for one of each per call. With `offers`, each call brings
/// the skus' stock too, filed in the stock cache before the prices land,
/// so a page's availability (which waits for its prices then) is an L1
/// hit: one round trip where there were two.
struct Prices {
    erp: Erp,
    stock: Arc<Tier<String, Stock>>,
}

impl Fetch<PriceKey, Price> for Prices {
    fn fetch(
        &self,
        keys: Vec<PriceKey>,
        priority: Priority,
    ) -> BoxFuture<'static, Batch<PriceKey, Price>> {
        let erp = self.erp.clone();
        let stock = self.stock.clone();
        async move {
            let mut groups: HashMap<(String, Currency), Vec<String>> = HashMap::new();
            for key in keys {
                groups
                    .entry((key.segment, key.currency))
                    .or_default()
                    .push(key.sku);
            }
            let calls = groups.into_iter().map(|((segment, currency), skus)| {
                let erp = erp.clone();
                let stock = stock.clone();
                async move {
                    let found = if erp.offers_enabled() {
                        offers(&erp, &stock, skus.clone(), &segment, currency, priority).await
                    } else {
                        erp.prices(skus.clone(), &segment, currency, priority).await
                    };
                    (segment, currency, skus, found)
                }
                // Boxed: an upstream call is a large future, which joining
                // would otherwise move whole, twice.
                .boxed()
            });
            let mut out = CacheMap::default();
            let mut failure = None;
            let mut any_ok = false;
            for (segment, currency, skus, found) in join_all(calls).await {
                let key = |sku: String| PriceKey {
                    sku,
                    segment: segment.clone(),
                    currency,
                };
                match found {
                    Ok(found) => {
                        any_ok = true;
                        out.extend(found.into_iter().map(|(sku, p)| (key(sku), p)));
                    }
                    Err(e) => {
                        out.extend(skus.into_iter().map(|sku| (key(sku), Err(e.clone()))));
                        failure = Some(e);
                    }
                }
            }
            match failure {
                Some(e) if !any_ok => Err(e),
                _ => Ok(out),
            }
        }
        .boxed()
    }
}

/// Prices through `offers`, the stock that came with them filed first.
async fn offers(
    erp: &Erp,
    stock: &Tier<String, Stock>,
    skus: Vec<String>,
    segment: &str,
    currency: Currency,
    priority: Priority,
) -> Result<CacheMap<String, Result<Price, Error>>, Error> {
    let found = erp.offers(skus, segment, currency, priority).await?;
    let mut prices = CacheMap::with_capacity_and_hasher(found.len(), Default::default());
    let mut levels = Vec::with_capacity(found.len());
    for (sku, offer) in found {
        match offer {
            Ok(offer) => {
                if let Some(Ok(level)) = offer.stock {
                    levels.push((sku.clone(), level));
                }
                if let Some(price) = offer.price {
                    prices.insert(sku, price);
                }
            }
            Err(e) => {
                prices.insert(sku, Err(e));
            }
        }
    }
    stock.insert_fetched(levels, Timestamp::now()).await;
    Ok(prices)
}

struct Inventory(Erp);

impl Fetch<String, Stock> for Inventory {
    fn fetch(
        &self,
        skus: Vec<String>,
        priority: Priority,
    ) -> BoxFuture<'static, Batch<String, Stock>> {
        let erp = self.0.clone();
        async move { erp.inventory(skus, priority).await }.boxed()
    }
}
