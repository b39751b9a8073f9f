//! Money as Moat holds it: integer minor units and an ISO 4217 currency.
//! Decimal strings exist only at the edges (GraphQL `Decimal`, checkout
//! input); nothing here touches a float.

use std::fmt;

use crate::error::Error;
pub use crate::vocab::Currency;

impl Currency {
    /// Parses a decimal string such as `"12.34"` into minor units. At most the
    /// currency's minor digits are allowed (`"1.234"` is an error for EUR);
    /// fewer are padded (`"12.3"` is 1230). Negative amounts are refused:
    /// nothing Moat takes in is a negative price.
    pub fn parse_amount(self, text: &str) -> Result<i64, AmountError> {
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits_only(whole) || (text.contains('.') && !digits_only(fraction)) {
            return Err(AmountError::NotADecimal);
        }
        if fraction.len() > usize::from(self.minor_digits()) {
            return Err(AmountError::TooManyDigits(self));
        }
        let scale = 10i64.pow(u32::from(self.minor_digits()));
        let whole: i64 = whole.parse().map_err(|_| AmountError::TooLarge)?;
        let mut minor = 0i64;
        for (i, b) in fraction.bytes().enumerate() {
            let place = 10i64.pow(u32::from(self.minor_digits()) - 1 - i as u32);
            minor += i64::from(b - b'0') * place;
        }
        whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(minor))
            .ok_or(AmountError::TooLarge)
    }

    /// Formats minor units as a decimal string with exactly the minor digits.
    pub fn format_amount(self, minor: i64) -> String {
        let digits = usize::from(self.minor_digits());
        if digits == 0 {
            return minor.to_string();
        }
        let scale = 10i64.pow(u32::from(self.minor_digits()));
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        let scale = scale.unsigned_abs();
        format!("{sign}{}.{:0digits$}", abs / scale, abs % scale)
    }
}

/// An amount as another system writes it, taken exactly as written: a
/// decimal (a JSON string, or a JSON number's own text, never a float), or
/// whole minor units at some number of fraction digits (commercetools'
/// `centAmount` with `fractionDigits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written<'a> {
    Decimal(&'a str),
    Minor { units: i64, fraction_digits: u32 },
}

impl Currency {
    /// `amount` in this currency's minor units, exactly or not at all: a
    /// decimal with more places than the currency has, or minor units that
    /// do not divide evenly into it, is refused rather than rounded.
    pub fn minor_units(self, amount: Written<'_>) -> Result<i64, AmountError> {
        match amount {
            Written::Decimal(text) if text.starts_with('-') => Err(AmountError::Negative),
            Written::Decimal(text) => self.parse_amount(text),
            Written::Minor { units, .. } if units < 0 => Err(AmountError::Negative),
            Written::Minor {
                units,
                fraction_digits,
            } => {
                let ours = u32::from(self.minor_digits());
                let scale = |digits: u32| 10i64.checked_pow(digits).ok_or(AmountError::TooLarge);
                if fraction_digits <= ours {
                    units
                        .checked_mul(scale(ours - fraction_digits)?)
                        .ok_or(AmountError::TooLarge)
                } else {
                    let divisor = scale(fraction_digits - ours)?;
                    if units % divisor == 0 {
                        Ok(units / divisor)
                    } else {
                        Err(AmountError::TooManyDigits(self))
                    }
                }
            }
        }
    }
}

/// Why a decimal amount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("is not a decimal amount such as \"12.34\"")]
    NotADecimal,
    #[error("is negative")]
    Negative,
    #[error("has more decimal places than {0} allows ({digits})", digits = .0.minor_digits())]
    TooManyDigits(Currency),
    #[error("is too large")]
    TooLarge,
}

/// An amount in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    /// The decimal string shown to clients, e.g. `"12.34"`.
    pub fn decimal(&self) -> String {
        self.currency.format_amount(self.minor)
    }

    /// Parses a client's `{amount, currencyCode}`; `field` names the input
    /// field in the error.
    pub fn parse(field: &str, amount: &str, currency_code: &str) -> Result<Money, Error> {
        let currency = Currency::from_code(currency_code).ok_or_else(|| {
            Error::bad_input(
                &format!("{field}.currencyCode"),
                format!("unknown currency code {currency_code:?}"),
            )
        })?;
        let minor = currency
            .parse_amount(amount)
            .map_err(|e| Error::bad_input(&format!("{field}.amount"), format!("{amount:?} {e}")))?;
        Ok(Money { minor, currency })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.decimal(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_as_others_write_them_become_exact_minor_units() {
        let eur = Currency::EUR;
        let jpy = Currency::from_code("JPY").unwrap();
        let kwd = Currency::from_code("KWD").unwrap();
        let minor = |units, fraction_digits| Written::Minor {
            units,
            fraction_digits,
        };
        assert_eq!(eur.minor_units(Written::Decimal("19.99")), Ok(1999));
        assert_eq!(eur.minor_units(Written::Decimal("0.1")), Ok(10));
        assert_eq!(eur.minor_units(Written::Decimal("7")), Ok(700));
        assert_eq!(eur.minor_units(minor(1999, 2)), Ok(1999));
        assert_eq!(eur.minor_units(minor(1999, 0)), Ok(199_900));
        assert_eq!(eur.minor_units(minor(19_990, 3)), Ok(1999));
        assert_eq!(jpy.minor_units(minor(1999, 0)), Ok(1999));
        assert_eq!(kwd.minor_units(minor(1999, 2)), Ok(19_990));
        assert_eq!(kwd.minor_units(Written::Decimal("1.999")), Ok(1999));
        assert_eq!(
            eur.minor_units(minor(19_991, 3)),
            Err(AmountError::TooManyDigits(eur)),
            "never rounded"
        );
        assert_eq!(
            eur.minor_units(Written::Decimal("19.999")),
            Err(AmountError::TooManyDigits(eur))
        );
        assert_eq!(
            eur.minor_units(Written::Decimal("-1.00")),
            Err(AmountError::Negative)
        );
        assert_eq!(eur.minor_units(minor(-1, 2)), Err(AmountError::Negative));
        assert_eq!(
            eur.minor_units(Written::Decimal("1e2")),
            Err(AmountError::NotADecimal)
        );
        assert_eq!(
            eur.minor_units(minor(i64::MAX, 0)),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn parses_and_formats_minor_units() {
        let eur = Currency::EUR;
        assert_eq!(eur.parse_amount("12.34"), Ok(1234));
        assert_eq!(eur.parse_amount("12.3"), Ok(1230));
        assert_eq!(eur.parse_amount("12"), Ok(1200));
        assert_eq!(eur.parse_amount("0.05"), Ok(5));
        assert_eq!(eur.format_amount(1234), "12.34");
        assert_eq!(eur.format_amount(5), "0.05");
        assert_eq!(eur.format_amount(-5), "-0.05");
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(jpy.parse_amount("1200"), Ok(1200));
        assert_eq!(jpy.format_amount(1200), "1200");
        let bhd = Currency::from_code("BHD").unwrap();
        assert_eq!(bhd.format_amount(1005), "1.005");
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        let eur = Currency::EUR;
        assert_eq!(
            eur.parse_amount("1.234"),
            Err(AmountError::TooManyDigits(eur))
        );
        for bad in ["", ".5", "1.", "-1", "1e3", "12,34", " 1", "abc", "1.2.3"] {
            assert_eq!(
                eur.parse_amount(bad),
                Err(AmountError::NotADecimal),
                "{bad:?}"
            );
        }
        assert_eq!(
            eur.parse_amount("99999999999999999999"),
            Err(AmountError::TooLarge)
        );
        assert!(Currency::from_code("XXX").is_none());
    }

    #[test]
    fn money_parse_names_the_field() {
        let err = Money::parse("displayedTotal", "1.234", "EUR").unwrap_err();
        assert!(err.message().starts_with("displayedTotal.amount"), "{err}");
        let err = Money::parse("lines[0].displayedUnitPrice", "1.00", "XXX").unwrap_err();
        assert!(
            err.message()
                .starts_with("lines[0].displayedUnitPrice.currencyCode")
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any text is an amount or a clear refusal; never a panic.
            #[test]
            fn any_text_is_parsed_or_refused(text in ".{0,24}", code in "[A-Z]{3}") {
                let _ = Money::parse("amount", &text, &code);
                for currency in Currency::all().iter().copied() {
                    let _ = currency.parse_amount(&text);
                }
            }

            /// What Moat shows reads back as the same minor units.
            #[test]
            fn formatted_amounts_read_back(minor in 0i64..=i64::MAX) {
                for currency in Currency::all().iter().copied() {
                    let text = currency.format_amount(minor);
                    prop_assert_eq!(currency.parse_amount(&text), Ok(minor));
                }
            }
        }
    }
}
