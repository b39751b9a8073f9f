//! A real `varnishd` with `deploy/varnish/moat.vcl`, its backend pointed at
//! a test gateway, on a free loopback port with a work directory of its
//! own (`-n`), run as the test's user (`-j none`). Stopped and started
//! again on the same port; killed when dropped. `varnishstat` reads its
//! counters.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Varnish {
    pub port: u16,
    dir: PathBuf,
    vcl: PathBuf,
    child: Option<Child>,
}

/// Whether varnishd is installed; with `MOAT_CI=1` its absence fails the
/// test instead (CI installs it, `.ci/run`).
pub fn available() -> bool {
    let found = Command::new("varnishd")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && std::env::var("MOAT_CI").as_deref() == Ok("1") {
        panic!("varnishd is not installed (apt-get install varnish varnish-modules)");
    }
    found
}

impl Varnish {
    /// Starts Varnish in front of `backend_port`, with the shipped VCL
    /// changed only in its backend's `.host` and `.port` lines.
    pub async fn start(backend_port: u16) -> Varnish {
        Varnish::start_on(backend_port, super::free_port()).await
    }

    /// The same, listening on `port`.
    pub async fn start_on(backend_port: u16, port: u16) -> Varnish {
        let vcl_text = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/varnish/moat.vcl"),
        )
        .expect("deploy/varnish/moat.vcl");
        let pointed: Vec<String> = vcl_text
            .lines()
            .map(|line| match line.trim_start() {
                l if l.starts_with(".host = ") => "    .host = \"127.0.0.1\";".to_string(),
                l if l.starts_with(".port = ") => format!("    .port = \"{backend_port}\";"),
                _ => line.to_string(),
            })
            .collect();
        let dir = std::env::temp_dir().join(format!(
            "moat-varnish-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("varnish dir");
        let vcl = dir.join("moat.vcl");
        std::fs::write(&vcl, pointed.join("\n")).expect("write vcl");
        let mut varnish = Varnish {
            port,
            dir,
            vcl,
            child: None,
        };
        varnish.run().await;
        varnish
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let child = Command::new("varnishd")
            .args(["-F", "-j", "none", "-s", "malloc,32m"])
            .arg("-a")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("-f")
            .arg(&self.vcl)
            .arg("-n")
            .arg(self.dir.join("work"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start varnishd");
        self.child = Some(child);
        let port = self.port;
        let up = super::eventually(Duration::from_secs(30), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "varnishd did not start listening on {port}");
    }

    /// Stops it (the port refuses connections) until `start_again`. The
    /// manager is asked to stop (SIGTERM) so it stops its worker process
    /// too: killed outright, it would leave the worker serving.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let asked = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !asked {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    pub async fn start_again(&mut self) {
        self.run().await;
    }

    /// One `varnishstat` counter (`MAIN.cache_hit`), 0 if absent.
    pub fn counter(&self, name: &str) -> u64 {
        let out = Command::new("varnishstat")
            .arg("-n")
            .arg(self.dir.join("work"))
            .args(["-1", "-f", name])
            .output()
            .expect("varnishstat");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(name))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .next()
            .unwrap_or(0)
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
