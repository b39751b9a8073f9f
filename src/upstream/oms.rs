//! OMS: orders by id. Wire type and its check.

use serde::Deserialize;

use super::contract::{self, Wire, non_empty, timestamp};
use super::{Ask, Client, Priority};
use crate::domain::{Currency, Order, OrderLine};
use crate::error::Error;

/// The order states protocol v1 defines.
const STATUSES: [&str; 4] = ["PLACED", "SHIPPED", "DELIVERED", "CANCELLED"];

#[derive(Clone)]
pub struct Oms {
    client: Client,
}

impl Oms {
    pub fn new(client: Client) -> Oms {
        Oms { client }
    }

    /// `GET /oms/v1/orders/{id}`: the order, whoever it belongs to (the
    /// caller checks ownership), or `None` when there is no such order.
    pub async fn order(&self, id: &str, priority: Priority) -> Result<Option<Order>, Error> {
        let key = id.to_string();
        let reply = self.client.read(Ask::Order(&key), priority).await?;
        if reply.is_not_found() {
            return Ok(None);
        }
        let order = contract::parse_one::<WireOrder>(self.client.boundary(), &reply.body)?;
        if order.id != id {
            return Err(contract::violation(
                self.client.boundary(),
                WireOrder::ENTITY,
                Some(id),
                format!("asked for order {id:?}, got {:?}", order.id),
            ));
        }
        Ok(Some(order))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireOrder {
    id: String,
    customer_id: String,
    status: String,
    currency: String,
    total_amount: i64,
    lines: Vec<WireOrderLine>,
    placed_at: String,
    version: u64,
    updated_at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireOrderLine {
    sku: String,
    quantity: i64,
    unit_amount: i64,
}

impl Wire for WireOrder {
    type Domain = Order;
    const ENTITY: &'static str = "order";

    fn check(self) -> Result<Order, String> {
        let currency = Currency::from_code(&self.currency)
            .ok_or_else(|| format!("currency {:?} is not a known ISO 4217 code", self.currency))?;
        if !STATUSES.contains(&self.status.as_str()) {
            return Err(format!(
                "status {:?} is not one of {STATUSES:?}",
                self.status
            ));
        }
        let lines = self
            .lines
            .into_iter()
            .map(|l| {
                let quantity = u32::try_from(l.quantity)
                    .ok()
                    .filter(|q| *q > 0)
                    .ok_or_else(|| format!("quantity {} is out of range", l.quantity))?;
                if l.unit_amount < 0 {
                    return Err(format!("unitAmount {} is negative", l.unit_amount));
                }
                Ok(OrderLine {
                    sku: non_empty("sku", l.sku)?,
                    quantity,
                    unit_amount: l.unit_amount,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let sum = lines.iter().try_fold(0i64, |sum, l| {
            l.unit_amount
                .checked_mul(i64::from(l.quantity))
                .and_then(|a| sum.checked_add(a))
        });
        // A customer is shown the total: one that disagrees with its own
        // lines is a broken payload, not something to display.
        if sum != Some(self.total_amount) {
            return Err(format!(
                "totalAmount {} is not the sum of the lines",
                self.total_amount
            ));
        }
        Ok(Order {
            id: non_empty("id", self.id)?,
            customer_id: non_empty("customerId", self.customer_id)?,
            status: self.status,
            currency,
            total_amount: self.total_amount,
            lines,
            placed_at: timestamp("placedAt", &self.placed_at)?,
            version: self.version,
            updated_at: timestamp("updatedAt", &self.updated_at)?,
        })
    }
}
