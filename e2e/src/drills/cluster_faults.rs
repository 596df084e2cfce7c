//! The faults only a real cluster has, each an asserted step on the spec's two clusters (the
//! same setup as the DR drill): the API server restarting under the operator, the operator's
//! leader dying in the middle of a promotion, a node that stops reporting while its pods'
//! processes live on (NotReady, then the taint manager's eviction: a Terminating primary that
//! still runs), an operator upgrade with `helm upgrade` rolling every StatefulSet, a planned
//! switchover with the operator's leader killed after each of its steps, and an unplanned
//! promotion with both sides writable whose lost writes are salvaged.
//!
//! [`story`] is the list of steps; each step is a function whose doc comment is its banner.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kcluster::client::pod_processes;
use kcluster::daemon;
use redis_cluster_api::labels as l;
use serde_json::json;

use crate::drills::replica_mode;
use crate::harness::checks::SplitBrainChecker;
use crate::harness::writers::acked_writes;
use crate::harness::{DR, Drill, NS, OPERATOR_NS, Options, PROD, Report, run_story, wait};

pub fn run(o: &Options) -> Report {
    run_story(o, "setup", story)
}

fn story(d: &mut Drill) -> Result<(), String> {
    replica_mode::setup(d)?;
    replica_mode::dr_replicates_production(d)?;
    let checker = SplitBrainChecker::start(d);
    quiet_at_steady_state(d)?;
    apiserver_restarts(d)?;
    operator_leader_dies_mid_promotion(d)?;
    node_stops_reporting(d)?;
    operator_upgrade_rolls_the_pods(d)?;
    switchover_with_the_operator_killed_at_each_step(d)?;
    unplanned_promotion_salvages_the_tail(d)?;
    let (samples, violations) = checker.finish();
    d.check(
        &format!("no split brain through every fault ({samples} samples of every node)"),
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations.join("; "))
        },
    )?;
    // Last: the checker knows the old password only.
    password_rotation(d)
}

/// When the operator last wrote each object it manages for both clusters (its owned objects and
/// the data pods' labels and topology), from `managedFields` (its field manager, not status
/// subresources, which other controllers write too), keyed by `kind/name`.
fn operator_writes(d: &Drill) -> Result<BTreeMap<String, String>, String> {
    let mut writes = BTreeMap::new();
    for kinds in [
        "statefulsets,services,configmaps,poddisruptionbudgets,networkpolicies,serviceaccounts,roles,rolebindings",
        "pods",
    ] {
        let out = d.kubectl(&[
            "-n",
            NS,
            "get",
            kinds,
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.managedFields[?(@.manager==\"redis-operator\")].time}{\"\\n\"}{end}",
        ])?;
        writes.extend(out.lines().filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            (!v.is_empty()).then(|| (k.to_string(), v.to_string()))
        }));
    }
    Ok(writes)
}

/// Counted by kind: `{"get /secrets": 12, ...}`.
fn tally(requests: &[String]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for r in requests {
        *t.entry(r.clone()).or_insert(0) += 1;
    }
    t
}

/// The requests that change something (leader election aside).
fn writes(requests: &[String]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| crate::harness::is_write(r))
        .cloned()
        .collect()
}

/// How long F0 leaves the clusters alone.
const QUIET: Duration = Duration::from_secs(60);

/// F0. Quiet at steady state: a converged cluster under writes costs no API write
///
/// Both clusters converged; a client writes to production all along (offsets and lag move
/// every second). For a minute, the API server's audit log must show no write request from the
/// operator (the leader election's Lease renewals aside): no status rewritten for offsets, no
/// object re-applied, no reconcile triggered by its own writes. Then one spec change (the DR
/// cluster's `source.clusterName`, which its status and its pods' topology show) must cost a
/// stated, bounded number of writes: one status write, and per data pod one topology patch and
/// one Event.
fn quiet_at_steady_state(d: &mut Drill) -> Result<(), String> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    d.step(
        "F0. Quiet at steady state: a converged cluster under writes costs no API write",
        "Both clusters converged; a client writes to production all along (offsets and lag move\n\
         every second). For a minute, the API server's audit log must show no write request from the\n\
         operator (the leader election's Lease renewals aside): no status rewritten for offsets, no\n\
         object re-applied, no reconcile triggered by its own writes. Then one spec change (the DR\n\
         cluster's source.clusterName, which its status and its pods' topology show) must cost a\n\
         stated, bounded number of writes: one status write, and per data pod one topology patch and\n\
         one Event.",
    );
    let leader = d
        .labelled_primary(PROD)
        .ok_or("production has no primary")?;
    let addr = format!("{}:6379", crate::harness::ip(&leader));
    let password = d.passwords[PROD].clone();
    /// Stops the writer however the step ends.
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = Stop(stop.clone());
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut c = redis_test_support::resp::Conn::connect(
                &addr,
                Some(&password),
                Duration::from_secs(2),
            )
            .ok();
            while !stop.load(Ordering::Relaxed) {
                if let Some(conn) = c.as_mut()
                    && conn
                        .cmd(&[
                            "SET",
                            &format!("quiet:{}", written.load(Ordering::Relaxed)),
                            "v",
                        ])
                        .is_ok_and(|r| !r.is_error())
                {
                    written.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // Converging after setup (the last status writes, the Sentinels' first reports).
    std::thread::sleep(Duration::from_secs(10));
    let reconciled_before = crate::harness::reconcile_metrics(&d.cluster)?.0;
    let from = k8s_openapi::jiff::Timestamp::now();
    std::thread::sleep(QUIET);
    let to = k8s_openapi::jiff::Timestamp::now();
    let reconciled = crate::harness::reconcile_metrics(&d.cluster)?.0 - reconciled_before;
    // The audit log is written when a request completes: a moment for the last ones.
    std::thread::sleep(Duration::from_secs(2));
    let requests = crate::harness::operator_requests(&d.cluster, from, to)?;
    let writes_seen = writes(&requests);
    let n = written.load(Ordering::Relaxed);
    d.say(&format!(
        "    {}s alone, {n} writes to production: the operator made {} requests ({:?}) in {reconciled} reconciles of 2 clusters",
        QUIET.as_secs(),
        requests.len(),
        tally(&requests)
    ));
    d.check(
        &format!(
            "a minute alone under writes ({n} SETs): no write request from the operator (its Lease renewals aside), {} requests in all, {reconciled} reconciles of 2 clusters",
            requests.len()
        ),
        if n > 100 && writes_seen.is_empty() {
            Ok(())
        } else if n <= 100 {
            Err(format!("the writer made only {n} writes: production did not take writes"))
        } else {
            Err(format!("{} writes: {:?}", writes_seen.len(), tally(&writes_seen)))
        },
    )?;
    let reads: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("get ") || r.starts_with("list "))
        .filter(|r| !r.ends_with("/secrets") && !r.ends_with("coordination.k8s.io/leases"))
        .collect();
    d.check(
        "... and no GET or LIST but the referenced Secrets and the leader Lease: every other read comes from the watch caches",
        if reads.is_empty() {
            Ok(())
        } else {
            Err(format!("{reads:?}"))
        },
    )?;

    // One spec change, then back: each a bounded number of writes. The source's name is part
    // of every DR pod's topology (its instance manager names the source in its link errors):
    // one status write, and per data pod one topology patch and its TopologyPublished Event.
    let pods = d.pods(DR).len();
    let bound = |w: &[String]| {
        let t = tally(w);
        let n = |k: &str| t.get(k).copied().unwrap_or(0);
        n("patch redis.io/redisclusters/status") == 1
            && n("patch /pods") <= pods
            && n("create events.k8s.io/events") <= pods
            && w.len()
                == n("patch redis.io/redisclusters/status")
                    + n("patch /pods")
                    + n("create events.k8s.io/events")
    };
    let stated =
        format!("1 status write + at most {pods} pod patches and {pods} Events ({pods} data pods)");
    let mut costs = Vec::new();
    for name in ["prod-redis-renamed", "prod-redis-us-east"] {
        let from = k8s_openapi::jiff::Timestamp::now();
        d.patch(
            DR,
            &json!({"spec": {"replicaMode": {"source": {"clusterName": name}}}}),
        )?;
        wait(
            "the DR status to name the source",
            Duration::from_secs(20),
            || {
                d.condition(DR, "ReplicaMode")
                    .filter(|(_, _, message)| message.contains(&format!("from {name} ")))
            },
        )?;
        // Whatever follows from the change (a second reconcile on its own write included).
        std::thread::sleep(Duration::from_secs(5));
        let to = k8s_openapi::jiff::Timestamp::now();
        std::thread::sleep(Duration::from_secs(2));
        let w = writes(&crate::harness::operator_requests(&d.cluster, from, to)?);
        costs.push(format!("{name}: {} ({:?})", w.len(), tally(&w)));
        if !bound(&w) {
            return d.check(
                &format!("one spec change costs {stated}"),
                Err(costs.join("; ")),
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    d.check(
        &format!(
            "one spec change costs {stated} (source.clusterName changed and back: {})",
            costs.join("; ")
        ),
        Ok(()),
    )
}

/// F1. The API server restarts under the operator: its watches re-list, nothing is written twice
///
/// kube-apiserver is stopped and started again (as an upgrade of the control plane would) while
/// the operator reconciles both clusters every few seconds. Its watches end and re-list; a
/// converged cluster must get no write from that: every owned object and every published
/// topology keeps its resourceVersion, and replication never stopped.
fn apiserver_restarts(d: &mut Drill) -> Result<(), String> {
    d.step(
        "F1. The API server restarts under the operator: its watches re-list, nothing is written twice",
        "kube-apiserver is stopped and started again (as an upgrade of the control plane would) while\n\
         the operator reconciles both clusters every few seconds. Its watches end and re-list; a\n\
         converged cluster must get no write from that: every owned object and every published\n\
         topology keeps its resourceVersion, and replication never stopped.",
    );
    let before = operator_writes(d)?;
    let restarted = Instant::now();
    daemon::restart(&d.cluster.dir, "kube-apiserver", Duration::from_secs(10))?;
    wait(
        "the API server to serve again",
        Duration::from_secs(60),
        || d.kubectl(&["get", "--raw", "/readyz"]).ok(),
    )?;
    d.time("API server stopped -> ready again", restarted.elapsed());
    // Long enough for the operator's watches to notice, re-list and reconcile everything (they
    // back off up to a few seconds), and for several periodic reconciles.
    std::thread::sleep(Duration::from_secs(15));
    let after = operator_writes(d)?;
    let changed: Vec<String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v} -> {:?}", after.get(k)))
        .collect();
    d.check(
        &format!(
            "after the restart and 15 s of reconciles, the operator wrote none of the {} objects it manages again (managedFields)",
            before.len()
        ),
        if changed.is_empty() {
            Ok(())
        } else {
            Err(changed.join(", "))
        },
    )?;
    let replicas: Vec<String> = d.all_pods().into_iter().skip(1).collect();
    let leader = d
        .labelled_primary(PROD)
        .ok_or("production has no primary")?;
    d.write_keys(&leader, "after-apiserver-restart", 100, 10)?;
    let r = wait("every replica caught up", Duration::from_secs(30), || {
        d.caught_up(
            &leader,
            &replicas
                .iter()
                .filter(|p| **p != leader)
                .cloned()
                .collect::<Vec<_>>(),
        )
    });
    d.check(
        "replication went on through the restart (every replica at production's offset)",
        r.map(|_| ()),
    )
}

/// The operator pod holding the leader Lease, and the node it runs on.
fn operator_leader(d: &Drill) -> Option<(String, String)> {
    let holder = crate::harness::operator_leader(&d.cluster)?;
    let node = d.kube.pod(OPERATOR_NS, &holder)?.spec?.node_name?;
    Some((holder, node))
}

/// The epoch of the topology published to `pod`.
/// Whether `pod`'s published topology makes it primary.
fn published_primary(d: &Drill, pod: &str) -> bool {
    d.kube
        .pod(NS, pod)
        .and_then(|p| p.metadata.annotations?.get(l::TOPOLOGY_ANNOTATION).cloned())
        .and_then(|a| redis_cluster_api::topology::DesiredTopology::parse(&a).ok())
        .is_some_and(|t| t.role == redis_cluster_api::topology::Role::Primary)
}

fn epoch(d: &Drill, pod: &str) -> Option<u64> {
    let annotation = d
        .kube
        .pod(NS, pod)?
        .metadata
        .annotations?
        .get(l::TOPOLOGY_ANNOTATION)?
        .clone();
    redis_cluster_api::topology::DesiredTopology::parse(&annotation)
        .ok()
        .map(|t| t.epoch)
}

/// F2. Pod 0 is behind; the pod holding the most data is promoted, and the operator's leader dies mid-promotion
///
/// dr-redis-0's replication link is dropped while production takes writes that the other DR pods receive,
/// then region A is lost (the inter-region link cut, and kept down for the rest of this drill) and
/// dr-redis-0 resumes behind its peers. The spec's promotion patch promotes dr-redis-1 (the lowest
/// ordinal holding every pod's data), not pod 0, and says so in PromotionTarget. As soon as the
/// leader has told dr-redis-1 to become primary, its node fails (the node agent frozen: no
/// kubelet, no heartbeat) and its process is killed. The other replica takes the Lease once it
/// expired and completes the promotion without promoting again: dr-redis-1 keeps the replication
/// id it took when promoted, and every other pod, dr-redis-0 included, resumes with a partial
/// resync.
fn operator_leader_dies_mid_promotion(d: &mut Drill) -> Result<(), String> {
    d.step(
        "F2. Pod 0 is behind; the pod holding the most data is promoted, and the operator's leader dies mid-promotion",
        "dr-redis-0's replication link is dropped while production takes writes that the other DR pods receive,\n\
         then region A is lost (the inter-region link cut, and kept down for the rest of this drill) and\n\
         dr-redis-0 resumes behind its peers. The spec's promotion patch promotes dr-redis-1 (the lowest\n\
         ordinal holding every pod's data), not pod 0, and says so in PromotionTarget. As soon as the\n\
         leader has told dr-redis-1 to become primary, its node fails (the node agent frozen: no\n\
         kubelet, no heartbeat) and its process is killed. The other replica takes the Lease once it\n\
         expired and completes the promotion without promoting again: dr-redis-1 keeps the replication\n\
         id it took when promoted, and every other pod, dr-redis-0 included, resumes with a partial\n\
         resync.",
    );
    let chosen = "dr-redis-1";
    let dr_pods = d.pods(DR);
    // Pod 0 falls behind: its replication link dropped (in its own network namespace, packets
    // from any Redis port but its own; pausing its Redis would not do: the kernel keeps
    // receiving the stream for it) while production takes writes the others receive.
    let pod0 = d.kube.pod(NS, "dr-redis-0").ok_or("no pod dr-redis-0")?;
    let netns = kcluster::client::pod_netns(&pod0).ok_or("dr-redis-0 has no uid")?;
    let prod_primary = d
        .labelled_primary(PROD)
        .ok_or("production has no primary")?;
    for rule in [
        "add table inet drill",
        "add chain inet drill in { type filter hook input priority 0 ; }",
        "add rule inet drill in tcp sport 6379 ip saddr != 127.0.0.0/8 drop",
    ] {
        let mut args = vec!["nft"];
        args.extend(rule.split(' '));
        kcluster::net::in_ns(&netns, &args)?;
    }
    let behind = (|| -> Result<(), String> {
        let password = d.passwords[PROD].clone();
        acked_writes(
            &crate::harness::addr(&prod_primary),
            &password,
            "while-pod-0-cut-off",
            200,
            1,
        )?;
        let others: Vec<String> = dr_pods.iter().skip(1).cloned().collect();
        wait(
            "the other DR pods to receive production's writes",
            Duration::from_secs(20),
            || d.caught_up(&prod_primary, &others),
        )?;
        // Region A is lost before pod 0 can catch up.
        d.set_inter_region_link(false)
    })();
    kcluster::net::in_ns(&netns, &["nft", "delete", "table", "inet", "drill"])?;
    behind?;
    wait(
        "every DR pod to report its link to production down",
        Duration::from_secs(20),
        || {
            dr_pods
                .iter()
                .all(|p| d.status_report(p).is_some_and(|r| !r.master_link_up))
                .then_some(())
        },
    )?;
    let (leader, node) = operator_leader(d).ok_or("no operator holds the leader Lease")?;
    let before = epoch(d, chosen).ok_or(format!("{chosen} has no topology"))?;
    let full_before = d.stat(chosen, "sync_full")?;
    d.patch(DR, &json!({"spec": {"replicaMode": {"promote": true}}}))?;
    // Chained: the other pods are told first, the chosen pod last, as primary.
    wait(
        &format!("the leader to tell {chosen} to be primary"),
        Duration::from_secs(40),
        || epoch(d, chosen).filter(|e| *e > before && published_primary(d, chosen)),
    )?;
    let agent = daemon::get(&d.cluster.dir, &format!("node-{node}"))
        .ok_or(format!("no node agent for {node}"))?;
    daemon::freeze(&agent)?;
    let killed = Instant::now();
    // Its node is frozen: whether the kill reaches the process or not, it is cut off.
    let _ = kill_operator_process(d, &leader);
    let result = (|| -> Result<(), String> {
        let (promoted_id, _) = wait(
            &format!("{chosen} to be primary"),
            Duration::from_secs(20),
            || d.primary_replid(chosen),
        )?;
        let (new_leader, took) = wait(
            "the standby to take the Lease over",
            Duration::from_secs(60),
            || operator_leader(d).filter(|(h, _)| *h != leader),
        )?;
        d.time("leader killed -> the standby holds the Lease", took);
        let followers: Vec<String> = d.pods(DR).into_iter().filter(|p| p != chosen).collect();
        d.wait_linked(
            &format!("the other DR pods to follow {chosen}"),
            &followers,
            chosen,
            Duration::from_secs(60),
        )?;
        d.time(
            "leader killed mid-promotion -> promotion completed by the standby",
            killed.elapsed(),
        );
        let r = d.wait_condition(
            DR,
            "ReplicaMode",
            "False",
            Some("Promoted"),
            "Cluster promoted to standalone (former source: prod-redis-us-east)",
        );
        d.check(
            &format!(
                "{} took over and completed the promotion: ReplicaMode=False/Promoted",
                new_leader.0
            ),
            r,
        )?;
        // The Promoting Event (with why this pod) is written after the pod patches: the leader
        // may die before it. The standby then only completes, and says so in Promoted.
        let promoting = d.event(DR, redis_topology::EventReason::Promoting);
        let promoted_event = d.event(DR, redis_topology::EventReason::Promoted);
        let current = d.current_primary(DR);
        d.check(
            &format!("the pod holding the most data was promoted, not pod 0: currentPrimary {current:?}; Promoting {promoting:?}; Promoted {promoted_event:?}"),
            match (&current, &promoting, &promoted_event) {
                (Some(c), Some((_, note)), _)
                    if c == chosen
                        && note.starts_with(&format!("Promoting {chosen} to standalone primary"))
                        && note.contains(&format!("{chosen} holds the most data")) =>
                {
                    Ok(())
                }
                (Some(c), None, Some((_, note)))
                    if c == chosen && note.starts_with(&format!("{chosen} is primary")) =>
                {
                    Ok(())
                }
                _ => Err("another pod, or no Event".into()),
            },
        )?;
        let now_id = d
            .info(chosen, "replication")?
            .get("master_replid")
            .cloned()
            .unwrap_or_default();
        let full_after = d.stat(chosen, "sync_full")?;
        let promoted = d.events(DR, redis_topology::EventReason::Promoted).len();
        d.check(
            &format!("promoted once, no full resync: {chosen} kept replication id {promoted_id}, {promoted} Promoted Event, sync_full {full_before}->{full_after} (dr-redis-0, behind, resumed partially)"),
            if now_id == promoted_id && full_after == full_before && promoted == 1 {
                Ok(())
            } else {
                Err(format!("id now {now_id}, Promoted events {promoted}"))
            },
        )
    })();
    // The node comes back: its kubelet restarts the killed container (a standby now).
    daemon::thaw(&agent)?;
    d.broken.insert(leader.clone(), 0);
    result
}

/// F3. A node stops reporting while its pod's processes live on: NotReady, eviction, Terminating
///
/// The node agent of the promoted DR cluster's primary is frozen: the kubelet is gone, the
/// processes are not. After the node-monitor grace period the node is NotReady, after the
/// tolerations its pods are evicted: the primary's pod is Terminating, and its Redis still runs
/// and takes writes. The operator must not treat it as dead: no failover, the same primary, and
/// the condition says why. When the node comes back, its kubelet stops the pod, the StatefulSet
/// recreates it, and the cluster goes on with one primary and every acknowledged write.
fn node_stops_reporting(d: &mut Drill) -> Result<(), String> {
    d.step(
        "F3. A node stops reporting while its pod's processes live on: NotReady, eviction, Terminating",
        "The node agent of the promoted DR cluster's primary is frozen: the kubelet is gone, the\n\
         processes are not. After the node-monitor grace period the node is NotReady, after the\n\
         tolerations its pods are evicted: the primary's pod is Terminating, and its Redis still runs\n\
         and takes writes. The operator must not treat it as dead: no failover, the same primary, and\n\
         the condition says why. When the node comes back, its kubelet stops the pod, the StatefulSet\n\
         recreates it, and the cluster goes on with one primary and every acknowledged write.",
    );
    let primary = d.labelled_primary(DR).ok_or("DR has no primary")?;
    let node = d
        .kube
        .pod(NS, &primary)
        .and_then(|p| p.spec?.node_name)
        .ok_or("the primary has no node")?;
    let password = d.passwords[DR].clone();
    let replicas = d.pods(DR).len() - 1;
    let acked = acked_writes(
        &crate::harness::addr(&primary),
        &password,
        "before-node-loss",
        100,
        replicas,
    )?;
    let agent = daemon::get(&d.cluster.dir, &format!("node-{node}"))
        .ok_or(format!("no node agent for {node}"))?;
    daemon::freeze(&agent)?;
    let frozen = Instant::now();
    let result = (|| -> Result<(), String> {
        let (_, took) = wait(
            &format!("{primary}'s pod to be evicted (Terminating)"),
            Duration::from_secs(90),
            || {
                d.kube
                    .pod(NS, &primary)
                    .and_then(|p| p.metadata.deletion_timestamp)
            },
        )?;
        d.time(
            "node agent frozen -> node NotReady -> primary's pod evicted (Terminating)",
            took,
        );
        let pids = d
            .kube
            .pod(NS, &primary)
            .map(|p| pod_processes(&p))
            .unwrap_or_default();
        d.check(
            &format!(
                "{primary} is Terminating while its processes still run ({} of them)",
                pids.len()
            ),
            if pids.iter().any(|(_, c)| c == "redis-server") {
                Ok(())
            } else {
                Err(format!("{pids:?}"))
            },
        )?;
        // Longer than failover.primaryUnavailableSeconds and a few reconciles.
        std::thread::sleep(Duration::from_secs(8));
        // Its own label (the harness's labelled_primary skips Terminating pods), no other pod
        // labelled primary, and status.currentPrimary unchanged.
        let label = d
            .kube
            .pod(NS, &primary)
            .and_then(|p| p.metadata.labels)
            .and_then(|l| l.get(l::ROLE).cloned());
        let others = d.labelled_primary(DR);
        let current = d.current_primary(DR);
        let writable = d.accepts_write(&primary, ["drill:terminating-primary", "still"]);
        d.check(
            &format!("no failover while {primary} is Terminating but running: it is still the labelled primary and status.currentPrimary, and takes writes"),
            if label.as_deref() == Some(l::ROLE_PRIMARY)
                && others.is_none()
                && current.as_deref() == Some(primary.as_str())
                && writable
            {
                Ok(())
            } else {
                Err(format!(
                    "its role label {label:?}, another pod labelled primary {others:?}, currentPrimary {current:?}, writable {writable}"
                ))
            },
        )?;
        Ok(())
    })();
    daemon::thaw(&agent)?;
    let thawed = Instant::now();
    d.broken.insert(primary.clone(), 0);
    result?;
    // The kubelet is back: it stops the evicted pod's containers and deletes it; the StatefulSet
    // recreates the pod.
    let (new, _) = wait(
        "one writable primary again after the node came back",
        Duration::from_secs(120),
        || {
            let p = d.labelled_primary(DR)?;
            let recreated = d
                .kube
                .pod(NS, &primary)
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none());
            (recreated && d.accepts_write(&p, ["drill:after-node-loss", "yes"])).then_some(p)
        },
    )?;
    d.time(
        "node back -> pod recreated and a primary takes writes",
        thawed.elapsed(),
    );
    let r = d.keys_present(&new, &acked);
    d.check(
        &format!(
            "every write acknowledged before the node loss is on the primary ({new}), {:.0} s after the freeze",
            frozen.elapsed().as_secs_f64()
        ),
        r,
    )
}

/// F4. An operator upgrade (helm upgrade with a changed setting) rolls both clusters' pods
///
/// helm upgrade --set operator.redisImage=redis:7.2.5: the operator renders a new pod template,
/// and the StatefulSet controller replaces the pods one at a time, highest ordinal first. Every
/// pod ends on the new image, every acknowledged write survives, and DR is replicating
/// production again.
fn operator_upgrade_rolls_the_pods(d: &mut Drill) -> Result<(), String> {
    d.step(
        "F4. An operator upgrade (helm upgrade with a changed setting) rolls both clusters' pods",
        "helm upgrade --set operator.redisImage=redis:7.2.5: the operator renders a new pod template,\n\
         and the StatefulSet controller replaces the pods one at a time, highest ordinal first. Every\n\
         pod ends on the new image, every acknowledged write survives, and DR is replicating\n\
         production again.",
    );
    // Region A is back (lost since F2), and DR goes back to replicating production (it was
    // promoted in F2).
    d.set_inter_region_link(true)?;
    d.patch(DR, &json!({"spec": {"replicaMode": {"promote": false}}}))?;
    let prod_primary = d
        .labelled_primary(PROD)
        .ok_or("production has no primary")?;
    let dr_pods = d.pods(DR);
    d.wait_linked(
        "DR to replicate production again",
        &dr_pods,
        "prod-redis-leader.production.svc.cluster.local",
        Duration::from_secs(90),
    )?;
    let password = d.passwords[PROD].clone();
    let acked = acked_writes(
        &crate::harness::addr(&prod_primary),
        &password,
        "before-upgrade",
        100,
        2,
    )?;
    let helm = d.o.repo.join(".tools/bin/helm");
    let upgraded = Instant::now();
    kcluster::cluster::install_operator(
        &d.cluster,
        &helm,
        &d.o.repo.join("charts/redis-operator"),
        &["--set", "operator.redisImage=redis:7.2.5"],
    )?;
    for p in d.all_pods() {
        d.broken.insert(p, 0);
    }
    let all = d.all_pods();
    let (_, took) = wait(
        "every data pod replaced with the new image and running",
        Duration::from_secs(300),
        || {
            all.iter()
                .all(|p| {
                    d.kube.pod(NS, p).is_some_and(|pod| {
                        let image = pod
                            .spec
                            .as_ref()
                            .map(|s| s.containers[0].image.clone().unwrap_or_default());
                        image.as_deref() == Some("redis:7.2.5")
                            && pod.metadata.deletion_timestamp.is_none()
                            && pod.status.and_then(|s| s.phase).as_deref() == Some("Running")
                    })
                })
                .then_some(())
        },
    )?;
    d.time("helm upgrade -> every data pod rolled", took);
    let leader = wait(
        "production to have a writable primary",
        Duration::from_secs(60),
        || {
            let p = d.labelled_primary(PROD)?;
            d.accepts_write(&p, ["drill:after-upgrade", "yes"])
                .then_some(p)
        },
    )?
    .0;
    let r = d.keys_present(&leader, &acked);
    d.check(
        &format!("every write acknowledged before the upgrade is on production's primary ({leader}) after the roll ({:.0} s)", upgraded.elapsed().as_secs_f64()),
        r,
    )?;
    let r = d.wait_linked(
        "DR replicating production after the roll",
        &dr_pods,
        "prod-redis-leader.production.svc.cluster.local",
        Duration::from_secs(120),
    );
    d.check("DR replicates production again after the roll", r)?;
    // Under Sentinel a replica left following a pod that a later failover of the roll made a
    // replica itself waits for the Sentinels to re-point it (their replica reconfiguration),
    // and its replication gate does not follow it into that pod's new history meanwhile.
    let prod_replicas: Vec<String> = d.pods(PROD).into_iter().filter(|p| *p != leader).collect();
    let (_, took) = wait(
        "production's replicas to follow its primary after the roll",
        Duration::from_secs(120),
        || {
            prod_replicas
                .iter()
                .all(|p| d.linked_to(p, &leader))
                .then_some(())
        },
    )?;
    d.time(
        "helm upgrade: roll done -> every production replica linked to the primary",
        took,
    );
    d.check_keyspaces_converge("all keyspaces equal after the upgrade")
}

/// Kill the process of the operator that holds the leader Lease (`kill -9`): its container
/// restarts, and the leader that follows (it, or the standby) resumes from what was written.
fn kill_operator_leader(d: &mut Drill) -> Result<String, String> {
    let (leader, _) = operator_leader(d).ok_or("no operator holds the leader Lease")?;
    kill_operator_process(d, &leader)?;
    d.broken.insert(leader.clone(), 0);
    Ok(leader)
}

/// `kill -9` the redis-operator process of the operator pod `pod`.
fn kill_operator_process(d: &Drill, pod: &str) -> Result<(), String> {
    let p = d
        .kube
        .pod(OPERATOR_NS, pod)
        .ok_or(format!("no pod {pod}"))?;
    let pids: Vec<u32> = pod_processes(&p)
        .into_iter()
        .filter(|(_, comm)| comm == "redis-operator")
        .map(|(pid, _)| pid)
        .collect();
    if pids.is_empty() {
        return Err(format!("no redis-operator process in {pod}"));
    }
    for pid in pids {
        kcluster::net::sh(&["kill", "-9", &pid.to_string()])?;
    }
    Ok(())
}

/// F5. A planned switchover to DR with the operator's leader killed after each of its steps
///
/// Production (never in replica mode so far; the setup named DR as its unused source) is demoted
/// (enabled: true) under a writer that records every acknowledged write. The operator's leader is
/// killed (kill -9) as soon as it has told production's pods to become replicas, and again as soon
/// as it has told DR's pod to become primary with the token. Each time the next leader resumes from
/// the annotations and the status: production's token is published, DR is promoted once (one
/// replication id), every acknowledged write is on DR and on production, and nobody resynchronised
/// in full.
fn switchover_with_the_operator_killed_at_each_step(d: &mut Drill) -> Result<(), String> {
    d.step(
        "F5. A planned switchover to DR with the operator's leader killed after each of its steps",
        "Production (never in replica mode so far; the setup named DR as its unused source) is demoted\n\
         (enabled: true) under a writer that records every acknowledged write. The operator's leader is\n\
         killed (kill -9) as soon as it has told production's pods to become replicas, and again as soon\n\
         as it has told DR's pod to become primary with the token. Each time the next leader resumes from\n\
         the annotations and the status: production's token is published, DR is promoted once (one\n\
         replication id), every acknowledged write is on DR and on production, and nobody resynchronised\n\
         in full.",
    );
    let dr_leader = "dr-redis-leader.production.svc.cluster.local";
    // Prepared as docs/switchover.md says: the setup named DR as production's source
    // (enabled: false) before the pods held data, so the switchover restarts nothing.
    let prod_pods = d.pods(PROD);
    let dr_pods = d.pods(DR);
    let all: Vec<String> = prod_pods.iter().chain(&dr_pods).cloned().collect();
    let full_before = d.full_syncs(&all)?;
    let primary = d
        .labelled_primary(PROD)
        .ok_or("production has no primary")?;
    let writer = d.start_switchover_writer("drill:f5", PROD, &primary, DR)?;

    // Step 1: the demotion, and the leader killed once production's pods are told.
    let before = epoch(d, &primary).ok_or(format!("{primary} has no topology"))?;
    d.patch(PROD, &json!({"spec": {"replicaMode": {"enabled": true}}}))?;
    wait(
        &format!("the leader to tell {primary} to replicate DR"),
        Duration::from_secs(30),
        || epoch(d, &primary).filter(|e| *e > before && !published_primary(d, &primary)),
    )?;
    let first = kill_operator_leader(d)?;
    let (token, took) = d.wait_demotion_token(PROD)?;
    d.time("leader killed after the demotion -> token published", took);

    // Step 2: the promotion with the token, and the leader killed once DR's pod is told.
    let chosen = "dr-redis-0";
    let before = epoch(d, chosen).ok_or(format!("{chosen} has no topology"))?;
    d.patch(
        DR,
        &json!({"spec": {"replicaMode": {"promote": true, "promotionToken": token}}}),
    )?;
    wait(
        &format!("the leader to tell {chosen} to be primary"),
        Duration::from_secs(60),
        || epoch(d, chosen).filter(|e| *e > before && published_primary(d, chosen)),
    )?;
    let second = kill_operator_leader(d)?;
    let killed = Instant::now();
    let (promoted_id, _) = wait(
        &format!("{chosen} to be primary"),
        Duration::from_secs(30),
        || d.primary_replid(chosen),
    )?;
    d.wait_linked(
        "production to replicate DR",
        &prod_pods,
        dr_leader,
        Duration::from_secs(90),
    )?;
    d.time(
        "leader killed after the promotion -> production replicating DR",
        killed.elapsed(),
    );
    let r = d.wait_condition(
        DR,
        "ReplicaMode",
        "False",
        Some("Promoted"),
        "Cluster promoted to standalone (former source: prod-redis-us-east)",
    );
    d.check(
        &format!("leaders {first} and {second} killed; the next ones completed the switchover: DR promoted"),
        r,
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let log = writer.finish();
    let keys: Vec<String> = log.acked.iter().map(|(k, _)| k.clone()).collect();
    wait(
        "production to catch up with DR",
        Duration::from_secs(30),
        || d.caught_up(chosen, &prod_pods),
    )?;
    let present = d
        .keys_present(chosen, &keys)
        .and_then(|()| d.keys_present(&prod_pods[0], &keys));
    let now_id = d
        .info(chosen, "replication")?
        .get("master_replid")
        .cloned()
        .unwrap_or_default();
    let promoted = d.events(DR, redis_topology::EventReason::Promoted).len();
    let demoted = d
        .events(PROD, redis_topology::EventReason::Demoted)
        .into_iter()
        .filter(|(_, n)| n.contains(&token))
        .count();
    let full_after = d.full_syncs(&all)?;
    d.check(
        &format!(
            "every acknowledged write on {chosen} and {}: {} keys, longest write pause {} ms; promoted once ({chosen} kept {promoted_id}; Promoted Events since F2: {promoted}), Demoted Events with the token: {demoted}, sync_full {full_before} -> {full_after}",
            prod_pods[0],
            keys.len(),
            log.longest_pause.as_millis()
        ),
        match present {
            Err(e) => Err(e),
            Ok(()) if now_id != promoted_id => Err(format!("promoted again: {now_id}")),
            Ok(()) if full_after != full_before => {
                Err(format!("{} full resyncs", full_after - full_before))
            }
            Ok(()) if demoted == 0 => Err("no Demoted Event with the token".into()),
            Ok(()) => Ok(()),
        },
    )
}

/// F6. Region B is lost under a writer and production is promoted; B returns: its lost writes are salvaged, exactly
///
/// DR is primary since F5 and production replicates it. A writer records every write DR's primary
/// acknowledges. The link is cut; production's status shows the data at risk; production is promoted
/// (promote: true, no token: a disaster promotion) and takes writes too, so both sides are writable.
/// The writer stops, the link returns and DR is returned to replica mode (promote: false). Before DR's
/// primary resynchronises, its instance manager saves the tail of its replication stream that
/// production never received: replayed into an empty Redis (redis-cli --pipe, as docs/salvage.md
/// says) it holds exactly the acknowledged writes production lacks. Then DR resynchronises.
fn unplanned_promotion_salvages_the_tail(d: &mut Drill) -> Result<(), String> {
    d.step(
        "F6. Region B is lost under a writer and production is promoted; B returns: its lost writes are salvaged, exactly",
        "DR is primary since F5 and production replicates it. A writer records every write DR's primary\n\
         acknowledges. The link is cut; production's status shows the data at risk; production is promoted\n\
         (promote: true, no token: a disaster promotion) and takes writes too, so both sides are writable.\n\
         The writer stops, the link returns and DR is returned to replica mode (promote: false). Before DR's\n\
         primary resynchronises, its instance manager saves the tail of its replication stream that\n\
         production never received: replayed into an empty Redis (redis-cli --pipe, as docs/salvage.md\n\
         says) it holds exactly the acknowledged writes production lacks. Then DR resynchronises.",
    );
    let dr_primary = d.labelled_primary(DR).ok_or("DR has no primary")?;
    // An earlier step may have salvaged on this pod (F3 returns a promoted DR to replica mode):
    // that one stays reported until a new one.
    let salvaged_before = d.salvage_of(DR, &dr_primary);
    let writer = d.start_writer("drill:f6", DR, &dr_primary)?;
    d.set_inter_region_link(false)?;
    let cut = Instant::now();
    let (risk, _) = wait(
        "prod-redis status.dataAtRisk",
        Duration::from_secs(30),
        || d.data_at_risk(PROD),
    )?;
    d.check(
        &format!(
            "before promoting production, its status.dataAtRisk: \"{}\"",
            risk.message
        ),
        if risk.message.contains("a promotion now loses") {
            Ok(())
        } else {
            Err(format!("{risk:?}"))
        },
    )?;
    d.patch(PROD, &json!({"spec": {"replicaMode": {"promote": true}}}))?;
    let (prod_primary, took) = wait(
        "production's leader to accept a write",
        Duration::from_secs(60),
        || {
            d.labelled_primary(PROD)
                .filter(|p| d.accepts_write(p, ["drill:f6-promoted", "yes"]))
        },
    )?;
    d.time("cut -> production promoted and writable", cut.elapsed());
    d.time("promotion patch -> first write on production", took);
    // Redis drops its replicas' links when it becomes a master (they resume partially under its
    // new id at once); until its next replication cron it may count no good replica, and
    // production's min-replicas-to-write 1 refuses writes (-NOREPLICAS) for up to a second.
    let prod_replicas: Vec<String> = d
        .pods(PROD)
        .into_iter()
        .filter(|p| *p != prod_primary)
        .collect();
    d.wait_linked(
        "production's replicas to follow its promoted primary",
        &prod_replicas,
        &prod_primary,
        Duration::from_secs(30),
    )?;
    wait(
        "production's primary to count its replicas again",
        Duration::from_secs(10),
        || {
            // (Absent when min-replicas-to-write is 0: nothing to wait for.)
            let info = d.info(&prod_primary, "replication").ok()?;
            info.get("min_slaves_good_slaves")
                .is_none_or(|n| n.parse::<u64>().is_ok_and(|n| n >= 1))
                .then_some(())
        },
    )?;
    d.write_keys(&prod_primary, "f6-prod", 100, 16)?;
    std::thread::sleep(Duration::from_secs(1));
    let log = writer.finish();
    // What DR acknowledged and production does not hold: what the promotion lost.
    let acked: Vec<String> = log.acked.iter().map(|(k, _)| k.clone()).collect();
    let mut c = d.conn(&prod_primary)?;
    let mut lost = std::collections::BTreeSet::new();
    for k in &acked {
        let r = c.cmd(&["EXISTS", k]).map_err(|e| e.to_string())?;
        if r.text() != "1" {
            lost.insert(k.clone());
        }
    }
    drop(c);
    d.check(
        &format!(
            "both sides writable: DR's primary acknowledged {} writes, {} of them after production's last contact (lost by the promotion)",
            acked.len(),
            lost.len()
        ),
        if lost.is_empty() {
            Err("no write was lost: the cut came too late to test anything".into())
        } else {
            Ok(())
        },
    )?;

    d.set_inter_region_link(true)?;
    let returned = Instant::now();
    d.patch(
        DR,
        &json!({"spec": {"replicaMode": {"promote": false, "promotionToken": null}}}),
    )?;
    let (event, salvage) = d.salvaged(
        DR,
        &dr_primary,
        salvaged_before.as_ref(),
        Duration::from_secs(90),
    )?;
    d.time("link back + promote: false -> Salvaged", returned.elapsed());
    d.check(
        &format!("Warning Salvaged: \"{}\"", event.1),
        if event.0 == "Warning" && salvage.kind == "tail" {
            Ok(())
        } else {
            Err(format!("{} {salvage:?}", event.0))
        },
    )?;
    let (replayed, said) = d.replay_tail(&dr_primary, &salvage)?;
    let extra: Vec<&String> = replayed.difference(&lost).take(5).collect();
    let short: Vec<&String> = lost.difference(&replayed).take(5).collect();
    d.check(
        &format!(
            "{dr_primary} salvaged a tail of {} bytes ({} commands, {} keys) from offset {:?}; replayed into an empty Redis ({said}) it holds exactly the {} writes production lacks",
            salvage.bytes,
            salvage.commands.unwrap_or(0),
            salvage.keys,
            salvage.from_offset,
            lost.len()
        ),
        if replayed == lost && salvage.keys == lost.len() as u64 && said.starts_with("errors: 0,") {
            Ok(())
        } else {
            Err(format!(
                "{} replayed, {} lost; extra {extra:?}, missing {short:?}",
                replayed.len(),
                lost.len()
            ))
        },
    )?;
    // Then DR resynchronised from production: it holds production's writes, not its own lost ones.
    let dr_pods = d.pods(DR);
    d.wait_linked(
        "DR to replicate production",
        &dr_pods,
        "prod-redis-leader.production.svc.cluster.local",
        Duration::from_secs(90),
    )?;
    let first_lost = lost.iter().next().cloned().unwrap_or_default();
    let r = d
        .keys_present(&dr_primary, &["f6-prod:0".to_string()])
        .and_then(
            |()| match d.keys_present(&dr_primary, std::slice::from_ref(&first_lost)) {
                Ok(()) => Err(format!("{first_lost} still on {dr_primary}")),
                Err(_) => Ok(()),
            },
        );
    d.check(
        "then DR resynchronised from production (it holds production's writes, not its lost ones)",
        r,
    )
}

/// Every pod of the namespace (data pods and Sentinels): its uid and its containers' restarts
/// (a pod recreated or a container restarted shows).
fn pod_lives(d: &Drill) -> Result<BTreeMap<String, (String, i32)>, String> {
    Ok(d.kube
        .pods(NS, "")?
        .into_iter()
        .map(|p| {
            let restarts = p
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(|c| c.restart_count)
                .sum();
            (
                p.metadata.name.unwrap_or_default(),
                (p.metadata.uid.unwrap_or_default(), restarts),
            )
        })
        .collect())
}

/// Whether `password` authenticates on a fresh connection to `addr`.
fn accepts(addr: &str, password: &str) -> bool {
    redis_test_support::resp::Conn::connect(addr, Some(password), Duration::from_millis(500))
        .is_ok_and(|mut c| c.cmd(&["PING"]).is_ok_and(|r| r.text() == "PONG"))
}

/// Issue 13 item 5 on the real API server: production's Secret (which DR's pods also mount as
/// their source's) gets a new password, with the old one as `previousPassword`, then without;
/// the node agents update the mounted files as a kubelet does; nothing restarts.
fn password_rotation(d: &mut Drill) -> Result<(), String> {
    d.step(
        "F7. Production's password is rotated live under a writer (previousPassword, then without it)",
        "kubectl patches prod-redis-auth: password = a new one, previousPassword = the old one. Every\n\
         production pod and Sentinel accepts both; replication links cut then reopen partially (DR's pods\n\
         mount the same Secret as their source's password). The old password is then removed: it is\n\
         refused everywhere, the new one accepted, links cut again reopen partially. A writer connected\n\
         with the old password before the rotation is never refused; no pod restarts; no full resync.",
    );
    const SECRET: &str = "prod-redis-auth";
    const SENTINELS: u32 = 3;
    let old = d.passwords[PROD].clone();
    let new = format!("{old}-rotated-{}", std::process::id());
    let prod_primary = d
        .labelled_primary(PROD)
        .ok_or("production has no primary")?;
    let dr_primary = d.labelled_primary(DR).ok_or("DR has no primary")?;
    let prod_pods = d.pods(PROD);
    let all = d.all_pods();
    let full_before = d.full_syncs(&all)?;
    let partial_before = d.stat(&prod_primary, "sync_partial_ok")?;
    let restarts_before = pod_lives(d)?;
    let writer = d.start_writer("drill:f7", PROD, &prod_primary)?;
    let addrs: Vec<String> = prod_pods
        .iter()
        .map(|p| crate::harness::addr(p))
        .chain(crate::harness::sentinel::sentinel_addrs(PROD, SENTINELS))
        .collect();
    let everywhere = |pw: &str, want: bool| addrs.iter().all(|a| accepts(a, pw) == want);
    // Cut from the replicas' side: DR's primary (whose source password is the rotated Secret)
    // and one production replica; the other keeps production's min-replicas-to-write met, so
    // the writer is never refused for the cut itself.
    let prod_replica = prod_pods
        .iter()
        .find(|p| **p != prod_primary)
        .cloned()
        .ok_or("production has no replica")?;
    let cut_links = |d: &Drill| -> Result<(), String> {
        for pod in [&dr_primary, &prod_replica] {
            d.conn(pod)?
                .cmd(&["CLIENT", "KILL", "TYPE", "master"])
                .map_err(|e| format!("{pod}: {e}"))?;
        }
        Ok(())
    };
    let relinked = |d: &Drill| -> Result<(), String> {
        let leader = format!("{PROD}-leader.{NS}.svc.cluster.local");
        d.wait_linked(
            "DR's primary to relink to production",
            std::slice::from_ref(&dr_primary),
            &leader,
            Duration::from_secs(60),
        )?;
        wait(
            "production's replicas to relink",
            Duration::from_secs(60),
            || {
                prod_pods
                    .iter()
                    .filter(|p| **p != prod_primary)
                    .all(|p| d.linked_to(p, &prod_primary))
                    .then_some(())
            },
        )
        .map(|_| ())
    };

    let patch_secret = |d: &Drill, type_: &str, patch: &str| {
        d.kubectl(&["-n", NS, "patch", "secret", SECRET, type_, "-p", patch])
    };
    patch_secret(
        d,
        "--type=merge",
        &json!({"stringData": {"password": new, "previousPassword": old}}).to_string(),
    )?;
    let (_, took) = wait(
        "every production pod and Sentinel to accept both passwords",
        Duration::from_secs(90),
        || (everywhere(&new, true) && everywhere(&old, true)).then_some(()),
    )?;
    d.time(
        "Secret patched -> every pod and Sentinel accepts both passwords",
        took,
    );
    d.check(
        &format!(
            "with previousPassword: the {} production pods and {SENTINELS} Sentinels accept both passwords ({:.1} s after the patch; the node agent resyncs Secret volumes every 10 s)",
            prod_pods.len(),
            took.as_secs_f64()
        ),
        Ok(()),
    )?;
    // What docs/password-rotation.md tells a user to wait for before retiring the old one.
    let shown = |d: &Drill, want: &str| -> Option<String> {
        let out = d
            .kubectl(&[
                "-n",
                NS,
                "get",
                "rediscluster",
                PROD,
                "-o",
                r#"jsonpath={range .status.instancesStatus[*]}{.name}{"\t"}{.passwords}{"\n"}{end}"#,
            ])
            .ok()?;
        let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        (lines.len() == prod_pods.len() && lines.iter().all(|l| l.ends_with(&format!("\t{want}"))))
            .then_some(out)
    };
    let (out, _) = wait(
        "status.instancesStatus[].passwords to show both on every production pod",
        Duration::from_secs(30),
        || shown(d, "password+previousPassword"),
    )?;
    let rotation_events = |d: &Drill| d.events(PROD, redis_topology::EventReason::PasswordRotation);
    let (event, _) = wait("a PasswordRotation Event", Duration::from_secs(30), || {
        rotation_events(d).pop()
    })?;
    d.check(
        &format!(
            "the documented check shows every pod accepting both: {}; Normal Event PasswordRotation: \"{}\"",
            out.trim().replace('\n', ", ").replace('\t', " "),
            event.1
        ),
        if event.0 == "Normal" && event.1.contains("accepts both") {
            Ok(())
        } else {
            Err(format!("{event:?}"))
        },
    )?;
    cut_links(d)?;
    relinked(d)?;
    d.check(
        "replication links cut meanwhile reopened (DR's with the source Secret's new password)",
        Ok(()),
    )?;

    patch_secret(
        d,
        "--type=json",
        r#"[{"op": "remove", "path": "/data/previousPassword"}]"#,
    )?;
    let (_, took) = wait(
        "the old password to be refused everywhere",
        Duration::from_secs(90),
        || (everywhere(&old, false) && everywhere(&new, true)).then_some(()),
    )?;
    d.time(
        "previousPassword removed -> the old password refused everywhere",
        took,
    );
    d.passwords.insert(PROD.to_string(), new.clone());
    wait(
        "status.instancesStatus[].passwords to show the new password alone",
        Duration::from_secs(30),
        || shown(d, "password"),
    )?;
    let (retired, _) = wait(
        "the PasswordRotation Event of the retired password",
        Duration::from_secs(30),
        || {
            rotation_events(d)
                .into_iter()
                .find(|(_, note)| note.contains("is retired"))
        },
    )?;
    cut_links(d)?;
    relinked(d)?;
    std::thread::sleep(Duration::from_secs(1));
    let log = writer.finish();
    let acked: Vec<String> = log.acked.iter().map(|(k, _)| k.clone()).collect();
    let full_after = d.full_syncs(&all)?;
    let partial_after = d.stat(&prod_primary, "sync_partial_ok")?;
    let restarts_after = pod_lives(d)?;
    let r = d.keys_present(&prod_primary, &acked).and_then(|()| {
        wait("DR to catch up", Duration::from_secs(30), || {
            d.caught_up(&prod_primary, std::slice::from_ref(&dr_primary))
        })
        .map(|_| ())
    });
    let r = r.and_then(|()| d.keys_present(&dr_primary, &acked));
    let r = r.and_then(|()| {
        // Two links cut twice, each reopened with a partial resync.
        if log.refused == 0
            && full_after == full_before
            && partial_after >= partial_before + 4
            && restarts_after == restarts_before
        {
            Ok(())
        } else {
            Err(format!(
                "{} writes refused, sync_full {full_before} -> {full_after}, sync_partial_ok {partial_before} -> {partial_after}, pods (uid, restarts) {restarts_before:?} -> {restarts_after:?}",
                log.refused
            ))
        }
    });
    d.check(
        &format!(
            "after it (Event: \"{}\"): only the new password everywhere; the writer (authenticated with the old one) had {} writes acknowledged, 0 refused, all on production's and DR's primaries; the links cut twice reopened partially (sync_partial_ok {partial_before} -> {partial_after} on {prod_primary}), sync_full {full_before} -> {full_after}, no container restarted",
            retired.1,
            acked.len()
        ),
        r,
    )
}
