//! `[catalog]`: what the storefront sells and how stock is shown. The
//! catalog reads it once at start, so every key needs a restart.

use serde::{Deserialize, Serialize};

use super::{Problems, Section};
use crate::vocab::Currency;

/// What the storefront sells and how stock is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Catalog {
    /// Currency of `Product.price` when the query names none.
    pub default_currency: String,
    /// Currencies a query may ask for (ISO 4217 codes).
    pub currencies: Vec<String>,
    /// Price segment of anonymous shoppers.
    pub default_segment: String,
    /// Stock at or below this is `LOW_STOCK`.
    pub low_stock_threshold: u32,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            default_currency: "EUR".into(),
            currencies: vec!["EUR".into(), "USD".into()],
            default_segment: "default".into(),
            low_stock_threshold: 5,
        }
    }
}

impl Section for Catalog {
    fn problems(&self, p: &mut Problems) {
        for (i, code) in self.currencies.iter().enumerate() {
            p.check(
                Currency::from_code(code).is_some(),
                &format!("currencies[{i}]"),
                format!("{code:?} is not a known ISO 4217 currency code"),
            );
        }
        p.check(
            !self.currencies.is_empty(),
            "currencies",
            "must name at least one currency",
        );
        p.check(
            self.currencies.contains(&self.default_currency),
            "default_currency",
            format!(
                "{:?} must be one of catalog.currencies {:?}",
                self.default_currency, self.currencies
            ),
        );
        p.check(
            !self.default_segment.trim().is_empty(),
            "default_segment",
            "must not be empty",
        );
    }
}
