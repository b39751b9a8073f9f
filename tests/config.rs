//! Strict configuration and the schema file, through the real binary where
//! a user would use it.

use std::path::Path;
use std::process::Command;

use moat::config::Config;

fn moat(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .env_remove("MOAT_LISTEN")
        .output()
        .expect("run moat");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_shipped_configs_are_valid() {
    for path in [
        "config/moat.toml",
        "config/production.example.toml",
        "config/systems.example.toml",
    ] {
        let (ok, stdout, stderr) = moat(&["check-config", path]);
        assert!(ok, "{path}: {stderr}");
        assert!(stdout.contains("ok"));
        Config::from_sources(Some(Path::new(path)), false).expect(path);
    }
}

#[test]
fn an_unknown_key_is_named_with_its_file() {
    let path = write(
        "unknown.toml",
        "[server]\nlisten = \"127.0.0.1:8080\"\nlisten_port = 80\n",
    );
    let (ok, _, stderr) = moat(&["check-config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("server.listen_port"), "{stderr}");
    assert!(stderr.contains("unknown.toml"), "{stderr}");
}

#[test]
fn bad_values_are_all_reported_with_their_keys() {
    let path = write(
        "bad.toml",
        r#"
[server]
max_query_depth = 1
[cache]
jitter = 0.9
[cache.price]
soft_ttl = "10m"
hard_ttl = "1m"
max_stale = "1h"
negative_ttl = "30s"
l1_max_bytes = "64MiB"
[catalog]
currencies = ["EUR", "XXX"]
default_currency = "USD"
"#,
    );
    let (ok, _, stderr) = moat(&["check-config", path.to_str().unwrap()]);
    assert!(!ok);
    for key in [
        "server.max_query_depth",
        "cache.jitter",
        "cache.price.hard_ttl",
        "catalog.currencies[1]",
        "catalog.default_currency",
    ] {
        assert!(stderr.contains(key), "{key} missing from: {stderr}");
    }
}

#[test]
fn a_wrongly_typed_value_names_the_key() {
    let path = write("typed.toml", "[upstream]\ntimeout = \"soon\"\n");
    let (ok, _, stderr) = moat(&["check-config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("upstream.timeout"), "{stderr}");
    let (ok, _, stderr) = moat(&["check-config", "/nonexistent/moat.toml"]);
    assert!(!ok);
    assert!(stderr.contains("no such file"), "{stderr}");
}

#[test]
fn the_schema_file_matches_the_code() {
    let (ok, sdl, stderr) = moat(&["schema"]);
    assert!(ok, "{stderr}");
    let file =
        std::fs::read_to_string("schema/storefront.graphql").expect("schema/storefront.graphql");
    assert!(
        file == sdl,
        "schema/storefront.graphql is out of date: run `cargo run -- schema > schema/storefront.graphql`"
    );
    for name in [
        "Product",
        "ProductPrice",
        "Availability",
        "Freshness",
        "Money",
        "Decimal",
        "DateTime",
    ] {
        assert!(sdl.contains(name), "{name}");
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// A TOML line: a real or made-up section and key, with a value of any
    /// TOML type (or not TOML at all).
    fn line() -> impl Strategy<Value = String> {
        let section = prop::sample::select(vec![
            "server",
            "server.connections",
            "server.client_limit",
            "admin",
            "upstream",
            "upstream.limits",
            "upstream.limits.erp",
            "upstream.breaker",
            "upstream.retry",
            "cache",
            "cache.price",
            "redis",
            "catalog",
            "checkout",
            "customers",
            "telemetry",
            "telemetry.traces",
            "nonsense",
        ]);
        let key = prop::sample::select(vec![
            "listen",
            "max",
            "rps",
            "burst",
            "soft_ttl",
            "hard_ttl",
            "max_query_depth",
            "header_read_timeout",
            "url",
            "currencies",
            "max_per_request",
            "enabled",
            "log_level",
            "otlp_endpoint",
            "protocol",
            "sample_ratio",
            "bogus",
        ]);
        let value = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            "[a-z0-9:./ ]{0,12}".prop_map(|s| format!("{s:?}")),
            Just("\"250ms\"".to_string()),
            Just("[\"EUR\", 3]".to_string()),
            Just("{ a = 1 }".to_string()),
            "[^\n]{0,8}",
        ];
        (section, key, value)
            .prop_map(|(section, key, value)| format!("[{section}]\n{key} = {value}\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any file is a config or a list of problems, each naming the file
        /// and a key; never a panic.
        #[test]
        fn any_file_is_loaded_or_refused_by_key(lines in prop::collection::vec(line(), 0..6)) {
            let path = write("prop.toml", &lines.concat());
            if let Err(e) = Config::from_sources(Some(&path), false) {
                prop_assert!(!e.problems.is_empty());
                for p in &e.problems {
                    prop_assert!(p.source.contains("prop.toml"), "{}", p);
                    prop_assert!(!p.key.is_empty() && !p.message.is_empty(), "{}", p);
                }
            }
        }
    }
}
