//! Self-repair after a quote: each price or stock level the cache holds
//! that the quote proves wrong is replaced with the quote's value in L1 and
//! L2, and the other replicas are told to drop their L1 copy (they then
//! read the repaired value from L2). Only entries the cache holds are
//! touched: a quote is not a reason to fill the cache.

use std::collections::HashSet;

use crate::cache::{Invalidator, Key, Target, Tier, Value};
use crate::catalog::{Catalog, PriceKey};
use crate::domain::{Price, Quote, QuotedLine, Stock, Timestamp};

/// Repairs from `quote`, which answered `requested` line for line.
pub async fn from_quote(
    catalog: &Catalog,
    invalidator: &Invalidator,
    requested: &[(String, u32)],
    quote: &Quote,
) {
    let mut seen = HashSet::new();
    let mut quoted: Vec<&QuotedLine> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for ((sku, _), line) in requested.iter().zip(&quote.lines) {
        if !seen.insert(sku.as_str()) {
            continue;
        }
        match line {
            Some(line) => quoted.push(line),
            None => unknown.push(sku.clone()),
        }
    }

    let price_key = |sku: &str| PriceKey {
        sku: sku.to_string(),
        segment: quote.segment.clone(),
        currency: quote.currency,
    };
    let prices = repair(
        invalidator,
        &catalog.prices,
        quoted.iter().map(|q| (price_key(&q.sku), *q)).collect(),
        |held: Option<&Price>, q| {
            let held_right = held.is_some_and(|p| p.amount == q.unit_amount);
            let held_newer = held.is_some_and(|p| p.version > q.price_version);
            (!held_right && !held_newer).then(|| Price {
                sku: q.sku.clone(),
                segment: quote.segment.clone(),
                currency: quote.currency,
                amount: q.unit_amount,
                // A compare-at price only makes sense above the price.
                compare_at: held
                    .and_then(|p| p.compare_at)
                    .filter(|c| *c > q.unit_amount),
                version: q.price_version,
                updated_at: quote.quoted_at,
            })
        },
    )
    .await;
    let stock = repair(
        invalidator,
        &catalog.stock,
        quoted.iter().map(|q| (q.sku.clone(), *q)).collect(),
        |held: Option<&Stock>, q| {
            let held_right = held.is_some_and(|s| s.available == q.available);
            let held_newer = held.is_some_and(|s| s.version > q.inventory_version);
            (!held_right && !held_newer).then(|| Stock {
                sku: q.sku.clone(),
                available: q.available,
                version: q.inventory_version,
                updated_at: quote.quoted_at,
            })
        },
    )
    .await;
    let dropped = drop_unknown(catalog, invalidator, &unknown, price_key).await;
    if prices + stock + dropped > 0 {
        tracing::info!(
            prices,
            stock,
            dropped,
            "checkout quote repaired cache entries"
        );
    }
}

/// Writes `fix(held, quoted)` for each held entry it returns a value for,
/// then broadcasts. Returns how many entries were repaired.
async fn repair<K: Key, V: Value>(
    invalidator: &Invalidator,
    tier: &Tier<K, V>,
    lines: Vec<(K, &QuotedLine)>,
    fix: impl Fn(Option<&V>, &QuotedLine) -> Option<V>,
) -> usize {
    let keys: Vec<K> = lines.iter().map(|(k, _)| k.clone()).collect();
    let held = tier.peek(&keys).await;
    let fixes: Vec<(K, Option<V>)> = lines
        .into_iter()
        .filter_map(|(key, quoted)| {
            let entry = held.get(&key)?;
            fix(entry.value.as_ref(), quoted).map(|v| (key, Some(v)))
        })
        .collect();
    if fixes.is_empty() {
        return 0;
    }
    let encoded: Vec<String> = fixes.iter().map(|(k, _)| k.encode()).collect();
    let count = fixes.len();
    tier.insert_many(fixes, Timestamp::now()).await;
    if let Err(e) = invalidator
        .refreshed(tier.entity(), Target::Keys(encoded), None)
        .await
    {
        tracing::warn!(error = %e, "could not announce repaired cache entries");
    }
    count
}

/// The ERP says these skus do not exist: whatever price or stock the cache
/// holds for them is dropped everywhere, so the next read asks again.
async fn drop_unknown(
    catalog: &Catalog,
    invalidator: &Invalidator,
    skus: &[String],
    price_key: impl Fn(&str) -> PriceKey,
) -> usize {
    if skus.is_empty() {
        return 0;
    }
    let price_keys: Vec<PriceKey> = skus.iter().map(|s| price_key(s)).collect();
    let held_prices = catalog.prices.peek(&price_keys).await;
    let held_stock = catalog.stock.peek(skus).await;
    let mut dropped = 0;
    for (entity, keys) in [
        (
            catalog.prices.entity(),
            held_prices
                .iter()
                .filter(|(_, e)| e.value.is_some())
                .map(|(k, _)| k.encode())
                .collect::<Vec<_>>(),
        ),
        (
            catalog.stock.entity(),
            held_stock
                .iter()
                .filter(|(_, e)| e.value.is_some())
                .map(|(k, _)| k.encode())
                .collect(),
        ),
    ] {
        if keys.is_empty() {
            continue;
        }
        dropped += keys.len();
        if let Err(e) = invalidator
            .invalidate(entity, Target::Keys(keys), None)
            .await
        {
            tracing::warn!(error = %e, "could not drop entries for unknown skus");
        }
    }
    dropped
}
