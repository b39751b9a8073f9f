//! jq expressions of a connector's routes (`items`, `map`, `next`) and
//! event maps, through jaq (pure Rust). Each is compiled once, when the
//! config loads, so a broken one is a config error with its line and
//! column, never a request-time surprise. Moat adds the functions commerce
//! data needs:
//!
//! - `minor_units($currency)`: an amount as the system wrote it (a decimal
//!   string, a JSON number's own text, or `{centAmount, fractionDigits}`)
//!   in the currency's integer minor units, exactly: never a float, never
//!   rounded; `minor_units` alone reads the currency from the object
//!   (`currencyCode` or `currency`);
//! - `epoch_millis`: an RFC 3339 time (any offset) as Unix milliseconds,
//!   for systems whose records carry a time but no version number.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::native::{Fun, bome, run, v};
use jaq_core::{Compiler, Ctx, Cv, RunPtr, ValXs, Vars, data};
use jaq_json::{Num, Val};

use crate::domain::Timestamp;
use crate::domain::{Currency, Written};

type Data = data::JustLut<Val>;

/// A compiled expression.
pub struct Jq {
    filter: jaq_core::Filter<Data>,
    /// The `$`-names it may read, in the order values are given to `run`.
    vars: &'static [&'static str],
}

impl std::fmt::Debug for Jq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jq").field("vars", &self.vars).finish()
    }
}

/// Why an expression does not compile, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JqError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for JqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl Jq {
    /// Compiles `code`, which may read the variables `vars` (`$segment`).
    pub fn compile(code: &str, vars: &'static [&'static str]) -> Result<Jq, JqError> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errors| {
                let (at, message) = match errors.into_iter().next().map(|(_, e)| e) {
                    Some(jaq_core::load::Error::Lex(lex)) => match lex.first() {
                        Some((expected, at)) => (*at, format!("expected {}", expected.as_str())),
                        None => ("", "cannot read it".to_string()),
                    },
                    Some(jaq_core::load::Error::Parse(parse)) => match parse.first() {
                        Some((expected, at)) => (*at, format!("expected {}", expected.as_str())),
                        None => ("", "cannot parse it".to_string()),
                    },
                    Some(jaq_core::load::Error::Io(_)) | None => {
                        ("", "modules cannot be loaded here".to_string())
                    }
                };
                located(code, at, message)
            })?;
        let filter = Compiler::default()
            .with_funs(
                jaq_core::funs::<Data>()
                    .chain(jaq_std::funs())
                    .chain(jaq_json::funs())
                    .chain(commerce()),
            )
            .with_global_vars(vars.iter().copied())
            .compile(modules)
            .map_err(|errors| {
                let (at, message) = errors
                    .into_iter()
                    .flat_map(|(_, e)| e)
                    .next()
                    .map(|(name, undefined)| {
                        (name, format!("{name} is not defined ({undefined:?})"))
                    })
                    .unwrap_or(("", "does not compile".to_string()));
                located(code, at, message.to_lowercase())
            })?;
        Ok(Jq { filter, vars })
    }

    /// Compiles `code` after `prelude` (a system's own `def`s, which every
    /// expression of it may call); a position is `code`'s own.
    pub fn compile_after(
        prelude: &str,
        code: &str,
        vars: &'static [&'static str],
    ) -> Result<Jq, JqError> {
        if prelude.trim().is_empty() {
            return Jq::compile(code, vars);
        }
        let lines = prelude.matches('\n').count() + 1;
        Jq::compile(&format!("{prelude}\n{code}"), vars).map_err(|e| JqError {
            line: e.line.saturating_sub(lines).max(1),
            ..e
        })
    }

    /// Every output for `input`, with `values` for the variables (in the
    /// order `compile` named them); the first error ends it.
    pub fn run(&self, input: Val, values: &[Val]) -> Result<Vec<Val>, String> {
        debug_assert_eq!(values.len(), self.vars.len());
        let vars = Vars::new(values.iter().cloned());
        let ctx = Ctx::<Data>::new(&self.filter.lut, vars);
        self.filter
            .id
            .run((ctx, input))
            .map(jaq_core::unwrap_valr)
            .map(|out| out.map_err(|e| error_text(&e)))
            .collect()
    }

    /// The single output for `input`; none or several is an error.
    pub fn run_one(&self, input: Val, values: &[Val]) -> Result<Val, String> {
        let mut out = self.run(input, values)?;
        match out.len() {
            1 => Ok(out.remove(0)),
            n => Err(format!("gave {n} results where one was expected")),
        }
    }
}

/// Reads JSON bytes as a jq value, keeping decimal numbers as written.
pub fn read(bytes: &[u8]) -> Result<Val, String> {
    jaq_json::read::parse_single(bytes).map_err(|e| format!("not JSON: {e}"))
}

/// A string as a jq value.
pub fn text(s: &str) -> Val {
    Val::from(s.to_string())
}

/// The text of a string value, or `None`.
pub fn as_text(v: &Val) -> Option<String> {
    match v {
        Val::TStr(bytes) | Val::BStr(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    }
}

/// `at` is a slice of `code` (jaq reports positions so); its line and column.
fn located(code: &str, at: &str, message: String) -> JqError {
    let offset = (at.as_ptr() as usize)
        .checked_sub(code.as_ptr() as usize)
        .filter(|o| *o <= code.len())
        .unwrap_or(code.len());
    let before = &code[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    JqError {
        line,
        column,
        message,
    }
}

fn error_text(e: &jaq_core::Error<Val>) -> String {
    let text = e.to_string();
    text.strip_prefix("cannot use ")
        .map_or(text.clone(), |rest| {
            format!("cannot use {}", rest.chars().take(200).collect::<String>())
        })
}

fn commerce() -> impl Iterator<Item = Fun<Data>> {
    let minor_units_in: RunPtr<Data> = minor_units_in;
    let minor_units: RunPtr<Data> = minor_units;
    let epoch_millis: RunPtr<Data> = epoch_millis;
    [
        run::<Data>(("minor_units", v(1), minor_units_in)),
        run::<Data>(("minor_units", v(0), minor_units)),
        run::<Data>(("epoch_millis", v(0), epoch_millis)),
    ]
    .into_iter()
}

fn fail<'a>(message: String) -> ValXs<'a, Val> {
    bome(Err(jaq_core::Error::str(message)))
}

/// `minor_units($currency)`.
fn minor_units_in<'a>(mut cv: Cv<'a, Data>) -> ValXs<'a, Val> {
    let currency = cv.0.pop_var();
    match as_text(&currency) {
        Some(code) => bome(in_minor_units(&cv.1, &code)),
        None => fail(format!(
            "minor_units: the currency {currency} is not a code"
        )),
    }
}

/// `minor_units`: the currency is in the amount's own object.
fn minor_units<'a>(cv: Cv<'a, Data>) -> ValXs<'a, Val> {
    let code = field(&cv.1, "currencyCode")
        .or_else(|| field(&cv.1, "currency"))
        .as_ref()
        .and_then(as_text);
    match code {
        Some(code) => bome(in_minor_units(&cv.1, &code)),
        None => fail(format!(
            "minor_units: {} names no currency (currencyCode or currency); give one: minor_units($currency)",
            short(&cv.1)
        )),
    }
}

fn in_minor_units(amount: &Val, code: &str) -> jaq_core::ValR<Val> {
    let currency = Currency::from_code(code).ok_or_else(|| {
        jaq_core::Error::str(format!(
            "minor_units: {code:?} is not a currency Moat knows"
        ))
    })?;
    let decimal;
    let written = match amount {
        Val::Num(Num::Float(_)) => {
            return Err(jaq_core::Error::str(format!(
                "minor_units: {amount} is a computed number; pass the amount as the system wrote it"
            )));
        }
        Val::Num(n) => {
            decimal = n.to_string();
            Written::Decimal(&decimal)
        }
        Val::TStr(_) => {
            decimal = as_text(amount).unwrap_or_default();
            Written::Decimal(&decimal)
        }
        Val::Obj(_) if field(amount, "centAmount").is_some() => {
            let whole = |name: &str| match field(amount, name) {
                Some(Val::Num(n)) => n.as_isize(),
                _ => None,
            };
            match (whole("centAmount"), whole("fractionDigits")) {
                (Some(units), Some(digits)) => Written::Minor {
                    units: units as i64,
                    fraction_digits: u32::try_from(digits).unwrap_or(u32::MAX),
                },
                _ => {
                    return Err(jaq_core::Error::str(format!(
                        "minor_units: {} needs whole centAmount and fractionDigits",
                        short(amount)
                    )));
                }
            }
        }
        Val::Obj(_) if field(amount, "amount").is_some() => {
            return in_minor_units(&field(amount, "amount").unwrap_or(Val::Null), code);
        }
        Val::Null => return Err(jaq_core::Error::str("minor_units: the amount is missing")),
        other => {
            return Err(jaq_core::Error::str(format!(
                "minor_units: {} is not an amount",
                short(other)
            )));
        }
    };
    currency
        .minor_units(written)
        .map(|minor| Val::Num(Num::from_integral(minor)))
        .map_err(|e| jaq_core::Error::str(format!("minor_units: {} {e}", short(amount))))
}

/// `epoch_millis`.
fn epoch_millis<'a>(cv: Cv<'a, Data>) -> ValXs<'a, Val> {
    let millis = as_text(&cv.1)
        .and_then(|t| Timestamp::parse_rfc3339(&t))
        .map(|t| Val::Num(Num::from_integral(t.millis())))
        .ok_or_else(|| {
            jaq_core::Error::str(format!(
                "epoch_millis: {} is not an RFC 3339 time",
                short(&cv.1)
            ))
        });
    bome(millis)
}

fn field(v: &Val, name: &str) -> Option<Val> {
    match v {
        Val::Obj(map) => map.get(&text(name)).cloned(),
        _ => None,
    }
}

/// A value shortened for a message.
fn short(v: &Val) -> String {
    let text = v.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(code: &str, input: &str) -> Result<String, String> {
        let jq = Jq::compile(code, &["$currency"]).map_err(|e| e.to_string())?;
        jq.run_one(read(input.as_bytes())?, &[text("EUR")])
            .map(|v| v.to_string())
    }

    #[test]
    fn money_is_exact_in_every_form_it_is_written() {
        for (input, want) in [
            ("19.99", "1999"),
            ("\"19.99\"", "1999"),
            ("0.1", "10"),
            ("7", "700"),
            (r#"{"centAmount": 1999, "fractionDigits": 2}"#, "1999"),
            (r#"{"centAmount": 0, "fractionDigits": 2}"#, "0"),
            (r#"{"centAmount": 1999, "fractionDigits": 0}"#, "199900"),
            (r#"{"centAmount": 19990, "fractionDigits": 3}"#, "1999"),
            (r#"{"amount": "12.90", "currency": "EUR"}"#, "1290"),
        ] {
            assert_eq!(
                one("minor_units($currency)", input).as_deref(),
                Ok(want),
                "{input}"
            );
        }
        assert_eq!(
            one(
                "minor_units",
                r#"{"centAmount": 1999, "fractionDigits": 0, "currencyCode": "JPY"}"#
            )
            .as_deref(),
            Ok("1999")
        );
        assert_eq!(
            one("minor_units", r#"{"amount": "1.999", "currency": "KWD"}"#).as_deref(),
            Ok("1999")
        );
        for (input, named) in [
            ("-1.00", "is negative"),
            ("null", "missing"),
            ("19.999", "more decimal places"),
            (
                r#"{"centAmount": 19991, "fractionDigits": 3}"#,
                "more decimal places",
            ),
            (r#"{"centAmount": -5, "fractionDigits": 2}"#, "is negative"),
            (
                r#"{"centAmount": 1.5, "fractionDigits": 2}"#,
                "whole centAmount",
            ),
            ("true", "not an amount"),
        ] {
            let refused = one("minor_units($currency)", input).unwrap_err();
            assert!(refused.contains(named), "{input}: {refused}");
        }
        let computed = one(". * 100 | minor_units($currency)", "0.1").unwrap_err();
        assert!(computed.contains("computed number"), "{computed}");
        let unnamed = one("minor_units", "\"1.00\"").unwrap_err();
        assert!(unnamed.contains("names no currency"), "{unnamed}");
    }

    #[test]
    fn times_become_epoch_millis() {
        assert_eq!(
            one("epoch_millis", "\"2026-01-01T01:00:00+01:00\"").as_deref(),
            Ok("1767225600000")
        );
        assert!(
            one("epoch_millis", "\"Tuesday\"")
                .unwrap_err()
                .contains("RFC 3339")
        );
    }

    #[test]
    fn a_bad_expression_is_refused_with_its_position() {
        let e = Jq::compile(".items[] | {sku: .id,\n  price: .amount +}", &[]).unwrap_err();
        assert_eq!((e.line, e.column), (2, 19), "{e}");
        let e = Jq::compile(".x | nosuch(1)", &[]).unwrap_err();
        assert_eq!((e.line, e.column), (1, 6), "{e}");
        assert!(e.message.contains("nosuch"), "{e}");
        let e = Jq::compile("{a: $segment}", &["$currency"]).unwrap_err();
        assert!(e.message.contains("$segment"), "{e}");
    }

    #[test]
    fn a_systems_defs_come_before_each_expression() {
        let defs = "def product: {sku: .code};\ndef twice: . * 2;";
        let jq = Jq::compile_after(defs, "product | .sku", &[]).unwrap();
        let out = jq.run_one(read(br#"{"code": "A-1"}"#).unwrap(), &[]);
        assert_eq!(out.unwrap().to_string(), r#""A-1""#);
        let e = Jq::compile_after(defs, ".x |\n  nosuch", &[]).unwrap_err();
        assert_eq!((e.line, e.column), (2, 3), "{e}");
    }

    #[test]
    fn decimals_pass_through_as_written() {
        assert_eq!(one("{p: .}", "19.990").as_deref(), Ok(r#"{"p":19.990}"#));
    }
}
