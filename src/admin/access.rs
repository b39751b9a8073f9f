//! Who is calling the admin API, and what their role lets them do: a bearer
//! token is matched against `MOAT_ADMIN_TOKEN` (an operator named `admin`)
//! and every `MOAT_ADMIN_TOKEN_{NAME}` with its `[admin.tokens.NAME]` role.
//! Viewers read (GET, HEAD); only operators change anything.

use axum::http::Method;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ADMIN, Admin, Role, Secrets};

/// The token a request signed in with, for the role check and the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `admin` for `MOAT_ADMIN_TOKEN`, else the token's `[admin.tokens]` name.
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Whether this caller may send `method`: anything that is not a read
    /// is a change, so a route added later is an operator's by default.
    pub fn may(&self, method: &Method) -> bool {
        self.role == Role::Operator || *method == Method::GET || *method == Method::HEAD
    }
}

/// Every token that can sign in, with its name and role. A named token
/// without its table (or the other way round) stops the start
/// (`Admin::token_problems`); here it simply signs nobody in.
fn tokens<'a>(admin: &'a Admin, secrets: &'a Secrets) -> Vec<(&'a str, &'a str, Role)> {
    let mut all: Vec<(&str, &str, Role)> = secrets
        .admin_token
        .as_deref()
        .map(|token| (ADMIN, token, Role::Operator))
        .into_iter()
        .collect();
    for (name, token) in &secrets.admin_tokens {
        if let Some(table) = admin.tokens.get(name) {
            all.push((name, token, table.role));
        }
    }
    all
}

/// Whether any token is configured at all (else the admin API refuses
/// every call: it never opens up).
pub fn enabled(admin: &Admin, secrets: &Secrets) -> bool {
    !tokens(admin, secrets).is_empty()
}

/// The caller `given` (the bearer token) signs in as, if any. Every token
/// is compared, each through its digest so neither the length nor which
/// one matched shows in the time taken.
pub fn identify(admin: &Admin, secrets: &Secrets, given: &str) -> Option<Caller> {
    if given.is_empty() {
        return None;
    }
    let digest = Sha256::digest(given.as_bytes());
    let mut found = None;
    for (name, token, role) in tokens(admin, secrets) {
        let matches: bool = digest.ct_eq(&Sha256::digest(token.as_bytes())).into();
        if matches && found.is_none() {
            found = Some(Caller {
                name: name.to_string(),
                role,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminToken;

    fn setup() -> (Admin, Secrets) {
        let mut admin = Admin::default();
        admin
            .tokens
            .insert("ro".into(), AdminToken { role: Role::Viewer });
        admin.tokens.insert(
            "ops".into(),
            AdminToken {
                role: Role::Operator,
            },
        );
        let secrets = Secrets {
            admin_token: Some("root-token".into()),
            admin_tokens: [
                ("ro".to_string(), "viewer-token".to_string()),
                ("ops".to_string(), "ops-token".to_string()),
                ("stray".to_string(), "stray-token".to_string()),
            ]
            .into(),
            ..Secrets::default()
        };
        (admin, secrets)
    }

    #[test]
    fn each_token_signs_in_as_its_name_and_role() {
        let (admin, secrets) = setup();
        let who = |t: &str| identify(&admin, &secrets, t).map(|c| (c.name, c.role));
        assert_eq!(who("root-token"), Some(("admin".into(), Role::Operator)));
        assert_eq!(who("viewer-token"), Some(("ro".into(), Role::Viewer)));
        assert_eq!(who("ops-token"), Some(("ops".into(), Role::Operator)));
        assert_eq!(who("stray-token"), None, "no table, no role");
        assert_eq!(who(""), None);
        assert_eq!(who("viewer-token "), None);
        assert!(enabled(&admin, &secrets));
        assert!(!enabled(&admin, &Secrets::default()));
    }

    #[test]
    fn viewers_only_read() {
        let viewer = Caller {
            name: "ro".into(),
            role: Role::Viewer,
        };
        assert!(viewer.may(&Method::GET) && viewer.may(&Method::HEAD));
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(!viewer.may(&method), "{method}");
        }
        let operator = Caller {
            name: "ops".into(),
            role: Role::Operator,
        };
        assert!(operator.may(&Method::DELETE));
    }
}
