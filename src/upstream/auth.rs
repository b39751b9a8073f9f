//! How Moat proves who it is to a system: nothing, a fixed header (bearer
//! token, basic auth, a header of the system's own), or an OAuth2
//! client-credentials token. A token is fetched once and shared by every
//! call, refreshed by one caller shortly before it expires (the others keep
//! using it meanwhile), and retired, once, when the system answers 401.
//!
//! Secrets come from `config::Secrets` (the environment) and never reach a
//! log: header values are marked sensitive.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use http_body_util::Full;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tokio::time::Instant;

use super::System;
use super::pool::{Outgoing, Pool};
use crate::config::{Auth, ClientAuth, Grant, SystemSecrets};
use crate::error::Error;
use crate::telemetry;

/// One system's credentials, ready to put on a request.
pub enum Credentials {
    None,
    Header(HeaderName, HeaderValue),
    /// Boxed: a token source is large beside a header, and every
    /// system holds one of these.
    OAuth2(Box<TokenSource>),
}

/// The `MOAT_{NAME}_*` variables `auth` needs.
pub fn needed(system: &str, auth: &Auth) -> Vec<String> {
    let var = |suffix: &str| format!("MOAT_{}_{suffix}", system.to_ascii_uppercase());
    match auth {
        Auth::None => vec![],
        Auth::Bearer | Auth::Header { .. } => vec![var("TOKEN")],
        Auth::Basic => vec![var("USER"), var("PASSWORD")],
        Auth::Oauth2 {
            grant: Grant::Password,
            ..
        } => vec![
            var("CLIENT_ID"),
            var("CLIENT_SECRET"),
            var("USER"),
            var("PASSWORD"),
        ],
        Auth::Oauth2 { .. } => vec![var("CLIENT_ID"), var("CLIENT_SECRET")],
    }
}

/// The variables of `needed` that `secrets` lacks.
pub fn missing(system: &str, auth: &Auth, secrets: Option<&SystemSecrets>) -> Vec<String> {
    let none = SystemSecrets::default();
    let s = secrets.unwrap_or(&none);
    let have = [
        ("_TOKEN", &s.token),
        ("_USER", &s.user),
        ("_PASSWORD", &s.password),
        ("_CLIENT_ID", &s.client_id),
        ("_CLIENT_SECRET", &s.client_secret),
    ];
    needed(system, auth)
        .into_iter()
        .filter(|var| {
            !have
                .iter()
                .any(|(suffix, value)| var.ends_with(suffix) && value.is_some())
        })
        .collect()
}

impl Credentials {
    /// `auth` with its secrets; an error names every variable missing.
    /// `base_url`: the system's, which a token URL that is a path is on.
    pub fn new(
        system: System,
        auth: &Auth,
        secrets: Option<&SystemSecrets>,
        pool: Pool,
        timeout: Duration,
        base_url: &str,
    ) -> Result<Credentials, Error> {
        let missing = missing(system.name(), auth, secrets);
        if !missing.is_empty() {
            return Err(Error::internal(format!(
                "systems.{system}.auth needs {} in the environment",
                missing.join(" and ")
            )));
        }
        let none = SystemSecrets::default();
        let s = secrets.unwrap_or(&none);
        let secret = |v: &Option<String>| v.clone().unwrap_or_default();
        let value = |text: String| {
            HeaderValue::from_str(&text)
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
                .map_err(|_| {
                    Error::internal(format!(
                        "the credentials of {system} cannot go in an HTTP header"
                    ))
                })
        };
        Ok(match auth {
            Auth::None => Credentials::None,
            Auth::Bearer => Credentials::Header(
                AUTHORIZATION,
                value(format!("Bearer {}", secret(&s.token)))?,
            ),
            Auth::Basic => Credentials::Header(
                AUTHORIZATION,
                value(basic(&secret(&s.user), &secret(&s.password)))?,
            ),
            Auth::Header { name } => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| Error::internal(format!("{name:?} is not a header name")))?;
                Credentials::Header(name, value(secret(&s.token))?)
            }
            Auth::Oauth2 {
                token_url,
                scope,
                grant,
                client_auth,
                header,
            } => Credentials::OAuth2(Box::new(TokenSource {
                system,
                pool,
                timeout,
                token_url: on_host(base_url, token_url),
                scope: scope.clone(),
                client_id: secret(&s.client_id),
                client_secret: secret(&s.client_secret),
                client_in_body: *client_auth == ClientAuth::Body,
                header: match header {
                    None => None,
                    Some(name) => {
                        Some(HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                            Error::internal(format!("{name:?} is not a header name"))
                        })?)
                    }
                },
                user: (*grant == Grant::Password).then(|| (secret(&s.user), secret(&s.password))),
                current: ArcSwapOption::empty(),
                refreshing: tokio::sync::Mutex::new(()),
            })),
        })
    }

    /// Puts them on `request`; returns the OAuth2 token used, so a 401 can
    /// retire exactly that one.
    /// A request that already carries the header these credentials would
    /// set (a connector route sending a shopper's own token) is left as it
    /// is: the system's credentials are not for that call.
    pub async fn apply(&self, headers: &mut HeaderMap) -> Result<Option<Arc<Token>>, Error> {
        let sets = match self {
            Credentials::None => return Ok(None),
            Credentials::Header(name, _) => name,
            Credentials::OAuth2(source) => source.header.as_ref().unwrap_or(&AUTHORIZATION),
        };
        if headers.contains_key(sets) {
            return Ok(None);
        }
        match self {
            Credentials::None => Ok(None),
            Credentials::Header(name, value) => {
                headers.insert(name.clone(), value.clone());
                Ok(None)
            }
            Credentials::OAuth2(source) => {
                let token = source.token().await?;
                headers.insert(sets.clone(), token.header.clone());
                Ok(Some(token))
            }
        }
    }

    /// The system refused `used`: the next call fetches a new token, unless
    /// another caller already did.
    pub fn retire(&self, used: &Arc<Token>) {
        if let Credentials::OAuth2(source) = self {
            source.current.compare_and_swap(used, None);
        }
    }

    pub fn is_oauth2(&self) -> bool {
        matches!(self, Credentials::OAuth2(_))
    }
}

/// HTTP Basic credentials (RFC 7617), as an `Authorization` value.
fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// An access token and when to replace it.
pub struct Token {
    header: HeaderValue,
    /// From here one caller fetches a new token…
    refresh_at: Instant,
    /// …while the others use this one until here.
    expires_at: Instant,
}

/// `token_url`, or when it is a path, that path on `base_url`'s host.
fn on_host(base_url: &str, token_url: &str) -> String {
    if !token_url.starts_with('/') {
        return token_url.to_string();
    }
    match reqwest::Url::parse(base_url) {
        Ok(base) => format!("{}{token_url}", base.origin().ascii_serialization()),
        Err(_) => token_url.to_string(),
    }
}

/// OAuth2 client credentials (RFC 6749 §4.4), or a user's password beside
/// them (§4.3), of one system.
pub struct TokenSource {
    system: System,
    pool: Pool,
    timeout: Duration,
    token_url: String,
    scope: Option<String>,
    client_id: String,
    client_secret: String,
    /// The client's id and secret go in the form, not HTTP Basic.
    client_in_body: bool,
    /// The header the token goes in as it is; None: `Authorization:
    /// Bearer <token>`.
    header: Option<HeaderName>,
    /// The user and password of the password grant.
    user: Option<(String, String)>,
    current: ArcSwapOption<Token>,
    /// Held by the one caller fetching a token.
    refreshing: tokio::sync::Mutex<()>,
}

/// What a token endpoint answers.
#[derive(Deserialize)]
struct Granted {
    access_token: String,
    /// Required by RFC 6749 §5.1, left out by some servers whose token
    /// goes in a header of their own.
    token_type: Option<String>,
    expires_in: Option<u64>,
}

impl TokenSource {
    async fn token(&self) -> Result<Arc<Token>, Error> {
        let current = self.current.load_full();
        if let Some(token) = current.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.clone());
        }
        let _refreshing = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Someone is fetching: a token that still works will do.
                if let Some(token) = current.filter(|t| Instant::now() < t.expires_at) {
                    return Ok(token);
                }
                self.refreshing.lock().await
            }
        };
        // It may have been fetched while this caller waited.
        if let Some(token) = self
            .current
            .load_full()
            .filter(|t| Instant::now() < t.refresh_at)
        {
            return Ok(token);
        }
        // Boxed: fetching is rare, and inline its HTTP exchange would make
        // every upstream call's future larger.
        let fetched = Box::pin(self.fetch()).await;
        telemetry::token_fetch(self.system, fetched.is_ok());
        let token = Arc::new(fetched?);
        self.current.store(Some(token.clone()));
        Ok(token)
    }

    async fn fetch(&self) -> Result<Token, Error> {
        let system = self.system;
        let failed = |why: String| {
            tracing::warn!(upstream = %system, token_url = %crate::config::redact(&self.token_url), %why, "no OAuth2 token");
            Error::unavailable(format!("{system}: cannot get an OAuth2 token ({why})"))
        };
        let mut form = match &self.user {
            None => String::from("grant_type=client_credentials"),
            Some((user, password)) => format!(
                "grant_type=password&username={}&password={}",
                utf8_percent_encode(user, NON_ALPHANUMERIC),
                utf8_percent_encode(password, NON_ALPHANUMERIC)
            ),
        };
        if let Some(scope) = &self.scope {
            form.push_str("&scope=");
            form.extend(utf8_percent_encode(scope, NON_ALPHANUMERIC));
        }
        let asked = Instant::now();
        let mut client = None;
        if self.client_in_body {
            for (name, value) in [
                ("client_id", &self.client_id),
                ("client_secret", &self.client_secret),
            ] {
                form.push('&');
                form.push_str(name);
                form.push('=');
                form.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
            }
        } else {
            let mut value = HeaderValue::from_str(&basic(&self.client_id, &self.client_secret))
                .map_err(|_| failed("the client id cannot go in a header".into()))?;
            value.set_sensitive(true);
            client = Some(value);
        }
        let mut request = Outgoing::new(Full::new(Bytes::from(form)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self
            .token_url
            .parse()
            .map_err(|e| failed(format!("the token URL is not one: {e}")))?;
        let headers = request.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        if let Some(client) = client {
            headers.insert(AUTHORIZATION, client);
        }
        let answer = self
            .pool
            .exchange(request, self.timeout)
            .await
            .map_err(|e| failed(format!("token endpoint: {e}")))?;
        let (status, body) = (answer.status, answer.body);
        if !status.is_success() {
            // RFC 6749 §5.2: `{"error": "invalid_client"}` and the like.
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(failed(format!("token endpoint answered {status} {code}")));
        }
        let granted: Granted = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("token response is not an OAuth2 token: {e}")))?;
        // A token for `Authorization: Bearer` must say it is one; one for a
        // header of the system's own is sent as it is, whatever its type.
        let text = match (&self.header, granted.token_type.as_deref()) {
            (Some(_), _) => granted.access_token,
            (None, Some(kind)) if kind.eq_ignore_ascii_case("bearer") => {
                format!("Bearer {}", granted.access_token)
            }
            (None, kind) => {
                return Err(failed(format!(
                    "token type {}, not Bearer",
                    kind.map_or("missing".to_string(), |k| format!("{k:?}"))
                )));
            }
        };
        let mut header = HeaderValue::from_str(&text)
            .map_err(|_| failed("the token cannot go in a header".into()))?;
        header.set_sensitive(true);
        // Without `expires_in` the token lasts until the system refuses it.
        let lifetime = Duration::from_secs(granted.expires_in.unwrap_or(86_400));
        // Replaced when a fifth of its life (at most a minute) is left.
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        Ok(Token {
            header,
            refresh_at: asked + lifetime - margin,
            expires_at: asked + lifetime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connections of a system with default settings.
    fn plain() -> Pool {
        Pool::new(&crate::config::Config::default().system("test")).expect("a pool")
    }

    #[test]
    fn missing_names_every_variable() {
        let auth = Auth::Oauth2 {
            token_url: "http://127.0.0.1:1/token".into(),
            scope: None,
            grant: Grant::ClientCredentials,
            client_auth: Default::default(),
            header: None,
        };
        assert_eq!(
            missing("wms", &auth, None),
            ["MOAT_WMS_CLIENT_ID", "MOAT_WMS_CLIENT_SECRET"]
        );
        let some = SystemSecrets {
            client_id: Some("id".into()),
            ..Default::default()
        };
        assert_eq!(
            missing("wms", &auth, Some(&some)),
            ["MOAT_WMS_CLIENT_SECRET"]
        );
        let password = Auth::Oauth2 {
            token_url: "/api/oauth/v1/token".into(),
            scope: None,
            grant: Grant::Password,
            client_auth: Default::default(),
            header: None,
        };
        assert_eq!(
            missing("akeneo", &password, Some(&some)),
            [
                "MOAT_AKENEO_CLIENT_SECRET",
                "MOAT_AKENEO_USER",
                "MOAT_AKENEO_PASSWORD"
            ]
        );
        assert_eq!(
            on_host("http://127.0.0.1:7070/moat-demo", "/oauth/token"),
            "http://127.0.0.1:7070/oauth/token"
        );
        assert!(missing("erp", &Auth::None, None).is_empty());
        assert_eq!(missing("erp", &Auth::Bearer, None), ["MOAT_ERP_TOKEN"]);
    }

    #[test]
    fn a_header_of_its_own_carries_the_token() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credentials = Credentials::new(
            System::named("wms"),
            &Auth::Header {
                name: "X-Api-Key".into(),
            },
            Some(&SystemSecrets {
                token: Some("k-123".into()),
                ..Default::default()
            }),
            plain(),
            Duration::from_secs(1),
            "http://127.0.0.1:1",
        )
        .expect("complete");
        let Credentials::Header(name, value) = credentials else {
            panic!("a header");
        };
        assert_eq!(name, "x-api-key");
        assert_eq!(value, "k-123");
        assert!(value.is_sensitive());
        let missing = Credentials::new(
            System::ERP,
            &Auth::Bearer,
            None,
            plain(),
            Duration::from_secs(1),
            "http://127.0.0.1:1",
        );
        assert!(missing.is_err_and(|e| e.message().contains("MOAT_ERP_TOKEN")));
    }

    #[test]
    fn header_credentials_are_sensitive() {
        let secrets = SystemSecrets {
            user: Some("moat".into()),
            password: Some("hunter2".into()),
            ..Default::default()
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credentials = Credentials::new(
            System::ERP,
            &Auth::Basic,
            Some(&secrets),
            plain(),
            Duration::from_secs(1),
            "http://127.0.0.1:1",
        )
        .expect("complete");
        let Credentials::Header(name, value) = credentials else {
            panic!("basic auth is a header");
        };
        assert_eq!(name, AUTHORIZATION);
        assert!(value.is_sensitive());
        assert_eq!(value, "Basic bW9hdDpodW50ZXIy");
        assert!(!format!("{value:?}").contains("bW9hdDpodW50ZXIy"));
    }

    /// A token endpoint reading the client from the form and answering
    /// without a token type (Shopify's client-credentials grant): the
    /// token goes, as it is, in the header the config names.
    #[tokio::test]
    async fn a_token_for_a_header_of_its_own_with_the_client_in_the_form() {
        use axum::routing::post;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let app = axum::Router::new().route(
            "/admin/oauth/access_token",
            post(|headers: axum::http::HeaderMap, body: String| async move {
                let fields: Vec<&str> = body.split('&').collect();
                let in_form = fields.contains(&"client_id=app")
                    && fields.contains(&"client_secret=s%3Dcret")
                    && fields.contains(&"grant_type=client_credentials");
                if !in_form || headers.contains_key("authorization") {
                    return (axum::http::StatusCode::BAD_REQUEST, "{}".to_string());
                }
                let token =
                    r#"{"access_token":"shpat_1","scope":"read_products","expires_in":86399}"#;
                (axum::http::StatusCode::OK, token.to_string())
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!(
            "http://{}/admin/api/2025-07",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let secrets = SystemSecrets {
            client_id: Some("app".into()),
            client_secret: Some("s=cret".into()),
            ..Default::default()
        };
        let auth = |header: Option<&str>| Auth::Oauth2 {
            token_url: "/admin/oauth/access_token".into(),
            scope: None,
            grant: Grant::ClientCredentials,
            client_auth: ClientAuth::Body,
            header: header.map(str::to_string),
        };
        let credentials = |auth: &Auth| {
            Credentials::new(
                System::named("shop"),
                auth,
                Some(&secrets),
                plain(),
                Duration::from_secs(2),
                &base,
            )
            .expect("complete")
        };
        let own = credentials(&auth(Some("X-Shopify-Access-Token")));
        let mut headers = HeaderMap::new();
        own.apply(&mut headers).await.expect("a token");
        assert_eq!(headers["x-shopify-access-token"], "shpat_1");
        assert!(headers.get(AUTHORIZATION).is_none());

        // For `Authorization: Bearer`, a token of no stated type will not do.
        let bearer = credentials(&auth(None));
        let refused = bearer
            .apply(&mut HeaderMap::new())
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            refused.message().contains("token type missing"),
            "{}",
            refused.message()
        );
    }
}
