//! What search engines read of a product: schema.org `Product` as JSON-LD
//! (`Product.structuredData`), with an `Offer` whose availability is a
//! schema.org `ItemAvailability` and whose price is published only while
//! Moat can vouch for it. A price past its hard TTL (served because its
//! source failed) or announced changed at its source and not yet
//! refetched is left out rather than published wrong: a structured-data
//! price that disagrees with checkout gets listings disapproved.

use serde_json::{Map, Value, json};

use crate::cache::{Freshness, Reason};
use crate::domain::{self, AvailabilityStatus, Timestamp};

/// The schema.org `ItemAvailability` of a storefront status (`None` when
/// Moat does not know it).
pub fn schema_org(status: AvailabilityStatus) -> Option<&'static str> {
    match status {
        AvailabilityStatus::InStock => Some("https://schema.org/InStock"),
        AvailabilityStatus::LowStock => Some("https://schema.org/LimitedAvailability"),
        AvailabilityStatus::OutOfStock => Some("https://schema.org/OutOfStock"),
        AvailabilityStatus::Unknown => None,
    }
}

/// A price as read, with how fresh it is and when it stops being good for
/// anything (its hard TTL past `as_of`).
pub struct PriceRead<'a> {
    pub price: &'a domain::Price,
    pub freshness: Freshness,
    pub valid_until: Timestamp,
}

/// The JSON-LD `Product`, with an `Offer` when there is a price fit to
/// publish or a known availability.
pub fn product(
    product: &domain::Product,
    price: Option<PriceRead<'_>>,
    availability: Option<AvailabilityStatus>,
) -> Value {
    let mut offer = Map::new();
    if let Some(read) = price.filter(|p| publishable(&p.freshness)) {
        let money = read.price.money();
        offer.insert("price".into(), json!(money.decimal()));
        offer.insert("priceCurrency".into(), json!(money.currency.code()));
        // schema.org `Date`: the day the price stops being vouched for.
        let until = read.valid_until.to_string();
        offer.insert(
            "priceValidUntil".into(),
            json!(&until[..10.min(until.len())]),
        );
    }
    if let Some(url) = availability.and_then(schema_org) {
        offer.insert("availability".into(), json!(url));
    }
    let mut ld = json!({
        "@context": "https://schema.org",
        "@type": "Product",
        "productID": product.id,
        "sku": product.sku,
        "name": product.name,
    });
    if !product.description.is_empty() {
        ld["description"] = json!(product.description);
    }
    if !offer.is_empty() {
        offer.insert("@type".into(), json!("Offer"));
        ld["offers"] = Value::Object(offer);
    }
    ld
}

/// Fresh, or past its soft TTL while it is refreshed; not past its hard
/// TTL, and not known to have changed at its source.
fn publishable(freshness: &Freshness) -> bool {
    matches!(freshness.reason, Reason::Fresh | Reason::Expired)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::vocab::Currency;

    fn item() -> domain::Product {
        domain::Product {
            id: "P-1".into(),
            sku: "SKU-1".into(),
            name: "Red mug".into(),
            description: String::new(),
            attributes: Vec::new(),
            category_ids: Vec::new(),
            version: 1,
            updated_at: Timestamp(0),
        }
    }

    fn price() -> domain::Price {
        domain::Price {
            sku: "SKU-1".into(),
            segment: "default".into(),
            currency: Currency::EUR,
            amount: 12_90,
            compare_at: None,
            version: 1,
            updated_at: Timestamp(0),
        }
    }

    fn read(price: &domain::Price, reason: Reason) -> PriceRead<'_> {
        PriceRead {
            price,
            freshness: Freshness {
                as_of: Timestamp(0),
                age: Duration::ZERO,
                stale: reason != Reason::Fresh,
                reason,
            },
            valid_until: Timestamp(1_767_225_600_000),
        }
    }

    #[test]
    fn a_price_is_published_only_while_moat_vouches_for_it() {
        let p = price();
        let ld = product(
            &item(),
            Some(read(&p, Reason::Fresh)),
            Some(AvailabilityStatus::InStock),
        );
        assert_eq!(
            ld["offers"],
            json!({ "@type": "Offer", "price": "12.90", "priceCurrency": "EUR",
                    "priceValidUntil": "2026-01-01", "availability": "https://schema.org/InStock" })
        );
        for reason in [Reason::ChangedAtSource, Reason::SourceUnavailable] {
            let ld = product(
                &item(),
                Some(read(&p, reason)),
                Some(AvailabilityStatus::OutOfStock),
            );
            assert_eq!(
                ld["offers"],
                json!({ "@type": "Offer", "availability": "https://schema.org/OutOfStock" })
            );
        }
        let ld = product(&item(), None, Some(AvailabilityStatus::Unknown));
        assert!(ld.get("offers").is_none());
        assert_eq!(ld["@type"], "Product");
    }
}
