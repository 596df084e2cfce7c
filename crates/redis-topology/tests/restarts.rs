//! A Redis that restarts with its data under a new replication id (Redis 7.0 with `appendonly
//! yes`), as the planner sees it:
//!
//! - the primary of this operator's cluster: its instance manager keeps it fenced
//!   (`restartedPrimary` in its report), since its replicas may hold writes it lost; the planner
//!   fails over to the replica holding the most of its former history (standalone: the pod's
//!   own fenced report is the proof; sentinel mode: the Sentinels are asked), and when no other
//!   pod holds that history it accepts the restart (`acceptHistory` = its new id for every pod,
//!   until every replica follows it);
//! - a DR pod that followed a source which restarted with its data (its report's
//!   `sameDataResync`): a Warning Event, once; and a block whose data differs says so.
//!
//! Events are compared by their reason as the user sees it (strings), so this file also builds
//! against the planner before this change, where every test fails: the restarted primary is
//! `Available` and published primary, nothing is failed over or accepted, no Event is recorded.

mod world;
use world::*;

use redis_cluster_api::report::{DataSample, HistoryBlock, SameDataResync, UpstreamHistory};
use redis_cluster_api::topology::FENCE_MIN_REPLICAS;

/// This file's DR cluster has no passwords (no `authSecret`, no source `authSecretName`): it
/// shadows the shared `world::DR`, which has both.
const DR: &str = "storage: {size: 1Gi}
instances: 3
replicaMode:
  enabled: true
  source:
    host: prod-redis-leader.production.svc.cluster.local
    port: 6379
    clusterName: prod-redis-us-east
";

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

/// A standalone cluster with dr-redis-0 primary, every pod holding history H.
fn standalone_holding(offsets: [i64; 3]) -> World {
    let mut w = World::new(spec(STANDALONE));
    w.converge();
    for (i, offset) in offsets.into_iter().enumerate() {
        w.hold(&format!("dr-redis-{i}"), H, offset, 50);
    }
    w.report("dr-redis-0").role = Some(ObservedRole::Primary);
    w.reconcile();
    w
}

/// What the restart of dr-redis-0 (H@5000, 50 keys -> R@0, 50 keys) is called everywhere.
const RESTARTED: &str = "dr-redis-0 restarted under a new replication history (now 999999999999@0, 50 keys; as primary it held 111111111111@5000, 50 keys) and may lack writes of its last second that its replicas hold";

#[test]
fn a_restarted_primary_is_failed_over_to_the_replica_holding_the_most_of_its_history() {
    let mut w = standalone_holding([5000, 5000, 4990]);
    assert_eq!(w.current_primary(), Some("dr-redis-0"));
    w.restart("dr-redis-0", true);
    let p = w.reconcile();
    // Its own fenced report is the proof: fenced and replaced at once.
    assert_eq!(p.publish["dr-redis-0"].role, Role::Fenced);
    assert_eq!(p.publish["dr-redis-1"].role, Role::Primary, "the best copy");
    assert!(p.publish["dr-redis-0"].epoch < p.publish["dr-redis-1"].epoch);
    assert_eq!(p.role_labels["dr-redis-1"], "primary");
    assert_eq!(p.role_labels["dr-redis-0"], "replica");
    assert!(p.publish.values().all(|t| t.accept_history.is_none()));
    let (status, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "FailingOver"));
    assert_eq!(
        message,
        format!("{RESTARTED}; failing over to dr-redis-1 (replication offset 5000)")
    );
    assert_eq!(note(&p, "PrimaryRestarted"), message);
    assert_eq!(
        note(&p, "FailingOver"),
        format!(
            "{RESTARTED}: fencing it and promoting dr-redis-1 (highest replication offset, 5000)"
        )
    );
    // The new primary confirms: the restarted pod rejoins as its replica (its gate lets the
    // new primary through: its replid2 is the restarted pod's recorded history).
    w.apply("dr-redis-1");
    w.apply("dr-redis-0");
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-0"].role, Role::Replica);
    assert_eq!(
        p.publish["dr-redis-0"].upstream.as_ref().unwrap().host,
        "dr-redis-1.dr-redis-headless"
    );
    assert_eq!(w.current_primary(), Some("dr-redis-1"));
    assert!(reasons(&p).contains(&"Failover"));
    assert!(!reasons(&p).contains(&"PrimaryRestarted"), "said once");
}

#[test]
fn a_restarted_primary_not_fenced_yet_is_fenced_and_unlabelled_before_any_promotion() {
    let mut w = standalone_holding([5000, 5000, 4990]);
    // It booted with a configuration that no longer fences it; its instance manager fences it
    // on its next tick. Meanwhile: fence first, nothing else.
    w.restart("dr-redis-0", false);
    let p = w.reconcile();
    assert_eq!(p.publish.keys().collect::<Vec<_>>(), ["dr-redis-0"]);
    assert_eq!(p.publish["dr-redis-0"].role, Role::Fenced);
    assert!(p.role_labels.values().all(|r| *r == "replica"));
    let (status, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PrimaryRestarted")
    );
    assert_eq!(
        message,
        format!(
            "{RESTARTED}; fencing it and keeping it out of the -leader Service before a replica is promoted"
        )
    );
    assert_eq!(note(&p, "PrimaryRestarted"), message);
    w.apply("dr-redis-0");
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-1"].role, Role::Primary);
    assert!(!reasons(&p).contains(&"PrimaryRestarted"), "said once");
}

#[test]
fn a_restarted_primary_whose_replicas_are_far_behind_waits_for_the_users_choice() {
    let mut w = standalone_holding([10_000_000, 1_000_000, 1_000_000]);
    w.restart("dr-redis-0", true);
    // Its record is where it was as a primary.
    let r = w.report("dr-redis-0");
    let now = r.restarted_primary.as_ref().unwrap().now.clone();
    r.restarted_primary.as_mut().unwrap().had.offset = 10_000_000;
    r.recorded_history.as_mut().unwrap().offset = 10_000_000;
    let p = w.reconcile();
    assert_eq!(
        p.publish.keys().collect::<Vec<_>>(),
        ["dr-redis-0"],
        "nothing promoted"
    );
    assert_eq!(p.publish["dr-redis-0"].role, Role::Fenced, "held back");
    let (_, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!(reason, "PrimaryRestarted");
    assert!(
        message.contains("failover blocked: the best reachable replica dr-redis-1 is at offset 1000000 of replication history 111111111111, 9000000 bytes behind dr-redis-0 (offset 10000000)")
            && message.contains("redis.io/promote-pod=dr-redis-1")
            && message.ends_with(&format!(
                "; to let it take writes again with what it restarted with (losing what only its replicas hold): kubectl annotate rediscluster -n production dr-redis redis.io/accept-replication-history={}",
                now.replid
            )),
        "{message}"
    );
    assert_eq!(p.role_labels["dr-redis-0"], "replica", "held back");
    // The user accepts the restart: it takes writes again.
    w.extra.accept_history = Some(R.into());
    let r = w.report("dr-redis-0");
    r.restarted_primary = None;
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-0"].role, Role::Primary);
    assert_eq!(p.publish["dr-redis-0"].accept_history.as_deref(), Some(R));
}

#[test]
fn a_single_instance_restarted_primary_is_accepted_and_takes_writes_again() {
    let mut w = World::new(spec("storage: {size: 1Gi}\ninstances: 1\n"));
    w.converge();
    w.hold("dr-redis-0", H, 5000, 50);
    w.report("dr-redis-0").role = Some(ObservedRole::Primary);
    w.reconcile();
    w.restart("dr-redis-0", true);
    let p = w.reconcile();
    let t = &p.publish["dr-redis-0"];
    assert_eq!(
        (t.role, t.accept_history.as_deref()),
        (Role::Primary, Some(R))
    );
    assert_eq!(p.role_labels["dr-redis-0"], "primary");
    let (status, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PrimaryRestarted")
    );
    assert_eq!(
        message,
        format!(
            "{RESTARTED}; no other pod holds its former history 111111111111, so its restart is accepted (redis.io/accept-replication-history=999999999999 in every pod's topology): it takes writes again with what it restarted with, and its replicas resynchronise from it"
        )
    );
    assert_eq!(note(&p, "PrimaryRestarted"), message);
    let accepted = w.status.as_ref().unwrap().accepted_restart.clone().unwrap();
    assert_eq!(
        (
            accepted.pod.as_str(),
            accepted.replication_id.as_str(),
            accepted.former_replication_id.as_str()
        ),
        ("dr-redis-0", R, H)
    );
    // Its instance manager unfences it: available, and nothing left to accept.
    w.apply("dr-redis-0");
    let r = w.report("dr-redis-0");
    r.restarted_primary = None;
    r.error = None;
    let p = w.reconcile();
    assert_eq!(w.condition("PrimaryAvailable").unwrap().1, "Available");
    assert!(w.status.as_ref().unwrap().accepted_restart.is_none());
    assert_eq!(p.publish["dr-redis-0"].accept_history, None);
    assert!(!reasons(&p).contains(&"PrimaryRestarted"));
}

#[test]
fn when_no_replica_holds_its_former_history_the_restart_is_accepted_until_every_replica_follows() {
    let mut w = standalone_holding([5000, 5000, 4990]);
    // dr-redis-1 had been refusing an unrelated history for a while, dr-redis-2 is empty:
    // neither holds H.
    w.hold("dr-redis-1", OTHER, 700, 7);
    w.hold("dr-redis-2", H, 0, 0);
    w.report("dr-redis-2").master_replid = Some(R2.into());
    w.reconcile();
    w.restart("dr-redis-0", true);
    let p = w.reconcile();
    assert!(reasons(&p).contains(&"PrimaryRestarted"));
    assert!(!reasons(&p).contains(&"FailingOver"));
    // Leader first: its instance manager unfences it, then its replicas are told.
    assert_eq!(p.publish.keys().collect::<Vec<_>>(), ["dr-redis-0"]);
    assert_eq!(p.publish["dr-redis-0"].role, Role::Primary);
    assert_eq!(p.publish["dr-redis-0"].accept_history.as_deref(), Some(R));
    w.apply("dr-redis-0");
    let r = w.report("dr-redis-0");
    r.restarted_primary = None;
    r.error = None;
    r.ready = true;
    w.reconcile();
    assert_eq!(w.accepts(), vec![Some(R.to_string()); 3], "every pod");
    // Its first replica makes it start another id (its backlog is created then): the others
    // are told that id.
    w.apply_all();
    w.hold("dr-redis-0", R2, 100, 50);
    w.hold("dr-redis-1", R2, 100, 50);
    w.report("dr-redis-0").role = Some(ObservedRole::Primary);
    w.report("dr-redis-2").master_link_up = false;
    w.reconcile();
    w.apply("dr-redis-0");
    let p = w.reconcile();
    assert_eq!(
        w.accepts(),
        vec![Some(R2.to_string()); 3],
        "{:?}",
        p.publish
    );
    let (status, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Available"));
    assert_eq!(
        message,
        "dr-redis-0 answers; its restart under a new replication history was accepted (former history 111111111111): its replicas resynchronise from it"
    );
    // Every replica follows it: nothing is accepted any more.
    w.apply_all();
    w.hold("dr-redis-2", R2, 100, 50);
    w.report("dr-redis-2").master_link_up = true;
    w.reconcile();
    w.apply("dr-redis-0");
    let p = w.reconcile();
    assert_eq!(w.accepts(), vec![None; 3], "{:?}", p.publish);
    assert!(w.status.as_ref().unwrap().accepted_restart.is_none());
    assert_eq!(
        w.condition("PrimaryAvailable").unwrap().2,
        "dr-redis-0 answers"
    );
}

/// A sentinel-mode cluster whose Sentinels elected dr-redis-0, every pod holding H.
fn under_sentinels() -> World {
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
    w
}

#[test]
fn under_sentinel_a_restarted_primary_is_fenced_and_the_sentinels_are_asked_to_fail_over() {
    let mut w = under_sentinels();
    // It restarted before the Sentinels noticed: they still name it.
    w.restart("dr-redis-0", true);
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-0"].role, Role::Fenced);
    assert_eq!(
        p.publish["dr-redis-0"].min_replicas_to_write,
        FENCE_MIN_REPLICAS
    );
    assert!(p.role_labels.values().all(|r| *r == "replica"));
    assert_eq!(p.sentinel_failover.as_deref(), Some("dr-redis"));
    let (status, reason, message) = w.condition("PrimaryAvailable").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PrimaryRestarted")
    );
    assert_eq!(
        message,
        format!(
            "{RESTARTED}: kept fenced and out of the -leader Service; the Sentinels keep a primary that answers, so the operator asks them to fail over (SENTINEL FAILOVER dr-redis) to a replica that holds its former history (dr-redis-1, dr-redis-2)"
        )
    );
    assert_eq!(note(&p, "PrimaryRestarted"), message);
    // The Sentinels elect dr-redis-1: everything follows it, the restarted pod rejoins.
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
    assert!(w.accepts().iter().all(Option::is_none));
}

#[test]
fn under_sentinel_a_restarted_primary_no_replica_of_which_holds_its_history_is_accepted() {
    let mut w = under_sentinels();
    for i in 1..3 {
        let pod = format!("dr-redis-{i}");
        w.hold(&pod, OTHER, 0, 0);
    }
    w.reconcile();
    w.restart("dr-redis-0", true);
    let p = w.reconcile();
    assert_eq!(p.sentinel_failover, None, "nobody better to elect");
    assert_ne!(p.publish["dr-redis-0"].role, Role::Fenced);
    assert_eq!(w.accepts(), vec![Some(R.to_string()); 3]);
    assert_eq!(p.role_labels["dr-redis-0"], "primary");
    assert_eq!(
        w.condition("PrimaryAvailable").unwrap().1,
        "PrimaryRestarted"
    );
}

/// Accepting a restart needs positive knowledge: a replica that has not reported may hold the
/// former history, so the restarted primary stays fenced and the condition says who is awaited.
#[test]
fn a_restart_is_not_accepted_while_a_replica_has_not_reported() {
    for sentinel in [false, true] {
        let mut w = if sentinel {
            under_sentinels()
        } else {
            standalone_holding([5000, 5000, 4990])
        };
        w.hold("dr-redis-1", OTHER, 0, 0);
        w.hold("dr-redis-2", OTHER, 0, 0);
        w.reconcile();
        w.restart("dr-redis-0", true);
        w.pods.get_mut("dr-redis-2").unwrap().report = None;
        let p = w.reconcile();
        assert_eq!(
            w.accepts(),
            vec![None; 3],
            "sentinel {sentinel}: {:?}",
            p.publish
        );
        assert!(
            p.publish
                .get("dr-redis-0")
                .is_none_or(|t| t.accept_history.is_none()),
            "{:?}",
            p.publish
        );
        let (status, reason, message) = w.condition("PrimaryAvailable").unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "PrimaryRestarted")
        );
        assert!(
            message.contains("dr-redis-2 has not reported what it holds"),
            "{message}"
        );
    }
}

// A DR pod and a source that restarted with its data.

fn same_data_resync() -> SameDataResync {
    SameDataResync {
        ours: HistoryPosition {
            replid: H.into(),
            offset: 5000,
            keys: 50,
        },
        upstream: UpstreamHistory {
            address: "prod-redis-leader.production.svc.cluster.local:6379".into(),
            replid: R.into(),
            replid2: NO_ID.into(),
            offset: 14,
            second_offset: -1,
            keys: 49,
        },
        sample: DataSample {
            compared: 50,
            matched: 49,
            needed_percent: 90,
            error: None,
        },
        at: "2026-01-01T00:00:00Z".into(),
    }
}

#[test]
fn a_pod_that_followed_a_source_restarted_with_its_data_is_a_warning_once() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all();
    for i in 0..3 {
        w.hold(&format!("dr-redis-{i}"), H, 5000, 50);
    }
    w.reconcile();
    w.hold("dr-redis-0", R, 14, 49);
    w.report("dr-redis-0").same_data_resync = Some(same_data_resync());
    let p = w.reconcile();
    assert_eq!(
        note(&p, "SourceRestarted"),
        "dr-redis-0 resynchronised in full from prod-redis-leader.production.svc.cluster.local:6379 although it came back under another replication history (999999999999@14, 49 keys; dr-redis-0 held 111111111111@5000, 50 keys): 49 of 50 keys sampled on both sides match (98%, 90% needed), so it is the same data restarted under a new replication id (Redis with appendonly restarts under a new id). What the upstream lost in its restart (with appendfsync everysec, up to its last second of writes) is lost here too"
    );
    let st = serde_json::to_value(w.status.clone().unwrap()).unwrap();
    assert_eq!(st["instancesStatus"][0]["sameDataResync"], R);
    assert!(
        !reasons(&w.reconcile()).contains(&"SourceRestarted"),
        "once"
    );
}

#[test]
fn a_block_whose_data_differs_says_so() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all();
    for i in 0..3 {
        w.hold(&format!("dr-redis-{i}"), H, 5000, 50);
    }
    w.reconcile();
    let r = w.report("dr-redis-0");
    r.master_link_up = false;
    r.link_error = Some("upstream ... has an unrelated replication history".into());
    r.history_blocked = Some(HistoryBlock {
        ours: HistoryPosition {
            replid: H.into(),
            offset: 5000,
            keys: 50,
        },
        ours_recorded: true,
        upstream: same_data_resync().upstream,
        since: "2026-01-01T00:00:00Z".into(),
        sample: Some(DataSample {
            compared: 50,
            matched: 25,
            needed_percent: 90,
            error: None,
        }),
    });
    let p = w.reconcile();
    assert_eq!(
        note(&p, "UnrelatedHistory"),
        format!(
            "dr-redis-0 refuses prod-redis-leader.production.svc.cluster.local:6379's replication history 999999999999@14 (49 keys): it holds 111111111111@5000 (50 keys), which that history does not contain (and not the same data restarted under a new id: 25 of 50 keys sampled on both sides match (50%, 90% needed)), and keeps its data instead of replicating. To replace its data with the upstream's: kubectl annotate rediscluster -n production dr-redis redis.io/accept-replication-history={R}"
        )
    );
}

/// Issue 14 item 3 (docs/salvage.md): what a pod saved before a resync is a Warning Event once
/// per file, and stays in its status while its instance manager does not answer.
#[test]
fn a_salvage_is_a_warning_once_and_stays_in_the_status() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all();
    for i in 0..3 {
        w.hold(&format!("dr-redis-{i}"), H, 5000, 50);
    }
    w.reconcile();
    let salvage = redis_cluster_api::report::Salvage {
        kind: "tail".into(),
        file: "/var/lib/redis-instance-manager/salvage/20261128T120000Z-111111111111.resp".into(),
        bytes: 4096,
        keys: 300,
        commands: Some(301),
        replid: H.into(),
        from_offset: Some(881),
        to_offset: 4976,
        upstream: "prod-redis-leader.production.svc.cluster.local:6379".into(),
        upstream_replid: R.into(),
        at: "2026-11-28T12:00:00Z".into(),
    };
    w.report("dr-redis-1").salvage = Some(salvage.clone());
    let p = w.reconcile();
    assert_eq!(
        note(&p, "Salvaged"),
        "dr-redis-1 saved the 4096 bytes of replication history 111111111111 from offset 881 to 4976 that prod-redis-leader.production.svc.cluster.local:6379 never received: 301 commands writing 300 keys, before resynchronising from prod-redis-leader.production.svc.cluster.local:6379 (replication id 999999999999). File /var/lib/redis-instance-manager/salvage/20261128T120000Z-111111111111.resp in its instance-manager container; nothing is replayed: inspect and replay it as docs/salvage.md says"
    );
    let st = serde_json::to_value(w.status.clone().unwrap()).unwrap();
    assert_eq!(st["instancesStatus"][1]["salvage"]["keys"], 300);
    assert!(!reasons(&w.reconcile()).contains(&"Salvaged"), "once");
    // The instance manager stops answering: the status keeps the salvage, no new Event.
    let report = w.pods.get_mut("dr-redis-1").unwrap().report.take();
    assert!(!reasons(&w.reconcile()).contains(&"Salvaged"));
    let st = serde_json::to_value(w.status.clone().unwrap()).unwrap();
    assert_eq!(
        st["instancesStatus"][1]["salvage"]["file"],
        salvage.file.as_str()
    );
    // A new salvage (another file) is a new Event.
    w.pods.get_mut("dr-redis-1").unwrap().report = report;
    w.report("dr-redis-1").salvage = Some(redis_cluster_api::report::Salvage {
        kind: "snapshot".into(),
        file: "/var/lib/redis-instance-manager/salvage/x.rdb".into(),
        from_offset: None,
        commands: None,
        ..salvage
    });
    let p = w.reconcile();
    assert!(
        note(&p, "Salvaged").contains("a snapshot of its dataset (300 keys, 4096 bytes of RDB"),
        "{}",
        note(&p, "Salvaged")
    );
}

/// Issue 13 item 5 (docs/password-rotation.md): a rotation step that reached every pod is one
/// Normal Event, and each pod's status says which passwords it accepts; a pod that did not
/// answer for a moment is no new step.
#[test]
fn a_password_rotation_step_that_reached_every_pod_is_an_event_once() {
    const BOTH: &str = "password+previousPassword";
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all();
    let pods = ["dr-redis-0", "dr-redis-1", "dr-redis-2"];
    for p in pods {
        w.hold(p, H, 5000, 50);
        w.report(p).passwords = Some("password".into());
    }
    // The cluster's first status: nothing rotated.
    assert!(!reasons(&w.reconcile()).contains(&"PasswordRotation"));
    // Step 1 reaches the pods one by one (their kubelets sync at different times).
    w.report("dr-redis-0").passwords = Some(BOTH.into());
    assert!(!reasons(&w.reconcile()).contains(&"PasswordRotation"));
    let st = serde_json::to_value(w.status.clone().unwrap()).unwrap();
    assert_eq!(st["instancesStatus"][0]["passwords"], BOTH);
    assert_eq!(st["instancesStatus"][1]["passwords"], "password");
    w.report("dr-redis-1").passwords = Some(BOTH.into());
    w.report("dr-redis-2").passwords = Some(BOTH.into());
    let p = w.reconcile();
    assert_eq!(
        note(&p, "PasswordRotation"),
        "Every pod (3) accepts both the auth Secret's password and its previousPassword: move the clients to the new password, then remove previousPassword from the Secret to retire the old one (docs/password-rotation.md)"
    );
    assert!(
        !reasons(&w.reconcile()).contains(&"PasswordRotation"),
        "once"
    );
    // A pod's instance manager silent for a moment, then back: no new step.
    let report = w.pods.get_mut("dr-redis-1").unwrap().report.take();
    assert!(!reasons(&w.reconcile()).contains(&"PasswordRotation"));
    w.pods.get_mut("dr-redis-1").unwrap().report = report;
    assert!(!reasons(&w.reconcile()).contains(&"PasswordRotation"));
    // Step 3.
    for p in pods {
        w.report(p).passwords = Some("password".into());
    }
    let p = w.reconcile();
    assert_eq!(
        note(&p, "PasswordRotation"),
        "Every pod (3) accepts only the auth Secret's password: the previous password is retired"
    );
    assert!(
        !reasons(&w.reconcile()).contains(&"PasswordRotation"),
        "once"
    );
}
