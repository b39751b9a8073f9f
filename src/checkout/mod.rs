//! `verifyCheckout`: a cart checked against an authoritative ERP quote
//! before money moves. Called by `graphql`'s mutation; calls
//! `upstream::erp` directly (a quote is never served from cache), then
//! repairs the cache entries the quote proved wrong.
//!
//! Checkout never trusts the cache, and fails closed: if the ERP cannot
//! answer, the answer is `UPSTREAM_UNAVAILABLE`, never `ok: true`.
//!
//! - `input`: the cart as received and its checks (`BAD_USER_INPUT`);
//! - `token`: signed price tokens (issued on the read path, checked here);
//! - `compare`: cart against quote, the mismatches;
//! - `repair`: writing what the quote showed back into the cache.

pub mod compare;
pub mod input;
mod repair;
pub mod token;

use std::sync::Arc;

use crate::background::Background;
use crate::cache::Invalidator;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::domain::Timestamp;
use crate::error::{Error, Kind};
use crate::exceptions::{Exception, Exceptions, FoundBy};
use crate::telemetry;
use crate::upstream::Erp;
use crate::vocab::Priority;

pub use compare::{Mismatch, MismatchKind, Verification, VerifiedLine};
pub use input::{CartInput, Limits, LineInput, MoneyInput};
pub use token::{Claims, PriceTokens};

/// The checkout service.
pub struct Checkout {
    erp: Erp,
    /// For the sellable currencies, and to repair price and stock entries.
    catalog: Arc<Catalog>,
    /// Tells other replicas about repaired entries.
    invalidator: Arc<Invalidator>,
    tokens: Arc<PriceTokens>,
    limits: Limits,
    /// Where repairs run, owned by the gateway.
    background: Background,
    /// Where every mismatch is recorded for the ERP's owners.
    exceptions: Arc<Exceptions>,
}

impl Checkout {
    pub fn new(
        config: &Config,
        erp: Erp,
        catalog: Arc<Catalog>,
        invalidator: Arc<Invalidator>,
        tokens: Arc<PriceTokens>,
        background: Background,
        exceptions: Arc<Exceptions>,
    ) -> Checkout {
        Checkout {
            erp,
            catalog,
            invalidator,
            tokens,
            background,
            exceptions,
            limits: Limits {
                max_quantity: config.checkout.max_quantity,
                max_lines: config.checkout.max_lines,
            },
        }
    }

    /// The signer whose tokens this service accepts.
    pub fn tokens(&self) -> &Arc<PriceTokens> {
        &self.tokens
    }

    /// Verifies `input` for a shopper priced in `segment` (or the reason
    /// their segment is unknown: then nothing can be verified).
    pub async fn verify(
        &self,
        segment: Result<&str, Error>,
        input: CartInput,
    ) -> Result<Verification, Error> {
        let result = self.run(segment, input).await;
        match &result {
            Ok(v) if v.ok => telemetry::checkout_verification("ok"),
            Ok(v) => {
                telemetry::checkout_verification("mismatch");
                let v_currency = v.total.currency;
                for m in &v.mismatches {
                    telemetry::checkout_mismatch(m.kind.name());
                    // What the shopper was shown against what the ERP says.
                    let shown = |value: &Option<String>| {
                        value
                            .as_deref()
                            .map(|v| crate::exceptions::mismatched(m.kind.name(), v, v_currency))
                    };
                    self.exceptions.record(
                        Exception::new(
                            self.erp.quote_system().name(),
                            m.kind.entity(),
                            m.sku.as_deref().unwrap_or("total"),
                            shown(&m.displayed),
                            shown(&m.authoritative),
                            FoundBy::Checkout,
                        )
                        .of_kind(&m.kind.name().to_ascii_lowercase()),
                    );
                }
            }
            Err(e) if e.kind() == Kind::BadUserInput => {
                telemetry::checkout_verification("bad_input")
            }
            Err(_) => telemetry::checkout_verification("unavailable"),
        }
        result
    }

    async fn run(
        &self,
        segment: Result<&str, Error>,
        input: CartInput,
    ) -> Result<Verification, Error> {
        // All input is checked before the ERP is asked anything.
        let cart = input::validate(input, &self.catalog.selling, self.limits)?;
        let segment = segment?;
        let now = Timestamp::now();
        let verdicts: Vec<_> = cart
            .lines
            .iter()
            .map(|line| compare::check_token(&self.tokens, line, segment, now))
            .collect();
        let requested: Vec<(String, u32)> = cart
            .lines
            .iter()
            .map(|l| (l.sku.clone(), l.quantity))
            .collect();
        let quote = self
            .erp
            .quote(segment, cart.currency, &requested, Priority::Checkout)
            .await
            .map_err(fail_closed)?;
        let verification = compare::compare(&cart, &quote, &verdicts, Timestamp::now());
        // The repair must not hold up (or fail) the shopper's checkout:
        // it runs on its own, and Redis being slow costs only the repair.
        let (catalog, invalidator) = (self.catalog.clone(), self.invalidator.clone());
        self.background.spawn(async move {
            repair::from_quote(&catalog, &invalidator, &requested, &quote).await;
        });
        Ok(verification)
    }
}

/// Whatever kept the ERP from answering, checkout reports the same thing:
/// it could not verify, so the client must not proceed.
fn fail_closed(e: Error) -> Error {
    tracing::warn!(error = %e, "checkout cannot be verified: no quote from the ERP");
    if e.kind() == Kind::UpstreamUnavailable {
        e
    } else {
        Error::unavailable(format!("the ERP cannot verify this checkout now: {e}"))
    }
}
