//! The `moat` binary as a user runs it: `moat serve` with the embedded
//! simulator, environment overrides, SIGHUP reloads (a bad file is refused
//! and the old settings stay), and a clean exit on SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{ADMIN_TOKEN, eventually};

struct Running {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    public: String,
    admin: String,
}

impl Running {
    fn start(config: &std::path::Path, listen: &str) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args(["serve", "--config"])
            .arg(config)
            .env("MOAT_LISTEN", listen)
            .env("MOAT_ADMIN_LISTEN", "127.0.0.1:0")
            .env("MOAT_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("MOAT_UPSTREAM__LIMITS__PIM__RPS", "77")
            .env_remove("MOAT_UPSTREAM_URL")
            .env_remove("MOAT_REDIS_URL")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start moat");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let banner = log
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with("moat: GraphQL on"))
                .cloned();
            if let Some(line) = banner {
                // "moat: GraphQL on http://A/graphql, admin on http://B"
                let public = line
                    .split("http://")
                    .nth(1)
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string();
                let admin = line.rsplit("http://").next().unwrap().trim().to_string();
                return Running {
                    child,
                    log,
                    public: format!("http://{public}"),
                    admin: format!("http://{admin}"),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moat exited with {status}: {:?}", log.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "moat did not start: {:?}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{name}");
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const BASE: &str = "[upstream.embedded]\nproducts = 300\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moat_serve_runs_reloads_on_sighup_and_stops_on_sigterm() {
    support::install_tls_provider();
    let dir = std::env::temp_dir().join(format!("moat-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("moat.toml");
    std::fs::write(&file, BASE).unwrap();
    let port = free_port();
    let mut moat = Running::start(&file, &format!("127.0.0.1:{port}"));
    assert_eq!(
        moat.public,
        format!("http://127.0.0.1:{port}"),
        "MOAT_LISTEN is honoured"
    );

    let http = reqwest::Client::new();
    let query = json!({ "query": "{ product(sku: \"SKU-000001\") { name price { price { amount currencyCode } } availability { status } } }" });
    let r: Value = http
        .post(format!("{}/graphql", moat.public))
        .json(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        r["data"]["product"]["price"]["price"]["amount"].is_string(),
        "{r}"
    );

    let rps = |upstream: &'static str| {
        let request = http
            .get(format!("{}/admin/limits", moat.admin))
            .bearer_auth(ADMIN_TOKEN);
        async move {
            let r: Value = request.send().await.unwrap().json().await.unwrap();
            r[upstream]["rps"].as_u64()
        }
    };
    let limits = || rps("erp");
    assert_eq!(limits().await, Some(200));
    assert_eq!(
        rps("pim").await,
        Some(77),
        "MOAT_SECTION__KEY overrides the file"
    );

    std::fs::write(&file, format!("{BASE}[upstream.limits.erp]\nrps = 33\n")).unwrap();
    moat.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || async {
            limits().await == Some(33)
        })
        .await
    );

    std::fs::write(
        &file,
        format!("{BASE}[upstream.limits.erp]\nrps = \"fast\"\n"),
    )
    .unwrap();
    moat.signal("HUP");
    assert!(
        eventually(Duration::from_secs(10), || async {
            moat.logged("reload refused")
        })
        .await,
        "the bad file is refused"
    );
    assert!(
        moat.logged("upstream.limits.erp.rps"),
        "the refusal names the key"
    );
    assert_eq!(limits().await, Some(33), "the old settings stay");
    assert!(moat.logged("limits.set"), "the change was audited");

    moat.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = moat.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "moat did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "clean exit: {status}");
}
