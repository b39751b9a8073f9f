//! Hostile input against the real binary: a corpus of queries an attacker
//! would send (hidden nesting, exponential fragments, alias floods, poison
//! cursors, broken bodies), slow and idle connections, and oversized
//! upstream requests. Every refusal carries a code, nothing reaches an
//! upstream it should not, no breaker opens, and the process stays up
//! within its memory.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::process::{Running, config_file};
use support::{Sim, eventually};

/// One hostile request: what it is, the body, and the codes it may get.
struct Case {
    name: String,
    body: Vec<u8>,
    codes: &'static [&'static str],
}

fn case(name: &str, body: Value, codes: &'static [&'static str]) -> Case {
    Case {
        name: name.into(),
        body: body.to_string().into_bytes(),
        codes,
    }
}

fn query(name: &str, text: String, codes: &'static [&'static str]) -> Case {
    case(name, json!({ "query": text }), codes)
}

const TOO_COMPLEX: &[&str] = &["QUERY_TOO_COMPLEX"];
const PARSE: &[&str] = &["GRAPHQL_PARSE_FAILED"];
const INPUT: &[&str] = &["BAD_USER_INPUT"];
const REQUEST: &[&str] = &["BAD_REQUEST"];

/// Fragments F1..Fn, each spreading the previous one twice.
fn doubling_fragments(n: usize, root: &str) -> String {
    let mut text = format!("{root}\nfragment F0 on Query {{ __typename }}\n");
    for i in 1..=n {
        text.push_str(&format!(
            "fragment F{i} on Query {{ ...F{} ...F{} }}\n",
            i - 1,
            i - 1
        ));
    }
    text
}

fn corpus() -> Vec<Case> {
    let deep = |open: &str, inner: &str, close: &str, n: usize| {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    let selection = deep("{a", "", "}", 2_000);
    let list = deep("[", "1", "]", 5_000);
    let object = deep("{a: ", "1", "}", 3_000);
    let line = json!({
        "sku": "SKU-000001", "quantity": 1,
        "displayedUnitPrice": { "amount": "1.00", "currencyCode": "EUR" },
    });
    let cart = json!({
        "currencyCode": "EUR", "lines": [line],
        "displayedTotal": { "amount": "1.00", "currencyCode": "EUR" },
    });
    let verify = "mutation($c: VerifyCheckoutInput!) { verifyCheckout(input: $c) { ok } }";
    let mut cases = vec![
        // The crash: nesting the old pre-check could not see.
        query(
            "selection behind a \\r comment",
            format!("# c\r{selection}"),
            TOO_COMPLEX,
        ),
        query(
            "selection behind a \\r\\n comment",
            format!("# c\r\n{selection}"),
            TOO_COMPLEX,
        ),
        query(
            "list behind a block string",
            format!(r#"{{ product(sku: """ " """, x: {list}) {{ id }} }}"#),
            TOO_COMPLEX,
        ),
        query(
            "list behind a block string with escaped quotes",
            format!(r#"{{ product(sku: """ \""" " """, x: {list}) {{ id }} }}"#),
            TOO_COMPLEX,
        ),
        query(
            "deep list value",
            format!("{{ product(sku: {list}) {{ id }} }}"),
            TOO_COMPLEX,
        ),
        query(
            "deep object value",
            format!("{{ product(sku: {object}) {{ id }} }}"),
            TOO_COMPLEX,
        ),
        query(
            "deep variable default",
            format!("query($v: [Int] = {list}) {{ categories {{ id }} }}"),
            TOO_COMPLEX,
        ),
        query(
            "deep directive argument",
            format!("{{ categories @include(if: {list}) {{ id }} }}"),
            TOO_COMPLEX,
        ),
        query(
            "BOM then deep selection",
            format!("\u{feff}{selection}"),
            TOO_COMPLEX,
        ),
        // Exponential work.
        query(
            "fragment chain n=22",
            doubling_fragments(22, "{ ...F22 }"),
            TOO_COMPLEX,
        ),
        query(
            "fragment chain n=30",
            doubling_fragments(30, "{ ...F30 }"),
            TOO_COMPLEX,
        ),
        query(
            "unused fragment chain",
            doubling_fragments(30, "{ __typename }"),
            TOO_COMPLEX,
        ),
        query(
            "mutually spreading fragments",
            "{ ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A ...A }".into(),
            &["QUERY_TOO_COMPLEX", "GRAPHQL_VALIDATION_FAILED"],
        ),
        query(
            "__typename is not free",
            format!(
                "{{ products(first: 100) {{ nodes {{ {} }} }} }}",
                "__typename ".repeat(60)
            ),
            TOO_COMPLEX,
        ),
        query(
            "alias flood",
            format!(
                "{{ {} }}",
                (0..1_000)
                    .map(|i| format!("a{i}: __typename "))
                    .collect::<String>()
            ),
            TOO_COMPLEX,
        ),
        query(
            "token flood",
            format!("{{ {} }}", "a ".repeat(60_000)),
            TOO_COMPLEX,
        ),
        query(
            "deep introspection",
            format!(
                "{{ __schema {{ types {{ fields {{ type {{ {} }} }} }} }} }}",
                deep("ofType { ", "kind", " }", 30)
            ),
            TOO_COMPLEX,
        ),
        query(
            "directive flood",
            format!("{{ __typename {} }}", "@skip(if: false) ".repeat(1_000)),
            TOO_COMPLEX,
        ),
        case(
            "200 verifyCheckout aliases",
            json!({
                "query": format!(
                    "mutation($c: VerifyCheckoutInput!) {{ {} }}",
                    (0..200).map(|i| format!("v{i}: verifyCheckout(input: $c) {{ ok }} ")).collect::<String>()
                ),
                "variables": { "c": cart },
            }),
            TOO_COMPLEX,
        ),
        // Lexically broken.
        query(
            "unterminated string",
            "{ product(sku: \"x) { id } }".into(),
            PARSE,
        ),
        query(
            "unterminated block string",
            "{ product(sku: \"\"\"x) { id } }".into(),
            PARSE,
        ),
        query("a stray character", "{ product % }".into(), PARSE),
        query(
            "a 100 KB name",
            format!("{{ {} }}", "n".repeat(100_000)),
            &["GRAPHQL_VALIDATION_FAILED"],
        ),
        // Values a resolver must refuse.
        query(
            "a 70 KB cursor",
            format!(
                r#"{{ products(after: "{}") {{ nodes {{ id }} }} }}"#,
                "A".repeat(70_000)
            ),
            INPUT,
        ),
        query(
            "a 1 MB sku",
            format!(
                r#"{{ product(sku: "{}") {{ id }} }}"#,
                "s".repeat(1_000_000)
            ),
            INPUT,
        ),
        case(
            "quantity 2147483648",
            json!({ "query": verify, "variables": { "c": {
                "currencyCode": "EUR",
                "lines": [{ "sku": "SKU-000001", "quantity": 2_147_483_648u64,
                    "displayedUnitPrice": { "amount": "1.00", "currencyCode": "EUR" } }],
                "displayedTotal": { "amount": "1.00", "currencyCode": "EUR" },
            } } }),
            INPUT,
        ),
        case(
            "an amount as a JSON number",
            json!({ "query": verify, "variables": { "c": {
                "currencyCode": "EUR",
                "lines": [{ "sku": "SKU-000001", "quantity": 1,
                    "displayedUnitPrice": { "amount": 1.5, "currencyCode": "EUR" } }],
                "displayedTotal": { "amount": "1.50", "currencyCode": "EUR" },
            } } }),
            INPUT,
        ),
        case(
            "deep JSON variables",
            json!({ "query": "query($v: String) { categories { id } }" , "variables": { "v": serde_json::from_str::<Value>(&deep("[", "1", "]", 120)).unwrap() } }),
            &["BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"],
        ),
        // Bodies that are not one GraphQL request.
        case("a batch", json!([{ "query": "{ __typename }" }]), REQUEST),
        case(
            "operationName a number",
            json!({ "query": "{ __typename }", "operationName": 1 }),
            REQUEST,
        ),
        case(
            "extensions a string",
            json!({ "query": "{ __typename }", "extensions": "x" }),
            REQUEST,
        ),
        case(
            "variables a list",
            json!({ "query": "{ __typename }", "variables": [1] }),
            REQUEST,
        ),
    ];
    cases.push(Case {
        name: "JSON nested past serde's limit".into(),
        body: format!(
            r#"{{"query": "{{ __typename }}", "variables": {{"v": {}}}}}"#,
            deep("[", "1", "]", 10_000)
        )
        .into_bytes(),
        codes: REQUEST,
    });
    cases.push(Case {
        name: "not UTF-8".into(),
        body: b"{\"query\": \"{ \xff\xfe }\"}".to_vec(),
        codes: REQUEST,
    });
    cases.push(Case {
        name: "NUL bytes".into(),
        body: b"{\"query\": \"{ __typename \\u0000 }\"}".to_vec(),
        codes: PARSE,
    });
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_corpus_is_refused_with_codes_and_the_process_stays_up() {
    let sim = Sim::start().await;
    let file = config_file("hostile", "[upstream]\ntimeout = \"2s\"\n");
    let mut moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    let http = reqwest::Client::new();
    let cases = corpus();
    let rss_before = moat.memory_bytes("VmRSS");
    let mut slowest_chain = Duration::ZERO;
    // Each case three times, the rounds concurrently, as an attacker would.
    for round in 0..3 {
        let sends = cases.iter().map(|c| {
            let http = http.clone();
            let url = format!("{}/graphql", moat.public);
            async move {
                let started = Instant::now();
                let r = http
                    .post(url)
                    .header("content-type", "application/json")
                    .header("accept", "application/graphql-response+json")
                    .body(c.body.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{}: no answer: {e}", c.name));
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                (c, status, body, started.elapsed())
            }
        });
        for (c, status, body, took) in futures_util::future::join_all(sends).await {
            let codes = support::error_codes(&body);
            assert!(
                !codes.is_empty() && codes.iter().all(|code| c.codes.contains(&code.as_str())),
                "round {round}, {}: got {status} {codes:?}, want {:?}: {}",
                c.name,
                c.codes,
                &body.to_string()[..body.to_string().len().min(300)]
            );
            let errors = body["errors"].as_array().map_or(0, Vec::len);
            assert_eq!(codes.len(), errors, "{}: every error has a code", c.name);
            assert!(
                (400..500).contains(&status) || status == 200,
                "{}: {status}",
                c.name
            );
            if c.name.starts_with("fragment chain") {
                slowest_chain = slowest_chain.max(took);
            }
        }
        let health = http
            .get(format!("{}/healthz", moat.public))
            .send()
            .await
            .expect("healthz answers");
        assert_eq!(health.status().as_u16(), 200);
        assert!(moat.alive(), "moat is still running after round {round}");
    }
    // Exponential work would take minutes here (n=22 took 3.5 s before);
    // this bounds the class of the work, not its speed.
    assert!(slowest_chain < Duration::from_secs(5), "{slowest_chain:?}");
    let (rss, peak) = (moat.memory_bytes("VmRSS"), moat.memory_bytes("VmHWM"));
    eprintln!(
        "hostile corpus: {} cases x 3 rounds; RSS {:.1} MB before, {:.1} MB after, {:.1} MB at the peak; slowest fragment chain {:?}",
        cases.len(),
        rss_before as f64 / 1e6,
        rss as f64 / 1e6,
        peak as f64 / 1e6,
        slowest_chain
    );
    assert!(peak < 300 * 1024 * 1024, "peak RSS {peak} bytes");
    assert_eq!(sim.requests("erp.quote").await, 0, "no checkout was spent");
    let served = moat
        .query("{ product(sku: \"SKU-000002\") { name } }")
        .await;
    assert!(served["data"]["product"]["name"].is_string(), "{served}");
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://")).expect("connect")
}

async fn metric(admin: &str, needle: &str) -> f64 {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_the_cap_holds() {
    let sim = Sim::start().await;
    let file = config_file(
        "connections",
        "[server.connections]\nmax = 32\nheader_read_timeout = \"1s\"\nidle_timeout = \"2s\"\n",
    );
    let moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);

    // Headers one byte at a time: closed at the header timeout, long
    // before the request could be complete.
    let mut slow = connect(&moat.public);
    let head = b"GET /healthz HTTP/1.1\r\nHost: moat\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_off = false;
    for byte in head {
        if slow.write_all(&[*byte]).is_err() || closed_within(&mut slow, Duration::from_millis(200))
        {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "a client trickling its headers is cut off");

    // An idle keep-alive connection is closed after the idle timeout.
    let mut idle = connect(&moat.public);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: moat\r\n\r\n")
        .unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(15)),
        "idle keep-alive closed"
    );

    // A flood of idle sockets past the cap: the idle ones give way, and a
    // real request is still served.
    let flood: Vec<TcpStream> = (0..80).map(|_| connect(&moat.public)).collect();
    let served = reqwest::get(format!("{}/healthz", moat.public))
        .await
        .expect("a real request during the flood");
    assert_eq!(served.status().as_u16(), 200);
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(&moat.admin, "moat_connections_open{listener=\"public\"}").await <= 32.0
        })
        .await,
        "no more connections open than the cap"
    );
    let evicted = metric(
        &moat.admin,
        "moat_connections_closed_total{listener=\"public\",reason=\"evicted\"}",
    )
    .await;
    assert!(
        evicted >= 48.0,
        "idle connections beyond the cap gave way: {evicted}"
    );
    let header_timeouts = metric(
        &moat.admin,
        "moat_connections_closed_total{listener=\"public\",reason=\"header_timeout\"}",
    )
    .await;
    assert!(header_timeouts >= 1.0);
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_a_new_one_is_refused() {
    let sim = Sim::start().await;
    sim.fault("pim", json!({ "latency_ms": 1500 })).await;
    let file = config_file("busy", "[server.connections]\nmax = 4\n");
    let moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    let busy: Vec<_> = (1..=4)
        .map(|i| {
            let url = format!("{}/graphql", moat.public);
            tokio::spawn(async move {
                // A client of its own: one connection each.
                reqwest::Client::new()
                    .post(url)
                    .json(&json!({ "query": format!("{{ product(id: \"prod-00000{i}\") {{ name }} }}") }))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Each of the four has reached the product cache and waits on the
    // PIM (their misses may share one call).
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(
                &moat.admin,
                r#"moat_cache_requests_total{entity="product",tier="l1",result="miss"}"#,
            )
            .await
                >= 4.0
                && sim.requests("pim.products").await >= 1
        })
        .await
    );
    let mut refused = connect(&moat.public);
    refused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: moat\r\n\r\n")
        .ok();
    assert!(
        closed_within(&mut refused, Duration::from_secs(1)),
        "refused at the cap"
    );
    for request in busy {
        assert_eq!(request.await.unwrap().unwrap(), 200, "busy requests finish");
    }
    assert!(
        metric(
            &moat.admin,
            "moat_connections_refused_total{listener=\"public\"}"
        )
        .await
            >= 1.0
    );
    let after = reqwest::get(format!("{}/healthz", moat.public))
        .await
        .unwrap();
    assert_eq!(
        after.status().as_u16(),
        200,
        "served again once there is room"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_moat_cannot_send_never_open_a_breaker() {
    let sim = Sim::start().await;
    // Wide batches of long ids make PIM URLs no server takes.
    let file = config_file(
        "unsendable",
        "[server]\nmax_query_aliases = 1000\nmax_query_complexity = 100000\nmax_query_tokens = 100000\n[upstream]\nmax_batch = 500\n",
    );
    let moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    let http = reqwest::Client::new();
    let graphql = |q: String| {
        let http = http.clone();
        let url = format!("{}/graphql", moat.public);
        async move {
            http.post(url)
                .json(&json!({ "query": q }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    for _ in 0..10 {
        let r = graphql(format!(
            r#"{{ products(after: "{}") {{ nodes {{ id }} }} }}"#,
            "A".repeat(70_000)
        ))
        .await;
        assert_eq!(support::error_codes(&r), ["BAD_USER_INPUT"], "{r}");
        let wide: String = (0..500)
            .map(|i| format!(r#"p{i}: product(id: "{i:0>120}") {{ id }} "#))
            .collect();
        let r = graphql(format!("{{ {wide} }}")).await;
        let codes = support::error_codes(&r);
        assert!(
            !codes.is_empty() && codes.iter().all(|c| c == "BAD_USER_INPUT"),
            "{codes:?}"
        );
    }
    let r = graphql(r#"{ product(id: "prod-000003") { name } }"#.into()).await;
    assert!(
        r["data"]["product"]["name"].is_string(),
        "an uncached read works: {r}"
    );
    let status = moat.admin_get("/admin/status").await;
    assert_eq!(
        status["upstreams"]["pim"]["breaker"]["state"], "closed",
        "{status}"
    );
    assert_eq!(
        metric(&moat.admin, "moat_breaker_state{upstream=\"pim\"}").await,
        0.0
    );
    // Each is counted as a call not sent, and none as a failed one.
    let outcome = |o: &str| {
        format!(
            "moat_upstream_requests_total{{upstream=\"pim\",endpoint=\"products\",outcome=\"{o}\"}}"
        )
    };
    assert!(metric(&moat.admin, &outcome("not_sent")).await >= 10.0);
    assert_eq!(metric(&moat.admin, &outcome("error")).await, 0.0);
}

/// A POST body spelled like a stored GET's query string is decoded as
/// what it is (not JSON: refused), never served the GET's answer: the two
/// methods' stored answers are separate key spaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_spelled_like_a_query_string_is_not_served_a_stored_answer() {
    let sim = Sim::start().await;
    let moat = support::Moat::start(support::config(&sim.url)).await;
    let query = "query=%7B%20product(sku%3A%20%22SKU-000005%22)%20%7B%20name%20%7D%20%7D";
    let get = || {
        moat.http
            .get(format!("{}/graphql?{query}", moat.url))
            .send()
    };
    for _ in 0..3 {
        let r: Value = get().await.unwrap().json().await.unwrap();
        assert!(r["data"]["product"]["name"].is_string(), "{r}");
    }
    for body in [query.to_string(), format!("GET {query}")] {
        let r = moat
            .http
            .post(format!("{}/graphql", moat.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.get("data").is_none(), "{body}: {answer}");
    }
    moat.stop().await;
}

/// An HTTP/2 client that shuts every stream's window and asks for large
/// answers on all its streams cannot make the process hold them: past
/// `max_unread` bytes per connection an answer is a 503, memory stays
/// near its idle figure, a client on another connection is served, and a
/// connection whose client reads nothing is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_reads_nothing_cannot_make_moat_hold_its_answers() {
    const CONNECTIONS: usize = 8;
    const STREAMS: usize = 100;
    let sim = Sim::start_with(moat::sim::SimConfig {
        products: 1000,
        ..Default::default()
    })
    .await;
    let file = config_file(
        "unread",
        "[server]\nmax_query_aliases = 100\nmax_query_complexity = 1000000\nmax_query_tokens = 100000\nmax_query_depth = 20\n[server.connections]\nunread_timeout = \"2s\"\nmax_unread = \"256KiB\"\n",
    );
    let moat = Running::start(&file, &[("MOAT_UPSTREAM_URL", &sim.url)]);
    // Four pages of 100 products with everything: an answer of over a
    // hundred kilobytes, read once so every later ask is served from L1.
    let pages: String = (0..4)
        .map(|i| {
            format!(
                r#"p{i}: products(first: 100) {{ nodes {{ id sku name description attributes {{ name value }} categories {{ id name }} }} }} "#
            )
        })
        .collect();
    let body = json!({ "query": format!("{{ {pages} }}") }).to_string();
    let http = reqwest::Client::new();
    let warm = http
        .post(format!("{}/graphql", moat.public))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(warm.len() > 100_000, "{}", String::from_utf8_lossy(&warm));
    let idle = moat.memory_bytes("VmRSS");

    let address = moat.public.trim_start_matches("http://").to_string();
    let (mut held, mut connections) = (Vec::new(), Vec::new());
    let (mut answered, mut refused, mut asked) = (0, 0, 0);
    for _ in 0..CONNECTIONS {
        let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
        let (client, connection) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, bytes::Bytes>(tcp)
            .await
            .unwrap();
        connections.push(tokio::spawn(connection));
        let mut client = client.ready().await.unwrap();
        for _ in 0..STREAMS {
            let request = axum::http::Request::post(format!("http://{address}/graphql"))
                .header("content-type", "application/json")
                .body(())
                .unwrap();
            let (response, mut send) = client.send_request(request, false).unwrap();
            // Each its own text, so no two share a stored answer's bytes.
            let unique = json!({ "query": format!("{{ n{asked}: __typename {pages} }}") });
            asked += 1;
            send.send_data(bytes::Bytes::from(unique.to_string()), true)
                .unwrap();
            // Heads are not flow-controlled: each arrives, its body cannot.
            let response = response.await.unwrap();
            match response.status().as_u16() {
                200 => answered += 1,
                503 => refused += 1,
                other => panic!("status {other}"),
            }
            held.push(response);
            client = client.ready().await.unwrap();
        }
    }
    let stalled = moat.memory_bytes("VmRSS");
    assert!(
        stalled < idle + 64 * 1024 * 1024,
        "RSS {} MiB while stalled, {} MiB idle",
        stalled >> 20,
        idle >> 20
    );

    assert!(answered >= CONNECTIONS, "each connection is answered");
    assert!(refused > 0, "answers past the bound are refused");
    // Another client is served meanwhile.
    let r: Value = http
        .post(format!("{}/graphql", moat.public))
        .json(&json!({ "query": "{ product(sku: \"SKU-000001\") { name } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["data"]["product"]["name"].is_string(), "{r}");

    // Connections whose client reads nothing are closed.
    assert!(
        eventually(Duration::from_secs(30), || async {
            metric(
                &moat.admin,
                "moat_connections_closed_total{listener=\"public\",reason=\"unread\"}",
            )
            .await
                >= CONNECTIONS as f64
        })
        .await,
        "stalled connections closed"
    );
    assert!(
        metric(
            &moat.admin,
            "moat_unread_answers_refused_total{listener=\"public\"}"
        )
        .await
            >= refused as f64
    );
    drop(held);
    for connection in connections {
        connection.abort();
    }
}
