//! Who sent an event: its signature, checked against the source's secrets
//! before anything in the body is read. Two schemes are accepted:
//!
//! - `Moat-Signature: t=UNIX,v1=HEX`, HEX the HMAC-SHA256 of `t.body`;
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature: v1,BASE64` (HMAC-SHA256 of `id.timestamp.body`;
//!   a `whsec_` secret is base64, any other is used as it is).
//!
//! What is signed is the body, except for a CloudEvent in binary mode (a
//! `ce-specversion` header), whose attributes Moat acts on arrive as
//! headers: there the signed content is every `ce-*` header, one
//! `name:value` line each (names lowercase, sorted; a line ends in `\n`),
//! then an empty line, then the body ([`signed_content`]). A signature over
//! the body alone would let whoever captured one thin event (its body is
//! empty) send any other thin event under it.
//!
//! A timestamp further from now than the tolerance is refused: a captured
//! request cannot be replayed later. Several secrets per source are all
//! accepted, so a secret can be rotated without a gap; several signatures
//! in one header are fine too.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::envelope::is_binary;
use crate::config::{Encoding, Signature};
use crate::error::{Error, Kind};
use crate::hex;
use crate::vocab::System;

/// Each source's secrets (its own, else the shared ones).
pub struct Secrets {
    by_source: BTreeMap<String, Vec<Vec<u8>>>,
    shared: Vec<Vec<u8>>,
}

impl Secrets {
    /// From `config::Secrets::events_secrets`.
    pub fn new(configured: &BTreeMap<String, Vec<String>>) -> Secrets {
        let bytes = |list: &Vec<String>| list.iter().map(|s| s.as_bytes().to_vec()).collect();
        Secrets {
            by_source: configured
                .iter()
                .filter(|(source, _)| !source.is_empty())
                .map(|(source, list)| (source.clone(), bytes(list)))
                .collect(),
            shared: configured.get("").map(bytes).unwrap_or_default(),
        }
    }

    fn of(&self, system: System) -> &[Vec<u8>] {
        self.by_source
            .get(system.name())
            .map_or(&self.shared[..], Vec::as_slice)
    }

    /// Checks the request's signature; `UNAUTHENTICATED` when it is
    /// missing, wrong or stale, `FORBIDDEN` when the source has no secret.
    pub fn verify(
        &self,
        system: System,
        headers: &HeaderMap,
        body: &[u8],
        tolerance: Duration,
    ) -> Result<(), Error> {
        let secrets = self.of(system);
        if secrets.is_empty() {
            return Err(Error::new(
                Kind::Forbidden,
                format!(
                    "no secret is configured for {system} events: set MOAT_EVENTS_SECRET_{} \
                     (or MOAT_EVENTS_SECRET for every source)",
                    system.name().to_ascii_uppercase()
                ),
            ));
        }
        let content = signed_content(headers, body);
        let hint = if is_binary(headers) { BINARY_HINT } else { "" };
        if let Some(value) = header(headers, "moat-signature") {
            return moat_signature(secrets, value, &content, tolerance, hint);
        }
        if let Some(signatures) = header(headers, "webhook-signature") {
            let id =
                header(headers, "webhook-id").ok_or_else(|| refused("webhook-id is missing"))?;
            let t = header(headers, "webhook-timestamp")
                .ok_or_else(|| refused("webhook-timestamp is missing"))?;
            return standard_webhooks(secrets, id, t, signatures, &content, tolerance, hint);
        }
        Err(refused(
            "the event is not signed: send Moat-Signature or the Standard Webhooks headers",
        ))
    }
}

impl Secrets {
    /// Checks a delivery signed the way its system signs (a connector's
    /// `[systems.NAME.events] signature`): Moat's and Standard Webhooks as
    /// above; Shopify's `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the
    /// raw body); or an HMAC-SHA256 in a header of the system's choosing,
    /// hex or base64, of the body or of `{timestamp}.{body}` (then held to
    /// the tolerance too).
    pub fn verify_as(
        &self,
        system: System,
        scheme: &Signature,
        headers: &HeaderMap,
        body: &[u8],
        tolerance: Duration,
    ) -> Result<(), Error> {
        let (name, encoding, timestamp) = match scheme {
            Signature::Moat | Signature::StandardWebhooks => {
                return self.verify(system, headers, body, tolerance);
            }
            Signature::Shopify => ("x-shopify-hmac-sha256", Encoding::Base64, None),
            Signature::Hmac {
                header,
                encoding,
                timestamp_header,
            } => (header.as_str(), *encoding, timestamp_header.as_deref()),
        };
        let secrets = self.of(system);
        if secrets.is_empty() {
            return Err(Error::new(
                Kind::Forbidden,
                format!(
                    "no secret is configured for {system} events: set MOAT_EVENTS_SECRET_{}",
                    system.name().to_ascii_uppercase()
                ),
            ));
        }
        let given = header(headers, name)
            .ok_or_else(|| refused(&format!("{name} is missing")))?
            .trim();
        let t = match timestamp {
            Some(t_name) => {
                let t = header(headers, t_name)
                    .ok_or_else(|| refused(&format!("{t_name} is missing")))?;
                fresh(t, tolerance)?;
                Some(t)
            }
            None => None,
        };
        for secret in secrets {
            let digest = match t {
                Some(t) => hmac(secret, &[t.as_bytes(), b".", body]),
                None => hmac(secret, &[body]),
            };
            let expected = match encoding {
                Encoding::Hex => hex::encode(&digest),
                Encoding::Base64 => STANDARD.encode(digest),
            };
            let given = match encoding {
                Encoding::Hex => Cow::Owned(given.to_ascii_lowercase()),
                Encoding::Base64 => Cow::Borrowed(given),
            };
            let matches = bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
            if matches {
                return Ok(());
            }
        }
        Err(refused(&format!("{name} does not match")))
    }
}

/// Said when a binary-mode CloudEvent's signature does not match: most
/// likely its sender signed the body alone.
const BINARY_HINT: &str = " (a binary-mode CloudEvent is signed over its ce-* headers, one \
                           `name:value` line each, sorted by name and ending in a newline, \
                           then an empty line, then the body)";

/// What a signature covers: the body, or for a binary-mode CloudEvent its
/// `ce-*` headers before the body, in the one form both sides can build:
///
/// ```text
/// ce-<name>:<value>\n   each ce-* header, names lowercase, sorted by name
/// \n                    (the values of a repeated one in the order sent)
/// <body>
/// ```
///
/// Header values carry no newline, and every line before the empty one
/// starts with `ce-`, so no two requests share a signed content.
pub fn signed_content<'a>(headers: &HeaderMap, body: &'a [u8]) -> Cow<'a, [u8]> {
    if !is_binary(headers) {
        return Cow::Borrowed(body);
    }
    let mut names: Vec<&http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("ce-"))
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut content = Vec::with_capacity(body.len() + 256);
    for name in names {
        for value in headers.get_all(name) {
            content.extend_from_slice(name.as_str().as_bytes());
            content.push(b':');
            content.extend_from_slice(value.as_bytes());
            content.push(b'\n');
        }
    }
    content.push(b'\n');
    content.extend_from_slice(body);
    Cow::Owned(content)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn refused(why: &str) -> Error {
    Error::new(Kind::Unauthenticated, format!("signature refused: {why}"))
}

/// `t=UNIX,v1=HEX[,v1=HEX…]`.
fn moat_signature(
    secrets: &[Vec<u8>],
    value: &str,
    body: &[u8],
    tolerance: Duration,
    hint: &str,
) -> Result<(), Error> {
    let mut t = None;
    let mut given = Vec::new();
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => given.push(v),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| refused("Moat-Signature has no t="))?;
    fresh(t, tolerance)?;
    for secret in secrets {
        let expected = hex::encode(&hmac(secret, &[t.as_bytes(), b".", body]));
        if given
            .iter()
            .any(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())))
        {
            return Ok(());
        }
    }
    Err(refused(&format!("Moat-Signature does not match{hint}")))
}

/// Standard Webhooks: `v1,BASE64[ v1,BASE64…]` over `id.timestamp.body`.
fn standard_webhooks(
    secrets: &[Vec<u8>],
    id: &str,
    t: &str,
    signatures: &str,
    body: &[u8],
    tolerance: Duration,
    hint: &str,
) -> Result<(), Error> {
    fresh(t, tolerance)?;
    let given: Vec<&str> = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .collect();
    for secret in secrets {
        let key = match std::str::from_utf8(secret)
            .ok()
            .and_then(|s| s.strip_prefix("whsec_"))
        {
            Some(encoded) => STANDARD.decode(encoded).unwrap_or_else(|_| secret.clone()),
            None => secret.clone(),
        };
        let expected =
            STANDARD.encode(hmac(&key, &[id.as_bytes(), b".", t.as_bytes(), b".", body]));
        if given
            .iter()
            .any(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())))
        {
            return Ok(());
        }
    }
    Err(refused(&format!("webhook-signature does not match{hint}")))
}

/// The timestamp is unix seconds within `tolerance` of now.
fn fresh(t: &str, tolerance: Duration) -> Result<(), Error> {
    let t: u64 = t
        .trim()
        .parse()
        .map_err(|_| refused("the timestamp is not unix seconds"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now.abs_diff(t) > tolerance.as_secs() {
        return Err(refused(&format!(
            "the timestamp is {} s from now; at most {} s are accepted",
            now.abs_diff(t),
            tolerance.as_secs()
        )));
    }
    Ok(())
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length: the error arm cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `Moat-Signature` for `body` at unix time `t`: what a sender computes
/// (tests and the load generator sign with it). For a binary-mode
/// CloudEvent, `body` is its [`signed_content`].
pub fn moat_signature_for(secret: &[u8], t: u64, body: &[u8]) -> String {
    let t = t.to_string();
    format!(
        "t={t},v1={}",
        hex::encode(&hmac(secret, &[t.as_bytes(), b".", body]))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn secrets(list: &[&str]) -> Secrets {
        Secrets::new(&[(String::new(), list.iter().map(|s| s.to_string()).collect())].into())
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const TOLERANCE: Duration = Duration::from_secs(300);

    #[test]
    fn moat_signatures_verify_with_any_current_secret() {
        let body = br#"{"id":"e1"}"#;
        let signed = moat_signature_for(b"old", now(), body);
        let h = headers(&[("moat-signature", signed)]);
        assert!(
            secrets(&["new", "old"])
                .verify(System::ERP, &h, body, TOLERANCE)
                .is_ok()
        );
        let wrong = secrets(&["new"])
            .verify(System::ERP, &h, body, TOLERANCE)
            .unwrap_err();
        assert_eq!(wrong.kind(), Kind::Unauthenticated);
        let tampered = secrets(&["old"])
            .verify(System::ERP, &h, br#"{"id":"e2"}"#, TOLERANCE)
            .unwrap_err();
        assert_eq!(tampered.kind(), Kind::Unauthenticated);
        let stale = headers(&[(
            "moat-signature",
            moat_signature_for(b"old", now() - 3600, body),
        )]);
        let refused = secrets(&["old"])
            .verify(System::ERP, &stale, body, TOLERANCE)
            .unwrap_err();
        assert!(refused.message().contains("timestamp"), "{refused}");
    }

    #[test]
    fn standard_webhooks_verify_with_whsec_secrets() {
        let body = br#"{"id":"e1"}"#;
        let key = b"0123456789abcdef";
        let secret = format!("whsec_{}", STANDARD.encode(key));
        let t = now().to_string();
        let signature = STANDARD.encode(hmac(key, &[b"msg_1", b".", t.as_bytes(), b".", body]));
        let h = headers(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", t),
            ("webhook-signature", format!("v1,bm9wZQ== v1,{signature}")),
        ]);
        assert!(
            secrets(&[&secret])
                .verify(System::PIM, &h, body, TOLERANCE)
                .is_ok()
        );
        assert!(
            secrets(&["whsec_AAAA"])
                .verify(System::PIM, &h, body, TOLERANCE)
                .is_err()
        );
    }

    #[test]
    fn a_source_without_a_secret_is_told_which_variable_to_set() {
        let none = Secrets::new(&BTreeMap::new());
        let e = none
            .verify(System::OMS, &HeaderMap::new(), b"{}", TOLERANCE)
            .unwrap_err();
        assert_eq!(e.kind(), Kind::Forbidden);
        assert!(e.message().contains("MOAT_EVENTS_SECRET_OMS"), "{e}");
        let own = Secrets::new(&[("erp".to_string(), vec!["e".to_string()])].into());
        let unsigned = own
            .verify(System::ERP, &HeaderMap::new(), b"{}", TOLERANCE)
            .unwrap_err();
        assert_eq!(unsigned.kind(), Kind::Unauthenticated);
        assert_eq!(
            own.verify(System::PIM, &HeaderMap::new(), b"{}", TOLERANCE)
                .unwrap_err()
                .kind(),
            Kind::Forbidden
        );
    }

    #[test]
    fn a_binary_cloudevent_is_signed_over_its_attributes_and_its_body() {
        let attributes = [
            ("ce-specversion", "1.0"),
            ("ce-type", "product.deleted"),
            ("ce-id", "ce-7"),
            ("ce-time", "2026-11-29T10:00:01Z"),
            ("ce-subject", "prod-000020"),
        ];
        let h = headers(
            &attributes
                .iter()
                .map(|(k, v)| (*k, v.to_string()))
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            std::str::from_utf8(&signed_content(&h, b"")).unwrap(),
            "ce-id:ce-7\nce-specversion:1.0\nce-subject:prod-000020\n\
             ce-time:2026-11-29T10:00:01Z\nce-type:product.deleted\n\n"
        );
        let sign = |content: &[u8]| moat_signature_for(b"s", now(), content);
        let mut signed = h.clone();
        signed.insert(
            "moat-signature",
            sign(&signed_content(&h, b"")).parse().unwrap(),
        );
        let verify = |h: &HeaderMap| secrets(&["s"]).verify(System::PIM, h, b"", TOLERANCE);
        assert!(verify(&signed).is_ok());

        // Signed over the body alone: refused, saying how it is signed.
        let mut body_only = h.clone();
        body_only.insert("moat-signature", sign(b"").parse().unwrap());
        let e = verify(&body_only).unwrap_err();
        assert_eq!(e.kind(), Kind::Unauthenticated);
        assert!(e.message().contains("ce-* headers"), "{e}");

        // Any attribute changed, added, repeated or dropped: refused.
        let mut forged = Vec::new();
        for (name, _) in attributes {
            let mut changed = signed.clone();
            changed.insert(name, "forged".parse().unwrap());
            forged.push(changed);
            let mut dropped = signed.clone();
            dropped.remove(name);
            forged.push(dropped);
        }
        for extra in ["ce-entityversion", "ce-segment", "ce-currency", "ce-type"] {
            let mut added = signed.clone();
            added.append(extra, "1".parse().unwrap());
            forged.push(added);
        }
        for h in &forged {
            assert_eq!(
                verify(h).unwrap_err().kind(),
                Kind::Unauthenticated,
                "{h:?}"
            );
        }
        // Or the body.
        assert!(
            secrets(&["s"])
                .verify(System::PIM, &signed, b"{}", TOLERANCE)
                .is_err()
        );
    }
}
