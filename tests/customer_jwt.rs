//! Customer tokens as JWTs (`[customers] tokens = "jwt"`), end to end with
//! the simulator playing the identity provider (`customer_tokens` = JWT):
//! bad tokens are refused without a CRM call, a good one is priced in its
//! customer's segment for one CRM call, the JWKS is fetched once and
//! refreshed (rarely) for unknown keys, and each of RS256, ES256 and EdDSA
//! verifies. Over real TCP.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moat::config::{Config, JwtAlgorithm, TokenKind};
use moat::sim::{CustomerTokens, JWT_AUDIENCE, JWT_ISSUER, JwtAlg, SimConfig};
use serde_json::{Value, json};
use support::shop::shown;
use support::{Moat, Sim, config, customer_in, error_codes};

const VIEWER: &str = "{ viewer { id segment } }";

async fn sim_with(alg: JwtAlg) -> Sim {
    Sim::start_with(SimConfig {
        products: 200,
        customer_tokens: CustomerTokens::Jwt(alg),
        ..SimConfig::default()
    })
    .await
}

/// Moat verifying the simulator's tokens against its JWKS URL.
fn jwt_config(sim: &Sim) -> Config {
    let mut c = config(&sim.url);
    c.customers.tokens = TokenKind::Jwt;
    c.customers.jwks_url = Some(format!("{}/.well-known/jwks.json", sim.url));
    c.customers.issuer = Some(JWT_ISSUER.into());
    c.customers.audience = Some(JWT_AUDIENCE.into());
    c
}

/// `POST /_sim/jwt`: a token signed by the simulator's current key.
async fn mint(sim: &Sim, body: Value) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{}/_sim/jwt", sim.url))
        .json(&body)
        .send()
        .await
        .expect("mint")
        .json()
        .await
        .expect("mint json");
    r["token"].as_str().expect("a token").to_string()
}

/// `POST /_sim/jwks/rotate`: the new key's id.
async fn rotate(sim: &Sim) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{}/_sim/jwks/rotate", sim.url))
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("rotate json");
    r["kid"].as_str().expect("kid").to_string()
}

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

/// `token` with its claims replaced by `claims`, its signature kept.
fn with_claims(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{claims}.{}", parts[0], parts[2])
}

/// The status and error codes of a `viewer` query with `token`.
async fn refused_with(moat: &Moat, token: &str) -> (u16, Vec<String>) {
    let (status, _, body) = moat
        .query_as(Some(&format!("Bearer {token}")), VIEWER, json!({}))
        .await;
    (status, error_codes(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_without_the_crm_and_a_good_one_is_priced_in_its_segment() {
    let sim = sim_with(JwtAlg::Es256).await;
    let moat = Moat::start(jwt_config(&sim)).await;
    let (id, token, _) = customer_in(&sim, "vip").await;
    assert_eq!(header_of(&token)["alg"], "ES256");
    let claims = |token: &str| -> Value {
        let part = token.split('.').nth(1).expect("claims");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
    };

    let mut other = claims(&token);
    other["sub"] = json!("cust-002");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(&token).to_string())
    );
    let bad = [
        ("forged", with_claims(&token, &other)),
        (
            "expired",
            mint(&sim, json!({ "sub": id, "expires_in": -3600 })).await,
        ),
        (
            "no exp",
            mint(&sim, json!({ "sub": id, "claims": { "exp": null } })).await,
        ),
        (
            "not yet valid",
            mint(&sim, json!({ "sub": id, "not_before_in": 3600 })).await,
        ),
        (
            "wrong audience",
            mint(
                &sim,
                json!({ "sub": id, "claims": { "aud": "another-app" } }),
            )
            .await,
        ),
        (
            "wrong audiences",
            mint(&sim, json!({ "sub": id, "claims": { "aud": ["a", "b"] } })).await,
        ),
        (
            "wrong issuer",
            mint(
                &sim,
                json!({ "sub": id, "claims": { "iss": "https://evil.example" } }),
            )
            .await,
        ),
        ("alg none", none),
        (
            "unknown kid",
            mint(&sim, json!({ "sub": id, "kid": "nobody-published-this" })).await,
        ),
        ("not a JWT", "ct_0123456789abcdef01234567".to_string()),
        ("oversized", format!("{token}{}", "A".repeat(9000))),
    ];
    for (what, bad) in &bad {
        assert_eq!(
            refused_with(&moat, bad).await,
            (401, vec!["UNAUTHENTICATED".to_string()]),
            "{what}"
        );
    }
    assert_eq!(sim.requests("crm.customers").await, 0, "no CRM call");
    for (reason, at_least) in [
        ("signature", 1.0),
        ("expired", 2.0),
        ("not_yet_valid", 1.0),
        ("audience", 2.0),
        ("issuer", 1.0),
        ("algorithm", 1.0),
        ("unknown_key", 1.0),
        ("malformed", 1.0),
        ("oversized", 1.0),
    ] {
        let counted = moat
            .metric(&format!(
                "moat_customer_tokens_refused_total{{reason=\"{reason}\"}}"
            ))
            .await;
        assert!(counted >= at_least, "{reason}: {counted}");
    }

    // The good token: the customer, priced in their segment.
    let sku = "SKU-000003";
    let r = moat.query_with_token(&token, VIEWER, json!({})).await;
    assert_eq!(
        r["data"]["viewer"],
        json!({ "id": id, "segment": "vip" }),
        "{r}"
    );
    let vip = sim
        .get_json(&format!(
            "/erp/v1/prices?skus={sku}&segment=vip&currency=EUR"
        ))
        .await;
    let priced = shown(&moat, Some(&token), sku).await;
    assert_eq!(
        support::cents(&priced.amount),
        vip["items"][0]["amount"].as_i64().expect("amount"),
        "the vip price"
    );
    let anonymous = shown(&moat, None, sku).await;
    assert_ne!(anonymous.amount, priced.amount, "not the default price");
    assert_eq!(sim.requests("crm.customers").await, 1);

    // Many requests, and other tokens of the same customer: still one call.
    for _ in 0..20 {
        let again = mint(&sim, json!({ "sub": id })).await;
        let r = moat.query_with_token(&again, VIEWER, json!({})).await;
        assert_eq!(r["data"]["viewer"]["segment"], "vip", "{r}");
    }
    assert_eq!(
        sim.requests("crm.customers").await,
        1,
        "one call per customer"
    );

    // A subject the CRM does not know is refused (after its one call).
    let stranger = mint(&sim, json!({ "sub": "cust-999" })).await;
    assert_eq!(
        refused_with(&moat, &stranger).await,
        (401, vec!["UNAUTHENTICATED".to_string()])
    );
    assert_eq!(sim.requests("crm.customers").await, 2);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_forged_tokens_make_no_crm_call_and_few_jwks_fetches() {
    let sim = sim_with(JwtAlg::EdDsa).await;
    let moat = Moat::start(jwt_config(&sim)).await;
    let (id, token, _) = customer_in(&sim, "wholesale").await;
    assert_eq!(header_of(&token)["alg"], "EdDSA");
    let parts: Vec<String> = token.split('.').map(str::to_string).collect();

    let mut refused = 0;
    for round in 0..50 {
        let flood = (0..20).map(|i| {
            let n = round * 20 + i;
            // Half with a signature flipped; half naming a key nobody has.
            let forged = if n % 2 == 0 {
                let mut signature = URL_SAFE_NO_PAD.decode(&parts[2]).expect("sig");
                let at = n % signature.len();
                signature[at] ^= 0x5a;
                format!(
                    "{}.{}.{}",
                    parts[0],
                    parts[1],
                    URL_SAFE_NO_PAD.encode(signature)
                )
            } else {
                let header = json!({ "alg": "EdDSA", "kid": format!("made-up-{n}") });
                format!(
                    "{}.{}.{}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    parts[1],
                    parts[2]
                )
            };
            let moat = &moat;
            async move { refused_with(moat, &forged).await }
        });
        for answer in futures_util::future::join_all(flood).await {
            assert_eq!(answer, (401, vec!["UNAUTHENTICATED".to_string()]));
            refused += 1;
        }
    }
    assert_eq!(refused, 1000);
    assert_eq!(sim.requests("crm.customers").await, 0, "no CRM call");
    // The first load, then one refresh for an unknown key; the rest wait
    // for `jwks_min_interval` (30 s), which this test does not reach.
    let fetches = sim.requests("crm.jwks").await;
    assert!((1..=2).contains(&fetches), "{fetches} JWKS fetches");

    // The real customer was never locked out.
    let r = moat.query_with_token(&token, VIEWER, json!({})).await;
    assert_eq!(
        r["data"]["viewer"],
        json!({ "id": id, "segment": "wholesale" })
    );
    assert_eq!(sim.requests("crm.customers").await, 1);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_verify_and_a_rotated_key_is_fetched_once() {
    let sim = sim_with(JwtAlg::Rs256).await;
    let moat = Moat::start(jwt_config(&sim)).await;
    let (id, token, _) = customer_in(&sim, "default").await;
    assert_eq!(header_of(&token)["alg"], "RS256");
    let r = moat.query_with_token(&token, VIEWER, json!({})).await;
    assert_eq!(
        r["data"]["viewer"],
        json!({ "id": id, "segment": "default" }),
        "{r}"
    );
    assert_eq!(
        sim.requests("crm.jwks").await,
        1,
        "fetched when first needed"
    );

    let kid = rotate(&sim).await;
    let (other_id, rotated, _) = customer_in(&sim, "vip").await;
    assert_eq!(header_of(&rotated)["kid"], kid.as_str());
    let r = moat.query_with_token(&rotated, VIEWER, json!({})).await;
    assert_eq!(r["data"]["viewer"]["id"], json!(other_id), "{r}");
    assert_eq!(
        sim.requests("crm.jwks").await,
        2,
        "one refresh for the new key"
    );
    // Tokens signed before the rotation still verify (the JWKS keeps the
    // previous key), without another fetch.
    let r = moat.query_with_token(&token, VIEWER, json!({})).await;
    assert_eq!(r["data"]["viewer"]["id"], json!(id), "{r}");
    assert_eq!(sim.requests("crm.jwks").await, 2);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_file_and_algorithms_held_to_the_list() {
    let sim = sim_with(JwtAlg::EdDsa).await;
    let jwks = sim.get_json("/.well-known/jwks.json").await;
    let dir = std::env::temp_dir().join(format!("moat-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("jwks.json");
    std::fs::write(&file, jwks.to_string()).expect("jwks file");
    let mut c = jwt_config(&sim);
    c.customers.jwks_url = None;
    c.customers.jwks_file = Some(file.clone());
    let moat = Moat::start(c.clone()).await;
    let (id, token, _) = customer_in(&sim, "vip").await;
    let r = moat.query_with_token(&token, VIEWER, json!({})).await;
    assert_eq!(r["data"]["viewer"]["id"], json!(id), "{r}");
    assert_eq!(
        sim.requests("crm.jwks").await,
        1,
        "only the test's own read"
    );

    // A reload that names a file that is not there keeps what runs.
    let gateway = moat.gateway.as_ref().expect("running");
    let mut missing = c.clone();
    missing.customers.jwks_file = Some(dir.join("gone.json"));
    gateway.reload(missing);
    assert_eq!(gateway.state.config().customers.jwks_file, Some(file));
    let r = moat.query_with_token(&token, VIEWER, json!({})).await;
    assert_eq!(r["data"]["viewer"]["id"], json!(id), "{r}");

    // EdDSA no longer accepted: the same token is refused.
    let mut strict = c.clone();
    strict.customers.algorithms = vec![JwtAlgorithm::ES256, JwtAlgorithm::RS256];
    gateway.reload(strict);
    assert_eq!(
        refused_with(&moat, &token).await,
        (401, vec!["UNAUTHENTICATED".to_string()])
    );
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_keys_unreachable_a_token_is_unresolved_not_refused() {
    let sim = sim_with(JwtAlg::Es256).await;
    let mut c = jwt_config(&sim);
    c.customers.jwks_url = Some(format!(
        "http://127.0.0.1:{}/.well-known/jwks.json",
        support::free_port()
    ));
    let moat = Moat::start(c).await;
    let (_, token, _) = customer_in(&sim, "vip").await;
    let (status, _, body) = moat
        .query_as(Some(&format!("Bearer {token}")), VIEWER, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["viewer"], Value::Null);
    assert_eq!(error_codes(&body), ["UPSTREAM_UNAVAILABLE"]);
    assert_eq!(sim.requests("crm.customers").await, 0);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_jwks() {
    let sim = sim_with(JwtAlg::Es256).await;
    let secrets = support::secrets();
    let status_of = |lines: &[moat::doctor::Line]| {
        let line = lines
            .iter()
            .find(|l| l.check == "customers.tokens")
            .expect("a customers.tokens line");
        (line.status, line.detail.clone())
    };
    let lines = moat::doctor::run(&jwt_config(&sim), &secrets).await;
    let (status, detail) = status_of(&lines);
    assert_eq!(status, moat::doctor::Status::Ok, "{detail}");
    assert!(detail.contains("1 key"), "{detail}");

    let mut unreachable = jwt_config(&sim);
    unreachable.customers.jwks_url = Some(format!(
        "http://127.0.0.1:{}/.well-known/jwks.json",
        support::free_port()
    ));
    let lines = moat::doctor::run(&unreachable, &secrets).await;
    assert_eq!(status_of(&lines).0, moat::doctor::Status::Fail);

    // No keys in the answer: a FAIL too.
    let mut empty = jwt_config(&sim);
    empty.customers.jwks_url = Some(format!("{}/_sim/stats", sim.url));
    let lines = moat::doctor::run(&empty, &secrets).await;
    assert_eq!(status_of(&lines).0, moat::doctor::Status::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_change_drops_their_jwt_sign_in() {
    use support::events::{now, rfc3339, send};
    let sim = sim_with(JwtAlg::Es256).await;
    let moat = Moat::start(jwt_config(&sim)).await;
    let (id, token, _) = customer_in(&sim, "wholesale").await;
    moat.query_with_token(&token, VIEWER, json!({})).await;
    assert_eq!(sim.requests("crm.customers").await, 1);
    let changed = json!({ "id": "c-1", "type": "customer.updated", "occurredAt": rfc3339(now()),
                          "entity": { "kind": "customer", "id": id }, "version": 99 });
    let (_, r) = send(&moat, "crm", &changed).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    let r = moat.query_with_token(&token, VIEWER, json!({})).await;
    assert_eq!(r["data"]["viewer"]["id"], json!(id), "{r}");
    assert_eq!(sim.requests("crm.customers").await, 2, "refetched once");
    moat.query_with_token(&token, VIEWER, json!({})).await;
    assert_eq!(sim.requests("crm.customers").await, 2);
    moat.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_key_stops_verifying_once_the_keys_held_are_old() {
    let sim = sim_with(JwtAlg::Es256).await;
    let mut c = jwt_config(&sim);
    c.customers.jwks_max_age = std::time::Duration::from_secs(1);
    let moat = Moat::start(c).await;
    let (id, old, _) = customer_in(&sim, "vip").await;
    let r = moat.query_with_token(&old, VIEWER, json!({})).await;
    assert_eq!(r["data"]["viewer"]["id"], json!(id), "{r}");
    // Two rotations: the JWKS serves the last two keys, not the first.
    rotate(&sim).await;
    rotate(&sim).await;
    let withdrawn = support::eventually(std::time::Duration::from_secs(10), || async {
        refused_with(&moat, &old).await == (401, vec!["UNAUTHENTICATED".to_string()])
    })
    .await;
    assert!(withdrawn, "a token of the withdrawn key is refused");
    let fetches = sim.requests("crm.jwks").await;
    let (_, current, _) = customer_in(&sim, "vip").await;
    let r = moat.query_with_token(&current, VIEWER, json!({})).await;
    assert_eq!(r["data"]["viewer"]["id"], json!(id), "{r}");
    assert_eq!(sim.requests("crm.jwks").await, fetches, "already held");
    moat.stop().await;
}

/// `--jwt-alg` only means something for JWTs: without `--customer-tokens
/// jwt` the simulator refuses it rather than ignore it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_refuses_a_jwt_algorithm_without_jwt_tokens() {
    let (code, out) = support::process::moat(&["sim", "--jwt-alg", "RS256"], &[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--customer-tokens jwt"), "{out}");
}
