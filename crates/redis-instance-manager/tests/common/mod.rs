//! Real processes for the integration tests: redis-server, the instance manager binary, network
//! namespaces. Everything is killed/removed on Drop, also when a test panics.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A tool the tests need must be installed: otherwise the test fails with how to get it.
pub fn require(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{tool} is not installed: these tests run real Redis processes. Install it (`make deps`, or apt-get install redis-server redis-tools curl iproute2 openssl)."
    );
}

pub fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().next().unwrap().to_string())
        })
        .unwrap();
    assert_eq!(
        uid, "0",
        "this test creates network namespaces and veth pairs and must run as root (uid 0); run `cargo test` as root"
    );
    require("ip");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` every 100 ms until it returns true or `timeout` passes. Returns the time it took.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(&format!("im-test-{name}-")));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ns_command(ns: Option<&str>, program: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// TLS settings for a redis-server.
#[derive(Clone)]
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone)]
pub struct RedisOpts {
    pub ns: Option<String>,
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    pub tls: Option<ServerTls>,
    pub extra: Vec<String>,
}

impl Default for RedisOpts {
    fn default() -> Self {
        RedisOpts {
            ns: None,
            host: "127.0.0.1".into(),
            port: 0,
            password: None,
            tls: None,
            extra: vec![],
        }
    }
}

/// A redis-server in its own temporary directory (RDB kept across restarts).
pub struct Redis {
    child: Option<Child>,
    pub opts: RedisOpts,
    pub dir: TempDir,
}

impl Redis {
    pub fn start(mut opts: RedisOpts) -> Redis {
        require("redis-server");
        require("redis-cli");
        if opts.port == 0 {
            opts.port = free_port();
        }
        let mut r = Redis {
            child: None,
            opts,
            dir: TempDir::new("redis"),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let o = &self.opts;
        // The password goes into a config file (first argument), not the command line.
        let conf = self.dir.path("redis.conf");
        let mut body = String::new();
        if let Some(pw) = &o.password {
            body.push_str(&format!("requirepass \"{pw}\"\n"));
        }
        // Written once: a restart keeps what CONFIG REWRITE persisted, like a pod's config
        // file on an emptyDir survives a container restart.
        if !conf.exists() {
            std::fs::write(&conf, body).unwrap();
        }
        let mut c = ns_command(o.ns.as_deref(), "redis-server");
        c.arg(&conf);
        c.args(["--bind", &o.host, "--dir"]).arg(&self.dir.0);
        c.args([
            "--save",
            "3600 1",
            "--appendonly",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ]);
        // The namespaced servers listen on veth addresses of namespaces this test created.
        c.args(["--protected-mode", "no"]);
        c.args(["--logfile"]).arg(self.dir.path("redis.log"));
        if let Some(tls) = &o.tls {
            c.args(["--port", "0", "--tls-port", &o.port.to_string()]);
            c.arg("--tls-ca-cert-file").arg(&tls.ca);
            c.arg("--tls-cert-file").arg(&tls.cert);
            c.arg("--tls-key-file").arg(&tls.key);
            c.args(["--tls-replication", "yes"]);
        } else {
            c.args(["--port", &o.port.to_string()]);
        }
        c.args(&o.extra);
        self.child = Some(c.stdout(Stdio::null()).spawn().expect("spawn redis-server"));
        let ok = wait_until(Duration::from_secs(10), || {
            self.try_cli(&["PING"]).is_some_and(|r| r.trim() == "PONG")
        });
        assert!(
            ok.is_some(),
            "redis-server on port {} did not start; log:\n{}",
            self.opts.port,
            std::fs::read_to_string(self.dir.path("redis.log")).unwrap_or_default()
        );
    }

    pub fn port(&self) -> u16 {
        self.opts.port
    }

    /// Run redis-cli against this server; None if it failed (server down).
    pub fn try_cli(&self, args: &[&str]) -> Option<String> {
        let o = &self.opts;
        let mut c = ns_command(o.ns.as_deref(), "redis-cli");
        c.args(["-h", &o.host, "-p", &o.port.to_string()]);
        if let Some(tls) = &o.tls {
            c.arg("--tls").arg("--cacert").arg(&tls.ca);
            c.arg("--cert").arg(&tls.cert).arg("--key").arg(&tls.key);
        }
        if let Some(pw) = &o.password {
            // REDISCLI_AUTH keeps the password out of the test's process arguments too.
            c.env("REDISCLI_AUTH", pw);
        }
        let out = c.args(args).stderr(Stdio::null()).output().ok()?;
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && !s.starts_with("Could not connect") && !s.is_empty()).then_some(s)
    }

    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} on port {} failed", self.port()))
    }

    pub fn info(&self) -> HashMap<String, String> {
        self.cli(&["INFO"])
            .lines()
            .filter_map(|l| l.trim_end().split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn info_num(&self, key: &str) -> i64 {
        self.info()
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in INFO"))
            .parse()
            .unwrap()
    }

    /// SIGTERM (redis-server saves its RDB, including the replication id and offset) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("redis.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The desired topology written as a downward-API annotations file.
pub struct TopologyFile {
    pub path: PathBuf,
}

impl TopologyFile {
    pub fn new(dir: &TempDir) -> TopologyFile {
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
    child: Option<Child>,
    pub ns: Option<String>,
    pub http: String,
    pub log: PathBuf,
    args: Vec<String>,
}

impl Im {
    /// Start with `--redis-addr host:port --topology-file ...` plus `extra`.
    pub fn start(
        ns: Option<&str>,
        redis: &Redis,
        topology: &TopologyFile,
        dir: &TempDir,
        extra: &[&str],
    ) -> Im {
        require("curl");
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
            "--probe-interval".into(),
            "1s".into(),
        ];
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
        let mut c = ns_command(
            self.ns.as_deref(),
            env!("CARGO_BIN_EXE_redis-instance-manager"),
        );
        c.args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(c.spawn().expect("spawn instance manager"));
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
        self.child.as_ref().unwrap().id()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// (status code, body), None if the server did not answer.
    pub fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut c = ns_command(self.ns.as_deref(), "curl");
        c.args([
            "-s",
            "-m",
            "3",
            "-w",
            "\n%{http_code}",
            &format!("http://{}{path}", self.http),
        ]);
        let out = c.output().ok()?;
        if !out.status.success() {
            return None;
        }
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = s.rsplit_once('\n')?;
        Some((code.trim().parse().ok()?, body.to_string()))
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

impl Drop for Im {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two network namespaces joined by a veth pair: `a` has `10.251.<n>.1/30`, `b` has `.2`.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub veth_a: String,
    pub veth_b: String,
    pub ip_a: String,
    pub ip_b: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetnsPair {
    pub fn new(subnet: u8) -> NetnsPair {
        require_root();
        let id = unique("");
        let p = NetnsPair {
            a: format!("imt-a-{id}"),
            b: format!("imt-b-{id}"),
            // Interface names are limited to 15 characters.
            veth_a: format!("va{}", &id[id.len().saturating_sub(10)..]),
            veth_b: format!("vb{}", &id[id.len().saturating_sub(10)..]),
            ip_a: format!("10.251.{subnet}.1"),
            ip_b: format!("10.251.{subnet}.2"),
        };
        ip(&["netns", "add", &p.a]);
        ip(&["netns", "add", &p.b]);
        ip(&[
            "link", "add", &p.veth_a, "type", "veth", "peer", "name", &p.veth_b,
        ]);
        ip(&["link", "set", &p.veth_a, "netns", &p.a]);
        ip(&["link", "set", &p.veth_b, "netns", &p.b]);
        for (ns, dev, addr) in [(&p.a, &p.veth_a, &p.ip_a), (&p.b, &p.veth_b, &p.ip_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// Take the link down on a's side: packets vanish, nobody gets a reset.
    pub fn cut(&self) {
        ip(&["-n", &self.a, "link", "set", &self.veth_a, "down"]);
    }

    pub fn heal(&self) {
        ip(&["-n", &self.a, "link", "set", &self.veth_a, "up"]);
    }

    /// Shape a -> b traffic with a token bucket.
    pub fn limit_a_to_b(&self, rate: &str, burst: &str, latency: &str) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.a,
                "tc",
                "qdisc",
                "replace",
                "dev",
                &self.veth_a,
                "root",
                "tbf",
            ])
            .args(["rate", rate, "burst", burst, "latency", latency])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn unlimit(&self) {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.a,
                "tc",
                "qdisc",
                "del",
                "dev",
                &self.veth_a,
                "root",
            ])
            .output();
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.a])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.b])
            .status();
    }
}

/// Write `value` to `path` with mode 0600.
pub fn write_secret(path: &Path, value: &str) {
    std::fs::write(path, value).unwrap();
}

/// Generate a CA and a certificate for `ips` (SANs), for both server and client use.
pub fn make_certs(dir: &TempDir, ips: &[&str]) -> ServerTls {
    require("openssl");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=im-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=redis",
    ]);
    let sans: Vec<String> = ips.iter().map(|i| format!("IP:{i}")).collect();
    std::fs::write(
        dir.path("ext.cnf"),
        format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
            sans.join(",")
        ),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    ServerTls {
        ca: dir.path("ca.crt"),
        cert: dir.path("tls.crt"),
        key: dir.path("tls.key"),
    }
}

/// A redis-sentinel process monitoring one master, in its own temporary directory (Sentinel
/// rewrites its config file, so it must be writable).
pub struct Sentinel {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
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
        let dir = TempDir::new("sentinel");
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
            child: Some(child),
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
        if let Some(pw) = &self.password {
            c.env("REDISCLI_AUTH", pw);
        }
        let out = c.args(args).stderr(Stdio::null()).output().ok()?;
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && !s.starts_with("Could not connect") && !s.is_empty()).then_some(s)
    }

    /// `SENTINEL MASTER <name>` as a map (empty if the Sentinel does not answer).
    pub fn master(&self, name: &str) -> HashMap<String, String> {
        let out = self
            .try_cli(&["SENTINEL", "MASTER", name])
            .unwrap_or_default();
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_string(), c[1].to_string()))
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("sentinel.log")).unwrap_or_default()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

/// One `AUTH` + `SET` on a fresh connection, raw RESP: `Ok(reply line)` (`+OK`, `-NOREPLICAS
/// ...`, `-READONLY ...`) or `Err` when there is no connection.
pub fn try_set(port: u16, password: Option<&str>, key: &str) -> Result<String, String> {
    use std::io::{BufRead, BufReader, Write};
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    let mut send = |args: &[&str]| -> Result<String, String> {
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        w.write_all(cmd.as_bytes()).map_err(|e| e.to_string())?;
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.is_empty() {
            return Err("connection closed".into());
        }
        Ok(line.trim_end().to_string())
    };
    if let Some(pw) = password {
        let auth = send(&["AUTH", pw])?;
        if auth != "+OK" {
            return Ok(auth);
        }
    }
    send(&["SET", key, "written"])
}
