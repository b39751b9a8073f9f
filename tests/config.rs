//! Strict configuration, reloads and the schema file, through the real
//! binary where a user would use it.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use moat::config::{ByteSize, Config};
use serde_json::{Value, json};
use support::{Moat, eventually};

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
full_path_nice = 20
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
        "server.full_path_nice",
        "cache.jitter",
        "cache.price.hard_ttl",
        "catalog.currencies[1]",
        "catalog.default_currency",
    ] {
        assert!(stderr.contains(key), "{key} missing from: {stderr}");
    }
}

#[test]
fn offers_are_only_for_a_v1_system_that_owns_prices_and_stock() {
    let path = write(
        "offers.toml",
        r#"
[entities]
products = "pim"
categories = "pim"
prices = "erp"
inventory = "wms"
[systems.erp]
offers = true
[systems.pim]
protocol = "rest"
offers = true
"#,
    );
    let (ok, _, stderr) = moat(&["check-config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("systems.erp.offers") && stderr.contains("must own both"),
        "{stderr}"
    );
    assert!(
        stderr.contains("systems.pim.offers") && stderr.contains("protocol v1"),
        "{stderr}"
    );
}

#[test]
fn customer_jwt_settings_are_checked_by_name() {
    // JWTs without keys, issuer or audience; each bad value named.
    let path = write(
        "jwt.toml",
        r#"
[customers]
tokens = "jwt"
jwks_url = "ftp://id.example/jwks.json"
issuer = " "
algorithms = ["ES256", "ES256"]
clock_skew = "1h"
jwks_min_interval = "0s"
jwks_max_age = "30d"
max_token_bytes = 10
"#,
    );
    let (ok, _, stderr) = moat(&["check-config", path.to_str().unwrap()]);
    assert!(!ok);
    for key in [
        "customers.jwks_url",
        "customers.issuer",
        "customers.audience",
        "customers.algorithms[1]",
        "customers.clock_skew",
        "customers.jwks_min_interval",
        "customers.jwks_max_age",
        "customers.max_token_bytes",
    ] {
        assert!(
            stderr.contains(&format!("`{key}`")),
            "{key} missing from: {stderr}"
        );
    }
    let cases = [
        // `none` and shared-secret algorithms are no choice.
        (
            "[customers]\nalgorithms = [\"none\"]\n",
            "customers.algorithms",
        ),
        (
            "[customers]\nalgorithms = [\"HS256\"]\n",
            "customers.algorithms",
        ),
        ("[customers]\nalgorithms = []\n", "customers.algorithms"),
        ("[customers]\ntokens = \"saml\"\n", "customers.tokens"),
        (
            "[customers]\nclock_skew = \"a while\"\n",
            "customers.clock_skew",
        ),
        (
            "[customers]\ntokens = \"jwt\"\nissuer = \"i\"\naudience = \"a\"\n",
            "customers.jwks_url",
        ),
        (
            "[customers]\ntokens = \"jwt\"\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"https://id.example/jwks\"\njwks_file = \"jwks.json\"\n",
            "customers.jwks_file",
        ),
    ];
    for (text, key) in cases {
        let path = write("jwt-case.toml", text);
        let (ok, _, stderr) = moat(&["check-config", path.to_str().unwrap()]);
        assert!(!ok, "{text}");
        assert!(stderr.contains(key), "{text}: {key} missing from {stderr}");
    }
    let good = write(
        "jwt-good.toml",
        "[customers]\ntokens = \"jwt\"\njwks_file = \"/etc/moat/jwks.json\"\nissuer = \"https://id.example/\"\naudience = \"shop\"\nalgorithms = [\"RS256\"]\n",
    );
    let (ok, _, stderr) = moat(&["check-config", good.to_str().unwrap()]);
    assert!(ok, "{stderr}");
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
fn every_unknown_key_and_mistyped_value_is_named_at_once() {
    let path = write(
        "many.toml",
        r#"
[server]
listen_port = 80
bogus = 1
max_query_depth = "deep"
[cache]
nonsense = true
[upstream]
timeout = "soon"
[catalog]
currencies = ["EUR", 3]
[systems.erp]
auth = { kind = "magic" }
"#,
    );
    let (ok, _, stderr) = moat(&["check-config", path.to_str().unwrap()]);
    assert!(!ok);
    let keys = [
        "server.listen_port",
        "server.bogus",
        "server.max_query_depth",
        "cache.nonsense",
        "upstream.timeout",
        "catalog.currencies.1",
        "systems.erp.auth.kind",
    ];
    for key in keys {
        assert!(
            stderr.contains(&format!("`{key}`")),
            "{key} missing from: {stderr}"
        );
    }
    let problems = stderr.lines().filter(|l| l.starts_with("  - ")).count();
    assert_eq!(
        problems,
        keys.len(),
        "one problem each, none made up: {stderr}"
    );
}

/// Every key the example config sets, changed alone to another valid
/// value (worked out from the value itself and the values the file
/// mentions, comments included) and reloaded: it applies at once, or the
/// reload names it and the running value stays. Nothing here is written
/// per key, so a key added to the example is covered as it lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_of_the_example_applies_on_reload_or_is_named_for_a_restart() {
    let example = std::fs::read_to_string("config/moat.toml").expect("config/moat.toml");
    // Free ports and the embedded simulator: the example as a test runs it.
    let base_text = example
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0");
    let base = Config::from_sources(Some(&write("base.toml", &base_text)), false).expect("base");
    let served = Moat::start(base.clone()).await;
    let gateway = served.gateway.as_ref().expect("running");
    let as_value = |config: &Config| serde_json::to_value(config).expect("config as JSON");
    let before = as_value(&base);
    let mentioned = quoted_strings(&example);
    let (mut live, mut restart) = (Vec::new(), Vec::new());
    for setting in settings(&base_text) {
        let key = setting.key.clone();
        let pointer = format!("/{}", key.replace('.', "/"));
        let Some((changed, asked)) = variant(&base_text, &setting, &mentioned)
            .or_else(|| variant_with_dependent(&base_text, &setting, &mentioned))
        else {
            panic!("no valid change found for {key}: mention another valid value in a comment");
        };
        let wanted = as_value(&changed).pointer(&pointer).cloned();
        let named = gateway.reload(changed);
        let now = as_value(&gateway.state.config());
        let was = before.pointer(&pointer);
        for other in named.iter().filter(|k| **k != key) {
            assert!(
                asked.contains(other),
                "{key}: the reload names {other}, which did not change"
            );
        }
        if named.contains(&key) {
            assert_eq!(now.pointer(&pointer), was, "{key}: kept until a restart");
            restart.push(key.clone());
        } else {
            assert_eq!(
                now.pointer(&pointer).cloned(),
                wanted,
                "{key}: applied at once"
            );
            live.push(key.clone());
        }
        assert_eq!(
            gateway.reload(base.clone()),
            Vec::<String>::new(),
            "{key}: back to the example"
        );
        assert_eq!(as_value(&gateway.state.config()), before, "{key}: back");
    }
    // What PRODUCT promises a SIGHUP applies.
    for promised in [
        "upstream.limits.",
        "upstream.breaker.",
        "upstream.retry.",
        "server.client_limit.",
        "server.persisted_queries.mode",
        "customers.",
        "reconcile.",
        "events.apply_",
        "events.tolerance",
    ] {
        let keys: Vec<&String> = live
            .iter()
            .chain(&restart)
            .filter(|k| k.starts_with(promised))
            .collect();
        assert!(!keys.is_empty(), "{promised}: no such key in the example");
        for key in keys {
            assert!(live.contains(key), "{key} needs a restart: {restart:?}");
        }
    }
    for (entity, _) in base.cache.entities() {
        for ttl in ["soft_ttl", "hard_ttl", "max_stale", "negative_ttl"] {
            let key = format!("cache.{entity}.{ttl}");
            assert!(live.contains(&key), "{key} needs a restart");
        }
    }
    assert!(
        restart.contains(&"server.listen".to_string()),
        "{restart:?}"
    );
    served.stop().await;
}

/// A `key = value` line of a config file.
struct Setting {
    line: usize,
    name: String,
    key: String,
    value: String,
}

fn settings(text: &str) -> Vec<Setting> {
    let mut table = String::new();
    let mut found = Vec::new();
    for (line, raw) in text.lines().enumerate() {
        let code = uncommented(raw).trim();
        if let Some(name) = code.strip_prefix('[').and_then(|c| c.strip_suffix(']')) {
            table = name.to_string();
        } else if let Some((name, value)) = code.split_once('=') {
            let name = name.trim().to_string();
            found.push(Setting {
                line,
                key: format!("{table}.{name}"),
                name,
                value: value.trim().to_string(),
            });
        }
    }
    found
}

/// The line without its comment (a `#` outside quotes).
fn uncommented(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Every `"…"` in the text, comments included: the alternatives a
/// comment mentions (`or "json"`) are values to try.
fn quoted_strings(text: &str) -> Vec<String> {
    let mut found: Vec<String> = text
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|s| format!("{s:?}"))
        .collect();
    found.dedup();
    found
}

/// Other values for a TOML value, from its own shape first.
fn candidates(value: &str, mentioned: &[String]) -> Vec<String> {
    if let Ok(b) = value.parse::<bool>() {
        return vec![(!b).to_string()];
    }
    if let Ok(n) = value.parse::<i64>() {
        return vec![(n + 1).to_string(), (n - 1).to_string()];
    }
    if let Ok(x) = value.parse::<f64>() {
        return vec![format!("{:?}", x / 2.0), format!("{:?}", x * 2.0)];
    }
    if let Some(items) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        let items: Vec<&str> = items.split(',').collect();
        return vec![format!(
            "[{}]",
            items[..items.len().saturating_sub(1)].join(",")
        )];
    }
    let text = value.trim_matches('"');
    let mut out = Vec::new();
    if let Ok(d) = humantime::parse_duration(text) {
        out.push(format!(
            "\"{}\"",
            humantime::format_duration(d + Duration::from_secs(1))
        ));
    }
    if let Some(size) = ByteSize::parse(text) {
        out.push((size.bytes() + 1024).to_string());
    }
    if let Ok(mut addr) = text.parse::<std::net::SocketAddr>() {
        addr.set_port(addr.port() + 1);
        out.push(format!("\"{addr}\""));
    }
    out.push(format!("\"{text}x\""));
    out.extend(mentioned.iter().cloned());
    out
}

/// `text` with these lines' values replaced, as a config, if it is one.
fn parsed(text: &str, changes: &[(&Setting, &str)]) -> Option<Config> {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for (setting, value) in changes {
        lines[setting.line] = format!("{} = {value}", setting.name);
    }
    Config::from_sources(Some(&write("variant.toml", &lines.join("\n"))), false).ok()
}

/// The first valid config with `setting` changed alone, and the keys it
/// changes.
fn variant(text: &str, setting: &Setting, mentioned: &[String]) -> Option<(Config, Vec<String>)> {
    let pointer = format!("/{}", setting.key.replace('.', "/"));
    let base = serde_json::to_value(parsed(text, &[])?).ok()?;
    candidates(&setting.value, mentioned)
        .iter()
        .find_map(|value| {
            let config = parsed(text, &[(setting, value)])?;
            let value = serde_json::to_value(&config).ok()?;
            (value.pointer(&pointer) != base.pointer(&pointer))
                .then(|| (config, vec![setting.key.clone()]))
        })
}

/// When no change of `setting` alone is valid (GraphiQL needs
/// introspection): the change with the key its problem names changed too.
fn variant_with_dependent(
    text: &str,
    setting: &Setting,
    mentioned: &[String],
) -> Option<(Config, Vec<String>)> {
    let all = settings(text);
    candidates(&setting.value, mentioned)
        .iter()
        .find_map(|value| {
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            lines[setting.line] = format!("{} = {value}", setting.name);
            let problems =
                Config::from_sources(Some(&write("dependent.toml", &lines.join("\n"))), false)
                    .err()?
                    .problems;
            let [problem] = problems.as_slice() else {
                return None;
            };
            let other = all.iter().find(|s| s.key == problem.key)?;
            candidates(&other.value, mentioned)
                .iter()
                .find_map(|other_value| {
                    let config = parsed(text, &[(setting, value), (other, other_value)])?;
                    Some((config, vec![setting.key.clone(), other.key.clone()]))
                })
        })
}

/// SIGHUP through the binary: a change that needs a restart is named in
/// the log and the running value stays; one that applies at once does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_names_what_needs_a_restart_and_applies_the_rest() {
    support::install_tls_provider();
    let base = "[upstream.embedded]\nproducts = 300\n";
    let file = support::process::config_file("config-sighup", base);
    let running = support::process::Running::start(&file, &[]);
    // Nested 14 deep: past max_query_depth (12), refused before it is
    // parsed; padded past 1KiB.
    let deep = json!({
        "query": format!("{}{}", "{ a ".repeat(14), "}".repeat(14)),
        "padding": "x".repeat(2048),
    });
    let post = |body: Value| {
        let request = reqwest::Client::new()
            .post(format!("{}/graphql", running.public))
            .json(&body);
        async move {
            let r = request.send().await.expect("request");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let code = body["errors"][0]["extensions"]["code"].clone();
            (status, code.as_str().unwrap_or("").to_string())
        }
    };
    assert_eq!(post(deep.clone()).await, (200, "QUERY_TOO_COMPLEX".into()));

    let changed = format!("{base}[server]\nmax_query_depth = 20\nmax_body_bytes = \"1KiB\"\n");
    std::fs::write(&file, changed).unwrap();
    running.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || async {
            running.logged("only after a restart")
        })
        .await,
        "{:?}",
        running.log()
    );
    let warning = running
        .log()
        .into_iter()
        .find(|l| l.contains("only after a restart"));
    assert!(
        warning
            .as_deref()
            .is_some_and(|l| l.contains("server.max_query_depth") && !l.contains("max_body_bytes")),
        "{warning:?}"
    );
    // The body limit applies at once, to what a request declares too:
    // refused before its body is sent. The depth limit stays as it runs.
    assert_eq!(post(deep.clone()).await.0, 413);
    let address = running.public.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n"
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut status = [0u8; 12];
    socket.read_exact(&mut status).await.unwrap();
    assert_eq!(
        &status, b"HTTP/1.1 413",
        "refused without waiting for the body"
    );
    let unpadded = json!({ "query": deep["query"] });
    assert_eq!(
        post(unpadded).await,
        (200, "QUERY_TOO_COMPLEX".into()),
        "the running depth limit"
    );
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

#[test]
fn redis_modes_name_every_bad_key_and_take_nodes_from_the_environment() {
    let check = |text: &str, env: &[(&str, &str)]| {
        let path = write("redis-mode.toml", text);
        let out = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args(["check-config", path.to_str().unwrap()])
            .env_remove("MOAT_LISTEN")
            .env_remove("MOAT_REDIS_URL")
            .envs(env.iter().copied())
            .output()
            .expect("run moat");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A cluster from the environment: the nodes as a comma list.
    let (ok, stderr) = check(
        "",
        &[
            ("MOAT_REDIS__MODE", "cluster"),
            (
                "MOAT_REDIS__NODES",
                "redis://127.0.0.1:7000, redis://127.0.0.1:7001",
            ),
        ],
    );
    assert!(ok, "{stderr}");
    let cluster = Config::from_sources(
        Some(&write(
            "cluster.toml",
            "[redis]\nmode = \"cluster\"\nnodes = [\"redis://10.0.0.1:6379\", \"rediss://10.0.0.2:6379\"]\n",
        )),
        false,
    )
    .expect("a cluster");
    assert!(cluster.redis.enabled());
    let sentinel = Config::from_sources(
        Some(&write(
            "sentinel.toml",
            "[redis]\nmode = \"sentinel\"\nnodes = [\"redis://10.0.0.1:26379\"]\nmaster = \"shop\"\n",
        )),
        false,
    )
    .expect("sentinels");
    assert_eq!(sentinel.redis.master.as_deref(), Some("shop"));

    for (text, key, says) in [
        (
            "[redis]\nmode = \"ring\"\n",
            "redis.mode",
            "unknown variant",
        ),
        (
            "[redis]\nmode = \"cluster\"\n",
            "redis.nodes",
            "at least one node",
        ),
        (
            "[redis]\nmode = \"cluster\"\nnodes = [\"127.0.0.1:7000\"]\n",
            "redis.nodes",
            "redis://host:port",
        ),
        (
            "[redis]\nmode = \"cluster\"\nnodes = [\"redis://127.0.0.1:7000/2\"]\n",
            "redis.nodes",
            "only database 0",
        ),
        (
            "[redis]\nmode = \"cluster\"\nnodes = [\"redis://a:1\", \"redis://a:1\"]\n",
            "redis.nodes",
            "listed twice",
        ),
        (
            "[redis]\nmode = \"cluster\"\nurl = \"redis://127.0.0.1:6379\"\nnodes = [\"redis://a:1\"]\n",
            "redis.url",
            "mode = \"single\"",
        ),
        (
            "[redis]\nnodes = [\"redis://a:1\"]\n",
            "redis.nodes",
            "mode \"single\" uses url",
        ),
        (
            "[redis]\nmode = \"sentinel\"\nnodes = [\"redis://a:26379\"]\n",
            "redis.master",
            "needs master",
        ),
        (
            "[redis]\nmode = \"cluster\"\nnodes = [\"redis://a:1\"]\nmaster = \"shop\"\n",
            "redis.master",
            "only for mode",
        ),
        ("[redis]\nnodes = 7\n", "redis.nodes", ""),
    ] {
        let (ok, stderr) = check(text, &[]);
        assert!(!ok, "{text} was accepted");
        assert!(stderr.contains(key), "{text}: {key} not named: {stderr}");
        assert!(stderr.contains(says), "{text}: {says:?} not said: {stderr}");
    }
}
