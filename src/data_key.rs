//! Personal data at rest: customers, orders and which tokens belong to
//! whom are sealed in Redis with AES-256-GCM under `MOAT_DATA_KEY`, and
//! their Redis key names are HMAC-SHA256 of what they name, so neither a
//! value nor a key name shows an email, a name, an order line or a token.
//!
//! Two subkeys are derived from the data key (HMAC-SHA256 of a label
//! under it), so names and ciphertexts never share a key. The Redis key
//! name is the associated data of its value: a value copied under
//! another name does not open.
//!
//! Rotation: `MOAT_DATA_KEY_PREVIOUS` is the key before. Names under the
//! new key differ from the old ones, so a reader that misses under the
//! new name looks under the previous key's name, opens the value with the
//! previous key, and rewrites it under the new name (`cache::l2`).

use aes_gcm::aead::{Aead, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha256;

use crate::config::Secrets;
use crate::hex;

/// Bytes of a nonce, stored in front of its ciphertext.
const NONCE: usize = 12;

/// The environment variables, named in errors.
pub const CURRENT_VAR: &str = "MOAT_DATA_KEY";
pub const PREVIOUS_VAR: &str = "MOAT_DATA_KEY_PREVIOUS";

/// The data key and, while rotating, the one before it.
pub struct DataKeys {
    current: Subkeys,
    previous: Option<Subkeys>,
}

/// What one data key gives: a naming key and a sealing key.
pub struct Subkeys {
    naming: [u8; 32],
    sealing: Aes256Gcm,
}

impl DataKeys {
    /// The keys from `MOAT_DATA_KEY` and `MOAT_DATA_KEY_PREVIOUS` (as
    /// `Secrets` read them). `Ok(None)`: no data key, so personal records
    /// stay in memory. `Err` names the variable that is not 32 bytes.
    pub fn new(current: Option<&str>, previous: Option<&str>) -> Result<Option<DataKeys>, String> {
        let Some(current) = current else {
            return match previous {
                Some(_) => Err(format!(
                    "{PREVIOUS_VAR} is set without {CURRENT_VAR}: set the new key in {CURRENT_VAR}"
                )),
                None => Ok(None),
            };
        };
        let current = Subkeys::new(&decode(CURRENT_VAR, current)?);
        let previous = match previous {
            Some(text) => Some(Subkeys::new(&decode(PREVIOUS_VAR, text)?)),
            None => None,
        };
        Ok(Some(DataKeys { current, previous }))
    }

    /// The keys `secrets` name (`MOAT_DATA_KEY`, `MOAT_DATA_KEY_PREVIOUS`);
    /// `Err` names the variable that is not a 32-byte key.
    pub fn from_secrets(secrets: &Secrets) -> Result<Option<DataKeys>, String> {
        DataKeys::new(
            secrets.data_key.as_deref(),
            secrets.data_key_previous.as_deref(),
        )
    }

    /// What records are written with.
    pub fn current(&self) -> &Subkeys {
        &self.current
    }

    /// What records written before the rotation are still read with.
    pub fn previous(&self) -> Option<&Subkeys> {
        self.previous.as_ref()
    }
}

/// A key of 32 bytes, written as 64 hex digits or in base64 (standard or
/// URL-safe, padded or not).
fn decode(var: &str, text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .ok()
    } else {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines.iter().find_map(|e| e.decode(text).ok())
    };
    match bytes {
        Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            format!(
                "{var} is {} bytes; it must be 32 (64 hex digits or 44 base64 characters, \
                 e.g. from `openssl rand -base64 32`)",
                bytes.len()
            )
        }),
        None => Err(format!(
            "{var} is neither 64 hex digits nor base64; it must be 32 bytes \
             (e.g. from `openssl rand -base64 32`)"
        )),
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    for part in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl Subkeys {
    fn new(key: &[u8; 32]) -> Subkeys {
        let naming = hmac(key, &[b"moat data key: names"]);
        let sealing = hmac(key, &[b"moat data key: values"]);
        Subkeys {
            naming,
            sealing: Aes256Gcm::new(&sealing.into()),
        }
    }

    /// The Redis name of what `label` names (hex of an HMAC): the same on
    /// every replica with this key, and says nothing of the label.
    pub fn name(&self, label: &str) -> String {
        hex::encode(&hmac(&self.naming, &[b"name", label.as_bytes()]))
    }

    /// A customer token's digest: what its sign-in is known by.
    pub fn token_digest(&self, token: &str) -> String {
        hex::encode(&hmac(&self.naming, &[b"token", token.as_bytes()]))
    }

    /// A verified JWT subject's digest (a customer id): labelled apart
    /// from tokens', so no token is known by it.
    pub fn subject_digest(&self, id: &str) -> String {
        hex::encode(&hmac(&self.naming, &[b"subject", id.as_bytes()]))
    }

    /// `plain` sealed under a random nonce, bound to `aad` (the Redis key
    /// name it is stored under): the nonce, then the ciphertext and tag.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source");
        self.seal_with(nonce, aad, plain)
    }

    /// `plain` sealed under a nonce derived from it (a synthetic IV): the
    /// same text seals the same, for members of a Redis set, which would
    /// otherwise pile up a copy per write. It shows only that two members
    /// are equal.
    pub fn seal_fixed(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let synthetic = hmac(&self.naming, &[b"nonce", aad, plain]);
        let mut nonce = [0u8; NONCE];
        nonce.copy_from_slice(&synthetic[..NONCE]);
        self.seal_with(nonce, aad, plain)
    }

    fn seal_with(&self, nonce: [u8; NONCE], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let sealed = self
            .sealing
            .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
            .expect("AES-GCM seals any length Moat stores");
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// What `seal` made under this key and `aad`; `None` for anything else
    /// (another key, another name, tampered bytes).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE);
        let nonce = <[u8; NONCE]>::try_from(nonce).ok()?;
        self.sealing
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_32_bytes_in_hex_or_base64() {
        assert!(decode("V", A).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(decode("V", &b64).unwrap(), [7u8; 32]);
        let short = decode("MOAT_DATA_KEY", "c2hvcnQ=").unwrap_err();
        assert!(short.contains("MOAT_DATA_KEY is 5 bytes"), "{short}");
        let neither = decode("MOAT_DATA_KEY_PREVIOUS", "not a key!").unwrap_err();
        assert!(neither.contains("MOAT_DATA_KEY_PREVIOUS"), "{neither}");
        assert!(DataKeys::new(None, Some(A)).is_err());
        assert!(DataKeys::new(None, None).unwrap().is_none());
    }

    #[test]
    fn a_sealed_value_opens_only_under_its_key_and_name() {
        let keys = DataKeys::new(Some(A), None).unwrap().unwrap();
        let other = Subkeys::new(&[9u8; 32]);
        let k = keys.current();
        let sealed = k.seal(b"moat:v1:customer:x", b"ada@example.com");
        assert!(!sealed.windows(3).any(|w| w == b"ada"));
        assert_eq!(
            k.open(b"moat:v1:customer:x", &sealed).as_deref(),
            Some(&b"ada@example.com"[..])
        );
        assert_eq!(k.open(b"moat:v1:customer:y", &sealed), None, "moved");
        assert_eq!(other.open(b"moat:v1:customer:x", &sealed), None);
        assert_ne!(sealed, k.seal(b"moat:v1:customer:x", b"ada@example.com"));
        let fixed = k.seal_fixed(b"set", b"member");
        assert_eq!(fixed, k.seal_fixed(b"set", b"member"));
        assert_eq!(k.open(b"set", &fixed).as_deref(), Some(&b"member"[..]));
        assert_ne!(k.name("customer:1"), other.name("customer:1"));
        assert_ne!(k.name("x"), k.token_digest("x"));
    }
}
