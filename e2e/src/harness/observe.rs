//! What the drill reads from each pod's Redis (INFO, ROLE, offsets, keyspace digests, whether it
//! takes a write) and its instance manager's report, and the waits built on them. (What the API
//! says, conditions, labels and Events, is in [`super::k8s`].)

use std::collections::BTreeMap;
use std::time::Duration;

use redis_cluster_api::report::InstanceReport;
use redis_test_support::http;
use redis_test_support::resp::{Conn, Reply};

use super::sentinel::known_as;
use super::{Drill, addr, cluster_of, im_addr, ip, wait};

/// A numeric `INFO` field (0 when absent).
pub fn num(info: &BTreeMap<String, String>, field: &str) -> u64 {
    info.get(field).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A digest of a whole keyspace: every key and its value (the drill writes strings
/// only), read with SCAN and MGET and hashed in key order. (`DEBUG DIGEST` would do, but the
/// operator's redis.conf leaves DEBUG disabled, as it should be in production.)
pub fn keyspace_digest(c: &mut Conn, pod: &str) -> Result<String, String> {
    let mut keys = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let r = c
            .cmd(&["SCAN", &cursor, "COUNT", "1000"])
            .map_err(|e| format!("{pod}: {e}"))?;
        let Reply::Array(Some(parts)) = r else {
            return Err(format!("{pod}: SCAN answered {}", r.text()));
        };
        cursor = parts.first().map(Reply::text).unwrap_or_default();
        if let Some(Reply::Array(Some(batch))) = parts.get(1) {
            keys.extend(batch.iter().map(Reply::text));
        }
        if cursor == "0" {
            break;
        }
    }
    keys.sort();
    // FNV-1a over key, value pairs: cheap, stable, and equal exactly when the data is.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes.iter().chain(&[0u8]) {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for chunk in keys.chunks(500) {
        let mut args = vec!["MGET"];
        args.extend(chunk.iter().map(String::as_str));
        let r = c.cmd(&args).map_err(|e| format!("{pod}: {e}"))?;
        let Reply::Array(Some(values)) = r else {
            return Err(format!("{pod}: MGET answered {}", r.text()));
        };
        for (key, value) in chunk.iter().zip(values) {
            feed(key.as_bytes());
            feed(value.text().as_bytes());
        }
    }
    Ok(format!("{} keys, {hash:016x}", keys.len()))
}

/// One `SET key value` (`set`) on a fresh connection to `addr` (a pod, a Service address) was
/// accepted.
pub fn accepts_write(addr: &str, password: &str, set: [&str; 2], timeout: Duration) -> bool {
    Conn::connect(addr, Some(password), timeout)
        .ok()
        .is_some_and(|mut c| write_accepted(&mut c, set))
}

fn write_accepted(c: &mut Conn, [key, value]: [&str; 2]) -> bool {
    c.cmd(&["SET", key, value]).is_ok_and(|r| !r.is_error())
}

impl Drill<'_> {
    /// A connection to a pod's Redis, authenticated with its cluster's password.
    pub fn conn(&self, pod: &str) -> Result<Conn, String> {
        // Retry a refused connection for a moment: a container that just restarted listens a
        // few milliseconds after its pod reports it running.
        let mut attempt = 0;
        loop {
            match Conn::connect(
                &addr(pod),
                Some(&self.passwords[cluster_of(pod)]),
                Duration::from_secs(2),
            ) {
                Ok(c) => return Ok(c),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && attempt < 10 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(format!("{pod}: {e}")),
            }
        }
    }

    /// `INFO <section>` of a pod's Redis.
    pub fn info(&self, pod: &str, section: &str) -> Result<BTreeMap<String, String>, String> {
        self.conn(pod)?
            .info(section)
            .map_err(|e| format!("{pod}: {e}"))
    }

    /// A counter of a pod's `INFO stats`.
    pub fn stat(&self, pod: &str, field: &str) -> Result<u64, String> {
        Ok(num(&self.info(pod, "stats")?, field))
    }

    /// Full syncs served, summed over `pods` (`sync_full`: a counter per redis-server process).
    pub fn full_syncs(&self, pods: &[String]) -> Result<u64, String> {
        pods.iter().map(|p| self.stat(p, "sync_full")).sum()
    }

    /// A pod's replication id while it is a primary (None while a replica or unreadable).
    pub fn primary_replid(&self, pod: &str) -> Option<String> {
        let i = self.info(pod, "replication").ok()?;
        (i.get("role").map(String::as_str) == Some("master"))
            .then(|| i.get("master_replid").cloned())
            .flatten()
    }

    /// A pod's `master_repl_offset`.
    pub fn offset(&self, pod: &str) -> Option<String> {
        self.info(pod, "replication")
            .ok()?
            .get("master_repl_offset")
            .cloned()
    }

    /// A digest of a pod's whole keyspace ([`keyspace_digest`]).
    pub fn digest(&self, pod: &str) -> Result<String, String> {
        keyspace_digest(&mut self.conn(pod)?, pod)
    }

    /// Every pod of `pods` holds the same keyspace.
    pub fn digests_equal(&self, pods: &[String]) -> Result<(), String> {
        let digests: Vec<(String, String)> = pods
            .iter()
            .map(|p| Ok((p.clone(), self.digest(p)?)))
            .collect::<Result<_, String>>()?;
        if digests.iter().all(|(_, d)| d == &digests[0].1) {
            Ok(())
        } else {
            Err(format!("digests differ: {digests:?}"))
        }
    }

    /// Wait until every pod of both clusters holds the same keyspace.
    pub fn keyspaces_converge(&self) -> Result<(), String> {
        let all = self.all_pods();
        let last = std::cell::RefCell::new(String::new());
        wait("digests to converge", Duration::from_secs(30), || {
            self.digests_equal(&all)
                .map_err(|e| *last.borrow_mut() = e)
                .ok()
        })
        .map(|_| ())
        .map_err(|e| format!("{e} (last difference: {})", last.borrow()))
    }

    /// Check (as `name`) that every pod of both clusters comes to hold the same keyspace.
    pub fn check_keyspaces_converge(&mut self, name: &str) -> Result<(), String> {
        let r = self.keyspaces_converge();
        self.check(name, r)
    }

    /// The names a replica may give for `upstream` in `master_host`: its IP, the stable name its
    /// peers and Sentinels use, and that name with the cluster domain. `upstream` is a pod of
    /// the drill, or any other host (a Service's DNS name) taken as it is.
    pub fn names_of(&self, upstream: &str) -> Vec<String> {
        if upstream.starts_with(super::PROD) || upstream.starts_with(super::DR) {
            let fqdn = known_as(cluster_of(upstream), upstream);
            if !upstream.contains('.') {
                return vec![ip(upstream), format!("{fqdn}.cluster.local"), fqdn];
            }
        }
        vec![upstream.to_string()]
    }

    /// The pod is a replica of `upstream` (see [`Drill::names_of`]) with its link up and no sync
    /// in progress.
    pub fn linked_to(&self, pod: &str, upstream: &str) -> bool {
        let names = self.names_of(upstream);
        self.info(pod, "replication").is_ok_and(|i| {
            i.get("master_host").is_some_and(|h| names.contains(h))
                && i.get("master_link_status").map(String::as_str) == Some("up")
                && i.get("master_sync_in_progress").map(String::as_str) == Some("0")
        })
    }

    /// Wait until every one of `pods` is [`Drill::linked_to`] `upstream`.
    pub fn wait_linked(
        &self,
        what: &str,
        pods: &[String],
        upstream: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        wait(what, timeout, || {
            pods.iter()
                .all(|p| self.linked_to(p, upstream))
                .then_some(())
        })
        .map(|_| ())
    }

    /// Every pod in `replicas` linked and at `primary`'s offset (nothing in flight).
    pub fn caught_up(&self, primary: &str, replicas: &[String]) -> Option<()> {
        let target = self.offset(primary)?;
        replicas
            .iter()
            .all(|p| {
                self.info(p, "replication").is_ok_and(|i| {
                    i.get("master_link_status").map(String::as_str) == Some("up")
                        && i.get("slave_repl_offset") == Some(&target)
                })
            })
            .then_some(())
    }

    /// A pod accepted one `SET key value` (`set`).
    pub fn accepts_write(&self, pod: &str, set: [&str; 2]) -> bool {
        self.conn(pod)
            .is_ok_and(|mut c| write_accepted(&mut c, set))
    }

    /// Wait (for `what`) until a pod accepts `SET key value`: how long it took.
    pub fn wait_writable(
        &self,
        what: &str,
        pod: &str,
        set: [&str; 2],
        timeout: Duration,
    ) -> Result<Duration, String> {
        wait(what, timeout, || self.accepts_write(pod, set).then_some(())).map(|(_, took)| took)
    }

    /// The report a pod's instance manager serves on `/status`.
    pub fn status_report(&self, pod: &str) -> Option<InstanceReport> {
        let (code, body) = http::get(&im_addr(pod), "/status").ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }
}
