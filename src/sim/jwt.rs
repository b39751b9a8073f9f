//! Customer tokens as JWTs (`--customer-tokens jwt`): the simulator plays
//! the shop's identity provider. It signs a token per customer (what
//! `/_sim/customers` shows), mints tokens with any claims for tests
//! (`POST /_sim/jwt`), serves its public keys at `/.well-known/jwks.json`
//! and rotates its key on demand (`POST /_sim/jwks/rotate`).
//!
//! ES256 and EdDSA keys are generated at start (ring can). ring cannot
//! generate RSA keys, so RS256 signs with one of two fixed 2048-bit test
//! keys checked in beside this file (`keys/rsa-test-*.pk8`, made with
//! `openssl genpkey`): they are public, and good for this simulator only.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Map, Value, json};

/// The `iss` of every token the simulator signs (unless a mint says
/// otherwise).
pub const ISSUER: &str = "moat-sim";
/// The `aud` of every token the simulator signs (unless a mint says
/// otherwise).
pub const AUDIENCE: &str = "moat";
/// How long a token `/_sim/customers` shows stays valid.
pub const TOKEN_TTL_SECS: i64 = 3600;

/// The fixed RSA test keys, used in turn as the key rotates.
const RSA_TEST_KEYS: [&[u8]; 2] = [
    include_bytes!("keys/rsa-test-1.pk8"),
    include_bytes!("keys/rsa-test-2.pk8"),
];

/// How many keys the JWKS lists: the signing key and the one before it,
/// so tokens signed just before a rotation still verify.
const KEYS_SERVED: usize = 2;

/// The signature algorithm of the simulator's tokens (`--jwt-alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JwtAlg {
    #[default]
    Es256,
    EdDsa,
    Rs256,
}

impl JwtAlg {
    /// As `--jwt-alg` and a JWT header spell them.
    pub const NAMES: [&'static str; 3] = ["ES256", "EdDSA", "RS256"];

    pub fn parse(name: &str) -> Option<JwtAlg> {
        match name {
            "ES256" => Some(JwtAlg::Es256),
            "EdDSA" => Some(JwtAlg::EdDsa),
            "RS256" => Some(JwtAlg::Rs256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JwtAlg::Es256 => "ES256",
            JwtAlg::EdDsa => "EdDSA",
            JwtAlg::Rs256 => "RS256",
        }
    }
}

/// How the simulator's customers sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CustomerTokens {
    /// Random `ct_…` tokens the CRM resolves (`by-token`).
    #[default]
    Opaque,
    /// JWTs signed with this algorithm; `sub` is the customer id.
    Jwt(JwtAlg),
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

struct SigningKey {
    kid: String,
    pair: Pair,
    /// The public half as a JWK.
    jwk: Value,
}

/// The identity provider's keys: the newest signs, the last
/// [`KEYS_SERVED`] are served.
pub struct Issuer {
    alg: JwtAlg,
    rng: SystemRandom,
    /// Oldest first; never empty.
    keys: RwLock<Vec<Arc<SigningKey>>>,
}

impl Issuer {
    pub fn new(alg: JwtAlg) -> Issuer {
        let rng = SystemRandom::new();
        let first = Arc::new(generate(alg, &rng, 1));
        Issuer {
            alg,
            rng,
            keys: RwLock::new(vec![first]),
        }
    }

    /// A new signing key; the previous one is still served. Returns the
    /// new key's id.
    pub fn rotate(&self) -> String {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let generation = keys.len() + 1;
        let key = Arc::new(generate(self.alg, &self.rng, generation));
        let kid = key.kid.clone();
        keys.push(key);
        kid
    }

    /// `{"keys": [JWK…]}`, the newest last.
    pub fn jwks(&self) -> Value {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let served = &keys[keys.len().saturating_sub(KEYS_SERVED)..];
        json!({ "keys": served.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    /// A token for customer `sub`, valid for [`TOKEN_TTL_SECS`] from now.
    pub fn token_for(&self, sub: &str) -> String {
        self.mint(sub, TOKEN_TTL_SECS, None, &Map::new(), None)
    }

    /// A token for `sub` expiring `expires_in` seconds from now (negative:
    /// already expired), valid from `not_before_in` (if given); `claims`
    /// replace or add claims, a null removing one. Signed with the newest
    /// key, its header naming `kid` instead when given.
    pub fn mint(
        &self,
        sub: &str,
        expires_in: i64,
        not_before_in: Option<i64>,
        claims: &Map<String, Value>,
        kid: Option<&str>,
    ) -> String {
        let now = unix_now();
        let mut body = Map::new();
        body.insert("iss".into(), ISSUER.into());
        body.insert("aud".into(), AUDIENCE.into());
        body.insert("sub".into(), sub.into());
        body.insert("iat".into(), now.into());
        body.insert("exp".into(), now.saturating_add(expires_in).into());
        if let Some(nbf) = not_before_in {
            body.insert("nbf".into(), now.saturating_add(nbf).into());
        }
        for (name, value) in claims {
            if value.is_null() {
                body.remove(name);
            } else {
                body.insert(name.clone(), value.clone());
            }
        }
        let key = self.newest();
        let header = json!({
            "alg": self.alg.name(),
            "typ": "JWT",
            "kid": kid.unwrap_or(&key.kid),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(body).to_string())
        );
        let signature = self.sign(&key, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn newest(&self) -> Arc<SigningKey> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.last().cloned().expect("an issuer always has a key")
    }

    fn sign(&self, key: &SigningKey, message: &[u8]) -> Vec<u8> {
        match &key.pair {
            Pair::Ec(pair) => pair
                .sign(&self.rng, message)
                .expect("ECDSA signing fails only without randomness")
                .as_ref()
                .to_vec(),
            Pair::Ed(pair) => pair.sign(message).as_ref().to_vec(),
            Pair::Rsa(pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut out)
                    .expect("RSA signing fails only without randomness");
                out
            }
        }
    }
}

/// The `generation`th key of `alg`. Key generation fails only when the
/// system has no randomness, where no simulator can run.
fn generate(alg: JwtAlg, rng: &SystemRandom, generation: usize) -> SigningKey {
    let kid = format!("sim-{}-{generation}", alg.name().to_ascii_lowercase());
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let (pair, jwk) = match alg {
        JwtAlg::Es256 => {
            let algorithm = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(algorithm, rng).expect("P-256 key");
            let pair = EcdsaKeyPair::from_pkcs8(algorithm, pkcs8.as_ref(), rng).expect("P-256");
            // Uncompressed point: 0x04, then x and y, 32 bytes each.
            let point = pair.public_key().as_ref();
            let jwk = json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            });
            (Pair::Ec(pair), jwk)
        }
        JwtAlg::EdDsa => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(rng).expect("Ed25519 key");
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519");
            let jwk = json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
                "x": b64(pair.public_key().as_ref()),
            });
            (Pair::Ed(pair), jwk)
        }
        JwtAlg::Rs256 => {
            let der = RSA_TEST_KEYS[(generation - 1) % RSA_TEST_KEYS.len()];
            let pair = RsaKeyPair::from_pkcs8(der).expect("the checked-in RSA test key");
            let public = PublicKeyComponents::<Vec<u8>>::from(pair.public());
            let jwk = json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": b64(&public.n), "e": b64(&public.e),
            });
            (Pair::Rsa(pair), jwk)
        }
    };
    SigningKey { kid, pair, jwk }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
