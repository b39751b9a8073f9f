//! Custom scalars: `Decimal` (money amounts as strings, never floats) and
//! `DateTime` (RFC 3339 in UTC).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

use crate::domain::Timestamp;

/// A decimal number as a string, e.g. `"12.34"`. How many places are
/// allowed depends on the currency, so the check happens where the currency
/// is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(pub String);

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(Decimal(s)),
            // A JSON number would already have been through a float in
            // most clients; money must not be.
            Value::Number(_) => Err(InputValueError::custom(
                "Decimal must be a string such as \"12.34\", not a number",
            )),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// An instant, as RFC 3339 in UTC with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub Timestamp);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Timestamp::parse_rfc3339(s).map(DateTime).ok_or_else(|| {
                InputValueError::custom(format!("{s:?} is not an RFC 3339 timestamp"))
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}
