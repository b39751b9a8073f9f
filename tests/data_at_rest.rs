//! Personal data at rest: after a signed-in product page, a `viewer` and
//! an `order` read, nothing in Redis (keys, values, set members, stream
//! entries) shows the customer's email, name or token, or the order's
//! lines; a rotation to a new data key keeps every record readable; with
//! no data key nothing personal is stored there; a key of the wrong
//! length stops the start.

mod support;

use std::time::Duration;

use moat::config::Secrets;
use serde_json::{Value, json};
use support::events::{now, rfc3339, send};
use support::process::{config_file, moat};
use support::redis::RedisServer;
use support::{Moat, Sim, config, customer_in, eventually, secrets};

/// Two data keys, as an operator would write them (hex, base64).
const KEY_A: &str = "5d1f0b6a3c2e4f8091a7b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2";
const KEY_B: &str = "q83vAs7D1eT2Q0b8m6Zk5Yh1c9W3x7Jp2LrNf4Ug6sE=";

const SIGNED_IN: &str = r#"query($sku: String!, $order: ID!) {
  product(sku: $sku) { name price { price { amount } } }
  viewer { id email name segment }
  order(id: $order) { id status lines { sku quantity } }
}"#;

fn with_redis(sim: &Sim, redis: &RedisServer) -> moat::config::Config {
    let mut c = config(&sim.url);
    c.redis.url = Some(redis.url());
    c.redis.timeout = Duration::from_millis(500);
    c
}

fn keyed(current: Option<&str>, previous: Option<&str>) -> Secrets {
    Secrets {
        data_key: current.map(str::to_string),
        data_key_previous: previous.map(str::to_string),
        ..secrets()
    }
}

/// Everything Redis holds: each key's name, then its contents whatever
/// its type, as bytes.
async fn everything(redis: &RedisServer) -> Vec<(String, Vec<u8>)> {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        let cmd = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).clone(),
            "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
            "hash" => redis::cmd("HGETALL").arg(&key).clone(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone(),
            "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
            _ => continue,
        };
        let value: redis::Value = cmd.query_async(&mut c).await.unwrap();
        let mut bytes = Vec::new();
        flatten(&value, &mut bytes);
        out.push((key, bytes));
    }
    out
}

fn flatten(value: &redis::Value, out: &mut Vec<u8>) {
    match value {
        redis::Value::BulkString(b) => {
            out.extend_from_slice(b);
            out.push(b'\n');
        }
        redis::Value::SimpleString(s) => out.extend_from_slice(s.as_bytes()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().for_each(|v| flatten(v, out))
        }
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        other => out.extend_from_slice(format!("{other:?}").as_bytes()),
    }
}

/// Where `needle` shows in Redis, if anywhere.
fn found_in(all: &[(String, Vec<u8>)], needle: &str) -> Option<String> {
    all.iter().find_map(|(key, bytes)| {
        let in_value = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        (key.contains(needle) || in_value).then(|| key.clone())
    })
}

/// A signed-in page with a customer, their first order, and a product
/// that is not on that order. Returns what must never be in Redis.
struct Shopper {
    token: String,
    order: String,
    sku: String,
}

async fn shopper(sim: &Sim) -> Shopper {
    let (_, token, orders) = customer_in(sim, "vip").await;
    Shopper {
        token,
        order: orders[0].clone(),
        sku: String::new(),
    }
}

/// Reads the signed-in page; returns the answer's personal strings: the
/// email, the name, the token and each order line's sku.
async fn read_page(moat: &Moat, shopper: &mut Shopper) -> (Value, Vec<String>) {
    let order_only = moat
        .query_with_token(
            &shopper.token,
            r#"query($id: ID!) { order(id: $id) { lines { sku } } }"#,
            json!({ "id": shopper.order }),
        )
        .await;
    let lines: Vec<String> = order_only["data"]["order"]["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("{order_only}"))
        .iter()
        .map(|l| l["sku"].as_str().unwrap().to_string())
        .collect();
    if shopper.sku.is_empty() {
        shopper.sku = (1..100)
            .map(|n| format!("SKU-{n:06}"))
            .find(|sku| !lines.contains(sku))
            .unwrap();
    }
    let r = moat
        .query_with_token(
            &shopper.token,
            SIGNED_IN,
            json!({ "sku": shopper.sku, "order": shopper.order }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let viewer = &r["data"]["viewer"];
    let mut personal = vec![
        viewer["email"].as_str().unwrap().to_string(),
        viewer["name"].as_str().unwrap().to_string(),
        shopper.token.clone(),
    ];
    personal.extend(lines);
    (r, personal)
}

fn assert_nothing_personal(all: &[(String, Vec<u8>)], personal: &[String]) {
    assert!(!all.is_empty(), "the product page reached Redis");
    for needle in personal {
        assert_eq!(found_in(all, needle), None, "{needle:?} is in Redis");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_records_are_sealed_and_survive_a_key_rotation() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let mut shopper = shopper(&sim).await;

    let a = Moat::start_with_secrets(with_redis(&sim, &redis), keyed(Some(KEY_A), None)).await;
    let (first, personal) = read_page(&a, &mut shopper).await;
    a.stop().await;

    let all = everything(&redis).await;
    assert_nothing_personal(&all, &personal);
    for plain in ["customer-tokens:cust", &format!(":{}", shopper.order)] {
        assert_eq!(found_in(&all, plain), None, "{plain:?} names a key");
    }
    let sealed = |entity: &str| {
        all.iter()
            .filter(|(k, _)| k.starts_with(&format!("moat:v1:{entity}:")))
            .count()
    };
    assert!(sealed("customer") >= 1 && sealed("order") >= 1, "{all:?}");

    // Another replica with the same key reads both from Redis.
    let upstream_calls = || async {
        (
            sim.requests("crm.customers").await,
            sim.requests("oms.orders").await,
        )
    };
    let calls = upstream_calls().await;
    let b = Moat::start_with_secrets(with_redis(&sim, &redis), keyed(Some(KEY_A), None)).await;
    let (again, _) = read_page(&b, &mut shopper).await;
    b.stop().await;
    assert_eq!(again["data"]["viewer"], first["data"]["viewer"]);
    assert_eq!(upstream_calls().await, calls, "read from Redis");

    // Rotated: the new key, the old one as previous. Records written under
    // the old key are found under its names and moved to the new ones.
    let c =
        Moat::start_with_secrets(with_redis(&sim, &redis), keyed(Some(KEY_B), Some(KEY_A))).await;
    let (rotated, _) = read_page(&c, &mut shopper).await;
    c.stop().await;
    assert_eq!(rotated["data"]["viewer"], first["data"]["viewer"]);
    assert_eq!(rotated["data"]["order"], first["data"]["order"]);
    assert_eq!(upstream_calls().await, calls, "read under the previous key");

    // The old key retired: what was read is under the new key now.
    let d = Moat::start_with_secrets(with_redis(&sim, &redis), keyed(Some(KEY_B), None)).await;
    let (moved, _) = read_page(&d, &mut shopper).await;
    d.stop().await;
    assert_eq!(moved["data"]["viewer"], first["data"]["viewer"]);
    assert_eq!(upstream_calls().await, calls, "rewritten under the new key");
    assert_nothing_personal(&everything(&redis).await, &personal);
}

/// With JWT customer tokens the sign-in is known by an HMAC of the
/// subject: Redis holds neither the token (nor its signature), nor the
/// customer's id, email or name, nor an unkeyed hash of the subject; and
/// another replica signs the customer in from Redis, without the CRM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_sign_in_leaves_no_token_or_subject_in_redis() {
    use moat::config::TokenKind;
    use moat::sim::{CustomerTokens, JWT_AUDIENCE, JWT_ISSUER, JwtAlg, SimConfig};
    use sha2::{Digest, Sha256};

    let sim = Sim::start_with(SimConfig {
        products: 500,
        customer_tokens: CustomerTokens::Jwt(JwtAlg::EdDsa),
        ..SimConfig::default()
    })
    .await;
    let redis = RedisServer::start();
    let mut c = with_redis(&sim, &redis);
    c.customers.tokens = TokenKind::Jwt;
    c.customers.jwks_url = Some(format!("{}/.well-known/jwks.json", sim.url));
    c.customers.issuer = Some(JWT_ISSUER.into());
    c.customers.audience = Some(JWT_AUDIENCE.into());
    let (id, _, _) = customer_in(&sim, "vip").await;
    let mut shopper = shopper(&sim).await;
    assert_eq!(shopper.token.split('.').count(), 3, "a JWT");

    let a = Moat::start_with_secrets(c.clone(), keyed(Some(KEY_A), None)).await;
    let (first, mut personal) = read_page(&a, &mut shopper).await;
    a.stop().await;
    let signature = shopper.token.rsplit('.').next().unwrap().to_string();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    personal.extend([
        signature,
        id.clone(),
        hex(&Sha256::digest(id.as_bytes())),
        hex(&Sha256::digest(shopper.token.as_bytes())),
    ]);
    let all = everything(&redis).await;
    assert_nothing_personal(&all, &personal);
    assert!(
        all.iter().any(|(k, _)| k.starts_with("moat:v1:customer:")),
        "{all:?}"
    );

    let calls = sim.requests("crm.customers").await;
    assert_eq!(calls, 1);
    let b = Moat::start_with_secrets(c, keyed(Some(KEY_A), None)).await;
    let (again, _) = read_page(&b, &mut shopper).await;
    b.stop().await;
    assert_eq!(again["data"]["viewer"], first["data"]["viewer"]);
    assert_eq!(
        sim.requests("crm.customers").await,
        calls,
        "read from Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_data_key_personal_records_stay_in_memory() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let mut shopper = shopper(&sim).await;
    let moat = Moat::start_with_secrets(with_redis(&sim, &redis), keyed(None, None)).await;
    let (_, personal) = read_page(&moat, &mut shopper).await;
    // Served again from memory.
    let calls = sim.requests("crm.customers").await;
    let (again, _) = read_page(&moat, &mut shopper).await;
    assert!(again["data"]["viewer"]["email"].is_string(), "{again}");
    assert_eq!(sim.requests("crm.customers").await, calls);
    moat.stop().await;

    let all = everything(&redis).await;
    assert_nothing_personal(&all, &personal);
    for prefix in ["moat:v1:customer", "moat:v1:order", "moat:v1:ids:order"] {
        let held: Vec<_> = all.iter().filter(|(k, _)| k.starts_with(prefix)).collect();
        assert!(held.is_empty(), "{prefix}: {held:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_key_of_the_wrong_length_stops_the_start() {
    let file = config_file("data-key", "[upstream]\nurl = \"http://127.0.0.1:9\"\n");
    let file = file.to_str().unwrap();
    let env = |key: &'static str, value: &'static str| {
        vec![
            ("MOAT_LISTEN", "127.0.0.1:0"),
            ("MOAT_ADMIN_LISTEN", "127.0.0.1:0"),
            (key, value),
        ]
    };
    for (var, value) in [
        ("MOAT_DATA_KEY", "c2hvcnQta2V5"),
        ("MOAT_DATA_KEY", "0123456789abcdef"),
        ("MOAT_DATA_KEY_PREVIOUS", "c2hvcnQta2V5"),
    ] {
        let mut env = env(var, value);
        if var == "MOAT_DATA_KEY_PREVIOUS" {
            env.push(("MOAT_DATA_KEY", KEY_A));
        }
        let (code, out) = moat(&["serve", "--config", file], &env).await;
        assert_eq!(code, 2, "{var}={value}: {out}");
        assert!(
            out.lines().any(|l| l.contains(var) && l.contains("32")),
            "{out}"
        );
        assert!(!out.contains(value), "the key is never shown: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_warns_without_a_data_key_and_fails_on_a_bad_one() {
    let sim = Sim::start().await;
    let file = config_file("data-key", &format!("[upstream]\nurl = \"{}\"\n", sim.url));
    let file = file.to_str().unwrap();
    let data_key_line = |out: &str| -> Value {
        let lines: Vec<Value> = serde_json::from_str(out).expect("doctor --json");
        lines
            .into_iter()
            .find(|l| l["check"] == "MOAT_DATA_KEY")
            .unwrap_or_else(|| panic!("{out}"))
    };
    let doctor = |env: Vec<(&'static str, &'static str)>| async move {
        moat(&["doctor", "--config", file, "--json"], &env).await.1
    };
    let line = data_key_line(&doctor(vec![]).await);
    assert_eq!(line["status"], "WARN", "{line}");
    assert!(
        line["fix"].as_str().unwrap().contains("MOAT_DATA_KEY="),
        "{line}"
    );
    let line = data_key_line(&doctor(vec![("MOAT_DATA_KEY", "c2hvcnQ=")]).await);
    assert_eq!(line["status"], "FAIL", "{line}");
    let line = data_key_line(&doctor(vec![("MOAT_DATA_KEY", KEY_B)]).await);
    assert_eq!(line["status"], "OK", "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_find_sealed_sign_ins_and_orders_from_another_replica() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let (id, token, orders) = customer_in(&sim, "wholesale").await;
    let a = Moat::start_with_secrets(with_redis(&sim, &redis), keyed(Some(KEY_A), None)).await;
    let b = Moat::start_with_secrets(with_redis(&sim, &redis), keyed(Some(KEY_A), None)).await;
    let order_query = "query($id: ID!) { viewer { id } order(id: $id) { status } }";
    let vars = json!({ "id": orders[0] });
    let r = b.query_with_token(&token, order_query, vars.clone()).await;
    assert_eq!(r["data"]["viewer"]["id"], json!(id), "{r}");

    // A reconciliation pass on A finds the order B holds, in the sealed id
    // sets (A's memory never held it).
    let (status, report) = a.admin_post("/admin/reconcile/orders", json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert!(report["checked"].as_u64() >= Some(1), "{report}");

    // A never saw the token: it finds the sign-in through the sealed
    // index, and B, which holds the token, refetches it.
    let crm = sim.requests("crm.customers").await;
    let changed = json!({ "id": "c-1", "type": "customer.updated", "occurredAt": rfc3339(now()),
                          "entity": { "kind": "customer", "id": id }, "version": 99 });
    let (_, r) = send(&a, "crm", &changed).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.query_with_token(&token, "{ viewer { id } }", json!({}))
                .await;
            sim.requests("crm.customers").await > crm
        })
        .await,
        "the change reached B's sign-in"
    );

    // A finds the order's cached keys in its sealed id set and refetches.
    let oms = sim.requests("oms.orders").await;
    let updated = json!({ "id": "o-1", "type": "order.updated", "occurredAt": rfc3339(now()),
                          "entity": { "kind": "order", "id": orders[0] }, "version": 99 });
    let (_, r) = send(&a, "oms", &updated).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert_eq!(sim.requests("oms.orders").await, oms + 1);
    a.stop().await;
    b.stop().await;
    // The broadcasts of both changes are sealed too: beside the version
    // ledger's keys, nothing names the order or the customer.
    let all = everything(&redis).await;
    let others: Vec<_> = all
        .into_iter()
        .filter(|(k, _)| !k.starts_with("moat:v1:version:"))
        .collect();
    assert!(others.iter().any(|(k, _)| k == "moat:v1:invalidations"));
    for plain in [&orders[0], &id, &token] {
        assert_eq!(found_in(&others, plain), None, "{plain:?} is in Redis");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rolling_rotation_old_and_new_replicas_hear_each_other() {
    let sim = Sim::start().await;
    let redis = RedisServer::start();
    let (id, token, _) = customer_in(&sim, "default").await;
    let old = Moat::start_with_secrets(with_redis(&sim, &redis), keyed(Some(KEY_A), None)).await;
    let new =
        Moat::start_with_secrets(with_redis(&sim, &redis), keyed(Some(KEY_B), Some(KEY_A))).await;
    let r = old
        .query_with_token(&token, "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(r["data"]["viewer"]["id"], json!(id), "{r}");

    // The new replica finds the sign-in the old one noted, and its
    // broadcast is one the old replica can open.
    let crm = sim.requests("crm.customers").await;
    let changed = json!({ "id": "c-2", "type": "customer.updated", "occurredAt": rfc3339(now()),
                          "entity": { "kind": "customer", "id": id }, "version": 99 });
    let (_, r) = send(&new, "crm", &changed).await;
    assert_eq!(r["outcome"], "applied", "{r}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            old.query_with_token(&token, "{ viewer { id } }", json!({}))
                .await;
            sim.requests("crm.customers").await > crm
        })
        .await,
        "the change reached the old replica's sign-in"
    );
    old.stop().await;
    new.stop().await;
}
