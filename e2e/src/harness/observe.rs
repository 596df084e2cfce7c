//! What the drill reads from the clusters: each pod's Redis (INFO, ROLE, offsets, keyspace
//! digests, whether it takes a write), its instance manager's report, and the simulated API's
//! status, labels and Events; and the waits built on them.

use std::collections::BTreeMap;
use std::time::Duration;

use redis_cluster_api::labels as l;
use redis_cluster_api::report::InstanceReport;
use redis_test_support::http;
use redis_test_support::resp::Conn;
use redis_topology::EventReason;

use super::{Drill, NS, addr, cluster_of, im_addr, wait};

/// A numeric `INFO` field (0 when absent).
pub fn num(info: &BTreeMap<String, String>, field: &str) -> u64 {
    info.get(field).and_then(|v| v.parse().ok()).unwrap_or(0)
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
        // Retry a refused connection for a moment: when the simulated -leader Service moves
        // its address (`CONFIG SET bind`), Redis re-creates its listening sockets and refuses
        // connections for a few milliseconds; a real Service never touches Redis's listeners.
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

    /// A pod's `master_repl_offset`.
    pub fn offset(&self, pod: &str) -> Option<String> {
        self.info(pod, "replication")
            .ok()?
            .get("master_repl_offset")
            .cloned()
    }

    /// A pod's keyspace digest (`DEBUG DIGEST`).
    pub fn digest(&self, pod: &str) -> Result<String, String> {
        Ok(self
            .conn(pod)?
            .cmd(&["DEBUG", "DIGEST"])
            .map_err(|e| e.to_string())?
            .text())
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
        wait("digests to converge", Duration::from_secs(30), || {
            self.digests_equal(&all).ok()
        })
        .map(|_| ())
    }

    /// Check (as `name`) that every pod of both clusters comes to hold the same keyspace.
    pub fn check_keyspaces_converge(&mut self, name: &str) -> Result<(), String> {
        let r = self.keyspaces_converge();
        self.check(name, r)
    }

    /// A pod replicates `upstream_ip`, its link up and no sync in progress.
    pub fn linked_to(&self, pod: &str, upstream_ip: &str) -> bool {
        self.info(pod, "replication").is_ok_and(|i| {
            i.get("master_host").map(String::as_str) == Some(upstream_ip)
                && i.get("master_link_status").map(String::as_str) == Some("up")
                && i.get("master_sync_in_progress").map(String::as_str) == Some("0")
        })
    }

    /// Wait (for `what`) until every pod of `pods` is linked to `upstream_ip`.
    pub fn wait_linked(
        &self,
        what: &str,
        pods: &[String],
        upstream_ip: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        wait(what, timeout, || {
            pods.iter()
                .all(|p| self.linked_to(p, upstream_ip))
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

    /// A condition of a cluster's status: (status, reason, message).
    pub fn condition(&self, cluster: &str, type_: &str) -> Option<(String, String, String)> {
        let rc = self.sim.get(NS, cluster);
        let c = rc
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)?;
        Some((c.status, c.reason, c.message))
    }

    /// Wait until `cluster`'s condition `type_` has this status, reason (any when None) and message.
    pub fn wait_condition(
        &self,
        cluster: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
        message: &str,
    ) -> Result<(), String> {
        wait(
            &format!("{cluster} {type_}={status}"),
            Duration::from_secs(10),
            || {
                self.condition(cluster, type_)
                    .filter(|c| c.0 == status && reason.is_none_or(|r| c.1 == r) && c.2 == message)
            },
        )
        .map(|_| ())
    }

    /// `status.currentPrimary` of a cluster.
    pub fn current_primary(&self, cluster: &str) -> Option<String> {
        self.sim.get(NS, cluster).status?.current_primary
    }

    /// Which pod carries `redis.io/role=primary` (what the `-leader` Service selects).
    pub fn labelled_primary(&self, cluster: &str) -> Option<String> {
        self.pods(cluster).into_iter().find(|p| {
            self.sim
                .platform
                .pod(NS, p)
                .is_some_and(|p| p.labels.get(l::ROLE).map(String::as_str) == Some(l::ROLE_PRIMARY))
        })
    }

    /// The Events of `cluster` with this reason, oldest first: (type, note).
    pub fn events(&self, cluster: &str, reason: EventReason) -> Vec<(String, String)> {
        self.sim
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == cluster && e.2 == reason.as_str())
            .map(|e| (e.1.clone(), e.3.clone()))
            .collect()
    }

    /// The latest Event of `cluster` with this reason: (type, note).
    pub fn event(&self, cluster: &str, reason: EventReason) -> Option<(String, String)> {
        self.events(cluster, reason).pop()
    }
}
