//! Change events as a system of record sends them: Moat's envelope, signed
//! with `Moat-Signature` (or not, or wrongly), posted to a gateway.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{EVENTS_SECRET, Moat};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// RFC 3339 for unix seconds `t` (UTC).
pub fn rfc3339(t: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(t)).to_string()
}

/// A fat `price.updated` event for one price cell.
pub fn price_event(id: &str, sku: &str, amount: i64, version: u64) -> Value {
    json!({
        "id": id,
        "type": "price.updated",
        "occurredAt": rfc3339(now()),
        "source": "erp",
        "data": {
            "sku": sku, "segment": "default", "currency": "EUR", "amount": amount,
            "version": version, "updatedAt": rfc3339(now()),
        },
    })
}

/// A thin `price.updated` event for one price cell.
pub fn thin_price_event(id: &str, sku: &str, version: u64) -> Value {
    json!({
        "id": id,
        "type": "price.updated",
        "occurredAt": rfc3339(now()),
        "entity": { "kind": "price", "id": sku, "segment": "default", "currency": "EUR" },
        "version": version,
    })
}

/// Posts `body` to `/events/{source}`, signed with the test secret at `t`;
/// the status and the JSON answer.
pub async fn post_signed(moat: &Moat, source: &str, body: &[u8], t: u64) -> (u16, Value) {
    let signature = moat::events::moat_signature_for(EVENTS_SECRET.as_bytes(), t, body);
    post(
        moat,
        source,
        body.to_vec(),
        &[("moat-signature", signature)],
        "application/json",
    )
    .await
}

/// Posts an event with the test signature, now.
pub async fn send(moat: &Moat, source: &str, event: &Value) -> (u16, Value) {
    post_signed(moat, source, event.to_string().as_bytes(), now()).await
}

/// Posts raw bytes with the given headers.
pub async fn post(
    moat: &Moat,
    source: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
    content_type: &str,
) -> (u16, Value) {
    let mut request = moat
        .http
        .post(format!("{}/events/{source}", moat.url))
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("event post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The amount (decimal string) and `asOf` of `sku`'s default EUR price.
pub async fn shown_price(moat: &Moat, sku: &str) -> (String, String) {
    let r = moat
        .query(
            "query($sku: String!) { product(sku: $sku) { price { price { amount } freshness { asOf } } } }",
            json!({ "sku": sku }),
        )
        .await;
    let price = &r["data"]["product"]["price"];
    (
        price["price"]["amount"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        price["freshness"]["asOf"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}
