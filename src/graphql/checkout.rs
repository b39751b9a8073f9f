//! `Mutation.verifyCheckout`: the GraphQL face of `checkout`. Inputs are
//! turned into the checkout's own input types (decimal strings stay
//! strings until `checkout::input` parses them with their currency), and
//! its verdict into GraphQL types.

use std::sync::Arc;

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};

use super::Scope;
use super::scalars::{DateTime, Decimal};
use super::types::Money;
use crate::checkout::{self, Checkout};

pub struct Mutation;

#[Object]
impl Mutation {
    /// Checks a cart against authoritative ERP prices and stock before
    /// payment: every difference from what the shopper was shown is a
    /// mismatch, and `ok` is true only when there is none. Fails with
    /// `UPSTREAM_UNAVAILABLE` (never `ok: true`) when the ERP cannot answer.
    async fn verify_checkout(
        &self,
        ctx: &Context<'_>,
        input: VerifyCheckoutInput,
    ) -> Result<CheckoutVerification> {
        let scope = ctx.data::<Scope>()?;
        let checkout = ctx.data::<Arc<Checkout>>()?;
        let verification = checkout.verify(scope.segment(), input.into()).await?;
        Ok(verification.into())
    }
}

/// A cart as the shopper saw it.
#[derive(InputObject)]
pub struct VerifyCheckoutInput {
    /// The currency the shopper pays in; one the storefront offers.
    currency_code: String,
    lines: Vec<CheckoutLineInput>,
    /// The total the shopper was shown.
    displayed_total: MoneyInput,
}

#[derive(InputObject)]
pub struct CheckoutLineInput {
    sku: String,
    quantity: i32,
    /// The unit price the shopper was shown.
    displayed_unit_price: MoneyInput,
    /// `ProductPrice.priceToken` of the price shown, if the client kept it.
    /// Without it the line is checked on price alone.
    price_token: Option<String>,
}

/// An amount as a decimal string with at most the currency's minor digits.
#[derive(InputObject)]
pub struct MoneyInput {
    amount: Decimal,
    currency_code: String,
}

impl From<MoneyInput> for checkout::MoneyInput {
    fn from(m: MoneyInput) -> Self {
        checkout::MoneyInput {
            amount: m.amount.0,
            currency_code: m.currency_code,
        }
    }
}

impl From<VerifyCheckoutInput> for checkout::CartInput {
    fn from(input: VerifyCheckoutInput) -> Self {
        checkout::CartInput {
            currency_code: input.currency_code,
            lines: input
                .lines
                .into_iter()
                .map(|l| checkout::LineInput {
                    sku: l.sku,
                    quantity: l.quantity,
                    displayed_unit_price: l.displayed_unit_price.into(),
                    price_token: l.price_token,
                })
                .collect(),
            displayed_total: input.displayed_total.into(),
        }
    }
}

/// The verdict on a cart.
#[derive(SimpleObject)]
pub struct CheckoutVerification {
    /// True only when nothing differs from what the shopper was shown.
    ok: bool,
    /// The authoritative total.
    total: Money,
    lines: Vec<CheckoutVerificationLine>,
    mismatches: Vec<CheckoutMismatch>,
    checked_at: DateTime,
}

/// A cart line as the ERP quotes it now; the figures are null for a sku
/// the ERP does not sell.
#[derive(SimpleObject)]
pub struct CheckoutVerificationLine {
    sku: String,
    quantity: i32,
    unit_price: Option<Money>,
    line_total: Option<Money>,
    /// Units in stock now.
    available: Option<i32>,
}

/// One difference between what the shopper was shown and what is true.
#[derive(SimpleObject)]
pub struct CheckoutMismatch {
    /// Null for the total.
    sku: Option<String>,
    kind: MismatchKind,
    /// A sentence fit to show the shopper.
    message: String,
    /// What the shopper was shown: a decimal amount (`PRICE`, `TOTAL`,
    /// `INVALID_TOKEN`), a quantity (`AVAILABILITY`) or a currency code
    /// (`CURRENCY`).
    displayed: Option<String>,
    /// What is true now, in the same terms.
    authoritative: Option<String>,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum MismatchKind {
    Price,
    Availability,
    Total,
    UnknownSku,
    Currency,
    InvalidToken,
}

impl From<checkout::MismatchKind> for MismatchKind {
    fn from(kind: checkout::MismatchKind) -> Self {
        use checkout::MismatchKind as K;
        match kind {
            K::Price => MismatchKind::Price,
            K::Availability => MismatchKind::Availability,
            K::Total => MismatchKind::Total,
            K::UnknownSku => MismatchKind::UnknownSku,
            K::Currency => MismatchKind::Currency,
            K::InvalidToken => MismatchKind::InvalidToken,
        }
    }
}

impl From<checkout::Verification> for CheckoutVerification {
    fn from(v: checkout::Verification) -> Self {
        let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        CheckoutVerification {
            ok: v.ok,
            total: v.total.into(),
            lines: v
                .lines
                .into_iter()
                .map(|l| CheckoutVerificationLine {
                    sku: l.sku,
                    quantity: count(l.quantity),
                    unit_price: l.unit_price.map(Money::from),
                    line_total: l.line_total.map(Money::from),
                    available: l.available.map(count),
                })
                .collect(),
            mismatches: v
                .mismatches
                .into_iter()
                .map(|m| CheckoutMismatch {
                    sku: m.sku,
                    kind: m.kind.into(),
                    message: m.message,
                    displayed: m.displayed,
                    authoritative: m.authoritative,
                })
                .collect(),
            checked_at: DateTime(v.checked_at),
        }
    }
}
