//! `[admin]`: the admin listener (metrics, the admin API, the console) and
//! the roles of its named tokens.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{Connections, Problem, Problems, Secrets, Section};

/// The admin listener: metrics and the admin API. Every key is read at
/// start: the listener is built then, and the tokens come from the
/// environment, read once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address of the admin listener (`MOAT_ADMIN_LISTEN`). Keep it private.
    pub listen: SocketAddr,
    /// Connection limits and timeouts of the admin listener.
    pub connections: Connections,
    /// Named admin tokens by name: the token itself is
    /// `MOAT_ADMIN_TOKEN_{NAME}`, the table gives it a role.
    /// `MOAT_ADMIN_TOKEN` is an operator named [`ADMIN`].
    pub tokens: BTreeMap<String, AdminToken>,
}

/// `[admin.tokens.NAME]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    pub role: Role,
}

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every admin route and the console; changes nothing.
    Viewer,
    /// Reads and changes: limits, breakers, purges, dead letters,
    /// reconciliation.
    Operator,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// The name `MOAT_ADMIN_TOKEN` signs in as (an operator).
pub const ADMIN: &str = "admin";

/// The variable that holds the token named `name`.
pub fn token_variable(name: &str) -> String {
    format!("MOAT_ADMIN_TOKEN_{}", name.to_ascii_uppercase())
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            connections: Connections {
                max: 256,
                ..Connections::default()
            },
            tokens: BTreeMap::new(),
        }
    }
}

impl Section for Admin {
    fn problems(&self, p: &mut Problems) {
        p.within("connections", |p| self.connections.problems(p));
        for name in self.tokens.keys() {
            // The variable's name is the table's, upper-cased: only names
            // that survive the round trip can be matched to a variable.
            let spelled = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            p.check(
                spelled,
                &format!("tokens.{name}"),
                "a token's name is lowercase letters, digits and _ (its variable is MOAT_ADMIN_TOKEN_{NAME})",
            );
            p.check(
                name != ADMIN,
                &format!("tokens.{name}"),
                "`admin` is the name of MOAT_ADMIN_TOKEN (an operator); choose another name",
            );
        }
    }
}

impl Admin {
    /// What stops a start between `[admin.tokens]` and the environment: a
    /// `MOAT_ADMIN_TOKEN_{NAME}` without its table (no role: it would sign
    /// nobody in), a table without its variable, and one token value under
    /// two names (the audit could not tell who made a change).
    pub fn token_problems(&self, secrets: &Secrets) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| {
            problems.push(Problem {
                source: "environment".into(),
                key,
                message,
            })
        };
        for name in secrets.admin_tokens.keys() {
            if !self.tokens.contains_key(name) {
                problem(
                    format!("admin.tokens.{name}"),
                    format!(
                        "{} is set but there is no [admin.tokens.{name}] table giving it a role (role = \"viewer\" or \"operator\")",
                        token_variable(name)
                    ),
                );
            }
        }
        for name in self.tokens.keys() {
            if !secrets.admin_tokens.contains_key(name) {
                problem(
                    format!("admin.tokens.{name}"),
                    format!(
                        "{} is not set: this token cannot sign in; set it or remove the table",
                        token_variable(name)
                    ),
                );
            }
        }
        let mut named: Vec<(&str, &str)> = secrets
            .admin_tokens
            .iter()
            .map(|(name, token)| (name.as_str(), token.as_str()))
            .collect();
        if let Some(token) = &secrets.admin_token {
            named.insert(0, (ADMIN, token));
        }
        for (i, (name, token)) in named.iter().enumerate() {
            if let Some((first, _)) = named[..i].iter().find(|(_, t)| t == token) {
                let variable = |n: &str| {
                    if n == ADMIN {
                        "MOAT_ADMIN_TOKEN".to_string()
                    } else {
                        token_variable(n)
                    }
                };
                problem(
                    format!("admin.tokens.{name}"),
                    format!(
                        "{} holds the same token as {}: each name needs its own token, or the audit cannot tell them apart",
                        variable(name),
                        variable(first)
                    ),
                );
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(admin: Option<&str>, named: &[(&str, &str)]) -> Secrets {
        Secrets {
            admin_token: admin.map(str::to_string),
            admin_tokens: named
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            ..Secrets::default()
        }
    }

    fn with(tokens: &[(&str, Role)]) -> Admin {
        Admin {
            tokens: tokens
                .iter()
                .map(|(n, role)| (n.to_string(), AdminToken { role: *role }))
                .collect(),
            ..Admin::default()
        }
    }

    #[test]
    fn a_token_and_its_table_go_together() {
        let admin = with(&[("ops", Role::Operator), ("ro", Role::Viewer)]);
        let fine = secrets(Some("a"), &[("ops", "b"), ("ro", "c")]);
        assert!(admin.token_problems(&fine).is_empty());

        let problems = admin.token_problems(&secrets(None, &[("ops", "b"), ("ghost", "x")]));
        let said: Vec<(String, bool)> = problems
            .iter()
            .map(|p| (p.key.clone(), p.message.contains("MOAT_ADMIN_TOKEN_")))
            .collect();
        assert_eq!(
            said,
            [
                ("admin.tokens.ghost".to_string(), true),
                ("admin.tokens.ro".to_string(), true)
            ],
            "{problems:?}"
        );
        assert!(problems[0].message.contains("MOAT_ADMIN_TOKEN_GHOST"));
        assert!(
            problems[1]
                .message
                .contains("MOAT_ADMIN_TOKEN_RO is not set")
        );
    }

    #[test]
    fn one_token_under_two_names_is_refused() {
        let admin = with(&[("ro", Role::Viewer)]);
        let problems = admin.token_problems(&secrets(Some("same"), &[("ro", "same")]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .message
                .contains("MOAT_ADMIN_TOKEN_RO holds the same token as MOAT_ADMIN_TOKEN"),
            "{problems:?}"
        );
    }

    #[test]
    fn names_must_map_to_a_variable() {
        let admin = with(&[("Ops-1", Role::Operator), ("admin", Role::Viewer)]);
        let mut p = Problems::new("moat.toml");
        p.within("admin", |p| admin.problems(p));
        let keys: Vec<String> = p.into_vec().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["admin.tokens.Ops-1", "admin.tokens.admin"]);
    }
}
