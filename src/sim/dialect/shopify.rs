//! The shopify dialect (to be built).

use axum::Router;

use super::super::Simulator;
use super::{Change, Delivery};

pub fn routes(_sim: &Simulator) -> Router<Simulator> {
    Router::new()
}

pub fn event(_sim: &Simulator, _change: &Change<'_>, _secret: Option<&str>) -> Option<Delivery> {
    None
}
