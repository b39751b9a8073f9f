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
