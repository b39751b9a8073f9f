//! `[customers]`: signed-in shoppers (`Authorization: Bearer <customer
//! token>`), with opaque tokens the CRM resolves or JWTs Moat verifies.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, Section};

/// Signed-in shoppers (`Authorization: Bearer <customer token>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Customers {
    /// What a customer token is: `opaque` (the CRM says whose it is, by
    /// token) or `jwt` (signed by the shop's identity provider; Moat
    /// verifies it against the JWKS and asks the CRM for the customer by
    /// the id in `sub`, once per customer while it is cached).
    pub tokens: TokenKind,
    /// With `jwt`: where the identity provider publishes its keys (an
    /// http:// or https:// URL), fetched when first needed and again when a
    /// token names a key it does not hold (at most once per
    /// `jwks_min_interval`).
    pub jwks_url: Option<String>,
    /// With `jwt`, instead of `jwks_url`: a JWKS file, read at start and on
    /// every reload.
    pub jwks_file: Option<PathBuf>,
    /// With `jwt`: the `iss` every token must carry, exactly.
    pub issuer: Option<String>,
    /// With `jwt`: the audience every token must name in `aud` (a string,
    /// or one of a list).
    pub audience: Option<String>,
    /// With `jwt`: the signature algorithms accepted (`RS256`, `ES256`,
    /// `EdDSA`); a token's `alg` must be one of them and fit its key.
    /// `none` and shared-secret algorithms are never accepted.
    pub algorithms: Vec<JwtAlgorithm>,
    /// With `jwt`: how far the clocks of Moat and the identity provider may
    /// disagree when `exp` and `nbf` are checked.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// With `jwks_url`: the least time between two fetches of the JWKS for
    /// tokens naming an unknown key (the first such fetch after the
    /// initial one is not held back), so made-up key ids cannot become a
    /// flood of fetches.
    #[serde(with = "humantime_serde")]
    pub jwks_min_interval: Duration,
    /// With `jwks_url`: keys fetched longer ago than this are fetched again
    /// by the next token that uses them (the held keys stay if that
    /// fails), so a key the provider withdrew stops verifying.
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    /// Longer tokens are refused before anything is decoded or asked
    /// (opaque tokens are held to 512 bytes whatever this says).
    pub max_token_bytes: usize,
    /// CRM lookups per second (per replica) for opaque tokens never seen
    /// before, per client address (`[server] trusted_proxies` says when
    /// the address is the one a proxy names; an IPv6 client counts by its
    /// /64); tokens already cached are not limited by this. Beyond it, a
    /// new token's customer fields fail with RATE_LIMITED, so a flood of
    /// made-up tokens from one address cannot spend the CRM's limit or
    /// lock out shoppers at other addresses. (A JWT reaches the CRM only
    /// once its signature is verified, so JWTs are not limited by this.)
    pub unknown_token_rps: u32,
    pub unknown_token_burst: u32,
    /// Most client addresses tracked at once for that limit (about 50
    /// bytes each). An address whose allowance has refilled is dropped
    /// when room is needed; past this many busy ones, addresses not yet
    /// tracked share one allowance of `unknown_token_rps`.
    pub unknown_token_addresses: usize,
}

/// What a customer token is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    #[default]
    Opaque,
    Jwt,
}

/// A JWT signature algorithm Moat verifies (RFC 7518, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 to 8192 bits.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// As a JWT header's `alg` spells it.
    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    pub fn parse(name: &str) -> Option<JwtAlgorithm> {
        [
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

impl Default for Customers {
    fn default() -> Self {
        Customers {
            tokens: TokenKind::Opaque,
            jwks_url: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            algorithms: vec![
                JwtAlgorithm::ES256,
                JwtAlgorithm::EdDSA,
                JwtAlgorithm::RS256,
            ],
            clock_skew: Duration::from_secs(60),
            jwks_min_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(3600),
            max_token_bytes: 8192,
            unknown_token_rps: 10,
            unknown_token_burst: 20,
            unknown_token_addresses: 10_000,
        }
    }
}

/// Every key applies at once (the limiter and the JWT verifier are rebuilt
/// from the section; a JWKS file is read again).
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
        p.check(
            (512..=65_536).contains(&self.max_token_bytes),
            "max_token_bytes",
            "must be between 512 and 65536",
        );
        if let Some(url) = &self.jwks_url {
            let http_url =
                reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            p.check(
                http_url,
                "jwks_url",
                format!("{:?} is not an http:// or https:// URL", super::redact(url)),
            );
        }
        if let Some(file) = &self.jwks_file {
            p.check(
                !file.as_os_str().is_empty(),
                "jwks_file",
                "must name a file (leave it out to use jwks_url)",
            );
        }
        for (key, value) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if let Some(value) = value {
                p.check(!value.trim().is_empty(), key, "must not be empty");
            }
        }
        p.check(
            !self.algorithms.is_empty(),
            "algorithms",
            "name at least one of RS256, ES256, EdDSA",
        );
        let mut seen = HashSet::new();
        for (i, algorithm) in self.algorithms.iter().enumerate() {
            p.check(
                seen.insert(algorithm),
                &format!("algorithms[{i}]"),
                format!("{} is listed twice", algorithm.name()),
            );
        }
        p.check(
            self.clock_skew <= Duration::from_secs(300),
            "clock_skew",
            "must be at most 5m: a token would outlive its exp by that much",
        );
        p.check(
            (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.jwks_min_interval),
            "jwks_min_interval",
            "must be between 1s and 1h",
        );
        p.check(
            (Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600))
                .contains(&self.jwks_max_age),
            "jwks_max_age",
            "must be between 1s and 7d",
        );
        if self.tokens == TokenKind::Jwt {
            match (&self.jwks_url, &self.jwks_file) {
                (None, None) => p.report(
                    "jwks_url",
                    "tokens = \"jwt\" needs the identity provider's keys: set jwks_url or jwks_file",
                ),
                (Some(_), Some(_)) => p.report(
                    "jwks_file",
                    "give jwks_url or jwks_file, not both",
                ),
                _ => {}
            }
            p.check(
                self.issuer.is_some(),
                "issuer",
                "tokens = \"jwt\" needs the issuer every token must name (`iss`)",
            );
            p.check(
                self.audience.is_some(),
                "audience",
                "tokens = \"jwt\" needs the audience every token must name (`aud`)",
            );
        }
    }

    fn with_live(&self, new: &Self) -> Self {
        new.clone()
    }
}

/// With JWTs the CRM is asked for customers by id: a customers owner
/// that speaks its own API (`protocol = "rest"`) needs that route.
pub(super) fn problems_with(
    customers: &Customers,
    systems: &super::Systems,
    owners: &crate::vocab::Owners,
    p: &mut Problems,
) {
    if customers.tokens != TokenKind::Jwt {
        return;
    }
    let owner = owners.of(crate::vocab::Record::Customers);
    if let Some(system) = systems.get(owner.name())
        && system.protocol.as_deref() == Some("rest")
        && !system.routes.contains_key("customer_by_id")
    {
        p.report(
            "tokens",
            format!(
                "{owner} owns customers and speaks its own API: with JWTs it needs systems.{owner}.routes.customer_by_id"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(customers: &Customers) -> Vec<String> {
        let mut p = Problems::new("test");
        customers.problems(&mut p);
        p.into_vec().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn jwt_tokens_need_keys_an_issuer_and_an_audience() {
        let jwt = Customers {
            tokens: TokenKind::Jwt,
            ..Customers::default()
        };
        assert_eq!(problems(&jwt), ["jwks_url", "issuer", "audience"]);
        let complete = Customers {
            jwks_url: Some("https://id.example.com/.well-known/jwks.json".into()),
            issuer: Some("https://id.example.com/".into()),
            audience: Some("storefront".into()),
            ..jwt.clone()
        };
        assert!(problems(&complete).is_empty());
        let both = Customers {
            jwks_file: Some("jwks.json".into()),
            ..complete.clone()
        };
        assert_eq!(problems(&both), ["jwks_file"]);
        assert!(
            problems(&Customers::default()).is_empty(),
            "opaque needs none"
        );
    }

    #[test]
    fn algorithms_parse_as_their_header_names() {
        for algorithm in [
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ] {
            assert_eq!(JwtAlgorithm::parse(algorithm.name()), Some(algorithm));
        }
        assert_eq!(JwtAlgorithm::parse("none"), None);
        assert_eq!(JwtAlgorithm::parse("HS256"), None);
    }
}
