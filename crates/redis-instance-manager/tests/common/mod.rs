//! Real processes for the integration tests: the instance manager binary, its topology file,
//! TLS material and Sentinels, on top of `redis-test-support` (redis-server, network namespaces,
//! waits, HTTP). Everything is killed/removed on Drop, also when a test panics.
#![allow(dead_code, unused_imports)] // each test binary uses its own subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use redis_test_support::netns::NetnsPair;
pub use redis_test_support::process::{Proc, ScratchDir, command, free_port, require, unique};
pub use redis_test_support::redis::{RedisOpts, RedisServer, ServerTls};
pub use redis_test_support::wait::wait_until;
use redis_test_support::{http, redis, resp};
use serde_json::Value;

/// A scratch directory for one test (`im-test-<name>-...`), removed at the end.
pub fn scratch(name: &str) -> ScratchDir {
    ScratchDir::new(&format!("im-test-{name}"))
}

/// The desired topology written as a downward-API annotations file.
pub struct TopologyFile {
    pub path: PathBuf,
}

impl TopologyFile {
    pub fn new(dir: &ScratchDir) -> TopologyFile {
        TopologyFile {
            path: dir.path("annotations"),
        }
    }

    /// Write `json` as the `redis.io/topology` annotation, Go-%q quoted, atomically.
    pub fn write(&self, json: &Value) {
        let raw = json.to_string();
        let quoted = format!("\"{}\"", raw.replace('\\', "\\\\").replace('"', "\\\""));
        let body = format!(
            "kubernetes.io/config.seen=\"2026-01-01T00:00:00Z\"\nredis.io/topology={quoted}\n"
        );
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

pub fn replica_topology(epoch: u64, host: &str, port: u16, password_file: Option<&Path>) -> Value {
    let mut up = serde_json::json!({"kind": "external", "host": host, "port": port, "tls": false});
    if let Some(p) = password_file {
        up["passwordFile"] = p.display().to_string().into();
    }
    serde_json::json!({
        "version": 1, "cluster": "dr", "epoch": epoch, "role": "replica",
        "upstream": up, "replicaPriority": 0, "replicaAnnounced": false
    })
}

pub fn primary_topology(epoch: u64) -> Value {
    serde_json::json!({
        "version": 1, "cluster": "dr", "epoch": epoch, "role": "primary",
        "replicaPriority": 100, "replicaAnnounced": true, "minReplicasToWrite": 0
    })
}

/// The instance manager binary.
pub struct Im {
    child: Option<Proc>,
    pub ns: Option<String>,
    pub http: String,
    pub log: PathBuf,
    args: Vec<String>,
}

impl Im {
    /// Start with `--redis-addr host:port --topology-file ...` plus `extra`.
    pub fn start(
        ns: Option<&str>,
        redis: &RedisServer,
        topology: &TopologyFile,
        dir: &ScratchDir,
        extra: &[&str],
    ) -> Im {
        if ns.is_some() {
            // Its HTTP server listens inside the namespace: curl is how the test gets in.
            require("curl");
        }
        let http = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "--cluster".into(),
            "dr".into(),
            "--namespace".into(),
            "test".into(),
            "--pod".into(),
            "dr-0".into(),
            "--redis-addr".into(),
            format!("{}:{}", redis.opts.host, redis.port()),
            "--topology-file".into(),
            topology.path.display().to_string(),
            "--http-addr".into(),
            http.clone(),
        ];
        // 1 s unless the test asks for another interval.
        if !extra.contains(&"--probe-interval") {
            args.extend(["--probe-interval".into(), "1s".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut im = Im {
            child: None,
            ns: ns.map(Into::into),
            http,
            log: dir
                .path(&unique("im-").replace('x', "-"))
                .with_extension("log"),
            args,
        };
        im.spawn();
        im
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut c = command(
            self.ns.as_deref(),
            env!("CARGO_BIN_EXE_redis-instance-manager"),
        );
        c.args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        let child = c.spawn().expect("spawn instance manager");
        self.child = Some(Proc::adopt("instance manager", child));
        let ok = wait_until(Duration::from_secs(10), || {
            self.try_get("/healthz").is_some()
        });
        assert!(
            ok.is_some(),
            "instance manager did not start: {}",
            self.logs()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().pid()
    }

    pub fn stop(&mut self) {
        self.child = None;
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// (status code, body), None if the server did not answer.
    pub fn try_get(&self, path: &str) -> Option<(u16, String)> {
        http::get_in(self.ns.as_deref(), &self.http, path).ok()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} failed; log:\n{}", self.logs()))
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&self.get("/status").1).unwrap()
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").1
    }

    /// The value of the first series of `name` in /metrics.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn cmdline(&self) -> String {
        std::fs::read(format!("/proc/{}/cmdline", self.pid()))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default()
    }

    /// Wait for a condition on /status: the /status that met it.
    pub fn status_when(&self, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(timeout, || {
            last = self.status();
            f(&last)
        });
        assert!(ok.is_some(), "timed out; last /status: {last}");
        last
    }

    /// Wait for a condition on /status, with a clear failure message.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Duration {
        let mut last = Value::Null;
        let took = wait_until(timeout, || {
            last = self.status();
            f(&last)
        });
        took.unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for: {what}\nlast /status: {last}\nlog:\n{}",
                self.logs()
            )
        })
    }
}

/// Write `value` to `path` with mode 0600.
pub fn write_secret(path: &Path, value: &str) {
    std::fs::write(path, value).unwrap();
}

/// Generate a CA and a certificate for `ips` (SANs), for both server and client use.
pub fn make_certs(dir: &ScratchDir, ips: &[&str]) -> ServerTls {
    let sans: Vec<String> = ips.iter().map(|i| format!("IP:{i}")).collect();
    make_certs_for(dir, &sans)
}

/// Generate a CA (`ca.crt`) and a certificate (`tls.crt`, `tls.key`, CN `redis`) for `sans`
/// (`IP:...`, `DNS:...`), for both server and client use.
pub fn make_certs_for(dir: &ScratchDir, sans: &[String]) -> ServerTls {
    require("openssl");
    redis_test_support::tls::make_certs(&dir.0, sans).unwrap_or_else(|e| panic!("{e}"))
}

/// A new key and certificate (CN `cn`, `sans`) signed by the CA in `dir`, written as
/// `<stem>.key` and `<stem>.crt`.
pub fn issue_cert(dir: &ScratchDir, cn: &str, sans: &[String], stem: &str) {
    redis_test_support::tls::issue_cert(&dir.0, cn, sans, stem).unwrap_or_else(|e| panic!("{e}"))
}

/// The subject of the certificate a TLS server on `host:port` presents to a new connection
/// (`openssl s_client`), e.g. `CN = redis`.
pub fn served_subject(host: &str, port: u16, client: &ServerTls) -> String {
    require("openssl");
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("{host}:{port}")])
        .arg("-cert")
        .arg(&client.cert)
        .arg("-key")
        .arg(&client.key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A redis-sentinel process monitoring one master, in its own temporary directory (Sentinel
/// rewrites its config file, so it must be writable).
pub struct Sentinel {
    _child: Proc,
    pub port: u16,
    pub dir: ScratchDir,
    password: Option<String>,
}

pub struct SentinelOpts<'a> {
    pub master_name: &'a str,
    pub master_host: &'a str,
    pub master_port: u16,
    pub quorum: u32,
    /// `requirepass` of the Sentinel, `sentinel sentinel-pass` (to its peers) and
    /// `sentinel auth-pass` (to the monitored Redis): the cluster password for all three.
    pub password: Option<&'a str>,
    pub down_after_ms: u32,
    pub failover_timeout_ms: u32,
}

impl Sentinel {
    pub fn start(o: &SentinelOpts) -> Sentinel {
        require("redis-sentinel");
        require("redis-cli");
        let port = free_port();
        let dir = scratch("sentinel");
        let name = o.master_name;
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\nlogfile {}\n\
             sentinel monitor {name} {} {} {}\n\
             sentinel down-after-milliseconds {name} {}\n\
             sentinel failover-timeout {name} {}\n\
             sentinel parallel-syncs {name} 1\n",
            dir.0.display(),
            dir.path("sentinel.log").display(),
            o.master_host,
            o.master_port,
            o.quorum,
            o.down_after_ms,
            o.failover_timeout_ms,
        );
        if let Some(pw) = o.password {
            conf.push_str(&format!(
                "requirepass \"{pw}\"\nsentinel sentinel-pass \"{pw}\"\nsentinel auth-pass {name} \"{pw}\"\n"
            ));
        }
        let path = dir.path("sentinel.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("redis-sentinel")
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn redis-sentinel");
        let s = Sentinel {
            _child: Proc::adopt("redis-sentinel", child),
            port,
            dir,
            password: o.password.map(Into::into),
        };
        let ok = wait_until(Duration::from_secs(10), || {
            s.try_cli(&["PING"]).is_some_and(|r| r.trim() == "PONG")
        });
        assert!(
            ok.is_some(),
            "redis-sentinel on port {port} did not start; log:\n{}",
            s.log()
        );
        s
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn try_cli(&self, args: &[&str]) -> Option<String> {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        redis::cli_output(c, self.password.as_deref(), args)
    }

    /// `SENTINEL MASTER <name>` as a map (empty if the Sentinel does not answer).
    pub fn master(&self, name: &str) -> HashMap<String, String> {
        let out = self
            .try_cli(&["SENTINEL", "MASTER", name])
            .unwrap_or_default();
        redis::fields(&out).into_iter().collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("sentinel.log")).unwrap_or_default()
    }
}

/// Three Sentinels (quorum 2) monitoring `host:port`, with the cluster password, 1 s
/// down-after and 3 s failover timeout; returns once every one knows the two others and
/// `replicas` replicas.
pub fn sentinels(
    master_name: &str,
    host: &str,
    port: u16,
    password: Option<&str>,
    replicas: usize,
) -> Vec<Sentinel> {
    let opts = SentinelOpts {
        master_name,
        master_host: host,
        master_port: port,
        quorum: 2,
        password,
        down_after_ms: 1000,
        failover_timeout_ms: 3000,
    };
    let all: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(&opts)).collect();
    let ok = wait_until(Duration::from_secs(15), || {
        all.iter().all(|s| {
            let m = s.master(master_name);
            m.get("num-other-sentinels").map(String::as_str) == Some("2")
                && m.get("num-slaves").and_then(|n| n.parse::<usize>().ok()) == Some(replicas)
        })
    });
    assert!(
        ok.is_some(),
        "the Sentinels did not discover each other and {replicas} replica(s): {:?}\nlog:\n{}",
        all.iter()
            .map(|s| s.master(master_name))
            .collect::<Vec<_>>(),
        all[0].log()
    );
    all
}

/// Topology of a sentinel-mode pod: `base` plus the `sentinel` section.
pub fn with_sentinel(
    mut base: Value,
    master_name: &str,
    sentinels: &[Sentinel],
    password_file: Option<&Path>,
) -> Value {
    let mut s = serde_json::json!({
        "masterName": master_name,
        "addresses": sentinels.iter().map(Sentinel::addr).collect::<Vec<_>>(),
        "announceHost": "127.0.0.1",
    });
    if let Some(p) = password_file {
        s["passwordFile"] = p.display().to_string().into();
    }
    base["sentinel"] = s;
    base
}

/// One `AUTH` + `SET` on a fresh connection: `Ok(reply line)` (`+OK`, `-NOREPLICAS ...`,
/// `-READONLY ...`, or the AUTH error) or `Err` when there is no connection.
pub fn try_set(port: u16, password: Option<&str>, key: &str) -> Result<String, String> {
    let line = |r: resp::Reply| match r {
        resp::Reply::Simple(s) => format!("+{s}"),
        resp::Reply::Error(e) => format!("-{e}"),
        other => other.text(),
    };
    let mut c = resp::Conn::connect(&format!("127.0.0.1:{port}"), None, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    if let Some(pw) = password {
        let auth = line(c.cmd(&["AUTH", pw]).map_err(|e| e.to_string())?);
        if auth != "+OK" {
            return Ok(auth);
        }
    }
    Ok(line(
        c.cmd(&["SET", key, "written"]).map_err(|e| e.to_string())?,
    ))
}
