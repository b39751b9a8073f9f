//! Secrets: read from the environment only, so they never sit in a
//! committed file or in a printed config.

use std::collections::BTreeMap;
use std::fmt;

/// A URL with any password replaced, for error messages and logs.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Secrets, read from the environment only so they never sit in a committed
/// file or in a printed config.
#[derive(Clone, Default)]
pub struct Secrets {
    /// `MOAT_ADMIN_TOKEN`: bearer token of `/admin/*`. None: admin refuses all.
    pub admin_token: Option<String>,
    /// `MOAT_ADMIN_TOKEN_{NAME}` (key: the name, lowercase): named admin
    /// tokens, each given its role by `[admin.tokens.NAME]`.
    pub admin_tokens: BTreeMap<String, String>,
    /// `MOAT_PRICE_TOKEN_SECRET`: signs price tokens and verifies them.
    /// Every replica needs the same one. None: a random key per process
    /// (tokens then verify only on the replica that issued them).
    pub price_token_secret: Option<String>,
    /// `MOAT_PRICE_TOKEN_PREVIOUS_SECRET`: the secret before the last
    /// rotation; tokens it signed still verify until they expire.
    pub price_token_previous_secret: Option<String>,
    /// `MOAT_EVENTS_SECRET` (key `""`, every source) and
    /// `MOAT_EVENTS_SECRET_{SOURCE}` (key: the source, lowercase): the HMAC
    /// secrets change events are signed with. Several, separated by spaces
    /// or commas, are all accepted while a secret is rotated.
    pub events_secrets: BTreeMap<String, Vec<String>>,
    /// `MOAT_DATA_KEY`: 32 bytes (hex or base64) sealing customers, orders
    /// and token mappings in Redis. None: those stay in memory only.
    pub data_key: Option<String>,
    /// `MOAT_DATA_KEY_PREVIOUS`: the data key before the last rotation;
    /// records it sealed are still read, and rewritten under the new one.
    pub data_key_previous: Option<String>,
    /// Credentials of each system, by lowercase name, from
    /// `MOAT_{NAME}_TOKEN`, `_USER`, `_PASSWORD`, `_CLIENT_ID` and
    /// `_CLIENT_SECRET`; which ones a system needs, its `auth` says.
    pub systems: BTreeMap<String, SystemSecrets>,
    /// `MOAT_EDGE_{KIND}_TOKEN` (key: the kind, lowercase): credentials of
    /// the `[[edge.purge]]` targets (Fastly's API token, Cloudflare's).
    pub edge_tokens: BTreeMap<String, String>,
}

/// One system's credentials as the environment gives them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SystemSecrets {
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

impl SystemSecrets {
    /// The field a `MOAT_{NAME}{suffix}` variable fills, longest suffix
    /// first (`_CLIENT_SECRET` before `_SECRET`-like endings).
    const SUFFIXES: [&'static str; 5] = [
        "_CLIENT_SECRET",
        "_CLIENT_ID",
        "_PASSWORD",
        "_TOKEN",
        "_USER",
    ];

    fn slot(&mut self, suffix: &str) -> &mut Option<String> {
        match suffix {
            "_CLIENT_SECRET" => &mut self.client_secret,
            "_CLIENT_ID" => &mut self.client_id,
            "_PASSWORD" => &mut self.password,
            "_TOKEN" => &mut self.token,
            _ => &mut self.user,
        }
    }
}

impl fmt::Debug for SystemSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("SystemSecrets")
            .field("token", &set(&self.token))
            .field("user", &self.user)
            .field("password", &set(&self.password))
            .field("client_id", &self.client_id)
            .field("client_secret", &set(&self.client_secret))
            .finish()
    }
}

impl Secrets {
    pub fn from_env() -> Secrets {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let list = |value: String| -> Vec<String> {
            value
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut events_secrets = BTreeMap::new();
        for (name, value) in std::env::vars() {
            let source = match name.strip_prefix("MOAT_EVENTS_SECRET") {
                Some("") => String::new(),
                Some(rest) => match rest.strip_prefix('_') {
                    Some(source) if !source.is_empty() => source.to_ascii_lowercase(),
                    _ => continue,
                },
                None => continue,
            };
            let secrets = list(value);
            if !secrets.is_empty() {
                events_secrets.insert(source, secrets);
            }
        }
        let admin_tokens = std::env::vars()
            .filter(|(_, value)| !value.is_empty())
            .filter_map(|(name, value)| {
                let named = name.strip_prefix("MOAT_ADMIN_TOKEN_")?;
                (!named.is_empty()).then(|| (named.to_ascii_lowercase(), value))
            })
            .collect();
        let mut systems: BTreeMap<String, SystemSecrets> = BTreeMap::new();
        let mut edge_tokens = BTreeMap::new();
        for (name, value) in std::env::vars() {
            let Some(rest) = name.strip_prefix("MOAT_").filter(|_| !value.is_empty()) else {
                continue;
            };
            // `edge` is no system: its variables name purge targets.
            if let Some(kind) = rest.strip_prefix("EDGE_") {
                if let Some(kind) = kind.strip_suffix("_TOKEN").filter(|k| !k.is_empty()) {
                    edge_tokens.insert(kind.to_ascii_lowercase(), value);
                }
                continue;
            }
            let found = SystemSecrets::SUFFIXES
                .iter()
                .find_map(|suffix| Some((rest.strip_suffix(suffix)?, *suffix)));
            if let Some((system, suffix)) = found.filter(|(system, _)| !system.is_empty()) {
                let entry = systems.entry(system.to_ascii_lowercase()).or_default();
                *entry.slot(suffix) = Some(value);
            }
        }
        Secrets {
            systems,
            edge_tokens,
            admin_token: var("MOAT_ADMIN_TOKEN"),
            admin_tokens,
            price_token_secret: var("MOAT_PRICE_TOKEN_SECRET"),
            price_token_previous_secret: var("MOAT_PRICE_TOKEN_PREVIOUS_SECRET"),
            events_secrets,
            data_key: var("MOAT_DATA_KEY"),
            data_key_previous: var("MOAT_DATA_KEY_PREVIOUS"),
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("Secrets")
            .field("admin_token", &redacted(&self.admin_token))
            .field(
                "admin_tokens",
                &self.admin_tokens.keys().collect::<Vec<_>>(),
            )
            .field("price_token_secret", &redacted(&self.price_token_secret))
            .field(
                "price_token_previous_secret",
                &redacted(&self.price_token_previous_secret),
            )
            .field(
                "events_secrets",
                &self
                    .events_secrets
                    .iter()
                    .map(|(source, list)| (source, list.len()))
                    .collect::<Vec<_>>(),
            )
            .field("data_key", &redacted(&self.data_key))
            .field("data_key_previous", &redacted(&self.data_key_previous))
            .field("systems", &self.systems)
            .field("edge_tokens", &self.edge_tokens.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{Secrets, SystemSecrets};

    #[test]
    fn secrets_never_show_in_debug() {
        let secrets = Secrets {
            admin_token: Some("admin-123".into()),
            admin_tokens: [("ro".to_string(), "viewer-555".to_string())].into(),
            price_token_secret: Some("current-456".into()),
            price_token_previous_secret: Some("previous-789".into()),
            events_secrets: [("erp".to_string(), vec!["events-000".to_string()])].into(),
            data_key: Some("data-444".into()),
            data_key_previous: Some("data-666".into()),
            systems: [(
                "erp".to_string(),
                SystemSecrets {
                    token: Some("token-111".into()),
                    password: Some("password-222".into()),
                    client_secret: Some("client-333".into()),
                    ..Default::default()
                },
            )]
            .into(),
            edge_tokens: [("fastly".to_string(), "edge-777".to_string())].into(),
        };
        let shown = format!("{secrets:?}");
        for secret in [
            "admin-123",
            "viewer-555",
            "current-456",
            "previous-789",
            "events-000",
            "token-111",
            "password-222",
            "client-333",
            "data-444",
            "data-666",
            "edge-777",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
