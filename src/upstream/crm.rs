//! CRM: who a customer token belongs to. Wire type and its check.
//!
//! The token is a credential: it travels only in the request path to the
//! CRM and is never logged, counted or echoed in an error.

use serde::Deserialize;

use super::contract::{self, Wire, non_empty, timestamp};
use super::{Ask, Client, Priority};
use crate::domain::Customer;
use crate::error::Error;

#[derive(Clone)]
pub struct Crm {
    client: Client,
}

impl Crm {
    pub fn new(client: Client) -> Crm {
        Crm { client }
    }

    /// `GET /crm/v1/customers/by-token/{token}`: the customer, or `None`
    /// when the CRM knows no such token.
    pub async fn customer_by_token(
        &self,
        token: &str,
        priority: Priority,
    ) -> Result<Option<Customer>, Error> {
        let token = token.to_string();
        let reply = self
            .client
            .read(Ask::Customer(&token), priority)
            .await
            .map_err(without_detail)?;
        if reply.is_not_found() {
            return Ok(None);
        }
        contract::parse_one::<WireCustomer>(self.client.boundary(), &reply.body).map(Some)
    }

    /// `GET /crm/v1/customers/{id}`: the customer, or `None` when the CRM
    /// knows no such id. For a customer whose token Moat verified itself
    /// (a JWT), which names the customer instead of asking the CRM whose
    /// it is.
    pub async fn customer_by_id(
        &self,
        id: &str,
        priority: Priority,
    ) -> Result<Option<Customer>, Error> {
        let id = id.to_string();
        let reply = self.client.read(Ask::CustomerById(&id), priority).await?;
        if reply.is_not_found() {
            return Ok(None);
        }
        let customer: Customer =
            contract::parse_one::<WireCustomer>(self.client.boundary(), &reply.body)?;
        if customer.id != id {
            // Signed in as one customer, priced as another: never.
            return Err(Error::unavailable(
                "crm answered the customer lookup with another customer",
            ));
        }
        Ok(Some(customer))
    }
}

/// A refusal (4xx) carries the start of the CRM's answer, which might
/// quote the token back: that message goes to logs and to the client, so
/// it is replaced. Timeouts and 5xx messages name no request detail.
fn without_detail(e: Error) -> Error {
    if e.is_retryable() {
        e
    } else {
        Error::unavailable("crm refused the customer lookup")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireCustomer {
    id: String,
    email: String,
    name: String,
    segment: String,
    version: u64,
    updated_at: String,
}

impl Wire for WireCustomer {
    type Domain = Customer;
    const ENTITY: &'static str = "customer";

    fn check(self) -> Result<Customer, String> {
        // Checked for the contract only: the timestamp is not kept.
        timestamp("updatedAt", &self.updated_at)?;
        Ok(Customer {
            id: non_empty("id", self.id)?,
            email: self.email,
            name: self.name,
            // The segment picks the prices a customer sees: an empty one
            // must not quietly become some default.
            segment: non_empty("segment", self.segment)?,
            version: self.version,
        })
    }
}
