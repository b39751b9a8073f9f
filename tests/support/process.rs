//! The real `moat` binary as a child process: started with a config file
//! and environment, its log lines collected, signalled, measured, and
//! killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Running {
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// `http://host:port` of the public listener.
    pub public: String,
    /// `http://host:port` of the admin listener.
    pub admin: String,
}

impl Running {
    /// `moat serve --config FILE` with `env` on top of a clean environment
    /// (no Redis, admin on a free port, the test admin token). Returns once
    /// the banner names both listeners.
    pub fn start(config: &std::path::Path, env: &[(&str, &str)]) -> Running {
        // Set for integration tests; benches and examples that include this
        // harness never start the binary.
        let Some(binary) = option_env!("CARGO_BIN_EXE_moat") else {
            panic!("only integration tests start the moat binary");
        };
        let mut command = Command::new(binary);
        command
            .args(["serve", "--config"])
            .arg(config)
            .env("MOAT_LISTEN", "127.0.0.1:0")
            .env("MOAT_ADMIN_LISTEN", "127.0.0.1:0")
            .env("MOAT_ADMIN_TOKEN", super::ADMIN_TOKEN)
            .env_remove("MOAT_UPSTREAM_URL")
            .env_remove("MOAT_REDIS_URL")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start moat");
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
            // "moat: GraphQL on http://A/graphql …", then "moat: metrics
            // on http://B/metrics; …".
            let address = |prefix: &str| {
                let lines = log.lock().unwrap();
                let line = lines.iter().find(|l| l.starts_with(prefix))?;
                let rest = line.split("http://").nth(1)?;
                Some(rest.split('/').next()?.to_string())
            };
            if let (Some(public), Some(admin)) =
                (address("moat: GraphQL on"), address("moat: metrics on"))
            {
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

    /// POSTs a GraphQL query to the public listener; the JSON answer.
    pub async fn query(&self, query: &str) -> serde_json::Value {
        reqwest::Client::new()
            .post(format!("{}/graphql", self.public))
            .json(&serde_json::json!({ "query": query }))
            .send()
            .await
            .expect("graphql request")
            .json()
            .await
            .expect("graphql json")
    }

    /// GETs an admin route with the test token; the JSON answer.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.admin))
            .bearer_auth(super::ADMIN_TOKEN)
            .send()
            .await
            .expect("admin request")
            .json()
            .await
            .expect("admin json")
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{name}");
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Still running (not exited, not crashed)?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory now (`VmRSS`) or at its peak so far (`VmHWM`),
    /// from `/proc` (Linux).
    pub fn memory_bytes(&self, which: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("process status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(which)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{which} in {status}"))
    }

    /// Waits for the process to exit by itself, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file in a fresh temporary directory.
pub fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    // Numbered, so tests running at once that write the same name never
    // read each other's file.
    static WRITTEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("moat-{name}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("moat.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Runs the `moat` binary with only `env` (and PATH) set, until it exits
/// (a minute at most: `serve` that should have refused to start is
/// killed).
pub async fn moat(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let Some(binary) = option_env!("CARGO_BIN_EXE_moat") else {
        panic!("only integration tests run the moat binary");
    };
    let run = tokio::process::Command::new(binary)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("moat {args:?} did not exit"))
        .expect("moat runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
