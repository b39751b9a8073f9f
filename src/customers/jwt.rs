//! Customer tokens as JWTs (`[customers] tokens = "jwt"`, RFC 7519):
//! verified here, with ring and the identity provider's keys (`jwks`),
//! before the CRM is asked anything. A token that fails is refused by
//! reason (`moat_customer_tokens_refused_total{reason}`); one that passes
//! yields the customer id in `sub`.
//!
//! In order, so the cheap and unauthenticated checks come first: size,
//! shape (three base64url parts, a JSON header), the header's `alg` (never
//! `none`, one of `algorithms`, and fitting the key), the key by `kid`, the
//! signature, then the claims: `exp` (required) and `nbf` with
//! `clock_skew`, `iss`, `aud` (a string or a list) and `sub`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::jwks::{Jwks, Missing};
use crate::config::{self, JwtAlgorithm};
use crate::vocab::CacheHasher;

/// Longest `sub` taken as a customer id.
const MAX_SUBJECT_BYTES: usize = 256;

/// Why a token was refused: the `reason` label of
/// `moat_customer_tokens_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Longer than `max_token_bytes`.
    Oversized,
    /// Not three base64url parts, or a header or claims that are no JSON
    /// object, or claims of the wrong type.
    Malformed,
    /// `alg` is `none`, not in `algorithms`, or not the key's.
    Algorithm,
    /// No key by that `kid` (after a refresh when one was due).
    UnknownKey,
    Signature,
    /// `exp` missing, or past (beyond the clock skew).
    Expired,
    /// `nbf` ahead (beyond the clock skew).
    NotYetValid,
    Issuer,
    Audience,
    /// `sub` missing, empty or too long.
    Subject,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Oversized,
        Reason::Malformed,
        Reason::Algorithm,
        Reason::UnknownKey,
        Reason::Signature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Issuer,
        Reason::Audience,
        Reason::Subject,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Oversized => "oversized",
            Reason::Malformed => "malformed",
            Reason::Algorithm => "algorithm",
            Reason::UnknownKey => "unknown_key",
            Reason::Signature => "signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Issuer => "issuer",
            Reason::Audience => "audience",
            Reason::Subject => "subject",
        }
    }
}

/// Why a token did not yield a customer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The token is not good: the request is UNAUTHENTICATED.
    Refused(Reason),
    /// The keys cannot be had now: whether the token is good cannot be
    /// told, so its customer is unresolved (never anonymous, never
    /// refused).
    Unavailable(String),
}

impl From<Reason> for Rejection {
    fn from(reason: Reason) -> Rejection {
        Rejection::Refused(reason)
    }
}

/// Checks tokens against one `[customers]` section.
pub struct Verifier {
    jwks: Arc<Jwks>,
    issuer: String,
    audience: String,
    algorithms: Vec<JwtAlgorithm>,
    clock_skew: Duration,
    max_token_bytes: usize,
    /// Tokens verified lately, by their SHA-256 (in memory only): a
    /// shopper sends the same token with every request, and a signature
    /// check costs more than answering a stored page. Each is remembered
    /// until it expires or `VERIFIED_FOR` (at most `jwks_max_age`) has
    /// passed, so a key withdrawn from the JWKS stops a token within that.
    verified: moka::sync::Cache<[u8; 32], Verified, CacheHasher>,
}

/// A token that passed: whose it is, and until when (Unix seconds, skew
/// included).
#[derive(Clone)]
struct Verified {
    subject: Arc<str>,
    until: i64,
}

/// Longest a verification is taken on trust.
const VERIFIED_FOR: Duration = Duration::from_secs(60);

impl Verifier {
    /// The verifier of a checked `[customers]` section with `tokens =
    /// "jwt"`; a `jwks_file` is read now. The keys fetched by `previous`
    /// are kept when they come from the same `jwks_url`.
    pub fn new(
        config: &config::Customers,
        previous: Option<&Verifier>,
    ) -> Result<Verifier, String> {
        let jwks = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => Arc::new(Jwks::from_file(path)?),
            (None, Some(url)) => match previous {
                Some(p)
                    if p.jwks
                        .fetches_from(url, config.jwks_min_interval, config.jwks_max_age) =>
                {
                    p.jwks.clone()
                }
                _ => Arc::new(Jwks::from_url(
                    url,
                    config.jwks_min_interval,
                    config.jwks_max_age,
                )?),
            },
            (None, None) => {
                return Err("customers.jwks_url or customers.jwks_file is needed".into());
            }
        };
        Ok(Verifier::with_keys(jwks, config))
    }

    fn with_keys(jwks: Arc<Jwks>, config: &config::Customers) -> Verifier {
        Verifier {
            jwks,
            issuer: config.issuer.clone().unwrap_or_default(),
            audience: config.audience.clone().unwrap_or_default(),
            algorithms: config.algorithms.clone(),
            clock_skew: config.clock_skew,
            max_token_bytes: config.max_token_bytes,
            verified: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(VERIFIED_FOR.min(config.jwks_max_age))
                .build_with_hasher(CacheHasher::default()),
        }
    }

    /// The customer id of a token verified lately and not expired since,
    /// without checking it again (`None`: `verify` must).
    pub fn verified(&self, token: &str) -> Option<Arc<str>> {
        let seen = self.verified.get(&digest(token))?;
        (unix_now() <= seen.until).then_some(seen.subject)
    }

    /// The customer id of a good token.
    pub async fn verify(&self, token: &str) -> Result<String, Rejection> {
        if token.len() > self.max_token_bytes {
            return Err(Reason::Oversized.into());
        }
        if let Some(subject) = self.verified(token) {
            return Ok(subject.to_string());
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Reason::Malformed.into());
        };
        let header = object(header)?;
        let algorithm = match header.get("alg").and_then(Value::as_str) {
            Some(name) => JwtAlgorithm::parse(name)
                .filter(|a| self.algorithms.contains(a))
                .ok_or(Reason::Algorithm)?,
            None => return Err(Reason::Malformed.into()),
        };
        // Extensions the token says must be understood: none are.
        if header.contains_key("crit") {
            return Err(Reason::Malformed.into());
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(Reason::Malformed.into()),
        };
        let signature = decode(signature)?;
        let key = self
            .jwks
            .key(kid, algorithm)
            .await
            .map_err(|missing| match missing {
                Missing::Unknown => Rejection::Refused(Reason::UnknownKey),
                Missing::Unavailable(e) => Rejection::Unavailable(e),
            })?;
        if key.algorithm != algorithm {
            return Err(Reason::Algorithm.into());
        }
        // The header and claims as sent: what the signature covers.
        let signed = token.rsplit_once('.').map_or("", |(signed, _)| signed);
        if !key.verifies(signed.as_bytes(), &signature) {
            return Err(Reason::Signature.into());
        }
        let (subject, until) = self.subject(&object(claims)?, unix_now())?;
        let verified = Verified {
            subject: Arc::from(subject.as_str()),
            until,
        };
        self.verified.insert(digest(token), verified);
        Ok(subject)
    }

    /// The `sub` of verified claims, if they hold at `now` (Unix seconds),
    /// and the last second they hold.
    fn subject(&self, claims: &Map<String, Value>, now: i64) -> Result<(String, i64), Rejection> {
        let skew = i64::try_from(self.clock_skew.as_secs()).unwrap_or(i64::MAX);
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            // NumericDate: seconds, possibly with a fraction.
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.floor() as i64)
                })
                .map(Some)
                .ok_or(Reason::Malformed),
            Some(_) => Err(Reason::Malformed),
        };
        let until = match time("exp")? {
            Some(exp) if now <= exp.saturating_add(skew) => exp.saturating_add(skew),
            _ => return Err(Reason::Expired.into()),
        };
        if let Some(nbf) = time("nbf")?
            && now.saturating_add(skew) < nbf
        {
            return Err(Reason::NotYetValid.into());
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(Reason::Issuer.into());
        }
        let audience = match claims.get("aud") {
            Some(Value::String(aud)) => aud == &self.audience,
            Some(Value::Array(auds)) => auds
                .iter()
                .any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !audience {
            return Err(Reason::Audience.into());
        }
        match claims.get("sub").and_then(Value::as_str) {
            Some(sub) if !sub.is_empty() && sub.len() <= MAX_SUBJECT_BYTES => {
                Ok((sub.to_string(), until))
            }
            _ => Err(Reason::Subject.into()),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// How many usable keys a JWKS file holds (for `moat doctor`).
pub fn keys_in_file(path: &Path) -> Result<usize, String> {
    Jwks::from_file(path).map(|jwks| jwks.held())
}

/// How many usable keys the JWKS at `url` serves now (for `moat doctor`).
pub async fn keys_at(url: &str) -> Result<usize, String> {
    let http = super::jwks::client()?;
    super::jwks::fetch(&http, url).await.map(|keys| keys.len())
}

/// A base64url part (unpadded, as JWS compact serialisation has it).
fn decode(part: &str) -> Result<Vec<u8>, Reason> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| Reason::Malformed)
}

/// A base64url part holding a JSON object.
fn object(part: &str) -> Result<Map<String, Value>, Reason> {
    match serde_json::from_slice(&decode(part)?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Reason::Malformed),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A verifier over keys given in memory (tests).
#[cfg(test)]
fn with_jwks(document: &[u8], config: &config::Customers) -> Verifier {
    let path = std::env::temp_dir().join(format!(
        "moat-jwt-test-{}-{}.json",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(&path, document).expect("write jwks");
    let jwks = Jwks::from_file(&path).expect("jwks");
    let _ = std::fs::remove_file(&path);
    Verifier::with_keys(Arc::new(jwks), config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn settings() -> config::Customers {
        config::Customers {
            tokens: config::TokenKind::Jwt,
            issuer: Some("https://id.example".into()),
            audience: Some("shop".into()),
            ..config::Customers::default()
        }
    }

    struct Ec {
        pair: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Ec {
        fn new() -> Ec {
            let rng = SystemRandom::new();
            let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
            Ec { pair, rng }
        }

        fn jwk(&self, kid: &str) -> Value {
            let point = self.pair.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-256", "kid": kid,
                   "x": b64(&point[1..33]), "y": b64(&point[33..])})
        }

        fn token(&self, header: Value, claims: Value) -> String {
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let sig = self.pair.sign(&self.rng, input.as_bytes()).unwrap();
            format!("{input}.{}", b64(sig.as_ref()))
        }
    }

    fn good_claims() -> Value {
        json!({"iss": "https://id.example", "aud": "shop", "sub": "cust-001",
               "exp": unix_now() + 600})
    }

    fn refused(reason: Reason) -> Result<String, Rejection> {
        Err(Rejection::Refused(reason))
    }

    #[test]
    fn reasons_are_the_metrics_labels() {
        let labels: Vec<&str> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels, crate::telemetry::TOKEN_REFUSAL_REASONS);
    }

    #[tokio::test]
    async fn each_flaw_is_refused_by_name() {
        let ec = Ec::new();
        let jwks = json!({"keys": [ec.jwk("k1")]}).to_string();
        let v = with_jwks(jwks.as_bytes(), &settings());
        let header = json!({"alg": "ES256", "kid": "k1"});
        let with = |change: Value| {
            let mut claims = good_claims();
            for (k, v) in change.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            ec.token(header.clone(), claims)
        };
        assert_eq!(v.verify(&with(json!({}))).await, Ok("cust-001".to_string()));
        let aud_list = with(json!({"aud": ["other", "shop"]}));
        assert_eq!(v.verify(&aud_list).await, Ok("cust-001".to_string()));
        let cases = [
            (with(json!({"exp": null})), Reason::Expired),
            (with(json!({"exp": unix_now() - 120})), Reason::Expired),
            (with(json!({"exp": "tomorrow"})), Reason::Malformed),
            (with(json!({"nbf": unix_now() + 600})), Reason::NotYetValid),
            (with(json!({"iss": "https://evil.example"})), Reason::Issuer),
            (with(json!({"iss": null})), Reason::Issuer),
            (with(json!({"aud": "other"})), Reason::Audience),
            (with(json!({"aud": ["other"]})), Reason::Audience),
            (with(json!({"sub": ""})), Reason::Subject),
            (with(json!({"sub": 7})), Reason::Subject),
            (
                ec.token(json!({"alg": "ES256", "kid": "k2"}), good_claims()),
                Reason::UnknownKey,
            ),
            (
                ec.token(json!({"alg": "RS256", "kid": "k1"}), good_claims()),
                Reason::Algorithm,
            ),
            (
                ec.token(json!({"alg": "HS256", "kid": "k1"}), good_claims()),
                Reason::Algorithm,
            ),
            (
                ec.token(
                    json!({"alg": "ES256", "kid": "k1", "crit": ["x"]}),
                    good_claims(),
                ),
                Reason::Malformed,
            ),
            ("a.b".to_string(), Reason::Malformed),
            ("!!.!!.!!".to_string(), Reason::Malformed),
            ("x".repeat(9000), Reason::Oversized),
        ];
        for (token, reason) in cases {
            assert_eq!(v.verify(&token).await, refused(reason), "{token}");
        }
        // Within the skew, an expired token still passes.
        let just = with(json!({"exp": unix_now() - 30}));
        assert!(v.verify(&just).await.is_ok());
    }

    #[tokio::test]
    async fn alg_none_and_forged_signatures_are_refused() {
        let ec = Ec::new();
        let jwks = json!({"keys": [ec.jwk("k1")]}).to_string();
        let v = with_jwks(jwks.as_bytes(), &settings());
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","kid":"k1"}"#),
            b64(good_claims().to_string().as_bytes())
        );
        assert_eq!(v.verify(&none).await, refused(Reason::Algorithm));
        // Claims swapped under a good signature.
        let good = ec.token(json!({"alg": "ES256", "kid": "k1"}), good_claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut other = good_claims();
        other["sub"] = json!("cust-002");
        let forged_claims = b64(other.to_string().as_bytes());
        parts[1] = &forged_claims;
        assert_eq!(v.verify(&parts.join(".")).await, refused(Reason::Signature));
        // Another key's signature under this key's id.
        let stranger = Ec::new();
        let forged = stranger.token(json!({"alg": "ES256", "kid": "k1"}), good_claims());
        assert_eq!(v.verify(&forged).await, refused(Reason::Signature));
    }

    #[tokio::test]
    async fn a_key_is_used_for_its_own_algorithm_only() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed",
                         "x": b64(ed.public_key().as_ref())});
        let jwks = json!({"keys": [jwk]}).to_string();
        let v = with_jwks(jwks.as_bytes(), &settings());
        let sign = |header: Value| {
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(good_claims().to_string().as_bytes())
            );
            format!("{input}.{}", b64(ed.sign(input.as_bytes()).as_ref()))
        };
        let good = sign(json!({"alg": "EdDSA", "kid": "ed"}));
        assert_eq!(v.verify(&good).await, Ok("cust-001".into()));
        // Without a kid: the only EdDSA key.
        assert!(v.verify(&sign(json!({"alg": "EdDSA"}))).await.is_ok());
        // The Ed25519 key named for ES256: refused before any signature check.
        let crossed = sign(json!({"alg": "ES256", "kid": "ed"}));
        assert_eq!(v.verify(&crossed).await, refused(Reason::Algorithm));
        // EdDSA not among the accepted algorithms.
        let strict = config::Customers {
            algorithms: vec![JwtAlgorithm::ES256],
            ..settings()
        };
        let v = with_jwks(jwks.as_bytes(), &strict);
        assert_eq!(v.verify(&good).await, refused(Reason::Algorithm));
    }
}
