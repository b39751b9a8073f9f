//! Change events the simulator pushes to Moat's `POST /events/{source}`
//! when a control write asks for one, signed the way a system of record
//! would sign them. They are Moat's envelope, whose body holds everything
//! the gateway acts on, so `Moat-Signature` over the body covers it all
//! (only binary-mode CloudEvents, which the simulator does not send, sign
//! their `ce-*` headers too).
//!
//! Events come fat (the changed item as `data`) or thin (`entity` and
//! `version` only, the receiver refetches), as [`EventMode`] says; with
//! `chaos` on, every event is delivered twice, the second time after a
//! random pause, so deliveries overlap and arrive out of order, as they do
//! from real event meshes.
//!
//! Sending happens in a spawned task so the control response never waits
//! on the gateway; each event is retried a few times with backoff, since a
//! gateway restarting under a test should not silently lose events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use super::Simulator;
use super::dialect::{self, Change, Dialect};
use super::sign::hmac_hex;
use super::wire::rfc3339;

/// Attempts per event, and the pause before each retry.
const BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// `Moat-Signature` header value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>">`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let hex = hmac_hex(secret, &[t.to_string().as_bytes(), b".", body]);
    format!("t={t},v1={hex}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    id: String,
    source: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "rfc3339")]
    occurred_at: SystemTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

/// How events are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventForm {
    /// The changed item as `data`.
    #[default]
    Fat,
    /// `entity` and `version` only.
    Thin,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMode {
    #[serde(default)]
    pub form: EventForm,
    /// Every event twice, the second copy after a random pause of up to
    /// 200 ms: duplicates, out of order.
    #[serde(default)]
    pub chaos: bool,
}

struct Target {
    client: reqwest::Client,
    base: String,
    secret: Option<String>,
}

pub struct Emitter {
    target: Option<Arc<Target>>,
    /// Whose events: Moat's envelope, or a vendor's (`dialect`).
    dialect: Dialect,
    mode: std::sync::RwLock<EventMode>,
    /// Event ids are `evt-<boot>-<n>`: the boot time keeps ids unique across
    /// simulator restarts, `n` within one run (and across resets).
    boot: u64,
    next: AtomicU64,
}

impl Emitter {
    pub fn new(
        events_to: Option<&str>,
        secret: Option<&str>,
        mode: EventMode,
        dialect: Dialect,
    ) -> Emitter {
        let boot = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let target = events_to.and_then(|base| {
            // reqwest is built without a bundled crypto provider; whichever
            // part of the process installs one first wins, so ignore "already set".
            let _ = rustls::crypto::ring::default_provider().install_default();
            match reqwest::Client::builder().timeout(SEND_TIMEOUT).build() {
                Ok(client) => Some(Arc::new(Target {
                    client,
                    base: base.trim_end_matches('/').to_owned(),
                    secret: secret.map(str::to_owned),
                })),
                Err(error) => {
                    tracing::warn!(%error, "simulator cannot build an HTTP client; events are off");
                    None
                }
            }
        });
        if target.as_ref().is_some_and(|t| t.secret.is_none()) {
            tracing::warn!("simulator sends events unsigned: no events secret given");
        }
        Emitter {
            target,
            dialect,
            mode: std::sync::RwLock::new(mode),
            boot,
            next: AtomicU64::new(1),
        }
    }

    pub fn mode(&self) -> EventMode {
        *self.mode.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_mode(&self, mode: EventMode) {
        *self.mode.write().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// Sends one event per item, in order, from a spawned task.
    pub fn emit(&self, sim: &Simulator, source: &'static str, kind: &'static str, items: &[Value]) {
        let Some(target) = self.target.clone() else {
            tracing::debug!(
                source,
                kind,
                "emit_event ignored: simulator has no events_to"
            );
            return;
        };
        let mode = self.mode();
        let thin = mode.form == EventForm::Thin;
        let mut deliveries = Vec::with_capacity(items.len());
        for data in items {
            let id = format!(
                "evt-{:x}-{}",
                self.boot,
                self.next.fetch_add(1, Ordering::Relaxed)
            );
            if self.dialect != Dialect::V1 {
                let change = Change {
                    kind,
                    item: data,
                    id: &id,
                    thin,
                };
                let secret = target.secret.as_deref();
                match dialect::event(sim, self.dialect, &change, secret) {
                    Some(d) => deliveries.push(Outgoing {
                        id,
                        url: format!("{}{}", target.base, d.path),
                        headers: d.headers,
                        body: d.body,
                        moat_signed: false,
                    }),
                    None => tracing::debug!(kind, "the dialect sends no event for this change"),
                }
                continue;
            }
            let event = Event {
                id,
                source,
                kind,
                occurred_at: SystemTime::now(),
                version: data.get("version").and_then(Value::as_u64),
                entity: thin.then(|| entity_of(kind, data)),
                data: (!thin).then_some(data),
            };
            match serde_json::to_vec(&event) {
                Ok(body) => deliveries.push(Outgoing {
                    id: event.id,
                    url: format!("{}/events/{source}", target.base),
                    headers: Vec::new(),
                    body,
                    moat_signed: true,
                }),
                Err(error) => tracing::warn!(%error, "simulator cannot encode an event"),
            }
        }
        if mode.chaos {
            for outgoing in &deliveries {
                let (target, outgoing) = (target.clone(), outgoing.clone());
                let pause = Duration::from_millis(fastrand::u64(0..200));
                tokio::spawn(async move {
                    tokio::time::sleep(pause).await;
                    send(&target, &outgoing).await;
                });
            }
        }
        tokio::spawn(async move {
            for outgoing in deliveries {
                send(&target, &outgoing).await;
            }
        });
    }
}

/// One event on its way: where, with which headers, and whether it is
/// signed with `Moat-Signature` at each attempt (a vendor's delivery comes
/// signed already).
#[derive(Clone)]
struct Outgoing {
    id: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    moat_signed: bool,
}

/// A thin event's `entity`: what changed, as precisely as the item says.
fn entity_of(kind: &str, item: &Value) -> Value {
    let field = |name: &str| item.get(name).cloned().unwrap_or(Value::Null);
    match kind {
        "price.updated" => serde_json::json!({
            "kind": "price", "id": field("sku"),
            "segment": field("segment"), "currency": field("currency"),
        }),
        "inventory.updated" => serde_json::json!({ "kind": "inventory", "id": field("sku") }),
        _ => serde_json::json!({ "kind": "product", "id": field("id") }),
    }
}

async fn send(target: &Target, outgoing: &Outgoing) {
    let (id, url) = (outgoing.id.as_str(), outgoing.url.as_str());
    let body = bytes::Bytes::from(outgoing.body.clone());
    for attempt in 0..=BACKOFF.len() {
        if attempt > 0 {
            tokio::time::sleep(BACKOFF[attempt - 1]).await;
        }
        let mut request = target
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        for (name, value) in &outgoing.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(secret) = target.secret.as_ref().filter(|_| outgoing.moat_signed) {
            // Signed per attempt: a retry must not carry a stale timestamp.
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            request = request.header("Moat-Signature", signature(secret.as_bytes(), t, &body));
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(id, url, "simulator event delivered");
                return;
            }
            // The gateway understood and refused (bad signature, bad body):
            // the same bytes will be refused again.
            Ok(response)
                if response.status().is_client_error() && !retryable(response.status()) =>
            {
                tracing::warn!(id, url, status = %response.status(), "simulator event refused");
                return;
            }
            Ok(response) => {
                tracing::debug!(id, url, attempt, status = %response.status(), "simulator event failed");
            }
            Err(error) => tracing::debug!(id, url, attempt, %error, "simulator event failed"),
        }
    }
    tracing::warn!(id, url, "simulator gave up on an event after retries");
}

/// 4xx that can pass on a later try: the gateway shedding load.
fn retryable(status: http::StatusCode) -> bool {
    status == http::StatusCode::TOO_MANY_REQUESTS || status == http::StatusCode::REQUEST_TIMEOUT
}
