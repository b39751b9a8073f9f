//! What is wrong with a config: each problem with where it came from (the
//! file, or the environment), its key and what is allowed, all of them at
//! once.

use std::fmt;

/// One thing wrong with a config: where, which key, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub source: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.source, self.key, self.message)
    }
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where each section's checks report. A check names its key relative to
/// the table it checks (`max` within `server.connections`), so one table's
/// checks serve wherever the table appears (`server.connections` and
/// `admin.connections`).
pub struct Problems {
    source: String,
    /// The full key of the table being checked; empty at the top.
    table: String,
    found: Vec<Problem>,
}

impl Problems {
    /// `source`: what every problem names as its origin (a file's path).
    pub fn new(source: &str) -> Problems {
        Problems {
            source: source.to_string(),
            table: String::new(),
            found: Vec::new(),
        }
    }

    /// Reports `message` under `key` unless `ok`.
    pub fn check(&mut self, ok: bool, key: &str, message: impl Into<String>) {
        if !ok {
            self.report(key, message);
        }
    }

    /// Reports `message` under `key`: relative to the table checked, `""`
    /// for the table itself, `[i]` for an item of it.
    pub fn report(&mut self, key: &str, message: impl Into<String>) {
        self.found.push(Problem {
            source: self.source.clone(),
            key: joined(&self.table, key),
            message: message.into(),
        });
    }

    /// Runs `check` with keys under `key` (a table inside the one checked).
    pub fn within(&mut self, key: &str, check: impl FnOnce(&mut Problems)) {
        let outer = std::mem::take(&mut self.table);
        self.table = joined(&outer, key);
        check(self);
        self.table = outer;
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.found
    }
}

fn joined(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else if key.is_empty() {
        table.to_string()
    } else if key.starts_with('[') {
        format!("{table}{key}")
    } else {
        format!("{table}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::Problems;

    #[test]
    fn keys_are_named_from_the_top() {
        let mut problems = Problems::new("moat.toml");
        problems.within("server", |p| {
            p.within("connections", |p| p.report("max", "too many"));
            p.report("listen", "taken");
        });
        problems.within("catalog", |p| {
            p.within("currencies", |p| p.report("[1]", "?"))
        });
        problems.within("systems", |p| {
            p.within("erp", |p| p.report("", "owns nothing"))
        });
        let keys: Vec<String> = problems.into_vec().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "server.connections.max",
                "server.listen",
                "catalog.currencies[1]",
                "systems.erp"
            ]
        );
    }
}
