//! A throwaway `redis-server` per test: a free port on 127.0.0.1, no
//! persistence, killed (and reaped) on drop. Tests may stop and restart it
//! to simulate an outage. Never the standard port, never a shared server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Arguments past the port, bind, persistence and dir.
    extra: Vec<String>,
    /// A Sentinel: started from a config file of its own.
    sentinel: Option<String>,
    /// Why the last start failed.
    failure: String,
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "moat-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("redis temp dir");
    dir
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(temp_dir("redis"), &[], |_| Vec::new())
    }

    /// A server with more arguments (given its port), in `dir`; `cluster`:
    /// its port + 10000 (the cluster bus) must be free too.
    fn start_with(
        dir: PathBuf,
        cluster_bus: &[()],
        extra: impl Fn(u16) -> Vec<String>,
    ) -> RedisServer {
        let mut failure = String::new();
        for _ in 0..50 {
            let port = super::free_port();
            if !cluster_bus.is_empty()
                && (port > 55_000
                    || std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_err())
            {
                continue;
            }
            let mut server = RedisServer {
                port,
                dir: dir.clone(),
                child: None,
                extra: extra(port),
                sentinel: None,
                failure: String::new(),
            };
            if server.spawn() {
                return server;
            }
            failure = std::mem::take(&mut server.failure);
        }
        panic!("could not start redis-server (is it on PATH?); the last try: {failure}");
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server, as an outage would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// Runs one command through redis-cli-free raw RESP, for assertions.
    pub fn command(&self, args: &[&str]) -> String {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
        }
        stream.write_all(request.as_bytes()).expect("write redis");
        let mut buf = [0u8; 65536];
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn spawn(&mut self) -> bool {
        // A failed try before this one, dropped, took the shared directory
        // with it.
        let _ = std::fs::create_dir_all(&self.dir);
        let mut command = Command::new("redis-server");
        if let Some(conf) = &self.sentinel {
            let file = self.dir.join(format!("sentinel-{}.conf", self.port));
            std::fs::write(&file, conf.replace("PORT", &self.port.to_string()))
                .expect("sentinel conf");
            command.arg(&file).arg("--sentinel");
        } else {
            command
                .args([
                    "--port",
                    &self.port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    &self.dir.to_string_lossy(),
                ])
                .args(&self.extra);
        }
        // Its log, kept for the panic message should it never start.
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let out = std::fs::File::create(&log).map(Stdio::from);
        let child = command
            .stdout(out.unwrap_or_else(|_| Stdio::null()))
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                self.failure = format!("cannot run redis-server: {e}");
                return false;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                // Exited early: port taken, say.
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                let last = said.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                self.failure = format!("redis-server exited ({status}): {last}");
                return false;
            }
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        self.failure = "redis-server did not answer PING within 5 s".into();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The reply to `INFO <section>` as `field:value` lines, or a simple reply.
fn info(server: &RedisServer, args: &[&str]) -> String {
    server.command(args)
}

/// A Redis Cluster of six `redis-server --cluster-enabled yes` on free
/// ports: three primaries, each with one replica, made with `redis-cli
/// --cluster create`. Failover is quick (1 s node timeout).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = temp_dir("cluster");
        let nodes: Vec<RedisServer> = (0..6)
            .map(|i| {
                let dir = dir.join(format!("node-{i}"));
                std::fs::create_dir_all(&dir).expect("node dir");
                RedisServer::start_with(dir, &[()], |_| {
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        // A replica promotes itself however far behind.
                        "--cluster-replica-validity-factor",
                        "0",
                    ]
                    .map(String::from)
                    .to_vec()
                })
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(n.addr());
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli on PATH");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// `redis://127.0.0.1:<port>` of every node, for `[redis] nodes`.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://{}", n.addr()))
            .collect()
    }

    /// Waits until every running node says the cluster is ok and every
    /// slot has a running primary.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the cluster did not become ok");
    }

    /// Whether every running node says the cluster is ok, with three
    /// running primaries.
    pub fn is_ok(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.running())
            .all(|n| info(n, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            && self.primaries().len() == 3
    }

    /// Indexes of the running nodes that are primaries.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].running() && info(&self.nodes[i], &["ROLE"]).contains("master")
            })
            .collect()
    }

    /// The running node that serves `key`'s slot as primary.
    pub fn primary_of(&self, key: &str) -> usize {
        let asked = &self.nodes[self.primaries()[0]];
        let slot: u16 = info(asked, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .trim_start_matches(':')
            .parse()
            .expect("slot");
        let nodes = info(asked, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                match (a.parse::<u16>(), b.trim().parse::<u16>()) {
                    (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                    _ => false,
                }
            });
            let port: Option<u16> = fields[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok());
            if owns && let Some(i) = self.nodes.iter().position(|n| Some(n.port) == port) {
                return i;
            }
        }
        panic!("no running primary serves slot {slot}");
    }

    /// Kills node `i`, as a crash would.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// The sum of one `INFO commandstats` counter (`cmdstat_scan`) over
    /// every running node.
    pub fn calls(&self, command: &str) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.running())
            .map(|n| calls(n, command))
            .sum()
    }
}

/// `calls=` of `cmdstat_<command>` in `INFO commandstats` (0 when never
/// called).
pub fn calls(server: &RedisServer, command: &str) -> u64 {
    let stats = info(server, &["INFO", "commandstats"]);
    stats
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A Sentinel-watched primary: a primary, one replica and three Sentinels
/// (quorum 2), each on a free port. Failover is quick (1 s down-after).
pub struct RedisSentinels {
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
}

pub const SENTINEL_MASTER: &str = "moat-primary";

impl RedisSentinels {
    pub fn start() -> RedisSentinels {
        let primary = RedisServer::start();
        let replica = RedisServer::start_with(temp_dir("replica"), &[], |_| {
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port.to_string(),
            ]
        });
        let conf = format!(
            "port PORT\nbind 127.0.0.1\n\
             sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 2\n\
             sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
             sentinel failover-timeout {SENTINEL_MASTER} 5000\n\
             sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
            primary.port
        );
        let sentinels: Vec<RedisServer> = (0..3)
            .map(|_| {
                let dir = temp_dir("sentinel");
                for _ in 0..50 {
                    let mut s = RedisServer {
                        port: super::free_port(),
                        dir: dir.clone(),
                        child: None,
                        extra: Vec::new(),
                        sentinel: Some(conf.clone()),
                        failure: String::new(),
                    };
                    if s.spawn() {
                        return s;
                    }
                }
                panic!("could not start a Sentinel");
            })
            .collect();
        let setup = RedisSentinels {
            primary,
            replica,
            sentinels,
        };
        // Every Sentinel knows the replica and the other Sentinels.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = setup.sentinels.iter().all(|s| {
                let replicas = info(s, &["SENTINEL", "REPLICAS", SENTINEL_MASTER]);
                let quorum = info(s, &["SENTINEL", "CKQUORUM", SENTINEL_MASTER]);
                replicas.contains(&setup.replica.port.to_string())
                    && quorum.starts_with("+OK")
                    && quorum.contains("3 usable")
            });
            let synced =
                info(&setup.replica, &["INFO", "replication"]).contains("master_link_status:up");
            if ready && synced {
                return setup;
            }
            assert!(Instant::now() < deadline, "the Sentinels did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://127.0.0.1:<port>` of every Sentinel, for `[redis] nodes`.
    pub fn nodes(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://{}", s.addr()))
            .collect()
    }

    /// The port the Sentinels name as primary now.
    pub fn primary_port(&self) -> Option<u16> {
        let reply = info(
            &self.sentinels[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER],
        );
        reply
            .lines()
            .filter(|l| !l.starts_with(['*', '$']))
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
    }
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
