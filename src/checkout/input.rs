//! The cart a checkout service sends, and the checks it must pass before
//! Moat spends an ERP quote on it. Every problem is a `BAD_USER_INPUT`
//! whose message starts with the field's path (`lines[3].quantity: …`), so
//! a client can point at the field.

use crate::catalog::Selling;
use crate::domain::{Currency, Money, check_key};
use crate::error::Error;

use super::token::MAX_TOKEN_LEN;

/// `MoneyInput` as received: a decimal string and a currency code.
#[derive(Debug, Clone)]
pub struct MoneyInput {
    pub amount: String,
    pub currency_code: String,
}

/// One cart line as received.
#[derive(Debug, Clone)]
pub struct LineInput {
    pub sku: String,
    pub quantity: i32,
    pub displayed_unit_price: MoneyInput,
    pub price_token: Option<String>,
}

/// `VerifyCheckoutInput` as received.
#[derive(Debug, Clone)]
pub struct CartInput {
    pub currency_code: String,
    pub lines: Vec<LineInput>,
    pub displayed_total: MoneyInput,
}

/// How large a cart may be (`[checkout]` in config).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_quantity: u32,
    pub max_lines: usize,
}

/// A cart that passed every check: amounts in minor units, known
/// currencies. A line's or the total's currency may still differ from the
/// checkout's: that is a mismatch to report, not a malformed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    pub currency: Currency,
    pub lines: Vec<CartLine>,
    pub displayed_total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    pub sku: String,
    pub quantity: u32,
    pub displayed: Money,
    pub token: Option<String>,
}

/// Checks the whole input (stopping at the first problem, in field order).
pub fn validate(input: CartInput, selling: &Selling, limits: Limits) -> Result<Cart, Error> {
    // Known and offered: `Selling::currency` names `currencyCode` itself.
    let currency = selling.currency(Some(&input.currency_code))?;
    let count = input.lines.len();
    if !(1..=limits.max_lines).contains(&count) {
        return Err(Error::bad_input(
            "lines",
            format!("must hold 1 to {} lines, got {count}", limits.max_lines),
        ));
    }
    let mut lines = Vec::with_capacity(count);
    for (i, line) in input.lines.into_iter().enumerate() {
        let field = |name: &str| format!("lines[{i}].{name}");
        check_key(&line.sku).map_err(|problem| Error::bad_input(&field("sku"), problem))?;
        let quantity = u32::try_from(line.quantity)
            .ok()
            .filter(|q| (1..=limits.max_quantity).contains(q))
            .ok_or_else(|| {
                Error::bad_input(
                    &field("quantity"),
                    format!(
                        "must be between 1 and {}, got {}",
                        limits.max_quantity, line.quantity
                    ),
                )
            })?;
        let displayed = money(&field("displayedUnitPrice"), &line.displayed_unit_price)?;
        if line
            .price_token
            .as_ref()
            .is_some_and(|t| t.len() > MAX_TOKEN_LEN)
        {
            return Err(Error::bad_input(
                &field("priceToken"),
                format!("is longer than {MAX_TOKEN_LEN} characters"),
            ));
        }
        lines.push(CartLine {
            sku: line.sku,
            quantity,
            displayed,
            // An empty token is no token: checked on price alone.
            token: line.price_token.filter(|t| !t.is_empty()),
        });
    }
    let displayed_total = money("displayedTotal", &input.displayed_total)?;
    Ok(Cart {
        currency,
        lines,
        displayed_total,
    })
}

fn money(field: &str, input: &MoneyInput) -> Result<Money, Error> {
    Money::parse(field, &input.amount, &input.currency_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    fn selling() -> Selling {
        Selling {
            default_currency: Currency::EUR,
            currencies: vec![Currency::EUR, Currency::from_code("USD").unwrap()],
            default_segment: "default".into(),
            low_stock_threshold: 5,
        }
    }

    const LIMITS: Limits = Limits {
        max_quantity: 999,
        max_lines: 100,
    };

    fn eur(amount: &str) -> MoneyInput {
        MoneyInput {
            amount: amount.into(),
            currency_code: "EUR".into(),
        }
    }

    fn line(sku: &str, quantity: i32, amount: &str) -> LineInput {
        LineInput {
            sku: sku.into(),
            quantity,
            displayed_unit_price: eur(amount),
            price_token: None,
        }
    }

    fn cart(lines: Vec<LineInput>) -> CartInput {
        CartInput {
            currency_code: "EUR".into(),
            lines,
            displayed_total: eur("10.00"),
        }
    }

    /// The message of the input error, which must be BAD_USER_INPUT.
    fn refused(input: CartInput) -> String {
        let err = validate(input, &selling(), LIMITS).unwrap_err();
        assert_eq!(err.kind(), Kind::BadUserInput, "{err}");
        err.message().to_string()
    }

    #[test]
    fn a_good_cart_comes_out_in_minor_units() {
        let mut input = cart(vec![line("SKU-1", 2, "5"), line("SKU-2", 1, "0.99")]);
        input.lines[1].price_token = Some(String::new());
        input.lines[1].displayed_unit_price.currency_code = "USD".into();
        let cart = validate(input, &selling(), LIMITS).unwrap();
        assert_eq!(cart.currency, Currency::EUR);
        assert_eq!(cart.lines[0].displayed, Money::new(500, Currency::EUR));
        assert_eq!(cart.lines[0].quantity, 2);
        assert_eq!(cart.lines[1].displayed.minor, 99);
        assert_eq!(cart.lines[1].token, None, "an empty token is none");
        assert_eq!(cart.displayed_total, Money::new(1000, Currency::EUR));
    }

    #[test]
    fn every_problem_names_its_field() {
        let mut bad_currency = cart(vec![line("SKU-1", 1, "1.00")]);
        bad_currency.currency_code = "XXX".into();
        assert!(refused(bad_currency).starts_with("currencyCode: "));

        let mut not_offered = cart(vec![line("SKU-1", 1, "1.00")]);
        not_offered.currency_code = "GBP".into();
        assert!(refused(not_offered).starts_with("currencyCode: "));

        assert!(refused(cart(vec![])).starts_with("lines: "));
        let many = (0..10_000).map(|_| line("SKU-1", 1, "1.00")).collect();
        assert!(refused(cart(many)).starts_with("lines: "));

        let mut lines: Vec<LineInput> = (0..4).map(|_| line("SKU-1", 1, "1.00")).collect();
        lines[3].quantity = 0;
        assert!(refused(cart(lines.clone())).starts_with("lines[3].quantity: "));
        lines[3].quantity = 1000;
        assert!(refused(cart(lines.clone())).starts_with("lines[3].quantity: "));
        lines[3].quantity = -1;
        assert!(refused(cart(lines)).starts_with("lines[3].quantity: "));

        assert!(
            refused(cart(vec![line("SKU-1", 1, "1.234")]))
                .starts_with("lines[0].displayedUnitPrice.amount: ")
        );
        assert!(refused(cart(vec![line("SKU 1", 1, "1.00")])).starts_with("lines[0].sku: "));
        assert!(refused(cart(vec![line("", 1, "1.00")])).starts_with("lines[0].sku: "));

        let mut foreign = cart(vec![line("SKU-1", 1, "1.00")]);
        foreign.lines[0].displayed_unit_price.currency_code = "XXX".into();
        assert!(refused(foreign).starts_with("lines[0].displayedUnitPrice.currencyCode: "));

        let mut long_token = cart(vec![line("SKU-1", 1, "1.00")]);
        long_token.lines[0].price_token = Some("x".repeat(MAX_TOKEN_LEN + 1));
        assert!(refused(long_token).starts_with("lines[0].priceToken: "));

        let mut total = cart(vec![line("SKU-1", 1, "1.00")]);
        total.displayed_total = eur("1.234");
        assert!(refused(total).starts_with("displayedTotal.amount: "));
        let mut negative = cart(vec![line("SKU-1", 1, "1.00")]);
        negative.displayed_total = eur("-1.00");
        assert!(refused(negative).starts_with("displayedTotal.amount: "));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn money() -> impl Strategy<Value = MoneyInput> {
            (
                prop_oneof![
                    ".{0,8}",
                    "[0-9]{1,20}(\\.[0-9]{0,4})?",
                    Just("-1".to_string())
                ],
                prop_oneof!["[A-Z]{3}", Just("EUR".to_string()), Just("USD".to_string())],
            )
                .prop_map(|(amount, currency_code)| MoneyInput {
                    amount,
                    currency_code,
                })
        }

        fn line_input() -> impl Strategy<Value = LineInput> {
            (
                prop_oneof![".{0,10}", "SKU-[0-9]{6}"],
                any::<i32>(),
                money(),
                prop::option::of(".{0,20}"),
            )
                .prop_map(|(sku, quantity, displayed_unit_price, price_token)| {
                    LineInput {
                        sku,
                        quantity,
                        displayed_unit_price,
                        price_token,
                    }
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any cart is accepted or refused with BAD_USER_INPUT naming a
            /// field; never a panic.
            #[test]
            fn any_cart_is_checked_or_refused_by_field(
                currency_code in prop_oneof!["[A-Z]{3}", Just("EUR".to_string())],
                lines in prop::collection::vec(line_input(), 0..6),
                displayed_total in money(),
            ) {
                let input = CartInput { currency_code, lines, displayed_total };
                if let Err(e) = validate(input, &selling(), LIMITS) {
                    prop_assert_eq!(e.kind(), crate::error::Kind::BadUserInput);
                    let field = e.message().split(':').next().unwrap_or("");
                    prop_assert!(
                        ["currencyCode", "lines", "displayedTotal"]
                            .iter()
                            .any(|f| field.starts_with(f)),
                        "{}", e
                    );
                }
            }
        }
    }
}
