//! What Moat serves: products, categories, prices, stock, customers and
//! orders, free of any upstream's wire format. `upstream::*` maps wire types
//! into these after the contract check; `graphql` renders them.

mod money;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use money::{AmountError, Currency, Money, Written};

/// A point in time as unix milliseconds: small, ordered, and the same on
/// every replica (values read from Redis carry the time another replica
/// fetched them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// Parses RFC 3339 as upstreams send it: `2026-01-01T00:00:00Z`, with
    /// fractions of a second, or with an offset (`+01:00`, as Akeneo writes
    /// its times).
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let (local, offset_minutes) = split_offset(text)?;
        let utc = humantime::parse_rfc3339_weak(local).ok()?;
        Some(Timestamp(
            Timestamp::from(utc)
                .0
                .checked_sub(offset_minutes * 60_000)?,
        ))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// How long ago this was, zero if it lies in the future (clock skew
    /// between replicas must never produce a negative age).
    pub fn age(self, now: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(now.0 - self.0).unwrap_or(0))
    }

    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }
}

/// The date-time of an RFC 3339 text and its offset from UTC in minutes
/// (`Z` or none: 0).
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix(['Z', 'z']) {
        return Some((local, 0));
    }
    let at = text.len().checked_sub(6)?;
    let (local, offset) = text.split_at_checked(at)?;
    let sign = match offset.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Some((text, 0)),
    };
    let (hours, minutes) = offset[1..].split_once(':')?;
    let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 23 || minutes > 59 || !local.contains('T') && !local.contains(' ') {
        return None;
    }
    Some((local, sign * (hours * 60 + minutes)))
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds, as the GraphQL `DateTime` scalar.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match u64::try_from(self.0) {
            Ok(ms) => UNIX_EPOCH + Duration::from_millis(ms),
            Err(_) => UNIX_EPOCH,
        };
        write!(f, "{}", humantime::format_rfc3339_millis(t))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub value: String,
}

/// Product content from the PIM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub attributes: Vec<Attribute>,
    pub category_ids: Vec<String>,
    pub version: u64,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub version: u64,
}

/// One page of a product listing: the ids in order and where the next page
/// starts. The products themselves live in the product cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductPage {
    pub ids: Vec<String>,
    pub next_cursor: Option<String>,
}

/// A price from the ERP for one sku in one segment and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub sku: String,
    pub segment: String,
    pub currency: Currency,
    pub amount: i64,
    pub compare_at: Option<i64>,
    pub version: u64,
    pub updated_at: Timestamp,
}

impl Price {
    pub fn money(&self) -> Money {
        Money::new(self.amount, self.currency)
    }

    pub fn compare_at_money(&self) -> Option<Money> {
        self.compare_at.map(|a| Money::new(a, self.currency))
    }
}

/// Stock on hand for one sku from the ERP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    pub sku: String,
    pub available: u32,
    pub version: u64,
    pub updated_at: Timestamp,
}

/// What a storefront shows for stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvailabilityStatus {
    InStock,
    LowStock,
    OutOfStock,
    Unknown,
}

impl Stock {
    /// `low_stock` is the configured threshold at or below which stock is low.
    pub fn status(&self, low_stock: u32) -> AvailabilityStatus {
        match self.available {
            0 => AvailabilityStatus::OutOfStock,
            n if n <= low_stock => AvailabilityStatus::LowStock,
            _ => AvailabilityStatus::InStock,
        }
    }
}

/// A signed-in shopper as the CRM knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub email: String,
    pub name: String,
    pub segment: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_amount: i64,
}

/// An order from the OMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: String,
    pub currency: Currency,
    pub total_amount: i64,
    pub lines: Vec<OrderLine>,
    pub placed_at: Timestamp,
    pub version: u64,
    pub updated_at: Timestamp,
}

/// An authoritative ERP quote for one cart: current unit prices and stock,
/// never from a cache. Lines follow the request one for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub segment: String,
    pub currency: Currency,
    /// One per requested line, in request order; `None` where the ERP does
    /// not know the sku.
    pub lines: Vec<Option<QuotedLine>>,
    pub total_amount: i64,
    pub quoted_at: Timestamp,
}

/// One quoted line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_amount: i64,
    pub line_amount: i64,
    /// Stock on hand now; may be below `quantity`.
    pub available: u32,
    pub price_version: u64,
    pub inventory_version: u64,
}

/// An entity's version at its system of record: newer is larger. What
/// events go by to never replace a value with an older one (reconciliation
/// takes the owner's value whatever its version).
pub trait Versioned {
    fn version(&self) -> u64;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Versioned for $t {
            fn version(&self) -> u64 {
                self.version
            }
        }
    )*};
}

versioned!(Price, Stock, Product, Customer, Order);

/// Why an id or sku cannot be used: they travel in comma-separated batch
/// calls and URL paths upstream, so a comma, a space or a control character
/// in one could never be looked up.
pub fn check_key(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || value.len() > 128 {
        return Err("must be 1 to 128 characters");
    }
    if value
        .chars()
        .any(|c| c == ',' || c.is_control() || c.is_whitespace())
    {
        return Err("must not contain commas, spaces or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_rfc3339() {
        let t = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(t.to_string(), "2026-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
        for same in [
            "2026-01-01T01:00:00+01:00",
            "2025-12-31T23:30:00-00:30",
            "2026-01-01T00:00:00.000z",
            "2026-01-01T00:00:00",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(same), Some(t), "{same}");
        }
        assert_eq!(Timestamp::parse_rfc3339("2026-01-01T00:00:00+25:00"), None);
        assert_eq!(t.age(Timestamp(t.0 - 5)), Duration::ZERO);
        assert_eq!(
            t.plus(Duration::from_secs(2))
                .age(t.plus(Duration::from_secs(5))),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn stock_status_follows_threshold() {
        let s = |n| Stock {
            sku: "s".into(),
            available: n,
            version: 1,
            updated_at: Timestamp(0),
        };
        assert_eq!(s(0).status(5), AvailabilityStatus::OutOfStock);
        assert_eq!(s(5).status(5), AvailabilityStatus::LowStock);
        assert_eq!(s(6).status(5), AvailabilityStatus::InStock);
    }
}
