//! A shopper's side of checkout: what Moat showed (price, token, stock),
//! a cart built from it, and `verifyCheckout` with the bits of its answer
//! tests look at.

use serde_json::{Value, json};

use super::{Moat, cents, decimal};

pub const VERIFY: &str = r#"
mutation($input: VerifyCheckoutInput!) {
  verifyCheckout(input: $input) {
    ok
    total { amount currencyCode }
    lines { sku quantity unitPrice { amount } lineTotal { amount } available }
    mismatches { sku kind message displayed authoritative }
    checkedAt
  }
}"#;

pub const SHOWN: &str = r#"
query($sku: String!) {
  product(sku: $sku) {
    price { price { amount currencyCode } segment priceToken }
    availability { quantity }
  }
}"#;

/// A price as Moat showed it.
#[derive(Debug, Clone)]
pub struct Shown {
    pub sku: String,
    pub amount: String,
    pub token: String,
    pub available: i64,
}

pub async fn shown(moat: &Moat, token: Option<&str>, sku: &str) -> Shown {
    let vars = json!({ "sku": sku });
    let r = match token {
        Some(t) => moat.query_with_token(t, SHOWN, vars).await,
        None => moat.query(SHOWN, vars).await,
    };
    assert!(r.get("errors").is_none(), "{r}");
    let p = &r["data"]["product"];
    Shown {
        sku: sku.to_string(),
        amount: p["price"]["price"]["amount"]
            .as_str()
            .expect("amount")
            .into(),
        token: p["price"]["priceToken"].as_str().expect("token").into(),
        available: p["availability"]["quantity"].as_i64().expect("stock"),
    }
}

/// The first `n` skus with at least 5 in stock.
pub async fn skus_in_stock(moat: &Moat, n: usize) -> Vec<String> {
    let mut found = Vec::new();
    for i in 1..=60 {
        let sku = format!("SKU-{i:06}");
        if shown(moat, None, &sku).await.available >= 5 {
            found.push(sku);
        }
        if found.len() == n {
            return found;
        }
    }
    panic!("fewer than {n} skus in stock");
}

pub fn eur(amount: &str) -> Value {
    json!({ "amount": amount, "currencyCode": "EUR" })
}

/// A cart of `(shown price, quantity)`, with tokens, totalled as shown.
pub fn cart(lines: &[(&Shown, i64)]) -> Value {
    let total: i64 = lines.iter().map(|(s, q)| cents(&s.amount) * q).sum();
    json!({
        "currencyCode": "EUR",
        "lines": lines.iter().map(|(s, q)| json!({
            "sku": s.sku,
            "quantity": q,
            "displayedUnitPrice": eur(&s.amount),
            "priceToken": s.token,
        })).collect::<Vec<_>>(),
        "displayedTotal": eur(&decimal(total)),
    })
}

pub async fn verify(moat: &Moat, token: Option<&str>, input: Value) -> Value {
    let vars = json!({ "input": input });
    match token {
        Some(t) => moat.query_with_token(t, VERIFY, vars).await,
        None => moat.query(VERIFY, vars).await,
    }
}

pub fn mismatches(r: &Value) -> Vec<Value> {
    r["data"]["verifyCheckout"]["mismatches"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn kinds(r: &Value) -> Vec<String> {
    mismatches(r)
        .iter()
        .filter_map(|m| m["kind"].as_str().map(str::to_string))
        .collect()
}
