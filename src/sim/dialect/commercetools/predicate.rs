//! Query predicates (`where=masterVariant(sku in :skus)`), the part of
//! commercetools' predicate language a connector uses to read records by
//! key: `and`, `or`, `not (…)`, parentheses, a field's nested predicate
//! (`variants(sku = "A")`), `in (…)` and `not in (…)`, `= != < > <= >=`,
//! `is defined`, `is not defined`, `is empty`, and input variables
//! (`:skus`, given as `var.skus`, repeated for a list).
//!
//! A predicate is evaluated against a resource as JSON: a field that holds
//! an array matches when any element does, as commercetools has it for
//! `variants(…)`.

use std::collections::HashMap;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    And(Box<Predicate>, Box<Predicate>),
    Or(Box<Predicate>, Box<Predicate>),
    Not(Box<Predicate>),
    Field(String, Condition),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Nested(Box<Predicate>),
    In { values: Vec<Literal>, negated: bool },
    Compare(Op, Literal),
    Defined(bool),
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    /// `:name`, filled from `var.name`.
    Var(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Var(String),
    Open,
    Close,
    Comma,
    Op(Op),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => s.extend(chars.next()),
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("a string is not closed".into()),
                    }
                }
                out.push(Token::Text(s));
            }
            '=' | '!' | '<' | '>' => {
                chars.next();
                let eq = chars.next_if_eq(&'=').is_some();
                out.push(Token::Op(match (c, eq) {
                    ('=', _) => Op::Eq,
                    ('!', true) => Op::Ne,
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    ('>', true) => Op::Ge,
                    _ => return Err("`!` must be followed by `=`".into()),
                }));
            }
            ':' => {
                chars.next();
                let name = word(&mut chars);
                if name.is_empty() {
                    return Err("`:` must be followed by a variable name".into());
                }
                out.push(Token::Var(name));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut n = String::new();
                while let Some(d) = chars.next_if(|d| d.is_ascii_digit() || "-.eE+".contains(*d)) {
                    n.push(d);
                }
                let parsed = n.parse().map_err(|_| format!("{n:?} is not a number"))?;
                out.push(Token::Number(parsed));
            }
            c if c.is_alphabetic() || c == '_' => out.push(Token::Word(word(&mut chars))),
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(out)
}

fn word(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut w = String::new();
    while let Some(c) = chars.next_if(|c| c.is_alphanumeric() || *c == '_' || *c == '.') {
        w.push(c);
    }
    w
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&mut self, name: &str) -> bool {
        let is = matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(name));
        if is {
            self.at += 1;
        }
        is
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == token => Ok(()),
            other => Err(format!("expected {what}, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Predicate, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Predicate::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Predicate, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Predicate::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Predicate, String> {
        if self.keyword("not") {
            self.expect(Token::Open, "`(` after `not`")?;
            let inner = self.or()?;
            self.expect(Token::Close, "`)`")?;
            return Ok(Predicate::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Token::Open) {
            self.next();
            let inner = self.or()?;
            self.expect(Token::Close, "`)`")?;
            return Ok(inner);
        }
        let field = match self.next() {
            Some(Token::Word(w)) => w,
            other => return Err(format!("expected a field name, found {other:?}")),
        };
        let condition = if self.peek() == Some(&Token::Open) {
            self.next();
            let inner = self.or()?;
            self.expect(Token::Close, "`)`")?;
            Condition::Nested(Box::new(inner))
        } else if self.keyword("in") {
            Condition::In {
                values: self.list()?,
                negated: false,
            }
        } else if self.keyword("not") {
            if !self.keyword("in") {
                return Err("expected `in` after `not`".into());
            }
            Condition::In {
                values: self.list()?,
                negated: true,
            }
        } else if self.keyword("is") {
            if self.keyword("empty") {
                Condition::Empty
            } else {
                let negated = self.keyword("not");
                if !self.keyword("defined") {
                    return Err("expected `defined` or `empty` after `is`".into());
                }
                Condition::Defined(!negated)
            }
        } else {
            match self.next() {
                Some(Token::Op(op)) => Condition::Compare(op, self.literal()?),
                other => return Err(format!("expected a condition on {field}, found {other:?}")),
            }
        };
        Ok(Predicate::Field(field, condition))
    }

    fn list(&mut self) -> Result<Vec<Literal>, String> {
        if let Some(Token::Var(name)) = self.peek().cloned() {
            self.next();
            return Ok(vec![Literal::Var(name)]);
        }
        self.expect(Token::Open, "`(` or a variable after `in`")?;
        let mut values = vec![self.literal()?];
        while self.peek() == Some(&Token::Comma) {
            self.next();
            values.push(self.literal()?);
        }
        self.expect(Token::Close, "`)`")?;
        Ok(values)
    }

    fn literal(&mut self) -> Result<Literal, String> {
        match self.next() {
            Some(Token::Text(s)) => Ok(Literal::Text(s)),
            Some(Token::Number(n)) => Ok(Literal::Number(n)),
            Some(Token::Var(v)) => Ok(Literal::Var(v)),
            Some(Token::Word(w)) if w == "true" || w == "false" => Ok(Literal::Bool(w == "true")),
            other => Err(format!("expected a value, found {other:?}")),
        }
    }
}

/// Parses one `where` parameter.
pub fn parse(text: &str) -> Result<Predicate, String> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
    };
    let predicate = parser.or()?;
    match parser.peek() {
        None => Ok(predicate),
        Some(t) => Err(format!("unexpected {t:?} after the predicate")),
    }
}

/// The input variables of a query (`var.NAME`, each maybe repeated).
pub type Vars = HashMap<String, Vec<String>>;

impl Predicate {
    /// Whether `resource` matches; a variable that was not given is an
    /// error, as the API answers.
    pub fn matches(&self, resource: &Value, vars: &Vars) -> Result<bool, String> {
        Ok(match self {
            Predicate::And(a, b) => a.matches(resource, vars)? && b.matches(resource, vars)?,
            Predicate::Or(a, b) => a.matches(resource, vars)? || b.matches(resource, vars)?,
            Predicate::Not(p) => !p.matches(resource, vars)?,
            Predicate::Field(name, condition) => {
                let field = resource.get(name).filter(|v| !v.is_null());
                match (condition, field) {
                    (Condition::Defined(want), found) => found.is_some() == *want,
                    (Condition::Empty, found) => {
                        found.is_none_or(|v| v.as_array().is_some_and(Vec::is_empty))
                    }
                    (_, None) => false,
                    (condition, Some(Value::Array(items))) => {
                        let mut any = false;
                        for item in items {
                            any |= condition.holds(item, vars)?;
                        }
                        any
                    }
                    (condition, Some(value)) => condition.holds(value, vars)?,
                }
            }
        })
    }
}

impl Condition {
    fn holds(&self, value: &Value, vars: &Vars) -> Result<bool, String> {
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        Ok(match self {
            Condition::Nested(p) => p.matches(value, vars)?,
            Condition::In { values, negated } => {
                let mut wanted = Vec::new();
                for literal in values {
                    wanted.extend(literal.texts(vars)?);
                }
                let found = text(value).is_some_and(|t| wanted.contains(&t));
                found != *negated
            }
            Condition::Compare(op, literal) => {
                let wanted = literal.texts(vars)?;
                let Some(wanted) = wanted.first() else {
                    return Ok(false);
                };
                let ordering = match (value.as_f64(), wanted.parse::<f64>()) {
                    (Some(a), Ok(b)) => a.partial_cmp(&b),
                    _ => text(value).map(|t| t.as_str().cmp(wanted.as_str())),
                };
                let Some(ordering) = ordering else {
                    return Ok(false);
                };
                match op {
                    Op::Eq => ordering.is_eq(),
                    Op::Ne => ordering.is_ne(),
                    Op::Lt => ordering.is_lt(),
                    Op::Gt => ordering.is_gt(),
                    Op::Le => ordering.is_le(),
                    Op::Ge => ordering.is_ge(),
                }
            }
            Condition::Defined(_) | Condition::Empty => false,
        })
    }
}

impl Literal {
    fn texts(&self, vars: &Vars) -> Result<Vec<String>, String> {
        Ok(match self {
            Literal::Text(s) => vec![s.clone()],
            Literal::Number(n) => vec![n.to_string()],
            Literal::Bool(b) => vec![b.to_string()],
            Literal::Var(name) => vars
                .get(name)
                .cloned()
                .ok_or_else(|| format!("the variable :{name} is not given (var.{name})"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &[&str])]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn skus_are_found_in_the_master_variant_or_any_variant() {
        let product =
            json!({"id": "p1", "masterVariant": {"sku": "A"}, "variants": [{"sku": "B"}]});
        let by = |text: &str, given: &Vars| parse(text).unwrap().matches(&product, given).unwrap();
        let none = Vars::new();
        assert!(by(r#"masterVariant(sku in ("A", "C"))"#, &none));
        assert!(by(
            r#"masterVariant(sku = "B") or variants(sku = "B")"#,
            &none
        ));
        assert!(!by(r#"masterVariant(sku = "B")"#, &none));
        let skus = vars(&[("skus", &["X", "B"])]);
        assert!(by(
            "masterVariant(sku in :skus) or variants(sku in :skus)",
            &skus
        ));
        assert!(by(r#"id = "p1" and not (masterVariant(sku = "Z"))"#, &none));
        assert!(by("supplyChannel is not defined and id is defined", &none));
        assert!(by(
            r#"id != "p2" and masterVariant(sku not in ("Q"))"#,
            &none
        ));
        let unknown = parse("masterVariant(sku in :nope)").unwrap();
        assert!(
            unknown
                .matches(&product, &none)
                .unwrap_err()
                .contains(":nope")
        );
    }

    #[test]
    fn bad_predicates_are_refused() {
        for bad in [
            "sku in",
            r#"sku = "A"#,
            "sku ! 3",
            r#"(sku = "A""#,
            r#"sku = "A" extra"#,
            "sku is purple",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
