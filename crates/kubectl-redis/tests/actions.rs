//! `promote` and `demote`: every refusal, and when each is done.

mod common;

use common::*;
use kubectl_redis::actions::{self, Progress};
use kubectl_redis::view::OperatorView;
use serde_json::json;

fn running() -> OperatorView {
    OperatorView::from_pods(Ok(vec![("redis-operator-a".into(), true)]))
}

fn pods() -> Vec<String> {
    (0..3).map(|i| format!("dr-redis-{i}")).collect()
}

#[test]
fn promote_is_refused_with_a_reason_a_person_can_act_on() {
    let op = running();
    let e = actions::check_promote(&prod(), &op, None, &[]).unwrap_err();
    assert!(e.contains("not in replica mode"), "{e}");
    let e = actions::check_promote(
        &dr(promoted(), true, Some("dr-redis-0")),
        &op,
        None,
        &pods(),
    )
    .unwrap_err();
    assert!(e.contains("already promoted"), "{e}");
    let e = actions::check_promote(&dr(replicating(), true, None), &op, None, &pods()).unwrap_err();
    assert!(e.contains("already in progress"), "{e}");
    let e = actions::check_promote(
        &dr(replicating(), false, None),
        &op,
        Some("dr-redis-7"),
        &pods(),
    )
    .unwrap_err();
    assert!(e.contains("dr-redis-7 is not a pod of dr-redis"), "{e}");
    let stopped = OperatorView::from_pods(Ok(vec![("redis-operator-a".into(), false)]));
    let e = actions::check_promote(&dr(replicating(), false, None), &stopped, None, &pods())
        .unwrap_err();
    assert!(e.contains("operator is not running"), "{e}");
    // Unknown (no right to list the operator's pods) does not block.
    let unknown = OperatorView::from_pods(Err("forbidden".into()));
    actions::check_promote(
        &dr(replicating(), false, None),
        &unknown,
        Some("dr-redis-1"),
        &pods(),
    )
    .unwrap();
    actions::check_promote(&dr(link_down(), false, None), &op, None, &pods()).unwrap();
}

#[test]
fn the_patches_are_the_specs() {
    assert_eq!(
        actions::promote_patch(None),
        json!({"spec": {"replicaMode": {"promote": true}}})
    );
    assert_eq!(
        actions::promote_patch(Some("dr-redis-1")),
        json!({"spec": {"replicaMode": {"promote": true}},
               "metadata": {"annotations": {"redis.io/promote-pod": "dr-redis-1"}}})
    );
    assert_eq!(
        actions::demote_patch(),
        json!({"spec": {"replicaMode": {"promote": false}}})
    );
}

#[test]
fn promotion_is_done_only_once_the_leader_confirmed_and_is_named() {
    // The operator has not seen the patched generation yet.
    let mut c = dr(replicating(), true, None);
    assert!(
        matches!(actions::promotion_progress(&c, 3), Progress::Pending(m) if m.contains("generation 3"))
    );
    // Seen, promoting.
    c.status.as_mut().unwrap().observed_generation = Some(3);
    c.status.as_mut().unwrap().conditions.push(
        serde_json::from_value(cond(
            "PromotionTarget",
            "True",
            "Chosen",
            "dr-redis-0 holds every other pod's data",
            "2026-11-27T11:59:00Z",
        ))
        .unwrap(),
    );
    assert_eq!(
        actions::promotion_progress(&c, 3),
        Progress::Pending("Chosen: dr-redis-0 holds every other pod's data".into())
    );
    // Promoted and named.
    let mut done = dr(promoted(), true, Some("dr-redis-0"));
    done.status.as_mut().unwrap().observed_generation = Some(3);
    assert!(
        matches!(actions::promotion_progress(&done, 3), Progress::Done(m) if m.contains("dr-redis-0 is primary"))
    );
    // No pod holds every other's data: the user must choose.
    let mut stuck = dr(replicating(), true, None);
    stuck.status.as_mut().unwrap().observed_generation = Some(3);
    stuck.status.as_mut().unwrap().conditions.push(
        serde_json::from_value(cond(
            "PromotionTarget",
            "False",
            "NeedsChoice",
            "dr-redis-1 and dr-redis-2 hold different writes",
            "2026-11-27T11:59:00Z",
        ))
        .unwrap(),
    );
    assert!(
        matches!(actions::promotion_progress(&stuck, 3), Progress::Stuck(m) if m.contains("NeedsChoice") && m.contains("--pod"))
    );
}

#[test]
fn demote_is_refused_unless_promoted_and_done_once_the_link_is_up() {
    let op = running();
    assert!(
        actions::check_demote(&prod(), &op)
            .unwrap_err()
            .contains("not a replica cluster")
    );
    assert!(
        actions::check_demote(&dr(replicating(), false, None), &op)
            .unwrap_err()
            .contains("not promoted")
    );
    actions::check_demote(&dr(promoted(), true, Some("dr-redis-0")), &op).unwrap();

    let mut back = dr(replicating(), false, None);
    back.status.as_mut().unwrap().observed_generation = Some(4);
    assert!(
        matches!(actions::demotion_progress(&back, 4), Progress::Done(m) if m.contains("replicates its source again"))
    );
    let mut down = dr(link_down(), false, None);
    down.status.as_mut().unwrap().observed_generation = Some(4);
    assert!(
        matches!(actions::demotion_progress(&down, 4), Progress::Pending(m) if m.starts_with("LinkDown"))
    );
}

/// `switchover`: who may start one, the patches it sends, and when each step is done.
#[test]
fn switchover_refuses_what_it_cannot_complete_and_sends_the_documented_patches() {
    let op = running();
    // A promoted DR (its spec names production as source) may switch over to production,
    // which replicates it.
    let promoted_dr = dr(promoted(), true, Some("dr-redis-0"));
    let mut replicating_prod = dr(replicating(), false, None);
    replicating_prod.metadata.name = Some("prod-redis".into());
    actions::check_switchover(&promoted_dr, &replicating_prod, &op, &op).unwrap();
    assert_eq!(
        actions::switchover_demote_patch(&promoted_dr),
        json!({"spec": {"replicaMode": {"promote": false}}})
    );
    assert_eq!(
        actions::switchover_abort_patch(&promoted_dr),
        json!({"spec": {"replicaMode": {"promote": true}}})
    );
    assert_eq!(
        actions::switchover_promote_patch("ab:12"),
        json!({"spec": {"replicaMode": {"promote": true, "promotionToken": "ab:12"}}})
    );
    // From a replica: refused.
    let e = actions::check_switchover(&replicating_prod, &promoted_dr, &op, &op).unwrap_err();
    assert!(e.contains("is not a primary"), "{e}");
    // A standalone primary without a source to become a replica of: says what to set.
    let e =
        actions::check_switchover(&prod(), &dr(replicating(), false, None), &op, &op).unwrap_err();
    assert!(e.contains("has no spec.replicaMode.source"), "{e}");
    // ... with one (kept unused while disabled): demoted by enabling replica mode.
    let mut standalone = prod();
    standalone.spec.replica_mode = Some(
        serde_json::from_value(
            json!({"enabled": false, "source": {"host": "dr-redis-leader", "port": 6379}}),
        )
        .unwrap(),
    );
    actions::check_switchover(&standalone, &dr(replicating(), false, None), &op, &op).unwrap();
    assert_eq!(
        actions::switchover_demote_patch(&standalone),
        json!({"spec": {"replicaMode": {"enabled": true, "promote": false}}})
    );
    assert_eq!(
        actions::switchover_abort_patch(&standalone),
        json!({"spec": {"replicaMode": {"enabled": false}}})
    );
    // The other side's link is down: a token could not reach it.
    let e = actions::check_switchover(&standalone, &dr(link_down(), false, None), &op, &op)
        .unwrap_err();
    assert!(e.contains("link to its source is not up"), "{e}");
    assert!(e.contains("kubectl redis promote"), "{e}");
    // The target is not a replica.
    let e = actions::check_switchover(&standalone, &promoted_dr, &op, &op).unwrap_err();
    assert!(e.contains("is not a replica"), "{e}");
    // An operator that does not run on either side.
    let stopped = OperatorView::from_pods(Ok(vec![("redis-operator-a".into(), false)]));
    let e = actions::check_switchover(&standalone, &dr(replicating(), false, None), &op, &stopped)
        .unwrap_err();
    assert!(e.contains("operator is not running"), "{e}");
    // Its Sentinels are failing its primary over.
    let mut failing = standalone.clone();
    failing.status = Some(serde_json::from_value(json!({"sentinelsFailingOver": true})).unwrap());
    let e =
        actions::check_switchover(&failing, &dr(replicating(), false, None), &op, &op).unwrap_err();
    assert!(e.contains("Sentinels are failing its primary over"), "{e}");
}

#[test]
fn switchover_progress_follows_the_token_then_the_promotion() {
    let mut c = dr(replicating(), false, None);
    assert!(matches!(
        actions::demotion_token_progress(&c, 3),
        Progress::Pending(_)
    ));
    c.status.as_mut().unwrap().observed_generation = Some(3);
    assert!(matches!(
        actions::demotion_token_progress(&c, 3),
        Progress::Pending(_)
    ));
    c.status.as_mut().unwrap().demotion_token = Some("ab:12".into());
    assert_eq!(
        actions::demotion_token_progress(&c, 3),
        Progress::Done("ab:12".into())
    );
    // The promotion refused by the operator (Switchover=False) is stuck, with its message.
    let mut p = dr(
        vec![cond(
            "Switchover",
            "False",
            "TokenMismatch",
            "Refusing to promote: the promotion token names another history",
            "2026-11-27T12:00:00Z",
        )],
        true,
        None,
    );
    match actions::token_promotion_progress(&p, 2) {
        Progress::Stuck(m) => assert!(m.contains("TokenMismatch"), "{m}"),
        other => panic!("{other:?}"),
    }
    p = dr(promoted(), true, Some("dr-redis-0"));
    assert!(matches!(
        actions::token_promotion_progress(&p, 2),
        Progress::Done(_)
    ));
    assert!(matches!(
        actions::follows_progress(&dr(replicating(), false, None)),
        Progress::Done(_)
    ));
    assert!(matches!(
        actions::follows_progress(&dr(link_down(), false, None)),
        Progress::Pending(_)
    ));
}
