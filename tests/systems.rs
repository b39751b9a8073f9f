//! Systems of record as configuration: each system on its own simulator
//! with its own credentials, OAuth2 client credentials, an ownership map
//! that sends stock to a WMS, credentials the environment alone chooses
//! (or that contradict the file, which stops the start), the protocol
//! version check, and the two commands integration teams run:
//! `moat contract verify` and `moat doctor`.

mod support;

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use moat::config::{Auth, Config, Secrets, SystemConfig, SystemSecrets};
use moat::sim::SimConfig;
use support::process::{Running, moat};
use support::{Moat, Sim};

const READ: &str = r#"
query($sku: String!) {
  product(sku: $sku) {
    name
    price { price { amount currencyCode } }
    availability { quantity }
  }
}"#;

/// A simulator serving only `systems`.
async fn sim_of(systems: &[&str], auth: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut config = SimConfig {
        products: 200,
        systems: Some(systems.iter().map(|s| s.to_string()).collect()),
        ..SimConfig::default()
    };
    auth(&mut config);
    Sim::start_with(config).await
}

fn system(url: &str, auth: Auth) -> SystemConfig {
    SystemConfig {
        url: Some(url.to_string()),
        auth: Some(auth),
        ..SystemConfig::default()
    }
}

fn token(value: &str) -> SystemSecrets {
    SystemSecrets {
        token: Some(value.to_string()),
        ..SystemSecrets::default()
    }
}

fn secrets_with(systems: &[(&str, SystemSecrets)]) -> Secrets {
    let mut secrets = support::secrets();
    secrets.systems = systems
        .iter()
        .map(|(name, s)| (name.to_string(), s.clone()))
        .collect();
    secrets
}

fn sku(i: usize) -> String {
    format!("SKU-{i:06}")
}

async fn read(moat: &Moat, i: usize) -> Value {
    moat.query(READ, json!({ "sku": sku(i) })).await
}

fn error_messages(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

async fn unauthorized(sim: &Sim) -> u64 {
    sim.stats().await["unauthorized"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pim_and_erp_on_their_own_simulators_with_their_own_tokens() {
    let pim = sim_of(&["pim"], |c| c.require_token = Some("pim-token".into())).await;
    let erp = sim_of(&["erp"], |c| c.require_token = Some("erp-token".into())).await;
    let rest = sim_of(&["crm", "oms"], |_| {}).await;
    let mut config = support::config(&rest.url);
    config.systems = [
        ("pim".to_string(), system(&pim.url, Auth::Bearer)),
        ("erp".to_string(), system(&erp.url, Auth::Bearer)),
    ]
    .into();

    let moat = Moat::start_with_secrets(
        config.clone(),
        secrets_with(&[("pim", token("pim-token")), ("erp", token("erp-token"))]),
    )
    .await;
    for i in 1..=3 {
        let r = read(&moat, i).await;
        assert!(r.get("errors").is_none(), "{r}");
        assert!(r["data"]["product"]["price"]["price"]["amount"].is_string());
    }
    // Each simulator saw its own system's calls and nothing else.
    let (pim_stats, erp_stats) = (pim.stats().await, erp.stats().await);
    assert!(pim_stats["requests"]["pim.products"].as_u64() > Some(0));
    assert!(erp_stats["requests"]["erp.prices"].as_u64() > Some(0));
    assert!(erp_stats["requests"]["erp.inventory"].as_u64() > Some(0));
    for (stats, foreign) in [
        (&pim_stats, ["erp.prices", "erp.inventory", "crm.customers"]),
        (&erp_stats, ["pim.products", "pim.categories", "oms.orders"]),
    ] {
        for endpoint in foreign {
            assert_eq!(stats["requests"][endpoint], 0, "{endpoint}: {stats}");
        }
        assert_eq!(stats["unauthorized"], 0, "{stats}");
    }
    // The admin status names each system with its URL and records.
    let (_, status) = moat.admin_get("/admin/status").await;
    assert_eq!(status["upstreams"]["erp"]["url"], erp.url.as_str());
    assert_eq!(
        status["upstreams"]["erp"]["records"],
        json!(["prices", "inventory"])
    );
    moat.stop().await;

    // A wrong ERP token: prices fail naming the ERP; content still serves.
    let moat = Moat::start_with_secrets(
        config,
        secrets_with(&[("pim", token("pim-token")), ("erp", token("not-the-token"))]),
    )
    .await;
    let r = read(&moat, 4).await;
    assert_eq!(
        r["data"]["product"]["name"].as_str().map(str::is_empty),
        Some(false),
        "{r}"
    );
    assert!(r["data"]["product"]["price"].is_null(), "{r}");
    let messages = error_messages(&r);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("erp") && m.contains("credentials")),
        "{messages:?}"
    );
    assert!(unauthorized(&erp).await > 0);
    assert_eq!(unauthorized(&pim).await, 0);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_one_token_serves_many_calls_and_an_expired_one_is_refreshed_once() {
    let erp = sim_of(&["erp"], |c| {
        c.oauth_client = Some(("moat".into(), "client-secret".into()));
    })
    .await;
    let rest = sim_of(&["pim", "crm", "oms"], |_| {}).await;
    let mut config = support::config(&rest.url);
    let oauth2 = Auth::Oauth2 {
        token_url: format!("{}/oauth/token", erp.url),
        scope: Some("prices stock".into()),
        grant: moat::config::Grant::ClientCredentials,
        client_auth: Default::default(),
        header: None,
    };
    config.systems = [("erp".to_string(), system(&erp.url, oauth2))].into();
    let credentials = SystemSecrets {
        client_id: Some("moat".into()),
        client_secret: Some("client-secret".into()),
        ..SystemSecrets::default()
    };
    let moat = Moat::start_with_secrets(config, secrets_with(&[("erp", credentials)])).await;
    let issued = |stats: Value| stats["tokens_issued"].as_u64().unwrap_or(0);

    // Ten skus, ten cache misses, ten ERP price calls: one token.
    for i in 1..=10 {
        let r = read(&moat, i).await;
        assert!(r.get("errors").is_none(), "{r}");
    }
    let stats = erp.stats().await;
    assert!(
        stats["requests"]["erp.prices"].as_u64() >= Some(10),
        "{stats}"
    );
    assert_eq!(issued(stats), 1);

    // The ERP expires it; eight requests at once get a 401 and need a new
    // one: it is fetched once.
    let expired: Value = reqwest::Client::new()
        .post(format!("{}/_sim/oauth/expire", erp.url))
        .send()
        .await
        .expect("expire")
        .json()
        .await
        .expect("json");
    assert_eq!(expired["expired"], 1);
    let reads = (11..=18).map(|i| {
        let moat = &moat;
        async move { read(moat, i).await }
    });
    for r in futures_util::future::join_all(reads).await {
        assert!(r.get("errors").is_none(), "{r}");
    }
    assert!(unauthorized(&erp).await >= 1);
    assert_eq!(issued(erp.stats().await), 2);
    assert_eq!(
        moat.metric(r#"moat_upstream_token_fetches_total{upstream="erp",outcome="ok"}"#)
            .await,
        2.0
    );
    moat.stop().await;
}

/// An HTTP front on a free loopback port that notes the `Authorization`
/// of every request and passes the request on to `target`.
async fn noting_front(target: &str) -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::http::header;
    let noted = Arc::new(Mutex::new(Vec::new()));
    let (http, target, kept) = (reqwest::Client::new(), target.to_string(), noted.clone());
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (http, target, kept) = (http.clone(), target.clone(), kept.clone());
        async move {
            let (parts, body) = request.into_parts();
            if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
                kept.lock()
                    .unwrap()
                    .push(value.to_str().unwrap().to_string());
            }
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut headers = parts.headers.clone();
            headers.remove(header::HOST);
            let answer = http
                .request(parts.method, format!("{target}{path}"))
                .headers(headers)
                .body(body)
                .send()
                .await
                .unwrap();
            let mut response = axum::response::Response::builder().status(answer.status());
            for name in [header::CONTENT_TYPE, header::WWW_AUTHENTICATE] {
                if let Some(value) = answer.headers().get(&name) {
                    response = response.header(name, value);
                }
            }
            if let Some(value) = answer.headers().get("moat-protocol") {
                response = response.header("moat-protocol", value);
            }
            let bytes = answer.bytes().await.unwrap();
            response.body(axum::body::Body::from(bytes)).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, noted)
}

/// The binary with a config file that says nothing of the ERP's auth.
fn gateway_without_erp_auth(rest: &Sim, env: &[(&str, &str)]) -> Running {
    let file = support::process::config_file("credentials", "");
    let mut all = vec![("MOAT_UPSTREAM_URL", rest.url.as_str())];
    all.extend_from_slice(env);
    Running::start(&file, &all)
}

/// A query for one product's price (the binary takes no variables).
fn price_of(i: usize) -> String {
    format!(
        "{{ product(sku: \"{}\") {{ name price {{ price {{ amount currencyCode }} }} }} }}",
        sku(i)
    )
}

fn price_served(r: &Value) -> bool {
    r.get("errors").is_none() && r["data"]["product"]["price"]["price"]["amount"].is_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_environment_choose_the_auth_the_file_leaves_out() {
    let rest = sim_of(&["pim", "crm", "oms"], |_| {}).await;

    // A token alone: bearer.
    let erp = sim_of(&["erp"], |c| c.require_token = Some("erp-token".into())).await;
    let moat = gateway_without_erp_auth(
        &rest,
        &[("MOAT_ERP_URL", &erp.url), ("MOAT_ERP_TOKEN", "erp-token")],
    );
    let r = moat.query(&price_of(1)).await;
    assert!(price_served(&r), "{r}");
    assert!(erp.requests("erp.prices").await > 0);
    assert_eq!(unauthorized(&erp).await, 0);
    drop(moat);

    // A user and a password: basic, on every call to the ERP.
    let erp = sim_of(&["erp"], |_| {}).await;
    let (front, noted) = noting_front(&erp.url).await;
    let moat = gateway_without_erp_auth(
        &rest,
        &[
            ("MOAT_ERP_URL", &front),
            ("MOAT_ERP_USER", "moat"),
            ("MOAT_ERP_PASSWORD", "hunter2"),
        ],
    );
    let r = moat.query(&price_of(2)).await;
    assert!(price_served(&r), "{r}");
    let noted = noted.lock().unwrap().clone();
    assert!(!noted.is_empty());
    assert!(
        noted.iter().all(|a| a == "Basic bW9hdDpodW50ZXIy"),
        "{noted:?}"
    );
    drop(moat);

    // OAuth2 needs its token endpoint; the environment can say it too.
    let erp = sim_of(&["erp"], |c| {
        c.oauth_client = Some(("moat".into(), "client-secret".into()));
    })
    .await;
    let token_url = format!("{}/oauth/token", erp.url);
    let moat = gateway_without_erp_auth(
        &rest,
        &[
            ("MOAT_ERP_URL", &erp.url),
            ("MOAT_ERP_CLIENT_ID", "moat"),
            ("MOAT_ERP_CLIENT_SECRET", "client-secret"),
            ("MOAT_SYSTEMS__ERP__AUTH__KIND", "oauth2"),
            ("MOAT_SYSTEMS__ERP__AUTH__TOKEN_URL", &token_url),
        ],
    );
    let r = moat.query(&price_of(3)).await;
    assert!(price_served(&r), "{r}");
    assert_eq!(erp.stats().await["tokens_issued"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_the_configured_auth_does_not_read_stops_the_start() {
    let bearer = support::process::config_file(
        "contradiction",
        "[systems.erp]\nauth = { kind = \"bearer\" }\n",
    );
    let bearer = bearer.to_str().expect("utf-8 path");
    let listeners = [
        ("MOAT_LISTEN", "127.0.0.1:0"),
        ("MOAT_ADMIN_LISTEN", "127.0.0.1:0"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = listeners.to_vec();
        env.extend_from_slice(extra);
        env
    };
    let user = with(&[("MOAT_ERP_USER", "moat")]);
    for command in ["serve", "doctor"] {
        let (code, out) = moat(&[command, "--config", bearer], &user).await;
        assert_eq!(code, 2, "{command}: {out}");
        let line = out
            .lines()
            .find(|l| l.contains("MOAT_ERP_USER"))
            .unwrap_or_else(|| panic!("{command}: {out}"));
        assert!(line.contains("systems.erp.auth"), "{line}");
        assert!(line.contains("MOAT_ERP_TOKEN"), "what it reads: {line}");
    }

    // Without auth in the file, variables that ask for two kinds, or
    // client credentials with no token endpoint, stop it too.
    let empty = support::process::config_file("no-auth", "");
    let empty = empty.to_str().expect("utf-8 path");
    for (vars, named) in [
        (
            with(&[("MOAT_ERP_TOKEN", "t"), ("MOAT_ERP_PASSWORD", "p")]),
            "(bearer, basic)",
        ),
        (
            with(&[("MOAT_ERP_CLIENT_ID", "c"), ("MOAT_ERP_CLIENT_SECRET", "s")]),
            "token_url",
        ),
    ] {
        let (code, out) = moat(&["serve", "--config", empty], &vars).await;
        assert_eq!(code, 2, "{out}");
        assert!(
            out.lines()
                .any(|l| l.contains("systems.erp.auth") && l.contains(named)),
            "{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wms_that_owns_inventory_gets_the_stock_reads_and_their_events() {
    let main = sim_of(&["pim", "erp", "crm", "oms"], |_| {}).await;
    let wms = sim_of(&["erp"], |_| {}).await;
    let mut config = support::config(&main.url);
    config.entities.inventory = "wms".into();
    config.systems = [(
        "wms".to_string(),
        SystemConfig {
            owner: Some("Warehouse team".into()),
            contact: Some("#wms-oncall".into()),
            ..system(&wms.url, Auth::None)
        },
    )]
    .into();
    let moat = Moat::start(config).await;
    for i in 1..=3 {
        let r = read(&moat, i).await;
        assert!(r.get("errors").is_none(), "{r}");
    }
    assert!(wms.requests("erp.inventory").await > 0);
    assert_eq!(wms.requests("erp.prices").await, 0);
    assert_eq!(main.requests("erp.inventory").await, 0);
    assert!(main.requests("erp.prices").await > 0);

    // Counted under the WMS (every series exists at 0 from the start).
    let wms_reads = r#"moat_upstream_requests_total{upstream="wms",endpoint="inventory""#;
    assert!(moat.metric(wms_reads).await > 0.0);
    let (_, status) = moat.admin_get("/admin/status").await;
    let wms_status = &status["upstreams"]["wms"];
    assert_eq!(wms_status["records"], json!(["inventory"]), "{status}");
    assert_eq!(wms_status["owner"], "Warehouse team");
    assert_eq!(wms_status["contact"], "#wms-oncall");
    assert!(wms_status["breaker"].is_object());

    // Stock changes are announced by their owner: the WMS, not the ERP.
    let event = |id: &str, source: &str| {
        json!({
            "id": id, "type": "inventory.updated", "source": source,
            "occurredAt": support::events::rfc3339(support::events::now()),
            "data": { "sku": sku(1), "available": 7, "version": 50,
                      "updatedAt": support::events::rfc3339(support::events::now()) },
        })
        .to_string()
    };
    // What the WMS sends is an event as the schema has it.
    let sent: Value = serde_json::from_str(&event("e-wms", "wms")).expect("JSON");
    let closed = moat::schema::Properties::Closed;
    assert_eq!(moat::schema::validate("event.json", &sent, closed), []);
    let now = support::events::now();
    let (status, body) =
        support::events::post_signed(&moat, "erp", event("e-erp", "erp").as_bytes(), now).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("wms"),
        "{body}"
    );
    let (status, body) =
        support::events::post_signed(&moat, "wms", event("e-wms", "wms").as_bytes(), now).await;
    assert_eq!(status, 200, "{body}");
    let r = read(&moat, 1).await;
    assert_eq!(r["data"]["product"]["availability"]["quantity"], 7, "{r}");
    moat.stop().await;
}

#[test]
fn the_event_schema_names_every_type_moat_applies_with_its_entity() {
    use moat::events::EventType;
    let schema = moat::schema::schema("event.json").expect("event.json");
    let listed: Vec<&str> = schema["properties"]["type"]["enum"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let applied: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(listed, applied);
    let parts = schema["allOf"].as_array().expect("allOf");
    for kind in EventType::ALL {
        let part = parts
            .iter()
            .find(|p| p["if"]["properties"]["type"]["const"] == kind.name())
            .unwrap_or_else(|| panic!("no part for {}", kind.name()));
        let then = &part["then"]["properties"];
        assert_eq!(
            then["entity"]["properties"]["kind"]["const"],
            kind.entity(),
            "{}",
            kind.name()
        );
        assert_eq!(
            then["data"]["$ref"],
            format!("{}.json", kind.entity()),
            "{}",
            kind.name()
        );
        assert!(
            then.get("source").is_none(),
            "{}: its record's owner sends it, whichever system that is",
            kind.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_declaring_another_protocol_version_breaks_the_contract() {
    let erp = sim_of(&["erp"], |c| c.protocol = "v2".into()).await;
    let rest = sim_of(&["pim", "crm", "oms"], |_| {}).await;
    let mut config = support::config(&rest.url);
    config.systems = [("erp".to_string(), system(&erp.url, Auth::None))].into();
    let moat = Moat::start(config).await;
    let r = read(&moat, 1).await;
    assert_eq!(
        r["data"]["product"]["name"].as_str().map(str::is_empty),
        Some(false),
        "{r}"
    );
    assert!(r["data"]["product"]["price"].is_null(), "{r}");
    assert!(
        error_messages(&r)
            .iter()
            .any(|m| m.contains("erp") && m.contains("contract")),
        "{r}"
    );
    assert!(
        moat.metric(r#"moat_contract_violations_total{upstream="erp""#)
            .await
            >= 1.0
    );
    let (_, exceptions) = moat.admin_get("/admin/exceptions").await;
    assert!(exceptions.to_string().contains("v2"), "{exceptions}");
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_verify_lists_violations_and_fails_only_when_there_are_some() {
    let sim = Sim::start().await;
    let args = ["contract", "verify", "--system", "erp", "--url", &sim.url];
    let (code, out) = moat(&args, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("GET /erp/v1/prices"), "{out}");
    assert!(out.contains("POST /erp/v1/quote"), "{out}");
    assert!(out.contains(", 0 violations"), "{out}");
    assert!(!out.contains("/erp/v1/offers"), "not configured: {out}");

    // An ERP configured to answer the combined route is held to it too.
    let offers = [("MOAT_SYSTEMS__ERP__OFFERS", "true")];
    let (code, out) = moat(&args, &offers).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("GET /erp/v1/offers"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");

    sim.fault("erp", json!({ "malformed_rate": 1.0 })).await;
    let (code, out) = moat(&args, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL"), "{out}");
    // Each violation names where in the payload and which rule.
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("$")),
        "{out}"
    );
    assert!(
        out.contains("[price.json:") || out.contains("[JSON]") || out.contains("[moat: price]"),
        "{out}"
    );

    // A system that only speaks some routes is probed on what it owns.
    let pim = ["contract", "verify", "--system", "pim", "--url", &sim.url];
    let (code, out) = moat(&pim, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/pim/v1/categories"), "{out}");

    // The CRM: the customer of a token, then the same one by id (as Moat
    // asks with JWT customer tokens).
    let (id, token, _) = support::customer_in(&sim, "vip").await;
    let crm = [
        "contract",
        "verify",
        "--system",
        "crm",
        "--url",
        &sim.url,
        "--customer-token",
        &token,
    ];
    let (code, out) = moat(&crm, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/crm/v1/customers/by-token/"), "{out}");
    assert!(out.contains(&format!("/crm/v1/customers/{id}")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_on_a_missing_erp_token_and_events_secret_and_passes_once_set() {
    let sim = Sim::start().await;
    let erp = sim_of(&["erp"], |c| c.require_token = Some("erp-token".into())).await;
    let file = support::process::config_file(
        "doctor",
        &format!(
            r#"
[upstream]
url = "{}"

[systems.erp]
url = "{}"
auth = {{ kind = "bearer" }}
owner = "Finance IT"
contact = "erp-oncall@example.com"
"#,
            sim.url, erp.url
        ),
    );
    let config = file.to_str().expect("utf-8 path");
    let base = [
        ("MOAT_ADMIN_TOKEN", "admin"),
        ("MOAT_PRICE_TOKEN_SECRET", "price-token-secret"),
    ];
    let (code, out) = moat(&["doctor", "--config", config], &base).await;
    assert_eq!(code, 1, "{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(fails.iter().any(|l| l.contains("MOAT_ERP_TOKEN")), "{out}");
    assert!(
        fails.iter().any(|l| l.contains("MOAT_EVENTS_SECRET")),
        "{out}"
    );

    // --json gives the same lines.
    let (code, json_out) = moat(&["doctor", "--config", config, "--json"], &base).await;
    assert_eq!(code, 1);
    let lines: Vec<Value> = serde_json::from_str(&json_out).expect("doctor --json is JSON");
    let table: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("OK") || l.starts_with("WARN") || l.starts_with("FAIL"))
        .collect();
    assert_eq!(lines.len(), table.len());
    for (json_line, text_line) in lines.iter().zip(&table) {
        assert!(
            text_line.starts_with(json_line["status"].as_str().unwrap()),
            "{text_line}"
        );
        assert!(
            text_line.contains(json_line["check"].as_str().unwrap()),
            "{text_line}"
        );
    }

    // A wrong token: reached, but not accepted.
    let wrong = [
        base[0],
        base[1],
        ("MOAT_ERP_TOKEN", "wrong"),
        ("MOAT_EVENTS_SECRET", "s"),
    ];
    let (code, out) = moat(&["doctor", "--config", config], &wrong).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL")
            && l.contains("systems.erp.url")
            && l.contains("credentials")),
        "{out}"
    );

    let set = [
        base[0],
        base[1],
        ("MOAT_ERP_TOKEN", "erp-token"),
        ("MOAT_EVENTS_SECRET", "s"),
    ];
    // MOAT_ERP_URL moves the ERP, over the file.
    let moved = [
        set[0],
        set[1],
        set[2],
        set[3],
        ("MOAT_ERP_URL", "http://127.0.0.1:1"),
    ];
    let (code, out) = moat(&["doctor", "--config", config], &moved).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL")
            && l.contains("systems.erp.url")
            && l.contains("127.0.0.1:1 is unreachable")),
        "{out}"
    );
    let (code, out) = moat(&["doctor", "--config", config], &set).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.lines().any(|l| l.starts_with("FAIL")), "{out}");
    assert!(out.contains("ready"), "{out}");
}

#[test]
fn config_names_every_system_problem() {
    let problems = |text: &str| -> Vec<String> {
        let file = support::process::config_file("systems-config", text);
        match Config::from_sources(Some(&file), false) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.into_iter().map(|p| p.key).collect(),
        }
    };
    let keys = problems(
        r#"
[entities]
inventory = "wsm"

[systems.wms]
url = "ftp://warehouse"
protocol = "v2"
auth = { kind = "oauth2", token_url = "not a url" }
timeout = "0s"

[systems.admin]
url = "http://127.0.0.1:1"

[systems.data]
url = "http://127.0.0.1:2"
"#,
    );
    for key in [
        "entities.inventory",
        "systems.wms.url",
        "systems.wms.protocol",
        "systems.wms.auth.token_url",
        "systems.wms.timeout",
        "systems.wms",
        "systems.admin",
        // MOAT_DATA_KEY is the key personal data is sealed with.
        "systems.data",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
    }
    // An unknown auth kind or key is named too.
    let keys = problems("[systems.erp]\nauth = { kind = \"kerberos\" }\n");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("systems.erp.auth"), "{keys:?}");
    let keys = problems("[systems.erp]\ntimeuot = \"1s\"\n");
    assert!(
        keys.iter().any(|k| k.starts_with("systems.erp")),
        "{keys:?}"
    );
    // A complete one is fine.
    let keys = problems(
        r#"
[entities]
inventory = "wms"

[systems.wms]
url = "https://wms.internal:8443"
auth = { kind = "header", name = "X-Api-Key" }
owner = "Warehouse team"
contact = "wms-oncall@example.com"
limits = { rps = 20, burst = 40 }
breaker = { failure_rate = 0.3 }
retry = { max_attempts = 2 }
"#,
    );
    assert!(keys.is_empty(), "{keys:?}");
}

/// A private CA, a server certificate for 127.0.0.1 and a client identity
/// it signed, as PEM files in a fresh directory.
struct Pki {
    dir: std::path::PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    server: (rcgen::Certificate, rcgen::KeyPair),
}

impl Pki {
    fn new(name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("moat-pki-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let issue = |san: &str| {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(vec![san.to_string()])
                .expect("params")
                .signed_by(&key, &ca)
                .expect("signed");
            (cert, key)
        };
        let server = issue("127.0.0.1");
        let (client, client_key) = issue("moat.test");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("ca.pem");
        std::fs::write(
            dir.join("moat.pem"),
            format!("{}{}", client.pem(), client_key.serialize_pem()),
        )
        .expect("moat.pem");
        Pki { dir, ca, server }
    }

    fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }

    /// HTTPS on a free port in front of `target` (host:port); with
    /// `mutual`, only clients with a certificate this CA signed get in.
    async fn front(&self, target: &str, mutual: bool) -> String {
        use tokio_rustls::rustls::{self, RootCertStore, pki_types::PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if mutual {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.der().clone()).expect("root");
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::try_from(self.server.1.serialize_der()).expect("key der");
        let config = builder
            .with_single_cert(vec![self.server.0.der().clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let target = target.to_string();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, target) = (acceptor.clone(), target.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                    }
                });
            }
        });
        url
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_behind_a_private_ca_and_mutual_tls() {
    let pki = Pki::new("tls");
    let erp = sim_of(&["erp"], |_| {}).await;
    let rest = sim_of(&["pim", "crm", "oms"], |_| {}).await;
    let erp_addr = erp.url.trim_start_matches("http://").to_string();
    let private = pki.front(&erp_addr, false).await;
    let mutual = pki.front(&erp_addr, true).await;
    let start = |url: &str, tls: moat::config::Tls| {
        let mut config = support::config(&rest.url);
        config.systems = [(
            "erp".to_string(),
            SystemConfig {
                tls,
                ..system(url, Auth::None)
            },
        )]
        .into();
        Moat::start(config)
    };
    let prices_work = |r: &Value| r["data"]["product"]["price"]["price"]["amount"].is_string();
    let ca_only = moat::config::Tls {
        ca_file: Some(pki.file("ca.pem")),
        client_identity: None,
    };
    let both = moat::config::Tls {
        client_identity: Some(pki.file("moat.pem")),
        ..ca_only.clone()
    };

    // Without the CA the ERP's certificate is not trusted: prices fail.
    let moat = start(&private, moat::config::Tls::default()).await;
    let r = read(&moat, 1).await;
    assert!(!prices_work(&r), "{r}");
    assert!(error_messages(&r).iter().any(|m| m.contains("erp")), "{r}");
    moat.stop().await;

    let moat = start(&private, ca_only.clone()).await;
    assert!(prices_work(&read(&moat, 2).await));
    moat.stop().await;

    // Mutual TLS: the CA alone is not enough, the client identity is.
    let moat = start(&mutual, ca_only).await;
    assert!(!prices_work(&read(&moat, 3).await));
    moat.stop().await;
    let moat = start(&mutual, both).await;
    let r = read(&moat, 4).await;
    assert!(prices_work(&r), "{r}");
    moat.stop().await;
}

/// A system answering with a redirect: Moat does not follow it (a hop
/// elsewhere would pass no limit or breaker, and could carry the
/// system's credentials to another host). The redirect is a refused
/// request: the price is null with its error, the rest of the page is
/// served, and the target never sees a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_s_redirect_is_not_followed() {
    let erp = sim_of(&["erp"], |_| {}).await;
    let rest = sim_of(&["pim", "crm", "oms"], |_| {}).await;
    let redirects = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (target, seen) = (erp.url.clone(), redirects.clone());
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (target, seen) = (target.clone(), seen.clone());
        async move {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            axum::response::Response::builder()
                .status(307)
                .header("location", format!("{target}{path}"))
                .body(axum::body::Body::empty())
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = support::config(&rest.url);
    config.systems = [("erp".to_string(), system(&front, Auth::None))].into();
    let moat = Moat::start(config).await;
    let r = read(&moat, 1).await;
    assert!(r["data"]["product"]["name"].is_string(), "{r}");
    assert!(r["data"]["product"]["price"].is_null(), "{r}");
    assert!(
        error_messages(&r)
            .iter()
            .any(|m| m.contains("erp refused the request (307")),
        "{r}"
    );
    assert!(redirects.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(erp.requests("erp.prices").await, 0);
    assert_eq!(erp.requests("erp.inventory").await, 0);
    moat.stop().await;
}

/// A system that speaks HTTP/2 over TLS (as the SaaS APIs behind a CDN
/// do): Moat negotiates h2 by ALPN and reads prices through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_offering_http2_is_read_over_it() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};
    let pki = Pki::new("h2");
    let erp = sim_of(&["erp"], |_| {}).await;
    let rest = sim_of(&["pim", "crm", "oms"], |_| {}).await;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::try_from(pki.server.1.serialize_der()).expect("key der");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![pki.server.0.der().clone()], key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = format!("https://{}", listener.local_addr().unwrap());
    // Each request's HTTP version, then the request passed on to the ERP.
    let versions = Arc::new(Mutex::new(Vec::new()));
    let (target, seen) = (erp.url.clone(), versions.clone());
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, target, seen, http) =
                (acceptor.clone(), target.clone(), seen.clone(), http.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                    let (target, seen, http) = (target.clone(), seen.clone(), http.clone());
                    async move {
                        seen.lock().unwrap().push(request.version());
                        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                        let answer = http.get(format!("{target}{path}")).send().await.unwrap();
                        let mut response = hyper::Response::builder().status(answer.status());
                        for (name, value) in answer.headers() {
                            if name == "content-type" || name == "moat-protocol" {
                                response = response.header(name, value);
                            }
                        }
                        let body = answer.bytes().await.unwrap();
                        Ok::<_, std::convert::Infallible>(
                            response.body(http_body_util::Full::new(body)).unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });

    let mut config = support::config(&rest.url);
    config.systems = [(
        "erp".to_string(),
        SystemConfig {
            tls: moat::config::Tls {
                ca_file: Some(pki.file("ca.pem")),
                client_identity: None,
            },
            ..system(&front, Auth::None)
        },
    )]
    .into();
    let moat = Moat::start(config).await;
    let r = read(&moat, 5).await;
    assert!(
        r["data"]["product"]["price"]["price"]["amount"].is_string(),
        "{r}"
    );
    assert!(
        r["data"]["product"]["availability"]["quantity"].is_number(),
        "{r}"
    );
    let versions = versions.lock().unwrap().clone();
    assert!(!versions.is_empty());
    assert!(
        versions.iter().all(|v| *v == hyper::Version::HTTP_2),
        "{versions:?}"
    );
    moat.stop().await;
}

/// A CONNECT proxy on a free loopback port: notes each tunnel's target
/// with its `Proxy-Authorization`, then splices the two connections.
async fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let noted = noted.clone();
            tokio::spawn(async move {
                let (target, auth) = {
                    let mut head = BufReader::new(&mut client);
                    let mut line = String::new();
                    if head.read_line(&mut line).await.is_err() {
                        return;
                    }
                    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut auth = String::new();
                    loop {
                        line.clear();
                        if head.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if line
                            .to_ascii_lowercase()
                            .starts_with("proxy-authorization:")
                        {
                            auth = line.trim().to_string();
                        }
                    }
                    (target, auth)
                };
                noted.lock().unwrap().push(format!("{target} {auth}"));
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (url, seen)
}

/// A system behind an egress proxy: `HTTPS_PROXY` (with its credentials)
/// tunnels calls to an https system; a system `NO_PROXY` names, or one no
/// variable covers (PIM, over http, with only `HTTPS_PROXY` set), is
/// reached straight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_is_reached_through_the_proxy_the_environment_names() {
    let pki = Pki::new("proxy");
    let erp = sim_of(&["erp"], |_| {}).await;
    let rest = sim_of(&["pim", "crm", "oms"], |_| {}).await;
    let front = pki
        .front(erp.url.trim_start_matches("http://"), false)
        .await;
    let (proxy, seen) = connect_proxy().await;
    let file = support::process::config_file(
        "proxy",
        &format!(
            "[systems.erp]\nurl = \"{front}\"\ntls = {{ ca_file = \"{}\" }}\n",
            pki.file("ca.pem").display()
        ),
    );
    let with_login = format!("http://moat:s3cret@{}", proxy.trim_start_matches("http://"));
    let front_address = front.trim_start_matches("https://").to_string();

    // NO_PROXY empty: whatever this machine's environment says.
    let covered = [("HTTPS_PROXY", with_login.as_str()), ("NO_PROXY", "")];
    price_read_with(&file, &rest.url, 1, &covered).await;
    let tunnels = seen.lock().unwrap().clone();
    assert!(!tunnels.is_empty());
    // Basic bW9hdDpzM2NyZXQ= is moat:s3cret.
    for tunnel in &tunnels {
        assert_eq!(
            *tunnel,
            format!("{front_address} Proxy-Authorization: Basic bW9hdDpzM2NyZXQ="),
            "only the https ERP goes through the proxy: {tunnels:?}"
        );
    }

    let before = seen.lock().unwrap().len();
    let exempt = [
        ("HTTPS_PROXY", with_login.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    price_read_with(&file, &rest.url, 2, &exempt).await;
    assert_eq!(seen.lock().unwrap().len(), before, "NO_PROXY goes straight");

    // `HTTP_PROXY` covers the http systems: the PIM is tunnelled too.
    let covered = [("HTTP_PROXY", proxy.as_str()), ("NO_PROXY", "")];
    price_read_with(&file, &rest.url, 3, &covered).await;
    let rest_address = rest.url.trim_start_matches("http://");
    let tunnels = seen.lock().unwrap()[before..].to_vec();
    assert!(
        tunnels.iter().any(|t| t.trim() == rest_address),
        "{tunnels:?}"
    );
    assert!(
        tunnels.iter().all(|t| !t.starts_with(&front_address)),
        "{tunnels:?}"
    );
}

/// A price read, in full, from a gateway started with `proxies` in its
/// environment.
async fn price_read_with(
    file: &std::path::Path,
    upstream: &str,
    i: usize,
    proxies: &[(&str, &str)],
) {
    let mut env = vec![("MOAT_UPSTREAM_URL", upstream)];
    env.extend_from_slice(proxies);
    let moat = Running::start(file, &env);
    let r = moat.query(&price_of(i)).await;
    assert!(price_served(&r), "{r}");
}
