//! Applying an event to the caches, through the same invalidation path as
//! purges and checkout repairs:
//!
//! - a *fat* event's item is written through L1 and L2, as of the event's
//!   time, and the other replicas drop their L1 copy and read it from L2;
//! - a *thin* event's entity is refetched at event priority (one upstream
//!   call for the fleet) and written the same way; where the event does
//!   not name one cache key (a sku's prices in every segment, an order)
//!   the entries are invalidated everywhere and refetched when next read.
//!
//! Either way an older version than the one held or seen is `Stale` and
//! changes nothing.

use std::sync::Arc;

use super::envelope::{EntityRef, Event, EventType};
use super::ledger::{Advance, Ledger};
use crate::cache::{Invalidator, Key, Target, Tier, Value};
use crate::catalog::{Catalog, PriceKey};
use crate::customers::{Customers, OrderAccess, OrderKey};
use crate::domain::{Currency, Timestamp, Versioned};
use crate::error::Error;
use crate::upstream::Item;
use crate::vocab::{Entity, Priority};

/// What applying found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Not newer than what is held or was seen: nothing changed.
    Stale,
}

pub struct Applier {
    pub catalog: Arc<Catalog>,
    pub customers: Arc<Customers>,
    pub invalidator: Arc<Invalidator>,
}

impl Applier {
    /// Applies `event` once; `Err` when it cannot be applied now (a
    /// refetch failed), which the caller may retry.
    pub async fn apply(&self, event: &Event, ledger: &Ledger) -> Result<Applied, Error> {
        let at = event.occurred_at;
        match (&event.item, event.kind) {
            (_, EventType::ProductDeleted) => self.product_deleted(event, ledger).await,
            (Some(Item::Price(price)), _) => {
                let key = PriceKey {
                    sku: price.sku.clone(),
                    segment: price.segment.clone(),
                    currency: price.currency,
                };
                let tier = &self.catalog.prices;
                self.write(
                    tier,
                    Entity::Price,
                    key,
                    price.clone(),
                    price.version,
                    at,
                    ledger,
                )
                .await
            }
            (Some(Item::Stock(stock)), _) => {
                let tier = &self.catalog.stock;
                let key = stock.sku.clone();
                self.write(
                    tier,
                    Entity::Inventory,
                    key,
                    stock.clone(),
                    stock.version,
                    at,
                    ledger,
                )
                .await
            }
            (Some(Item::Product(product)), _) => {
                let held = self
                    .catalog
                    .products
                    .peek(std::slice::from_ref(&product.id))
                    .await;
                let moved = held
                    .values()
                    .filter_map(|e| e.value.as_ref())
                    .any(|p| p.category_ids != product.category_ids);
                let tier = &self.catalog.products;
                let (id, version) = (product.id.clone(), product.version);
                let applied = self
                    .write(
                        tier,
                        Entity::Product,
                        id,
                        product.clone(),
                        version,
                        at,
                        ledger,
                    )
                    .await?;
                if applied == Applied::Applied {
                    self.after_product(&product.id, &product.sku, moved, at)
                        .await?;
                }
                Ok(applied)
            }
            (Some(Item::Customer(customer)), _) => {
                self.customer(&customer.id, Some(customer.version), at, ledger)
                    .await
            }
            (Some(Item::Order(order)), _) => {
                let key = OrderKey {
                    order_id: order.id.clone(),
                    customer_id: order.customer_id.clone(),
                };
                if !self
                    .newer(
                        &version_key(Entity::Order, &order.id),
                        order.version,
                        ledger,
                    )
                    .await
                {
                    return Ok(Applied::Stale);
                }
                // Other customers' entries of this order say "not yours";
                // they stay true, but drop them all with the owner's.
                self.invalidator
                    .invalidate(Entity::Order, Target::Ids(vec![order.id.clone()]), Some(at))
                    .await?;
                let access = OrderAccess::Owned(order.clone());
                let tier = &self.customers.orders;
                tier.insert_many(vec![(key.clone(), Some(access))], at)
                    .await;
                self.invalidator
                    .refreshed(Entity::Order, Target::Keys(vec![key.encode()]), Some(at))
                    .await?;
                Ok(Applied::Applied)
            }
            (None, _) => self.thin(event, ledger).await,
        }
    }

    /// A fat item: written through L1 and L2 unless something as new is
    /// held or was seen, then announced to the other replicas.
    #[allow(clippy::too_many_arguments)]
    async fn write<K: Key, V: Value + Versioned>(
        &self,
        tier: &Arc<Tier<K, V>>,
        entity: Entity,
        key: K,
        value: V,
        version: u64,
        at: Timestamp,
        ledger: &Ledger,
    ) -> Result<Applied, Error> {
        let held = tier.peek(std::slice::from_ref(&key)).await;
        let held_version = held
            .values()
            .filter_map(|e| e.value.as_ref())
            .map(Versioned::version)
            .max();
        if held_version.is_some_and(|v| v >= version)
            || !self
                .newer(&version_key(entity, &key.encode()), version, ledger)
                .await
        {
            return Ok(Applied::Stale);
        }
        tier.insert_many(vec![(key.clone(), Some(value))], at).await;
        self.invalidator
            .refreshed(entity, Target::Keys(vec![key.encode()]), Some(at))
            .await?;
        Ok(Applied::Applied)
    }

    /// A thin event: refetch what it names (one key), else invalidate.
    async fn thin(&self, event: &Event, ledger: &Ledger) -> Result<Applied, Error> {
        let (Some(entity), Some(version)) = (&event.entity, event.version) else {
            return Err(Error::internal("a thin event without entity and version"));
        };
        let at = event.occurred_at;
        match event.kind {
            EventType::PriceUpdated => match price_key(entity) {
                Some(key) => {
                    self.refetch(
                        &self.catalog.prices,
                        Entity::Price,
                        key,
                        version,
                        at,
                        ledger,
                    )
                    .await
                }
                None => {
                    // Every segment and currency of the sku.
                    if !self
                        .newer(&version_key(Entity::Price, &entity.id), version, ledger)
                        .await
                    {
                        return Ok(Applied::Stale);
                    }
                    self.invalidator
                        .invalidate(
                            Entity::Price,
                            Target::Ids(vec![entity.id.clone()]),
                            Some(at),
                        )
                        .await?;
                    Ok(Applied::Applied)
                }
            },
            EventType::InventoryUpdated => {
                let tier = &self.catalog.stock;
                self.refetch(
                    tier,
                    Entity::Inventory,
                    entity.id.clone(),
                    version,
                    at,
                    ledger,
                )
                .await
            }
            EventType::ProductUpdated => {
                let held = self
                    .catalog
                    .products
                    .peek(std::slice::from_ref(&entity.id))
                    .await;
                let before = held.values().find_map(|e| e.value.clone());
                let tier = &self.catalog.products;
                let applied = self
                    .refetch(
                        tier,
                        Entity::Product,
                        entity.id.clone(),
                        version,
                        at,
                        ledger,
                    )
                    .await?;
                if applied == Applied::Applied {
                    let now = self
                        .catalog
                        .products
                        .peek(std::slice::from_ref(&entity.id))
                        .await;
                    let after = now.values().find_map(|e| e.value.clone());
                    let moved = match (&before, &after) {
                        (Some(b), Some(a)) => b.category_ids != a.category_ids,
                        _ => true,
                    };
                    let sku = after.or(before).map(|p| p.sku).unwrap_or_default();
                    self.after_product(&entity.id, &sku, moved, at).await?;
                }
                Ok(applied)
            }
            EventType::CustomerUpdated => {
                self.customer(&entity.id, Some(version), at, ledger).await
            }
            EventType::OrderUpdated => {
                if !self
                    .newer(&version_key(Entity::Order, &entity.id), version, ledger)
                    .await
                {
                    return Ok(Applied::Stale);
                }
                self.invalidator
                    .invalidate(
                        Entity::Order,
                        Target::Ids(vec![entity.id.clone()]),
                        Some(at),
                    )
                    .await?;
                Ok(Applied::Applied)
            }
            EventType::ProductDeleted => self.product_deleted(event, ledger).await,
        }
    }

    /// One key refetched at event priority unless what is held is as new.
    async fn refetch<K: Key, V: Value + Versioned>(
        &self,
        tier: &Arc<Tier<K, V>>,
        entity: Entity,
        key: K,
        version: u64,
        at: Timestamp,
        ledger: &Ledger,
    ) -> Result<Applied, Error> {
        let held = tier.peek(std::slice::from_ref(&key)).await;
        let held_version = held
            .values()
            .filter_map(|e| e.value.as_ref())
            .map(Versioned::version)
            .max();
        let vkey = version_key(entity, &key.encode());
        if held_version.is_some_and(|v| v >= version) {
            return Ok(Applied::Stale);
        }
        let Advance::Newer(before) = ledger.advance(&vkey, version).await else {
            return Ok(Applied::Stale);
        };
        if let Err(e) = tier
            .refresh(vec![key.clone()], Priority::EventRefresh)
            .await
        {
            // Not applied: a retry or a replay must not find it stale.
            ledger.retreat(&vkey, version, before).await;
            return Err(e);
        }
        self.invalidator
            .refreshed(entity, Target::Keys(vec![key.encode()]), Some(at))
            .await?;
        Ok(Applied::Applied)
    }

    /// The sku index follows the product; listings are dropped when the
    /// product changed category (or is gone).
    async fn after_product(
        &self,
        id: &str,
        sku: &str,
        moved: bool,
        at: Timestamp,
    ) -> Result<(), Error> {
        if !sku.is_empty() {
            let tier = &self.catalog.product_ids;
            tier.insert_many(vec![(sku.to_string(), Some(id.to_string()))], at)
                .await;
            self.invalidator
                .refreshed(
                    Entity::ProductSku,
                    Target::Keys(vec![sku.to_string().encode()]),
                    Some(at),
                )
                .await?;
        }
        if moved {
            self.invalidator
                .invalidate(Entity::ProductPage, Target::All, Some(at))
                .await?;
        }
        Ok(())
    }

    async fn product_deleted(&self, event: &Event, ledger: &Ledger) -> Result<Applied, Error> {
        let at = event.occurred_at;
        let (id, sku, version) = match (&event.item, &event.entity) {
            (Some(Item::Product(p)), _) => (p.id.clone(), Some(p.sku.clone()), Some(p.version)),
            (_, Some(e)) => (e.id.clone(), None, event.version),
            _ => return Err(Error::internal("a deletion without the product")),
        };
        if let Some(version) = version
            && !self
                .newer(&version_key(Entity::Product, &id.encode()), version, ledger)
                .await
        {
            return Ok(Applied::Stale);
        }
        let held = self.catalog.products.peek(std::slice::from_ref(&id)).await;
        let sku = sku.or_else(|| {
            held.values()
                .find_map(|e| e.value.as_ref().map(|p| p.sku.clone()))
        });
        // "Does not exist", cached as an upstream's answer would be.
        let tier = &self.catalog.products;
        tier.insert_many(vec![(id.clone(), None)], at).await;
        self.invalidator
            .refreshed(Entity::Product, Target::Keys(vec![id.encode()]), Some(at))
            .await?;
        if let Some(sku) = sku {
            self.invalidator
                .invalidate(
                    Entity::ProductSku,
                    Target::Keys(vec![sku.encode()]),
                    Some(at),
                )
                .await?;
        }
        self.invalidator
            .invalidate(Entity::ProductPage, Target::All, Some(at))
            .await?;
        Ok(Applied::Applied)
    }

    /// Every cached sign-in of the customer is dropped everywhere; the next
    /// request of theirs reads the CRM again.
    async fn customer(
        &self,
        id: &str,
        version: Option<u64>,
        at: Timestamp,
        ledger: &Ledger,
    ) -> Result<Applied, Error> {
        if let Some(version) = version
            && !self
                .newer(&version_key(Entity::Customer, id), version, ledger)
                .await
        {
            return Ok(Applied::Stale);
        }
        let keys: Vec<String> = self
            .customers
            .tokens_of(id)
            .await
            .iter()
            .map(Key::encode)
            .collect();
        if !keys.is_empty() {
            self.invalidator
                .invalidate(Entity::Customer, Target::Keys(keys), Some(at))
                .await?;
        }
        Ok(Applied::Applied)
    }

    async fn newer(&self, key: &str, version: u64, ledger: &Ledger) -> bool {
        matches!(ledger.advance(key, version).await, Advance::Newer(_))
    }
}

/// The key of the newest version seen of one entity.
fn version_key(entity: Entity, key: &str) -> String {
    format!("{}:{key}", entity.name())
}

/// The one price a thin event names, when it names segment and currency.
fn price_key(entity: &EntityRef) -> Option<PriceKey> {
    Some(PriceKey {
        sku: entity.id.clone(),
        segment: entity.segment.clone()?,
        currency: Currency::from_code(entity.currency.as_deref()?)?,
    })
}
