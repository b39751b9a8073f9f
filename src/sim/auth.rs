//! Who may call the protocol routes: checked on arrival, before a call is
//! counted or meets its system's faults, against a fixed token
//! (`require_token`) and the tokens `/oauth/token` issued (`oauth`).
//!
//! Tokens are never logged nor echoed in an error.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::{SimConfig, error};

/// The client allowed to ask for tokens (RFC 6749 §4.4).
#[derive(Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

pub struct Auth {
    /// Accepted as is on every protocol call (`--require-token`).
    fixed: Option<String>,
    /// Without it there is no token endpoint and issued tokens play no part.
    client: Option<Client>,
    /// Lifetime of an issued token, also its `expires_in`.
    ttl: Duration,
    /// Issued tokens and when they stop being valid. Tokio's clock, so
    /// tests with paused time can let tokens expire without waiting.
    issued: Mutex<HashMap<String, Instant>>,
}

/// Why a protocol call was refused; both are a 401 (RFC 6750 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No bearer credentials at all.
    Missing,
    /// A token this simulator does not accept (unknown, wrong or expired).
    Invalid,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        // RFC 6750 §3.1: no error code when the request carried no token,
        // `invalid_token` when it carried one that will not do.
        let (challenge, message) = match self {
            Denied::Missing => ("Bearer", "a bearer token is required"),
            Denied::Invalid => (
                r#"Bearer error="invalid_token""#,
                "the bearer token is not valid (unknown, wrong or expired)",
            ),
        };
        let mut response = error(StatusCode::UNAUTHORIZED, message);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

impl Auth {
    pub fn new(config: &SimConfig) -> Auth {
        Auth {
            fixed: config.require_token.clone(),
            client: config
                .oauth_client
                .clone()
                .map(|(id, secret)| Client { id, secret }),
            ttl: config.token_ttl,
            issued: Mutex::new(HashMap::new()),
        }
    }

    fn issued(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        // Every write is one insert or removal: poison cannot mean a
        // half-written table.
        self.issued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client credentials `/oauth/token` accepts; None: no OAuth.
    pub fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Lets a protocol call through, or says why not.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Denied> {
        self.check_token(bearer(headers))
    }

    /// Whether any credentials are asked for at all.
    pub fn open(&self) -> bool {
        self.fixed.is_none() && self.client.is_none()
    }

    /// Lets a call carrying `token` through, however it carried it (a
    /// dialect's own header), or says why not.
    pub fn check_token(&self, token: Option<&str>) -> Result<(), Denied> {
        if self.open() {
            return Ok(());
        }
        let token = token.ok_or(Denied::Missing)?;
        if self.fixed.as_deref() == Some(token) {
            return Ok(());
        }
        let live = self.client.is_some() && self.is_issued(token);
        if live { Ok(()) } else { Err(Denied::Invalid) }
    }

    /// Lets a call through only with a token this simulator issued (or the
    /// fixed one): a vendor dialect insists on its token flow even when
    /// no credentials were configured, as the real API would.
    pub fn check_issued(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let token = bearer(headers).ok_or(Denied::Missing)?;
        if self.fixed.as_deref() == Some(token) || self.is_issued(token) {
            Ok(())
        } else {
            Err(Denied::Invalid)
        }
    }

    /// Whether `token` was issued here and has not expired.
    pub fn is_issued(&self, token: &str) -> bool {
        self.issued()
            .get(token)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// A new access token, valid for `ttl` from now.
    pub fn issue(&self) -> String {
        // fastrand is no CSPRNG and a real authorisation server must not
        // mint tokens with it; these guard only simulated data.
        let token = format!("sim_{:032x}", fastrand::u128(..));
        let now = Instant::now();
        let mut issued = self.issued();
        // Expired tokens are refused like unknown ones, so they can go.
        issued.retain(|_, until| now < *until);
        issued.insert(token.clone(), now + self.ttl);
        token
    }

    /// Ends every token issued so far (`POST /_sim/oauth/expire`); returns
    /// how many were still valid.
    pub fn expire_all(&self) -> usize {
        let now = Instant::now();
        let mut issued = self.issued();
        let live = issued.values().filter(|until| now < **until).count();
        issued.clear();
        live
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive,
/// RFC 9110 §11.1).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
