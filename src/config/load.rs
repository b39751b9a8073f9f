//! Loading: TOML file, then `MOAT_*` environment, then each section's
//! checks, with every problem reported at once and named by file and key.

use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Env, Format, Toml};
use figment::value::Value;
use figment::{Figment, Profile};

use super::{Config, ConfigError, Problem, Secrets};

/// The file `moat serve` reads when no `--config` is given.
pub const DEFAULT_PATH: &str = "config/moat.toml";

/// Environment variables that always work, whatever the file says, and the
/// key each one sets. Any other `MOAT_SECTION__KEY` sets `section.key`.
const FIXED_ENV: &[(&str, &str)] = &[
    ("listen", "server.listen"),
    ("admin_listen", "admin.listen"),
    ("upstream_url", "upstream.url"),
    ("redis_url", "redis.url"),
];

impl Config {
    /// What `moat serve` uses: the given file (or `config/moat.toml` when it
    /// exists, else built-in defaults), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_all(path.map(Path::to_path_buf).as_slice())
    }

    /// `load` with several files, each adding to and overriding the ones
    /// before it (a recipe from `config/connectors/` over a site's file).
    pub fn load_all(paths: &[PathBuf]) -> Result<Config, ConfigError> {
        let default = PathBuf::from(DEFAULT_PATH);
        let paths: Vec<&Path> = if paths.is_empty() {
            [default.as_path()]
                .into_iter()
                .filter(|p| p.exists())
                .collect()
        } else {
            paths.iter().map(PathBuf::as_path).collect()
        };
        Config::from_files(&paths, true)
    }

    /// Reads `path` (if any) and, when `with_env`, the `MOAT_*` variables;
    /// then validates.
    pub fn from_sources(path: Option<&Path>, with_env: bool) -> Result<Config, ConfigError> {
        Config::from_files(path.as_slice(), with_env)
    }

    /// `from_sources` with several files, later ones over earlier ones.
    pub fn from_files(paths: &[&Path], with_env: bool) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        let source = (!paths.is_empty()).then(|| {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            shown.join(" + ")
        });
        for path in paths {
            if !path.is_file() {
                return Err(ConfigError {
                    problems: vec![Problem {
                        source: path.display().to_string(),
                        key: "-".into(),
                        message: "no such file".into(),
                    }],
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        if with_env {
            figment = figment.merge(environment());
        }
        let (mut config, mut problems) = read(&figment, &source)?;
        problems.extend(config.validate(source.as_deref().unwrap_or("defaults")));
        if with_env {
            config.system_urls_from_env();
            problems.extend(config.auth_from_env(&Secrets::from_env().systems));
            config.token_urls_from_env();
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// `MOAT_{NAME}_TOKEN_URL`: where an OAuth2 system's token endpoint is,
    /// per deployment, over the file (after `auth_from_env`, which may have
    /// chosen OAuth2 because of it).
    fn token_urls_from_env(&mut self) {
        for (name, system) in &mut self.systems {
            let var = format!("MOAT_{}_TOKEN_URL", name.to_ascii_uppercase());
            let Some(url) = std::env::var(&var).ok().filter(|v| !v.is_empty()) else {
                continue;
            };
            if let Some(super::Auth::Oauth2 { token_url, .. }) = &mut system.auth {
                *token_url = url;
            }
        }
    }

    /// `MOAT_{NAME}_URL` of every system named in `[entities]` or
    /// `[systems]`: the environment says where a system is, per
    /// deployment, over the file.
    fn system_urls_from_env(&mut self) {
        let mut names: Vec<String> = self.systems.keys().cloned().collect();
        names.extend(self.owners().systems().iter().map(|s| s.name().to_string()));
        for name in names {
            let var = format!("MOAT_{}_URL", name.to_ascii_uppercase());
            if let Some(url) = std::env::var(&var).ok().filter(|v| !v.is_empty()) {
                self.systems.entry(name).or_default().url = Some(url);
            }
        }
    }
}

/// `MOAT_SECTION__KEY` and the fixed variables, as keys of the file.
fn environment() -> Env {
    Env::prefixed("MOAT_").filter_map(|key| {
        // figment lowercases keys only after this filter runs.
        let key = key.as_str().to_ascii_lowercase();
        let key = key.as_str();
        if let Some((_, to)) = FIXED_ENV.iter().find(|(from, _)| *from == key) {
            Some((*to).into())
        } else if key.contains("__") {
            Some(key.replace("__", ".").into())
        } else {
            // Secrets (MOAT_ADMIN_TOKEN, …) are read by `Secrets`, never
            // merged into the config.
            None
        }
    })
}

/// The config `figment` holds, with a problem for each unknown key and
/// each value of the wrong type. serde stops at the first of them, so each
/// one found is reported and taken out (its default stands in), and the
/// rest is read again, until it reads. Errors only when the sources
/// themselves cannot be read (a file that is not TOML).
fn read(figment: &Figment, file: &Option<String>) -> Result<(Config, Vec<Problem>), ConfigError> {
    let mut value: Value = figment.extract().map_err(|e| ConfigError {
        problems: e
            .into_iter()
            .map(|e| problem(figment, &e.path, e.kind.to_string(), file))
            .collect(),
    })?;
    let mut problems = Vec::new();
    let mut taken: Vec<Vec<String>> = Vec::new();
    loop {
        let e = match value.deserialize::<Config>() {
            Ok(config) => return Ok((config, problems)),
            Err(e) => e,
        };
        // A table missing a key that was taken out (a mistyped key of a
        // table without defaults, an enum's bad `kind`) was reported already.
        let reported = matches!(&e.kind, Kind::MissingField(field)
            if taken.iter().any(|t| t.split_last() == Some((&field.to_string(), &e.path[..]))));
        if !reported {
            problems.push(problem(figment, &e.path, e.kind.to_string(), file));
        }
        if !take_out(&mut value, &e.path) {
            // Nothing left to take out: what was found is all there is.
            return Err(ConfigError { problems });
        }
        taken.push(e.path);
    }
}

/// Removes the key at `path` (a whole array, for a path into one); false
/// when there is no such key.
fn take_out(value: &mut Value, path: &[String]) -> bool {
    let (Value::Dict(_, dict), Some((key, rest))) = (value, path.split_first()) else {
        return false;
    };
    if !rest.is_empty() && matches!(dict.get(key), Some(Value::Dict(..))) {
        return dict.get_mut(key).is_some_and(|inner| take_out(inner, rest));
    }
    dict.remove(key).is_some()
}

/// A problem at `path`, named after the source that set it: the file, or
/// the environment variable.
fn problem(figment: &Figment, path: &[String], message: String, file: &Option<String>) -> Problem {
    // The nearest key that is a table's (a path may end inside an array).
    let metadata = (1..=path.len())
        .rev()
        .find_map(|n| figment.find_metadata(&path[..n].join(".")));
    let (source, key) = match metadata {
        Some(md) => {
            let source = match &md.source {
                Some(s) => s.to_string(),
                None if md.name.contains("TOML") => {
                    file.clone().unwrap_or_else(|| md.name.to_string())
                }
                None => md.name.to_string(),
            };
            (source, md.interpolate(&Profile::Default, path))
        }
        None => (
            file.clone().unwrap_or_else(|| "config".into()),
            path.join("."),
        ),
    };
    // figment prefixes file keys with the profile ("default."): users never
    // write that, so it is dropped.
    let key = key.strip_prefix("default.").unwrap_or(&key).to_string();
    Problem {
        source,
        key: if key.is_empty() { "-".into() } else { key },
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;

    #[test]
    fn checkout_limits_are_validated_with_their_keys() {
        assert!(Config::default().validate("defaults").is_empty());
        let mut config = Config::default();
        config.checkout.max_quantity = 0;
        config.checkout.max_lines = 501;
        config.checkout.price_token_max_age = Duration::from_secs(1);
        let keys: Vec<String> = config.validate("test").into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "checkout.max_quantity",
                "checkout.max_lines",
                "checkout.price_token_max_age"
            ]
        );
    }

    #[test]
    fn trace_settings_are_validated_with_their_keys() {
        let mut config = Config::default();
        assert!(!config.telemetry.traces.enabled(), "off by default");
        config.telemetry.traces.otlp_endpoint = "collector:4318".into();
        config.telemetry.traces.sample_ratio = 1.5;
        config.telemetry.traces.service_name = " ".into();
        let keys: Vec<String> = config.validate("test").into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "telemetry.traces.otlp_endpoint",
                "telemetry.traces.sample_ratio",
                "telemetry.traces.service_name"
            ]
        );
        config.telemetry.traces = Default::default();
        config.telemetry.traces.otlp_endpoint = "https://collector.internal:4318".into();
        assert!(config.validate("test").is_empty());
    }
}
