//! Admin roles: named admin tokens (`MOAT_ADMIN_TOKEN_{NAME}` with
//! `[admin.tokens.NAME] role`). A viewer reads every admin route and is
//! refused every change (each change route of the router, read from its
//! source so a new one cannot slip by); the audit names the token that made
//! a change; the CLI works with either token; a token without its role, a
//! role without its token or a wrong role stops the start.

mod support;

use moat::config::{AdminToken, Config, Role, Secrets};
use reqwest::Method;
use serde_json::{Value, json};
use support::process::{config_file, moat};
use support::{ADMIN_TOKEN, Moat, Sim};

const VIEWER: &str = "viewer-token-0123456789";
const OPERATOR: &str = "ops-token-0123456789";

fn config_with_roles(sim: &Sim) -> Config {
    let mut c = support::config(&sim.url);
    for (name, role) in [("ro", Role::Viewer), ("ops", Role::Operator)] {
        c.admin.tokens.insert(name.into(), AdminToken { role });
    }
    c
}

fn secrets_with_roles() -> Secrets {
    let mut s = support::secrets();
    s.admin_tokens = [
        ("ro".to_string(), VIEWER.to_string()),
        ("ops".to_string(), OPERATOR.to_string()),
    ]
    .into();
    s
}

async fn call(
    moat: &Moat,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = moat
        .http
        .request(method, format!("{}{path}", moat.admin_url))
        .bearer_auth(token)
        .header("x-moat-actor", "test");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.expect("admin request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every route of the admin API with its methods, read from the router's
/// source (`src/admin/mod.rs`, the routes before `.route_layer`).
fn admin_routes() -> Vec<(Method, String)> {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin/mod.rs"),
    )
    .expect("src/admin/mod.rs");
    let start = source
        .find("let admin = Router::new()")
        .expect("the admin router");
    let end = start
        + source[start..]
            .find(".route_layer(")
            .expect("the token layer");
    let routes = &source[start..end];
    assert!(
        !routes.contains(".merge(") && !routes.contains(".nest("),
        "routes merged into the admin router are not enumerated here"
    );
    let mut found = Vec::new();
    for chunk in routes.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).expect("a route's path").to_string();
        let mut methods = 0;
        for (name, method) in [
            ("get(", Method::GET),
            ("post(", Method::POST),
            ("put(", Method::PUT),
            ("delete(", Method::DELETE),
            ("patch(", Method::PATCH),
        ] {
            let called = chunk.match_indices(name).any(|(i, _)| {
                let before = chunk[..i].chars().last();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if called {
                found.push((method, path.clone()));
                methods += 1;
            }
        }
        assert!(methods > 0, "no method read for {path}: {chunk}");
    }
    found
}

/// `path` with each `{param}` filled with a value its handler accepts.
fn filled(path: &str) -> String {
    path.replace("{upstream}", "erp")
        .replace("{entity}", "prices")
        .replace("{id}", "0-1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_everything_and_is_refused_every_change() {
    let sim = Sim::start().await;
    let moat = Moat::start_with_secrets(config_with_roles(&sim), secrets_with_roles()).await;

    let routes = admin_routes();
    let changes: Vec<&(Method, String)> = routes.iter().filter(|(m, _)| m != Method::GET).collect();
    // The change routes known today: a guard against reading nothing.
    for known in [
        "/admin/cache/purge",
        "/admin/limits/{upstream}",
        "/admin/breakers/{upstream}",
        "/admin/dlq/replay",
        "/admin/dlq/{id}",
        "/admin/reconcile/{entity}",
    ] {
        assert!(
            changes.iter().any(|(_, p)| p == known),
            "{known} not among {changes:?}"
        );
    }

    // Every read answers the viewer.
    for (method, path) in routes.iter().filter(|(m, _)| m == Method::GET) {
        let (status, body) = call(&moat, VIEWER, method.clone(), &filled(path), None).await;
        assert!(
            status == 200 || (status == 503 && path.contains("dlq")),
            "GET {path}: {status} {body}"
        );
    }
    let (status, status_body) = call(&moat, VIEWER, Method::GET, "/admin/status", None).await;
    assert_eq!(status, 200, "{status_body}");
    assert!(status_body["upstreams"]["erp"].is_object(), "{status_body}");
    let (_, me) = call(&moat, VIEWER, Method::GET, "/admin/whoami", None).await;
    assert_eq!(me, json!({ "name": "ro", "role": "viewer" }));

    // Every change is refused, with a code, and changes nothing.
    let limits_before = call(&moat, VIEWER, Method::GET, "/admin/limits", None)
        .await
        .1;
    let bodies = [json!({ "rps": 1 }), json!({ "action": "open" })];
    for (method, path) in &changes {
        for body in &bodies {
            let (status, answer) = call(
                &moat,
                VIEWER,
                method.clone(),
                &filled(path),
                Some(body.clone()),
            )
            .await;
            assert_eq!(status, 403, "{method} {path}: {answer}");
            assert_eq!(
                answer["code"], "FORBIDDEN_FOR_ROLE",
                "{method} {path}: {answer}"
            );
            assert!(
                answer["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("viewer")),
                "{answer}"
            );
        }
    }
    assert_eq!(
        call(&moat, VIEWER, Method::GET, "/admin/limits", None)
            .await
            .1,
        limits_before
    );
    let (_, erp) = call(&moat, VIEWER, Method::GET, "/admin/status", None).await;
    assert_eq!(erp["upstreams"]["erp"]["breaker"]["state"], "closed");

    // A wrong token is still 401, not a role's refusal.
    let (status, _) = call(&moat, "not-a-token", Method::PUT, "/admin/limits/erp", None).await;
    assert_eq!(status, 401);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_names_the_operator_who_changed_a_limit() {
    let sim = Sim::start().await;
    let moat = Moat::start_with_secrets(config_with_roles(&sim), secrets_with_roles()).await;

    let (_, me) = call(&moat, OPERATOR, Method::GET, "/admin/whoami", None).await;
    assert_eq!(me, json!({ "name": "ops", "role": "operator" }));
    let (_, me) = call(&moat, ADMIN_TOKEN, Method::GET, "/admin/whoami", None).await;
    assert_eq!(me, json!({ "name": "admin", "role": "operator" }));

    let (status, answer) = call(
        &moat,
        OPERATOR,
        Method::PUT,
        "/admin/limits/erp",
        Some(json!({ "rps": 77 })),
    )
    .await;
    assert_eq!(
        (status, answer["rps"].as_u64()),
        (200, Some(77)),
        "{answer}"
    );
    let (status, answer) = call(
        &moat,
        ADMIN_TOKEN,
        Method::PUT,
        "/admin/limits/pim",
        Some(json!({ "rps": 78 })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // A viewer reads the audit; each change names its token, the caller's
    // own word beside it.
    let (_, audits) = call(&moat, VIEWER, Method::GET, "/admin/audit", None).await;
    let by_target = |target: &str, rps: u64| {
        audits
            .as_array()
            .expect("audit list")
            .iter()
            .find(|a| {
                a["action"] == "limits.set" && a["target"] == target && a["new"]["rps"] == rps
            })
            .cloned()
            .unwrap_or_else(|| panic!("no limits.set of {target} in {audits:#}"))
    };
    let erp = by_target("erp", 77);
    assert_eq!(erp["who"], "ops", "{erp}");
    assert_eq!(erp["via"], "test", "{erp}");
    assert_eq!(by_target("pim", 78)["who"], "admin");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_with_either_token_and_says_why_a_viewer_is_refused() {
    let sim = Sim::start().await;
    let moat = Moat::start_with_secrets(config_with_roles(&sim), secrets_with_roles()).await;
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
            .arg("admin")
            .arg("--url")
            .arg(&moat.admin_url)
            .args(args)
            .env_remove("MOAT_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    // The viewer's token as MOAT_ADMIN_TOKEN, and by name with --as.
    for (args, env) in [
        (vec!["status", "--json"], vec![("MOAT_ADMIN_TOKEN", VIEWER)]),
        (
            vec!["--as", "ro", "status", "--json"],
            vec![("MOAT_ADMIN_TOKEN_RO", VIEWER)],
        ),
    ] {
        let out = cli(&args, &env);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        assert!(status["upstreams"]["erp"].is_object());
    }
    let out = cli(
        &["--as", "ro", "limits", "set", "erp", "--rps", "5"],
        &[("MOAT_ADMIN_TOKEN_RO", VIEWER)],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "auth: {said}");
    assert!(
        said.contains("viewer") && said.contains("operator's token"),
        "{said}"
    );

    let out = cli(
        &["--as", "ops", "limits", "set", "erp", "--rps", "55"],
        &[("MOAT_ADMIN_TOKEN_OPS", OPERATOR)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["limits", "--json"], &[("MOAT_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let limits: Value = serde_json::from_slice(&out.stdout).expect("limits JSON");
    assert_eq!(limits["erp"]["rps"], 55);

    let out = cli(&["--as", "nobody", "status"], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MOAT_ADMIN_TOKEN_NOBODY is not set"));
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_its_role_or_a_role_without_its_token_stops_the_start() {
    let sim = Sim::start().await;
    let listeners = [
        ("MOAT_LISTEN", "127.0.0.1:0"),
        ("MOAT_ADMIN_LISTEN", "127.0.0.1:0"),
        ("MOAT_ADMIN_TOKEN", ADMIN_TOKEN),
        ("MOAT_PRICE_TOKEN_SECRET", "price-token-secret"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = listeners.to_vec();
        env.extend_from_slice(extra);
        env
    };
    let upstream = format!("[upstream]\nurl = \"{}\"\n", sim.url);
    let plain = config_file("admin-roles", &upstream);
    let plain = plain.to_str().expect("utf-8 path");
    let with_table = config_file(
        "admin-roles",
        &format!("{upstream}\n[admin.tokens.ro]\nrole = \"viewer\"\n"),
    );
    let with_table = with_table.to_str().expect("utf-8 path");

    // A variable without its table: no role, so a stop, for serve and doctor.
    let ghost = with(&[("MOAT_ADMIN_TOKEN_GHOST", "boo-0123456789")]);
    let (code, out) = moat(&["serve", "--config", plain], &ghost).await;
    assert_eq!(code, 2, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("MOAT_ADMIN_TOKEN_GHOST"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("admin.tokens.ghost"), "{line}");
    assert!(
        !out.contains("boo-0123456789"),
        "the token is never shown: {out}"
    );
    let (code, out) = moat(&["doctor", "--config", plain, "--json"], &ghost).await;
    assert_eq!(code, 1, "{out}");
    let lines: Vec<Value> = serde_json::from_str(&out).expect("doctor --json");
    let finding = lines
        .iter()
        .find(|l| l["check"] == "admin.tokens.ghost")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(finding["status"], "FAIL", "{finding}");
    assert!(
        finding["detail"]
            .as_str()
            .unwrap()
            .contains("MOAT_ADMIN_TOKEN_GHOST"),
        "{finding}"
    );

    // A table without its variable.
    let (code, out) = moat(&["serve", "--config", with_table], &with(&[])).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("admin.tokens.ro") && out.contains("MOAT_ADMIN_TOKEN_RO is not set"),
        "{out}"
    );

    // A role that is not one: a config error naming the key.
    let wrong = config_file(
        "admin-roles",
        &format!("{upstream}\n[admin.tokens.ro]\nrole = \"admin\"\n"),
    );
    let (code, out) = moat(
        &["serve", "--config", wrong.to_str().unwrap()],
        &with(&[("MOAT_ADMIN_TOKEN_RO", VIEWER)]),
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("admin.tokens.ro.role"), "{out}");
    assert!(out.contains("viewer") && out.contains("operator"), "{out}");

    // Both there: doctor says so.
    let (_, out) = moat(
        &["doctor", "--config", with_table, "--json"],
        &with(&[("MOAT_ADMIN_TOKEN_RO", VIEWER)]),
    )
    .await;
    let lines: Vec<Value> = serde_json::from_str(&out).expect("doctor --json");
    let ok = lines
        .iter()
        .find(|l| l["check"] == "admin.tokens.ro")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(ok["status"], "OK", "{ok}");
}
