//! Issue 12, the planner's decisions that depend on what the operator is told besides the pods'
//! reports (`Extra`: the user's annotations, the probe of the former source) and on what
//! Kubernetes says of a pod (`terminating`): the user's overrides, acceptHistory, a pod being
//! deleted, the Sentinels' primary back without its data, the former source still writable,
//! and bad annotations. (`data_safety.rs` holds the decisions `plan` alone makes.)

mod world;
use world::*;

use redis_cluster_api::topology::DesiredTopology;
use redis_topology::plan::PROMOTE_POD_ANNOTATION;
use redis_topology::{EventReason, FormerSource};

fn reasons(p: &Plan) -> Vec<EventReason> {
    p.events.iter().map(|e| e.reason).collect()
}

fn note(p: &Plan, reason: EventReason) -> String {
    p.events
        .iter()
        .find(|e| e.reason == reason)
        .unwrap_or_else(|| panic!("no {reason} event in {:?}", reasons(p)))
        .note
        .clone()
}

fn promote(w: &mut World) {
    w.spec.replica_mode.as_mut().unwrap().promote = true;
}

/// A DR cluster replicating the source, every pod reporting what it holds.
fn dr_holding(held: [(&str, i64, u64); 3]) -> World {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all();
    for (i, (replid, offset, keys)) in held.into_iter().enumerate() {
        w.hold(&format!("dr-redis-{i}"), replid, offset, keys);
    }
    w.reconcile();
    w
}

fn standalone_holding(offsets: [i64; 3]) -> World {
    let mut w = World::new(spec(STANDALONE));
    w.converge();
    for (i, offset) in offsets.into_iter().enumerate() {
        w.hold(&format!("dr-redis-{i}"), H, offset, offset as u64 / 100);
    }
    w.reconcile();
    w
}

/// The primary's Redis stopped (Kubernetes says so) and its sidecar does not answer.
fn kill(w: &mut World, pod: &str) {
    let p = w.pods.get_mut(pod).unwrap();
    p.report = None;
    p.redis_running = Some(false);
}

// Path 2: the user's choice.

#[test]
fn the_user_names_the_pod_to_promote() {
    let mut w = dr_holding([(H, 5000, 50), (H, 9000, 90), (H, 4000, 40)]);
    w.extra.promote_pod = Some("dr-redis-2".into());
    promote(&mut w);
    let p = w.reconcile();
    // The named pod as primary, the others chained to it in the same pass (published before it).
    assert_eq!(p.order.last().map(String::as_str), Some("dr-redis-2"));
    assert_eq!(p.publish["dr-redis-2"].role, Role::Primary);
    assert_eq!(p.publish.len(), 3);
    let (status, reason, message) = w.condition("PromotionTarget").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Chosen"));
    assert!(
        message.starts_with(&format!(
            "dr-redis-2 named by {PROMOTE_POD_ANNOTATION}: promoting it; the other pods resynchronise from it and lose what it lacks"
        )),
        "{message}"
    );
    assert!(note(&p, EventReason::Promoting).contains("named by redis.io/promote-pod"));
}

#[test]
fn an_override_naming_no_pod_is_reported_and_ignored() {
    let mut w = dr_holding([(H, 5000, 50), (H, 9000, 90), (H, 4000, 40)]);
    w.extra.promote_pod = Some("dr-redis-7".into());
    promote(&mut w);
    let p = w.reconcile();
    assert_eq!(p.order.last().map(String::as_str), Some("dr-redis-1"));
    assert_eq!(p.publish["dr-redis-1"].role, Role::Primary);
    assert_eq!(p.problems.len(), 1);
    assert_eq!(p.problems[0].reason, EventReason::InvalidAnnotation);
    assert_eq!(
        p.problems[0].message,
        "the annotation redis.io/promote-pod=dr-redis-7 names no pod of this cluster (its pods are dr-redis-0 to dr-redis-2): it is ignored"
    );
}

// Path 4: the user accepts the loss.

#[test]
fn a_blocked_failover_proceeds_when_the_user_names_the_replica() {
    let mut w = standalone_holding([10_000_000, 1_000_000, 900_000]);
    kill(&mut w, "dr-redis-0");
    w.reconcile();
    w.advance(11);
    assert!(w.reconcile().publish.is_empty());
    assert_eq!(
        w.condition("PrimaryAvailable").unwrap().1,
        "FailoverBlocked"
    );
    w.extra.promote_pod = Some("dr-redis-2".into());
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-0"].role, Role::Fenced);
    assert_eq!(p.publish["dr-redis-2"].role, Role::Primary);
    let failing_over = note(&p, EventReason::FailingOver);
    assert!(
        failing_over.contains("promoting dr-redis-2 (named by redis.io/promote-pod, replication offset 900000; 9100000 bytes behind dr-redis-0's offset 10000000: those writes are lost)"),
        "{failing_over}"
    );
}

#[test]
fn an_override_left_in_place_does_not_steer_an_unblocked_failover() {
    let mut w = standalone_holding([10_000_000, 10_000_000, 900_000]);
    // Left over from an earlier incident: dr-redis-2 (9 MB behind) named.
    w.extra.promote_pod = Some("dr-redis-2".into());
    kill(&mut w, "dr-redis-0");
    w.reconcile();
    w.advance(11);
    let p = w.reconcile();
    // Not blocked (dr-redis-1 is in sync): the override only lifts a block.
    assert_eq!(p.publish["dr-redis-1"].role, Role::Primary);
    assert!(!p.publish.contains_key("dr-redis-2"));
    assert_eq!(
        note(&p, EventReason::FailingOver),
        "dr-redis-0 unavailable for 12s (Kubernetes reports dr-redis-0's Redis container not running): fencing it and promoting dr-redis-1 (highest replication offset, 10000000)"
    );
}

// Path 3 under Sentinel, and accepting an empty primary.

#[test]
fn under_sentinel_an_empty_primary_is_fenced_unlabelled_and_the_sentinels_are_asked() {
    let mut w = World::new(spec(&format!("{STANDALONE}mode: sentinel\n")));
    w.converge();
    for i in 0..3 {
        let pod = format!("dr-redis-{i}");
        w.hold(&pod, H, 5000, 50);
        let r = w.report(&pod);
        r.sentinel_primary = Some("dr-redis-0.dr-redis-headless:6379".into());
        r.sentinel_epoch = Some(0);
    }
    w.report("dr-redis-0").role = Some(ObservedRole::Primary);
    w.reconcile();
    assert_eq!(w.condition("PrimaryAvailable").unwrap().1, "Available");
    // dr-redis-0 recreated empty before the Sentinels noticed: they still name it.
    w.hold("dr-redis-0", FRESH, 0, 0);
    let r = w.report("dr-redis-0");
    r.role = Some(ObservedRole::Primary);
    r.fenced = true;
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-0"].role, Role::Fenced);
    assert_eq!(
        p.publish["dr-redis-0"].min_replicas_to_write,
        redis_cluster_api::topology::FENCE_MIN_REPLICAS
    );
    assert!(p.role_labels.values().all(|r| *r == "replica"));
    let (status, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "DataLost"));
    assert!(
        message.ends_with("kept fenced and out of the -leader Service; the Sentinels keep a primary that answers, so the operator asks them to fail over (SENTINEL FAILOVER dr-redis) to a replica that holds the data"),
        "{message}"
    );
    assert_eq!(p.sentinel_failover.as_deref(), Some("dr-redis"));
    assert!(reasons(&p).contains(&EventReason::PrimaryDataLost));
    // The Sentinels elect dr-redis-1: everything follows it, the empty pod rejoins.
    for i in 0..3 {
        let r = w.report(&format!("dr-redis-{i}"));
        r.sentinel_primary = Some("dr-redis-1.dr-redis-headless:6379".into());
        r.sentinel_epoch = Some(1);
    }
    w.report("dr-redis-1").role = Some(ObservedRole::Primary);
    let p = w.reconcile();
    assert_eq!(p.leader, "dr-redis-1");
    assert_eq!(p.role_labels["dr-redis-1"], "primary");
    assert_eq!(p.sentinel_failover, None);
    assert_eq!(p.publish["dr-redis-0"].role, Role::Replica);
}

#[test]
fn accepting_the_empty_history_lets_the_empty_primary_take_writes() {
    let mut w = standalone_holding([5000, 5000, 4900]);
    w.hold("dr-redis-0", FRESH, 14, 0);
    w.report("dr-redis-0").role = Some(ObservedRole::Primary);
    w.reconcile();
    assert_eq!(w.condition("PrimaryAvailable").unwrap().1, "DataLost");
    assert!(
        w.condition("PrimaryAvailable")
            .unwrap()
            .2
            .contains("came back without its data")
    );
    w.extra.accept_history = Some(FRESH.into());
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-0"].role, Role::Primary);
    assert_eq!(
        p.publish["dr-redis-0"].accept_history.as_deref(),
        Some(FRESH)
    );
    // Leader first; then every topology carries the accepted id (the instance managers act
    // on it).
    w.apply("dr-redis-0");
    let p = w.reconcile();
    assert!(
        w.pods
            .values()
            .all(|p| p.published.as_ref().unwrap().accept_history.as_deref() == Some(FRESH)),
        "{:?}",
        p.publish.keys()
    );
    assert_eq!(w.condition("PrimaryAvailable").unwrap().1, "Available");
    assert_eq!(p.role_labels["dr-redis-0"], "primary");
}

// Path 5: Terminating is not dead.

#[test]
fn a_terminating_primary_whose_container_runs_is_no_proof() {
    let mut w = standalone_holding([5000, 5000, 4900]);
    // kubectl delete pod dr-redis-0 on a partitioned node: deletionTimestamp set, the
    // kubelet never confirms, the sidecar does not answer.
    let p0 = w.pods.get_mut("dr-redis-0").unwrap();
    p0.terminating = true;
    p0.report = None;
    p0.redis_running = Some(true);
    p0.problem = Some("terminating (deletion requested at 2026-01-01T00:00:00Z; its Redis runs until the kubelet stops it)".into());
    w.reconcile();
    w.advance(30);
    let p = w.reconcile();
    assert!(
        p.publish.is_empty(),
        "failed over without proof: {:?}",
        p.publish.keys()
    );
    let (_, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!(reason, "FailoverBlocked");
    assert!(
        message.contains("failover blocked: dr-redis-0 is being deleted, but its Redis runs until the kubelet stops it"),
        "{message}"
    );
    assert!(message.contains("kubectl delete pod -n production dr-redis-0 --force"));
    // The kubelet reports the container terminated: now it is proof.
    w.pods.get_mut("dr-redis-0").unwrap().redis_running = Some(false);
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-1"].role, Role::Primary);
}

#[test]
fn a_terminating_replica_is_never_the_one_promoted() {
    let mut w = standalone_holding([5000, 5000, 4900]);
    w.pods.get_mut("dr-redis-1").unwrap().terminating = true;
    kill(&mut w, "dr-redis-0");
    w.reconcile();
    w.advance(11);
    let p = w.reconcile();
    assert_eq!(
        p.publish.get("dr-redis-2").map(|t| t.role),
        Some(Role::Primary),
        "{:?}",
        p.publish
    );
}

#[test]
fn a_terminating_pod_s_data_is_waited_for_before_a_promotion_chooses() {
    let mut w = dr_holding([(H, 5000, 50), (H, 9000, 90), (H, 4000, 40)]);
    w.pods.get_mut("dr-redis-1").unwrap().terminating = true;
    promote(&mut w);
    assert!(w.reconcile().publish.is_empty());
    assert!(
        w.condition("PromotionTarget")
            .unwrap()
            .2
            .contains("dr-redis-1 unknown (being deleted)")
    );
}

// Path 6: both sides writable.

#[test]
fn a_former_source_that_still_takes_writes_is_a_warning_until_it_stops() {
    let mut w = dr_holding([(H, 5000, 50), (H, 5000, 50), (H, 5000, 50)]);
    promote(&mut w);
    w.reconcile();
    w.apply("dr-redis-0");
    w.reconcile();
    w.apply_all();
    w.reconcile();
    assert_eq!(w.condition("ReplicaMode").unwrap().1, "Promoted");
    w.extra.former_source = Some(FormerSource::Writable(
        "it is a primary without min-replicas-to-write".into(),
    ));
    let p = w.reconcile();
    let (status, reason, message) = w.condition("FormerSourceWritable").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "AcceptsWrites")
    );
    assert_eq!(
        message,
        "The former source prod-redis-us-east (prod-redis-leader.production.svc.cluster.local:6379) accepts writes (it is a primary without min-replicas-to-write) while this cluster is promoted: both regions take writes and their data diverge. Stop the writes there (fence it, or make it a replica of this cluster); what is written there is not on this cluster"
    );
    assert_eq!(note(&p, EventReason::FormerSourceWritable), message);
    assert_eq!(p.former_source_writable, Some(true));
    assert!(!reasons(&w.reconcile()).contains(&EventReason::FormerSourceWritable));
    w.extra.former_source = Some(FormerSource::NotWritable(
        "it is a replica of 10.0.0.7:6379".into(),
    ));
    let p = w.reconcile();
    assert_eq!(
        w.condition("FormerSourceWritable").unwrap().1,
        "RefusesWrites"
    );
    assert!(reasons(&p).contains(&EventReason::FormerSourceNotWritable));
    assert_eq!(p.former_source_writable, Some(false));
    w.extra.former_source = Some(FormerSource::Unreachable("no answer within 2s".into()));
    let p = w.reconcile();
    assert_eq!(w.condition("FormerSourceWritable").unwrap().0, "Unknown");
    assert_eq!(p.former_source_writable, None);
}

#[test]
fn the_link_message_is_the_instance_managers_own() {
    let mut w = dr_holding([(H, 5000, 50), (H, 5000, 50), (H, 5000, 50)]);
    w.reconcile();
    let moved = "source.host prod-redis-leader.production.svc.cluster.local:6379 now leads to a different primary (replication id 2222); this replica still streams from replication id 1111 (the primary it reached before the address moved, which may be partitioned away or gone): it follows the address again when that stream breaks";
    let r = w.report("dr-redis-2");
    r.master_link_up = false;
    r.link_error = Some(moved.into());
    w.reconcile();
    let (status, reason, message) = w.condition("SourceLinkUp").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "LinkDown"));
    assert!(
        message.ends_with(&format!("is down: dr-redis-2: {moved}")),
        "{message}"
    );
}

// Path 8: an absurd epoch is reported.

#[test]
fn an_absurd_epoch_is_reported_with_what_to_do() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all();
    let mut t: DesiredTopology = w.pods["dr-redis-1"].published.clone().unwrap();
    t.epoch = u64::MAX;
    w.pods.get_mut("dr-redis-1").unwrap().published = Some(t);
    let p = w.reconcile();
    assert_eq!(p.problems.len(), 1);
    assert_eq!(p.problems[0].reason, EventReason::InvalidAnnotation);
    assert!(
        p.problems[0].message.starts_with("dr-redis-1's topology annotation has epoch 18446744073709551615, which this operator never publishes"),
        "{}",
        p.problems[0].message
    );
    assert!(p.problems[0].message.ends_with("Delete the pod (kubectl delete pod -n production dr-redis-1): it comes back without the annotation and gets a fresh topology"));
    assert!(!p.publish.contains_key("dr-redis-1"));
}
