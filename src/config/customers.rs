//! `[customers]`: signed-in shoppers (`Authorization: Bearer <customer
//! token>`).

use serde::{Deserialize, Serialize};

use super::{Problems, Section};

/// Signed-in shoppers (`Authorization: Bearer <customer token>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Customers {
    /// CRM lookups per second (per replica) for tokens never seen before,
    /// per client address (`[server] trusted_proxies` says when the
    /// address is the one a proxy names; an IPv6 client counts by its
    /// /64); tokens already cached are not limited by this. Beyond it, a
    /// new token's customer fields fail with RATE_LIMITED, so a flood of
    /// made-up tokens from one address cannot spend the CRM's limit or
    /// lock out shoppers at other addresses.
    pub unknown_token_rps: u32,
    pub unknown_token_burst: u32,
    /// Most client addresses tracked at once for that limit (about 50
    /// bytes each). An address whose allowance has refilled is dropped
    /// when room is needed; past this many busy ones, addresses not yet
    /// tracked share one allowance of `unknown_token_rps`.
    pub unknown_token_addresses: usize,
}

impl Default for Customers {
    fn default() -> Self {
        Customers {
            unknown_token_rps: 10,
            unknown_token_burst: 20,
            unknown_token_addresses: 10_000,
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
        p.check(
            (1..=10_000_000).contains(&self.unknown_token_addresses),
            "unknown_token_addresses",
            "must be between 1 and 10000000",
        );
    }

    fn with_live(&self, new: &Self) -> Self {
        new.clone()
    }
}
