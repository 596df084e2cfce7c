//! Checks that run across steps: never two writable primaries in one cluster, and an old primary
//! that comes back rejoins as a replica without taking a write.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redis_cluster_api::topology::FENCE_MIN_REPLICAS;
use redis_test_support::resp::{Conn, Reply};

use super::writers::NoWriteSampler;
use super::{DR, Drill, PROD, try_ip, wait};

/// Samples every node's role and fails the drill if two writable primaries ever coexist in one
/// cluster.
pub struct SplitBrainChecker {
    stop: Arc<AtomicBool>,
    violations: Arc<Mutex<Vec<String>>>,
    samples: Arc<Mutex<u64>>,
    handle: Option<JoinHandle<()>>,
}

/// Whether `pod` is a master that takes writes: a fenced master (booted fenced, or fenced by the
/// operator) refuses every write and is not a second primary, nor is a master with fewer good
/// replicas than its `min-replicas-to-write` (Redis answers `-NOREPLICAS`: a Sentinel's
/// first choice in a failover a later one overrides is such a master for a moment). None when
/// it does not answer.
fn writable(conns: &mut BTreeMap<String, Conn>, pod: &str, password: &str) -> Option<bool> {
    let role = conns
        .get_mut(pod)
        .and_then(|c| c.cmd(&["ROLE"]).ok())
        .or_else(|| {
            let addr = format!("{}:6379", try_ip(pod)?);
            let mut c = Conn::connect(&addr, Some(password), Duration::from_millis(300)).ok()?;
            let r = c.cmd(&["ROLE"]).ok();
            conns.insert(pod.to_string(), c);
            r
        });
    match role? {
        Reply::Array(Some(items))
            if items.first().map(Reply::text).as_deref() == Some("master") =>
        {
            let fenced = conns
                .get_mut(pod)
                .and_then(|c| c.cmd(&["CONFIG", "GET", "min-replicas-to-write"]).ok())
                .and_then(|r| match r {
                    Reply::Array(Some(kv)) => kv.get(1)?.text().parse().ok(),
                    _ => None,
                })
                .is_some_and(|v: u64| v >= u64::from(FENCE_MIN_REPLICAS));
            if fenced {
                return Some(false);
            }
            // INFO replication: `min_slaves_good_slaves` is there when min-replicas-to-write is
            // set; absent, the master takes writes.
            let info = conns
                .get_mut(pod)
                .and_then(|c| c.cmd(&["INFO", "replication"]).ok())
                .map(|r| r.text())
                .unwrap_or_default();
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let enough = match (field("min_slaves_good_slaves"), min_replicas(conns, pod)) {
                (Some(good), Some(needed)) => good >= needed,
                _ => true,
            };
            Some(enough)
        }
        _ => Some(false),
    }
}

/// The master's `min-replicas-to-write`.
fn min_replicas(conns: &mut BTreeMap<String, Conn>, pod: &str) -> Option<u64> {
    conns
        .get_mut(pod)
        .and_then(|c| c.cmd(&["CONFIG", "GET", "min-replicas-to-write"]).ok())
        .and_then(|r| match r {
            Reply::Array(Some(kv)) => kv.get(1)?.text().parse().ok(),
            _ => None,
        })
}

impl SplitBrainChecker {
    /// Sample every pod of production and DR every 100 ms until [`SplitBrainChecker::finish`].
    pub fn start(d: &Drill) -> SplitBrainChecker {
        let clusters: Vec<(String, Vec<String>, String)> = [PROD, DR]
            .into_iter()
            .map(|c| (c.to_string(), d.pods(c), d.passwords[c].clone()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let samples = Arc::new(Mutex::new(0));
        let (s, v, n) = (stop.clone(), violations.clone(), samples.clone());
        let handle = std::thread::spawn(move || {
            let mut conns: BTreeMap<String, Conn> = BTreeMap::new();
            while !s.load(Ordering::Relaxed) {
                for (cluster, pods, password) in &clusters {
                    let mut primaries = Vec::new();
                    for pod in pods {
                        match writable(&mut conns, pod, password) {
                            Some(true) => primaries.push(pod.clone()),
                            Some(false) => {}
                            None => {
                                conns.remove(pod);
                            }
                        }
                    }
                    if primaries.len() > 1 {
                        v.lock()
                            .unwrap()
                            .push(format!("{cluster}: {primaries:?} writable at once"));
                    }
                }
                *n.lock().unwrap() += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        SplitBrainChecker {
            stop,
            violations,
            samples,
            handle: Some(handle),
        }
    }

    /// Stop sampling: how many rounds were sampled, and every violation seen.
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let samples = *self.samples.lock().unwrap();
        let violations = self.violations.lock().unwrap().clone();
        (samples, violations)
    }
}

impl Drill<'_> {
    /// The old primary's container comes back; it must rejoin `new` as a replica, and the sampler
    /// (running since before its death or its restart) must have had no write accepted.
    pub fn rejoins_without_writes(
        &mut self,
        cluster: &str,
        old: &str,
        new: &str,
        sampler: NoWriteSampler,
        mode: &str,
    ) -> Result<(), String> {
        let _ = cluster;
        self.repair_and_recreate(old)?;
        let (_, took) = wait(
            "the old primary to rejoin as a replica",
            Duration::from_secs(60),
            || self.linked_to(old, new).then_some(()),
        )?;
        self.time(
            &format!("{mode}: old primary restarted -> linked replica"),
            took,
        );
        let (samples, accepted) = sampler.finish();
        self.check(
            &format!("{old} rejoined as a replica of {new} and accepted no write meanwhile ({samples} write attempts)"),
            if accepted.is_empty() {
                Ok(())
            } else {
                Err(accepted.join("; "))
            },
        )
    }
}
