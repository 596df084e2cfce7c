//! Issue 14 item 1, the planner's side of a planned switchover (docs/switchover.md): the side
//! being promoted waits for a pod that holds the promotion token and refuses a token of another
//! history; the demoted side publishes its token. The instance manager's side (a demoted
//! primary waits instead of replicating its own replica) is `history.rs`'s table; the whole
//! switchover on real Redis and a real API server is the drill's step 7.

mod world;
use world::*;

fn reasons(p: &Plan) -> Vec<&'static str> {
    p.events.iter().map(|e| e.reason.as_str()).collect()
}

fn token(offset: i64) -> String {
    format!("{H}:{offset}")
}

/// A DR cluster replicating the source, every pod in history `H` at `offsets`.
fn dr_at(offsets: [i64; 3]) -> World {
    let mut w = World::new(spec(DR));
    w.converge();
    for (i, off) in offsets.into_iter().enumerate() {
        w.hold(&format!("dr-redis-{i}"), H, off, 10);
    }
    w.reconcile();
    w
}

fn promote_with(w: &mut World, token: Option<String>) {
    let rm = w.spec.replica_mode.as_mut().unwrap();
    rm.promote = true;
    rm.promotion_token = token;
}

#[test]
fn the_promotion_waits_for_a_pod_holding_the_token_then_promotes_that_pod() {
    let mut w = dr_at([900, 950, 800]);
    promote_with(&mut w, Some(token(1000)));
    let p = w.reconcile();
    assert!(
        w.primaries().is_empty(),
        "nothing promoted before the token"
    );
    assert!(
        p.publish.values().all(|t| t.primary.is_none()),
        "{:?}",
        p.publish
    );
    let (status, reason, message) = w.condition("Switchover").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "WaitingForToken")
    );
    assert!(
        message.contains("dr-redis-1 follows its history but is 50 bytes short of it"),
        "{message}"
    );
    let (_, reason, _) = w.condition("PromotionTarget").unwrap();
    assert_eq!(reason, "WaitingForPromotionToken");
    let (_, reason, message) = w.condition("ReplicaMode").unwrap();
    assert_eq!(reason, "Promoting");
    assert!(message.contains("planned switchover"), "{message}");

    // Not reached within the bound: the condition says so (once, with a Warning), still no
    // promotion.
    w.advance(61);
    let p = w.reconcile();
    let (status, reason, message) = w.condition("Switchover").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "TokenNotReached")
    );
    assert!(
        message.contains("nothing is promoted without it"),
        "{message}"
    );
    assert_eq!(
        reasons(&p)
            .iter()
            .filter(|r| **r == "SwitchoverBlocked")
            .count(),
        1
    );
    assert!(w.primaries().is_empty());
    let p = w.reconcile();
    assert!(!reasons(&p).contains(&"SwitchoverBlocked"), "said once");

    // dr-redis-2 (not the designated leader) reaches the token first, long after the
    // promotion was asked for (the 5 s given to pod 0 are long gone): it is the one promoted.
    w.hold("dr-redis-2", H, 1000, 10);
    let p = w.reconcile();
    let promoting = p
        .events
        .iter()
        .find(|e| e.reason.as_str() == "Promoting")
        .expect("Promoting");
    assert!(
        promoting
            .note
            .contains("planned switchover: dr-redis-2 holds the promotion token"),
        "{}",
        promoting.note
    );
    w.converge();
    assert_eq!(w.primaries(), vec!["dr-redis-2"]);
    // Promoted: Redis keeps H as its second history, from offset 1001.
    let r = w.report("dr-redis-2");
    r.master_replid = Some(OTHER.into());
    r.master_replid2 = Some(H.into());
    r.second_repl_offset = Some(1001);
    w.reconcile();
    let (status, reason, message) = w.condition("Switchover").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "TokenReached"));
    assert!(
        message.contains("dr-redis-2 held the promotion token"),
        "{message}"
    );
    assert_eq!(w.condition("ReplicaMode").unwrap().1, "Promoted");
}

#[test]
fn a_token_of_another_history_is_refused() {
    // The pods follow another history altogether.
    let mut w = World::new(spec(DR));
    w.converge();
    for i in 0..3 {
        w.hold(&format!("dr-redis-{i}"), OTHER, 5000, 10);
    }
    promote_with(&mut w, Some(token(1000)));
    let p = w.reconcile();
    let (status, reason, message) = w.condition("Switchover").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "TokenMismatch")
    );
    assert!(
        message.contains("another cluster or of an older switchover"),
        "{message}"
    );
    assert!(reasons(&p).contains(&"SwitchoverBlocked"));
    assert!(w.primaries().is_empty());

    // The pods follow a history that continued the token's: the demoted side took writes
    // again (its demotion was undone). Promoting would make two writable primaries.
    for i in 0..3 {
        w.hold(&format!("dr-redis-{i}"), R2, 1500, 10);
        let r = w.report(&format!("dr-redis-{i}"));
        r.master_replid2 = Some(H.into());
        r.second_repl_offset = Some(1001);
    }
    w.reconcile();
    let (status, reason, message) = w.condition("Switchover").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "TokenMismatch")
    );
    assert!(message.contains("took writes again"), "{message}");
    w.advance(120);
    w.converge();
    assert!(w.primaries().is_empty(), "never promoted");

    // The user takes the way out the condition names: without the token, promote at once.
    promote_with(&mut w, None);
    w.converge();
    assert_eq!(w.primaries().len(), 1);
    assert!(w.condition("Switchover").is_none());
}

#[test]
fn without_a_token_promotion_is_the_disaster_button_as_before() {
    let mut w = dr_at([900, 950, 800]);
    promote_with(&mut w, None);
    w.converge();
    assert_eq!(
        w.primaries(),
        vec!["dr-redis-1"],
        "the pod holding the most"
    );
    assert!(w.condition("Switchover").is_none());
}

#[test]
fn the_demoted_side_publishes_its_token_once_and_keeps_it_while_it_replicates() {
    // Production: its own primary, then pointed at the DR cluster that replicates it.
    let mut w = World::new(spec(STANDALONE));
    w.converge();
    for i in 0..3 {
        w.hold(&format!("dr-redis-{i}"), H, 1000, 10);
    }
    w.reconcile();
    assert_eq!(w.status.as_ref().unwrap().demotion_token, None);
    w.spec = spec(DR);
    w.reconcile();
    w.apply_all();
    w.reconcile();
    assert_eq!(w.status.as_ref().unwrap().demotion_token, None, "not yet");
    // dr-redis-0, the former primary, reports it waits, demoted, at H:1000.
    w.report("dr-redis-0").demoted = Some(HistoryPosition {
        replid: H.into(),
        offset: 1000,
        keys: 10,
    });
    let p = w.reconcile();
    assert_eq!(
        w.status.as_ref().unwrap().demotion_token.as_deref(),
        Some(token(1000).as_str())
    );
    let demoted: Vec<_> = p
        .events
        .iter()
        .filter(|e| e.reason.as_str() == "Demoted")
        .collect();
    assert_eq!(demoted.len(), 1);
    assert!(demoted[0].note.contains(&token(1000)));
    let (status, reason, message) = w.condition("Switchover").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Demoted"));
    assert!(
        message.contains(&format!(
            "promote prod-redis-us-east with it: kubectl patch rediscluster <its name> --type=merge -p '{{\"spec\":{{\"replicaMode\":{{\"promote\":true,\"promotionToken\":\"{}\"}}}}}}'",
            token(1000)
        )),
        "{message}"
    );
    let p = w.reconcile();
    assert!(!reasons(&p).contains(&"Demoted"), "once");
    // The source was promoted with it; the pod continues from it: the token stays, the
    // condition goes.
    w.report("dr-redis-0").demoted = None;
    w.reconcile();
    assert_eq!(
        w.status.as_ref().unwrap().demotion_token.as_deref(),
        Some(token(1000).as_str())
    );
    assert!(w.condition("Switchover").is_none());
    // Primary again (the switchover aborted, or a later promotion): no token.
    w.spec = spec(STANDALONE);
    w.reconcile();
    assert_eq!(w.status.as_ref().unwrap().demotion_token, None);
}

/// The operator may die after any of its writes and restart with nothing but what it wrote.
/// The pass that promotes writes several annotations (the other pods chained to the pod that
/// holds the token, that pod told to be primary) and then the status: it is killed after each
/// prefix of those writes, before the status; the instance managers apply what was written;
/// a new operator completes the same promotion from there: one primary, the pod that holds the
/// token, never two at any step, and the promotion recorded as done with that token.
#[test]
fn killed_after_any_write_of_the_promotion_the_next_operator_completes_it() {
    let start = || {
        let mut w = dr_at([1000, 900, 900]);
        promote_with(&mut w, Some(token(1000)));
        w
    };
    let writes: Vec<String> = {
        let p = start().plan();
        p.order
            .iter()
            .filter(|n| p.publish.contains_key(*n))
            .cloned()
            .collect()
    };
    assert!(
        writes.len() >= 2,
        "the promotion writes several annotations: {writes:?}"
    );
    for k in 0..=writes.len() {
        let mut w = start();
        let p = w.plan();
        for pod in writes.iter().take(k) {
            w.pods.get_mut(pod).unwrap().published = Some(p.publish[pod].clone());
        }
        // Killed here: no further annotation, no status. Each instance manager applies what
        // it was told.
        w.apply_all();
        for _ in 0..6 {
            w.reconcile();
            assert!(
                w.primaries().len() <= 1,
                "killed after {k} writes: {:?}",
                w.primaries()
            );
            w.apply_all();
        }
        assert_eq!(w.primaries(), vec!["dr-redis-0"], "killed after {k} writes");
        let r = w.report("dr-redis-0");
        r.master_replid = Some(OTHER.into());
        r.master_replid2 = Some(H.into());
        r.second_repl_offset = Some(1001);
        w.reconcile();
        assert_eq!(
            w.condition("ReplicaMode").unwrap().1,
            "Promoted",
            "killed after {k} writes"
        );
        assert_eq!(
            w.condition("Switchover").map(|c| c.1),
            Some("TokenReached".to_string()),
            "killed after {k} writes"
        );
        assert_eq!(
            w.status.as_ref().unwrap().used_promotion_token.as_deref(),
            Some(token(1000).as_str())
        );
    }
}

#[test]
fn the_designated_leader_a_moment_behind_is_waited_for() {
    // dr-redis-2's report shows the token when the promotion is asked for, dr-redis-0's (read
    // a moment earlier) not yet: dr-redis-0 is waited for, and promoted once it shows it.
    let mut w = dr_at([990, 900, 1000]);
    promote_with(&mut w, Some(token(1000)));
    w.reconcile();
    assert!(w.primaries().is_empty());
    let (status, reason, message) = w.condition("PromotionTarget").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "WaitingForPromotionToken")
    );
    assert!(
        message.contains("waiting up to 5s for the designated leader dr-redis-0 (10 bytes short)"),
        "{message}"
    );
    w.advance(1);
    w.hold("dr-redis-0", H, 1000, 10);
    w.converge();
    assert_eq!(w.primaries(), vec!["dr-redis-0"]);

    // ... but not for long: still short after 5 s, the pod that holds it is promoted.
    let mut w = dr_at([990, 900, 1000]);
    promote_with(&mut w, Some(token(1000)));
    w.reconcile();
    w.advance(6);
    w.converge();
    assert_eq!(w.primaries(), vec!["dr-redis-2"]);
}

/// Undoing a demotion (`promote: true` on the demoted cluster before the other side was
/// promoted): the pod that was primary, and waits demoted, is the one promoted again, so the
/// role and the -leader endpoint do not move (every pod holds the same data).
#[test]
fn an_undone_demotion_gives_the_role_back_to_the_demoted_pod() {
    let mut w = dr_at([1000, 1000, 1000]);
    w.report("dr-redis-1").demoted = Some(HistoryPosition {
        replid: H.into(),
        offset: 1000,
        keys: 10,
    });
    w.reconcile();
    promote_with(&mut w, None);
    w.converge();
    assert_eq!(w.primaries(), vec!["dr-redis-1"]);
}

#[test]
fn the_demoted_pod_keeps_the_leader_label_while_it_waits() {
    let mut w = World::new(spec(DR));
    w.converge();
    for i in 0..3 {
        w.hold(&format!("dr-redis-{i}"), H, 1000, 10);
    }
    let p = w.reconcile();
    assert_eq!(p.role_labels.get("dr-redis-0").copied(), Some("primary"));
    // dr-redis-2 was the primary (a failover before the demotion) and now waits.
    w.report("dr-redis-2").demoted = Some(HistoryPosition {
        replid: H.into(),
        offset: 1000,
        keys: 10,
    });
    let p = w.reconcile();
    assert_eq!(
        p.role_labels.get("dr-redis-2").copied(),
        Some("primary"),
        "{:?}",
        p.role_labels
    );
    assert_eq!(p.role_labels.get("dr-redis-0").copied(), Some("replica"));
}

/// A token left in the spec after its switchover does not hold back a later promotion: the
/// spec's `promote: true` (the disaster button) works as written.
#[test]
fn a_used_token_left_in_the_spec_does_not_block_a_later_promotion() {
    let mut w = dr_at([1000, 1000, 1000]);
    promote_with(&mut w, Some(token(1000)));
    w.converge();
    assert_eq!(w.primaries(), vec!["dr-redis-0"]);
    let r = w.report("dr-redis-0");
    r.master_replid = Some(OTHER.into());
    r.master_replid2 = Some(H.into());
    r.second_repl_offset = Some(1001);
    w.reconcile();
    assert_eq!(
        w.status.as_ref().unwrap().used_promotion_token.as_deref(),
        Some(token(1000).as_str())
    );
    // Returned to replicating (promote: false), the token still in the spec; the pods now
    // follow another history (the source's, after its own promotion).
    w.spec.replica_mode.as_mut().unwrap().promote = false;
    w.converge();
    for i in 0..3 {
        w.hold(&format!("dr-redis-{i}"), R2, 9000, 10);
    }
    w.reconcile();
    assert!(w.primaries().is_empty());
    // The source is lost: promote: true, as the spec writes it. The used token is ignored.
    w.spec.replica_mode.as_mut().unwrap().promote = true;
    w.converge();
    assert_eq!(w.primaries().len(), 1, "promoted at once");
    assert!(
        w.condition("Switchover").is_none_or(|c| c.0 != "False"),
        "{:?}",
        w.condition("Switchover")
    );
}

/// A sentinel-mode cluster told to replicate its source (the switchover's demotion) while its
/// Sentinels fail its primary over is not demoted until they are done: nothing published, the
/// Sentinels' topology kept, `Switchover=False/SentinelFailoverInProgress` and a Warning; once
/// they settle, the demotion goes ahead.
#[test]
fn a_demotion_waits_while_the_sentinels_fail_over() {
    let sentinel = format!("{STANDALONE}mode: sentinel\n");
    let mut w = World::new(spec(&sentinel));
    w.converge();
    let failing = |w: &mut World, on: bool| {
        for i in 0..3 {
            w.report(&format!("dr-redis-{i}")).sentinel_failing_over = Some(on);
        }
    };
    failing(&mut w, true);
    w.reconcile();
    assert_eq!(
        w.status.as_ref().unwrap().sentinels_failing_over,
        Some(true)
    );
    let handed = |w: &World| {
        w.pods
            .values()
            .all(|p| p.published.as_ref().is_some_and(|t| t.sentinel.is_some()))
    };
    assert!(handed(&w));
    // The demotion arrives mid-failover.
    w.spec = spec(&format!(
        "{sentinel}replicaMode:\n  enabled: true\n  source:\n    host: prod-redis-leader.production.svc.cluster.local\n    port: 6379\n"
    ));
    let p = w.reconcile();
    assert!(
        p.publish.is_empty(),
        "{:?} was {:?}",
        p.publish,
        w.pods["dr-redis-0"].published
    );
    assert!(handed(&w));
    let (status, reason, message) = w.condition("Switchover").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SentinelFailoverInProgress")
    );
    assert!(message.contains("Nothing changed yet"), "{message}");
    assert!(reasons(&p).contains(&"SwitchoverBlocked"));
    assert_eq!(w.status.as_ref().unwrap().demotion_token, None);
    let p = w.reconcile();
    assert!(p.publish.is_empty());
    assert!(!reasons(&p).contains(&"SwitchoverBlocked"), "once");
    // They settled: the demotion goes ahead, every pod told to replicate the source.
    failing(&mut w, false);
    let p = w.reconcile();
    assert_eq!(p.publish.len(), 3, "{:?}", p.publish.keys());
    assert!(p.publish.values().all(|t| t.sentinel.is_none()));
    assert_eq!(w.status.as_ref().unwrap().sentinels_failing_over, None);
    assert!(
        w.condition("Switchover")
            .is_none_or(|c| c.1 != "SentinelFailoverInProgress")
    );
}
