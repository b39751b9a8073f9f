//! Price tokens: Moat's signed snapshot of a price it showed a shopper
//! (`Product.price.priceToken`), so `verifyCheckout` can tell a price Moat
//! served from one a client made up. Issued on the read path (`graphql`),
//! verified on the checkout path.
//!
//! Format: `v1.<key id>.<payload>.<mac>`, payload and MAC in unpadded
//! base64url. The payload is the postcard encoding of [`Claims`]; the MAC is
//! HMAC-SHA256 over everything before the last dot, so the version and the
//! key id are signed too. The key id (a short hash of the secret) lets a
//! verifier pick between the current and the previous secret, which is how
//! a secret is rotated without failing every cart in flight.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Secrets;
use crate::domain::{Currency, Timestamp};
use crate::error::Error;
use crate::hex;

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";

/// How far ahead of this replica's clock an issue time may be: replicas'
/// clocks differ a little, a token from next week is forged.
const MAX_SKEW: Duration = Duration::from_secs(300);

/// Longest token accepted for parsing (a real one is about 150 bytes).
pub const MAX_TOKEN_LEN: usize = 1024;

/// What a token says Moat showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sku: String,
    pub segment: String,
    pub currency: Currency,
    /// Minor units.
    pub amount: i64,
    pub price_version: u64,
    pub issued_at: Timestamp,
}

/// Why a token does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a price token")]
    Malformed,
    #[error("signed with a key this gateway does not hold")]
    UnknownKey,
    #[error("the signature does not match")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("issued in the future")]
    IssuedInFuture,
}

/// One secret, ready to sign.
struct SigningKey {
    id: String,
    /// Keyed once; cloned per token (cheaper than keying again).
    mac: HmacSha256,
}

impl SigningKey {
    fn new(secret: &[u8]) -> Result<SigningKey, Error> {
        let mut id = Sha256::new();
        id.update(b"moat price token key id\0");
        id.update(secret);
        let id = hex::encode(&id.finalize()[..4]);
        let mac = HmacSha256::new_from_slice(secret)
            .map_err(|e| Error::internal(format!("price token key: {e}")))?;
        Ok(SigningKey { id, mac })
    }
}

/// Signs and verifies price tokens.
pub struct PriceTokens {
    current: SigningKey,
    /// Verifies only: the secret before the last rotation.
    previous: Option<SigningKey>,
    max_age: Duration,
}

impl fmt::Debug for PriceTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PriceTokens")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl PriceTokens {
    pub fn new(
        current: &[u8],
        previous: Option<&[u8]>,
        max_age: Duration,
    ) -> Result<PriceTokens, Error> {
        Ok(PriceTokens {
            current: SigningKey::new(current)?,
            previous: previous.map(SigningKey::new).transpose()?,
            max_age,
        })
    }

    /// From `MOAT_PRICE_TOKEN_SECRET` (and `_PREVIOUS_SECRET`). Without a
    /// secret the key is random for this process: the gateway works, but
    /// its tokens fail on other replicas and after a restart, so it says so.
    pub fn from_secrets(secrets: &Secrets, max_age: Duration) -> Result<PriceTokens, Error> {
        let previous = secrets.price_token_previous_secret.as_deref();
        let Some(current) = secrets.price_token_secret.as_deref() else {
            tracing::warn!(
                "MOAT_PRICE_TOKEN_SECRET is not set: price tokens are signed with a random \
                 per-process key and will not verify on other replicas or after a restart"
            );
            let mut key = [0u8; 32];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| Error::internal("the system random generator failed"))?;
            return PriceTokens::new(&key, previous.map(str::as_bytes), max_age);
        };
        for (name, secret) in [
            ("MOAT_PRICE_TOKEN_SECRET", Some(current)),
            ("MOAT_PRICE_TOKEN_PREVIOUS_SECRET", previous),
        ] {
            if secret.is_some_and(|s| s.len() < 32) {
                tracing::warn!("{name} is shorter than 32 bytes; use a long random value");
            }
        }
        PriceTokens::new(current.as_bytes(), previous.map(str::as_bytes), max_age)
    }

    /// The token for what Moat is showing.
    pub fn sign(&self, claims: &Claims) -> String {
        // Encoding a struct of strings and integers into a Vec cannot fail.
        let payload = postcard::to_allocvec(claims).unwrap_or_default();
        let signed = format!(
            "{VERSION}.{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(payload)
        );
        let tag = self
            .current
            .mac
            .clone()
            .chain_update(signed.as_bytes())
            .finalize()
            .into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The claims of a token this gateway (or one sharing its secrets)
    /// issued no longer than `max_age` before `now`.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut parts = signed.splitn(3, '.');
        let (Some(version), Some(key_id), Some(payload)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if version != VERSION {
            return Err(TokenError::Malformed);
        }
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or(TokenError::UnknownKey)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        // Constant time: how much of a forged MAC matched must not show.
        key.mac
            .clone()
            .chain_update(signed.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = postcard::from_bytes(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.issued_at > now.plus(MAX_SKEW) {
            return Err(TokenError::IssuedInFuture);
        }
        if claims.issued_at.age(now) > self.max_age {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn claims(at: Timestamp) -> Claims {
        Claims {
            sku: "SKU-000001".into(),
            segment: "wholesale".into(),
            currency: Currency::EUR,
            amount: 1999,
            price_version: 3,
            issued_at: at,
        }
    }

    fn tokens(secret: &str, previous: Option<&str>) -> PriceTokens {
        PriceTokens::new(secret.as_bytes(), previous.map(str::as_bytes), DAY).unwrap()
    }

    #[test]
    fn a_token_verifies_to_what_was_signed() {
        let t = tokens("a-long-enough-secret-for-testing-1", None);
        let now = Timestamp::now();
        let token = t.sign(&claims(now));
        assert!(token.starts_with("v1."), "{token}");
        assert_eq!(token.split('.').count(), 4);
        assert!(token.len() < 200, "compact: {token}");
        assert_eq!(t.verify(&token, now), Ok(claims(now)));
    }

    #[test]
    fn a_rotated_secret_still_verifies_and_an_unknown_one_does_not() {
        let now = Timestamp::now();
        let old = tokens("the-old-secret-0000000000000000000", None);
        let issued_before_rotation = old.sign(&claims(now));
        let rotated = tokens(
            "the-new-secret-1111111111111111111",
            Some("the-old-secret-0000000000000000000"),
        );
        assert_eq!(
            rotated.verify(&issued_before_rotation, now),
            Ok(claims(now))
        );
        let issued_after = rotated.sign(&claims(now));
        assert_eq!(rotated.verify(&issued_after, now), Ok(claims(now)));
        assert_eq!(
            old.verify(&issued_after, now),
            Err(TokenError::UnknownKey),
            "a replica without the new secret"
        );
        let stranger = tokens("someone-elses-secret-22222222222222", None);
        assert_eq!(
            stranger.verify(&issued_before_rotation, now),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_token_expires_after_max_age_and_cannot_come_from_the_future() {
        let t = tokens("a-long-enough-secret-for-testing-1", None);
        let issued = Timestamp::now();
        let token = t.sign(&claims(issued));
        assert!(t.verify(&token, issued.plus(DAY)).is_ok(), "at max age");
        assert_eq!(
            t.verify(&token, issued.plus(DAY + Duration::from_secs(1))),
            Err(TokenError::Expired)
        );
        let future = t.sign(&claims(issued.plus(Duration::from_secs(3600))));
        assert_eq!(t.verify(&future, issued), Err(TokenError::IssuedInFuture));
    }

    #[test]
    fn any_change_to_a_token_breaks_it() {
        let t = tokens("a-long-enough-secret-for-testing-1", None);
        let now = Timestamp::now();
        let token = t.sign(&claims(now));
        let parts: Vec<&str> = token.split('.').collect();

        // A cheaper price in the payload, signed with the old MAC.
        let mut cheaper = claims(now);
        cheaper.amount = 1;
        let forged_payload = URL_SAFE_NO_PAD.encode(postcard::to_allocvec(&cheaper).unwrap());
        let forged = format!("{}.{}.{forged_payload}.{}", parts[0], parts[1], parts[3]);
        assert_eq!(t.verify(&forged, now), Err(TokenError::BadSignature));

        // Every single-character change fails, whichever part it hits.
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            if altered != token {
                assert!(
                    t.verify(&altered, now).is_err(),
                    "changed at {i}: {altered}"
                );
            }
        }
        for bad in [
            "",
            "v1",
            "v1.x.y",
            "v2.a.b.c",
            "not a token",
            &"v1.".repeat(400),
        ] {
            assert!(t.verify(bad, now).is_err(), "{bad:?}");
        }
        // The MAC is checked with the key the token names: a token signed
        // by one key cannot borrow the id of another.
        let other = tokens("another-secret-333333333333333333333", None);
        let theirs = other.sign(&claims(now));
        let relabelled =
            theirs.replacen(&theirs.split('.').nth(1).unwrap().to_string(), parts[1], 1);
        assert_eq!(t.verify(&relabelled, now), Err(TokenError::BadSignature));
    }

    #[test]
    fn without_a_secret_each_process_gets_its_own_key() {
        let a = PriceTokens::from_secrets(&Secrets::default(), DAY).unwrap();
        let b = PriceTokens::from_secrets(&Secrets::default(), DAY).unwrap();
        let now = Timestamp::now();
        let token = a.sign(&claims(now));
        assert!(a.verify(&token, now).is_ok());
        assert_eq!(b.verify(&token, now), Err(TokenError::UnknownKey));
        let debug = format!("{a:?}");
        assert!(debug.contains("current"), "{debug}");
    }
}
