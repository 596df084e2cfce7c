//! A `redis-server` for a test, and `redis-cli` to talk to it the way an operator would (the
//! password in the environment, never in a process's arguments).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{Proc, ScratchDir, command, free_port, require};
use crate::wait::wait_until;

/// `password` quoted for a Redis configuration file (`requirepass`, `masterauth`, ...): double
/// quotes, with backslashes and double quotes escaped.
pub fn quote(password: &str) -> String {
    format!(
        "\"{}\"",
        password.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// `redis-cli -p <port> <args>` on 127.0.0.1, the password passed in the environment: its
/// trimmed output (empty when nothing answers).
pub fn redis_cli(port: u16, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .env("REDISCLI_AUTH", password)
        .output()
        .expect("redis-cli is missing: run `make deps`");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `c` (a `redis-cli` with its connection options) run with `args`, the password in the
/// environment: its output, or None when it failed or nothing answered.
pub fn cli_output(mut c: Command, password: Option<&str>, args: &[&str]) -> Option<String> {
    if let Some(pw) = password {
        // REDISCLI_AUTH keeps the password out of the test's process arguments too.
        c.env("REDISCLI_AUTH", pw);
    }
    let out = c.args(args).stderr(Stdio::null()).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success() && !s.starts_with("Could not connect") && !s.is_empty()).then_some(s)
}

/// Field/value pairs printed one per line (`SENTINEL MASTER`, `CONFIG GET`, ... through
/// redis-cli) as a map.
pub fn fields(text: &str) -> BTreeMap<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .filter(|kv| kv.len() == 2)
        .map(|kv| (kv[0].to_string(), kv[1].to_string()))
        .collect()
}

/// `program` (`redis-server` or `redis-sentinel`) on its configuration file `conf`, inside network
/// namespace `ns` (here when None), its output in `log`; killed when dropped.
pub fn spawn_on(
    program: &str,
    name: &str,
    ns: Option<&str>,
    conf: &Path,
    log: &Path,
) -> Result<Proc, String> {
    Proc::spawn(name, ns, &[program.into(), conf.display().to_string()], log)
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
    /// The network namespace it runs in (here when None).
    pub ns: Option<String>,
    pub host: String,
    /// 0: a free port.
    pub port: u16,
    /// `requirepass`, in the configuration file.
    pub password: Option<String>,
    pub tls: Option<ServerTls>,
    /// More configuration file lines (secrets belong here, not in `extra`).
    pub conf: Vec<String>,
    /// More command-line arguments.
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
            conf: vec![],
            extra: vec![],
        }
    }
}

/// A redis-server in its own scratch directory (the RDB is kept across restarts), killed when
/// dropped.
pub struct RedisServer {
    child: Option<Proc>,
    pub opts: RedisOpts,
    pub dir: ScratchDir,
}

impl RedisServer {
    /// Start it and wait until it answers PING.
    pub fn start(mut opts: RedisOpts) -> RedisServer {
        require("redis-server");
        require("redis-cli");
        if opts.port == 0 {
            opts.port = free_port();
        }
        let mut r = RedisServer {
            child: None,
            opts,
            dir: ScratchDir::new("redis-test"),
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
            body.push_str(&format!("requirepass {}\n", quote(pw)));
        }
        for line in &o.conf {
            body.push_str(&format!("{line}\n"));
        }
        // Written once: a restart keeps what CONFIG REWRITE persisted, like a pod's config
        // file on an emptyDir survives a container restart.
        if !conf.exists() {
            std::fs::write(&conf, body).unwrap();
        }
        let mut c = command(o.ns.as_deref(), "redis-server");
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
        // The namespaced servers listen on veth addresses of namespaces the test created.
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
        let child = c.stdout(Stdio::null()).spawn().expect("spawn redis-server");
        self.child = Some(Proc::adopt("redis-server", child));
        let ok = wait_until(Duration::from_secs(10), || {
            self.try_cli(&["PING"]).is_some_and(|r| r.trim() == "PONG")
        });
        assert!(
            ok.is_some(),
            "redis-server on port {} did not start; log:\n{}",
            self.opts.port,
            self.log()
        );
    }

    pub fn port(&self) -> u16 {
        self.opts.port
    }

    /// Run redis-cli against this server; None if it failed (server down).
    pub fn try_cli(&self, args: &[&str]) -> Option<String> {
        let o = &self.opts;
        let mut c = command(o.ns.as_deref(), "redis-cli");
        c.args(["-h", &o.host, "-p", &o.port.to_string()]);
        if let Some(tls) = &o.tls {
            c.arg("--tls").arg("--cacert").arg(&tls.ca);
            c.arg("--cert").arg(&tls.cert).arg("--key").arg(&tls.key);
        }
        cli_output(c, o.password.as_deref(), args)
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
        if let Some(mut p) = self.child.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Start again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().pid()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("redis.log")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_fields() {
        assert_eq!(quote(r#"p a"s\s"#), r#""p a\"s\\s""#);
        let f = fields("ip\n10.0.0.1\nport\n6379\ndangling");
        assert_eq!(f["ip"], "10.0.0.1");
        assert_eq!(f["port"], "6379");
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn a_password_protected_server_answers_its_cli_only() {
        let r = RedisServer::start(RedisOpts {
            password: Some(r#"p a"s\s w'rd"#.into()),
            ..Default::default()
        });
        assert_eq!(r.cli(&["SET", "k", "v"]).trim(), "OK");
        assert_eq!(redis_cli(r.port(), r#"p a"s\s w'rd"#, &["GET", "k"]), "v");
        assert_ne!(redis_cli(r.port(), "wrong", &["GET", "k"]), "v");
    }
}
