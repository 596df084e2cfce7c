//! Issue 12 ("never wipe, never pick a worse copy, never two writers, never a green status over a
//! loss"), the planner's decisions: what every pod holds (replication history, offset, keys)
//! decides which pod a promotion or a failover makes primary, and a primary back without its
//! data is never followed.
//!
//! Only `plan` and the instance reports are used here (no annotation, no probe), so this file
//! also builds against the planner before issue 12: there each test below fails (pod 0 promoted
//! whatever it holds, the empty primary published primary, the far-behind replica promoted, the
//! block shown as a plain LinkDown, the next epoch after `u64::MAX` overflowing).

mod world;
use world::*;

use redis_cluster_api::report::{HistoryBlock, UpstreamHistory};
use redis_cluster_api::topology::{DesiredTopology, UpstreamKind};

/// Event reasons as the user sees them (strings, so that this file also builds against the
/// planner before issue 12, whose enum lacks the new reasons).
fn reasons(p: &Plan) -> Vec<&'static str> {
    p.events.iter().map(|e| e.reason.as_str()).collect()
}

fn note(p: &Plan, reason: &str) -> String {
    p.events
        .iter()
        .find(|e| e.reason.as_str() == reason)
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

// ---------------------------------------------------------------------------------------------
// Data at risk (issue 14): what a promotion would lose while the source is silent.

/// Every DR pod's instance manager stops reading the source: link down, no upstream offset
/// this tick, the last reading kept (`lag_bytes` behind then, at `at`).
fn source_goes_silent(w: &mut World, lag_bytes: i64, at: &str) {
    for i in 0..3 {
        let r = w.report(&format!("dr-redis-{i}"));
        r.master_link_up = false;
        r.upstream_offset = None;
        r.link_error = Some("the source does not answer".into());
        r.upstream_last_seen = Some(redis_cluster_api::report::UpstreamContact {
            offset: 5000 + lag_bytes,
            replid: H.into(),
            lag_bytes: Some(lag_bytes),
            lag_seconds: Some(0.4),
            seconds_ago: 12.0,
            at: Some(at.into()),
        });
    }
}

#[test]
fn while_the_source_is_silent_the_status_and_the_promotion_events_say_what_is_at_risk() {
    let mut w = dr_holding([(H, 5000, 50), (H, 5000, 50), (H, 5000, 50)]);
    for i in 0..3 {
        w.report(&format!("dr-redis-{i}")).upstream_offset = Some(5000);
    }
    w.reconcile();
    assert_eq!(w.condition("SourceLinkUp").unwrap().0, "True");
    assert_eq!(
        w.status.as_ref().unwrap().data_at_risk,
        None,
        "link up: nothing"
    );

    source_goes_silent(&mut w, 1500, "2026-11-28T05:00:00Z");
    w.reconcile();
    assert_eq!(w.condition("SourceLinkUp").unwrap().0, "False");
    let risk = w
        .status
        .as_ref()
        .unwrap()
        .data_at_risk
        .clone()
        .expect("data at risk");
    let message = "dr-redis-0 was 1500 bytes (0.4 s of writes) behind the source when it last read it, at 2026-11-28T05:00:00Z: a promotion now loses those writes and every write the source accepted since";
    assert_eq!(
        risk,
        redis_cluster_api::DataAtRisk {
            pod: "dr-redis-0".into(),
            source_last_seen: Some("2026-11-28T05:00:00Z".into()),
            lag_bytes: Some(1500),
            lag_seconds: Some(0.4),
            message: message.into(),
        }
    );
    // Stable while the source stays silent (its age is in the metrics, not the status): the
    // status is not rewritten for it.
    let before = w.status.clone();
    w.advance(30);
    for i in 0..3 {
        w.report(&format!("dr-redis-{i}"))
            .upstream_last_seen
            .as_mut()
            .unwrap()
            .seconds_ago = 42.0;
    }
    w.reconcile();
    assert_eq!(
        w.status.as_ref().unwrap().without_readings(),
        before.unwrap().without_readings()
    );
    // The leader's instance manager restarts: what was known is kept.
    let report = w.pods.get_mut("dr-redis-0").unwrap().report.take();
    w.reconcile();
    assert_eq!(
        w.status.as_ref().unwrap().data_at_risk.as_ref(),
        Some(&risk)
    );
    w.pods.get_mut("dr-redis-0").unwrap().report = report;

    // Promoted while silent: both Events record it, and the status keeps it afterwards.
    promote(&mut w);
    let p = w.reconcile();
    let promoting = note(&p, "Promoting");
    assert!(
        promoting.ends_with(&format!("; data at risk: {message}")),
        "{promoting}"
    );
    let mut promoted = None;
    for _ in 0..6 {
        w.apply_all();
        for i in 0..3 {
            w.report(&format!("dr-redis-{i}")).upstream_last_seen = None;
        }
        let p = w.reconcile();
        if let Some(e) = p.events.iter().find(|e| e.reason.as_str() == "Promoted") {
            promoted = Some(e.note.clone());
        }
    }
    let promoted = promoted.expect("a Promoted event");
    assert!(
        promoted.ends_with(&format!("; data at risk when it was promoted: {message}")),
        "{promoted}"
    );
    assert_eq!(w.condition("ReplicaMode").unwrap().1, "Promoted");
    assert_eq!(
        w.status.as_ref().unwrap().data_at_risk.as_ref(),
        Some(&risk),
        "the record of what the promotion lost stays"
    );
}

#[test]
fn a_source_that_answers_while_the_link_is_down_puts_nothing_at_risk_in_the_status() {
    // A first sync, a refused history, a local Redis that cannot be read: the link is down but
    // the source's offset is read every tick, so the loss is the pod's measured lag (its
    // status and metrics), not an unknown.
    let mut w = dr_holding([(H, 5000, 50), (H, 5000, 50), (H, 5000, 50)]);
    source_goes_silent(&mut w, 1500, "2026-11-28T05:00:00Z");
    w.report("dr-redis-0").upstream_offset = Some(6500);
    w.reconcile();
    assert_eq!(w.condition("SourceLinkUp").unwrap().0, "False");
    assert_eq!(w.status.as_ref().unwrap().data_at_risk, None);
    // Only the leader's reading counts: another pod's silence is not the promotion's loss.
    w.report("dr-redis-0").upstream_offset = None;
    w.report("dr-redis-1").upstream_offset = Some(6500);
    w.reconcile();
    assert_eq!(
        w.status
            .as_ref()
            .unwrap()
            .data_at_risk
            .as_ref()
            .map(|r| r.pod.as_str()),
        Some("dr-redis-0")
    );
}

// ---------------------------------------------------------------------------------------------
// Path 2: promotion picks the best copy.

/// The pods a promotion pass publishes: every other pod as a replica of the leader first
/// (chained to it while it still replicates the source, so none goes on past its promotion
/// point), then the leader, last, as primary: see rule 2 in plan.rs. Returns the published pods,
/// the leader first.
fn chained_promotion(p: &redis_topology::Plan, leader: &str) -> Vec<String> {
    assert_eq!(
        p.order.last().map(String::as_str),
        Some(leader),
        "the leader last"
    );
    assert_eq!(p.publish[leader].role, Role::Primary);
    for (pod, t) in &p.publish {
        if pod != leader {
            let u = t.upstream.as_ref().unwrap();
            assert_eq!(u.kind, UpstreamKind::Peer, "{pod}");
            assert!(
                u.host.starts_with(&format!("{leader}.")),
                "{pod}: {}",
                u.host
            );
        }
    }
    let mut published: Vec<String> = p.publish.keys().cloned().collect();
    published.sort_by_key(|pod| pod != leader);
    published
}

#[test]
fn promotion_makes_the_pod_holding_the_most_data_primary_not_pod_0() {
    // dr-redis-0's link was down for a while: it is 4000 bytes behind its peers.
    let mut w = dr_holding([(H, 1000, 10), (H, 5000, 50), (H, 4000, 40)]);
    promote(&mut w);
    let p = w.reconcile();
    assert_eq!(
        chained_promotion(&p, "dr-redis-1"),
        ["dr-redis-1", "dr-redis-0", "dr-redis-2"],
        "pod 0 holds less than dr-redis-1"
    );
    assert_eq!(p.leader, "dr-redis-1");
    assert_eq!(p.role_labels["dr-redis-1"], "primary");
    assert_eq!(p.role_labels["dr-redis-0"], "replica");
    let (status, reason, message) = w.condition("PromotionTarget").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Chosen"));
    assert!(
        message.starts_with("dr-redis-1 holds every reporting pod's data: promoting it"),
        "{message}"
    );
    assert!(
        message.contains("dr-redis-0 111111111111@1000, 10 keys"),
        "{message}"
    );
    let promoting = note(&p, "Promoting");
    assert!(
        promoting.starts_with("Promoting dr-redis-1 to standalone primary (REPLICAOF NO ONE)")
            && promoting.contains("dr-redis-1 holds the most data (111111111111@5000, 50 keys)"),
        "{promoting}"
    );
    // Chained: the others replicate dr-redis-1 from this pass on, so none goes on past its
    // promotion point even while the source is alive.
    for pod in ["dr-redis-0", "dr-redis-2"] {
        let u = p.publish[pod].upstream.as_ref().unwrap();
        assert_eq!(u.host, "dr-redis-1.dr-redis-headless", "{pod}");
    }
    w.apply_all();
    let p = w.reconcile();
    let st = w.status.clone().unwrap();
    assert_eq!(st.current_primary.as_deref(), Some("dr-redis-1"));
    assert_eq!(w.condition("ReplicaMode").unwrap().1, "Promoted");
    assert!(reasons(&p).contains(&"Promoted"));
    let p = w.reconcile();
    assert!(p.publish.is_empty(), "{:?}", p.publish.keys());
    assert_eq!(p.leader, "dr-redis-1", "the choice is remembered");
    assert_eq!(w.primaries(), ["dr-redis-1"]);
}

#[test]
fn an_empty_pod_0_is_never_promoted_over_peers_that_hold_the_data() {
    // dr-redis-0 lost its volume and came back empty with a fresh history.
    let mut w = dr_holding([(FRESH, 0, 0), (H, 5000, 50), (H, 5000, 50)]);
    promote(&mut w);
    let p = w.reconcile();
    assert_eq!(
        chained_promotion(&p, "dr-redis-1"),
        ["dr-redis-1", "dr-redis-0", "dr-redis-2"]
    );
}

#[test]
fn pod_0_still_leads_when_it_holds_everything() {
    let mut w = dr_holding([(H, 5000, 50), (H, 5000, 50), (H, 4000, 40)]);
    promote(&mut w);
    let p = w.reconcile();
    assert_eq!(
        chained_promotion(&p, "dr-redis-0"),
        ["dr-redis-0", "dr-redis-1", "dr-redis-2"]
    );
    assert_eq!(
        note(&p, "Promoting"),
        "Promoting dr-redis-0 to standalone primary (REPLICAOF NO ONE); former source: prod-redis-us-east"
    );
}

#[test]
fn an_unreachable_pod_0_delays_promotion_a_bounded_time_then_the_best_copy_is_promoted() {
    let mut w = dr_holding([(H, 9000, 90), (H, 5000, 50), (H, 4000, 40)]);
    w.pods.get_mut("dr-redis-0").unwrap().report = None;
    promote(&mut w);
    for _ in 0..3 {
        let p = w.reconcile();
        assert!(
            p.publish.is_empty(),
            "promoted without hearing from dr-redis-0: {:?}",
            p.publish
        );
        assert!(p.in_progress);
        w.advance(5);
    }
    let (status, reason, message) = w.condition("PromotionTarget").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "WaitingForReports")
    );
    assert!(
        message.starts_with("Waiting for dr-redis-0 to report what it holds before choosing the pod to promote (at most 30s, so far 1"),
        "{message}"
    );
    assert!(
        message.contains(
            "kubectl annotate rediscluster -n production dr-redis redis.io/promote-pod=<pod>"
        ),
        "{message}"
    );
    assert!(
        w.condition("ReplicaMode")
            .unwrap()
            .2
            .contains("waiting for every pod to report")
    );
    w.advance(20);
    let p = w.reconcile();
    assert_eq!(
        chained_promotion(&p, "dr-redis-1"),
        ["dr-redis-1", "dr-redis-0", "dr-redis-2"],
        "after 30 s the best reachable copy (the silent pod is told too)"
    );
    let promoting = note(&p, "Promoting");
    assert!(
        promoting.contains("dr-redis-0 did not report within 30s"),
        "{promoting}"
    );
    assert!(promoting.contains("dr-redis-0 unknown (instance manager not reachable)"));
}

#[test]
fn diverged_histories_wait_for_the_users_choice() {
    let mut w = dr_holding([(H, 5000, 50), (H, 1000, 10), (H, 1000, 10)]);
    // dr-redis-1 followed a failover of the source at offset 3000 of H (its replid2) and went
    // on to 9000 in the new history; dr-redis-0 holds H up to 5000, which it never got.
    let r = w.report("dr-redis-1");
    r.master_replid = Some(OTHER.into());
    r.master_replid2 = Some(H.into());
    r.second_repl_offset = Some(3001);
    r.master_repl_offset = Some(9000);
    r.keys = Some(90);
    promote(&mut w);
    let p = w.reconcile();
    assert!(p.publish.is_empty(), "{:?}", p.publish.keys());
    let (status, reason, message) = w.condition("PromotionTarget").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NeedsChoice"));
    assert!(
        message.starts_with(
            "No pod holds every other pod's data (their replication histories diverge)"
        ),
        "{message}"
    );
    assert!(reasons(&p).contains(&"PromotionBlocked"));
    // Warned once.
    assert!(!reasons(&w.reconcile()).contains(&"PromotionBlocked"));
}

#[test]
fn a_syncing_best_copy_is_waited_for_not_skipped() {
    let mut w = dr_holding([(H, 1000, 10), (H, 5000, 50), (H, 4000, 40)]);
    w.report("dr-redis-1").sync_in_progress = true;
    promote(&mut w);
    let p = w.reconcile();
    assert!(p.publish.is_empty(), "{:?}", p.publish.keys());
    assert!(
        w.condition("ReplicaMode")
            .unwrap()
            .2
            .contains("waiting for dr-redis-1 to finish its sync")
    );
    w.report("dr-redis-1").sync_in_progress = false;
    let p = w.reconcile();
    assert_eq!(
        chained_promotion(&p, "dr-redis-1"),
        ["dr-redis-1", "dr-redis-0", "dr-redis-2"]
    );
}

// ---------------------------------------------------------------------------------------------
// Path 3: an empty recreated primary never becomes everyone's sync source.

/// A standalone cluster with dr-redis-0 primary, every pod holding history H.
fn standalone_holding(offsets: [i64; 3]) -> World {
    let mut w = World::new(spec(STANDALONE));
    w.converge();
    for (i, offset) in offsets.into_iter().enumerate() {
        w.hold(&format!("dr-redis-{i}"), H, offset, offset as u64 / 100);
    }
    w.reconcile();
    w
}

#[test]
fn a_primary_recreated_without_its_data_is_failed_over_not_followed() {
    let mut w = standalone_holding([5000, 5000, 4900]);
    assert_eq!(
        w.status.as_ref().unwrap().current_primary.as_deref(),
        Some("dr-redis-0")
    );
    // dr-redis-0's volume is replaced: the pod comes back without annotation, its Redis empty
    // under a new history, booted fenced; its instance manager has no record (the state file
    // went with the volume).
    *w.pods.get_mut("dr-redis-0").unwrap() = PodView {
        address: "dr-redis-0.dr-redis-headless".into(),
        ..Default::default()
    };
    w.hold("dr-redis-0", FRESH, 0, 0);
    let r = w.report("dr-redis-0");
    r.role = Some(ObservedRole::Primary);
    r.fenced = true;
    let p = w.reconcile();
    assert_ne!(
        p.publish.get("dr-redis-0").map(|t| t.role),
        Some(Role::Primary),
        "the empty pod was published primary"
    );
    assert_eq!(p.publish["dr-redis-0"].role, Role::Fenced);
    assert_eq!(
        p.publish["dr-redis-1"].role,
        Role::Primary,
        "the best replica"
    );
    assert!(p.publish["dr-redis-0"].epoch < p.publish["dr-redis-1"].epoch);
    assert_eq!(p.role_labels["dr-redis-1"], "primary");
    assert_eq!(p.role_labels["dr-redis-0"], "replica");
    let failing_over = note(&p, "FailingOver");
    assert!(
        failing_over.starts_with("dr-redis-0 came back without its data (now empty, replication history 999999999999; it last reported 111111111111@5000, 50 keys): fencing it and promoting dr-redis-1"),
        "{failing_over}"
    );
    let (_, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!(reason, "FailingOver");
    assert!(message.contains("came back without its data"), "{message}");
    // The new primary confirms: the empty pod rejoins as its replica (a full sync of nothing
    // lost), the others follow it.
    w.apply("dr-redis-1");
    w.apply("dr-redis-0");
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-0"].role, Role::Replica);
    assert_eq!(
        p.publish["dr-redis-0"].upstream.as_ref().unwrap().host,
        "dr-redis-1.dr-redis-headless"
    );
    assert_eq!(
        w.status.as_ref().unwrap().current_primary.as_deref(),
        Some("dr-redis-1")
    );
}

#[test]
fn an_empty_primary_that_lifted_its_fence_is_fenced_and_unlabelled_before_any_promotion() {
    let mut w = standalone_holding([5000, 5000, 4900]);
    // dr-redis-0's data directory was emptied under a running pod; its annotation survives and
    // its instance manager (no record) made it a writable primary again. Its replicas refuse its
    // unrelated history and keep their data.
    w.hold("dr-redis-0", FRESH, 14, 0);
    let r = w.report("dr-redis-0");
    r.role = Some(ObservedRole::Primary);
    r.fenced = false;
    let p = w.reconcile();
    assert_eq!(
        p.publish.keys().collect::<Vec<_>>(),
        ["dr-redis-0"],
        "fence first, nothing else"
    );
    assert_eq!(p.publish["dr-redis-0"].role, Role::Fenced);
    assert!(
        p.role_labels.values().all(|r| *r == "replica"),
        "the -leader Service must not lead to the empty primary: {:?}",
        p.role_labels
    );
    let (status, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "DataLost"));
    assert!(
        message.starts_with("dr-redis-0 came back without its data (now empty, replication history 999999999999; it last reported 111111111111@5000, 50 keys)"),
        "{message}"
    );
    assert!(message.ends_with(
        "fencing it and keeping it out of the -leader Service before a replica is promoted"
    ));
    assert_eq!(
        note(&p, "PrimaryDataLost"),
        message,
        "a Warning Event says the same"
    );
    // The fence is in place: now the best replica is promoted.
    w.apply("dr-redis-0");
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-1"].role, Role::Primary);
    assert!(reasons(&p).contains(&"FailingOver"));
    assert_eq!(w.primaries(), ["dr-redis-1"]);
}

#[test]
fn a_primary_that_merely_flushed_its_keys_is_no_data_loss() {
    // FLUSHALL on the primary: empty, same history, ahead of its replicas.
    let mut w = standalone_holding([5000, 4990, 4980]);
    w.hold("dr-redis-0", H, 5100, 0);
    w.report("dr-redis-0").role = Some(ObservedRole::Primary);
    let p = w.reconcile();
    assert!(p.publish.is_empty(), "{:?}", p.publish.keys());
    assert_eq!(w.condition("PrimaryAvailable").unwrap().1, "Available");
    assert_eq!(p.role_labels["dr-redis-0"], "primary");
}

// ---------------------------------------------------------------------------------------------
// Path 4: failover to a replica far behind.

/// dr-redis-0 dies (Kubernetes reports its container stopped) and at that moment dr-redis-1's
/// instance manager stops answering; past the failover delay the only reachable replica is
/// dr-redis-2, far behind: the failover must be blocked. Returns the plan and the message.
fn primary_dies_while_dr_redis_1_is_silent(w: &mut World) -> (Plan, String) {
    w.pods.get_mut("dr-redis-0").unwrap().report = None;
    w.pods.get_mut("dr-redis-0").unwrap().redis_running = Some(false);
    w.pods.get_mut("dr-redis-1").unwrap().report = None;
    w.reconcile();
    w.advance(11);
    let p = w.reconcile();
    assert!(
        p.publish.is_empty(),
        "promoted a replica 9 MB behind: {:?}",
        p.publish.keys()
    );
    let (_, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!(reason, "FailoverBlocked");
    (p, message)
}

#[test]
fn failover_waits_for_a_silent_close_replica_rather_than_promote_one_far_behind() {
    // dr-redis-2 lost its link an hour ago: 9 MB behind. dr-redis-1 is in sync.
    let mut w = standalone_holding([10_000_000, 9_999_000, 1_000_000]);
    w.report("dr-redis-2").master_link_up = false;
    let (p, message) = primary_dies_while_dr_redis_1_is_silent(&mut w);
    assert!(
        message.contains("failover blocked: the best reachable replica dr-redis-2 is at offset 1000000 of replication history 111111111111, 9000000 bytes behind dr-redis-0 (offset 10000000): promoting it would lose those writes (failover.maxLagBytes: 1048576)"),
        "{message}"
    );
    assert!(
        message.contains("redis.io/promote-pod=dr-redis-2"),
        "{message}"
    );
    assert_eq!(note(&p, "FailoverBlocked"), message, "reported before");
    let st = serde_json::to_value(w.status.clone().unwrap()).unwrap();
    let silent = st["instancesStatus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "dr-redis-1")
        .unwrap()
        .clone();
    assert_eq!(
        (&silent["replicationId"], &silent["replicationOffset"]),
        (&serde_json::json!(H), &serde_json::json!(9_999_000)),
        "what a silent pod held is kept from its last report"
    );
    // dr-redis-1's sidecar is back: it is promoted.
    w.hold("dr-redis-1", H, 9_999_000, 99_990);
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-1"].role, Role::Primary);
    let failing_over = note(&p, "FailingOver");
    assert!(
        failing_over.contains("promoting dr-redis-1 (highest replication offset, 9999000; 1000 bytes behind dr-redis-0's offset 10000000: those writes are lost)"),
        "{failing_over}"
    );
}

/// The status is not rewritten for offsets alone (issue 16): what it remembers of a primary can
/// be minutes old. The replicas' instance managers read the primary's offset every second and
/// keep the last reading when it goes silent: that reading bounds what a failover loses.
#[test]
fn a_replicas_last_reading_of_the_dead_primary_counts_when_the_status_is_old() {
    // Remembered: dr-redis-0 at 5 MB. Then it took 5 MB more, which dr-redis-1 received and
    // dr-redis-2 (stalled) did not: only dr-redis-2's instance manager's reading of the
    // primary says so.
    let mut w = standalone_holding([5_000_000, 4_999_000, 1_000_000]);
    w.reconcile();
    let primary_at = format!("{}:6379", w.pods["dr-redis-0"].address);
    {
        let r = w.report("dr-redis-2");
        r.upstream = Some(primary_at.clone());
        r.upstream_last_seen = Some(redis_cluster_api::report::UpstreamContact {
            offset: 10_000_000,
            replid: H.into(),
            lag_bytes: None,
            lag_seconds: None,
            seconds_ago: 1.0,
            at: None,
        });
    }
    let (_, message) = primary_dies_while_dr_redis_1_is_silent(&mut w);
    assert!(
        message.contains("dr-redis-2 is at offset 1000000 of replication history 111111111111, 9000000 bytes behind dr-redis-0 (offset 10000000)"),
        "{message}"
    );
    // A reading of another history (or of another upstream) says nothing about this one.
    w.report("dr-redis-2")
        .upstream_last_seen
        .as_mut()
        .unwrap()
        .replid = "other".into();
    let p = w.reconcile();
    assert!(p.publish.is_empty(), "the status still remembers 5 MB");
    assert!(
        w.condition("PrimaryAvailable")
            .unwrap()
            .2
            .contains("behind dr-redis-0 (offset 5000000)"),
        "{:?}",
        w.condition("PrimaryAvailable")
    );
}

#[test]
fn the_lag_bound_is_the_users() {
    let mut w = standalone_holding([10_000_000, 1_000_000, 1_000_000]);
    w.spec = spec("storage: {size: 1Gi}\ninstances: 3\nfailover: {maxLagBytes: 100000000}\n");
    w.pods.get_mut("dr-redis-0").unwrap().report = None;
    w.pods.get_mut("dr-redis-0").unwrap().redis_running = Some(false);
    w.reconcile();
    w.advance(11);
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-1"].role, Role::Primary);
    assert!(
        note(&p, "FailingOver")
            .contains("9000000 bytes behind dr-redis-0's offset 10000000: those writes are lost")
    );
}

// ---------------------------------------------------------------------------------------------
// Paths 1 and 6 as the operator shows them: a pod refusing its upstream's history.

#[test]
fn a_pod_refusing_an_unrelated_source_history_is_a_warning_with_the_way_to_accept() {
    let mut w = dr_holding([(H, 5000, 50), (H, 5000, 50), (H, 5000, 50)]);
    w.reconcile();
    assert_eq!(w.condition("SourceLinkUp").unwrap().0, "True");
    // The source came back empty on the same address: dr-redis-0's instance manager refuses it.
    let r = w.report("dr-redis-0");
    r.master_link_up = false;
    r.ready = false;
    r.link_error = Some("upstream ... has an unrelated replication history".into());
    r.history_blocked = Some(HistoryBlock {
        ours: HistoryPosition {
            replid: H.into(),
            offset: 5000,
            keys: 50,
        },
        ours_recorded: true,
        upstream: UpstreamHistory {
            address: "prod-redis-leader.production.svc.cluster.local:6379".into(),
            replid: FRESH.into(),
            replid2: "0000000000000000000000000000000000000000".into(),
            offset: 14,
            second_offset: -1,
            keys: 0,
        },
        since: "2026-01-01T00:00:00Z".into(),
        ..Default::default()
    });
    let p = w.reconcile();
    let (status, reason, message) = w.condition("SourceLinkUp").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "UnrelatedHistory")
    );
    let expected = format!(
        "dr-redis-0 refuses prod-redis-leader.production.svc.cluster.local:6379's replication history 999999999999@14 (0 keys): it holds 111111111111@5000 (50 keys), which that history does not contain, and keeps its data instead of replicating. To replace its data with the upstream's: kubectl annotate rediscluster -n production dr-redis redis.io/accept-replication-history={FRESH}"
    );
    assert_eq!(
        message,
        format!(
            "Link to prod-redis-us-east (prod-redis-leader.production.svc.cluster.local:6379) is down: {expected}"
        )
    );
    assert_eq!(note(&p, "UnrelatedHistory"), expected);
    assert!(reasons(&p).contains(&"SourceLinkDown"));
    // Once, not at every reconcile.
    assert!(!reasons(&w.reconcile()).contains(&"UnrelatedHistory"));
}

// ---------------------------------------------------------------------------------------------
// Path 8: a hand-written topology annotation with the largest epoch.

#[test]
fn an_annotation_with_the_largest_epoch_neither_wraps_nor_blocks_the_others() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all();
    w.reconcile();
    let mut t: DesiredTopology = w.pods["dr-redis-1"].published.clone().unwrap();
    t.epoch = u64::MAX;
    w.pods.get_mut("dr-redis-1").unwrap().published = Some(t);
    // dr-redis-2 is recreated: it needs a fresh topology, above every real epoch.
    *w.pods.get_mut("dr-redis-2").unwrap() = PodView {
        address: "dr-redis-2.dr-redis-headless".into(),
        ..Default::default()
    };
    for _ in 0..3 {
        let p = w.reconcile();
        assert!(
            !p.publish.contains_key("dr-redis-1"),
            "wrote over the hand-written annotation"
        );
        if let Some(t) = p.publish.get("dr-redis-2") {
            assert!(t.epoch < 1 << 53, "epoch {}", t.epoch);
            assert!(t.epoch >= 2);
        }
    }
    assert!(w.pods["dr-redis-2"].published.as_ref().unwrap().epoch < 100);
}
