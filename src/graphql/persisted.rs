//! Queries sent by hash instead of text: Apollo's automatic persisted
//! queries (APQ) and, for production, an allow-list.
//!
//! A client sends `extensions.persistedQuery = {version: 1, sha256Hash}`.
//! With the query text too, Moat checks the hash and, once the text has
//! parsed and validated, remembers it (so nothing invalid takes room);
//! with the hash alone it runs the text it remembers, or answers
//! `PersistedQueryNotFound` and the client sends both. Requests shrink to a
//! hash and fit in a cacheable GET.
//!
//! In `allow_list` mode nothing is registered: only the operations of the
//! manifest run, named by their id or sent as their exact text, so an
//! attacker can run nothing the storefront did not ship.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{PersistedMode, PersistedQueries};
use crate::error::{Error, Kind};
use crate::hex;
use crate::vocab::CacheHasher;

/// The persisted queries Moat knows and the rule for using them.
pub struct Persisted {
    rules: ArcSwap<Rules>,
    /// Registered by clients (`auto`), by hash; bounded by text size.
    registered: moka::sync::Cache<String, Arc<str>, CacheHasher>,
}

struct Rules {
    mode: PersistedMode,
    /// The manifest's operations by id and by the hash of their text.
    manifest: HashMap<String, Arc<str>>,
}

impl Persisted {
    /// Reads the manifest, if any; a broken one is an error naming it.
    pub fn new(config: &PersistedQueries) -> Result<Persisted, Error> {
        Ok(Persisted {
            rules: ArcSwap::from_pointee(Rules::load(config)?),
            registered: moka::sync::Cache::builder()
                .max_capacity(config.max_bytes.bytes())
                .weigher(|hash: &String, text: &Arc<str>| {
                    u32::try_from(hash.len() + text.len()).unwrap_or(u32::MAX)
                })
                .build_with_hasher(CacheHasher::default()),
        })
    }

    /// Applies a reloaded config; a broken manifest keeps the running one.
    pub fn reload(&self, config: &PersistedQueries) -> Result<(), Error> {
        self.rules.store(Arc::new(Rules::load(config)?));
        Ok(())
    }

    /// The query text to run: `query` itself, or the one its
    /// `persistedQuery` extension names.
    pub fn resolve(
        &self,
        query: Option<String>,
        extensions: Option<&Value>,
    ) -> Result<Resolved, Error> {
        let hash = requested_hash(extensions)?;
        // A text sent with its hash in auto mode: run it, and register it
        // once it has run (`register`).
        let register = match (&hash, &query) {
            (Some(hash), Some(_)) if self.rules.load().mode == PersistedMode::Auto => {
                Some(hash.to_ascii_lowercase())
            }
            _ => None,
        };
        let query = self.text(query, hash)?;
        Ok(Resolved { query, register })
    }

    /// Remembers a text `resolve` asked to register, now that it is valid.
    pub fn register(&self, hash: String, query: &str) {
        self.registered.insert(hash, Arc::from(query));
    }

    /// The text to run for `query` and the `hash` its extension asked for.
    fn text(&self, query: Option<String>, hash: Option<String>) -> Result<Option<String>, Error> {
        let rules = self.rules.load();
        if let (Some(hash), Some(query)) = (&hash, &query)
            && sha256_hex(query) != hash.to_ascii_lowercase()
        {
            return Err(Error::bad_request("provided sha does not match query"));
        }
        match (rules.mode, hash, query) {
            (PersistedMode::Off, Some(_), _) => Err(Error::new(
                Kind::PersistedQueryNotSupported,
                "PersistedQueryNotSupported",
            )),
            (PersistedMode::Off | PersistedMode::Auto, None, query) => Ok(query),
            (PersistedMode::Auto, Some(_), Some(query)) => Ok(Some(query)),
            (PersistedMode::Auto, Some(hash), None) => rules
                .find(&hash)
                .or_else(|| self.registered.get(&hash.to_ascii_lowercase()))
                .map(|text| Some(text.to_string()))
                .ok_or_else(|| Error::new(Kind::PersistedQueryNotFound, "PersistedQueryNotFound")),
            (PersistedMode::AllowList, hash, query) => {
                let Some(key) = hash.or_else(|| query.as_deref().map(sha256_hex)) else {
                    return Ok(None);
                };
                rules
                    .find(&key)
                    .map(|text| Some(text.to_string()))
                    .ok_or_else(|| {
                        Error::new(
                            Kind::PersistedQueryNotInList,
                            "only the operations of the persisted-query manifest run here",
                        )
                    })
            }
        }
    }
}

/// What `resolve` found: the text to run, and the hash to register it
/// under once it validates (APQ sent with its text).
#[derive(Debug)]
pub struct Resolved {
    pub query: Option<String>,
    pub register: Option<String>,
}

impl Rules {
    /// The manifest's operation a client names: by its id as written (ids
    /// are the manifest's own strings, capitals and all), or by the SHA-256
    /// of its text, in whichever case the client wrote its hex.
    fn find(&self, key: &str) -> Option<Arc<str>> {
        self.manifest
            .get(key)
            .or_else(|| self.manifest.get(&key.to_ascii_lowercase()))
            .cloned()
    }

    fn load(config: &PersistedQueries) -> Result<Rules, Error> {
        let manifest = match &config.manifest {
            Some(path) => read_manifest(path)?,
            None => HashMap::new(),
        };
        Ok(Rules {
            mode: config.mode,
            manifest,
        })
    }
}

/// An Apollo persisted-query manifest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    version: u32,
    operations: Vec<Operation>,
}

#[derive(Deserialize)]
struct Operation {
    id: String,
    body: String,
}

/// The operations by their id and by the SHA-256 of their text (a client
/// may send either, or the text itself).
fn read_manifest(path: &std::path::Path) -> Result<HashMap<String, Arc<str>>, Error> {
    let problem = |why: String| {
        Error::internal(format!(
            "server.persisted_queries.manifest {}: {why}",
            path.display()
        ))
    };
    let text = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| problem(format!("not a manifest: {e}")))?;
    if manifest.format != "apollo-persisted-query-manifest" || manifest.version != 1 {
        return Err(problem(
            "format must be \"apollo-persisted-query-manifest\", version 1".into(),
        ));
    }
    let mut operations = HashMap::with_capacity(manifest.operations.len() * 2);
    for op in manifest.operations {
        let body: Arc<str> = Arc::from(op.body.as_str());
        operations.insert(sha256_hex(&op.body), body.clone());
        operations.insert(op.id, body);
    }
    Ok(operations)
}

/// `extensions.persistedQuery.sha256Hash`, checked.
fn requested_hash(extensions: Option<&Value>) -> Result<Option<String>, Error> {
    let Some(pq) = extensions.and_then(|e| e.get("persistedQuery")) else {
        return Ok(None);
    };
    if pq.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(Error::bad_request(
            "Unsupported persisted query version: persistedQuery.version must be 1",
        ));
    }
    let hash = pq
        .get("sha256Hash")
        .and_then(Value::as_str)
        .filter(|h| h.len() <= 128 && !h.is_empty())
        .ok_or_else(|| Error::bad_request("persistedQuery.sha256Hash must be a string"))?;
    Ok(Some(hash.to_string()))
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::ByteSize;

    const Q: &str = "{ products(first: 1) { edges { node { name } } } }";

    fn persisted(mode: PersistedMode) -> Persisted {
        Persisted::new(&PersistedQueries {
            mode,
            manifest: None,
            max_bytes: ByteSize(64 * 1024),
        })
        .expect("no manifest")
    }

    fn ext(hash: &str) -> Value {
        json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
    }

    #[test]
    fn apq_registers_then_runs_by_hash() {
        let p = persisted(PersistedMode::Auto);
        let hash = sha256_hex(Q);
        let missing = p.resolve(None, Some(&ext(&hash))).unwrap_err();
        assert_eq!(missing.kind(), Kind::PersistedQueryNotFound);
        assert_eq!(missing.message(), "PersistedQueryNotFound");
        let sent = p.resolve(Some(Q.into()), Some(&ext(&hash))).unwrap();
        assert_eq!(sent.query.as_deref(), Some(Q));
        assert_eq!(sent.register.as_deref(), Some(hash.as_str()));
        assert!(
            p.resolve(None, Some(&ext(&hash))).is_err(),
            "nothing registered until it validates"
        );
        p.register(hash.clone(), Q);
        assert_eq!(
            p.resolve(None, Some(&ext(&hash))).unwrap().query.as_deref(),
            Some(Q)
        );
        // A text that is not the hash's is refused, not registered.
        let wrong = p.resolve(Some("{ __typename }".into()), Some(&ext(&hash)));
        assert!(wrong.is_err_and(|e| e.message().contains("does not match")));
        let bad_version = json!({ "persistedQuery": { "version": 2, "sha256Hash": hash } });
        assert!(p.resolve(None, Some(&bad_version)).is_err());
    }

    #[test]
    fn manifest_ids_match_as_written_and_hashes_in_any_case() {
        let dir = std::env::temp_dir().join(format!("moat-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("manifest.json");
        let manifest = json!({ "format": "apollo-persisted-query-manifest", "version": 1,
            "operations": [{ "id": "ProductPage-V2", "body": Q }] });
        std::fs::write(&file, manifest.to_string()).unwrap();
        let p = Persisted::new(&PersistedQueries {
            mode: PersistedMode::AllowList,
            manifest: Some(file),
            max_bytes: ByteSize(64 * 1024),
        })
        .expect("a manifest");
        for key in [
            "ProductPage-V2".to_string(),
            sha256_hex(Q),
            sha256_hex(Q).to_ascii_uppercase(),
        ] {
            let found = p.resolve(None, Some(&ext(&key)));
            assert_eq!(found.unwrap().query.as_deref(), Some(Q), "{key}");
        }
        let other = p.resolve(None, Some(&ext("productpage-v2"))).unwrap_err();
        assert_eq!(other.kind(), Kind::PersistedQueryNotInList);
    }

    #[test]
    fn off_refuses_hashes_and_passes_text() {
        let p = persisted(PersistedMode::Off);
        let e = p.resolve(None, Some(&ext(&sha256_hex(Q)))).unwrap_err();
        assert_eq!(e.kind(), Kind::PersistedQueryNotSupported);
        let passed = p.resolve(Some(Q.into()), None).unwrap();
        assert_eq!(passed.query.as_deref(), Some(Q));
    }
}
