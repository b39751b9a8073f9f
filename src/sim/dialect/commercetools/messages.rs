//! Change events as commercetools sends them: a Subscription delivers
//! messages (or change notifications) to a queue, and a relay reading it
//! posts each payload to `/events/commercetools`, signed per Standard
//! Webhooks.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::super::super::Simulator;
use super::super::super::sign;
use super::super::super::wire::{CURRENCIES, SEGMENTS};
use super::super::{Change, Delivery};
use super::PROJECT;
use super::resources::{self, Kind};

/// `change` as a commercetools Subscription delivers it, posted by the
/// relay that reads the subscription's queue: the platform-format message
/// (fat) or change notification (thin) as the body, signed per Standard
/// Webhooks. Price and stock changes only: products come from the PIM in
/// this setup, so a product change sends nothing.
pub fn event(sim: &Simulator, change: &Change<'_>, secret: Option<&str>) -> Option<Delivery> {
    let sku = change.item.get("sku")?.as_str()?;
    let catalog = sim.read();
    let i = catalog.product_by_sku(sku)?;
    let now = resources::time(SystemTime::now());
    let (resource, version, identifiers, message) = match change.kind {
        "price.updated" => {
            let segment = change.item.get("segment")?.as_str()?;
            let currency = change.item.get("currency")?.as_str()?;
            let s = SEGMENTS.iter().position(|x| *x == segment)?;
            let c = CURRENCIES.iter().position(|x| *x == currency)?;
            let price = resources::price(&catalog, i, s, c, false);
            // The simulator keeps no history: the old price repeats the
            // new one (nothing reads it).
            let message = json!({"type": "ProductPriceChanged", "variantId": 1,
                                 "oldPrice": price, "newPrice": price, "staged": false});
            let resource = json!({"typeId": "product", "id": resources::uuid(Kind::Product, i)});
            let identifiers = json!({"key": sku, "slug": {"en": sku.to_lowercase()}});
            (
                resource,
                resources::product_version(&catalog, i),
                identifiers,
                message,
            )
        }
        "inventory.updated" => {
            let q = catalog.stock[i].available;
            let message = json!({"type": "InventoryEntryQuantitySet",
                                 "oldQuantityOnStock": q, "newQuantityOnStock": q,
                                 "oldAvailableQuantity": q, "newAvailableQuantity": q});
            let resource =
                json!({"typeId": "inventory-entry", "id": resources::uuid(Kind::Inventory, i)});
            let identifiers = json!({"sku": sku});
            (resource, catalog.stock[i].version, identifiers, message)
        }
        _ => return None,
    };
    drop(catalog);
    let mut body = if change.thin {
        json!({"notificationType": "ResourceUpdated", "projectKey": PROJECT,
               "resource": resource, "resourceUserProvidedIdentifiers": identifiers,
               "version": version, "oldVersion": version.saturating_sub(1),
               "modifiedAt": now})
    } else {
        json!({"notificationType": "Message", "projectKey": PROJECT, "id": change.id,
               "version": 1, "sequenceNumber": version, "resource": resource,
               "resourceVersion": version, "resourceUserProvidedIdentifiers": identifiers,
               "createdAt": now, "lastModifiedAt": now})
    };
    if let (Value::Object(fields), Value::Object(more)) = (&mut body, message)
        && !change.thin
    {
        fields.extend(more);
    }
    let body = body.to_string().into_bytes();
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let mut headers = vec![
        ("webhook-id".to_string(), change.id.to_string()),
        ("webhook-timestamp".to_string(), t.clone()),
    ];
    if let Some(secret) = secret {
        let signature = standard_webhooks(secret, change.id, &t, &body);
        headers.push(("webhook-signature".to_string(), signature));
    }
    Some(Delivery {
        path: "/events/commercetools".to_string(),
        headers,
        body,
    })
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{t}.{body}">`, the key a `whsec_`
/// secret's base64 or else the secret as it is.
pub(super) fn standard_webhooks(secret: &str, id: &str, t: &str, body: &[u8]) -> String {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let parts = [id.as_bytes(), b".", t.as_bytes(), b".", body];
    format!("v1,{}", STANDARD.encode(sign::hmac(&key, &parts)))
}
