//! Issue 12 through the reconcile pipeline, with what the in-memory Kubernetes gained for it: a
//! pod being deleted (path 5), the former source's probe (path 6), the Sentinels asked to fail
//! over a primary that came back without its data (path 3), and a primary that restarted under a
//! new replication history (appendonly): failed over, the Sentinels asked, or its restart
//! accepted. (`reconcile_data_safety.rs` holds the cases the older API can express.)

mod world;
use world::*;

use redis_cluster_api::report::{HistoryPosition, PrimaryRestart};
use redis_topology::FormerSource;

// Path 5: Terminating is not dead.

#[tokio::test]
async fn a_primary_being_deleted_is_no_proof_until_the_kubelet_confirms() {
    let mut h = Harness::new(STANDALONE);
    h.converge().await;
    // `kubectl delete pod cache-0` on a partitioned node: the pod object stays Terminating,
    // its sidecar does not answer, the last container status says running.
    h.platform
        .mark_terminating("production", "cache-0", "2026-01-01T00:00:00Z");
    h.platform.set_report("cache-0", None);
    for _ in 0..3 {
        h.clock += 10;
        let (_, calls) = h.step().await;
        assert!(
            calls.iter().all(
                |c| !matches!(c, Call::PatchPod { annotations, .. } if !annotations.is_empty())
            ),
            "failed over without proof: {:?}",
            kinds(&calls)
        );
    }
    let (_, reason, message) = h.condition("PrimaryAvailable");
    assert_eq!(reason, "FailoverBlocked");
    assert!(
        message.starts_with("cache-0: terminating (deletion requested at 2026-01-01T00:00:00Z; its Redis runs until the kubelet stops it)"),
        "{message}"
    );
    assert!(message.contains("kubectl delete pod -n production cache-0 --force"));
    // The pod object is gone (the kubelet confirmed, or a force delete): proof.
    h.platform.remove_pod("production", "cache-0");
    let (_, calls) = h.step().await;
    assert!(kinds(&calls).contains(&"event FailingOver".to_string()));
    assert_eq!(h.topology("cache-1").role, Role::Primary);
}

// Path 6: both sides writable.

async fn promoted_dr() -> Harness {
    let mut h = Harness::new(DR);
    h.converge().await;
    h.rc.spec.replica_mode.as_mut().unwrap().promote = true;
    h.rc.metadata.generation = Some(2);
    for _ in 0..3 {
        h.step().await;
        h.report_all(5000);
    }
    h.step().await;
    assert_eq!(h.condition("ReplicaMode").1, "Promoted");
    h
}

#[tokio::test]
async fn a_former_source_still_writable_after_the_promotion_is_a_warning_and_a_metric() {
    let mut h = promoted_dr().await;
    h.platform.state.lock().unwrap().former_source = Some(FormerSource::Writable(
        "it is a primary without min-replicas-to-write".into(),
    ));
    let (outcome, calls) = h.step().await;
    assert_eq!(outcome.former_source_writable, Some(true));
    let (status, reason, message) = h.condition("FormerSourceWritable");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "AcceptsWrites")
    );
    assert!(message.starts_with("The former source prod-redis-us-east (prod-redis-leader.production.svc.cluster.local:6379) accepts writes"));
    assert_eq!(event_note(&calls, "FormerSourceWritable"), Some(message));
    let metrics = redis_operator::metrics::Metrics::default();
    let labels = redis_operator::metrics::ClusterLabels {
        cluster: "dr-redis".into(),
        namespace: "production".into(),
    };
    metrics.set_former_source(&labels, outcome.former_source_writable);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
    assert!(
        text.contains(
            "redis_operator_former_source_writable{cluster=\"dr-redis\",namespace=\"production\"} 1"
        ),
        "{text}"
    );
    h.platform.state.lock().unwrap().former_source = Some(FormerSource::NotWritable(
        "it is a replica of 10.1.0.4:6379".into(),
    ));
    let (outcome, calls) = h.step().await;
    assert_eq!(outcome.former_source_writable, Some(false));
    assert_eq!(h.condition("FormerSourceWritable").1, "RefusesWrites");
    assert!(event_note(&calls, "FormerSourceNotWritable").is_some());
}

#[tokio::test]
async fn the_former_source_is_asked_with_its_password_and_only_after_a_promotion() {
    let mut h = Harness::new(DR);
    h.converge().await;
    // Not promoted: never probed (a probe would fail: nothing listens there).
    assert!(
        h.rc.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.type_ != "FormerSourceWritable")
    );
    let mut h = promoted_dr().await;
    // Real probe, in the background: nothing answers at that host here.
    let mut seen = None;
    for _ in 0..50 {
        let (outcome, _) = h.step().await;
        assert_eq!(outcome.former_source_writable, None);
        seen =
            h.rc.status
                .as_ref()
                .unwrap()
                .conditions
                .iter()
                .find(|c| c.type_ == "FormerSourceWritable")
                .map(|c| (c.status.clone(), c.reason.clone()));
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        Some(("Unknown".to_string(), "NotReachable".to_string()))
    );
}

// Path 3 under Sentinel: the operator asks the Sentinels to fail over.

#[tokio::test]
async fn the_sentinels_are_asked_to_fail_over_a_primary_back_without_its_data() {
    let mut h = Harness::new(&format!("{STANDALONE}  mode: sentinel\n"));
    h.converge().await;
    for i in 0..3 {
        let pod = format!("cache-{i}");
        let mut r = h.platform.state.lock().unwrap().reports[&pod].clone();
        r.sentinel_primary = Some(format!(
            "{}:6379",
            names::pod_fqdn("cache", "production", "cache-0")
        ));
        r.sentinel_epoch = Some(0);
        if i == 0 {
            r.role = Some(ObservedRole::Primary);
            r.master_replid = Some("9999999999999999999999999999999999999999".into());
            r.keys = Some(0);
            r.fenced = true;
        } else {
            r.role = Some(ObservedRole::Replica);
        }
        h.platform.set_report(&pod, Some(r));
    }
    let (_, calls) = h.step().await;
    assert_eq!(h.condition("PrimaryAvailable").1, "DataLost");
    assert_eq!(h.topology("cache-0").role, Role::Fenced);
    assert_eq!(
        h.platform.state.lock().unwrap().sentinel_failovers,
        ["cache"]
    );
    // Nobody listens at the Sentinels' addresses here: the refusal is said once.
    let note = event_note(&calls, "SentinelFailover").unwrap();
    assert!(
        note.starts_with("Could not ask the Sentinels to fail over cache"),
        "{note}"
    );
    assert!(event_note(&calls, "PrimaryDataLost").is_some());
    let (_, calls) = h.step().await;
    assert!(event_note(&calls, "SentinelFailover").is_none());
    assert_eq!(h.platform.state.lock().unwrap().sentinel_failovers.len(), 2);
}

// A primary that restarted under a new replication history (Redis with appendonly).

const R: &str = "9999999999999999999999999999999999999999";

/// `pod`'s Redis restarted from its append-only file under history R: its instance manager
/// keeps it fenced and says so.
fn restarted(h: &Harness, pod: &str) {
    let mut r = h.platform.state.lock().unwrap().reports[pod].clone();
    let had = HistoryPosition {
        replid: H.into(),
        offset: 5000,
        keys: 10,
    };
    r.role = Some(ObservedRole::Primary);
    r.master_replid = Some(R.into());
    r.master_repl_offset = Some(0);
    r.repl_offset = Some(0);
    r.fenced = true;
    r.ready = false;
    r.recorded_history = Some(had.clone());
    r.restarted_primary = Some(PrimaryRestart {
        had,
        now: HistoryPosition {
            replid: R.into(),
            offset: 0,
            keys: 10,
        },
    });
    h.platform.set_report(pod, Some(r));
}

#[tokio::test]
async fn a_restarted_primary_is_failed_over_and_said_so() {
    let mut h = Harness::new(STANDALONE);
    h.converge().await;
    restarted(&h, "cache-0");
    let (_, calls) = h.step().await;
    assert_eq!(h.topology("cache-0").role, Role::Fenced);
    assert_eq!(h.topology("cache-1").role, Role::Primary);
    let fenced_first = kinds(&calls)
        .iter()
        .position(|k| k == "patch pod/cache-0")
        .unwrap();
    let promoted = kinds(&calls)
        .iter()
        .position(|k| k == "patch pod/cache-1")
        .unwrap();
    assert!(fenced_first < promoted, "{:?}", kinds(&calls));
    let restarted = event_note(&calls, "PrimaryRestarted").unwrap();
    assert!(
        restarted.starts_with("cache-0 restarted under a new replication history (now 999999999999@0, 10 keys; as primary it held 111111111111@5000, 10 keys)")
            && restarted.ends_with("failing over to cache-1 (replication offset 5000)"),
        "{restarted}"
    );
    assert!(event_note(&calls, "FailingOver").is_some());
    assert_eq!(h.condition("PrimaryAvailable").1, "FailingOver");
    assert_eq!(
        h.platform.pod("production", "cache-1").unwrap().labels["redis.io/role"],
        "primary"
    );
}

#[tokio::test]
async fn the_sentinels_are_asked_to_fail_over_a_restarted_primary() {
    let mut h = Harness::new(&format!("{STANDALONE}  mode: sentinel\n"));
    h.converge().await;
    for i in 0..3 {
        let pod = format!("cache-{i}");
        let mut r = h.platform.state.lock().unwrap().reports[&pod].clone();
        r.sentinel_primary = Some(format!(
            "{}:6379",
            names::pod_fqdn("cache", "production", "cache-0")
        ));
        r.sentinel_epoch = Some(0);
        r.role = Some(if i == 0 {
            ObservedRole::Primary
        } else {
            ObservedRole::Replica
        });
        h.platform.set_report(&pod, Some(r));
    }
    h.step().await;
    restarted(&h, "cache-0");
    let (_, calls) = h.step().await;
    assert_eq!(h.condition("PrimaryAvailable").1, "PrimaryRestarted");
    assert_eq!(h.topology("cache-0").role, Role::Fenced);
    assert_eq!(
        h.platform.state.lock().unwrap().sentinel_failovers,
        ["cache"]
    );
    assert!(event_note(&calls, "PrimaryRestarted").is_some());
    // Nobody listens at the Sentinels' addresses here: the refusal is said once.
    let note = event_note(&calls, "SentinelFailover").unwrap();
    assert!(
        note.starts_with("Could not ask the Sentinels to fail over cache"),
        "{note}"
    );
    let (_, calls) = h.step().await;
    assert!(event_note(&calls, "SentinelFailover").is_none());
}

#[tokio::test]
async fn a_single_instance_s_restart_is_accepted_through_its_topology() {
    let mut h = Harness::new(&STANDALONE.replace("instances: 3", "instances: 1"));
    h.converge().await;
    restarted(&h, "cache-0");
    let (_, calls) = h.step().await;
    let t = h.topology("cache-0");
    assert_eq!(
        (t.role, t.accept_history.as_deref()),
        (Role::Primary, Some(R))
    );
    assert!(event_note(&calls, "PrimaryRestarted").is_some());
    let status = h.rc.status.clone().unwrap();
    let accepted = status.accepted_restart.expect("status.acceptedRestart");
    assert_eq!(
        (accepted.pod.as_str(), accepted.replication_id.as_str()),
        ("cache-0", R)
    );
    assert_eq!(
        serde_json::to_value(&h.rc.status).unwrap()["acceptedRestart"]["formerReplicationId"],
        H
    );
}
