//! `[checkout]`: `verifyCheckout`'s limits and how long a price token
//! stays valid. Checkout, the token keys and the query limits are built
//! from it at start, so every key needs a restart.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, Section};

/// `verifyCheckout`: how large a cart may be, and how long a price token
/// Moat issued stays valid. Token secrets come from the environment only
/// (`MOAT_PRICE_TOKEN_SECRET`, `MOAT_PRICE_TOKEN_PREVIOUS_SECRET`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checkout {
    /// Most units one cart line may ask for (1 to 100000).
    pub max_quantity: u32,
    /// Most lines one verification may carry (1 to 500, the most one ERP
    /// quote takes).
    pub max_lines: usize,
    /// How long after Moat showed a price its `priceToken` still verifies;
    /// an older token is an `INVALID_TOKEN` mismatch (1m to 30d).
    #[serde(with = "humantime_serde")]
    pub price_token_max_age: Duration,
    /// Most `verifyCheckout` fields one request may hold (1 to 10): each
    /// is an ERP quote on checkout's reserved capacity.
    pub max_per_request: usize,
}

impl Default for Checkout {
    fn default() -> Self {
        Checkout {
            max_quantity: 999,
            max_lines: 100,
            price_token_max_age: Duration::from_secs(24 * 3600),
            max_per_request: 1,
        }
    }
}

impl Section for Checkout {
    fn problems(&self, p: &mut Problems) {
        p.check(
            (1..=100_000).contains(&self.max_quantity),
            "max_quantity",
            "must be between 1 and 100000",
        );
        p.check(
            (1..=500).contains(&self.max_lines),
            "max_lines",
            "must be between 1 and 500 (the most one ERP quote takes)",
        );
        p.check(
            (Duration::from_secs(60)..=Duration::from_secs(30 * 86_400))
                .contains(&self.price_token_max_age),
            "price_token_max_age",
            "must be between 1m and 30d",
        );
        p.check(
            (1..=10).contains(&self.max_per_request),
            "max_per_request",
            "must be between 1 and 10",
        );
    }
}
