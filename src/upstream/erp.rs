//! ERP: prices per segment and currency, stock. Wire types and their checks.

use std::collections::HashMap;

use serde::Deserialize;

use super::contract::{self, Wire, non_empty, timestamp};
use super::{Client, Priority, in_chunks};
use crate::domain::{Currency, Price, Stock};
use crate::error::Error;

#[derive(Clone)]
pub struct Erp {
    client: Client,
}

impl Erp {
    pub fn new(client: Client) -> Erp {
        Erp { client }
    }

    /// `GET /erp/v1/prices?skus=&segment=&currency=`: prices keyed by sku.
    /// A price for another segment or currency than asked breaks the
    /// contract: serving it would show a shopper the wrong price.
    pub async fn prices(
        &self,
        skus: Vec<String>,
        segment: &str,
        currency: Currency,
        priority: Priority,
    ) -> Result<HashMap<String, Result<Price, Error>>, Error> {
        let system = self.client.system();
        in_chunks(skus, self.client.max_batch(), |chunk| async move {
            let joined = chunk.join(",");
            let query = [
                ("skus", joined.as_str()),
                ("segment", segment),
                ("currency", currency.code()),
            ];
            let reply = self
                .client
                .get("prices", "/erp/v1/prices", &query, priority)
                .await?;
            let checked = contract::parse_list::<WirePrice, _>(
                system,
                &reply.body,
                "sku",
                |p: &Price| p.sku.clone(),
                str::to_string,
            )?;
            Ok(checked
                .items
                .into_iter()
                .map(|(sku, price)| {
                    let price = price.and_then(|p| {
                        if p.segment == segment && p.currency == currency {
                            Ok(p)
                        } else {
                            Err(contract::violation(
                                system,
                                WirePrice::ENTITY,
                                format!(
                                    "asked for {segment}/{currency}, got {}/{}",
                                    p.segment, p.currency
                                ),
                            ))
                        }
                    });
                    (sku, price)
                })
                .collect())
        })
        .await
    }

    /// `GET /erp/v1/inventory?skus=`: stock keyed by sku.
    pub async fn inventory(
        &self,
        skus: Vec<String>,
        priority: Priority,
    ) -> Result<HashMap<String, Result<Stock, Error>>, Error> {
        in_chunks(skus, self.client.max_batch(), |chunk| async move {
            let joined = chunk.join(",");
            let reply = self
                .client
                .get(
                    "inventory",
                    "/erp/v1/inventory",
                    &[("skus", &joined)],
                    priority,
                )
                .await?;
            let checked = contract::parse_list::<WireStock, _>(
                self.client.system(),
                &reply.body,
                "sku",
                |s: &Stock| s.sku.clone(),
                str::to_string,
            )?;
            Ok(checked.into_map())
        })
        .await
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePrice {
    sku: String,
    segment: String,
    currency: String,
    amount: i64,
    #[serde(default)]
    compare_at_amount: Option<i64>,
    version: u64,
    updated_at: String,
}

impl Wire for WirePrice {
    type Domain = Price;
    const ENTITY: &'static str = "price";

    fn check(self) -> Result<Price, String> {
        let currency = Currency::from_code(&self.currency)
            .ok_or_else(|| format!("currency {:?} is not a known ISO 4217 code", self.currency))?;
        if self.amount < 0 {
            return Err(format!("amount {} is negative", self.amount));
        }
        if self.compare_at_amount.is_some_and(|a| a < 0) {
            return Err("compareAtAmount is negative".into());
        }
        Ok(Price {
            sku: non_empty("sku", self.sku)?,
            segment: non_empty("segment", self.segment)?,
            currency,
            amount: self.amount,
            compare_at: self.compare_at_amount,
            version: self.version,
            updated_at: timestamp("updatedAt", &self.updated_at)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStock {
    sku: String,
    available: i64,
    version: u64,
    updated_at: String,
}

impl Wire for WireStock {
    type Domain = Stock;
    const ENTITY: &'static str = "inventory";

    fn check(self) -> Result<Stock, String> {
        let available = u32::try_from(self.available)
            .map_err(|_| format!("available {} is out of range", self.available))?;
        Ok(Stock {
            sku: non_empty("sku", self.sku)?,
            available,
            version: self.version,
            updated_at: timestamp("updatedAt", &self.updated_at)?,
        })
    }
}
