//! The monitoring that ships in `deploy/`: the Grafana dashboard and the
//! Prometheus alert rules use only metrics Moat exports (histograms by
//! their series), a gateway that has served nothing yet already exports
//! every series they read (so they show 0, not "no data"), every alert
//! links a runbook section that exists, and promtool accepts the rules and
//! passes their unit tests. promtool comes with Debian's `prometheus`
//! package; `.ci/run` installs it and sets `MOAT_CI=1`, which makes it
//! required; elsewhere the promtool part is skipped when it is missing.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use moat::telemetry::{EXPORTED, MetricType};
use serde_json::{Value, json};
use support::process::{Running, config_file};
use support::redis::RedisServer;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Where the next metric name (`moat_…`, or one of the process's
/// `process_…`) starts in `text`, and the name.
fn next_name(text: &str) -> Option<(usize, String)> {
    let at = ["moat_", "process_"]
        .iter()
        .filter_map(|prefix| text.find(prefix))
        .min()?;
    let name = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    Some((at, name))
}

/// Every metric name in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some((at, name)) = next_name(rest) {
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// Whether `name` is a series Moat exports.
fn exported(name: &str) -> bool {
    EXPORTED.iter().any(|(metric, kind, _)| match kind {
        MetricType::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| name == format!("{metric}{suffix}")),
        _ => name == *metric,
    })
}

fn dashboard_exprs() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/moat.json")).expect("JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    exprs
}

/// The rules file's expressions (one-line or `|` blocks) and runbook links.
fn rules() -> (Vec<String>, Vec<String>) {
    let text = read("deploy/prometheus/moat-rules.yml");
    let (mut exprs, mut runbooks) = (Vec::new(), Vec::new());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(expr) = trimmed.strip_prefix("expr:") {
            let mut expr = expr.trim().to_string();
            if expr == "|" {
                expr.clear();
                while let Some(next) = lines.peek().filter(|l| l.starts_with("          ")) {
                    expr.push_str(next.trim());
                    expr.push(' ');
                    lines.next();
                }
            }
            exprs.push(expr);
        } else if let Some(url) = trimmed.strip_prefix("runbook_url:") {
            runbooks.push(url.trim().to_string());
        }
    }
    (exprs, runbooks)
}

#[test]
fn the_dashboard_and_the_rules_use_only_metrics_moat_exports() {
    let (rule_exprs, _) = rules();
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "{exprs:?}");
    assert_eq!(rule_exprs.len(), 10, "{rule_exprs:?}");
    let mut used = BTreeSet::new();
    for expr in exprs.iter().chain(&rule_exprs) {
        for name in metric_names(expr) {
            assert!(
                exported(&name),
                "{name} (in {expr}) is not a metric Moat exports"
            );
            used.insert(name);
        }
    }
    // The dashboard covers every metric (histograms through their series).
    for (metric, _, _) in EXPORTED {
        assert!(
            used.iter().any(|u| u.starts_with(metric)),
            "{metric} is on no dashboard panel"
        );
    }
}

#[test]
fn every_metric_in_the_code_is_listed_as_exported() {
    fn walk(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, names);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                for quoted in text.split('"').skip(1).step_by(2) {
                    if quoted.starts_with("moat_") && metric_names(quoted).len() == 1 {
                        names.insert(quoted.to_string());
                    }
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    walk(&root().join("src"), &mut names);
    for name in &names {
        assert!(
            EXPORTED.iter().any(|(m, _, _)| m == name),
            "{name} is exported but not in telemetry::EXPORTED"
        );
    }
    // The process's series are rendered apart, under their usual names.
    let moat_own = EXPORTED.iter().filter(|(m, _, _)| m.starts_with("moat_"));
    assert_eq!(names.len(), moat_own.count(), "{names:?}");
}

/// One series: its name and labels.
type Series = (String, BTreeSet<(String, String)>);

/// `key="value"` pairs of a label list (without its braces).
fn label_pairs(list: &str) -> BTreeSet<(String, String)> {
    let mut pairs = BTreeSet::new();
    let mut rest = list.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let Some(quoted) = after.strip_prefix('"') else {
            break;
        };
        let Some(end) = quoted.find('"') else {
            break;
        };
        pairs.insert((key.trim().to_string(), quoted[..end].to_string()));
        rest = quoted[end + 1..].trim_start_matches([',', ' ']);
    }
    pairs
}

/// Every series a `/metrics` text lists.
fn series_listed(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let head = line.rsplit_once(' ').map_or(line, |(head, _)| head);
            match head.split_once('{') {
                Some((name, labels)) => {
                    (name.to_string(), label_pairs(labels.trim_end_matches('}')))
                }
                None => (head.to_string(), BTreeSet::new()),
            }
        })
        .collect()
}

/// What an expression reads: each `moat_…` name with the labels its
/// equality matchers ask for (`!=`, `=~` and `!~` only choose among series
/// that are there anyway).
fn selected(expr: &str) -> Vec<Series> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some((at, name)) = next_name(rest) {
        rest = &rest[at + name.len()..];
        let mut labels = BTreeSet::new();
        if let Some(list) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            for matcher in list.0.split(',') {
                if let Some((key, value)) = matcher.split_once('=')
                    && !key.ends_with('!')
                    && !value.starts_with('~')
                {
                    let value = value.trim().trim_matches('"');
                    labels.insert((key.trim().to_string(), value.to_string()));
                }
            }
        }
        found.push((name, labels));
    }
    found
}

async fn metrics_text(moat: &Running) -> String {
    reqwest::get(format!("{}/metrics", moat.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_served_nothing_exports_every_series_deploy_reads() {
    support::install_tls_provider();
    // With Redis, so its breaker and the dead-letter queue exist too.
    let redis = RedisServer::start();
    let file = config_file("fresh-metrics", "");
    let moat = Running::start(&file, &[("MOAT_REDIS_URL", &redis.url())]);
    // The queue's depth is exported once the queue has been read (it may
    // hold letters from before a restart), right after the start.
    let read = support::eventually(Duration::from_secs(10), || async {
        let text = metrics_text(&moat).await;
        text.lines().any(|l| l.starts_with("moat_dlq_depth "))
    })
    .await;
    let text = metrics_text(&moat).await;
    assert!(read, "moat_dlq_depth never exported:\n{text}");
    let at_start = series_listed(&text);

    let (rule_exprs, _) = rules();
    for expr in dashboard_exprs().iter().chain(&rule_exprs) {
        for (name, labels) in selected(expr) {
            assert!(
                at_start
                    .iter()
                    .any(|(n, l)| *n == name && labels.is_subset(l)),
                "{name} {labels:?} (in {expr}) is not exported before any traffic"
            );
        }
    }
    // Every counter and histogram: not only those deploy/ reads today.
    for (metric, kind, _) in EXPORTED {
        let name = match kind {
            MetricType::Histogram => format!("{metric}_count"),
            _ => metric.to_string(),
        };
        assert!(at_start.iter().any(|(n, _)| *n == name), "{name}");
    }

    // Traffic moves values; it adds no series the start did not list
    // (which would mean a label value the start does not know).
    let page = json!({ "query": "{ product(sku: \"SKU-000001\") { name price { price { amount } } availability { status } } }" });
    let checkout = json!({
        "query": "mutation($input: VerifyCheckoutInput!) { verifyCheckout(input: $input) { ok } }",
        "variables": { "input": {
            "currencyCode": "EUR",
            "lines": [{ "sku": "SKU-000001", "quantity": 1, "priceToken": "forged",
                        "displayedUnitPrice": { "amount": "1.00", "currencyCode": "EUR" } }],
            "displayedTotal": { "amount": "1.00", "currencyCode": "EUR" },
        } },
    });
    for body in [page, checkout] {
        let r: Value = reqwest::Client::new()
            .post(format!("{}/graphql", moat.public))
            .json(&body)
            .send()
            .await
            .expect("graphql")
            .json()
            .await
            .expect("json");
        assert!(r.get("errors").is_none(), "{r}");
    }
    let text = metrics_text(&moat).await;
    let after = series_listed(&text);
    let new: Vec<&Series> = after
        .iter()
        .filter(|s| !at_start.contains(s) && !s.0.starts_with("process_"))
        .collect();
    assert!(new.is_empty(), "not registered at start: {new:?}");
    metrics_explain_themselves(&text);
}

/// Every family has its `# HELP` and `# TYPE`, the build says what it is,
/// and promtool's linter finds nothing to say.
fn metrics_explain_themselves(text: &str) {
    let lines = format!("\n{text}");
    for (metric, kind, _) in EXPORTED {
        let kind = match kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        };
        assert!(
            lines.contains(&format!("\n# HELP {metric} ")),
            "{metric}: no HELP"
        );
        assert!(
            lines.contains(&format!("\n# TYPE {metric} {kind}\n")),
            "{metric}: no TYPE {kind}"
        );
    }
    let build = format!(
        "moat_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{build} not in\n{text}");
    let Some(out) = promtool(&["check", "metrics"], Some(text)) else {
        return;
    };
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs promtool with `args` (and `input` on stdin); None where it is not
/// installed (a failure in CI).
fn promtool(args: &[&str], input: Option<&str>) -> Option<std::process::Output> {
    use std::io::Write;
    use std::process::Stdio;
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(
            std::env::var_os("MOAT_CI").is_none(),
            "promtool is not on PATH (Debian: the prometheus package)"
        );
        eprintln!("promtool is not on PATH: not checked here");
        return None;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.unwrap_or("").as_bytes())
            .expect("promtool stdin");
    }
    Some(child.wait_with_output().expect("promtool runs"))
}

#[test]
fn every_alert_links_a_runbook_section_that_exists() {
    let runbook = read("docs/runbooks.md");
    let anchors: Vec<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    let (_, runbooks) = rules();
    assert_eq!(runbooks.len(), 10);
    for url in runbooks {
        let anchor = url
            .strip_prefix("docs/runbooks.md#")
            .unwrap_or_else(|| panic!("{url} is not a docs/runbooks.md section"));
        assert!(
            anchors.iter().any(|a| a == anchor),
            "{url}: no such section in {anchors:?}"
        );
    }
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("MOAT_CI").is_none(),
            "promtool is not on PATH (Debian: the prometheus package)"
        );
        eprintln!("promtool is not on PATH: rules not checked here");
        return;
    }
    let dir = root().join("deploy/prometheus");
    for args in [
        ["check", "rules", "moat-rules.yml"],
        ["test", "rules", "moat-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// --- the container file and the Kubernetes manifests ----------------------

const MANIFESTS: &str = "deploy/kubernetes";

/// The manifests to apply and validate: every YAML file but kustomize's own.
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(MANIFESTS))
        .expect("deploy/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_kubernetes_manifests_pass_schema_validation() {
    let kinds: BTreeSet<String> = manifests()
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .expect("manifest")
                .lines()
                .filter_map(|l| l.strip_prefix("kind: ").map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Secret",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {MANIFESTS}: {kinds:?}");
    }
    // kustomize applies every manifest but the example Secret.
    let kustomization = read(&format!("{MANIFESTS}/kustomization.yaml"));
    for file in manifests() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let listed = kustomization
            .lines()
            .any(|l| l.trim() == format!("- {name}"));
        assert_eq!(
            listed,
            !name.ends_with(".example.yaml"),
            "{name} in kustomization.yaml"
        );
    }

    // The schemas: kubernetes-validate (PyPI) bundles them, so this runs
    // offline; `.ci/run` installs it and sets MOAT_CI=1, which makes it
    // required.
    let found = Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("MOAT_CI").is_none(),
            "kubernetes-validate is not on PATH (pip install kubernetes-validate)"
        );
        eprintln!(
            "kubernetes-validate is not on PATH: manifests not checked against the schemas here"
        );
        return;
    }
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "--no-warn"])
        .args(manifests())
        .output()
        .expect("kubernetes-validate runs");
    assert!(
        out.status.success(),
        "kubernetes-validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It does refuse what the schemas refuse (so a pass means something).
    let bad = std::env::temp_dir().join(format!("moat-bad-deployment-{}.yaml", std::process::id()));
    std::fs::write(
        &bad,
        read(&format!("{MANIFESTS}/deployment.yaml")).replace("replicas: 3", "replicas: three"),
    )
    .unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(&bad)
        .output()
        .expect("kubernetes-validate runs");
    let _ = std::fs::remove_file(&bad);
    assert!(
        !out.status.success(),
        "a Deployment with replicas: three passed"
    );
}

/// The ConfigMap's `moat.toml`: the block under `moat.toml: |`.
fn configmap_toml() -> String {
    let text = read(&format!("{MANIFESTS}/configmap.yaml"));
    let mut lines = text.lines().skip_while(|l| l.trim() != "moat.toml: |");
    lines.next().expect("a moat.toml key in the ConfigMap");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.get(4..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(variable, secret key, optional)` of every `secretKeyRef` in the
/// Deployment's env.
fn secret_refs(deployment: &str) -> Vec<(String, String, bool)> {
    let lines: Vec<&str> = deployment.lines().collect();
    let mut refs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find("secretKeyRef:") else {
            continue;
        };
        let name = lines[..i]
            .iter()
            .rev()
            .find_map(|l| l.trim().strip_prefix("- name: "))
            .expect("the variable's name");
        let spec = &line[at..];
        let key = spec
            .split("key: ")
            .nth(1)
            .and_then(|k| k.split([',', ' ', '}']).next())
            .expect("a key");
        assert!(
            spec.contains("name: moat,"),
            "{name}: not from the Secret moat"
        );
        refs.push((
            name.to_string(),
            key.to_string(),
            spec.contains("optional: true"),
        ));
    }
    refs
}

#[test]
fn the_deployment_reads_every_secret_from_the_secret_and_probes_readiness() {
    let deployment = read(&format!("{MANIFESTS}/deployment.yaml"));
    let refs = secret_refs(&deployment);
    let referenced = |var: &str| refs.iter().find(|(name, _, _)| name == var);
    // Every variable Secrets reads by its full name (a name ending in `_`
    // is a prefix: named admin tokens and per-source event secrets, from
    // the optional Secret below), and the Redis URL (its password).
    let secrets = read("src/config/secrets.rs");
    let mut fixed: BTreeSet<String> = secrets
        .split("\"MOAT_")
        .skip(1)
        .map(|rest| format!("MOAT_{}", rest.split('"').next().unwrap()))
        .filter(|name| !name.ends_with('_'))
        .collect();
    fixed.insert("MOAT_REDIS_URL".into());
    assert!(fixed.len() >= 7, "{fixed:?}");
    for var in &fixed {
        let (_, key, _) =
            referenced(var).unwrap_or_else(|| panic!("{var} is not read from a Secret"));
        assert_eq!(key, var, "{var}: the Secret's key is the variable's name");
    }
    // Each system's credentials, as its auth in the ConfigMap reads them,
    // and none it does not read (Moat refuses to start with one set).
    let file = support::process::config_file("configmap", &configmap_toml());
    let config = moat::config::Config::from_files(&[file.as_path()], false)
        .unwrap_or_else(|e| panic!("the ConfigMap's moat.toml: {e}"));
    for system in ["pim", "erp", "crm", "oms"] {
        let suffixes: &[&str] = match config.system(system).auth {
            moat::config::Auth::None => &[],
            moat::config::Auth::Bearer | moat::config::Auth::Header { .. } => &["_TOKEN"],
            moat::config::Auth::Basic => &["_USER", "_PASSWORD"],
            moat::config::Auth::Oauth2 { .. } => &["_CLIENT_ID", "_CLIENT_SECRET"],
        };
        for suffix in [
            "_TOKEN",
            "_USER",
            "_PASSWORD",
            "_CLIENT_ID",
            "_CLIENT_SECRET",
        ] {
            let var = format!("MOAT_{}{suffix}", system.to_uppercase());
            assert_eq!(
                referenced(&var).is_some(),
                suffixes.contains(&suffix),
                "{var}: {system}'s auth reads {suffixes:?}"
            );
        }
    }
    // Named admin tokens and per-source event secrets: the optional Secret.
    assert!(deployment.contains("name: moat-extra\n                optional: true"));
    // The example Secret holds every key that is not optional.
    let example = read(&format!("{MANIFESTS}/secret.example.yaml"));
    for (_, key, optional) in &refs {
        if !optional {
            assert!(
                example.contains(&format!("  {key}: ")),
                "secret.example.yaml lacks {key}"
            );
        }
    }
    // Readiness on /readyz, liveness on /healthz, both on the public port.
    let probe = |kind: &str| {
        let at = deployment
            .find(&format!("{kind}:"))
            .unwrap_or_else(|| panic!("no {kind}"));
        deployment[at..].lines().nth(1).unwrap().trim().to_string()
    };
    assert_eq!(
        probe("readinessProbe"),
        "httpGet: { path: /readyz, port: http }"
    );
    assert_eq!(
        probe("livenessProbe"),
        "httpGet: { path: /healthz, port: http }"
    );
    assert!(deployment.contains("runAsNonRoot: true"));
    assert!(deployment.contains("readOnlyRootFilesystem: true"));
    // The ConfigMap listens where the probes and the Service look.
    assert_eq!(config.server.listen.port(), 8080);
    assert!(deployment.contains("containerPort: 8080"));
    assert!(read(&format!("{MANIFESTS}/service.yaml")).contains("targetPort: http"));
    // The replica count the limits are split by is the Deployment's.
    assert_eq!(config.upstream.replicas, 3);
    assert!(deployment.contains("replicas: 3"));
}

/// The container file cannot be built here (no registry images), so it is
/// checked for what matters: two stages, the binary copied from the build
/// into the runtime image, a user that is not root, a health check that
/// asks /readyz through the binary (the runtime image has no shell).
#[test]
fn the_container_file_is_multi_stage_non_root_and_checks_readiness() {
    let file = read("deploy/container/Dockerfile");
    let instructions: Vec<String> = {
        let mut joined = Vec::new();
        let mut current = String::new();
        for line in file.lines().filter(|l| !l.trim_start().starts_with('#')) {
            if let Some(head) = line.strip_suffix('\\') {
                current.push_str(head);
                continue;
            }
            current.push_str(line);
            if !current.trim().is_empty() {
                joined.push(current.trim().to_string());
            }
            current.clear();
        }
        joined
    };
    let with = |word: &str| -> Vec<&String> {
        instructions
            .iter()
            .filter(|i| i.starts_with(&format!("{word} ")))
            .collect()
    };
    let froms = with("FROM");
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].ends_with(" AS build"), "{}", froms[0]);
    assert!(
        with("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked --bin moat")),
        "the build stage builds the release binary from Cargo.lock"
    );
    assert!(
        with("COPY")
            .iter()
            .any(|c| c.starts_with("COPY --from=build ") && c.ends_with(" /usr/local/bin/moat")),
        "the runtime image takes only the binary"
    );
    let user = with("USER");
    assert_eq!(user.len(), 1, "{user:?}");
    let who = user[0]
        .trim_start_matches("USER ")
        .split(':')
        .next()
        .unwrap();
    assert!(!["root", "0"].contains(&who), "runs as {who}");
    let check = with("HEALTHCHECK");
    assert_eq!(check.len(), 1);
    assert!(
        check[0].contains(
            r#"CMD ["/usr/local/bin/moat", "healthcheck", "http://127.0.0.1:8080/readyz"]"#
        ),
        "{}",
        check[0]
    );
    assert_eq!(
        with("ENTRYPOINT"),
        [&r#"ENTRYPOINT ["/usr/local/bin/moat"]"#.to_string()]
    );
    // Build output stays out of the build context.
    let ignored = read(".dockerignore");
    assert!(ignored.lines().any(|l| l.trim() == "target"));
    // The Deployment runs that image's entry point with the ConfigMap.
    assert!(
        read(&format!("{MANIFESTS}/deployment.yaml"))
            .contains(r#"args: ["serve", "--config", "/etc/moat/moat.toml"]"#)
    );
}

/// `moat healthcheck`, the container's health check: 0 from a ready
/// gateway, 1 (saying why) from a port nobody answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_zero_only_on_a_ready_gateway() {
    support::install_tls_provider();
    let file = config_file("healthcheck", "");
    let moat = Running::start(&file, &[]);
    let (code, _) =
        support::process::moat(&["healthcheck", &format!("{}/readyz", moat.public)], &[]).await;
    assert_eq!(code, 0);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (code, output) =
        support::process::moat(&["healthcheck", &format!("http://{closed}/readyz")], &[]).await;
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains(&format!("http://{closed}/readyz")),
        "{output}"
    );
}
