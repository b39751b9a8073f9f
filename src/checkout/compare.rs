//! The heart of `verifyCheckout`: a validated cart against an authoritative
//! quote. Pure (no I/O, the clock passed in), so every rule is unit-tested.
//! Each difference becomes a [`Mismatch`] with the values on both sides and
//! a sentence a checkout page can show a shopper as it is.

use std::collections::HashMap;

use super::input::{Cart, CartLine};
use super::token::{PriceTokens, TokenError};
use crate::domain::{Money, Quote, Timestamp};

/// What differs. Names are the schema's (`MismatchKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MismatchKind {
    /// The unit price shown is not the ERP's.
    Price,
    /// Less stock than the cart asks for.
    Availability,
    /// The total shown is not the ERP's.
    Total,
    /// The ERP does not sell this sku.
    UnknownSku,
    /// A price or the total shown in another currency than the checkout's.
    Currency,
    /// The price token is missing its signature, expired, or is not for
    /// this line (another sku, segment, currency or amount).
    InvalidToken,
}

impl MismatchKind {
    /// The schema's name, also the metric label.
    pub fn name(self) -> &'static str {
        match self {
            MismatchKind::Price => "PRICE",
            MismatchKind::Availability => "AVAILABILITY",
            MismatchKind::Total => "TOTAL",
            MismatchKind::UnknownSku => "UNKNOWN_SKU",
            MismatchKind::Currency => "CURRENCY",
            MismatchKind::InvalidToken => "INVALID_TOKEN",
        }
    }

    /// The entity that differed, as exceptions name it.
    pub fn entity(self) -> &'static str {
        match self {
            MismatchKind::Availability => "inventory",
            MismatchKind::UnknownSku => "product",
            MismatchKind::Total => "total",
            MismatchKind::Currency => "currency",
            MismatchKind::Price | MismatchKind::InvalidToken => "price",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// `None` for the total.
    pub sku: Option<String>,
    pub kind: MismatchKind,
    pub message: String,
    /// What the shopper was shown (a decimal amount, a quantity or a
    /// currency code, by kind).
    pub displayed: Option<String>,
    /// What is true now, in the same terms.
    pub authoritative: Option<String>,
}

/// One line as the ERP quotes it; the figures are `None` for an unknown sku.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: Option<Money>,
    pub line_total: Option<Money>,
    pub available: Option<u32>,
}

/// The answer of `verifyCheckout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// True only when nothing differs.
    pub ok: bool,
    /// The authoritative total of the lines the ERP knows.
    pub total: Money,
    pub lines: Vec<VerifiedLine>,
    pub mismatches: Vec<Mismatch>,
    pub checked_at: Timestamp,
}

/// What a line's price token says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVerdict {
    /// No token: the line is checked on price alone.
    Absent,
    /// A token Moat issued for exactly this line's price.
    Matches,
    Expired,
    /// Forged, altered, or signed with a key this gateway does not hold.
    Unverifiable,
    /// Genuine, but for another sku, segment, currency or amount.
    ForSomethingElse,
}

/// Checks `line`'s token against what the line displays and the segment
/// the shopper is priced in.
pub fn check_token(
    tokens: &PriceTokens,
    line: &CartLine,
    segment: &str,
    now: Timestamp,
) -> TokenVerdict {
    let Some(token) = &line.token else {
        return TokenVerdict::Absent;
    };
    match tokens.verify(token, now) {
        Ok(claims) => {
            let matches = claims.sku == line.sku
                && claims.segment == segment
                && claims.currency == line.displayed.currency
                && claims.amount == line.displayed.minor;
            if matches {
                TokenVerdict::Matches
            } else {
                TokenVerdict::ForSomethingElse
            }
        }
        Err(TokenError::Expired) => TokenVerdict::Expired,
        Err(_) => TokenVerdict::Unverifiable,
    }
}

/// Compares `cart` with `quote` (whose lines follow the cart's one for
/// one); `tokens` holds each line's token verdict.
pub fn compare(
    cart: &Cart,
    quote: &Quote,
    tokens: &[TokenVerdict],
    checked_at: Timestamp,
) -> Verification {
    let currency = cart.currency;
    let mut mismatches = Vec::new();
    let mut lines = Vec::with_capacity(cart.lines.len());
    // Stock is per sku: two lines of one sku draw on the same stock.
    let mut demand: HashMap<&str, u32> = HashMap::new();
    for line in &cart.lines {
        let total = demand.entry(line.sku.as_str()).or_default();
        *total = total.saturating_add(line.quantity);
    }
    let mut stock_checked: Vec<&str> = Vec::new();

    for (i, line) in cart.lines.iter().enumerate() {
        let sku = &line.sku;
        let shown = line.displayed;
        let mismatch = |kind, message: String, displayed: Option<String>, authoritative| Mismatch {
            sku: Some(sku.clone()),
            kind,
            message,
            displayed,
            authoritative,
        };
        match tokens.get(i).copied().unwrap_or(TokenVerdict::Absent) {
            TokenVerdict::Absent | TokenVerdict::Matches => {}
            TokenVerdict::Expired => mismatches.push(mismatch(
                MismatchKind::InvalidToken,
                format!("The price shown for {sku} has expired. Please reload the page to see the current price."),
                Some(shown.decimal()),
                None,
            )),
            TokenVerdict::Unverifiable | TokenVerdict::ForSomethingElse => mismatches.push(mismatch(
                MismatchKind::InvalidToken,
                format!("The price shown for {sku} could not be confirmed. Please reload the page to see the current price."),
                Some(shown.decimal()),
                None,
            )),
        }

        let Some(quoted) = quote.lines.get(i).and_then(Option::as_ref) else {
            mismatches.push(mismatch(
                MismatchKind::UnknownSku,
                format!("{sku} is not available for sale. Please remove it from your cart."),
                None,
                None,
            ));
            lines.push(VerifiedLine {
                sku: sku.clone(),
                quantity: line.quantity,
                unit_price: None,
                line_total: None,
                available: None,
            });
            continue;
        };
        let unit = Money::new(quoted.unit_amount, currency);

        if shown.currency != currency {
            mismatches.push(mismatch(
                MismatchKind::Currency,
                format!(
                    "The price of {sku} was shown in {}, but this checkout is in {currency}. Please reload the page.",
                    shown.currency
                ),
                Some(shown.currency.code().to_string()),
                Some(currency.code().to_string()),
            ));
        } else if shown.minor != unit.minor {
            let direction = if unit.minor > shown.minor {
                "gone up"
            } else {
                "gone down"
            };
            mismatches.push(mismatch(
                MismatchKind::Price,
                format!(
                    "The price of {sku} has {direction} from {} to {}.",
                    shown, unit
                ),
                Some(shown.decimal()),
                Some(unit.decimal()),
            ));
        }

        if !stock_checked.contains(&sku.as_str()) {
            stock_checked.push(sku);
            let wanted = demand.get(sku.as_str()).copied().unwrap_or(line.quantity);
            if wanted > quoted.available {
                let message = match quoted.available {
                    0 => format!("{sku} is out of stock."),
                    n => format!("Only {n} of {sku} are in stock; your cart has {wanted}."),
                };
                mismatches.push(mismatch(
                    MismatchKind::Availability,
                    message,
                    Some(wanted.to_string()),
                    Some(quoted.available.to_string()),
                ));
            }
        }

        lines.push(VerifiedLine {
            sku: sku.clone(),
            quantity: line.quantity,
            unit_price: Some(unit),
            line_total: Some(Money::new(quoted.line_amount, currency)),
            available: Some(quoted.available),
        });
    }

    let total = Money::new(quote.total_amount, currency);
    let shown = cart.displayed_total;
    if shown.currency != currency {
        mismatches.push(Mismatch {
            sku: None,
            kind: MismatchKind::Currency,
            message: format!(
                "The total was shown in {}, but this checkout is in {currency}. Please reload the page.",
                shown.currency
            ),
            displayed: Some(shown.currency.code().to_string()),
            authoritative: Some(currency.code().to_string()),
        });
    } else if shown.minor != total.minor {
        mismatches.push(Mismatch {
            sku: None,
            kind: MismatchKind::Total,
            message: format!("The order total is now {total}, not {shown}."),
            displayed: Some(shown.decimal()),
            authoritative: Some(total.decimal()),
        });
    }

    Verification {
        ok: mismatches.is_empty(),
        total,
        lines,
        mismatches,
        checked_at,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_kind_is_exported_from_the_start() {
        use MismatchKind::*;
        for kind in [
            Price,
            Availability,
            Total,
            UnknownSku,
            Currency,
            InvalidToken,
        ] {
            assert!(
                crate::telemetry::series::MISMATCH_KINDS.contains(&(kind.name(), kind.entity())),
                "{kind:?}"
            );
        }
    }
    use crate::domain::{Currency, QuotedLine};

    const EUR: Currency = Currency::EUR;

    fn usd() -> Currency {
        Currency::from_code("USD").unwrap()
    }

    fn cart_line(sku: &str, quantity: u32, minor: i64) -> CartLine {
        CartLine {
            sku: sku.into(),
            quantity,
            displayed: Money::new(minor, EUR),
            token: None,
        }
    }

    fn quoted(sku: &str, quantity: u32, unit: i64, available: u32) -> Option<QuotedLine> {
        Some(QuotedLine {
            sku: sku.into(),
            quantity,
            unit_amount: unit,
            line_amount: unit * i64::from(quantity),
            available,
            price_version: 2,
            inventory_version: 2,
        })
    }

    fn quote(lines: Vec<Option<QuotedLine>>) -> Quote {
        Quote {
            segment: "default".into(),
            currency: EUR,
            total_amount: lines.iter().flatten().map(|l| l.line_amount).sum(),
            lines,
            quoted_at: Timestamp(0),
        }
    }

    fn check(lines: Vec<CartLine>, total: Money, quote: &Quote) -> Verification {
        let cart = Cart {
            currency: EUR,
            lines,
            displayed_total: total,
        };
        let verdicts = vec![TokenVerdict::Absent; cart.lines.len()];
        compare(&cart, quote, &verdicts, Timestamp(1))
    }

    fn kinds(v: &Verification) -> Vec<MismatchKind> {
        v.mismatches.iter().map(|m| m.kind).collect()
    }

    #[test]
    fn a_cart_that_matches_is_ok() {
        let q = quote(vec![quoted("A", 2, 1050, 10), quoted("B", 1, 99, 1)]);
        let v = check(
            vec![cart_line("A", 2, 1050), cart_line("B", 1, 99)],
            Money::new(2199, EUR),
            &q,
        );
        assert!(v.ok, "{v:?}");
        assert!(v.mismatches.is_empty());
        assert_eq!(v.total, Money::new(2199, EUR));
        assert_eq!(v.lines[0].line_total, Some(Money::new(2100, EUR)));
        assert_eq!(v.lines[1].available, Some(1));
    }

    #[test]
    fn a_changed_price_is_a_price_and_a_total_mismatch_with_both_values() {
        let q = quote(vec![quoted("A", 2, 1200, 10)]);
        let v = check(vec![cart_line("A", 2, 1050)], Money::new(2100, EUR), &q);
        assert!(!v.ok);
        assert_eq!(kinds(&v), [MismatchKind::Price, MismatchKind::Total]);
        let price = &v.mismatches[0];
        assert_eq!(price.sku.as_deref(), Some("A"));
        assert_eq!(price.displayed.as_deref(), Some("10.50"));
        assert_eq!(price.authoritative.as_deref(), Some("12.00"));
        assert!(
            price
                .message
                .contains("gone up from 10.50 EUR to 12.00 EUR"),
            "{}",
            price.message
        );
        let total = &v.mismatches[1];
        assert_eq!(total.sku, None);
        assert_eq!(total.displayed.as_deref(), Some("21.00"));
        assert_eq!(total.authoritative.as_deref(), Some("24.00"));
    }

    #[test]
    fn stock_is_checked_per_sku_across_lines() {
        let q = quote(vec![
            quoted("A", 3, 100, 5),
            quoted("A", 3, 100, 5),
            quoted("B", 1, 100, 0),
        ]);
        let v = check(
            vec![
                cart_line("A", 3, 100),
                cart_line("A", 3, 100),
                cart_line("B", 1, 100),
            ],
            Money::new(700, EUR),
            &q,
        );
        assert_eq!(
            kinds(&v),
            [MismatchKind::Availability, MismatchKind::Availability]
        );
        assert_eq!(v.mismatches[0].displayed.as_deref(), Some("6"));
        assert_eq!(v.mismatches[0].authoritative.as_deref(), Some("5"));
        assert_eq!(v.mismatches[1].sku.as_deref(), Some("B"));
        assert!(v.mismatches[1].message.contains("out of stock"));
    }

    #[test]
    fn an_unknown_sku_has_no_figures_and_is_left_out_of_the_total() {
        let q = quote(vec![quoted("A", 1, 500, 5), None]);
        let v = check(
            vec![cart_line("A", 1, 500), cart_line("GONE", 1, 300)],
            Money::new(800, EUR),
            &q,
        );
        assert_eq!(kinds(&v), [MismatchKind::UnknownSku, MismatchKind::Total]);
        assert_eq!(v.lines[1].unit_price, None);
        assert_eq!(v.total, Money::new(500, EUR));
    }

    #[test]
    fn another_currency_is_a_currency_mismatch_not_a_price_one() {
        let q = quote(vec![quoted("A", 1, 500, 5)]);
        let mut line = cart_line("A", 1, 540);
        line.displayed.currency = usd();
        let v = check(vec![line], Money::new(540, usd()), &q);
        assert_eq!(kinds(&v), [MismatchKind::Currency, MismatchKind::Currency]);
        assert_eq!(v.mismatches[0].displayed.as_deref(), Some("USD"));
        assert_eq!(v.mismatches[0].authoritative.as_deref(), Some("EUR"));
        assert_eq!(v.mismatches[1].sku, None);
    }

    #[test]
    fn tokens_must_verify_and_match_the_line_and_segment() {
        let tokens = PriceTokens::new(
            b"a-long-enough-secret-for-testing-1",
            None,
            Duration::from_secs(3600),
        )
        .unwrap();
        let now = Timestamp::now();
        let claims = |sku: &str, segment: &str, amount| super::super::token::Claims {
            sku: sku.into(),
            segment: segment.into(),
            currency: EUR,
            amount,
            price_version: 1,
            issued_at: now,
        };
        let with = |token: String| CartLine {
            token: Some(token),
            ..cart_line("A", 1, 500)
        };
        let verdict = |line: &CartLine| check_token(&tokens, line, "default", now);
        assert_eq!(verdict(&cart_line("A", 1, 500)), TokenVerdict::Absent);
        assert_eq!(
            verdict(&with(tokens.sign(&claims("A", "default", 500)))),
            TokenVerdict::Matches
        );
        for other in [
            claims("B", "default", 500),
            claims("A", "vip", 500),
            claims("A", "default", 400),
        ] {
            assert_eq!(
                verdict(&with(tokens.sign(&other))),
                TokenVerdict::ForSomethingElse,
                "{other:?}"
            );
        }
        assert_eq!(
            verdict(&with("v1.forged.token.x".into())),
            TokenVerdict::Unverifiable
        );
        let mut old = claims("A", "default", 500);
        old.issued_at = Timestamp(now.millis() - 7_200_000);
        assert_eq!(verdict(&with(tokens.sign(&old))), TokenVerdict::Expired);

        // A bad token is reported even when the price itself is right.
        let cart = Cart {
            currency: EUR,
            lines: vec![cart_line("A", 1, 500)],
            displayed_total: Money::new(500, EUR),
        };
        let q = quote(vec![quoted("A", 1, 500, 5)]);
        let v = compare(&cart, &q, &[TokenVerdict::ForSomethingElse], now);
        assert!(!v.ok);
        assert_eq!(kinds(&v), [MismatchKind::InvalidToken]);
        assert_eq!(v.mismatches[0].displayed.as_deref(), Some("5.00"));
    }
}
