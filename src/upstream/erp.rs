//! ERP: prices per segment and currency, stock, and the authoritative quote
//! checkout verifies against. Wire types and their checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::contract::{self, Boundary, TypedList, Wire, non_empty, timestamp};
use super::{Ask, Client, Priority, in_chunks};
use crate::domain::{Currency, Price, Quote, QuotedLine, Stock, Timestamp};
use crate::error::Error;
use crate::vocab::CacheMap;

/// The ERP protocol: prices and quotes from the owner of prices, stock
/// from the owner of inventory (an ERP, or a WMS speaking the same routes).
#[derive(Clone)]
pub struct Erp {
    prices: Client,
    inventory: Client,
    /// The owner of both answers `GET /erp/v1/offers`; turned off when it
    /// turns out not to.
    offers: Arc<AtomicBool>,
}

/// A product's price in one segment and currency and its stock, as one
/// `offers` call answered them: `None` where the list left the sku out
/// (it has no price, or no stock level).
#[derive(Debug, Clone)]
pub struct Offer {
    pub price: Option<Result<Price, Error>>,
    pub stock: Option<Result<Stock, Error>>,
}

impl Erp {
    /// `offers`: whether the owner of prices, when it owns stock too,
    /// answers the combined route (`systems.NAME.offers`).
    pub fn new(prices: Client, inventory: Client, offers: bool) -> Erp {
        let offers =
            offers && prices.system() == inventory.system() && prices.connector().is_none();
        Erp {
            prices,
            inventory,
            offers: Arc::new(AtomicBool::new(offers)),
        }
    }

    /// Whether a product's price and stock come in one call (`offers`).
    pub fn offers_enabled(&self) -> bool {
        self.offers.load(Ordering::Relaxed)
    }

    /// The system quotes come from (the owner of prices).
    pub fn quote_system(&self) -> super::System {
        self.prices.system()
    }

    /// `GET /erp/v1/prices?skus=&segment=&currency=`: prices keyed by sku.
    /// A price for another segment or currency than asked breaks the
    /// contract: serving it would show a shopper the wrong price.
    pub async fn prices(
        &self,
        skus: Vec<String>,
        segment: &str,
        currency: Currency,
        priority: Priority,
    ) -> Result<CacheMap<String, Result<Price, Error>>, Error> {
        in_chunks(skus, self.prices.max_batch("prices"), |chunk| async move {
            let ask = Ask::Prices {
                skus: &chunk,
                segment,
                currency: currency.code(),
            };
            let reply = self.prices.read(ask, priority).await?;
            let checked = contract::parse_list::<WirePrice, _>(
                self.prices.boundary(),
                &reply.body,
                "sku",
                |p: &Price| p.sku.clone(),
                str::to_string,
            )?;
            Ok(checked
                .items
                .into_iter()
                .map(|(sku, price)| (sku, self.as_asked(price, segment, currency)))
                .collect())
        })
        .await
    }

    /// What `offers` answers, from the two routes apart.
    async fn apart(
        &self,
        skus: Vec<String>,
        segment: &str,
        currency: Currency,
        priority: Priority,
    ) -> CacheMap<String, Result<Offer, Error>> {
        let (prices, stock) = tokio::join!(
            self.prices(skus.clone(), segment, currency, priority),
            self.inventory(skus.clone(), priority)
        );
        fn take<T>(
            found: &mut Result<CacheMap<String, Result<T, Error>>, Error>,
            sku: &str,
        ) -> Option<Result<T, Error>> {
            match found {
                Ok(found) => found.remove(sku),
                Err(e) => Some(Err(e.clone())),
            }
        }
        let (mut prices, mut stock) = (prices, stock);
        skus.into_iter()
            .map(|sku| {
                let offer = Offer {
                    price: take(&mut prices, &sku),
                    stock: take(&mut stock, &sku),
                };
                (sku, Ok(offer))
            })
            .collect()
    }

    /// `price` if it is in the segment and currency asked for.
    fn as_asked(
        &self,
        price: Result<Price, Error>,
        segment: &str,
        currency: Currency,
    ) -> Result<Price, Error> {
        price.and_then(|p| {
            if p.segment == segment && p.currency == currency {
                Ok(p)
            } else {
                Err(contract::violation(
                    self.prices.boundary(),
                    WirePrice::ENTITY,
                    Some(&p.sku),
                    format!(
                        "asked for {segment}/{currency}, got {}/{}",
                        p.segment, p.currency
                    ),
                ))
            }
        })
    }

    /// `GET /erp/v1/offers?skus=&segment=&currency=`: `{"prices": {"items":
    /// […]}, "inventory": {"items": […]}}`, each list what its own route
    /// answers and checked the same way, so a product page's price and
    /// stock cost one round trip. Only when `offers_enabled`.
    pub async fn offers(
        &self,
        skus: Vec<String>,
        segment: &str,
        currency: Currency,
        priority: Priority,
    ) -> Result<CacheMap<String, Result<Offer, Error>>, Error> {
        in_chunks(skus, self.prices.max_batch("offers"), |chunk| async move {
            let ask = Ask::Offers {
                skus: &chunk,
                segment,
                currency: currency.code(),
            };
            let reply = self.prices.read(ask, priority).await?;
            if reply.is_not_found() {
                // Configured, but not there: the two routes every v1 ERP
                // answers, from now on.
                if self.offers.swap(false, Ordering::Relaxed) {
                    let system = self.prices.system();
                    tracing::warn!(upstream = %system, "the ERP has no offers route; prices and stock are asked apart (set systems.{system}.offers = false)");
                }
                // Boxed: two calls, which every offers read would otherwise
                // carry (and copy) for this one-off fallback.
                return Ok(Box::pin(self.apart(chunk, segment, currency, priority)).await);
            }
            let at = self.prices.boundary();
            let (prices, stock) = match offers_whole(at, &reply.body) {
                Some(both) => both?,
                None => offers_apart(at, &reply.body)?,
            };
            Ok(self.offers_of(chunk, prices, stock, segment, currency))
        })
        .await
    }

    /// The asked skus' offers: a sku missing from a list has no price (or
    /// stock) there.
    fn offers_of(
        &self,
        chunk: Vec<String>,
        mut prices: CacheMap<String, Result<Price, Error>>,
        mut stock: CacheMap<String, Result<Stock, Error>>,
        segment: &str,
        currency: Currency,
    ) -> CacheMap<String, Result<Offer, Error>> {
        chunk
            .into_iter()
            .map(|sku| {
                let offer = Offer {
                    price: prices
                        .remove(&sku)
                        .map(|p| self.as_asked(p, segment, currency)),
                    stock: stock.remove(&sku),
                };
                (sku, Ok(offer))
            })
            .collect()
    }

    /// `GET /erp/v1/inventory?skus=`: stock keyed by sku.
    pub async fn inventory(
        &self,
        skus: Vec<String>,
        priority: Priority,
    ) -> Result<CacheMap<String, Result<Stock, Error>>, Error> {
        in_chunks(
            skus,
            self.inventory.max_batch("inventory"),
            |chunk| async move {
                let reply = self
                    .inventory
                    .read(Ask::Inventory(&chunk), priority)
                    .await?;
                let checked = contract::parse_list::<WireStock, _>(
                    self.inventory.boundary(),
                    &reply.body,
                    "sku",
                    |s: &Stock| s.sku.clone(),
                    str::to_string,
                )?;
                Ok(checked.into_map())
            },
        )
        .await
    }

    /// `POST /erp/v1/quote`: current unit prices, stock and total for
    /// `lines` (sku, quantity) in one segment and currency. Never cached. A
    /// quote that does not answer the request it was given (another
    /// segment, lines out of order, a total that is not the sum of its
    /// lines) breaks the contract: checkout must not compare against it.
    pub async fn quote(
        &self,
        segment: &str,
        currency: Currency,
        lines: &[(String, u32)],
        priority: Priority,
    ) -> Result<Quote, Error> {
        if self.prices.connector().is_some() {
            return self.fresh_quote(segment, currency, lines, priority).await;
        }
        let request = QuoteRequest::new(segment, currency, lines);
        let reply = self
            .prices
            .post("quote", "/erp/v1/quote", &request, priority)
            .await?;
        let system = self.prices.system();
        if reply.is_not_found() {
            return Err(Error::unavailable(format!("{system} has no quote route")));
        }
        let answer = contract::parse_one::<WireQuote>(self.prices.boundary(), &reply.body)?;
        answer.answers(segment, currency, lines).map_err(|reason| {
            contract::violation(self.prices.boundary(), WireQuote::ENTITY, None, reason)
        })
    }
}

impl Erp {
    /// A quote for a system with no quote route (a connector): its prices
    /// and its stock read now, from their owners, never from the cache,
    /// each item through the contract check. A sku without a price is
    /// unknown; one without a stock level has none available.
    async fn fresh_quote(
        &self,
        segment: &str,
        currency: Currency,
        lines: &[(String, u32)],
        priority: Priority,
    ) -> Result<Quote, Error> {
        let mut skus: Vec<String> = lines.iter().map(|(sku, _)| sku.clone()).collect();
        skus.sort_unstable();
        skus.dedup();
        let (prices, stock) = tokio::join!(
            self.prices(skus.clone(), segment, currency, priority),
            self.inventory(skus, priority)
        );
        let (mut prices, mut stock) = (prices?, stock?);
        let mut quoted = Vec::with_capacity(lines.len());
        let mut total: i64 = 0;
        for (sku, quantity) in lines {
            let Some(price) = prices.remove(sku).transpose()? else {
                quoted.push(None);
                continue;
            };
            prices.insert(sku.clone(), Ok(price.clone()));
            let level = stock.remove(sku).transpose()?;
            let (available, inventory_version) =
                level.as_ref().map_or((0, 0), |s| (s.available, s.version));
            if let Some(level) = level {
                stock.insert(sku.clone(), Ok(level));
            }
            let line_amount = price
                .amount
                .checked_mul(i64::from(*quantity))
                .ok_or_else(|| Error::unavailable(format!("the line of {sku} overflows")))?;
            total = total
                .checked_add(line_amount)
                .ok_or_else(|| Error::unavailable("the quote's total overflows"))?;
            quoted.push(Some(QuotedLine {
                sku: sku.clone(),
                quantity: *quantity,
                unit_amount: price.amount,
                line_amount,
                available,
                price_version: price.version,
                inventory_version,
            }));
        }
        Ok(Quote {
            segment: segment.to_string(),
            currency,
            lines: quoted,
            total_amount: total,
            quoted_at: Timestamp::now(),
        })
    }
}

#[derive(Serialize)]
pub(super) struct QuoteRequest<'a> {
    segment: &'a str,
    currency: &'static str,
    lines: Vec<QuoteRequestLine<'a>>,
}

impl<'a> QuoteRequest<'a> {
    pub(super) fn new(
        segment: &'a str,
        currency: Currency,
        lines: &'a [(String, u32)],
    ) -> QuoteRequest<'a> {
        QuoteRequest {
            segment,
            currency: currency.code(),
            lines: lines
                .iter()
                .map(|(sku, quantity)| QuoteRequestLine {
                    sku,
                    quantity: *quantity,
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct QuoteRequestLine<'a> {
    sku: &'a str,
    quantity: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireQuote {
    segment: String,
    currency: String,
    lines: Vec<WireQuoteLine>,
    unknown_skus: Vec<String>,
    total_amount: i64,
    quoted_at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireQuoteLine {
    sku: String,
    quantity: i64,
    unit_amount: i64,
    line_amount: i64,
    available: i64,
    price_version: u64,
    inventory_version: u64,
}

/// A quote that passed the field checks, before it is matched with the
/// request it answers.
pub(super) struct CheckedQuote {
    segment: String,
    currency: Currency,
    lines: Vec<QuotedLine>,
    unknown_skus: Vec<String>,
    total_amount: i64,
    quoted_at: Timestamp,
}

impl Wire for WireQuote {
    type Domain = CheckedQuote;
    const ENTITY: &'static str = "quote";

    fn check(self) -> Result<CheckedQuote, String> {
        let currency = Currency::from_code(&self.currency)
            .ok_or_else(|| format!("currency {:?} is not a known ISO 4217 code", self.currency))?;
        let lines = self
            .lines
            .into_iter()
            .map(WireQuoteLine::check)
            .collect::<Result<Vec<_>, _>>()?;
        let sum = lines
            .iter()
            .try_fold(0i64, |sum, l| sum.checked_add(l.line_amount))
            .ok_or("the line amounts overflow")?;
        if self.total_amount != sum {
            return Err(format!(
                "totalAmount {} is not the sum of the lines ({sum})",
                self.total_amount
            ));
        }
        Ok(CheckedQuote {
            segment: non_empty("segment", self.segment)?,
            currency,
            lines,
            unknown_skus: self.unknown_skus,
            total_amount: self.total_amount,
            quoted_at: timestamp("quotedAt", &self.quoted_at)?,
        })
    }
}

impl WireQuoteLine {
    fn check(self) -> Result<QuotedLine, String> {
        let sku = non_empty("sku", self.sku)?;
        let quantity = u32::try_from(self.quantity)
            .ok()
            .filter(|q| *q > 0)
            .ok_or_else(|| format!("quantity {} of {sku} is out of range", self.quantity))?;
        let available = u32::try_from(self.available)
            .map_err(|_| format!("available {} of {sku} is out of range", self.available))?;
        if self.unit_amount < 0 {
            return Err(format!(
                "unitAmount {} of {sku} is negative",
                self.unit_amount
            ));
        }
        if self.unit_amount.checked_mul(i64::from(quantity)) != Some(self.line_amount) {
            return Err(format!(
                "lineAmount {} of {sku} is not {quantity} x {}",
                self.line_amount, self.unit_amount
            ));
        }
        Ok(QuotedLine {
            sku,
            quantity,
            unit_amount: self.unit_amount,
            line_amount: self.line_amount,
            available,
            price_version: self.price_version,
            inventory_version: self.inventory_version,
        })
    }
}

impl CheckedQuote {
    /// Matches the quote with the request: the same segment and currency,
    /// and for each requested line in order either the next quoted line
    /// (same sku and quantity) or a listed unknown sku. Nothing left over.
    pub(super) fn answers(
        self,
        segment: &str,
        currency: Currency,
        requested: &[(String, u32)],
    ) -> Result<Quote, String> {
        if self.segment != segment || self.currency != currency {
            return Err(format!(
                "asked for {segment}/{currency}, got {}/{}",
                self.segment, self.currency
            ));
        }
        if let Some(sku) = self
            .unknown_skus
            .iter()
            .find(|u| !requested.iter().any(|(sku, _)| sku == *u))
        {
            return Err(format!(
                "unknownSkus names {sku:?}, which was not asked for"
            ));
        }
        let mut quoted = self.lines.into_iter();
        let mut lines = Vec::with_capacity(requested.len());
        for (sku, quantity) in requested {
            if self.unknown_skus.contains(sku) {
                lines.push(None);
                continue;
            }
            match quoted.next() {
                Some(line) if line.sku == *sku && line.quantity == *quantity => {
                    lines.push(Some(line))
                }
                Some(line) => {
                    return Err(format!(
                        "expected a line for {quantity} x {sku}, got {} x {}",
                        line.quantity, line.sku
                    ));
                }
                None => return Err(format!("no line and no unknownSkus entry for {sku}")),
            }
        }
        if let Some(extra) = quoted.next() {
            return Err(format!("a line for {} was not asked for", extra.sku));
        }
        Ok(Quote {
            segment: self.segment,
            currency: self.currency,
            lines,
            total_amount: self.total_amount,
            quoted_at: self.quoted_at,
        })
    }
}

/// Prices and stock, as an offers answer has them.
type Lists = (
    CacheMap<String, Result<Price, Error>>,
    CacheMap<String, Result<Stock, Error>>,
);

/// The offers answer in one pass, when every item in it keeps the
/// contract; `None` when one does not, for `offers_apart`.
fn offers_whole(at: Boundary<'_>, body: &[u8]) -> Option<Result<Lists, Error>> {
    #[derive(Deserialize)]
    struct Whole {
        prices: TypedList<WirePrice>,
        inventory: TypedList<WireStock>,
    }
    let whole: Whole = serde_json::from_slice(body).ok()?;
    let prices = whole.prices.checked(at, &|p: &Price| p.sku.clone())?;
    let stock = whole.inventory.checked(at, &|s: &Stock| s.sku.clone())?;
    Some(prices.and_then(|p| Ok((p.into_map(), stock?.into_map()))))
}

/// The offers answer list by list, and each list item by item, so a
/// broken item fails only its sku.
fn offers_apart(at: Boundary<'_>, body: &[u8]) -> Result<Lists, Error> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        prices: &'a RawValue,
        #[serde(borrow)]
        inventory: &'a RawValue,
    }
    let lists: Raw = serde_json::from_slice(body).map_err(|e| {
        let reason = format!("the offers answer is not valid: {e}");
        contract::violation(at, WirePrice::ENTITY, None, reason)
    })?;
    Ok((
        list_apart::<WirePrice>(at, lists.prices, |p| p.sku.clone())?,
        list_apart::<WireStock>(at, lists.inventory, |s| s.sku.clone())?,
    ))
}

/// One of an offers answer's lists, item by item, keyed by sku.
fn list_apart<W: Wire>(
    at: Boundary<'_>,
    list: &RawValue,
    sku: fn(&W::Domain) -> String,
) -> Result<CacheMap<String, Result<W::Domain, Error>>, Error> {
    let checked =
        contract::parse_apart::<W, _>(at, list.get().as_bytes(), "sku", sku, str::to_string)?;
    Ok(checked.into_map())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WirePrice {
    sku: String,
    segment: String,
    currency: String,
    amount: i64,
    #[serde(default)]
    compare_at_amount: Option<i64>,
    version: u64,
    updated_at: String,
}

impl Wire for WirePrice {
    type Domain = Price;
    const ENTITY: &'static str = "price";

    fn check(self) -> Result<Price, String> {
        let currency = Currency::from_code(&self.currency)
            .ok_or_else(|| format!("currency {:?} is not a known ISO 4217 code", self.currency))?;
        if self.amount < 0 {
            return Err(format!("amount {} is negative", self.amount));
        }
        if self.compare_at_amount.is_some_and(|a| a < 0) {
            return Err("compareAtAmount is negative".into());
        }
        Ok(Price {
            sku: non_empty("sku", self.sku)?,
            segment: non_empty("segment", self.segment)?,
            currency,
            amount: self.amount,
            compare_at: self.compare_at_amount,
            version: self.version,
            updated_at: timestamp("updatedAt", &self.updated_at)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireStock {
    sku: String,
    available: i64,
    version: u64,
    updated_at: String,
}

impl Wire for WireStock {
    type Domain = Stock;
    const ENTITY: &'static str = "inventory";

    fn check(self) -> Result<Stock, String> {
        let available = u32::try_from(self.available)
            .map_err(|_| format!("available {} is out of range", self.available))?;
        Ok(Stock {
            sku: non_empty("sku", self.sku)?,
            available,
            version: self.version,
            updated_at: timestamp("updatedAt", &self.updated_at)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(body: serde_json::Value) -> Result<CheckedQuote, String> {
        serde_json::from_value::<WireQuote>(body)
            .map_err(|e| e.to_string())
            .and_then(WireQuote::check)
    }

    fn body(lines: serde_json::Value, unknown: &[&str], total: i64) -> serde_json::Value {
        serde_json::json!({
            "segment": "default", "currency": "EUR", "lines": lines,
            "unknownSkus": unknown, "totalAmount": total,
            "quotedAt": "2026-01-01T00:00:00Z"
        })
    }

    fn line(sku: &str, quantity: i64, unit: i64, available: i64) -> serde_json::Value {
        serde_json::json!({
            "sku": sku, "quantity": quantity, "unitAmount": unit,
            "lineAmount": unit * quantity, "available": available,
            "priceVersion": 1, "inventoryVersion": 1
        })
    }

    fn asked(lines: &[(&str, u32)]) -> Vec<(String, u32)> {
        lines.iter().map(|(s, q)| (s.to_string(), *q)).collect()
    }

    #[test]
    fn a_quote_is_matched_line_by_line_with_its_request() {
        let lines = serde_json::json!([line("A", 2, 150, 9), line("C", 1, 99, 0)]);
        let quote = wire(body(lines, &["B"], 399))
            .unwrap()
            .answers(
                "default",
                Currency::EUR,
                &asked(&[("A", 2), ("B", 1), ("C", 1)]),
            )
            .unwrap();
        assert_eq!(quote.lines.len(), 3);
        assert_eq!(quote.lines[0].as_ref().unwrap().unit_amount, 150);
        assert!(quote.lines[1].is_none());
        assert_eq!(quote.lines[2].as_ref().unwrap().available, 0);
        assert_eq!(quote.total_amount, 399);
    }

    #[test]
    fn a_quote_that_does_not_add_up_or_answer_the_request_breaks_the_contract() {
        let one = || serde_json::json!([line("A", 2, 150, 9)]);
        assert!(wire(body(one(), &[], 301)).is_err(), "total");
        let mut broken = line("A", 2, 150, 9);
        broken["lineAmount"] = 299.into();
        assert!(wire(body(serde_json::json!([broken]), &[], 299)).is_err());
        assert!(wire(body(serde_json::json!([line("A", 1, 5, -1)]), &[], 5)).is_err());
        assert!(wire(body(serde_json::json!([line("A", 1, -5, 1)]), &[], -5)).is_err());
        let ok = |answer: &[(&str, u32)], segment: &str| {
            wire(body(one(), &[], 300))
                .unwrap()
                .answers(segment, Currency::EUR, &asked(answer))
                .is_ok()
        };
        assert!(ok(&[("A", 2)], "default"));
        assert!(!ok(&[("A", 2)], "vip"), "another segment");
        assert!(!ok(&[("A", 3)], "default"), "another quantity");
        assert!(!ok(&[("A", 2), ("B", 1)], "default"), "a line missing");
        assert!(!ok(&[], "default"), "a line not asked for");
    }

    #[test]
    fn an_offers_answer_with_a_broken_item_fails_only_that_sku() {
        let at = Boundary {
            system: crate::vocab::System::ERP,
            exceptions: None,
        };
        let price = |sku: &str, amount: i64| {
            serde_json::json!({
                "sku": sku, "segment": "default", "currency": "EUR", "amount": amount,
                "version": 1, "updatedAt": "2026-01-01T00:00:00Z"
            })
        };
        let stock = |sku: &str| {
            serde_json::json!({
                "sku": sku, "available": 3, "version": 1, "updatedAt": "2026-01-01T00:00:00Z"
            })
        };
        let answer = |prices: serde_json::Value| {
            serde_json::json!({
                "prices": { "items": prices },
                "inventory": { "items": [stock("A"), stock("B")] }
            })
            .to_string()
        };

        // Kept: read in one pass, as item by item.
        let good = answer(serde_json::json!([price("A", 100), price("B", 200)]));
        let (prices, stock) = offers_whole(at, good.as_bytes()).unwrap().unwrap();
        assert_eq!(prices["B"].as_ref().unwrap().amount, 200);
        assert_eq!(stock.len(), 2);
        let (apart, _) = offers_apart(at, good.as_bytes()).unwrap();
        assert_eq!(apart["B"].as_ref().unwrap().amount, 200);

        // A negative amount: the one pass declines, and item by item only
        // B's price fails; A's price and both stocks stand.
        let broken = answer(serde_json::json!([price("A", 100), price("B", -1)]));
        assert!(offers_whole(at, broken.as_bytes()).is_none());
        let (prices, stock) = offers_apart(at, broken.as_bytes()).unwrap();
        assert_eq!(prices["A"].as_ref().unwrap().amount, 100);
        assert!(prices["B"].is_err());
        assert!(stock["A"].is_ok() && stock["B"].is_ok());
    }
}
