//! The signed-in customer and their orders as the storefront sees them.
//! The resolvers that return them (`Query.viewer`, `Query.order`) are in
//! the parent module; who may see what is decided in `customers`.

use async_graphql::{ID, Object, SimpleObject};

use super::scalars::DateTime;
use super::types::Money;
use crate::domain::{self, Money as DomainMoney};

/// A signed-in shopper.
pub struct Customer(pub domain::Customer);

#[Object]
impl Customer {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn email(&self) -> &str {
        &self.0.email
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The price segment this customer is priced in (`default`,
    /// `wholesale`, `vip`, …).
    async fn segment(&self) -> &str {
        &self.0.segment
    }
}

/// An order from the order management system.
pub struct Order(pub domain::Order);

#[Object]
impl Order {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// `PLACED`, `SHIPPED`, `DELIVERED` or `CANCELLED`.
    async fn status(&self) -> &str {
        &self.0.status
    }

    async fn total(&self) -> Money {
        DomainMoney::new(self.0.total_amount, self.0.currency).into()
    }

    async fn lines(&self) -> Vec<OrderLine> {
        self.0
            .lines
            .iter()
            .map(|l| OrderLine {
                sku: l.sku.clone(),
                quantity: i32::try_from(l.quantity).unwrap_or(i32::MAX),
                unit_price: DomainMoney::new(l.unit_amount, self.0.currency).into(),
            })
            .collect()
    }

    async fn placed_at(&self) -> DateTime {
        DateTime(self.0.placed_at)
    }
}

#[derive(SimpleObject)]
pub struct OrderLine {
    sku: String,
    quantity: i32,
    /// What was paid per unit.
    unit_price: Money,
}
