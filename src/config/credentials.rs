//! What a system's credential variables mean. Without `auth` in the file
//! they choose it: `MOAT_{NAME}_TOKEN` bearer, `_USER` and `_PASSWORD`
//! basic. With `auth`, a variable it does not read stops the start: a
//! secret set and silently ignored shows up only as an upstream's 401.

use std::collections::{BTreeMap, BTreeSet};

use super::{Auth, Config, Grant, Problem, SystemSecrets};

/// What a group of variables carries; each `auth` kind reads one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Carries {
    Token,
    UserPassword,
    ClientCredentials,
}

impl Carries {
    /// The groups `auth` reads; none for `none`.
    fn read_by(auth: &Auth) -> &'static [Carries] {
        match auth {
            Auth::None => &[],
            Auth::Bearer | Auth::Header { .. } => &[Carries::Token],
            Auth::Basic => &[Carries::UserPassword],
            Auth::Oauth2 {
                grant: Grant::Password,
                ..
            } => &[Carries::ClientCredentials, Carries::UserPassword],
            Auth::Oauth2 { .. } => &[Carries::ClientCredentials],
        }
    }

    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Carries::Token => &["_TOKEN"],
            Carries::UserPassword => &["_USER", "_PASSWORD"],
            Carries::ClientCredentials => &["_CLIENT_ID", "_CLIENT_SECRET"],
        }
    }

    /// The `auth` kind these variables ask for, as the file spells it.
    fn kind(self) -> &'static str {
        match self {
            Carries::Token => "bearer",
            Carries::UserPassword => "basic",
            Carries::ClientCredentials => "oauth2",
        }
    }
}

/// `auth`'s kind as the file spells it.
fn kind_of(auth: &Auth) -> &'static str {
    match auth {
        Auth::None => "none",
        Auth::Bearer => "bearer",
        Auth::Basic => "basic",
        Auth::Header { .. } => "header",
        Auth::Oauth2 { .. } => "oauth2",
    }
}

/// Each credential variable `secrets` holds, as its suffix, with its group.
fn set_in(secrets: &SystemSecrets) -> Vec<(&'static str, Carries)> {
    [
        ("_TOKEN", &secrets.token, Carries::Token),
        ("_USER", &secrets.user, Carries::UserPassword),
        ("_PASSWORD", &secrets.password, Carries::UserPassword),
        ("_CLIENT_ID", &secrets.client_id, Carries::ClientCredentials),
        (
            "_CLIENT_SECRET",
            &secrets.client_secret,
            Carries::ClientCredentials,
        ),
    ]
    .into_iter()
    .filter(|(_, value, _)| value.is_some())
    .map(|(suffix, _, carries)| (suffix, carries))
    .collect()
}

/// `MOAT_{UPPER}_TOKEN_URL`, if set.
fn token_url(upper: &str) -> Option<String> {
    std::env::var(format!("MOAT_{upper}_TOKEN_URL"))
        .ok()
        .filter(|v| !v.is_empty())
}

/// `A`, `A and B`, `A, B and C`.
fn listed(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl Config {
    /// Gives every system in use whose file names no `auth` the one its
    /// credential variables ask for, and reports each variable that
    /// contradicts the `auth` the file names (or that cannot be followed
    /// alone). `secrets`: by lowercase system name, as `Secrets` reads them.
    pub(super) fn auth_from_env(
        &mut self,
        secrets: &BTreeMap<String, SystemSecrets>,
    ) -> Vec<Problem> {
        let mut names: BTreeSet<String> = self.systems.keys().cloned().collect();
        names.extend(self.owners().systems().iter().map(|s| s.name().to_string()));
        let mut problems = Vec::new();
        for name in names {
            let Some(set) = secrets.get(&name).map(set_in).filter(|s| !s.is_empty()) else {
                continue;
            };
            let upper = name.to_ascii_uppercase();
            let var = |suffix: &str| format!("MOAT_{upper}{suffix}");
            let key = format!("systems.{name}.auth");
            let mut problem = |message: String| {
                problems.push(Problem {
                    source: "environment".into(),
                    key: key.clone(),
                    message,
                })
            };
            let configured = self.systems.get(&name).and_then(|s| s.auth.as_ref());
            if let Some(auth) = configured {
                let reads = Carries::read_by(auth);
                let foreign: Vec<String> = set
                    .iter()
                    .filter(|(_, carries)| !reads.contains(carries))
                    .map(|(suffix, _)| var(suffix))
                    .collect();
                if !foreign.is_empty() {
                    let verb = if foreign.len() == 1 { "is" } else { "are" };
                    let reading = if reads.is_empty() {
                        "sends no credentials".to_string()
                    } else {
                        let wanted: Vec<String> = reads
                            .iter()
                            .flat_map(|c| c.suffixes())
                            .map(|s| var(s))
                            .collect();
                        format!("reads {}", listed(&wanted))
                    };
                    problem(format!(
                        "{} {verb} set, but {key} is {} ({reading}): unset {}, or change {key}",
                        listed(&foreign),
                        kind_of(auth),
                        if foreign.len() == 1 { "it" } else { "them" },
                    ));
                }
                continue;
            }
            let groups: BTreeSet<Carries> = set.iter().map(|(_, c)| *c).collect();
            let all: Vec<String> = set.iter().map(|(suffix, _)| var(suffix)).collect();
            match groups.into_iter().collect::<Vec<_>>().as_slice() {
                [Carries::Token] => {
                    self.systems.entry(name.clone()).or_default().auth = Some(Auth::Bearer)
                }
                [Carries::UserPassword] => {
                    self.systems.entry(name.clone()).or_default().auth = Some(Auth::Basic)
                }
                [Carries::ClientCredentials] if token_url(&upper).is_some() => {
                    self.systems.entry(name.clone()).or_default().auth = Some(Auth::Oauth2 {
                        token_url: token_url(&upper).unwrap_or_default(),
                        scope: None,
                        grant: Grant::ClientCredentials,
                        client_auth: Default::default(),
                        header: None,
                    })
                }
                [Carries::UserPassword, Carries::ClientCredentials]
                    if token_url(&upper).is_some() =>
                {
                    self.systems.entry(name.clone()).or_default().auth = Some(Auth::Oauth2 {
                        token_url: token_url(&upper).unwrap_or_default(),
                        scope: None,
                        grant: Grant::Password,
                        client_auth: Default::default(),
                        header: None,
                    })
                }
                [Carries::ClientCredentials] => problem(format!(
                    "{} are OAuth2 client credentials, which need the token endpoint: set \
                     MOAT_{upper}_TOKEN_URL=https://…, or \
                     {key} = {{ kind = \"oauth2\", token_url = \"https://…\" }}",
                    listed(&all)
                )),
                several => {
                    let kinds: Vec<String> = several.iter().map(|c| c.kind().to_string()).collect();
                    problem(format!(
                        "{} ask for different auth ({}): set {key} to the one {name} takes, \
                         or unset the others",
                        listed(&all),
                        kinds.join(", ")
                    ))
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SystemConfig;

    fn secrets(name: &str, vars: &[&str]) -> BTreeMap<String, SystemSecrets> {
        let mut s = SystemSecrets::default();
        for var in vars {
            let value = Some(format!("{var}-value"));
            match *var {
                "_TOKEN" => s.token = value,
                "_USER" => s.user = value,
                "_PASSWORD" => s.password = value,
                "_CLIENT_ID" => s.client_id = value,
                _ => s.client_secret = value,
            }
        }
        [(name.to_string(), s)].into()
    }

    fn with_auth(name: &str, auth: Auth) -> Config {
        let mut config = Config::default();
        config.systems.insert(
            name.into(),
            SystemConfig {
                auth: Some(auth),
                ..SystemConfig::default()
            },
        );
        config
    }

    #[test]
    fn variables_choose_the_auth_the_file_leaves_out() {
        let mut config = Config::default();
        assert!(
            config
                .auth_from_env(&secrets("erp", &["_TOKEN"]))
                .is_empty()
        );
        assert_eq!(config.system("erp").auth, Auth::Bearer);

        let mut config = Config::default();
        let problems = config.auth_from_env(&secrets("pim", &["_USER", "_PASSWORD"]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.system("pim").auth, Auth::Basic);
        assert!(
            config.validate("test").is_empty(),
            "no table that owns nothing"
        );

        // A user alone still means basic; the missing password is named
        // when the client is built.
        let mut config = Config::default();
        assert!(config.auth_from_env(&secrets("crm", &["_USER"])).is_empty());
        assert_eq!(config.system("crm").auth, Auth::Basic);
    }

    #[test]
    fn variables_of_systems_not_in_use_change_nothing() {
        let mut config = Config::default();
        // MOAT_ADMIN_TOKEN reads like a system's token: admin is no system.
        assert!(
            config
                .auth_from_env(&secrets("admin", &["_TOKEN"]))
                .is_empty()
        );
        assert!(config.systems.is_empty());
    }

    #[test]
    fn a_variable_the_configured_auth_does_not_read_is_refused_naming_both() {
        let mut config = with_auth("erp", Auth::Bearer);
        let problems = config.auth_from_env(&secrets("erp", &["_TOKEN", "_USER"]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!(p.key, "systems.erp.auth");
        assert!(p.message.contains("MOAT_ERP_USER is set"), "{p}");
        assert!(p.message.contains("bearer (reads MOAT_ERP_TOKEN)"), "{p}");
        assert!(!p.message.contains("MOAT_ERP_TOKEN is"), "{p}");

        let mut config = with_auth("erp", Auth::None);
        let problems = config.auth_from_env(&secrets("erp", &["_TOKEN"]));
        assert!(
            problems[0].message.contains("none (sends no credentials)"),
            "{problems:?}"
        );

        let oauth2 = Auth::Oauth2 {
            token_url: "https://idp.example/token".into(),
            scope: None,
            grant: Grant::ClientCredentials,
            client_auth: Default::default(),
            header: None,
        };
        let mut config = with_auth("erp", oauth2.clone());
        assert!(
            config
                .auth_from_env(&secrets("erp", &["_CLIENT_ID", "_CLIENT_SECRET"]))
                .is_empty()
        );
        assert_eq!(config.system("erp").auth, oauth2, "the file's auth stays");
        let problems = config.auth_from_env(&secrets("erp", &["_USER", "_PASSWORD"]));
        assert!(
            problems[0]
                .message
                .contains("MOAT_ERP_USER and MOAT_ERP_PASSWORD are set"),
            "{problems:?}"
        );
    }

    #[test]
    fn variables_that_cannot_be_followed_alone_are_refused() {
        let mut config = Config::default();
        let problems = config.auth_from_env(&secrets("erp", &["_TOKEN", "_USER", "_PASSWORD"]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].message.contains("(bearer, basic)"),
            "{problems:?}"
        );
        assert_eq!(config.system("erp").auth, Auth::None);

        // OAuth2 needs a token endpoint, which Moat does not guess: the
        // client secret would go wherever the guess points.
        let mut config = Config::default();
        let problems = config.auth_from_env(&secrets("erp", &["_CLIENT_ID", "_CLIENT_SECRET"]));
        assert_eq!(problems[0].key, "systems.erp.auth");
        assert!(problems[0].message.contains("token_url"), "{problems:?}");
    }
}
