//! `[customers]`: signed-in shoppers (`Authorization: Bearer <customer
//! token>`).

use serde::{Deserialize, Serialize};

use super::{Problems, Section};

/// Signed-in shoppers (`Authorization: Bearer <customer token>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Customers {
    /// CRM lookups per second (per replica) for tokens never seen before;
    /// tokens already cached are not limited by this. Beyond it, a new
    /// token's customer fields fail with RATE_LIMITED, so a flood of
    /// made-up tokens cannot spend the CRM's limit.
    pub unknown_token_rps: u32,
    pub unknown_token_burst: u32,
}

impl Default for Customers {
    fn default() -> Self {
        Customers {
            unknown_token_rps: 10,
            unknown_token_burst: 20,
        }
    }
}

/// Every key applies at once (the limiter is rebuilt from the section).
impl Section for Customers {
    fn problems(&self, p: &mut Problems) {
        p.check(
            self.unknown_token_rps >= 1 && self.unknown_token_burst >= 1,
            "unknown_token_rps",
            "unknown_token_rps and unknown_token_burst must be at least 1",
        );
    }

    fn with_live(&self, new: &Self) -> Self {
        new.clone()
    }
}
