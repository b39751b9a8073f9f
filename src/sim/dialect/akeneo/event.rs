//! Product changes as Akeneo's Events API sends them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::super::super::Simulator;
use super::super::super::sign::hmac_hex;
use super::super::{Change, Delivery};
use super::shape::{self, ProductDoc};

/// Where the simulated PIM says its events come from (`pim_source`).
const PIM_SOURCE: &str = "http://akeneo.simulator";

#[derive(Serialize)]
struct Delivered<'a> {
    events: [EventDoc<'a>; 1],
}

#[derive(Serialize)]
struct EventDoc<'a> {
    action: &'static str,
    event_id: &'a str,
    event_datetime: String,
    author: &'static str,
    author_type: &'static str,
    pim_source: &'static str,
    data: Resource<'a>,
}

#[derive(Serialize)]
struct Resource<'a> {
    resource: ProductDoc<'a>,
}

/// A product change as the Events API delivers it: `{"events": [...]}`
/// with the whole product as `data.resource`, to `/events/akeneo`,
/// signed over `{timestamp}.{body}`. Akeneo sends nothing for prices or
/// stock, which it does not hold; its events are always whole products.
pub fn event(sim: &Simulator, change: &Change<'_>, secret: Option<&str>) -> Option<Delivery> {
    if change.kind != "product.updated" {
        return None;
    }
    let id = change.item.get("id")?.as_str()?;
    let body = {
        let catalog = sim.read();
        let index = catalog.product_by_id(id)?;
        let delivered = Delivered {
            events: [EventDoc {
                action: "product.updated",
                event_id: change.id,
                event_datetime: shape::timestamp(SystemTime::now()),
                author: "simulator",
                author_type: "api",
                pim_source: PIM_SOURCE,
                data: Resource {
                    resource: ProductDoc {
                        base: None,
                        index,
                        product: &catalog.products[index],
                    },
                },
            }],
        };
        serde_json::to_vec(&delivered).ok()?
    };
    let mut headers = Vec::new();
    if let Some(secret) = secret {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let signature = hmac_hex(secret.as_bytes(), &[t.as_bytes(), b".", &body]);
        headers.push(("X-Akeneo-Request-Timestamp".to_owned(), t));
        headers.push(("X-Akeneo-Request-Signature".to_owned(), signature));
    }
    Some(Delivery {
        path: "/events/akeneo".to_owned(),
        headers,
        body,
    })
}
