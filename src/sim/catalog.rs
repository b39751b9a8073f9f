//! The simulator's mutable state of record: products, prices, stock,
//! categories, customers and orders, with the look-ups the upstream routes
//! need and the writes the control routes make.
//!
//! Products live in one `Vec` in id order. Ids and skus are dense
//! (`prod-000042` is index 41), so look-ups parse the number and then check
//! the stored string, instead of keeping hash maps that would cost most of
//! the start-up time for 100 000 products.

use std::time::SystemTime;

use serde_json::Value;

use super::wire::{
    CURRENCIES, Category, Customer, Inventory, Order, Price, PriceCell, Product, Quote, QuoteLine,
    QuoteRequestLine, SEGMENTS, StockCell,
};

pub struct Catalog {
    pub products: Vec<Product>,
    /// Per product, six prices in `segment * CURRENCIES.len() + currency` order.
    pub prices: Vec<[PriceCell; 6]>,
    pub stock: Vec<StockCell>,
    pub categories: Vec<Category>,
    /// Per category (same order as `categories`), the indices of its
    /// products, ascending: the cursor of a filtered page is found by binary
    /// search.
    pub category_members: Vec<Vec<u32>>,
    pub customers: Vec<Customer>,
    pub orders: Vec<Order>,
}

/// Why a paging request cannot be answered.
#[derive(Debug, PartialEq, Eq)]
pub struct BadCursor;

/// What a price write was aimed at and could not find.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownSku;

/// Cursors are the index of the next product, in hex behind a tag, so
/// clients treat them as opaque and a stray number is not mistaken for one.
fn encode_cursor(next: usize) -> String {
    format!("c1.{next:x}")
}

fn decode_cursor(cursor: &str) -> Result<usize, BadCursor> {
    let hex = cursor.strip_prefix("c1.").ok_or(BadCursor)?;
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BadCursor);
    }
    usize::from_str_radix(hex, 16).map_err(|_| BadCursor)
}

/// Index of a dense id such as `prod-000042`, checked against the stored
/// string so `prod-42` or `prod-+00042` do not alias it.
fn dense_index<'a>(
    key: &str,
    prefix: &str,
    len: usize,
    stored: impl Fn(usize) -> &'a str,
) -> Option<usize> {
    let digits = key.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    let index = n.checked_sub(1)?;
    (index < len && stored(index) == key).then_some(index)
}

/// A write's `updatedAt`: now, unless the clock stepped back past the
/// previous write, so `updatedAt` never goes backwards with `version`.
fn next_update(previous: SystemTime) -> SystemTime {
    SystemTime::now().max(previous)
}

impl Catalog {
    pub fn product_by_id(&self, id: &str) -> Option<usize> {
        dense_index(id, "prod-", self.products.len(), |i| &self.products[i].id)
    }

    pub fn product_by_sku(&self, sku: &str) -> Option<usize> {
        dense_index(sku, "SKU-", self.products.len(), |i| &self.products[i].sku)
    }

    pub fn order(&self, id: &str) -> Option<&Order> {
        dense_index(id, "ord-", self.orders.len(), |i| &self.orders[i].id).map(|i| &self.orders[i])
    }

    /// Linear: there are 30 customers.
    pub fn customer_by_token(&self, token: &str) -> Option<&Customer> {
        self.customers.iter().find(|c| c.token == token)
    }

    pub fn customer_by_id(&self, id: &str) -> Option<&Customer> {
        self.customers.iter().find(|c| c.id == id)
    }

    pub fn price(&self, index: usize, segment: usize, currency: usize) -> Price<'_> {
        let cell = &self.prices[index][segment * CURRENCIES.len() + currency];
        Price {
            sku: &self.products[index].sku,
            segment: SEGMENTS[segment],
            currency: CURRENCIES[currency],
            amount: cell.amount,
            compare_at_amount: cell.compare_at,
            version: cell.version,
            updated_at: cell.updated_at,
        }
    }

    pub fn inventory(&self, index: usize) -> Inventory<'_> {
        let cell = &self.stock[index];
        Inventory {
            sku: &self.products[index].sku,
            available: cell.available,
            version: cell.version,
            updated_at: cell.updated_at,
        }
    }

    /// One page of products, optionally of one category, and the cursor of
    /// the next page (None on the last). An unknown category is an empty
    /// list, as a filter that matches nothing.
    pub fn page(
        &self,
        category_id: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<&Product>, Option<String>), BadCursor> {
        let start = match cursor {
            None | Some("") => 0,
            Some(c) => decode_cursor(c)?,
        };
        let Some(category_id) = category_id else {
            let end = start.saturating_add(limit).min(self.products.len());
            let items = self.products.get(start..end).unwrap_or_default();
            let next = (end < self.products.len()).then(|| encode_cursor(end));
            return Ok((items.iter().collect(), next));
        };
        let Some(members) = self
            .categories
            .iter()
            .position(|c| c.id == category_id)
            .map(|c| &self.category_members[c])
        else {
            return Ok((Vec::new(), None));
        };
        let from = members.partition_point(|&m| (m as usize) < start);
        let to = from.saturating_add(limit).min(members.len());
        let items = members[from..to]
            .iter()
            .map(|&m| &self.products[m as usize])
            .collect();
        let next = members.get(to).map(|&m| encode_cursor(m as usize));
        Ok((items, next))
    }

    /// Authoritative lines for known skus in request order; nothing is
    /// reserved.
    pub fn quote(&self, segment: usize, currency: usize, lines: &[QuoteRequestLine]) -> Quote {
        let mut quoted = Vec::with_capacity(lines.len());
        let mut unknown_skus: Vec<String> = Vec::new();
        for line in lines {
            let Some(index) = self.product_by_sku(&line.sku) else {
                if !unknown_skus.contains(&line.sku) {
                    unknown_skus.push(line.sku.clone());
                }
                continue;
            };
            let price = self.price(index, segment, currency);
            let stock = &self.stock[index];
            quoted.push(QuoteLine {
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_amount: price.amount,
                line_amount: price.amount.saturating_mul(u64::from(line.quantity)),
                available: stock.available,
                price_version: price.version,
                inventory_version: stock.version,
            });
        }
        Quote {
            segment: SEGMENTS[segment],
            currency: CURRENCIES[currency],
            total_amount: quoted.iter().map(|l| l.line_amount).sum(),
            lines: quoted,
            unknown_skus,
            quoted_at: SystemTime::now(),
        }
    }

    /// Sets the price of one sku in one currency, for one segment or all of
    /// them. Every targeted price is a write: its version goes up even when
    /// the amount is unchanged, so tests can force an event. A compare-at
    /// amount that would no longer be above the price is dropped.
    pub fn set_price(
        &mut self,
        sku: &str,
        amount: u64,
        currency: usize,
        segment: Option<usize>,
    ) -> Result<Vec<Value>, UnknownSku> {
        let index = self.product_by_sku(sku).ok_or(UnknownSku)?;
        let segments = match segment {
            Some(s) => s..s + 1,
            None => 0..SEGMENTS.len(),
        };
        let mut changed = Vec::with_capacity(segments.len());
        for s in segments {
            let cell = &mut self.prices[index][s * CURRENCIES.len() + currency];
            cell.amount = amount;
            cell.compare_at = cell.compare_at.filter(|c| *c > amount);
            cell.version += 1;
            cell.updated_at = next_update(cell.updated_at);
            changed.push(to_value(&self.price(index, s, currency)));
        }
        Ok(changed)
    }

    /// Silent drift: `share` of the products get one price cell moved by
    /// 1-10 % and a new stock level, as writes nobody announces (manual
    /// fixes, a batch job). Returns how many products changed.
    pub fn drift(&mut self, share: f64, rng: &mut fastrand::Rng) -> usize {
        let n = ((self.products.len() as f64) * share.clamp(0.0, 1.0)).round() as usize;
        for _ in 0..n {
            let index = rng.usize(..self.products.len());
            let cell = &mut self.prices[index][rng.usize(..SEGMENTS.len() * CURRENCIES.len())];
            let step = (cell.amount * rng.u64(1..=10) / 100).max(1);
            cell.amount = if rng.bool() {
                cell.amount + step
            } else {
                cell.amount.saturating_sub(step).max(1)
            };
            cell.compare_at = cell.compare_at.filter(|c| *c > cell.amount);
            cell.version += 1;
            cell.updated_at = next_update(cell.updated_at);
            let stock = &mut self.stock[index];
            stock.available = rng.u64(0..=500);
            stock.version += 1;
            stock.updated_at = next_update(stock.updated_at);
        }
        n
    }

    /// An announced change (`--change-rate`): product `index`'s prices in
    /// every segment of `currency` move by 1-10 % (up or down), and its
    /// stock gets a new level. The changed price items and the stock item,
    /// for their events.
    pub fn change(
        &mut self,
        index: usize,
        currency: usize,
        rng: &mut fastrand::Rng,
    ) -> Option<(Vec<Value>, Value)> {
        let base = self.prices.get(index)?[currency].amount;
        let step = (base * rng.u64(1..=10) / 100).max(1);
        let up = rng.bool();
        let mut prices = Vec::with_capacity(SEGMENTS.len());
        for s in 0..SEGMENTS.len() {
            let cell = &mut self.prices[index][s * CURRENCIES.len() + currency];
            cell.amount = if up {
                cell.amount + step
            } else {
                cell.amount.saturating_sub(step).max(1)
            };
            cell.compare_at = cell.compare_at.filter(|c| *c > cell.amount);
            cell.version += 1;
            cell.updated_at = next_update(cell.updated_at);
            prices.push(to_value(&self.price(index, s, currency)));
        }
        let stock = &mut self.stock[index];
        stock.available = rng.u64(0..=500);
        stock.version += 1;
        stock.updated_at = next_update(stock.updated_at);
        Some((prices, to_value(&self.inventory(index))))
    }

    pub fn set_stock(&mut self, sku: &str, available: u64) -> Result<Value, UnknownSku> {
        let index = self.product_by_sku(sku).ok_or(UnknownSku)?;
        let cell = &mut self.stock[index];
        cell.available = available;
        cell.version += 1;
        cell.updated_at = next_update(cell.updated_at);
        Ok(to_value(&self.inventory(index)))
    }

    /// Changes the given fields; with none given it is still a write (a
    /// "touch"), which bumps the version.
    pub fn update_product(
        &mut self,
        id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Option<Value> {
        let index = self.product_by_id(id)?;
        let product = &mut self.products[index];
        if let Some(name) = name {
            product.name = name;
        }
        if let Some(description) = description {
            product.description = description;
        }
        product.version += 1;
        product.updated_at = next_update(product.updated_at);
        Some(to_value(&self.products[index]))
    }
}

/// Wire types are plain structs with string keys, which serde_json always
/// turns into a value; `Null` would only ever mean a bug in `wire`.
fn to_value<T: serde::Serialize>(item: &T) -> Value {
    serde_json::to_value(item).unwrap_or(Value::Null)
}
