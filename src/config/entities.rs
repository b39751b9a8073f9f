//! `[entities]`: which system owns which record. The clients, the event
//! sources and reconciliation are built from it at start, so every key
//! needs a restart.

use serde::{Deserialize, Serialize};

use super::{Problems, Section, Systems};
use crate::vocab::{Owners, Record, System};

/// The ownership map: the system of record of each record, by name (a
/// `[systems.NAME]`, or one of `pim`, `erp`, `crm`, `oms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Entities {
    pub products: String,
    pub categories: String,
    pub prices: String,
    pub inventory: String,
    pub customers: String,
    pub orders: String,
}

impl Default for Entities {
    fn default() -> Self {
        Entities {
            products: "pim".into(),
            categories: "pim".into(),
            prices: "erp".into(),
            inventory: "erp".into(),
            customers: "crm".into(),
            orders: "oms".into(),
        }
    }
}

impl Entities {
    /// The ownership map these names make.
    pub fn owners(&self) -> Owners {
        Owners::new(|record| {
            System::named(match record {
                Record::Products => &self.products,
                Record::Categories => &self.categories,
                Record::Prices => &self.prices,
                Record::Inventory => &self.inventory,
                Record::Customers => &self.customers,
                Record::Orders => &self.orders,
            })
        })
    }

    /// Every owner must be a system: a table of `systems`, or a default one.
    pub(super) fn problems_with(&self, systems: &Systems, p: &mut Problems) {
        let owners = self.owners();
        for (record, owner) in Record::ALL.map(|r| (r, owners.of(r))) {
            p.check(
                systems.contains_key(owner.name()) || System::DEFAULTS.contains(&owner),
                &record.to_string(),
                format!(
                    "{:?} is neither a [systems.NAME] table nor one of pim, erp, crm, oms",
                    owner.name()
                ),
            );
        }
    }
}

/// Checked against `[systems]` by `problems_with`; nothing to check alone.
impl Section for Entities {
    fn problems(&self, _: &mut Problems) {}
}
