//! The storefront's GraphQL types. Each wraps a cached domain value and
//! resolves its related data (price, stock, categories) through the
//! request's loaders, so related reads batch.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Json, Object, Result, SimpleObject};

use super::scalars::{DateTime, Decimal};
use super::structured::{self, PriceRead};
use super::{Scope, products_page};
use crate::cache::{Found, Freshness as CacheFreshness, Reason};
use crate::catalog::PriceKey;
use crate::checkout::{Checkout, Claims};
use crate::domain::{self, AvailabilityStatus as Status};

/// A product with its content from the PIM.
#[derive(Clone)]
pub struct Product(pub Found<domain::Product>);

impl Product {
    /// The key of this product's price for the shopper, in `currency_code`
    /// or the storefront's default currency.
    fn price_key(&self, scope: &Scope, currency_code: Option<&str>) -> Result<PriceKey> {
        Ok(PriceKey {
            sku: self.0.sku.clone(),
            segment: scope.segment()?.to_string(),
            currency: scope.catalog.selling.currency(currency_code)?,
        })
    }
}

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn sku(&self) -> &str {
        &self.0.sku
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    async fn attributes(&self) -> Vec<Attribute> {
        self.0
            .attributes
            .iter()
            .map(|a| Attribute {
                name: a.name.clone(),
                value: a.value.clone(),
            })
            .collect()
    }

    async fn categories(&self, ctx: &Context<'_>) -> Result<Vec<Category>> {
        let all = ctx.data::<Scope>()?.categories().await?;
        Ok(self
            .0
            .category_ids
            .iter()
            .filter_map(|id| all.iter().find(|c| &c.id == id))
            .map(|c| Category(c.clone()))
            .collect())
    }

    /// The price for the shopper's segment, in `currencyCode` or the
    /// storefront's default currency. Null when the ERP has no price for it.
    async fn price(
        &self,
        ctx: &Context<'_>,
        currency_code: Option<String>,
    ) -> Result<Option<ProductPrice>> {
        let scope = ctx.data::<Scope>()?;
        let key = self.price_key(scope, currency_code.as_deref())?;
        let hit = scope.prices.load(key).await?;
        Ok(hit.found().map(|price| ProductPrice {
            freshness: price.freshness(scope.now),
            price,
        }))
    }

    /// Stock as the storefront shows it. Null when the ERP does not know
    /// the sku.
    async fn availability(&self, ctx: &Context<'_>) -> Result<Option<Availability>> {
        let scope = ctx.data::<Scope>()?;
        let hit = scope.stock.load(self.0.sku.clone()).await?;
        Ok(hit.found().map(|stock| {
            let status = stock.status(scope.catalog.selling.low_stock_threshold);
            Availability {
                status: status.into(),
                quantity: i32::try_from(stock.available).ok(),
                freshness: stock.freshness(scope.now).into(),
                schema_org: structured::schema_org(status).map(str::to_string),
            }
        }))
    }

    /// schema.org `Product` as JSON-LD, for the page's `<script
    /// type="application/ld+json">`: name, sku, and an `Offer` with the
    /// price in `currencyCode` (or the default currency), its
    /// `priceValidUntil`, and the schema.org availability. A price Moat
    /// cannot vouch for (past its hard TTL, or changed at its source and
    /// not yet refetched) is left out of the offer rather than published
    /// wrong.
    async fn structured_data(
        &self,
        ctx: &Context<'_>,
        currency_code: Option<String>,
    ) -> Result<Json<serde_json::Value>> {
        let scope = ctx.data::<Scope>()?;
        let key = self.price_key(scope, currency_code.as_deref())?;
        // Together, so they batch with the page's other prices and stock.
        let (price, stock) =
            tokio::join!(scope.prices.load(key), scope.stock.load(self.0.sku.clone()));
        let (price, stock) = (price?.found(), stock?.found());
        let hard_ttl = scope.catalog.prices.policy().hard_ttl;
        let read = price.as_ref().map(|p| {
            let freshness = p.freshness(scope.now);
            PriceRead {
                price: p,
                valid_until: freshness.as_of.plus(hard_ttl),
                freshness,
            }
        });
        let low = scope.catalog.selling.low_stock_threshold;
        Ok(Json(structured::product(
            &self.0,
            read,
            stock.map(|s| s.status(low)),
        )))
    }
}

#[derive(SimpleObject)]
pub struct Attribute {
    name: String,
    value: String,
}

/// A category of the catalog.
pub struct Category(pub domain::Category);

#[Object]
impl Category {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn parent(&self, ctx: &Context<'_>) -> Result<Option<Category>> {
        let Some(parent_id) = &self.0.parent_id else {
            return Ok(None);
        };
        let all = ctx.data::<Scope>()?.categories().await?;
        Ok(all
            .iter()
            .find(|c| &c.id == parent_id)
            .map(|c| Category(c.clone())))
    }

    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ProductConnection> {
        products_page(ctx, first, after, Some(self.0.id.clone())).await
    }
}

/// A price as shown to one shopper.
pub struct ProductPrice {
    price: Found<domain::Price>,
    freshness: CacheFreshness,
}

#[Object]
impl ProductPrice {
    async fn price(&self) -> Money {
        self.price.money().into()
    }

    async fn compare_at_price(&self) -> Option<Money> {
        self.price.compare_at_money().map(Money::from)
    }

    /// The price segment this price is for (`default` when anonymous).
    async fn segment(&self) -> &str {
        &self.price.segment
    }

    async fn freshness(&self) -> Freshness {
        self.freshness.into()
    }

    /// Moat's signed snapshot of this price (sku, segment, currency,
    /// amount, version, time). Send it back with the line to
    /// `verifyCheckout`, which tells a price Moat showed from one a client
    /// made up.
    async fn price_token(&self, ctx: &Context<'_>) -> Result<String> {
        let tokens = ctx.data::<Arc<Checkout>>()?.tokens();
        let scope = ctx.data::<Scope>()?;
        Ok(tokens.sign(&Claims {
            sku: self.price.sku.clone(),
            segment: self.price.segment.clone(),
            currency: self.price.currency,
            amount: self.price.amount,
            price_version: self.price.version,
            issued_at: scope.now,
        }))
    }
}

/// An amount of money: a decimal string and an ISO 4217 code.
#[derive(SimpleObject)]
pub struct Money {
    amount: Decimal,
    currency_code: String,
}

impl From<domain::Money> for Money {
    fn from(m: domain::Money) -> Money {
        Money {
            amount: Decimal(m.decimal()),
            currency_code: m.currency.code().to_string(),
        }
    }
}

#[derive(SimpleObject)]
pub struct Availability {
    status: AvailabilityStatus,
    /// Units on hand.
    quantity: Option<i32>,
    freshness: Freshness,
    /// The schema.org `ItemAvailability` for search engines
    /// (`https://schema.org/InStock`, `LimitedAvailability`, `OutOfStock`);
    /// null while the status is unknown.
    schema_org: Option<String>,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AvailabilityStatus {
    InStock,
    LowStock,
    OutOfStock,
    Unknown,
}

impl From<Status> for AvailabilityStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::InStock => AvailabilityStatus::InStock,
            Status::LowStock => AvailabilityStatus::LowStock,
            Status::OutOfStock => AvailabilityStatus::OutOfStock,
            Status::Unknown => AvailabilityStatus::Unknown,
        }
    }
}

/// How current a value is: when Moat last had it from the system of record,
/// how old that is, whether it is past its freshness window, and why.
#[derive(SimpleObject)]
pub struct Freshness {
    as_of: DateTime,
    age_seconds: i32,
    /// Not known to be current: see `reason`.
    stale: bool,
    reason: FreshnessReason,
}

/// Why a value is served as it is.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum FreshnessReason {
    /// Within its freshness window, and its source has announced no change.
    Fresh,
    /// Past its freshness window: served while Moat refreshes it.
    Expired,
    /// Its source announced a change; the new value has not landed yet.
    ChangedAtSource,
    /// Served because its source could not answer.
    SourceUnavailable,
}

impl From<Reason> for FreshnessReason {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Fresh => FreshnessReason::Fresh,
            Reason::Expired => FreshnessReason::Expired,
            Reason::ChangedAtSource => FreshnessReason::ChangedAtSource,
            Reason::SourceUnavailable => FreshnessReason::SourceUnavailable,
        }
    }
}

impl From<CacheFreshness> for Freshness {
    fn from(f: CacheFreshness) -> Freshness {
        Freshness {
            as_of: DateTime(f.as_of),
            age_seconds: i32::try_from(f.age.as_secs()).unwrap_or(i32::MAX),
            stale: f.stale,
            reason: f.reason.into(),
        }
    }
}

/// A page of products (Relay-style cursor pagination).
#[derive(SimpleObject)]
pub struct ProductConnection {
    pub edges: Vec<ProductEdge>,
    pub nodes: Vec<Product>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct ProductEdge {
    pub cursor: String,
    pub node: Product,
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}
