//! The identity provider's public keys (a JWK Set, RFC 7517), as `jwt`
//! verifies customer tokens with them: read from `[customers] jwks_file`
//! at start and on reload, or fetched from `jwks_url` when first needed and
//! again when a token names a key not held, at most once per
//! `jwks_min_interval` (a flood of made-up key ids must not become a flood
//! of fetches), and when the keys held are older than `jwks_max_age` (so a
//! key the provider withdrew stops verifying).
//!
//! Only signing keys Moat can verify with are kept: RSA (2048 to 8192
//! bits), EC P-256 and OKP Ed25519; others (encryption keys, other curves)
//! are skipped, so a JWKS that also lists them still serves.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::JwtAlgorithm;

/// Largest JWKS read or fetched.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS.
const MAX_KEYS: usize = 100;
/// How long one fetch of the JWKS may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A public key and the one algorithm it verifies.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub kid: Option<String>,
    pub algorithm: JwtAlgorithm,
    material: Material,
}

#[derive(Debug, Clone)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point: 0x04, x, y.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// Whether `signature` over `message` is this key's.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
        match &self.material {
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            Material::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            Material::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

/// One JWK as published; only the members Moat reads.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

/// The keys of one JWKS, by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<PublicKey>>,
    /// When they were fetched (`None`: read from a file, or none yet).
    fetched: Option<Instant>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys Moat can verify with.
    pub fn parse(document: &[u8]) -> Result<KeySet, String> {
        if document.len() > MAX_JWKS_BYTES {
            return Err(format!("a JWKS is at most {MAX_JWKS_BYTES} bytes"));
        }
        let set: JwkSet = serde_json::from_slice(document)
            .map_err(|e| format!("not a JWK Set (`{{\"keys\": [...]}}`): {e}"))?;
        let mut keys = Vec::new();
        for value in set.keys.into_iter().take(MAX_KEYS) {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            match public_key(jwk) {
                Ok(Some(key)) => keys.push(Arc::new(key)),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "a key of the JWKS is skipped"),
            }
        }
        Ok(KeySet {
            keys,
            fetched: None,
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token's header names: by `kid`, or without one the only
    /// key for `algorithm`. The key's own algorithm may differ from the
    /// header's: the caller refuses that.
    pub fn find(&self, kid: Option<&str>, algorithm: JwtAlgorithm) -> Option<Arc<PublicKey>> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .cloned(),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.algorithm == algorithm);
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Some(only.clone()),
                    _ => None,
                }
            }
        }
    }
}

/// The key a JWK describes; `None` for a key that is not for signatures
/// or of a kind Moat does not verify with.
fn public_key(jwk: Jwk) -> Result<Option<PublicKey>, String> {
    if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let field = |name: &str, value: Option<String>| {
        let value = value.ok_or_else(|| format!("a {name} is missing"))?;
        URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .map_err(|_| format!("{name} is not base64url"))
    };
    let (algorithm, material) = match (jwk.kty.as_deref(), jwk.crv.as_deref()) {
        (Some("RSA"), _) => {
            let n = field("n", jwk.n)?;
            let e = field("e", jwk.e)?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if !(2048..=8192).contains(&bits) {
                return Err(format!("an RSA key of {bits} bits (2048 to 8192 verify)"));
            }
            (JwtAlgorithm::RS256, Material::Rsa { n, e })
        }
        (Some("EC"), Some("P-256")) => {
            let (x, y) = (field("x", jwk.x)?, field("y", jwk.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err("a P-256 key's x and y are 32 bytes each".into());
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (JwtAlgorithm::ES256, Material::P256(point))
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x = field("x", jwk.x)?;
            if x.len() != 32 {
                return Err("an Ed25519 key's x is 32 bytes".into());
            }
            (JwtAlgorithm::EdDSA, Material::Ed25519(x))
        }
        _ => return Ok(None),
    };
    // A key that names its algorithm is used for that one only.
    if let Some(alg) = &jwk.alg
        && alg != algorithm.name()
    {
        return Ok(None);
    }
    Ok(Some(PublicKey {
        kid: jwk.kid,
        algorithm,
        material,
    }))
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// The keys are held (or were just fetched) and none is the one named.
    Unknown,
    /// No key was ever obtained: the JWKS could not be fetched. The token
    /// may well be good; its customer is unresolved, not refused.
    Unavailable(String),
}

/// Where the keys come from.
enum Source {
    /// Read once per (re)load.
    File,
    Url {
        url: String,
        http: reqwest::Client,
    },
}

/// Whether fetches are due, guarded by the lock that makes one fetch run
/// at a time.
struct Fetches {
    /// Whether a fetch ever succeeded.
    loaded: bool,
    /// When the last fetch that counts against the interval started.
    last: Option<Instant>,
}

/// The keys in use and how they are renewed.
pub struct Jwks {
    source: Source,
    keys: ArcSwap<KeySet>,
    fetches: Mutex<Fetches>,
    min_interval: Duration,
    /// Fetched keys older than this are fetched again by the next token
    /// that uses them, so a key the provider withdrew stops verifying.
    max_age: Duration,
}

impl Jwks {
    /// Keys read from `path` now (never fetched: a reload reads the file
    /// again).
    pub fn from_file(path: &Path) -> Result<Jwks, String> {
        let document = std::fs::read(path)
            .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
        let keys = KeySet::parse(&document).map_err(|e| format!("{}: {e}", path.display()))?;
        if keys.is_empty() {
            return Err(format!(
                "{}: no key Moat can verify with (RSA, EC P-256 or Ed25519, for signatures)",
                path.display()
            ));
        }
        Ok(Jwks {
            source: Source::File,
            keys: ArcSwap::from_pointee(keys),
            fetches: Mutex::new(Fetches {
                loaded: true,
                last: None,
            }),
            min_interval: Duration::MAX,
            max_age: Duration::MAX,
        })
    }

    /// Keys fetched from `url` when first needed, and again when older
    /// than `max_age`.
    pub fn from_url(url: &str, min_interval: Duration, max_age: Duration) -> Result<Jwks, String> {
        let http = client()?;
        Ok(Jwks {
            source: Source::Url {
                url: url.to_string(),
                http,
            },
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetches: Mutex::new(Fetches {
                loaded: false,
                last: None,
            }),
            min_interval,
            max_age,
        })
    }

    /// Whether these keys are fetched from `url` as these settings say (so
    /// a reload that changes none of them keeps the keys).
    pub fn fetches_from(&self, url: &str, min_interval: Duration, max_age: Duration) -> bool {
        matches!(&self.source, Source::Url { url: at, .. } if at == url)
            && self.min_interval == min_interval
            && self.max_age == max_age
    }

    /// How many keys are held.
    pub fn held(&self) -> usize {
        self.keys.load().len()
    }

    /// The key a token names, fetching the JWKS first when it is not held
    /// and a fetch is due. Concurrent callers wait for one fetch.
    pub async fn key(
        &self,
        kid: Option<&str>,
        algorithm: JwtAlgorithm,
    ) -> Result<Arc<PublicKey>, Missing> {
        let held = self.keys.load_full();
        if let Some(key) = held.find(kid, algorithm) {
            let stale = held.fetched.is_some_and(|at| at.elapsed() >= self.max_age);
            if !stale {
                return Ok(key);
            }
            // One caller fetches them again; the others go on with the
            // keys held meanwhile.
            if let (Source::Url { url, http }, Ok(mut fetches)) =
                (&self.source, self.fetches.try_lock())
            {
                let due = fetches
                    .last
                    .is_none_or(|at| at.elapsed() >= self.min_interval);
                if due {
                    fetches.last = Some(Instant::now());
                    match fetch(http, url).await {
                        Ok(keys) => self.keys.store(Arc::new(keys)),
                        // The held keys stay: an outage of the provider
                        // does not sign everyone out.
                        Err(e) => tracing::warn!(error = %e, "cannot fetch the JWKS again"),
                    }
                }
            }
            return self
                .keys
                .load()
                .find(kid, algorithm)
                .ok_or(Missing::Unknown);
        }
        let Source::Url { url, http } = &self.source else {
            return Err(Missing::Unknown);
        };
        let mut fetches = self.fetches.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(key) = self.keys.load().find(kid, algorithm) {
            return Ok(key);
        }
        let due = fetches
            .last
            .is_none_or(|at| at.elapsed() >= self.min_interval);
        if due {
            fetches.last = Some(Instant::now());
            match fetch(http, url).await {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), "JWKS fetched");
                    self.keys.store(Arc::new(keys));
                    if !fetches.loaded {
                        // The first load is not a refresh: the first
                        // unknown key after it may fetch at once.
                        fetches.loaded = true;
                        fetches.last = None;
                    }
                }
                Err(e) => {
                    // Whether the key exists cannot be told now: the
                    // token is not refused for it.
                    tracing::warn!(error = %e, "cannot fetch the JWKS");
                    return Err(Missing::Unavailable(e));
                }
            }
        } else if !fetches.loaded {
            return Err(Missing::Unavailable(
                "the JWKS could not be fetched yet".into(),
            ));
        }
        self.keys
            .load()
            .find(kid, algorithm)
            .ok_or(Missing::Unknown)
    }
}

/// One fetch of the JWKS at `url`.
pub async fn fetch(http: &reqwest::Client, url: &str) -> Result<KeySet, String> {
    let shown = crate::config::redact(url);
    let mut response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("{shown}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{shown} answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{shown}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("{shown}: the JWKS is over {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let mut keys = KeySet::parse(&body).map_err(|e| format!("{shown}: {e}"))?;
    keys.fetched = Some(Instant::now());
    if keys.is_empty() {
        return Err(format!(
            "{shown}: no key Moat can verify with (RSA, EC P-256 or Ed25519, for signatures)"
        ));
    }
    Ok(keys)
}

/// A client for one-off checks (`moat doctor`), with the fetch's timeouts.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the JWKS client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn only_signing_keys_moat_verifies_with_are_kept() {
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&[1; 32]), "y": b64(&[2; 32])});
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(&[3; 32])});
        let rsa = json!({"kty": "RSA", "kid": "rsa", "n": b64(&[0xc5; 256]), "e": b64(&[1, 0, 1])});
        let document = json!({"keys": [
            ec, ed, rsa,
            // For encryption, another curve, a short RSA key, a shared
            // secret, a key named for another algorithm, not an object.
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": b64(&[1; 32]), "y": b64(&[2; 32])},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": b64(&[1; 48]), "y": b64(&[2; 48])},
            {"kty": "RSA", "kid": "short", "n": b64(&[0xc5; 128]), "e": b64(&[1, 0, 1])},
            {"kty": "oct", "kid": "hmac", "k": b64(b"secret")},
            {"kty": "OKP", "crv": "Ed25519", "kid": "named", "alg": "ES256", "x": b64(&[3; 32])},
            "not a key",
        ]});
        let keys = KeySet::parse(document.to_string().as_bytes()).expect("a JWK Set");
        assert_eq!(keys.len(), 3);
        let ec = keys.find(Some("ec"), JwtAlgorithm::ES256).expect("ec");
        assert_eq!(ec.algorithm, JwtAlgorithm::ES256);
        assert_eq!(
            keys.find(Some("rsa"), JwtAlgorithm::ES256)
                .map(|k| k.algorithm),
            Some(JwtAlgorithm::RS256),
            "found by kid; the caller refuses the mismatch"
        );
        for gone in ["enc", "p384", "short", "hmac", "named", "nobody"] {
            assert!(
                keys.find(Some(gone), JwtAlgorithm::ES256).is_none(),
                "{gone}"
            );
        }
        // Without a kid: the only key of the algorithm.
        assert!(keys.find(None, JwtAlgorithm::EdDSA).is_some());
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(&vec![b' '; MAX_JWKS_BYTES + 1]).is_err());
    }
}
