//! TLS end to end, the last step of `redis-drill --source-failover`: the spec's "Use TLS for
//! cross-region replication" sample (`config/samples/redis-west-tls.yaml`) replicating a
//! TLS-only source in region A, its certificates made the way many users make them.
//!
//! [`dr_over_tls`] is the step; its doc comment is its banner.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use redis_test_support::netns::in_ns;
use redis_test_support::process::run as sh;
use redis_test_support::redis::spawn_on;
use redis_test_support::resp::Conn;

use crate::harness::source::SOURCE_NETNS;
use crate::harness::{Drill, NS, addr, wait};

/// The sample's cluster name (kept as the spec writes it).
pub const TLS_CLUSTER: &str = "redis-west";

/// The TLS-only source's address in region A (outside every node's podCIDR, like the source's).
pub const TLS_SOURCE_IP: &str = "10.78.250.60";

/// The CA and the one certificate the source and the pods share (as a wildcard certificate of
/// an organisation would).
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    /// A CA and a certificate naming the TLS source's address, the pods' stable names and the
    /// cluster's Services (what the pods dial: `docs` and the README list them).
    fn make(dir: &Path) -> Result<Certs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let domain = |s: &str| format!("{s}.{NS}.svc");
        let headless = domain(&format!("{TLS_CLUSTER}-headless"));
        let leader = domain(&format!("{TLS_CLUSTER}-leader"));
        let sans = [
            format!("IP:{TLS_SOURCE_IP}"),
            format!("DNS:*.{headless}"),
            format!("DNS:*.{headless}.cluster.local"),
            format!("DNS:{leader}"),
            format!("DNS:{leader}.cluster.local"),
        ];
        let t = redis_test_support::tls::make_certs(dir, &sans)?;
        Ok(Certs {
            ca: t.ca,
            cert: t.cert,
            key: t.key,
        })
    }

    /// `redis-cli --tls` against `host:6379` (the password, if any, in `REDISCLI_AUTH`): its
    /// answer, or why there is none.
    fn cli(&self, host: &str, password: Option<&str>, args: &[&str]) -> Result<String, String> {
        let mut c = Command::new("redis-cli");
        c.args(["--tls", "-h", host, "-p", "6379", "--cacert"])
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .args(args);
        if let Some(pw) = password {
            c.env("REDISCLI_AUTH", pw);
        }
        let out = c.output().map_err(|e| format!("redis-cli: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !out.status.success() || text.starts_with("Could not connect") || text.is_empty() {
            return Err(format!("{text} {err}").trim().to_string());
        }
        Ok(text)
    }
}

/// TLS: the spec's TLS sample replicates a TLS-only source, refuses plain text, and is promoted
///
/// The certificate is made as many users make one: `kubectl create secret tls` (no ca.crt). The
/// operator says so before any pod mounts it, and the command it gives adds the CA. Then every pod
/// serves TLS only, its instance manager manages it over TLS, replicates the source over TLS, and
/// the promoted pod takes writes over TLS.
pub fn dr_over_tls(d: &mut Drill) -> Result<(), String> {
    d.step(
        "TLS: the spec's TLS sample replicates a TLS-only source, refuses plain text, and is promoted",
        "The certificate is made as many users make one: `kubectl create secret tls` (no ca.crt). The\n\
         operator says so before any pod mounts it, and the command it gives adds the CA. Then every pod\n\
         serves TLS only, its instance manager manages it over TLS, replicates the source over TLS, and\n\
         the promoted pod takes writes over TLS.",
    );
    let dir = d.o.dir.join("tls");
    let certs = Certs::make(&dir)?;

    // The source: one TLS-only redis-server in region A, no password.
    in_ns(
        SOURCE_NETNS,
        &[
            "ip",
            "addr",
            "add",
            &format!("{TLS_SOURCE_IP}/32"),
            "dev",
            "lo",
        ],
    )?;
    let conf = dir.join("source.conf");
    std::fs::write(
        &conf,
        format!(
            "bind {TLS_SOURCE_IP}\nport 0\ntls-port 6379\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-replication yes\ntls-auth-clients optional\ndir {}\n\
             repl-diskless-sync yes\nrepl-diskless-sync-delay 0\nprotected-mode no\n",
            certs.cert.display(),
            certs.key.display(),
            certs.ca.display(),
            dir.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let p = spawn_on(
        "redis-server",
        "tls-source",
        Some(SOURCE_NETNS),
        &conf,
        &dir.join("source.log"),
    )?;
    d.procs.insert("tls-source".into(), p);
    wait("the TLS source to answer", Duration::from_secs(10), || {
        certs.cli(TLS_SOURCE_IP, None, &["PING"]).ok()
    })?;
    let set = certs.cli(TLS_SOURCE_IP, None, &["SET", "over-tls", "from-the-source"])?;
    if set != "OK" {
        return Err(format!("SET on the TLS source: {set}"));
    }

    // The sample's Secrets: its password, and its certificate from `kubectl create secret tls`.
    let password = "west-tls-drill-password";
    d.kubectl(&[
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "redis-password",
        &format!("--from-literal=password={password}"),
    ])?;
    let (cert, key) = (certs.cert.display(), certs.key.display());
    d.kubectl(&[
        "-n",
        NS,
        "create",
        "secret",
        "tls",
        "redis-tls",
        &format!("--cert={cert}"),
        &format!("--key={key}"),
    ])?;
    // The sample as written, in the drill's namespace, its source the TLS source, 2 instances.
    let sample = d.sample("redis-west-tls.yaml")?;
    let yaml = sample
        .replace("namespace: default", &format!("namespace: {NS}"))
        .replace(
            "host: redis.us-east.example.com",
            &format!("host: {TLS_SOURCE_IP}"),
        )
        .replace("instances: 5", "instances: 2");
    if yaml.matches(TLS_SOURCE_IP).count() != 1 || !yaml.contains("instances: 2") {
        return Err("redis-west-tls.yaml no longer has the lines the drill adapts".into());
    }
    d.apply_yaml(&yaml)?;
    let ((status, reason, message), _) = wait(
        "ConfigurationValid=False naming ca.crt",
        Duration::from_secs(30),
        || {
            d.condition(TLS_CLUSTER, "ConfigurationValid")
                .filter(|c| c.0 == "False")
        },
    )?;
    d.say(&format!(
        "    ConfigurationValid={status} {reason}: {message}"
    ));
    // The message ends with what goes on meanwhile (`reconcile::SECRET_WAIT`), after a `; `.
    let command = message
        .split_once(": kubectl patch secret")
        .and_then(|(_, rest)| rest.split("; meanwhile").next())
        .map(|rest| format!("kubectl patch secret{rest}"));
    d.check(
        "a Secret from `kubectl create secret tls` (no ca.crt): ConfigurationValid=False, SecretKeyMissing, with the command that adds it",
        match &command {
            Some(_) if reason == "SecretKeyMissing" && message.contains("'ca.crt'") => Ok(()),
            _ => Err(format!("{reason}: {message}")),
        },
    )?;
    // The command from the message, run as a user would (a shell expands the base64).
    let command = command.unwrap_or_default().replace(
        "$(base64 -w0 ca.crt)",
        &format!("$(base64 -w0 {})", certs.ca.display()),
    );
    let kubeconfig = d.cluster.kubeconfig.display().to_string();
    let kubectl_dir = d.cluster.bin_dir.display().to_string();
    sh(&[
        "sh",
        "-c",
        &format!("PATH={kubectl_dir}:$PATH KUBECONFIG={kubeconfig} {command}"),
    ])?;
    // The operator does not watch Secrets: it re-reads a missing or incomplete one every
    // `reconcile::REQUEUE_INVALID` (30 s).
    let (_, took) = wait(
        "redis-west ConfigurationValid=True after ca.crt was added",
        Duration::from_secs(45),
        || {
            d.condition(TLS_CLUSTER, "ConfigurationValid")
                .filter(|c| c.0 == "True")
        },
    )?;
    d.time("ca.crt added -> ConfigurationValid=True", took);
    d.wait_pods_running(TLS_CLUSTER, Duration::from_secs(120))?;
    let pods = d.pods(TLS_CLUSTER);
    let linked = wait(
        "every redis-west pod linked to the TLS source",
        Duration::from_secs(90),
        || {
            pods.iter()
                .all(|p| {
                    d.status_report(p)
                        .is_some_and(|r| r.master_link_up && r.ready)
                })
                .then_some(())
        },
    );
    d.check(
        "every pod serves TLS only and its instance manager links it to the TLS source (ready, link up)",
        linked.map(|_| ()).map_err(|e| {
            let reports: Vec<String> = pods
                .iter()
                .map(|p| format!("{p}: {:?}", d.status_report(p)))
                .collect();
            format!("{e}; {}", reports.join("; "))
        }),
    )?;
    let held: Vec<String> = pods
        .iter()
        .map(|p| {
            let ip = crate::harness::addresses::ip(p);
            format!(
                "{p}={}",
                certs
                    .cli(&ip, Some(password), &["GET", "over-tls"])
                    .unwrap_or_else(|e| e)
            )
        })
        .collect();
    d.check(
        &format!(
            "the source's write reached every pod over TLS ({})",
            held.join(", ")
        ),
        if held.iter().all(|h| h.ends_with("=from-the-source")) {
            Ok(())
        } else {
            Err(held.join(", "))
        },
    )?;
    let plain: Vec<String> = pods
        .iter()
        .filter(|p| {
            Conn::connect(&addr(p), Some(password), Duration::from_secs(2))
                .and_then(|mut c| c.cmd(&["PING"]))
                .is_ok_and(|r| !r.is_error())
        })
        .cloned()
        .collect();
    d.check(
        "a plain-text client gets no answer from any pod",
        if plain.is_empty() {
            Ok(())
        } else {
            Err(format!("{plain:?} answered PING in plain text"))
        },
    )?;

    d.patch(
        TLS_CLUSTER,
        &serde_json::json!({"spec": {"replicaMode": {"promote": true}}}),
    )?;
    let promoted = wait(
        "a redis-west pod to take a write over TLS",
        Duration::from_secs(60),
        || {
            pods.iter().find(|p| {
                let ip = crate::harness::addresses::ip(p);
                certs
                    .cli(&ip, Some(password), &["SET", "after-promotion", "1"])
                    .is_ok_and(|r| r == "OK")
            })
        },
    );
    d.check(
        "promoted: the primary takes writes over TLS",
        promoted.as_ref().map(|_| ()).map_err(|e| e.clone()),
    )?;
    let primary = promoted.map(|(p, _)| p.clone())?;
    let others: Vec<&String> = pods.iter().filter(|p| **p != primary).collect();
    let replicated = wait(
        "the other pods to hold the write, replicating the new primary over TLS",
        Duration::from_secs(60),
        || {
            others
                .iter()
                .all(|p| {
                    let ip = crate::harness::addresses::ip(p);
                    certs
                        .cli(&ip, Some(password), &["GET", "after-promotion"])
                        .is_ok_and(|r| r == "1")
                })
                .then_some(())
        },
    );
    d.check(
        &format!(
            "the other pods replicate {primary} over TLS (its name checked against the certificate)"
        ),
        replicated.map(|_| ()),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_step_is_documented_by_its_banner() {
        let steps = crate::harness::narration::assert_steps_documented(include_str!("tls.rs"));
        assert_eq!(steps, 1);
    }
}
