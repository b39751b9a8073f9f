//! The edges a purge reaches, each in its own API's terms:
//!
//! - Varnish with the xkey vmod (`deploy/varnish/moat.vcl`): `PURGE /` with
//!   the keys in `xkey-purge` (or `xkey-softpurge`), space-separated;
//! - Fastly: `POST /service/{service_id}/purge` with the keys in a
//!   `Surrogate-Key` header (at most 256), `Fastly-Key` the API token,
//!   `Fastly-Soft-Purge: 1` for a soft purge; it answers a JSON object of
//!   key → purge id;
//! - Cloudflare: `POST /zones/{zone}/purge_cache` with `{"tags": [...]}`,
//!   `Authorization: Bearer` the API token; it answers `{"success": …,
//!   "errors": [{code, message}]}`, and `success: false` is a failure even
//!   with a 200.
//!
//! A failure says whether the edge asked to be left alone for a while
//! (429 with `Retry-After`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::config::{PurgeKind, PurgeTarget};

/// One purge target, ready to send.
pub struct Target {
    pub label: String,
    pub kind: PurgeKind,
    base: String,
    service_id: Option<String>,
    zone: Option<String>,
    soft: bool,
    pub max_keys: usize,
    token: Option<String>,
    http: reqwest::Client,
}

/// Why a purge request did not take.
#[derive(Debug, Clone)]
pub struct Failed {
    pub reason: String,
    /// What the edge asked for (a 429's `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Target {
    pub fn new(label: String, config: &PurgeTarget, token: Option<String>) -> Target {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        Target {
            label,
            kind: config.kind,
            base: config.base_url(),
            service_id: config.service_id.clone(),
            zone: config.zone.clone(),
            soft: config.soft,
            max_keys: config.max_keys(),
            token,
            http,
        }
    }

    /// Where its requests go (for status and doctor).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Purges `keys` (at most `max_keys`).
    pub async fn purge(&self, keys: &[String]) -> Result<(), Failed> {
        let request = match self.kind {
            PurgeKind::Varnish => {
                let header = if self.soft {
                    "xkey-softpurge"
                } else {
                    "xkey-purge"
                };
                let purge = Method::from_bytes(b"PURGE").unwrap_or(Method::POST);
                self.http
                    .request(purge, format!("{}/", self.base))
                    .header(header, keys.join(" "))
            }
            PurgeKind::Fastly => {
                let service = self.service_id.as_deref().unwrap_or_default();
                let mut request = self
                    .http
                    .post(format!("{}/service/{service}/purge", self.base))
                    .header("fastly-key", self.token.as_deref().unwrap_or_default())
                    .header("surrogate-key", keys.join(" "))
                    .header("accept", "application/json");
                if self.soft {
                    request = request.header("fastly-soft-purge", "1");
                }
                request
            }
            PurgeKind::Cloudflare => {
                let zone = self.zone.as_deref().unwrap_or_default();
                self.http
                    .post(format!("{}/zones/{zone}/purge_cache", self.base))
                    .bearer_auth(self.token.as_deref().unwrap_or_default())
                    .json(&json!({ "tags": keys }))
            }
        };
        let response = request.send().await.map_err(|e| Failed {
            reason: format!("cannot reach {}: {}", self.base, without_url(&e)),
            retry_after: None,
        })?;
        let status = response.status();
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| {
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
            })
            .flatten();
        let body = response.bytes().await.unwrap_or_default();
        tracing::debug!(target = %self.label, %status, keys = keys.len(), body = %String::from_utf8_lossy(&body[..body.len().min(200)]), "purge answered");
        let refused = |detail: String| Failed {
            reason: format!("{} answered {status}: {detail}", self.label),
            retry_after,
        };
        if !status.is_success() {
            return Err(refused(vendor_error(self.kind, &body)));
        }
        if self.kind == PurgeKind::Cloudflare {
            // Cloudflare's envelope: `success` decides, whatever the status.
            let success = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("success").and_then(serde_json::Value::as_bool));
            if success != Some(true) {
                return Err(refused(vendor_error(self.kind, &body)));
            }
        }
        Ok(())
    }
}

/// The vendor's own words for a refusal: Cloudflare's `errors[].message`
/// (with codes), Fastly's `msg`/`detail`, else the start of the body.
fn vendor_error(kind: PurgeKind, body: &[u8]) -> String {
    let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let said = value.as_ref().and_then(|v| match kind {
        PurgeKind::Cloudflare => v.get("errors").and_then(|e| e.as_array()).map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let code = e.get("code").map(ToString::to_string).unwrap_or_default();
                    let message = e.get("message").and_then(text).unwrap_or_default();
                    format!("{code} {message}").trim().to_string()
                })
                .collect::<Vec<_>>()
                .join("; ")
        }),
        _ => v
            .get("msg")
            .and_then(text)
            .map(|msg| match v.get("detail").and_then(text) {
                Some(detail) => format!("{msg}: {detail}"),
                None => msg,
            }),
    });
    said.filter(|s| !s.is_empty()).unwrap_or_else(|| {
        let body = String::from_utf8_lossy(body);
        body.chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string()
    })
}

/// reqwest's error without the URL it repeats (which may hold a token in
/// someone's configuration).
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(at) = e.find(" for url (") {
        e.truncate(at);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_refusals_are_read_in_their_own_words() {
        let cloudflare = br#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}"#;
        assert_eq!(
            vendor_error(PurgeKind::Cloudflare, cloudflare),
            "10000 Authentication error"
        );
        let fastly = br#"{"msg":"Provided credentials are missing or invalid"}"#;
        assert_eq!(
            vendor_error(PurgeKind::Fastly, fastly),
            "Provided credentials are missing or invalid"
        );
        assert_eq!(
            vendor_error(PurgeKind::Varnish, b"<h1>403</h1>"),
            "<h1>403</h1>"
        );
    }
}
